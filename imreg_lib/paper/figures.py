"""The figures of the book's pages: built here, shown by the notebooks.

A figure builder returns its figure (the notebook calls ``plt.show()``); a widget builder returns the widget to
display; a player returns the self-contained HTML of :func:`~imreg_lib.plotting.animation_html` (it closes its
figure). The generic helpers (images upright in physical units, deformed grids, performance panels,
reconstructions, animations) are :mod:`imreg_lib.plotting`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..grid import Grid
from ..plotting import animation_html, plot_performance, plot_reconstructions, plot_transformed_grid, show_image
from ..spline import SplineImage
from ..varpro import relative_error
from ._jobs import run_jobs
from .ensembles import ensemble_label, paper_value
from .recorded import PAPER_SR
from .superres_runs import METHOD_LABELS, percent_label, reconstruction_path, varpro_variant


class _Pyplot:
    """``matplotlib.pyplot``, imported at its first use: importing this module does not import matplotlib."""

    def __getattr__(self, name: str):
        import matplotlib.pyplot

        return getattr(matplotlib.pyplot, name)


plt = _Pyplot()

if TYPE_CHECKING:
    from ipywidgets import Widget
    from matplotlib.figure import Figure

    from ..data import ImagePair
    from ..derivatives import TaylorResult
    from ..multiscale import MultiscaleResult
    from ..objective import SSDObjective
    from ..superres import SuperResolutionProblem
    from ..varpro import VarProRun
    from .ad_costs import ScalingStudy
    from .ensembles import Ensemble
    from .multiscale_runs import MethodComparison, PredictionQuality, PredictorComparison

__all__ = ["affine_explorer", "inexact_player", "lm_player", "plot_claims", "plot_ensembles", "plot_fig2",
           "plot_fig3", "plot_fig5", "plot_fig7", "plot_fig8", "plot_fig10", "plot_memory", "plot_own_taylor",
           "plot_prediction_variants", "plot_predictor_work", "plot_scale_space", "plot_scaling",
           "predictor_corrector_player", "scale_space_explorer", "scale_space_player", "varpro_explorer"]

_STATUS_STYLE = {"reproduced": ("tab:green", "o"), "differs": ("tab:red", "X"), "improved": ("tab:blue", "^"),
                 "not run": ("0.6", ".")}


def _finish(fig: Figure, title: str | None = None) -> Figure:
    """``fig`` with its ``title`` (if given) and a tight layout."""
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_claims(ax, claims: Sequence, *, band: tuple[float, float] | None = None, title: str | None = None,
                label: str = "") -> None:
    r"""Ours against the paper's number for every claim that is one number (``paper_value`` and ``ours_value``
    of :class:`~imreg_lib.paper.claims.Claim`), on log-log axes, coloured by status, with the line "ours = paper's".

    Parameters
    ----------
    claims
        :class:`~imreg_lib.paper.claims.Claim` objects; those without both values, and those "beyond the paper"
        (another method than the paper's), are skipped.
    band
        ``(low, high)``: if given, the tolerance band :math:`[\text{low}\, v, \text{high}\, v]` around the line
        is shaded.
    title, label
        Axes title; the text of the axis labels after "paper" / "this book".
    """
    import matplotlib.ticker

    pts = [c for c in claims if c.paper_value is not None and c.ours_value is not None
           and c.status != "beyond the paper"]  # another method than the paper's: not a point on its scale
    if not pts:
        ax.set_axis_off()
        return
    values = [v for c in pts for v in (c.paper_value, c.ours_value)]
    lo, hi = min(values) / 1.5, max(values) * 1.5
    line = np.geomspace(lo, hi, 50)
    ax.plot(line, line, "-", color="0.4", linewidth=0.8, label="ours = paper's")
    if band is not None:
        ax.fill_between(line, band[0] * line, band[1] * line, color="0.85", linewidth=0, label="tolerance")
    for status, (color, marker) in _STATUS_STYLE.items():
        sel = [c for c in pts if c.status == status]
        if sel:
            ax.scatter([c.paper_value for c in sel], [c.ours_value for c in sel], color=color, marker=marker, s=45,
                       label=status, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(f"paper {label}".strip())
    ax.set_ylabel(f"this book {label}".strip())
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left")


# ---- 01_ad_costs ------------------------------------------------------------------------------------------------

def plot_scaling(study: ScalingStudy, m: int) -> Figure:
    """How derivative costs grow (:class:`~imreg_lib.paper.ad_costs.ScalingStudy`). Left: the Hessian and
    Jacobian factors (time over loss or forward time) against the number of parameters, hand-coded and by
    ``torch.func``; right: the median times against the number of pixels. ``m`` is the grid size of the
    parameter study (in the title)."""
    by_params, by_size, by_size_node, ad_pts = study.by_params, study.by_size, study.by_size_neural_ode, study.with_ad
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    p = [pt.n_params for pt in by_params]
    ax.loglog(p, [pt.hessian_ms / pt.loss_ms for pt in by_params], "o-", label="Hessian, hand-coded")
    ax.loglog(p, [pt.jacobian_ms / pt.forward_ms for pt in by_params], "s-", label="Jacobian, hand-coded")
    ax.loglog([pt.n_params for pt in ad_pts], [pt.hessian_ad_ms / pt.loss_ms for pt in ad_pts], "o--",
              label="Hessian, jacrev(grad)")
    ax.loglog([pt.n_params for pt in ad_pts], [pt.jacobian_ad_ms / pt.forward_ms for pt in ad_pts], "s--",
              label="Jacobian, jacfwd")
    for pt in by_params:
        ax.annotate(pt.model, (pt.n_params, pt.hessian_ms / pt.loss_ms), fontsize=7, textcoords="offset points",
                    xytext=(4, -10))
    ax.set_xlabel("number of parameters p")
    ax.set_ylabel("time / loss (or forward) time")
    ax.set_title(f"factor vs parameters (m = {m})")
    ax.legend(fontsize=8)
    ax = axes[1]
    n = [pt.n_points for pt in by_size]
    for key, style, label in (("loss_ms", "k.-", "affine: loss"), ("hessian_ms", "o-", "affine: Hessian, hand-coded"),
                              ("hessian_ad_ms", "o--", "affine: Hessian, jacrev(grad)"),
                              ("jacobian_ms", "s-", "affine: Jacobian, hand-coded"),
                              ("jacobian_ad_ms", "s--", "affine: Jacobian, jacfwd")):
        ax.loglog(n, [getattr(pt, key) for pt in by_size], style, label=label)
    nn = [pt.n_points for pt in by_size_node]
    ax.loglog(nn, [pt.loss_ms for pt in by_size_node], "^:", color="grey", label="neural ODE: loss")
    ax.loglog(nn, [pt.hessian_ms for pt in by_size_node], "^-", color="purple",
              label="neural ODE: Hessian, hand-coded")
    ax.set_xlabel("number of pixels")
    ax.set_ylabel("median time (ms)")
    ax.set_title("time vs image size")
    ax.legend(fontsize=7)
    return _finish(fig)


# ---- 02_multiscale ----------------------------------------------------------------------------------------------

def plot_scale_space(pair: ImagePair, thetas: Sequence[float]) -> Figure:
    r"""Fig. 1: the reference spline :math:`\mathcal{R}_\theta` of ``pair`` at its cell centres, one panel per
    scale of ``thetas``."""
    reference = SplineImage(pair.reference, pair.grid)
    fig, axes = plt.subplots(1, len(thetas), figsize=(2.1 * len(thetas), 3))
    for ax, th in zip(axes, thetas, strict=True):
        show_image(ax, reference.on_grid(th), pair.grid, rf"$\theta$ = {th:.0e}")
        ax.set_xticks([]), ax.set_yticks([])
    return _finish(fig, f"Fig. 1: the reference at six scales (m = {pair.grid.m[0]})")


def scale_space_explorer(objective: SSDObjective, grid: Grid, theta_min: float, *, theta_max: float = 1e4,
                         ) -> Widget:
    r"""A slider over :math:`\log_{10}\theta` (from ``theta_min`` to ``theta_max``) showing the template and the
    reference of ``objective`` at that scale (needs a running kernel); returns the ``ipywidgets`` widget."""
    import ipywidgets as widgets


    def show_scale(log10_theta=2.0):
        th = 10.0 ** log10_theta
        fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.6))
        show_image(axes[0], objective.template.on_grid(th), grid, r"template $\mathcal{T}_\theta$")
        show_image(axes[1], objective.reference.on_grid(th), grid, r"reference $\mathcal{R}_\theta$")
        fig.suptitle(rf"$\theta$ = {th:.2g}")
        fig.tight_layout()
        plt.show()

    return widgets.interactive(show_scale, log10_theta=widgets.FloatSlider(
        value=2.0, min=np.log10(theta_min), max=np.log10(theta_max), step=0.25, description="log10 θ",
        continuous_update=False))


def scale_space_player(objective: SSDObjective, grid: Grid, theta_min: float, *, theta_max: float = 1e4,
                       frames: int = 15) -> str:
    """The scale space of both images of ``objective`` as a player without a kernel: ``frames`` log-spaced scales
    from ``theta_max`` down to ``theta_min``."""

    player_thetas = np.logspace(np.log10(theta_max), np.log10(theta_min), frames)
    fig, axes = plt.subplots(1, 2, figsize=(5.6, 3.3), dpi=72)
    ims = [show_image(axes[0], objective.template.on_grid(player_thetas[0]), grid, r"template $\mathcal{T}_\theta$"),
           show_image(axes[1], objective.reference.on_grid(player_thetas[0]), grid, r"reference $\mathcal{R}_\theta$")]
    title = fig.suptitle("")
    fig.tight_layout()

    def draw(k):
        th = player_thetas[k]
        for im, model in zip(ims, (objective.template, objective.reference), strict=True):
            img = model.on_grid(th).cpu().numpy().T
            im.set_data(img)
            im.set_clim(float(img.min()), float(img.max()))
        title.set_text(rf"$\theta$ = {th:.2g}")

    return animation_html(fig, draw, len(player_thetas))


def _fig2_images(objective: SSDObjective, comparison: MethodComparison, theta_min: float):
    r"""The images of Fig. 2 at ``theta_min``: the scale, :math:`\mathcal{T}`, :math:`\mathcal{R}`, the warped
    templates of the predictor-corrector and the single scale, the residuals and their shared colour limits."""
    scale_min = objective.at_scale(theta_min)
    T0 = objective.template.on_grid(theta_min).reshape(-1)
    R0 = scale_min.reference_values
    warped = {k: scale_min.forward(run.w) for k, run in (("pc", comparison.predictor_corrector),
                                                          ("single", comparison.single_scale))}
    residuals = [T0 - R0, warped["pc"] - R0, warped["single"] - R0]
    vmin = min(float(r.min()) for r in residuals)
    vmax = max(float(r.max()) for r in residuals)
    return scale_min, T0, R0, warped, residuals, (vmin, vmax)


def plot_fig2(objective: SSDObjective, comparison: MethodComparison, grid: Grid, theta_min: float) -> Figure:
    r"""Fig. 2: template, reference and their difference at :math:`\theta_{\min}` (top), then the
    predictor-corrector (middle) and the single-scale result (bottom), each as the template with the transformed
    grid, the transformed template and the residual; the residuals share one colour scale (the authors' script
    takes ``min`` for the upper limit of its last panel; here it is the maximum)."""
    _, T0, R0, warped, residuals, (vmin, vmax) = _fig2_images(objective, comparison, theta_min)
    fig, axes = plt.subplots(3, 3, figsize=(8, 8.5))
    show_image(axes[0, 0], T0, grid, r"$\mathcal{T}$")
    show_image(axes[0, 1], R0, grid, r"$\mathcal{R}$")
    show_image(axes[0, 2], residuals[0], grid, r"$\mathcal{T} - \mathcal{R}$", colorbar=True, vmin=vmin, vmax=vmax)
    for row, (key, run, label) in enumerate((("pc", comparison.predictor_corrector, "predictor-corrector"),
                                             ("single", comparison.single_scale, "single scale")), 1):
        show_image(axes[row, 0], T0, grid, rf"$\mathcal{{T}}$ and $y(\cdot\,; w)$: {label}")
        plot_transformed_grid(axes[row, 0], run.w, objective.transformation, grid, spacing=4)
        axes[row, 0].set_xlim(grid.omega[0], grid.omega[1]), axes[row, 0].set_ylim(grid.omega[2], grid.omega[3])
        show_image(axes[row, 1], warped[key], grid, r"$\mathcal{T}(y(x_c))$")
        show_image(axes[row, 2], residuals[row], grid, r"$\mathcal{T}(y) - \mathcal{R}$", colorbar=True,
                   vmin=vmin, vmax=vmax)
    for ax in axes.flat:
        ax.title.set_fontsize(9)
    return _finish(fig, "Fig. 2: predictor-corrector (middle) vs single scale (bottom)")


def plot_predictor_work(comparison: MethodComparison) -> Figure:
    """Hessian evaluations per scale (left) and the gradient norm at the start of each Newton correction (right),
    for the traditional multi-scale method and the predictor-corrector over the same schedule."""
    pc = comparison.predictor_corrector
    th = np.array(pc.thetas)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for run, name, marker in ((comparison.traditional, "traditional", "s"), (pc, "predictor-corrector", "o")):
        axes[0].semilogx(th, [r.n_hessians for r in run.history], marker=marker, ms=4, label=name)
        axes[1].loglog(th, [r.start_grad_norm if r.predicted_grad_norm is None else r.predicted_grad_norm
                            for r in run.history], marker=marker, ms=4, label=name)
    axes[0].set(xlabel=r"$\theta$", ylabel="Hessian evaluations", title="Newton work per scale")
    axes[1].set(xlabel=r"$\theta$", ylabel="gradient norm at the corrector's start",
                title="Starting gradient norm per scale")
    for ax in axes:
        ax.invert_xaxis()
        ax.legend()
    return _finish(fig)


def plot_fig3(exact: PredictionQuality, approx: PredictionQuality, title: str) -> Figure:
    """Fig. 3 in the paper's layout: the relative loss differences of two predictors
    (:class:`~imreg_lib.paper.multiscale_runs.PredictionQuality`) per scale (left) and each one's relative gradient-norm
    differences (right); positive means the prediction helped."""
    th = np.array(exact.thetas)
    fig = plt.figure(figsize=(12, 5.5))
    ax_l = plt.subplot2grid((2, 2), (0, 0), rowspan=2)
    ax_e, ax_a = plt.subplot2grid((2, 2), (0, 1)), plt.subplot2grid((2, 2), (1, 1))
    ax_l.scatter(th, exact.rel_loss_diff, marker=".", s=100, label="Exact Hessian")
    ax_l.scatter(th, approx.rel_loss_diff, marker="*", s=75, label="Approximated Hessian")
    ax_l.axhline(0.0, color="grey", ls="--")
    ax_l.set(xscale="log", xlabel=r"$\theta$", ylabel="Relative Difference", title="Relative Loss Difference")
    ax_l.legend(fontsize="large")
    ax_e.scatter(th, exact.rel_grad_diff, marker=".", s=100, color="tab:blue")
    ax_a.scatter(th, approx.rel_grad_diff, marker="*", s=75, color="tab:orange")
    for ax in (ax_e, ax_a):
        ax.axhline(0.0, color="grey", ls="--")
        ax.set(xscale="log", xlabel=r"$\theta$", title="Relative Grad Norm Difference")
    return _finish(fig, title)


def plot_prediction_variants(comparison: PredictorComparison, thetas: Sequence[float]) -> Figure:
    """The relative gradient-norm differences under the consistent metric for the exact Hessian, the consistent
    Gauss-Newton step and the authors' double step (:class:`~imreg_lib.paper.multiscale_runs.PredictorComparison`)."""
    th = np.array(thetas)
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for name, marker in (("exact", "."), ("gauss_newton", "*"), ("gauss_newton_double_step", "x")):
        ax.scatter(th, getattr(comparison, name).rel_grad_diff, marker=marker, s=50, label=name.replace("_", " "))
    ax.axhline(0.0, color="grey", ls="--")
    ax.set(xscale="log", xlabel=r"$\theta$", ylabel="relative grad norm difference", ylim=(-2.0, 1.1),
           title="Consistent metric: exact, Gauss-Newton, and the authors' double step")
    ax.legend()
    return _finish(fig)


_AFFINE_NAMES = ("A11", "A12", "A21", "A22", "b1", "b2")


def affine_explorer(objective: SSDObjective, comparison: MethodComparison, pair: ImagePair, theta_min: float,
                    ) -> Widget:
    r"""Sliders for the six affine parameters showing the transformed template, the reference and the residual
    (on Fig. 2's colour scale) with :math:`J(w;\theta_{\min})`; a menu starts them at the predictor-corrector
    result, the single-scale result, the identity or (with a known motion) the truth. Returns the widget."""
    import ipywidgets as widgets

    grid = pair.grid
    scale_min, _, R0, _, _, (vmin, vmax) = _fig2_images(objective, comparison, theta_min)
    pc, w_id = comparison.predictor_corrector, objective.identity()
    presets = {"predictor-corrector": pc.w, "single scale": comparison.single_scale.w, "identity": w_id}
    if pair.w_true is not None:
        presets["known motion"] = pair.w_true
    sliders = [widgets.FloatSlider(value=float(v), min=-2.0 if k < 4 else -15.0, max=2.0 if k < 4 else 40.0,
                                   step=0.01 if k < 4 else 0.05, description=n, continuous_update=False)
               for k, (n, v) in enumerate(zip(_AFFINE_NAMES, pc.w.tolist(), strict=True))]
    start = widgets.Dropdown(options=list(presets), value="predictor-corrector", description="start at")

    def set_preset(change):
        for s, v in zip(sliders, presets[change["new"]].tolist(), strict=True):
            s.value = float(v)

    start.observe(set_preset, names="value")

    def show_w(**kw):
        w = torch.tensor([kw[n] for n in _AFFINE_NAMES], dtype=w_id.dtype, device=w_id.device)
        Tw = scale_min.forward(w)
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
        show_image(axes[0], Tw, grid, r"$\mathcal{T}(y(x_c; w))$")
        show_image(axes[1], R0, grid, r"$\mathcal{R}$")
        show_image(axes[2], Tw - R0, grid, "residual", colorbar=True, cmap="RdBu_r", vmin=vmin, vmax=vmax)
        fig.suptitle(rf"$J(w;\theta_{{\min}})$ = {float(scale_min.loss(w)):.4e}")
        fig.tight_layout()
        plt.show()

    out = widgets.interactive_output(show_w, dict(zip(_AFFINE_NAMES, sliders, strict=True)))
    return widgets.VBox([start, widgets.HBox([widgets.VBox(sliders[:3]), widgets.VBox(sliders[3:])]), out])


def predictor_corrector_player(objective: SSDObjective, run: MultiscaleResult, grid: Grid) -> str:
    """The predictor-corrector ``run`` along its schedule as a player without a kernel: at every other scale (and
    the last), the θ-smoothed transformed template and reference, and the residual."""
    n = len(run.history)
    frames = list(range(0, n, 2)) + ([n - 1] if (n - 1) % 2 else [])
    fig, axes = plt.subplots(1, 3, figsize=(8.4, 3.2), dpi=72)

    def draw(k):
        rec = run.history[k]
        s = objective.at_scale(rec.theta)
        Tw = s.forward(rec.w)
        for ax in axes:
            ax.clear()
        show_image(axes[0], Tw, grid, r"$\mathcal{T}_\theta(y(x_c; w^*))$")
        show_image(axes[1], s.reference_values, grid, r"$\mathcal{R}_\theta$")
        r = Tw - s.reference_values
        lim = float(r.abs().max())
        show_image(axes[2], r, grid, "residual", cmap="RdBu_r", vmin=-lim, vmax=lim)
        for ax in axes:
            ax.set_xticks([]), ax.set_yticks([])
        fig.suptitle(rf"scale {k + 1}/{n}: $\theta$ = {rec.theta:.2g}, $J$ = {rec.final_loss:.3e}")

    draw(0)
    fig.tight_layout()
    return animation_html(fig, draw, frames, interval=500)


# ---- 03_superresolution -----------------------------------------------------------------------------------------

def plot_fig5(runs: Mapping[str, VarProRun]) -> Figure:
    """Fig. 5: relative loss and gradient norm along the LM points of each Jacobian method
    (:func:`~imreg_lib.paper.superres_runs.compare_projections`), with the losses recorded in the authors' runs in
    grey."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    plot_performance(axes, {METHOD_LABELS[k]: (r.losses, r.grad_norms) for k, r in runs.items()},
                     loss_ylim=(1e-3, 1.5), grad_ylim=(1e-4, 1.5))
    for name, ls in (("diff_all", "--"), ("no_diff", ":")):
        rn = np.asarray(PAPER_SR[name]["residual_norms"])
        axes[0].plot(np.arange(len(rn)) + 1, rn ** 2 / rn[0] ** 2, ls, color="0.45", linewidth=1,
                     label=f"paper, {METHOD_LABELS[name]}")
    axes[0].legend(fontsize="small")
    return _finish(fig, "Fig. 5: performance of differentiating variable projection")


def plot_fig7(taylor: Mapping[str, TaylorResult]) -> Figure:
    """Fig. 7: the first-order Taylor errors of every Jacobian against one reference residual
    (:func:`~imreg_lib.paper.superres_runs.projection_taylor`); continued variants dashed, the implicit one dotted."""
    fig, ax = plt.subplots(figsize=(7, 4.6))
    for label, t in taylor.items():
        style = {"linestyle": "--", "alpha": 0.7} if "continued" in label else {}
        if label == "implicit":
            style = {"color": "k", "linestyle": ":", "marker": "x"}
        ax.loglog(t.h, t.errors[1], marker=style.pop("marker", "."), markersize=7, label=label, **style)
    ax.set_xlabel("Perturbation Multiplier")
    ax.set_ylabel("Error")
    ax.set_title("Fig. 7: differentiating the last % of CG iterations")
    ax.legend(fontsize="small", ncol=2)
    return _finish(fig)


def plot_own_taylor(taylor_own: Mapping[str, TaylorResult], cg_iters: int) -> Figure:
    """The Taylor errors of each Jacobian against its own residual
    (:func:`~imreg_lib.paper.superres_runs.varpro_taylor`) with a slope-2 guide; ``cg_iters`` is named in the title."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, t in taylor_own.items():
        ax.loglog(t.h, t.errors[1], ".-", label=label)
    ax.loglog(t.h, [1e2 * s ** 2 for s in t.h], ":", color="0.6", label="slope 2")
    ax.set_xlabel("h")
    ax.set_ylabel(r"$\|r(w_0 + hv) - r(w_0) - h\,Jv\|$")
    ax.set_title(f"Each Jacobian against its own residual ({cg_iters} CG iterations)")
    ax.legend(fontsize="small")
    return _finish(fig)


def plot_fig8(partial: Mapping[float, VarProRun], partial_continued: Mapping[float, VarProRun],
              fractions: Sequence[float]) -> Figure:
    """Fig. 8: relative loss, relative gradient norm and final relative error when the last fraction of the CG
    iterations is differentiated (restarted; continued where run), with the errors read off the paper's Fig. 8."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.4))
    plot_performance(axes[:2], {f"{percent_label(p)} CG iters": (r.losses, r.grad_norms) for p, r in partial.items()},
                     loss_ylim=(1e-4, 1.5), grad_ylim=(1e-4, 10))
    xs = [100 * p for p in partial]
    axes[2].plot(xs, [r.rel_error for r in partial.values()], ".-", color="maroon", markersize=10, linewidth=0.5,
                 label="restarted (authors)")
    if partial_continued:
        axes[2].plot([100 * p for p in partial_continued], [r.rel_error for r in partial_continued.values()], "x--",
                     color="tab:blue", linewidth=0.5, label="continued")
    paper_p = [p for p in fractions if p in PAPER_SR["partial"]]
    axes[2].plot([100 * p for p in paper_p], [PAPER_SR["partial"][p]["rel_error_read"] for p in paper_p], "s",
                 color="0.5", fillstyle="none", label="paper (read off Fig. 8)")
    axes[2].set_title("Final Relative Error")
    axes[2].set_xlabel("Last CG Iters Diff (%)")
    axes[2].legend(fontsize="small")
    return _finish(fig, "Fig. 8: performance when differentiating the last CG iterations")


def plot_fig10(inexact: Mapping[int, VarProRun], cg_counts: Sequence[int]) -> Figure:
    """Fig. 10: relative loss, relative gradient norm and final relative error with a fixed number of CG
    iterations per projection, with the errors read off the paper's Fig. 10."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.4))
    plot_performance(axes[:2], {f"{n} CG iters": (r.losses, r.grad_norms) for n, r in inexact.items()},
                     loss_ylim=(1e-3, 1.5), grad_ylim=(1e-4, 1.5))
    axes[2].plot(list(inexact), [r.rel_error for r in inexact.values()], ".-", color="maroon", markersize=10,
                 linewidth=0.5, label="this book")
    paper_n = [n for n in cg_counts if n in PAPER_SR["inexact"]]
    axes[2].plot(paper_n, [PAPER_SR["inexact"][n]["rel_error_read"] for n in paper_n], "s", color="0.5",
                 fillstyle="none", label="paper (read off Fig. 10)")
    axes[2].set_xscale("log")
    axes[2].set_title("Final Relative Error")
    axes[2].set_xlabel("CG Iterations")
    axes[2].legend(fontsize="small")
    return _finish(fig, "Fig. 10: performance of inexact variable projection")


def plot_memory(runs: Mapping[str, VarProRun]) -> Figure:
    """Resident memory of the process that ran each run after each recorded LM point, one line per run
    (``{label: VarProRun}``)."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, r in runs.items():
        ax.plot(np.arange(len(r.rss_mb)) + 1, r.rss_mb, ".-", linewidth=0.8, label=name)
    ax.set_xlabel("recorded LM point")
    ax.set_ylabel("resident memory of its process (MB)")
    ax.set_ylim(0, None)
    ax.legend(fontsize="x-small", ncol=3)
    ax.set_title("Memory per LM iteration")
    return _finish(fig)


def varpro_explorer(runs: Mapping[str, VarProRun], inexact: Mapping[int, VarProRun], problem: SuperResolutionProblem,
                    variant: str = "as_coded", *, n_points: int = 10) -> Widget:
    """A run menu and an LM-point slider (``n_points`` points) showing the accurate reconstruction at that point's
    motion, computed on demand and cached; for the projections (``runs``) and the inexact projections. Returns the
    widget."""
    import ipywidgets as widgets

    R, grid = problem.reference, problem.grid
    explore_runs = {**{METHOD_LABELS[k]: (r, varpro_variant(problem, variant=variant)) for k, r in runs.items()},
                    **{f"{n} CG iters": (r, varpro_variant(problem, variant=variant)) for n, r in inexact.items()}}
    picker = widgets.Dropdown(options=list(explore_runs), description="run")
    point = widgets.IntSlider(value=0, min=0, max=n_points - 1, description="LM point", continuous_update=False)
    cache = {}

    def show_point(name, k):
        run, vp = explore_runs[name]
        k = min(k, len(run.lm.points) - 1)
        if (name, k) not in cache:
            cache[name, k] = reconstruction_path(run, problem, vp, [k])[0]
        img = cache[name, k]
        fig = plot_reconstructions({f"{name}, point {k + 1}": img}, R, grid, column_width=3.2)
        fig.suptitle(f"‖r‖ = {run.residual_norms[k]:.4f}, relative error {100 * relative_error(img, R):.2f} %")
        plt.show()

    return widgets.VBox([widgets.HBox([picker, point]),
                         widgets.interactive_output(show_point, {"name": picker, "k": point})])


def lm_player(runs: Mapping[str, VarProRun], problem: SuperResolutionProblem, variant: str = "as_coded") -> str:
    """Diff All against No Diff along their LM points as a player without a kernel: the accurate reconstruction at
    each point's motion (top) and its difference from the truth (bottom)."""
    R, grid = problem.reference, problem.grid
    vp = varpro_variant(problem, variant=variant)
    paths = run_jobs({k: functools.partial(reconstruction_path, runs[k], problem, vp) for k in ("diff_all", "no_diff")},
                     cpu=problem.device.type == "cpu")  # the two paths side by side where workers are
    n_frames = min(len(p) for p in paths.values())
    fig, axes = plt.subplots(2, 2, figsize=(5.6, 4.8), dpi=72)
    ims = {k: (show_image(axes[0, j], paths[k][0], grid, METHOD_LABELS[k], cmap="Greys_r", vmin=0, vmax=250),
               show_image(axes[1, j], paths[k][0] - R, grid, cmap="Greys_r", vmin=-50, vmax=50))
           for j, k in enumerate(paths)}
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_ylabel("Reconstruction")
    axes[1, 0].set_ylabel("Reconstruction - True")
    title = fig.suptitle("")
    fig.tight_layout()

    def draw(i):
        for k, (top, bottom) in ims.items():
            top.set_data(paths[k][i].cpu().numpy().T)
            bottom.set_data((paths[k][i] - R).cpu().numpy().T)
        title.set_text(f"LM point {i + 1} of {n_frames}")

    return animation_html(fig, draw, n_frames, interval=700)


def inexact_player(inexact: Mapping[int, VarProRun], reference: torch.Tensor, grid: Grid) -> str:
    """The final reconstructions of the inexact projections over their number of CG iterations as a player
    without a kernel, with their difference from the truth and their relative error."""
    fig, axes = plt.subplots(1, 2, figsize=(5.6, 2.9), dpi=72)
    counts = list(inexact)
    top = show_image(axes[0], inexact[counts[0]].reconstruction, grid, "reconstruction", cmap="Greys_r", vmin=0,
                     vmax=250)
    bottom = show_image(axes[1], inexact[counts[0]].reconstruction - reference, grid, "minus truth", cmap="Greys_r",
                        vmin=-50, vmax=50)
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
    title = fig.suptitle("")
    fig.tight_layout()

    def draw(i):
        r = inexact[counts[i]]
        top.set_data(r.reconstruction.cpu().numpy().T)
        bottom.set_data((r.reconstruction - reference).cpu().numpy().T)
        title.set_text(f"{counts[i]} CG iterations: relative error {100 * r.rel_error:.1f} %")

    return animation_html(fig, draw, len(counts), interval=900)


def plot_ensembles(ensembles: Mapping[str, Mapping[str, Ensemble]]) -> Figure:
    """The final relative error of every round-off ensemble: each member (ticks), the range (bar) and median
    (dot), beside the paper's value (open square) where it has one."""
    rows = [(ensemble_label(f, k), paper_value(f, k), e) for f, runs in ensembles.items() for k, e in runs.items()]
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(rows) + 1.2))
    for i, (_, ref, e) in enumerate(rows):
        y = len(rows) - 1 - i
        ax.plot([100 * e.min, 100 * e.max], [y, y], color="maroon", linewidth=3, alpha=0.35,
                solid_capstyle="butt", label="range over the members" if i == 0 else None)
        ax.plot([100 * x for x in e.rel_errors], [y] * e.members, "|", color="maroon", markersize=9,
                label="members" if i == 0 else None)
        ax.plot(100 * e.median, y, "o", color="maroon", markersize=5, label="median" if i == 0 else None)
        if ref is not None:
            ax.plot(100 * ref, y, "s", color="0.4", fillstyle="none", markersize=7,
                    label="paper" if i == 0 else None)
    ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)])
    ax.set_xscale("log")
    ax.set_xlabel("final relative error (%)")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    ax.set_title("Final relative errors under round-off: each run repeated on data moved by a few ulps")
    return _finish(fig)
