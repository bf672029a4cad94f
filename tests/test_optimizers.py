"""Optimizers on problems with known solutions; the Levenberg-Marquardt history semantics of the authors' lsq_lma."""
import numpy as np
import pytest
import scipy.optimize
import torch

import imreg_lib as il

T = torch.linspace(0.0, 2.0, 12, dtype=torch.float64)
Y = 2.5 * torch.exp(-1.3 * T) + 0.01 * torch.sin(7.0 * T)  # nearly an exponential: a small nonzero residual


def residual(w):
    return w[0] * torch.exp(-w[1] * T) - Y


def jacobian(w):
    return torch.func.jacfwd(residual)(w)


def test_lm_matches_scipy_least_squares():
    w0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    res = il.levenberg_marquardt(residual, jacobian, w0, gtol=1e-10, max_iter=200)
    ref = scipy.optimize.least_squares(lambda w: residual(torch.as_tensor(w)).numpy(), w0.numpy(), xtol=1e-15,
                                       ftol=1e-15, gtol=1e-15)
    assert res.success and res.message == "gtol satisfied"
    np.testing.assert_allclose(res.w.numpy(), ref.x, rtol=1e-8)
    assert res.loss == pytest.approx(float(residual(res.w) @ residual(res.w)), rel=1e-12)
    Jm = jacobian(res.w)
    torch.testing.assert_close(res.hessian, Jm.T @ Jm)


def test_lm_history_semantics():
    w0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    res = il.levenberg_marquardt(residual, jacobian, w0, gtol=1e-30, max_iter=10)
    assert len(res.points) == len(res.losses) == len(res.grad_norms) == 10  # max_iter counts recorded points
    assert res.iterations == 9 and len(res.accepted) == 9 and not res.success
    assert res.points[0] is w0
    for k, ok in enumerate(res.accepted):  # a rejected step records the previous point and its loss again
        if not ok:
            assert torch.equal(res.points[k + 1], res.points[k]) and res.losses[k + 1] == res.losses[k]
        else:
            assert res.losses[k + 1] < res.losses[k]
    # one residual per distinct trial point, one Jacobian per accepted point (nothing evaluated twice)
    assert res.n_residuals == 1 + 9 and res.n_jacobians == 1 + sum(res.accepted)


def test_lm_records_rejections():
    # a tiny initial damping on a strongly nonlinear residual forces rejected steps
    w0 = torch.tensor([0.1, 5.0], dtype=torch.float64)
    res = il.levenberg_marquardt(residual, jacobian, w0, gtol=1e-14, max_iter=30, tau=1e-12)
    assert not all(res.accepted)
    assert all(b <= a for a, b in zip(res.losses, res.losses[1:], strict=False))  # only improvements accepted


@pytest.mark.parametrize("kw, match", [({"max_iter": 0}, "max_iter"), ({"gtol": 0.0}, "gtol"),
                                       ({"tau": -1.0}, "tau"), ({"ptol": float("nan")}, "ptol")])
def test_lm_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        il.levenberg_marquardt(residual, jacobian, torch.ones(2, dtype=torch.float64), **kw)


def test_lm_bad_start():
    with pytest.raises(ValueError, match="w0"):
        il.levenberg_marquardt(residual, jacobian, torch.ones(2, 1, dtype=torch.float64))


def _rosenbrock(w):
    J = (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2
    return J, torch.func.grad(lambda v: (1 - v[0]) ** 2 + 100 * (v[1] - v[0] ** 2) ** 2)(w), \
        torch.func.hessian(lambda v: (1 - v[0]) ** 2 + 100 * (v[1] - v[0] ** 2) ** 2)(w)


@pytest.mark.parametrize("method", ["trust-exact", "trust-ncg"])
def test_newton_trust_region(method):
    res = il.newton_trust_region(_rosenbrock, torch.tensor([-1.2, 1.0], dtype=torch.float64), gtol=1e-9,
                                 method=method)
    assert res.success and res.grad_norm < 1e-9
    torch.testing.assert_close(res.w, torch.ones(2, dtype=torch.float64))
    assert res.n_hessians <= res.iterations + 2  # one (J, ∇J, H) evaluation per distinct point
    J0, dJ0, _ = _rosenbrock(torch.tensor([-1.2, 1.0], dtype=torch.float64))
    assert res.initial_loss == float(J0) and res.initial_grad_norm == float(torch.linalg.vector_norm(dJ0))


def test_newton_bad_method():
    with pytest.raises(ValueError, match="method"):
        il.newton_trust_region(_rosenbrock, torch.zeros(2, dtype=torch.float64), method="bfgs")
    with pytest.raises(ValueError, match="maxiter"):
        il.newton_trust_region(_rosenbrock, torch.zeros(2, dtype=torch.float64), maxiter=0)


def test_newton_evaluates_no_point_twice_when_the_run_ends_on_a_rejected_trial():
    # J = 1e12 + |w|^2 / 2 from |g| = 1e-3: the model's decrease (5e-7) is below J's spacing (1.2e-4), so SciPy's rule
    # stops at the first trial point with "a bad approximation". The result is the start, whose values the run has.
    points = []

    def derivatives(w):
        points.append(w.clone())
        return 1e12 + 0.5 * (w @ w), w.clone(), 2.0 * torch.eye(2, dtype=w.dtype)

    w0 = torch.tensor([1e-3, 0.0], dtype=torch.float64)
    res = il.newton_trust_region(derivatives, w0, gtol=1e-9)
    assert not res.success and "bad approximation" in res.message
    assert len(points) == 2 and not torch.equal(points[0], points[1])  # the start and one rejected trial
    assert res.n_hessians == 2  # not 3: the start is not evaluated again for the result
    assert torch.equal(res.w, w0) and res.loss == 1e12 + 0.5e-6 and res.grad_norm == 1e-3
    torch.testing.assert_close(res.hessian, 2.0 * torch.eye(2, dtype=torch.float64), rtol=0, atol=0)
    assert res.w.dtype == w0.dtype and res.hessian.dtype == w0.dtype
