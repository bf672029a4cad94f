"""The assembled super-resolution operator and the hand-carried CG tangents: the same linear map as the matrix-free
operator, derivatives that agree with ``jacfwd`` of the generic path, asserted Taylor orders, and the routing."""
import pytest
import torch
from torch.func import jacfwd

import imreg_lib as il
from imreg_lib import paper
from imreg_lib._srdense import DENSE_MAX_PIXELS, AssembledNormal, dense_suitable
from imreg_lib._torch import fast_paths
from imreg_lib.cg import conjugate_gradient, conjugate_gradient_tangents


@pytest.fixture(scope="module")
def pb():
    return il.superresolution_problem(12, 2, 3)


@pytest.fixture(scope="module")
def w(pb):
    g = torch.Generator().manual_seed(3)
    return pb.w_true + 0.01 * torch.randn(pb.n_params, generator=g, dtype=torch.float64)


def _rel(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def test_assembled_operator_is_the_matrix_free_one(pb, w):
    D, op = AssembledNormal.build(pb, w), pb.operator(w)
    f = torch.randn(pb.n_pixels, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert _rel(D.normal(f), op.normal(f)) < 1e-13
    assert _rel(D.rhs(), op.normal_rhs()) < 1e-13
    assert _rel(D.data_map(f), op.data_map(f)) < 1e-13
    # the comparison can fail: the operator at another motion differs far above round-off
    other = AssembledNormal.build(pb, w + 1e-3)
    assert _rel(other.normal(f), op.normal(f)) > 1e-6


def test_assembled_derivatives_equal_jacfwd_of_the_generic_path(pb, w):
    D = AssembledNormal.build(pb, w)
    f = torch.randn(pb.n_pixels, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with fast_paths(False):
        Jn = jacfwd(lambda wv: pb.operator(wv).normal(f))(w)
        Jb = jacfwd(lambda wv: pb.operator(wv).normal_rhs())(w)
        Jd = jacfwd(lambda wv: pb.operator(wv).data_map(f))(w)
    assert _rel(D.normal_dot(f[:, None])[0], Jn) < 1e-12
    assert _rel(D.rhs_dot(), Jb) < 1e-12
    assert _rel(D.data_map_dot(f), Jd) < 1e-12
    blocks = D.normal_dot(torch.stack([f, 2 * f], dim=1))
    torch.testing.assert_close(blocks[1], 2 * blocks[0], rtol=1e-13, atol=0)


def test_assembled_derivative_taylor_order(pb, w):
    f = torch.randn(pb.n_pixels, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    v = torch.randn(pb.n_params, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    v = 1e-2 * v / torch.linalg.vector_norm(v)
    D = AssembledNormal.build(pb, w)
    res = il.taylor_test(lambda wv: AssembledNormal.build(pb, wv).normal(f), w, v, D.normal_dot(f[:, None])[0] @ v,
                         h=(1.0, 0.3, 0.1, 0.03, 0.01))
    assert res.order(1) == pytest.approx(2.0, abs=0.15)
    # a wrong derivative (one parameter's column dropped) is only first order
    wrong = D.normal_dot(f[:, None])[0].clone()
    wrong[:, 7] = 0
    bad = il.taylor_test(lambda wv: AssembledNormal.build(pb, wv).normal(f), w, v, wrong @ v,
                         h=(1.0, 0.3, 0.1, 0.03, 0.01))
    assert bad.order(1) < 1.3


def _toy(n=30, T=4):
    """An SPD ``M(w) = B(w)ᵀ B(w) + I`` and ``b(w)`` with ``T`` parameters."""
    g = torch.Generator().manual_seed(7)
    B0, Bs = torch.randn(n, n, generator=g, dtype=torch.float64), torch.randn(T, n, n, generator=g, dtype=torch.float64)
    c0, cs = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(T, n, generator=g, dtype=torch.float64)

    def M(w):
        B = B0 + torch.einsum("t,tij->ij", w, Bs) / n
        return B.T @ B / n + torch.eye(n, dtype=torch.float64)

    def b(w):
        return c0 + w @ cs

    return M, b, torch.full((T,), 0.1, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)


@pytest.mark.parametrize("mode, fraction", [("all", 1.0), ("last_restarted", 0.6), ("last_continued", 0.6),
                                            ("last_continued", 1.0), ("none", 1.0)])
@pytest.mark.parametrize("tol", [0.0, 1e-6])
def test_cg_tangents_equal_jacfwd_through_cg(mode, fraction, tol):
    M, b, w, x0 = _toy()
    kw = dict(max_iter=25, tol=tol, differentiate=mode, fraction=fraction)
    ref = conjugate_gradient(lambda v: M(w) @ v, b(w), x0, **kw)
    J = jacfwd(lambda wv: conjugate_gradient(lambda v: M(wv) @ v, b(wv), x0, **kw).x)(w)
    Mw = M(w)
    dM = jacfwd(M)(w)  # (n, n, T)
    out = conjugate_gradient_tangents(lambda V: Mw @ V, lambda V: torch.einsum("ijt,jk->kit", dM, V),
                                      b(w), jacfwd(b)(w), x0, chunk=4, **kw)
    assert torch.equal(out.result.x, ref.x)  # the primal run is the plain solve's, operation for operation
    assert (out.result.iterations, out.result.differentiated, out.result.converged) == \
        (ref.iterations, ref.differentiated, ref.converged)
    torch.testing.assert_close(out.x_dot, J, rtol=1e-10, atol=1e-12)


def test_cg_tangents_check_fails_on_a_wrong_operator_derivative():
    M, b, w, x0 = _toy()
    kw = dict(max_iter=25, tol=0.0)
    J = jacfwd(lambda wv: conjugate_gradient(lambda v: M(wv) @ v, b(wv), x0, **kw).x)(w)
    dM = jacfwd(M)(w)
    out = conjugate_gradient_tangents(lambda V: M(w) @ V, lambda V: 0.5 * torch.einsum("ijt,jk->kit", dM, V),
                                      b(w), jacfwd(b)(w), x0, **kw)
    assert _rel(out.x_dot, J) > 1e-3


@pytest.mark.parametrize("variant", ["as_coded", "paper"])
@pytest.mark.parametrize("method, options", [("diff_all", {}), ("last_restarted", {"fraction": 0.7}),
                                             ("last_continued", {"fraction": 0.7}), ("no_diff", {}),
                                             ("implicit", {})])
def test_varpro_dense_path_agrees_with_the_generic_path(pb, w, variant, method, options):
    vp = paper.varpro_variant(pb, variant, method=method, cg_iters=30, tol=0.0, **options)
    wr = vp.reduced_parameters(w)
    r, J = vp.residual_and_jacobian(wr)
    with fast_paths(False):
        assert not dense_suitable(pb, wr)
        rg, Jg = vp.residual_and_jacobian(wr)
    # implicit: both projections stop at a relative residual of 1e-10 (a few iterations apart), and the
    # derivative is a Cholesky solve against a batched CG; the other methods run the same 30 iterations
    limit = 1e-5 if method == "implicit" else 1e-9
    assert _rel(r, rg) < limit and _rel(J, Jg) < limit
    torch.testing.assert_close(vp.jacobian(wr), J, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("variant", ["as_coded", "paper"])
def test_varpro_dense_jacobian_taylor(pb, w, variant):
    """Diff All is the exact derivative of its residual (the partial methods drop terms on purpose: their check is
    the agreement with ``jacfwd`` above, and they are first order here)."""
    vp = paper.varpro_variant(pb, variant, method="diff_all", cg_iters=60, tol=0.0)
    wr = vp.reduced_parameters(w)
    v = torch.randn(vp.n_params, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    v = 0.05 * v / torch.linalg.vector_norm(v)
    res = il.taylor_test(vp.residual, wr, v, vp.jacobian(wr) @ v, h=(1.0, 0.3, 0.1, 0.03, 0.01))
    assert res.order(1) == pytest.approx(2.0, abs=0.2)
    partial = paper.varpro_variant(pb, variant, method="last_restarted", cg_iters=60, tol=0.0, fraction=0.5)
    res = il.taylor_test(partial.residual, wr, v, partial.jacobian(wr) @ v, h=(1.0, 0.3, 0.1, 0.03, 0.01))
    assert res.order(1) == pytest.approx(1.0, abs=0.2)


def test_dense_route_is_chosen_by_size_device_and_tracing(pb, w):
    assert dense_suitable(pb, w)
    assert not dense_suitable(pb, w, adjoint="ad")
    assert not dense_suitable(pb, w.clone().requires_grad_())
    seen = []
    jacfwd(lambda wv: seen.append(dense_suitable(pb, wv)) or wv)(w)
    assert seen == [False]
    big = il.superresolution_problem(64, 4, 2)
    assert big.n_pixels > DENSE_MAX_PIXELS and not dense_suitable(big, big.w_true)
