"""Conjugate gradient (the authors' notebook CG): convergence, stopping rule, breakdown, the differentiation
switches, and the primal-value early break under jacfwd and vmap."""
import pytest
import torch
from torch.func import jacfwd, vmap

import imreg_lib as il
from imreg_lib.cg import cg_split

N = 30


def _spd(seed=0, shift=0.1):
    g = torch.Generator().manual_seed(seed)
    Q = torch.randn(N, N, generator=g, dtype=torch.float64)
    return Q @ Q.T + shift * torch.eye(N, dtype=torch.float64), torch.randn(N, generator=g, dtype=torch.float64)


def _naive_cg(M, b, x, max_iter, tol):
    """The spec's loop, literally (reference for iteration counts and iterates)."""
    r = b - M @ x
    p, rs = r.clone(), r @ r
    for k in range(max_iter):
        Ap = M @ p
        a = rs / (p @ Ap)
        x, r = x + a * p, r - a * Ap
        rs_new = r @ r
        if torch.sqrt(rs_new) < tol:
            return x, k + 1
        p, rs = r + rs_new / rs * p, rs_new
    return x, max_iter


def test_converges_and_reports_iterations():
    M, b = _spd()
    res = il.conjugate_gradient(lambda v: M @ v, b, torch.zeros(N, dtype=torch.float64), max_iter=500, tol=1e-10)
    assert res.converged and not res.breakdown and res.residual_norm < 1e-10
    torch.testing.assert_close(res.x, torch.linalg.solve(M, b), rtol=1e-8, atol=1e-8)
    x_ref, k_ref = _naive_cg(M, b, torch.zeros(N, dtype=torch.float64), 500, 1e-10)
    assert res.iterations == k_ref and res.differentiated == k_ref
    torch.testing.assert_close(res.x, x_ref, rtol=0, atol=1e-12)


def test_absolute_tolerance_and_fixed_counts():
    M, b = _spd(1)
    x0 = torch.zeros(N, dtype=torch.float64)
    for tol in (1e-1, 1e-4):
        res = il.conjugate_gradient(lambda v: M @ v, b, x0, max_iter=500, tol=tol)
        assert res.iterations == _naive_cg(M, b, x0, 500, tol)[1] and res.residual_norm < tol
    res = il.conjugate_gradient(lambda v: M @ v, b, x0, max_iter=7, tol=0.0)  # an inexact projection
    assert res.iterations == 7 and not res.converged
    res = il.conjugate_gradient(lambda v: M @ v, b, x0, max_iter=500, tol=0.0, rtol=1e-6)
    assert res.converged and res.residual_norm < 1e-6 * float(torch.linalg.vector_norm(b))


@pytest.mark.parametrize("bad", ["indefinite", "nan"])
def test_breakdown_stops_cleanly(bad):
    M, b = _spd(2)
    if bad == "indefinite":
        M = M - 1e3 * torch.eye(N, dtype=torch.float64)
    op = (lambda v: M @ v) if bad == "indefinite" else (lambda v: M @ v * float("nan"))
    res = il.conjugate_gradient(op, b, torch.zeros(N, dtype=torch.float64), max_iter=100, tol=1e-10)
    assert res.breakdown and not res.converged
    assert torch.isfinite(res.x).all()


@pytest.mark.parametrize("N_, p, mode, expected", [
    (200, 0.7, "last_restarted", (60, 140)), (200, 0.9, "last_restarted", (19, 180)),
    (200, 0.95, "last_restarted", (10, 190)), (200, 1.0, "last_restarted", (0, 200)),
    (200, 0.0, "last_restarted", (200, 0)), (200, 0.9, "last_continued", (20, 180)),
    (200, 0.5, "all", (0, 200)), (50, 0.5, "none", (50, 0)),
])
def test_split_keeps_python_int_truncation(N_, p, mode, expected):
    assert cg_split(N_, p, mode) == expected


def _solution(M, b, mode, fraction=1.0, max_iter=200, tol=0.0):
    def f(s):
        op = lambda v: M @ v + s * v  # noqa: E731
        const = lambda v: M @ v + s.detach() * v  # noqa: E731
        return il.conjugate_gradient(op, b, torch.zeros(N, dtype=torch.float64), max_iter=max_iter, tol=tol,
                                     differentiate=mode, fraction=fraction, constant_operator=const).x
    return f


def test_differentiation_switches():
    M, b = _spd(3, shift=1.0)
    s = torch.tensor(0.5, dtype=torch.float64)
    Minv = torch.linalg.inv(M + 0.5 * torch.eye(N, dtype=torch.float64))
    exact = -Minv @ (Minv @ b)
    torch.testing.assert_close(jacfwd(_solution(M, b, "all", tol=1e-12))(s), exact, rtol=1e-8, atol=1e-10)
    assert torch.count_nonzero(jacfwd(_solution(M, b, "none"))(s)) == 0
    torch.testing.assert_close(jacfwd(_solution(M, b, "last_continued", 1.0, 60))(s),
                               jacfwd(_solution(M, b, "all", 1.0, 60))(s), rtol=0, atol=0)


def test_restarted_and_continued_differ():
    M, b = _spd(4, shift=0.01)
    s = torch.tensor(0.0, dtype=torch.float64)
    n = 20  # far from convergence, so the Krylov sequences and their derivatives differ
    x_all = _solution(M, b, "all", 1.0, n)(s)
    x_cont = _solution(M, b, "last_continued", 0.5, n)(s)
    x_rest = _solution(M, b, "last_restarted", 0.5, n)(s)
    torch.testing.assert_close(x_cont, x_all, rtol=0, atol=1e-12)  # one sequence: the same iterates
    assert float(torch.linalg.vector_norm(x_rest - x_all)) > 1e-3 * float(torch.linalg.vector_norm(x_all))
    J_cont = jacfwd(_solution(M, b, "last_continued", 0.5, n))(s)
    J_rest = jacfwd(_solution(M, b, "last_restarted", 0.5, n))(s)
    assert float(torch.linalg.vector_norm(J_cont - J_rest)) > 1e-3 * float(torch.linalg.vector_norm(J_rest))


def test_early_break_on_primal_values_under_jacfwd():
    M, b = _spd(5, shift=1.0)
    plain = il.conjugate_gradient(lambda v: M @ v, b, torch.zeros(N, dtype=torch.float64), max_iter=500, tol=1e-6)
    counts = []

    def f(s):
        res = il.conjugate_gradient(lambda v: M @ v + s * v, b, torch.zeros(N, dtype=torch.float64), max_iter=500,
                                    tol=1e-6)
        counts.append(res.iterations)
        return res.x

    jacfwd(f)(torch.tensor(0.0, dtype=torch.float64))
    assert counts == [plain.iterations] and plain.iterations < 500


def test_vmap_over_right_hand_sides_matches_individual_solves():
    M, _ = _spd(6, shift=1.0)
    evals, evecs = torch.linalg.eigh(M)
    g = torch.Generator().manual_seed(7)
    # an eigenvector converges in one iteration, random vectors take many: the batch must mask per member
    B = torch.stack([evecs[:, 3], torch.randn(N, generator=g, dtype=torch.float64),
                     evecs[:, :3].sum(1), torch.randn(N, generator=g, dtype=torch.float64)])
    solve = lambda rhs: il.conjugate_gradient(lambda v: M @ v, rhs, torch.zeros(N, dtype=torch.float64),  # noqa: E731
                                              max_iter=500, tol=0.0, rtol=1e-9)
    X = vmap(lambda rhs: solve(rhs).x)(B)
    singles = [solve(rhs) for rhs in B]
    assert singles[0].iterations == 1 and singles[2].iterations <= 3 and singles[1].iterations > 10
    for x, single in zip(X, singles, strict=True):
        torch.testing.assert_close(x, single.x, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kw, match", [({"max_iter": -1}, "max_iter"), ({"fraction": 1.5}, "fraction"),
                                       ({"fraction": -0.1}, "fraction"), ({"differentiate": "some"}, "differentiate"),
                                       ({"tol": -1.0}, "tol"), ({"rtol": float("nan")}, "rtol")])
def test_bad_inputs(kw, match):
    M, b = _spd()
    args = {"max_iter": 10, **kw}
    with pytest.raises(ValueError, match=match):
        il.conjugate_gradient(lambda v: M @ v, b, torch.zeros(N, dtype=torch.float64), **args)
