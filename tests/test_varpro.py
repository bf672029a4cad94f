"""Variable projection (paper §4.2-4.3): residual variants, Jacobians by jacfwd through CG and by implicit
differentiation (asserted Taylor tests), the LM driver's evaluation counts, and the final reconstruction."""
import pytest
import torch

import imreg_lib as il
from imreg_lib import paper
from imreg_lib._torch import fast_paths

H = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)  # Taylor steps above the CG-tolerance noise floor


@pytest.fixture(scope="module")
def pb():
    return il.superresolution_problem(8, 2, 2)


@pytest.fixture(scope="module")
def point(pb):
    g = torch.Generator().manual_seed(0)
    w = pb.w_true + 0.02 * torch.randn(pb.n_params, generator=g, dtype=torch.float64)
    v = torch.randn(pb.n_params, generator=g, dtype=torch.float64)
    return w, 0.05 * v / torch.linalg.vector_norm(v)


def _taylor(vp, w, v):
    J = vp.jacobian(w)
    return il.taylor_test(vp.residual, w, v, J @ v, h=H)


def test_variants_shapes_and_parameters(pb, point):
    w, _ = point
    coded = paper.AsCodedVarPro(pb)
    eq7 = il.VarPro(pb, method="implicit")
    assert coded.n_params == 12 and eq7.n_params == 6
    assert (coded.variant, eq7.variant) == ("as_coded", "paper")
    assert coded.residual(w).shape == (2 * 16,)
    assert eq7.residual(w[6:]).shape == (pb.n_rows,)
    torch.testing.assert_close(eq7.full_parameters(w[6:])[:6], il.Affine().identity())
    torch.testing.assert_close(eq7.reduced_parameters(w), w[6:])
    # the paper's residual is the scaled data misfit stacked over λL f
    f = eq7.projection(w[6:]).x
    r = eq7.residual_at(w[6:], f)
    full = eq7.full_parameters(w[6:])
    torch.testing.assert_close(r[:32], pb.data_scale * (pb.operator(full).data_map(f) - pb.d))
    torch.testing.assert_close(r[32:], pb.reg_scale * pb.operator(full).regularizer(f))
    # the authors' residual: every template free, the unscaled data misfit only
    torch.testing.assert_close(coded.full_parameters(w), w)
    torch.testing.assert_close(coded.reduced_parameters(w), w)
    # on the assembled operator (the default for small problems) up to round-off, on the matrix-free one exactly
    torch.testing.assert_close(coded.residual_at(w, f), pb.operator(w).data_map(f) - pb.d, rtol=1e-12, atol=1e-12)
    with fast_paths(False):
        torch.testing.assert_close(coded.residual_at(w, f), pb.operator(w).data_map(f) - pb.d, rtol=0, atol=0)


def test_taylor_orders_diff_all_implicit_second_no_diff_first(pb, point):
    w, v = point
    diff_all = _taylor(paper.AsCodedVarPro(pb, method="diff_all", cg_iters=400, tol=1e-10), w, v)
    implicit = _taylor(paper.AsCodedVarPro(pb, method="implicit"), w, v)
    no_diff = _taylor(paper.AsCodedVarPro(pb, method="no_diff", cg_iters=400, tol=1e-10), w, v)
    assert diff_all.order(1) == pytest.approx(2.0, abs=0.2)
    assert implicit.order(1) == pytest.approx(2.0, abs=0.2)
    assert no_diff.order(1) == pytest.approx(1.0, abs=0.1)
    assert no_diff.errors[1][-1] > 100 * implicit.errors[1][-1]


def test_paper_variant_taylor(pb, point):
    w, v = point
    for method in ("implicit", "diff_all"):
        res = _taylor(il.VarPro(pb, method=method, cg_iters=400, tol=1e-10), w[6:], v[6:])
        assert res.order(1) == pytest.approx(2.0, abs=0.2)


def test_implicit_equals_jacfwd_through_converged_cg(pb, point):
    w, _ = point
    J_imp = paper.AsCodedVarPro(pb, method="implicit", implicit_rtol=1e-13).jacobian(w)
    J_cg = paper.AsCodedVarPro(pb, method="diff_all", cg_iters=400, tol=0.0).jacobian(w)  # far past convergence
    assert float(torch.linalg.vector_norm(J_imp - J_cg)) < 1e-7 * float(torch.linalg.vector_norm(J_cg))


def test_ad_adjoint_gives_the_same_jacobian(pb, point):
    w, _ = point
    exact = paper.AsCodedVarPro(pb, method="diff_all", cg_iters=30, tol=0.0).jacobian(w)
    ad = paper.AsCodedVarPro(pb, method="diff_all", cg_iters=30, tol=0.0, adjoint="ad").jacobian(w)
    torch.testing.assert_close(ad, exact, rtol=1e-9, atol=1e-9)


def test_partial_differentiation_methods(pb, point):
    w, _ = point
    mk = lambda method, p: paper.AsCodedVarPro(pb, method=method, cg_iters=40, tol=0.0, fraction=p)  # noqa: E731
    J_all = mk("diff_all", 1.0).jacobian(w)
    torch.testing.assert_close(mk("last_continued", 1.0).jacobian(w), J_all, rtol=0, atol=1e-12)
    torch.testing.assert_close(mk("last_restarted", 0.0).jacobian(w), mk("no_diff", 1.0).jacobian(w), rtol=0,
                               atol=1e-12)
    J_cont, J_rest = mk("last_continued", 0.5).jacobian(w), mk("last_restarted", 0.5).jacobian(w)
    assert float(torch.linalg.vector_norm(J_cont - J_rest)) > 1e-6 * float(torch.linalg.vector_norm(J_all))
    # the continued residual is the uninterrupted one; the restarted one is another Krylov sequence
    torch.testing.assert_close(mk("last_continued", 0.5).residual(w), mk("diff_all", 1.0).residual(w), rtol=0,
                               atol=1e-12)


def test_residual_and_jacobian_together(pb, point):
    w, _ = point
    for method in ("diff_all", "implicit"):
        # few iterations: far into a CG run, round-off differences between code paths are amplified (CG on an
        # ill-conditioned system), so the comparison would measure that instead
        vp = paper.AsCodedVarPro(pb, method=method, cg_iters=15, tol=0.0)
        r, J = vp.residual_and_jacobian(w)
        torch.testing.assert_close(r, vp.residual(w), rtol=0, atol=1e-12)
        torch.testing.assert_close(J, vp.jacobian(w), rtol=1e-10, atol=1e-10)


def test_lm_driver_counts_and_reconstruction(pb, point, monkeypatch):
    w, _ = point
    calls = []
    original = il.VarPro.projection
    monkeypatch.setattr(il.VarPro, "projection", lambda self, wv: calls.append(1) or original(self, wv))
    run = il.varpro_levenberg_marquardt(paper.AsCodedVarPro(pb, method="implicit"), w, max_iter=5, gtol=1e-12)
    lm = run.lm
    assert len(lm.points) == 5 and lm.n_residuals == 5 and lm.n_jacobians == 1 + sum(lm.accepted)
    assert len(calls) == lm.n_residuals  # each projection solved once: the implicit Jacobian reuses it
    assert len(run.cg_iterations) == len(run.rss_mb) == 5 and all(m > 0 for m in run.rss_mb)
    assert run.losses == lm.losses and run.residual_norms[0] == pytest.approx(lm.losses[0] ** 0.5)
    assert lm.losses[-1] < lm.losses[0]
    f_hat = il.reconstruct(pb, run.w_full)
    torch.testing.assert_close(run.reconstruction.reshape(-1), f_hat.x)
    assert run.rel_error == pytest.approx(il.relative_error(f_hat.x, pb.reference))


def test_reconstruction_at_the_truth(pb):
    res = il.reconstruct(pb, pb.w_true, tol=1e-10)
    assert res.converged and il.relative_error(res.x, pb.reference) < 0.5
    assert il.relative_error(pb.reference, pb.reference) == 0.0


@pytest.mark.parametrize("kw, match", [({"method": "some"}, "method"),
                                       ({"cg_iters": -1}, "cg_iters"), ({"fraction": 2.0}, "fraction"),
                                       ({"tol": -1.0}, "tol"), ({"adjoint": "x"}, "adjoint"),
                                       ({"implicit_max_iter": 0}, "implicit_max_iter")])
def test_bad_inputs(pb, kw, match):
    with pytest.raises(ValueError, match=match):
        il.VarPro(pb, **kw)


def test_the_variants_of_the_experiments(pb):
    """The library's VarPro takes no variant; the experiments choose theirs by name."""
    with pytest.raises(TypeError, match="variant"):
        il.VarPro(pb, variant="paper")
    assert type(paper.varpro_variant(pb, "paper", method="no_diff")) is il.VarPro
    coded = paper.varpro_variant(pb, method="implicit", cg_iters=7)
    assert type(coded) is paper.AsCodedVarPro and (coded.method, coded.cg_iters) == ("implicit", 7)
    assert paper.VARPRO_VARIANTS == ("as_coded", "paper")
    with pytest.raises(ValueError, match="variant must be one of"):
        paper.varpro_variant(pb, "x")


def test_bad_parameter_vector(pb):
    with pytest.raises(ValueError, match="w must be a tensor of shape"):
        il.VarPro(pb).residual(torch.zeros(12, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_templates >= 2"):
        il.VarPro(il.superresolution_problem(8, 2, 1))
    assert paper.AsCodedVarPro(il.superresolution_problem(8, 2, 1)).n_params == 6  # template 0 free: no limit


def test_taylor_orders_at_paper_size():
    """m = 20, 4 templates, 24 parameters, at the start point of LM (CG converged tightly so that the residual
    is smooth enough to see second order)."""
    pb = il.superresolution_problem()
    w = paper.preregister(pb, continuation=True).w
    v = torch.randn(pb.n_params, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    v = 0.05 * v / torch.linalg.vector_norm(v)
    h = (1.0, 0.1, 0.01, 0.001)
    orders = {}
    for method in ("diff_all", "implicit", "no_diff"):
        vp = paper.AsCodedVarPro(pb, method=method, cg_iters=2000, tol=1e-6 if method == "no_diff" else 1e-8)
        f0 = vp.projection(w).x
        J = vp.jacobian(w, f0)
        orders[method] = il.taylor_test(vp.residual, w, v, J @ v, h=h).order(1)
    assert orders["diff_all"] == pytest.approx(2.0, abs=0.25)
    assert orders["implicit"] == pytest.approx(2.0, abs=0.25)
    assert orders["no_diff"] == pytest.approx(1.0, abs=0.15)


def test_fast_paths_off_give_the_same_jacobian(pb, point):
    w, _ = point
    vp = paper.AsCodedVarPro(pb, method="diff_all", cg_iters=15, tol=0.0)
    fast = vp.jacobian(w)
    with fast_paths(False):
        generic = vp.jacobian(w)
    torch.testing.assert_close(generic, fast, rtol=1e-9, atol=1e-9)
