"""Objective: structured derivatives = AD, Taylor tests in w (gradient, Hessian, HVP) and in θ."""
import pytest
import torch
from torch.func import grad, hessian, jvp

import imreg_lib as il

W0 = torch.tensor([0.97, 0.05, -0.04, 1.02, 0.3, -0.2], dtype=torch.float64)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("theta", [1e-3, 1.0, 1e2])
def test_structured_derivatives_equal_ad(objective32, theta):
    scale = objective32.at_scale(theta)
    J, dJ, H = scale.derivatives(W0)
    assert float(J) == pytest.approx(float(scale.loss(W0)), rel=1e-13)
    assert _rel(dJ, grad(scale.loss)(W0)) < 1e-10
    assert _rel(H, hessian(scale.loss)(W0)) < 1e-10
    # Gauss-Newton: the Hessian without the second-order term
    _, _, Hgn = scale.derivatives(W0, "gauss_newton")
    Jr = torch.func.jacfwd(scale.residual)(W0)
    assert _rel(Hgn, 2 * Jr.T @ Jr) < 1e-10
    assert scale.derivatives(W0, "none")[2] is None


def test_taylor_test_of_J_in_w(objective32, rng):
    scale = objective32.at_scale(1e-2)
    v = torch.randn(6, generator=rng, dtype=torch.float64) * torch.tensor([0.05] * 4 + [0.5] * 2)
    J, dJ, H = scale.derivatives(W0)
    res = il.taylor_test(scale.loss, W0, v, dJ @ v, v @ H @ v, h=tuple(10.0 ** -k for k in range(0, 6)))
    assert res.order(0) == pytest.approx(1.0, abs=0.1)
    assert res.order(1) > 1.9 and res.order(2) > 2.9
    # Hessian-vector products by forward-over-reverse AD: Taylor test of the gradient map
    hvp = jvp(grad(scale.loss), (W0,), (v,))[1]
    torch.testing.assert_close(hvp, H @ v, rtol=1e-10, atol=1e-8)
    res_g = il.taylor_test(grad(scale.loss), W0, v, hvp, h=tuple(10.0 ** -k for k in range(0, 6)))
    assert res_g.order(1) > 1.9


def test_residual_jacobian(objective32, rng):
    """The structured residual Jacobian (Levenberg-Marquardt's J_r): equal to AD and second order in Taylor."""
    scale = objective32.at_scale(1e-2)
    Jr = scale.residual_jacobian(W0)
    assert Jr.shape == (32 * 32, 6)
    assert _rel(Jr, torch.func.jacfwd(scale.residual)(W0)) < 1e-10
    v = torch.randn(6, generator=rng, dtype=torch.float64) * torch.tensor([0.05] * 4 + [0.5] * 2)
    res = il.taylor_test(scale.residual, W0, v, Jr @ v, h=tuple(10.0 ** -k for k in range(0, 6)))
    assert res.order(0) == pytest.approx(1.0, abs=0.1) and res.order(1) > 1.9


def test_wrong_derivative_is_detected(objective32, rng):
    """The Taylor test must fail for a wrong derivative (here: the Gauss-Newton matrix as 'Hessian')."""
    scale = objective32.at_scale(1e-2)
    v = torch.randn(6, generator=rng, dtype=torch.float64) * 0.1
    _, dJ, Hgn = scale.derivatives(W0, "gauss_newton")
    res = il.taylor_test(scale.loss, W0, v, dJ @ v, v @ Hgn @ v, h=tuple(10.0 ** -k for k in range(0, 6)))
    assert res.order(2) < 2.5
    res1 = il.taylor_test(scale.loss, W0, v, 1.01 * (dJ @ v), h=tuple(10.0 ** -k for k in range(0, 6)))
    assert res1.order(1) < 1.5


def test_theta_derivative_of_gradient(objective32):
    th = 0.5
    rhs = objective32.theta_derivative_of_gradient(W0, th)
    g = lambda t: objective32.at_scale(t).derivatives(W0, "none")[1]  # noqa: E731
    eps = 1e-5
    fd = (g(th + eps) - g(th - eps)) / (2 * eps)
    torch.testing.assert_close(rhs, fd, rtol=1e-6, atol=1e-4)
    # structured (exact dc/dθ, one spline pass) and AD through the coefficient solve agree
    ad = objective32.theta_derivative_of_gradient(W0, th, method="ad")
    assert _rel(rhs, ad) < 1e-10
    with pytest.raises(ValueError, match="method"):
        objective32.theta_derivative_of_gradient(W0, th, method="fd")
    # the tensor-θ path is the same function as the cached one
    t = torch.tensor(th, dtype=torch.float64)
    assert float(objective32.loss(W0, t)) == pytest.approx(float(objective32.loss(W0, th)), rel=1e-12)


def test_3d_objective():
    gen = torch.Generator().manual_seed(3)
    g = il.Grid((0, 4, 0, 5, 0, 6), (6, 7, 8))
    base = torch.rand(g.m, generator=gen, dtype=torch.float64)
    T = il.SplineImage(base, g)
    R = il.SplineImage(torch.roll(base, 1, 0), g)
    obj = il.SSDObjective(T, R, il.Affine(3))
    w = obj.identity() + 0.01 * torch.randn(12, generator=gen, dtype=torch.float64)
    scale = obj.at_scale(1e-2)
    J, dJ, H = scale.derivatives(w)
    assert H.shape == (12, 12)
    assert _rel(dJ, grad(scale.loss)(w)) < 1e-10 and _rel(H, hessian(scale.loss)(w)) < 1e-10


def test_regularizer_hook(objective32):
    alpha = 3.0
    w_ref = objective32.identity()
    reg = lambda w: 0.5 * alpha * torch.sum((w - w_ref) ** 2)  # noqa: E731
    obj = il.SSDObjective(objective32.template, objective32.reference, regularizer=reg)
    scale, plain = obj.at_scale(1e-2), objective32.at_scale(1e-2)
    J, dJ, H = scale.derivatives(W0)
    J0, dJ0, H0 = plain.derivatives(W0)
    assert float(J - J0) == pytest.approx(float(reg(W0)))
    torch.testing.assert_close(dJ - dJ0, alpha * (W0 - w_ref))
    torch.testing.assert_close(H - H0, alpha * torch.eye(6, dtype=torch.float64))
    assert float(scale.loss(W0)) == pytest.approx(float(J))


def test_objective_bad_input(hand32):
    g = hand32.grid
    T = il.SplineImage(hand32.template, g)
    small = il.synthetic_hand_pair(16, device="cpu")
    with pytest.raises(ValueError, match="same size"):
        il.SSDObjective(T, il.SplineImage(small.reference, small.grid))
    with pytest.raises(ValueError, match="3D"):
        il.SSDObjective(T, il.SplineImage(hand32.reference, g), il.Affine(3))
    with pytest.raises(ValueError, match="hessian_kind"):
        il.SSDObjective(T, il.SplineImage(hand32.reference, g)).at_scale(1.0).derivatives(W0, "bfgs")


def test_the_right_hand_side_reuses_the_correctors_last_evaluation_only(objective32):
    """At the tensor the corrector last evaluated with its Hessian, the predictor's right-hand side reuses that
    evaluation's points and values (one gather of dc/dθ); anywhere else, or after a change in place, it computes
    them."""
    problem = il.SSDObjective(objective32.template, objective32.reference)
    scale = problem.at_scale(0.5)
    ad = problem.theta_derivative_of_gradient(W0, 0.5, method="ad")
    w = W0.clone()
    fresh = scale.theta_derivative_of_gradient(w)
    assert _rel(fresh, ad) < 1e-10 and not problem._seen
    scale.derivatives(w)
    assert problem._seen["last"][1] is w
    reused = scale.theta_derivative_of_gradient(w)
    assert _rel(reused, ad) < 1e-10 and _rel(reused, fresh) < 1e-13
    scale.derivatives(W0 + 0.1, "none")  # a value without a Hessian (a diagnostic) leaves the record alone
    assert problem._seen["last"][1] is w
    # the reuse is real: stale values planted in the record move the result; a new tensor or one changed in place
    # is not taken for the recorded one, nor is the record taken at another scale
    planted = problem._seen["last"]
    problem._seen["last"] = (*planted[:3], planted[3] + 1.0, *planted[4:])  # ∂D/∂r
    assert _rel(scale.theta_derivative_of_gradient(w), ad) > 1e-3
    assert _rel(scale.theta_derivative_of_gradient(w.clone()), ad) < 1e-10
    other = problem.at_scale(0.25)
    assert _rel(other.theta_derivative_of_gradient(w),
                problem.theta_derivative_of_gradient(W0, 0.25, method="ad")) < 1e-10
    w[4] += 0.0
    assert _rel(scale.theta_derivative_of_gradient(w), ad) < 1e-10


def test_a_kept_iterate_outlives_later_trial_points_and_two_points_at_most_are_held(objective32):
    """A corrector's iterate kept with ``keep`` is reused after trial points were evaluated; one record replaces
    another, so that a run over many scales holds the located points of two points at most (not one per scale)."""
    problem = il.SSDObjective(objective32.template, objective32.reference)
    scale = problem.at_scale(0.5)
    w, trial = W0.clone(), W0 + 0.05
    scale.derivatives(w)
    scale.keep(trial)  # not the point evaluated last: nothing is kept
    assert "kept" not in problem._seen
    scale.keep(w)
    planted = problem._seen["kept"]
    problem._seen["kept"] = (*planted[:3], planted[3] + 1.0, *planted[4:])  # stale ∂D/∂r: visible if reused
    scale.derivatives(trial)  # a trial point evaluated after the iterate
    ad = problem.theta_derivative_of_gradient(W0, 0.5, method="ad")
    assert _rel(scale.theta_derivative_of_gradient(w), ad) > 1e-3  # the kept record, not a recomputation
    assert _rel(scale.theta_derivative_of_gradient(trial),
                problem.theta_derivative_of_gradient(trial, 0.5, method="ad")) < 1e-10
    for theta in (2.0, 1.0, 0.25, 0.125):
        v = W0.clone()
        problem.at_scale(theta).derivatives(v)
        problem.at_scale(theta).keep(v)
    assert set(problem._seen) == {"last", "kept"}
    assert all(entry[0] is problem.at_scale(0.125) for entry in problem._seen.values())


def test_theta_tangents_of_a_schedule_are_computed_once_and_equal_one_at_a_time(objective32):
    obj = il.SSDObjective(objective32.template, objective32.reference)
    thetas = [10.0, 1.0, 0.1, 1.0]
    tangents = obj.theta_tangents(thetas)
    assert len(obj._tangents) == 3 and tangents[1][0] is tangents[3][0]  # repeats and later calls hit the cache
    assert obj.at_scale(0.1)._theta_tangents[0] is tangents[2][0]
    for theta, (dc, dR) in zip(thetas, tangents, strict=True):
        t = torch.tensor(theta, dtype=torch.float64)
        dc_ad = jvp(obj.template.coefficients, (t,), (torch.ones_like(t),))[1]
        dR_ad = jvp(obj.reference.on_grid, (t,), (torch.ones_like(t),))[1].reshape(-1)
        assert _rel(dc, dc_ad) < 1e-12 and _rel(dR, dR_ad) < 1e-12
    # the predictor's padded copy is the tangent padded once, and its gather the same numbers as from the tangent
    from imreg_lib.spline import _gradients_at, _pad, _padded_gradients_at, _points
    dc, _, padded = obj._tangent(0.1)
    assert torch.equal(padded, _pad(dc, 2).reshape(-1))
    points = _points(obj.x * 0.9 + 0.7, obj.grid, "paper", 1)
    for a, b in zip(_padded_gradients_at(padded, 1, points), _gradients_at(dc[None], points), strict=True):
        assert torch.equal(a, b)


def test_objective_of_a_pair():
    pair = il.synthetic_hand_pair(8)
    obj = il.SSDObjective.from_pair(pair)
    assert isinstance(obj.transformation, il.Affine) and obj.grid == pair.grid and not obj.overlap
    assert torch.equal(obj.template.data, pair.template) and torch.equal(obj.reference.data, pair.reference)
    rigid = il.SSDObjective.from_pair(pair, il.NeuralODE(), overlap=True)
    assert isinstance(rigid.transformation, il.NeuralODE) and rigid.overlap
    volume = il.SSDObjective.from_pair(il.data.synthetic_volume_motion_pair(6))
    assert volume.transformation.dim == 3
