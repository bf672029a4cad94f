"""The global driver: the exact trust-region step, Newton against SciPy's trust-exact, the rotation search, and
recovery of motions that the identity start loses, on the synthetic hand and on a real image (matplotlib's MRI)."""

import math

import numpy as np
import pytest
import torch

import imreg_lib as il
from imreg_lib.data import moved_pair, sample_image
from imreg_lib.globalreg import _trust_step, global_register, newton_exact, rotation_starts
from imreg_lib.paper import peers


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("radius", [0.05, 1.0, 100.0])
def test_trust_step_satisfies_the_optimality_conditions(seed, radius):
    # p solves min g.p + p.H.p/2 over |p| <= radius iff (H + mu I) p = -g, H + mu I >= 0, mu >= 0 and
    # mu (radius - |p|) = 0 (More and Sorensen); indefinite H included
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((6, 6)))[0]
    H = Q @ np.diag(rng.uniform(-2.0, 3.0, 6)) @ Q.T
    g = rng.standard_normal(6)
    p = _trust_step(g, H, radius)
    norm = np.linalg.norm(p)
    assert norm <= radius * (1 + 1e-6)
    mu = 0.0 if norm < radius * (1 - 1e-6) else -float(p @ (H @ p + g)) / float(p @ p)
    assert mu >= -1e-8
    assert np.linalg.norm((H + mu * np.eye(6)) @ p + g) <= 1e-6 * (1 + np.linalg.norm(g))
    assert np.linalg.eigvalsh(H + mu * np.eye(6)).min() >= -1e-6 * np.abs(H).max()
    # and no random point of the ball does better (a wrong sign or a missed boundary fails this)
    model = lambda q: g @ q + 0.5 * q @ H @ q  # noqa: E731
    trial = rng.standard_normal((2000, 6))
    trial *= (radius * rng.uniform(0, 1, (2000, 1)) ** (1 / 6)) / np.linalg.norm(trial, axis=1, keepdims=True)
    assert model(p) <= min(model(q) for q in trial) + 1e-9 * (1 + abs(model(p)))


def test_trust_step_with_a_negative_eigenvalue_far_beyond_the_positive_ones_stays_finite():
    # lambda = (-5e10, 1.4e4): the first shift past -lambda_min, 1e-10 of the largest positive eigenvalue, is below
    # the spacing of floating-point numbers near 5e10; it used to divide by zero and return no step
    g, H = np.array([1.0, 1.0]), np.diag([-5e10, 1.4e4])
    with np.errstate(all="raise"):
        p = _trust_step(g, H, 0.5)
    assert np.linalg.norm(p) == pytest.approx(0.5, rel=1e-6)
    assert g @ p + 0.5 * p @ H @ p == pytest.approx(-0.5 - 0.125 * 5e10, rel=1e-9)  # to the boundary along e_0


def test_newton_exact_finds_scipys_minimiser():
    pair = il.synthetic_hand_pair(24, motion={"angle_deg": 15.0})
    objective = il.SSDObjective.from_pair(pair)
    scale = objective.at_scale(1.0)
    w0 = objective.identity()
    # 1e-6: above the gradient's round-off floor (|∇J| stalls near 1e-7 on some CPUs' code paths)
    ours = newton_exact(scale.derivatives, w0, gtol=1e-6)
    scipy_run = il.newton_trust_region(scale.derivatives, w0, gtol=1e-6)
    assert ours.converged and ours.grad_norm < 1e-6
    assert torch.allclose(ours.w, scipy_run.w, atol=1e-6)
    assert ours.n_evaluations <= scipy_run.n_hessians + 5


def test_newton_exact_lets_the_gradient_decide_where_j_cannot_resolve_the_decrease():
    # J = 1e12 + |w|^2 / 2: from |g| = 1e-3 the Newton step predicts a decrease of 5e-7, below J's spacing (1.2e-4),
    # so the computed decrease is 0 and rho = 0. Rejecting on rho alone shrinks the radius to nothing and stops at
    # |g| = 1e-3; the step lowers |g| to 0, which decides
    def derivatives(w):
        return 1e12 + 0.5 * (w @ w), w.clone(), torch.eye(2, dtype=w.dtype)

    res = newton_exact(derivatives, torch.tensor([6e-4, 8e-4], dtype=torch.float64), gtol=1e-6)
    assert res.converged and res.grad_norm < 1e-6 and res.n_evaluations == 2
    # a step that J resolves still goes by rho: a trial that raises J is rejected though |g| falls
    def bumpy(w):
        J = 0.5 * (w @ w) + 1e3 * float(torch.all(w.abs() < 1e-5))  # a jump up at the minimum
        return J, w.clone(), torch.eye(2, dtype=w.dtype)

    res = newton_exact(bumpy, torch.tensor([0.6, 0.8], dtype=torch.float64), gtol=1e-6)
    assert not res.converged and res.w.abs().max() > 1e-5


def test_newton_exact_converges_on_a_real_image_below_the_round_off_of_j():
    # the MRI slice turned 30 degrees: from the global driver's result (|g| ~ 1e-4) one Newton step predicts a
    # decrease below the round-off of J (~ 1e4, a sum over 1,024 cells) and reaches |g| ~ 1e-8; judged by rho alone
    # it was rejected at random and the run stopped above gtol
    pair = moved_pair(sample_image("mri", device="cpu"), (0.0, 20.0, 0.0, 20.0), 32, motion={"angle_deg": 30.0},
                      device="cpu")
    objective = il.SSDObjective.from_pair(pair)
    w = global_register(objective).w
    res = newton_exact(objective.at_scale(1e-3).derivatives, w, gtol=1e-6)
    assert res.converged and res.grad_norm < 1e-6


def test_newton_exact_checks_its_options():
    scale = il.SSDObjective.from_pair(il.synthetic_hand_pair(8)).at_scale(1.0)
    with pytest.raises(ValueError, match="gtol"):
        newton_exact(scale.derivatives, torch.zeros(6, dtype=torch.float64), gtol=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        newton_exact(scale.derivatives, torch.zeros(6, dtype=torch.float64), max_iter=0)


def test_rotation_starts_are_rotations_between_the_domain_centres():
    objective = il.SSDObjective.from_pair(il.synthetic_hand_pair(8))
    W = rotation_starts(objective, 12)
    assert W.shape == (12, 6)
    c = torch.tensor(objective.grid.center(), dtype=torch.float64)
    for w in W:
        A = w[:4].reshape(2, 2)
        assert torch.allclose(A @ A.T, torch.eye(2, dtype=torch.float64), atol=1e-12)
        assert torch.allclose(il.affine(w, c[None])[0], c, atol=1e-12)
    volume = il.SSDObjective.from_pair(il.data.synthetic_volume_motion_pair(6))
    assert rotation_starts(volume, 12, (30.0,)).shape == (12 * 5, 12)
    # an orientation is applied after each rotation, still about the centres: a reflection no rotation reaches
    O = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    for w, w_o in zip(W, rotation_starts(objective, 12, orientation=O), strict=True):
        assert torch.allclose(w_o[:4].reshape(2, 2), O @ w[:4].reshape(2, 2), atol=1e-15)
        assert torch.allclose(il.affine(w_o, c[None])[0], c, atol=1e-12)
    with pytest.raises(ValueError, match="orientation must be an invertible 2 x 2"):
        rotation_starts(objective, 12, orientation=torch.zeros(2, 2))


def test_a_start_the_caller_trusts_is_refined_besides_the_search():
    # the hand mirrored (y -> -y about the centre) and turned 10°: no rotation start reaches a reflection, the
    # mirrored extra start does, and its refined minimum wins over the search's best
    pair = il.synthetic_hand_pair(32, motion={"angle_deg": 10.0})
    grid = pair.grid
    c = torch.tensor(grid.center(), dtype=torch.float64)
    O = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    flip = torch.cat([O.reshape(-1), c - O @ c])
    mirrored = il.affine(flip, grid.cell_centers(dtype=torch.float64))
    T = il.SplineImage(pair.template, grid)(mirrored).reshape(grid.m)  # T(flip(x)): the template mirrored
    objective = il.SSDObjective(il.SplineImage(T, grid), il.SplineImage(pair.reference, grid)).with_overlap()
    A, b = pair.w_true[:4].reshape(2, 2), pair.w_true[4:]
    w_true = torch.cat([(O @ A).reshape(-1), O @ b + c - O @ c])  # flip ∘ y_true: flip is its own inverse
    alone = global_register(objective)
    trusted = global_register(objective, extra_starts=flip)
    assert len(trusted.refined_losses) == 2 and torch.equal(trusted.start, flip)
    assert peers.motion_error(trusted.w, w_true, grid) < peers.SUCCESS_CELLS
    assert peers.motion_error(alone.w, w_true, grid) > 10 * peers.SUCCESS_CELLS
    assert trusted.final_loss < 0.1 * alone.final_loss
    # select="final": both coarse minima are continued (they are far apart), the score picks the mirrored one
    seen = []
    final = global_register(objective, extra_starts=flip, select="final", callback=seen.append,
                            score=lambda w: float(objective.loss(w, 1e-3)))
    assert {s.path for s in seen if s.theta == 10.0} == {0, 1}
    assert peers.motion_error(final.w, w_true, grid) < peers.SUCCESS_CELLS


def test_continuations_that_meet_go_on_as_one():
    # the search's best and two copies of it as extra starts reach the same coarse minimum: one continuation
    objective = il.SSDObjective.from_pair(il.synthetic_hand_pair(24, motion={"angle_deg": 15.0}))
    seen = []
    one = global_register(objective)
    found = global_register(objective, extra_starts=torch.stack([one.start, one.start]), select="final",
                            callback=seen.append)
    assert {s.path for s in seen} == {0} and len(found.refined_losses) == 3
    assert torch.allclose(found.w, one.w, atol=1e-6)
    with pytest.raises(ValueError, match="select"):
        global_register(objective, select="best")
    with pytest.raises(ValueError, match="score must be None or a function"):
        global_register(objective, select="final", score=3.0)


@pytest.mark.parametrize("angle", [135.0, 150.0])
def test_the_search_recovers_what_the_identity_start_loses_on_the_hand(angle):
    pair = il.synthetic_hand_pair(32, motion={"angle_deg": angle})
    objective = il.SSDObjective.from_pair(pair)
    found = global_register(objective)
    assert peers.motion_error(found.w, pair.w_true, pair.grid) < peers.SUCCESS_CELLS
    # without the search (one start: the identity) the same continuation fails: the search is what recovers it
    alone = global_register(objective, n_angles=1)
    assert peers.motion_error(alone.w, pair.w_true, pair.grid) > 10 * peers.SUCCESS_CELLS
    assert len(found.search_losses) == 12 and found.scales[-1].theta == pytest.approx(1e-3)


@pytest.mark.parametrize("angle", [90.0, 180.0])
def test_the_global_driver_recovers_a_real_image_turned(angle):
    pair = moved_pair(sample_image("mri"), (0.0, 20.0, 0.0, 20.0), 32, motion={"angle_deg": angle})
    found = global_register(il.SSDObjective.from_pair(pair))
    assert peers.motion_error(found.w, pair.w_true, pair.grid) < peers.SUCCESS_CELLS
    search = math.degrees(math.atan2(float(found.start[2]), float(found.start[0]))) % 360
    assert min(abs(search - angle), 360 - abs(search - angle)) <= 30.0


def test_the_global_driver_recovers_a_3d_rotation_about_z():
    pair = il.data.synthetic_volume_motion_pair(12, motion={"angles_deg": (130.0, 0.0)})
    found = global_register(il.SSDObjective.from_pair(pair))
    assert peers.motion_error(found.w, pair.w_true, pair.grid) < peers.SUCCESS_CELLS


def test_a_coarse_grid_takes_the_smooth_scales_and_recovers_the_same_motion():
    # 3D, 130° about z: the coarse objective (half the cells per dimension) takes the search, the refinement and
    # the scales above theta_fine; the fine one the rest, and the motion found is the fine-only run's
    pair = il.data.synthetic_volume_motion_pair(16, motion={"angles_deg": (130.0, 0.0)})
    objective = il.SSDObjective.from_pair(pair).with_overlap()
    half = il.Grid(pair.grid.omega, (8, 8, 8))
    pool = torch.nn.functional.adaptive_avg_pool3d
    coarse = il.SSDObjective(il.SplineImage(pool(pair.template[None, None], half.m)[0, 0], half),
                             il.SplineImage(pool(pair.reference[None, None], half.m)[0, 0], half),
                             il.Affine(3)).with_overlap()
    seen = []
    found = global_register(objective, coarse_objective=coarse, theta_fine=0.05, callback=seen.append)
    fine = global_register(objective)
    assert peers.motion_error(found.w, pair.w_true, pair.grid) < peers.SUCCESS_CELLS
    # the same minimiser, reached by other iterates (7e-11 apart here); the tolerance is what two runs that stop at
    # |∇J| < gtol from different sides may differ by, not a round-off spread
    assert torch.allclose(found.w, fine.w, atol=1e-6)
    assert found.final_loss == pytest.approx(float(objective.loss(found.w, 1e-3)), rel=1e-12)
    coarse_losses = [s.loss for s in seen if s.theta > 0.05]
    fine_losses = [s.loss for s in fine.scales if s.theta > 0.05]
    assert coarse_losses and all(a != pytest.approx(b, rel=1e-3)
                                 for a, b in zip(coarse_losses, fine_losses, strict=True))
    with pytest.raises(ValueError, match="theta_fine must be at least theta_min"):
        global_register(objective, coarse_objective=coarse, theta_fine=1e-4)
    other = il.SSDObjective(coarse.template, il.SplineImage(coarse.reference.data, il.Grid((0, 1) * 3, (8, 8, 8))),
                            il.Affine(3))
    with pytest.raises(ValueError, match="coarse_objective must be"):
        global_register(objective, coarse_objective=other.with_overlap())


@pytest.mark.parametrize("angle", [75.0, 105.0])
def test_on_the_overlap_the_global_driver_recovers_the_hand_where_the_ssd_cannot(angle):
    pair = il.synthetic_hand_pair(32, motion={"angle_deg": angle})
    objective = il.SSDObjective.from_pair(pair)
    found = global_register(objective.with_overlap())
    assert peers.motion_error(found.w, pair.w_true, pair.grid) < peers.SUCCESS_CELLS
    on_ssd = global_register(objective)
    assert peers.motion_error(on_ssd.w, pair.w_true, pair.grid) > peers.SUCCESS_CELLS


def test_global_register_checks_its_inputs():
    objective = il.SSDObjective.from_pair(il.synthetic_hand_pair(8))
    with pytest.raises(ValueError, match="theta_search must be larger"):
        global_register(objective, theta_search=1e-4)
    with pytest.raises(ValueError, match="keep"):
        global_register(objective, keep=0)
    with pytest.raises(ValueError, match="n_angles"):
        global_register(objective, n_angles=0)
    ode = il.SSDObjective(objective.template, objective.reference, il.NeuralODE())
    with pytest.raises(ValueError, match="Affine"):
        global_register(ode)


def test_moved_pair_moves_the_image_by_the_known_map():
    image = sample_image("mri")
    pair = moved_pair(image, (0.0, 20.0, 0.0, 20.0), 32, motion={"angle_deg": 30.0})
    objective = il.SSDObjective.from_pair(pair)
    # the known map aligns the pair far better than the identity (interpolation and averaging only)
    assert float(objective.loss(pair.w_true, 1e-3)) < 0.02 * float(objective.loss(objective.identity(), 1e-3))
    with pytest.raises(ValueError, match="motion has unknown keys"):
        moved_pair(image, (0.0, 20.0, 0.0, 20.0), 32, motion={"angle": 3.0})
    with pytest.raises(ValueError, match="image must be a 2D tensor"):
        moved_pair(image[None], (0.0, 20.0, 0.0, 20.0), 32)


def test_sample_images_are_real_and_upright():
    mri = sample_image("mri")
    assert mri.shape == (256, 256) and float(mri.max()) == pytest.approx(255.0) and float(mri.std()) > 20
    with pytest.raises(ValueError, match="name"):
        sample_image("lena")


def test_closed_form_theta_derivative_of_the_coefficients_matches_jvp():
    for pair in (il.synthetic_hand_pair(16), il.data.synthetic_volume_motion_pair(6)):
        image = il.SplineImage(pair.template, pair.grid)
        for theta in (1e-3, 1.0, 1e3):
            t = torch.tensor(theta, dtype=torch.float64)
            ad = torch.func.jvp(image.coefficients, (t,), (torch.ones_like(t),))[1]
            closed = image.coefficients_theta_derivative(theta)
            assert float((ad - closed).abs().max()) <= 1e-13 * float(ad.abs().max())


def test_the_predictors_right_hand_side_reuses_the_last_point_exactly():
    objective = il.SSDObjective.from_pair(il.synthetic_hand_pair(16))
    scale = objective.at_scale(0.5)
    w = objective.identity() + 0.01
    fresh = scale.theta_derivative_of_gradient(w.clone())  # no reuse: another tensor
    scale.derivatives(w, "exact")
    reused = scale.theta_derivative_of_gradient(w)
    assert torch.allclose(reused, fresh, rtol=1e-12, atol=1e-9 * float(fresh.abs().max()))
    w.add_(0.01)  # changed in place: the saved values must not be used
    moved = scale.theta_derivative_of_gradient(w)
    assert torch.allclose(moved, scale.theta_derivative_of_gradient(w.clone()), rtol=1e-12)
