"""The port of SciPy's trust-exact (imreg_lib._trust_exact) against SciPy itself: the same iterates, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import scipy
import scipy.optimize
import torch

import imreg_lib as il
from imreg_lib import _trust_exact

# The port follows SciPy 1.17's algorithm (the locked version); another SciPy may differ in its last bits.
SAME_SCIPY = tuple(int(v) for v in scipy.__version__.split(".")[:2]) == (1, 17)


def _scipy(evaluate, x0, **options):
    """SciPy's trust-exact on the same function, with one evaluation per distinct point."""
    memo = {}

    def at(x):
        key = x.tobytes()
        if key not in memo:
            memo.clear()
            memo[key] = evaluate(x)
        return memo[key]

    res = scipy.optimize.minimize(lambda x: at(x)[:2], x0, jac=True, hess=lambda x: at(x)[2],
                                  method="trust-exact", options=options)
    return res.x, res.nit, res.status, res.message


def _recorded(f):
    points = []

    def evaluate(x):
        if not points or points[-1].tobytes() != x.tobytes():
            points.append(x.copy())
        return f(x)
    return evaluate, points


def _rosen(x):
    return float(scipy.optimize.rosen(x)), scipy.optimize.rosen_der(x), scipy.optimize.rosen_hess(x)


def _saddle(x):
    """Indefinite near the start, with a gradient orthogonal to the negative curvature there (SciPy's hard case)."""
    f = x[0] ** 2 - x[1] ** 2 + x[1] ** 4 + 0.5 * x[2] ** 2 * (1 + x[0] ** 2)
    g = np.array([2 * x[0] + x[0] * x[2] ** 2, -2 * x[1] + 4 * x[1] ** 3, x[2] * (1 + x[0] ** 2)])
    H = np.array([[2 + x[2] ** 2, 0, 2 * x[0] * x[2]], [0, -2 + 12 * x[1] ** 2, 0],
                  [2 * x[0] * x[2], 0, 1 + x[0] ** 2]])
    return float(f), g, H


def _registration(pair, theta):
    scale = il.SSDObjective.from_pair(pair).at_scale(theta)

    def f(x):
        J, g, H = scale.derivatives(torch.from_numpy(x.copy()))
        return float(J), g.numpy(), (0.5 * (H + H.T)).numpy()
    return f


def _problems():
    rng = np.random.default_rng(7)
    for n in (2, 6, 12):
        for _ in range(4):
            yield _rosen, 2.0 * rng.normal(size=n), {}
    for x0 in ([1.0, 0.0, 1.0], [3.0, 0.0, -2.0], [1e-3, 1e-9, 5.0], *(3.0 * rng.normal(size=(4, 3)))):
        yield _saddle, np.asarray(x0, dtype=float), {}
    yield _rosen, np.array([-1.2, 1.0, -1.2, 1.0]), {"maxiter": 3}  # stops on the iteration limit
    hand = il.synthetic_hand_pair(16, motion={"angle_deg": 40.0}, device="cpu")
    yield _registration(hand, 1e-2), np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]), {"gtol": 1e-6}
    volume = il.data.synthetic_volume_motion_pair(8, motion={"angles_deg": [90.0, 30.0]}, device="cpu")
    # twelve parameters: hard cases with longer vectors in the singular-value estimate
    yield _registration(volume, 1.0), np.concatenate([np.eye(3).reshape(-1), np.zeros(3)]), {"gtol": 1e-6}


@pytest.mark.skipif(not SAME_SCIPY, reason="the port follows SciPy 1.17 bit for bit")
def test_the_port_takes_scipys_steps_bit_for_bit(monkeypatch):
    hard, failed = [0], [0]
    estimate, potrf = _trust_exact._smallest_singular_value, _trust_exact._POTRF

    def counting_estimate(U):
        hard[0] += 1
        return estimate(U)

    def counting_potrf(*args, **kwargs):
        U, info = potrf(*args, **kwargs)
        failed[0] += info > 0
        return U, info

    monkeypatch.setattr(_trust_exact, "_smallest_singular_value", counting_estimate)
    monkeypatch.setattr(_trust_exact, "_POTRF", counting_potrf)
    statuses = set()
    for f, x0, options in _problems():
        ours, our_points = _recorded(f)
        theirs, their_points = _recorded(f)
        res = _trust_exact.minimize(ours, x0, **options)
        x, nit, status, message = _scipy(theirs, x0, **options)
        assert res.x.tobytes() == x.tobytes() and (res.nit, res.status, res.message) == (nit, status, message)
        assert len(our_points) == len(their_points)
        assert all(a.tobytes() == b.tobytes() for a, b in zip(our_points, their_points, strict=True))
        statuses.add(res.status)
    # every branch of the subproblem ran (the hard case, a failed Cholesky factorisation) and three of the stops
    assert hard[0] > 0 and failed[0] > 0 and statuses == {0, 1, 2}


def test_the_port_minimises_and_reports():
    res = _trust_exact.minimize(_rosen, np.array([-1.2, 1.0]), gtol=1e-10)
    assert res.success and res.message == _trust_exact.MESSAGES[0]
    np.testing.assert_allclose(res.x, [1.0, 1.0], rtol=0, atol=1e-10)
    res = _trust_exact.minimize(_rosen, np.array([-1.2, 1.0]), maxiter=2)
    assert (res.nit, res.status, res.success) == (2, 1, False)


def test_the_port_refuses_a_hessian_that_is_not_finite():
    def bad(x):
        return 0.0, np.ones(2), np.full((2, 2), np.nan)
    with pytest.raises(ValueError, match="infs or NaNs"):
        _trust_exact.minimize(bad, np.zeros(2))


def test_newton_trust_region_runs_the_port(monkeypatch):
    calls = []
    real = _trust_exact.minimize
    monkeypatch.setattr(_trust_exact, "minimize", lambda *a, **k: calls.append(1) or real(*a, **k))
    w0 = torch.tensor([-1.2, 1.0], dtype=torch.float64)
    res = il.newton_trust_region(lambda w: tuple(torch.as_tensor(v) for v in _rosen(w.numpy())), w0, gtol=1e-9)
    assert calls and res.success
    il.newton_trust_region(lambda w: tuple(torch.as_tensor(v) for v in _rosen(w.numpy())), w0, gtol=1e-9,
                           method="trust-ncg")
    assert len(calls) == 1  # trust-ncg stays SciPy's
