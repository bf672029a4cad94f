"""The interpolation matrix in gather form: equal to spline_evaluate, exact transpose, gradient weights, and the
sparse and generic implementations agreeing under torch.func transforms."""
import pytest
import torch

import imreg_lib as il
from imreg_lib.spline import spline_weights

G = il.Grid(il.PAPER_OMEGA, (7, 9))


def _points(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    # some points outside the valid window on both sides, to exercise the mask
    lo = torch.tensor([-4.0, -5.0], dtype=torch.float64)
    span = torch.tensor([28.0, 35.0], dtype=torch.float64)
    return lo + span * torch.rand(n, 2, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("window", ["paper", "fair"])
def test_apply_equals_spline_evaluate(window):
    x = _points()
    c = torch.randn(G.m, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    S = spline_weights(x, G, window=window)
    ref = il.spline_evaluate(c, x, G, window=window)
    assert S._use_sparse(c)  # plain weights and input: the CSR path
    torch.testing.assert_close(S.apply(c), ref, rtol=0, atol=1e-12)
    generic = S.apply(c.clone().requires_grad_()).detach()  # autograd input: the gather path
    torch.testing.assert_close(generic, ref, rtol=0, atol=1e-12)
    assert (ref[(x[:, 0] > 24.0) | (x[:, 1] > 30.0)] == 0).all()  # outside the window: exactly 0


def test_transpose_is_exact_adjoint_on_both_paths():
    x = _points()
    g = torch.Generator().manual_seed(2)
    c = torch.randn(G.m, generator=g, dtype=torch.float64)
    v = torch.randn(x.shape[0], generator=g, dtype=torch.float64)
    S = spline_weights(x, G)
    lhs = torch.dot(S.apply(c), v)
    for vv in (v, v.clone().requires_grad_()):
        rhs = torch.sum(c * S.transpose(vv)).detach()
        assert abs(float(lhs - rhs)) <= 1e-12 * abs(float(lhs))
    # and it is what AD's vjp gives
    vjp = torch.func.vjp(lambda cc: il.spline_evaluate(cc, x, G), c)[1](v)[0]
    torch.testing.assert_close(S.transpose(v), vjp, rtol=0, atol=1e-12)


def test_gradient_weights_give_the_spline_gradient():
    x = _points(seed=3)
    c = torch.randn(G.m, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    S = spline_weights(x, G, gradient=True)
    grad = torch.einsum("nkj,nk->nj", S.gradient,
                        torch.nn.functional.pad(c, (3, 2, 3, 2)).reshape(-1)[S.index])
    torch.testing.assert_close(grad, il.spline_evaluate(c, x, G, order=1), rtol=0, atol=1e-11)
    WG = S.sparse()["WG"] @ torch.nn.functional.pad(c, (3, 2, 3, 2)).reshape(-1)
    torch.testing.assert_close(WG.reshape(3, -1)[1:].T, grad, rtol=0, atol=1e-11)


def test_weights_are_differentiable_in_the_points():
    x = _points(seed=5)
    c = torch.randn(G.m, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    J = torch.func.jacfwd(lambda z: spline_weights(z, G).apply(c))(x)
    ref = torch.func.jacfwd(lambda z: il.spline_evaluate(c, z, G))(x)
    torch.testing.assert_close(J, ref, rtol=0, atol=1e-11)


def test_vmap_over_coefficients_uses_the_sparse_path():
    x = _points(seed=7)
    C = torch.randn(5, *G.m, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    S = spline_weights(x, G)
    out = torch.func.vmap(S.apply)(C)
    torch.testing.assert_close(out, torch.stack([il.spline_evaluate(c, x, G) for c in C]), rtol=0, atol=1e-12)


def test_sparse_needs_plain_weights():
    x = _points().requires_grad_()
    with pytest.raises(ValueError, match="plain weights"):
        spline_weights(x, G).sparse()
