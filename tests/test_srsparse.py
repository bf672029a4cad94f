"""The sparse assembly of the super-resolution operator (the path above the dense one, up to ``m = 256``): the same
products as the dense assembly, derivatives that agree with ``jacfwd`` of the generic path through every VarPro
method, an asserted Taylor order, and the routing by size. Also on a real image (matplotlib's MRI slice)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import imreg_lib as il
from imreg_lib import _srsparse, paper
from imreg_lib._srdense import DENSE_MAX_PIXELS, AssembledNormal
from imreg_lib._srsparse import SPARSE_MAX_PIXELS, SparseNormal, _prefilter, assemble, assembled_suitable
from imreg_lib._torch import fast_paths


@pytest.fixture(scope="module")
def pb():
    return il.superresolution_problem(12, 2, 3)


@pytest.fixture(scope="module")
def w(pb):
    g = torch.Generator().manual_seed(3)
    return pb.w_true + 0.01 * torch.randn(pb.n_params, generator=g, dtype=torch.float64)


@pytest.fixture
def sparse_only(monkeypatch):
    """Route every problem to the sparse assembly (the dense one otherwise serves these small sizes)."""
    monkeypatch.setattr(_srsparse, "DENSE_MAX_PIXELS", 0)


def _rel(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def _randn(*shape, seed):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_sparse_products_equal_the_dense_ones(pb, w):
    D, S = AssembledNormal.build(pb, w), SparseNormal.build(pb, w)
    f, F = _randn(pb.n_pixels, seed=1), _randn(pb.n_pixels, 5, seed=2)
    pairs = {
        "normal": (S.normal(f), D.normal(f)), "normal block": (S.normal(F), D.normal(F)),
        "rhs": (S.rhs(), D.rhs()), "data_map": (S.data_map(f), D.data_map(f)),
        "reg_map": (S.reg_map(F), D.reg_map(F)), "normal_dot": (S.normal_dot(F), D.normal_dot(F)),
        "data_map_dot": (S.data_map_dot(f), D.data_map_dot(f)), "rhs_dot": (S.rhs_dot(), D.rhs_dot()),
    }
    for name, (a, b) in pairs.items():
        assert a.shape == b.shape and _rel(a, b) < 1e-13, name
    B = _randn(pb.n_pixels, 4, seed=3)
    assert _rel(S.solve(B), D.solve(B)) < 1e-9  # banded Cholesky of N against dense Cholesky of M
    assert _rel(D.normal(S.solve(B)), B) < 1e-9
    # the comparison can fail: the operator at another motion differs far above round-off
    other = SparseNormal.build(pb, w + 1e-3)
    assert _rel(other.normal_dot(F), D.normal_dot(F)) > 1e-6 and _rel(other.normal(f), D.normal(f)) > 1e-6


def test_prefilter_solves_agree_with_the_dense_prefilter(pb):
    """Many columns take the tridiagonal solves, few the dense products: both are :math:`(P \\otimes P) X`."""
    m, P = pb.m, pb.prefilter.numpy()
    X = _randn(m * m, 400, seed=4).numpy()  # m * 400 columns: the solves
    ref = np.einsum("ab,cd,bdk->ack", P, P, X.reshape(m, m, -1)).reshape(m * m, -1)
    assert np.abs(_prefilter(X, P, m) - ref).max() < 1e-13 * np.abs(ref).max()
    assert np.abs(_prefilter(X[:, :2], P, m) - ref[:, :2]).max() < 1e-13 * np.abs(ref).max()


def test_sparse_derivative_taylor_order(pb, w):
    f = _randn(pb.n_pixels, seed=4)
    v = _randn(pb.n_params, seed=5)
    v = 1e-2 * v / torch.linalg.vector_norm(v)
    S = SparseNormal.build(pb, w)
    h = (1.0, 0.3, 0.1, 0.03, 0.01)
    res = il.taylor_test(lambda wv: SparseNormal.build(pb, wv).normal(f), w, v, S.normal_dot(f[:, None])[0] @ v, h=h)
    assert res.order(1) == pytest.approx(2.0, abs=0.15)
    res = il.taylor_test(lambda wv: SparseNormal.build(pb, wv).rhs(), w, v, S.rhs_dot() @ v, h=h)
    assert res.order(1) == pytest.approx(2.0, abs=0.15)
    # and it fails on a wrong derivative: half of it is first order
    res = il.taylor_test(lambda wv: SparseNormal.build(pb, wv).normal(f), w, v,
                         0.5 * S.normal_dot(f[:, None])[0] @ v, h=h)
    assert res.order(1) < 1.3


@pytest.mark.parametrize("variant", ["as_coded", "paper"])
@pytest.mark.parametrize("method, options", [("diff_all", {}), ("last_restarted", {"fraction": 0.7}),
                                             ("no_diff", {}), ("implicit", {})])
def test_varpro_sparse_path_agrees_with_the_generic_path(pb, w, sparse_only, variant, method, options):
    vp = paper.varpro_variant(pb, variant, method=method, cg_iters=30, tol=0.0, **options)
    wr = vp.reduced_parameters(w)
    assert isinstance(vp._assembled(wr), SparseNormal)
    r, J = vp.residual_and_jacobian(wr)
    with fast_paths(False):
        rg, Jg = vp.residual_and_jacobian(wr)
    limit = 1e-5 if method == "implicit" else 1e-9  # implicit: both stop at a relative residual of 1e-10
    assert _rel(r, rg) < limit and _rel(J, Jg) < limit


def test_varpro_sparse_jacobian_taylor_on_a_real_image(real_image_pngs, sparse_only):
    """Diff All on the sparse path is the exact derivative of its residual, on matplotlib's MRI slice."""
    pb = il.superresolution_problem(16, 2, 3, reference_path=real_image_pngs["mri"])
    vp = paper.varpro_variant(pb, "as_coded", method="diff_all", cg_iters=40, tol=0.0)
    wr = vp.reduced_parameters(pb.w_true + 0.01 * _randn(pb.n_params, seed=6))
    assert isinstance(vp._assembled(wr), SparseNormal)
    v = _randn(vp.n_params, seed=8)
    v = 0.05 * v / torch.linalg.vector_norm(v)
    res = il.taylor_test(vp.residual, wr, v, vp.jacobian(wr) @ v, h=(1.0, 0.3, 0.1, 0.03, 0.01))
    assert res.order(1) == pytest.approx(2.0, abs=0.2)
    run = il.varpro_levenberg_marquardt(vp, wr, max_iter=3)
    with fast_paths(False):
        generic = il.varpro_levenberg_marquardt(vp, wr, max_iter=3)
    assert run.rel_error == pytest.approx(generic.rel_error, rel=1e-6)


def test_assembly_is_chosen_by_size():
    big = il.superresolution_problem(64, 4, 2)
    assert DENSE_MAX_PIXELS < big.n_pixels <= SPARSE_MAX_PIXELS
    assert assembled_suitable(big, big.w_true) and isinstance(assemble(big, big.w_true), SparseNormal)
    small = il.superresolution_problem(12, 2, 2)
    assert isinstance(assemble(small, small.w_true), AssembledNormal)
    huge = SimpleNamespace(n_pixels=SPARSE_MAX_PIXELS + 1, device=torch.device("cpu"))
    assert not assembled_suitable(huge, big.w_true)  # the matrix-free path
    assert not assembled_suitable(big, big.w_true, adjoint="ad")
    with fast_paths(False):
        assert not assembled_suitable(big, big.w_true)
