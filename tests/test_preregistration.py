"""Pre-registration (the start of Gauss-Newton in §4): exact derivatives, the authors' restart-from-identity
schedule, and the continuation fix."""
import pytest
import torch
from torch.func import grad, hessian

import imreg_lib as il
from imreg_lib import paper
from imreg_lib.spline import SplineImage


@pytest.fixture(scope="module")
def pb():
    return il.superresolution_problem()


def _ad_loss(pb, theta, loss, fix_first=False, blur=False):
    img = SplineImage(pb.data[0], pb.template_grid)
    xT = pb.template_grid.cell_centers()
    data = [SplineImage(d, pb.template_grid).on_grid(theta).reshape(-1) if blur else d.reshape(-1) for d in pb.data]

    def J(w):
        W = torch.cat([pb.identity()[:6], w]) if fix_first else w
        W = W.reshape(pb.n_templates, 6)
        pred = torch.cat([img(xT @ W[j, :4].reshape(2, 2).T + W[j, 4:], theta) for j in range(pb.n_templates)])
        S = torch.sum((pred - torch.cat(data)) ** 2)
        return torch.sqrt(S) if loss == "norm" else S

    return J


@pytest.mark.parametrize("loss, fix_first, blur", [("norm", False, False), ("squared", False, False),
                                                   ("norm", True, True)])
def test_structured_derivatives_equal_ad(pb, loss, fix_first, blur):
    g = torch.Generator().manual_seed(0)
    n = 18 if fix_first else 24
    w = (pb.identity()[6:] if fix_first else pb.identity()) + 0.05 * torch.randn(n, generator=g, dtype=torch.float64)
    J, dJ, H = paper.prereg_objective(pb, 1e-2, loss=loss, fix_first=fix_first, blur_data=blur)(w)
    ref = _ad_loss(pb, 1e-2, loss, fix_first, blur)
    assert float(J) == pytest.approx(float(ref(w)), rel=1e-12)
    torch.testing.assert_close(dJ, grad(ref)(w), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(H, hessian(ref)(w), rtol=1e-9, atol=1e-9)


def test_as_coded_restarts_every_scale_from_the_identity(pb):
    res = paper.preregister(pb, thetas=(1.0, 1e-1, 1e-3), maxiter=5)
    assert res.optimizer == "newton-cg" and not res.continuation and not res.blur_data
    for rec in res.history:
        torch.testing.assert_close(rec.w_start, pb.identity())
        assert rec.iterations <= 5
    torch.testing.assert_close(res.w, res.history[-1].w)


def test_continuation_warm_starts_and_finds_the_motion(pb):
    res = paper.preregister(pb, continuation=True)
    assert res.optimizer == "trust-exact" and res.blur_data
    for prev, rec in zip(res.history, res.history[1:], strict=False):
        torch.testing.assert_close(rec.w_start, prev.w)
    # on the synthetic hand the continuation lands near the generating motion (the as-coded schedule does not)
    assert float(torch.linalg.vector_norm(res.w - pb.w_true)) < 1.0
    assert res.history[-1].grad_norm < 1e-4


def test_paper_variant_has_18_parameters(pb):
    res = paper.preregister(pb, continuation=True, variant="paper", thetas=(1.0, 1e-3))
    assert res.w.shape == (18,)


@pytest.mark.parametrize("kw, match", [({"loss": "l1"}, "loss"), ({"optimizer": "bfgs"}, "optimizer"),
                                       ({"thetas": ()}, "thetas"), ({"maxiter": 0}, "maxiter"),
                                       ({"variant": "x"}, "variant"), ({"gtol": 0.0}, "gtol")])
def test_bad_inputs(pb, kw, match):
    with pytest.raises(ValueError, match=match):
        paper.preregister(pb, **kw)
