"""The library's multi-scale solvers (imreg_lib.multiscale): the predictor step is the Euler step, the predictor's
Hessian hook, the checks of schedules, options and starts, and the plotting helpers. The paper layer's Fig. 2 and
Fig. 3 machinery is tested in test_paper_multiscale.py."""
import time

import numpy as np
import pytest
import torch

import imreg_lib as il
from imreg_lib import multiscale


def test_predictor_step_is_the_euler_step(objective32):
    """The predicted point is w* + (θ1 − θ0) · (−H⁻¹ ∂θ∇J), H the exact Hessian at w* (reused, not recomputed)."""
    thetas = [100.0, 50.0]
    run = il.predictor_corrector(objective32, thetas, gtol=1e-6)
    w_star = run.history[0].w
    H = objective32.at_scale(100.0).derivatives(w_star)[2]
    rhs = objective32.theta_derivative_of_gradient(w_star, 100.0, method="ad")
    expected = w_star + (50.0 - 100.0) * (-torch.linalg.solve(H, rhs))
    torch.testing.assert_close(run.history[1].w_predicted, expected, rtol=1e-8, atol=1e-10)


def test_start_values_are_diagnostics_outside_the_clock(objective32, monkeypatch):
    """A predicted scale's start values (J, ‖∇J‖ at the warm start) are those of the objective there, evaluated after
    the scale's clock stops; record_start=False skips them and leaves the method's run unchanged."""
    thetas = [100.0, 50.0, 20.0]
    run = il.predictor_corrector(objective32, thetas, gtol=1e-6)
    bare = il.predictor_corrector(il.SSDObjective(objective32.template, objective32.reference), thetas, gtol=1e-6,
                                  record_start=False)
    for rec, plain in zip(run.history[1:], bare.history[1:], strict=True):
        J, dJ, _ = objective32.at_scale(rec.theta).derivatives(rec.w_start, "none")
        assert rec.start_loss == pytest.approx(float(J), rel=1e-13)
        assert rec.start_grad_norm == pytest.approx(float(torch.linalg.vector_norm(dJ)), rel=1e-12)
        assert plain.start_loss is None and plain.start_grad_norm is None
        assert torch.equal(plain.w_predicted, rec.w_predicted) and torch.equal(plain.w, rec.w)
    assert bare.history[0].start_loss == run.history[0].start_loss  # the first scale's start is Newton's own
    # outside the clock: a slow diagnostic evaluation does not show in the scales' seconds
    slow = multiscale._loss_and_grad_norm
    monkeypatch.setattr(multiscale, "_loss_and_grad_norm", lambda *a: (time.sleep(0.2), slow(*a))[1])
    timed = il.predictor_corrector(il.SSDObjective(objective32.template, objective32.reference), thetas, gtol=1e-6)
    assert all(rec.seconds < 0.2 for rec in timed.history[1:])
    with pytest.raises(ValueError, match="record_start"):
        il.predictor_corrector(objective32, thetas, record_start=1)


@pytest.mark.parametrize("kw, match", [({"gtol": 0.0}, "gtol"), ({"hessian": "bfgs"}, "hessian"),
                                       ({"newton_method": "cg"}, "newton_method"), ({"first_gtol": -1.0}, "gtol")])
def test_bad_options(objective32, kw, match):
    with pytest.raises(ValueError, match=match):
        il.predictor_corrector(objective32, [1.0, 0.5], **kw)


def test_bad_start(objective32):
    with pytest.raises(ValueError, match="w must"):
        il.single_scale(objective32, 1e-3, torch.zeros(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="theta"):
        il.single_scale(objective32, 0.0)
    with pytest.raises(ValueError, match="gtol"):
        il.newton_trust_region(objective32.at_scale(1.0).derivatives, objective32.identity(), gtol=0.0)


def test_mismatched_images(hand32):
    small = il.synthetic_hand_pair(16)
    with pytest.raises(ValueError, match="same size"):
        il.SSDObjective(il.SplineImage(hand32.template, hand32.grid), il.SplineImage(small.reference, small.grid))


def test_plotting_helpers(hand32):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    g = hand32.grid
    fig, ax = plt.subplots()
    im = il.show_image(ax, hand32.reference.reshape(-1), g, "R", colorbar=True)
    assert im.get_array().shape == (32, 32) and float(im.get_array()[0, 5]) == float(hand32.reference[5, 0])
    assert tuple(im.get_extent()) == g.extent
    n_lines = len(ax.lines)
    il.plot_transformed_grid(ax, hand32.w_true, il.Affine(), g, spacing=8)
    assert len(ax.lines) - n_lines == 2 * (32 // 8 + 1)
    html = il.animation_html(fig, lambda k: im.set_data(hand32.reference.numpy().T * k), 2)
    assert "<script" in html and not plt.fignum_exists(fig.number)


def test_the_predictor_solve_is_the_minimum_norm_least_squares_solution():
    rng = np.random.default_rng(3)
    V = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    for lam in ([3.0, 2.0, 1.0, 0.5, 0.1, 0.01], [3.0, -2.0, 1.0, -0.5, 0.0, 0.0], [1.0, 1e-17, 0, 0, 0, 0]):
        M = torch.from_numpy(V @ np.diag(lam) @ V.T)
        b = torch.from_numpy(rng.normal(size=6))
        v = multiscale._least_squares(M, b)
        pinv = torch.linalg.pinv(M, rtol=np.finfo(float).eps * 6) @ b  # the same cut of small singular values
        torch.testing.assert_close(v, pinv, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(v, torch.linalg.lstsq(M, b[:, None], driver="gelsd").solution[:, 0],
                                   rtol=1e-10, atol=1e-12)
