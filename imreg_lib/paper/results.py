r"""The results schema: one typed record per notebook, written as its results JSON and read back.

Every section notebook ends by writing its key numbers to ``<results>/<notebook>.json``; the reproduction report
(:mod:`imreg_lib.paper.report`) reads them back as these records, and the regression test
(``tools/regression.py``) compares them with ``tests/references/<notebook>.json``. The layout of those files is
defined here, once: :class:`DataResults` (``00_data``), :class:`ADCostsResults` (``01_ad_costs``),
:class:`MultiscaleResults` (``02_multiscale``), :class:`SuperresolutionResults` (``03_superresolution``),
:class:`ReproductionResults` (``04_reproduction``) and :class:`~imreg_lib.paper.peers.PeersResults` (``05_peers``).

A record is a frozen dataclass of plain values (numbers, strings, tuples, mappings and nested records; no
tensors), written and read by one codec (:mod:`imreg_lib.paper._schema`): ``to_json()`` gives the JSON-ready
dictionary, ``from_json(data)`` reads one back, strictly (a missing key raises :class:`KeyError`). Run variants
keyed by a number are keyed by that number (a fraction :math:`p`, a CG count); the runs of Figs 5-6, Table 1's
protocols and Fig. 3's predictors are written at their record's own level, so that the keys the README names
(``diff_all.rel_error``, ``prediction.exact.rel_loss_diff``, ``paper.affine.factors``) stay as they are. The
builders (``from_runs``) turn the experiments' outputs (tensors, optimiser results) into records, so that the
notebooks and the tests assemble the JSON through the same code.

Fields the records share: ``data`` (or ``source``), what the images are (``"synthetic hand"`` or the user's file
names); ``settings``, the page's settings (:mod:`imreg_lib.paper.settings`); ``device``, the device the runs used;
``machine``, :func:`~imreg_lib.timing.machine_info` of the machine that measured; ``peak_memory_mb``, the peak
resident memory of the kernel. Fields a notebook fills in at its end (``peak_memory_mb``) or in a later cell default
to ``None`` and are left out of the JSON while unset; :func:`dataclasses.replace` sets them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..data import ImagePair
from ..derivatives import TaylorResult
from ..multiscale import MultiscaleResult, ScaleRecord
from ..superres import SuperResolutionProblem
from ..varpro import VarProRun
from ._schema import INLINE, Record
from .ad_costs import ADCosts, DerivativeComparison, ScalingStudy
from .claims import Claim, claims_summary
from .ensembles import EnsembleSet
from .multiscale_runs import MethodComparison, PredictionQuality, PredictorComparison
from .peers import PeersResults
from .preregistration import PreregistrationResult
from .recorded import PAPER_SR
from .settings import ADCostsSettings, MultiscaleSettings, SuperresolutionSettings
from .superres_runs import ProjectionCost, parameter_error

__all__ = ["PREDICTION_VARIANTS", "ADCostsResults", "DataResults", "Fig2Timing", "MultiscaleResults", "OtherSolverRun",
           "PaperSRNumbers", "PeersResults", "PredictionCurve", "PredictionResults", "PredictionSummary",
           "PredictorRun", "RegistrationRun", "ReproductionResults", "ScaleStep", "StartRecord",
           "SuperresolutionResults", "SuperresolutionTimings", "TaylorCurve", "VarProSummary"]

#: The predictor variants of Fig. 3 (:class:`~imreg_lib.paper.multiscale_runs.PredictorComparison`), in JSON order.
PREDICTION_VARIANTS: tuple[str, ...] = ("exact", "gauss_newton", "gauss_newton_as_coded", "gauss_newton_double_step")


# ---- 00_data ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DataResults(Record):
    r"""The key numbers of the data page (``00_data``)."""

    source: str
    #: Cells per dimension.
    m: tuple[int, ...]
    #: The scale at which the numbers are computed.
    theta: float
    reference_mean: float
    reference_max: float
    template_mean: float
    #: :math:`J(w_\mathrm{id};\theta)` and (next) :math:`\|\nabla J\|` there.
    loss_identity: float
    grad_norm_identity: float
    #: :math:`\|D_\mathrm{structured} - D_\mathrm{AD}\| / \|D_\mathrm{AD}\|` of the gradient and (next) the Hessian at
    #: the identity (``torch.func``).
    gradient_rel_diff_ad: float
    hessian_rel_diff_ad: float
    #: Observed orders of the first- and (next) second-order Taylor errors (about 2 and 3).
    taylor_order_gradient: float
    taylor_order_hessian: float
    #: The known motion (synthetic pair only) and (next) :math:`J(w^*;\theta)`.
    w_true: tuple[float, ...] | None = None
    loss_truth: float | None = None
    peak_memory_mb: float | None = None


# ---- 01_ad_costs ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ADCostsResults(Record):
    """The cost of derivatives (``01_ad_costs``)."""

    #: Table 1, ``{protocol: {model: ADCosts}}`` (:func:`~imreg_lib.paper.ad_costs.ad_cost_table`); each protocol is a
    #: key of the JSON's top level.
    table: Mapping[str, Mapping[str, ADCosts]] = field(metadata=INLINE)
    settings: ADCostsSettings
    #: ``{model: DerivativeComparison}`` (:func:`~imreg_lib.paper.ad_costs.derivative_checks`).
    hand_coded_vs_ad: Mapping[str, DerivativeComparison]
    machine: Mapping[str, Any]
    #: ``{model: (order of E_1, order of E_2)}`` of the hand-coded derivatives.
    taylor_orders: Mapping[str, tuple[float, float]]
    #: Costs against the number of parameters and the image size.
    scaling: ScalingStudy
    peak_memory_mb: float | None = None

    @classmethod
    def from_runs(cls, table: Mapping[str, Mapping[str, ADCosts]], comparisons: Mapping[str, DerivativeComparison],
                  taylor_orders: Mapping[str, tuple[float, float]], scaling: ScalingStudy, settings: ADCostsSettings,
                  *, machine: Mapping, peak_memory_mb: float | None = None) -> ADCostsResults:
        """The record from :func:`~imreg_lib.paper.ad_costs.ad_cost_table`,
        :func:`~imreg_lib.paper.ad_costs.derivative_checks` and :func:`~imreg_lib.paper.ad_costs.scaling_study`,
        with the page's settings."""
        return cls(table, settings, comparisons, dict(machine), taylor_orders, scaling, peak_memory_mb)


# ---- 02_multiscale ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScaleStep(Record):
    """One scale of a multi-scale run (:class:`~imreg_lib.multiscale.ScaleRecord` without its tensors): the
    corrector's start, the prediction (``None`` without a predictor), the result, the work and the time."""

    theta: float
    start_loss: float
    start_grad_norm: float
    predicted_loss: float | None
    predicted_grad_norm: float | None
    final_loss: float
    final_grad_norm: float
    iterations: int
    n_hessians: int
    seconds: float

    @classmethod
    def from_record(cls, r: ScaleRecord) -> ScaleStep:
        return cls(r.theta, r.start_loss, r.start_grad_norm, r.predicted_loss, r.predicted_grad_norm, r.final_loss,
                   r.final_grad_norm, r.iterations, r.n_hessians, r.seconds)


@dataclass(frozen=True)
class RegistrationRun(Record):
    r"""A multi-scale (or single-scale) registration: final loss and parameters, Newton work, time, the scales,
    and, where the motion is known, the parameter error :math:`\max_i |w_i - w^*_i|`."""

    final_loss: float
    w: tuple[float, ...]
    n_hessians: int
    iterations: int
    seconds: float
    history: tuple[ScaleStep, ...]
    parameter_error: float | None = None

    @classmethod
    def from_result(cls, run: MultiscaleResult, w_true: torch.Tensor | None = None) -> RegistrationRun:
        error = None if w_true is None else (run.w - w_true).abs().max().item()
        return cls(run.final_loss, tuple(run.w.tolist()), run.n_hessians, run.iterations, run.seconds,
                   tuple(ScaleStep.from_record(r) for r in run.history), error)


@dataclass(frozen=True)
class Fig2Timing(Record):
    """Fig. 2's traditional and predictor-corrector runs timed in pairs, one method after the other
    (:attr:`~imreg_lib.paper.multiscale_runs.MethodComparison.timing`): the seconds of each run, their medians and
    the median of the paired ratios (predictor-corrector over traditional)."""

    repeats: int
    traditional_seconds: tuple[float, ...]
    predictor_corrector_seconds: tuple[float, ...]
    median_seconds: Mapping[str, float]
    paired_ratio: float

    @classmethod
    def from_comparison(cls, comparison: MethodComparison) -> Fig2Timing:
        pairs = comparison.timing or ((comparison.traditional.seconds, comparison.predictor_corrector.seconds),)
        trad, pc = (tuple(p[k] for p in pairs) for k in (0, 1))
        return cls(len(pairs), trad, pc, {"traditional": float(np.median(trad)),
                                          "predictor_corrector": float(np.median(pc))}, comparison.paired_ratio)


def _none_for_nan(values: Sequence[float]) -> tuple[float | None, ...]:
    return tuple(None if math.isnan(x) else x for x in values)


@dataclass(frozen=True)
class PredictionCurve(Record):
    """The Fig. 3 metric of one predictor per scale (:class:`~imreg_lib.paper.multiscale_runs.PredictionQuality`):
    ``None`` where there is no prediction (the first scale)."""

    thetas: tuple[float, ...]
    rel_loss_diff: tuple[float | None, ...]
    rel_grad_diff: tuple[float | None, ...]
    loss_reference: tuple[float | None, ...]
    loss_predicted: tuple[float | None, ...]
    grad_reference: tuple[float | None, ...]
    grad_predicted: tuple[float | None, ...]

    @classmethod
    def from_quality(cls, q: PredictionQuality) -> PredictionCurve:
        return cls(tuple(q.thetas), *(_none_for_nan(getattr(q, k)) for k in (
            "rel_loss_diff", "rel_grad_diff", "loss_reference", "loss_predicted", "grad_reference", "grad_predicted")))


@dataclass(frozen=True)
class PredictionSummary(Record):
    """How one predictor did over the scales after the first: at how many scales it improved the loss, and the
    median and extreme relative differences of the loss and of the gradient norm (positive: it helped)."""

    helped_loss: int
    median_loss: float
    min_loss: float
    median_grad: float
    max_grad: float

    @classmethod
    def from_quality(cls, q: PredictionQuality) -> PredictionSummary:
        loss, grad = np.array(q.rel_loss_diff[1:]), np.array(q.rel_grad_diff[1:])
        return cls(int((loss > 0).sum()), float(np.median(loss)), float(loss.min()), float(np.median(grad)),
                   float(grad.max()))


@dataclass(frozen=True)
class PredictorRun(Record):
    """A predictor-corrector run of Fig. 3: final loss, Hessian (or Jacobian) evaluations, iterations, time."""

    final_loss: float
    n_hessians: int
    iterations: int
    seconds: float

    @classmethod
    def from_result(cls, run: MultiscaleResult) -> PredictorRun:
        return cls(run.final_loss, run.n_hessians, run.iterations, run.seconds)


@dataclass(frozen=True)
class OtherSolverRun(Record):
    """The exact-Hessian predictor-corrector of Fig. 3 with the other SciPy trust-region solver: its final loss
    and parameters, and whether it reaches the same minimiser (every parameter within ``1e-3``)."""

    method: str
    final_loss: float
    w: tuple[float, ...]
    same_minimiser: bool

    @classmethod
    def from_runs(cls, method: str, run: MultiscaleResult, reference: MultiscaleResult, *,
                  tol: float = 1e-3) -> OtherSolverRun:
        same = float((run.w - reference.w).abs().max()) < tol
        return cls(method, run.final_loss, tuple(run.w.tolist()), same)


@dataclass(frozen=True)
class PredictionResults(Record):
    """Fig. 3, exact against Gauss-Newton Hessians in the predictor (the ``"prediction"`` entry of 02's JSON)."""

    #: The schedule.
    thetas: tuple[float, ...]
    #: The SciPy trust-region solver of the exact-Hessian corrector.
    newton_method: str
    #: ``{variant: PredictionCurve}`` for :data:`PREDICTION_VARIANTS`; each variant is a key of the JSON entry.
    curves: Mapping[str, PredictionCurve] = field(metadata=INLINE)
    summary: Mapping[str, PredictionSummary]
    #: At how many scales the as-coded Gauss-Newton gradient difference is below -31000 (the paper: all).
    coded_below_minus_31000: int
    #: ``{name: PredictorRun}`` of the underlying predictor-corrector runs.
    runs: Mapping[str, PredictorRun]
    #: The exact branch with the other solver (set once it has run).
    other_newton_method: OtherSolverRun | None = None

    @classmethod
    def from_runs(cls, comparison: PredictorComparison, *, thetas: Sequence[float],
                  newton_method: str = "trust-exact", other: OtherSolverRun | None = None) -> PredictionResults:
        qualities = {name: getattr(comparison, name) for name in PREDICTION_VARIANTS}
        coded = np.array(comparison.gauss_newton_as_coded.rel_grad_diff[1:])
        return cls(tuple(thetas), newton_method, {k: PredictionCurve.from_quality(q) for k, q in qualities.items()},
                   {k: PredictionSummary.from_quality(q) for k, q in qualities.items()}, int((coded < -31000).sum()),
                   {k: PredictorRun.from_result(r) for k, r in comparison.runs.items()}, other)


@dataclass(frozen=True)
class MultiscaleResults(Record):
    r"""The multi-scale page (``02_multiscale``): Fig. 2's three runs and Fig. 3's predictors."""

    data: str
    settings: MultiscaleSettings
    #: Cells per dimension.
    m: int
    #: Cell widths.
    h: tuple[float, ...]
    device: str
    #: The Fig. 2 schedule.
    thetas: tuple[float, ...]
    #: :math:`J` at the identity at :math:`\theta_{\min}`.
    initial_loss: float
    #: The known motion (synthetic pair), or ``None``.
    w_true: tuple[float, ...] | None
    #: Fig. 2's runs from the identity: this and the next two.
    single_scale: RegistrationRun
    traditional: RegistrationRun
    predictor_corrector: RegistrationRun
    #: Fig. 3 (``None`` until it has run; the report's Fig. 2 claims need only the rest).
    prediction: PredictionResults | None = None
    peak_memory_mb: float | None = None
    #: The traditional and predictor-corrector runs timed in pairs (``None`` in results written before it existed:
    #: the report then compares the single runs above).
    fig2_timing: Fig2Timing | None = None

    @classmethod
    def from_runs(cls, pair: ImagePair, comparison: MethodComparison, settings: MultiscaleSettings, *, m: int,
                  device: torch.device | str) -> MultiscaleResults:
        """Fig. 2's part from the pair and :func:`~imreg_lib.paper.multiscale_runs.compare_methods` (no prediction)."""
        w_true = pair.w_true
        runs = (comparison.single_scale, comparison.traditional, comparison.predictor_corrector)
        return cls(pair.source, settings, m, tuple(pair.grid.h), str(device), settings.thetas,
                   comparison.initial_loss, None if w_true is None else tuple(w_true.tolist()),
                   *(RegistrationRun.from_result(r, w_true) for r in runs),
                   fig2_timing=Fig2Timing.from_comparison(comparison))


# ---- 03_superresolution -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VarProSummary(Record):
    """A variable-projection LM run (a :class:`~imreg_lib.varpro.VarProRun` without its tensors): final relative
    error, per-point losses, gradient norms, residual norms, accepted steps, CG iterations and resident memory,
    times, evaluation counts, the stop message and the final parameters of all templates."""

    rel_error: float | None
    losses: tuple[float, ...]
    grad_norms: tuple[float, ...]
    residual_norms: tuple[float, ...]
    accepted: tuple[bool, ...]
    cg_iterations: tuple[int, ...]
    rss_mb: tuple[float, ...]
    seconds: float
    residual_seconds: float
    jacobian_seconds: float
    n_residuals: int
    n_jacobians: int
    message: str
    w: tuple[float, ...]

    @classmethod
    def from_run(cls, run: VarProRun) -> VarProSummary:
        return cls(run.rel_error, tuple(run.losses), tuple(run.grad_norms), tuple(run.residual_norms),
                   tuple(run.lm.accepted), tuple(run.cg_iterations), tuple(run.rss_mb), run.seconds,
                   run.residual_seconds, run.jacobian_seconds, run.lm.n_residuals, run.lm.n_jacobians,
                   run.lm.message, tuple(run.w_full.tolist()))

    @property
    def rel_loss(self) -> float:
        """Final loss over the initial loss."""
        return self.losses[-1] / self.losses[0]

    @property
    def rel_grad(self) -> float:
        """Final gradient norm over the initial one."""
        return self.grad_norms[-1] / self.grad_norms[0]


@dataclass(frozen=True)
class StartRecord(Record):
    """A pre-registration (the LM start): its final loss at the finest scale, its parameters and their largest
    error against the generating motion."""

    final_loss: float
    w: tuple[float, ...]
    max_parameter_error: float

    @classmethod
    def from_preregistration(cls, pre: PreregistrationResult, problem: SuperResolutionProblem,
                             variant: str = "as_coded") -> StartRecord:
        return cls(pre.history[-1].loss, tuple(pre.w.tolist()), parameter_error(problem, pre.w, variant))


@dataclass(frozen=True)
class TaylorCurve(Record):
    r"""The first-order Taylor errors :math:`E_1(h)` of one Jacobian (``errors[1]`` of a
    :class:`~imreg_lib.derivatives.TaylorResult`) and, for the test against its own residual, the observed order
    (the slope over :math:`10^{-4} \le h \le 10^{-2}`)."""

    h: tuple[float, ...]
    errors: tuple[float, ...]
    order: float | None = None

    @classmethod
    def from_taylor(cls, t: TaylorResult, *, with_order: bool = False) -> TaylorCurve:
        return cls(tuple(t.h), tuple(t.errors[1]), t.slope(1, 1e-4, 1e-2) if with_order else None)


@dataclass(frozen=True)
class SuperresolutionTimings(Record):
    """Times of the super-resolution page: residual and Jacobian per method (:class:`ProjectionCost`, keyed as
    :func:`~imreg_lib.paper.superres_runs.cost_varpros`), each LM run's wall time by label, and the notebook's."""

    per_method: Mapping[str, ProjectionCost]
    runs_seconds: Mapping[str, float]
    notebook_seconds: float


@dataclass(frozen=True)
class PaperSRNumbers(Record):
    """The paper's super-resolution numbers beside ours (:data:`~imreg_lib.paper.recorded.PAPER_SR`): final relative
    errors of Diff All and No Diff, and the errors read off Figs 8 (by fraction) and 10 (by CG count)."""

    rel_error: Mapping[str, float]
    partial_rel_error_read: Mapping[float, float]
    inexact_rel_error_read: Mapping[int, float]

    @classmethod
    def recorded(cls) -> PaperSRNumbers:
        return cls({k: PAPER_SR[k]["rel_error"] for k in ("diff_all", "no_diff")},
                   {p: v["rel_error_read"] for p, v in PAPER_SR["partial"].items()},
                   {n: v["rel_error_read"] for n, v in PAPER_SR["inexact"].items()})


@dataclass(frozen=True)
class SuperresolutionResults(Record):
    """The super-resolution page (``03_superresolution``)."""

    data: str
    settings: SuperresolutionSettings
    #: Relative error of the accurate reconstruction at the generating motion.
    rel_error_at_true_motion: float
    #: ``{loss: {schedule: StartRecord}}`` for both losses (``"norm"``, ``"squared"``) and both pre-registration
    #: schedules (``"continuation"``, ``"as_coded"``).
    start: Mapping[str, Mapping[str, StartRecord]]
    #: ``{method: VarProSummary}`` of Figs 5-6 (each method is a key of the JSON's top level).
    projections: Mapping[str, VarProSummary] = field(metadata=INLINE)
    #: The runs from the other start and on the paper's model (:func:`~imreg_lib.paper.superres_runs.correction_runs`),
    #: empty when not run.
    corrections: Mapping[str, VarProSummary]
    #: Figs 8-9, ``{p: VarProSummary}``, restarted (this) and continued (next).
    partial: Mapping[float, VarProSummary]
    partial_continued: Mapping[float, VarProSummary]
    #: Fig. 7's Jacobian test and (next) the test of each Jacobian against its own residual, ``{label: TaylorCurve}``.
    taylor: Mapping[str, TaylorCurve]
    taylor_own: Mapping[str, TaylorCurve]
    #: Figs 10-11, ``{CG count: VarProSummary}``.
    inexact: Mapping[int, VarProSummary]
    #: Resident memory after each LM point, by run label.
    memory_mb_per_iteration: Mapping[str, tuple[float, ...]]
    #: The largest growth after the second LM point over all runs (a fraction).
    memory_growth_after_second: float
    peak_memory_mb: float
    machine: Mapping[str, Any]
    timings: SuperresolutionTimings
    paper: PaperSRNumbers = field(default_factory=PaperSRNumbers.recorded)
    #: The round-off ensembles of the runs that round-off moves (:func:`~imreg_lib.paper.ensembles.round_off_ensembles`;
    #: member 0 is the run above), empty when not run.
    ensembles: EnsembleSet = field(default_factory=EnsembleSet)

    @classmethod
    def from_runs(cls, problem: SuperResolutionProblem, settings: SuperresolutionSettings, *,
                  rel_error_at_true_motion: float, starts: Mapping[tuple[str, bool], PreregistrationResult],
                  projections: Mapping[str, VarProRun], corrections: Mapping[str, VarProRun],
                  partial: Mapping[float, VarProRun], partial_continued: Mapping[float, VarProRun],
                  taylor: Mapping[str, TaylorResult], taylor_own: Mapping[str, TaylorResult],
                  inexact: Mapping[int, VarProRun], memory_runs: Mapping[str, VarProRun], memory_growth: float,
                  peak_memory_mb: float, machine: Mapping, costs: Mapping[str, ProjectionCost],
                  notebook_seconds: float, ensembles: EnsembleSet | None = None,
                  ) -> SuperresolutionResults:
        """The record from the page's runs: ``starts`` from
        :func:`~imreg_lib.paper.preregistration.preregistration_starts`, ``projections`` from
        :func:`~imreg_lib.paper.superres_runs.compare_projections`, ``memory_runs`` every run by its label
        (:func:`~imreg_lib.paper.superres_runs.labelled_runs`), ``costs`` from
        :func:`~imreg_lib.paper.superres_runs.projection_costs`; the rest as the attributes."""
        summary = VarProSummary.from_run
        start: dict[str, dict[str, StartRecord]] = {}
        for (loss, cont), pre in starts.items():
            start.setdefault(loss, {})["continuation" if cont else "as_coded"] = StartRecord.from_preregistration(
                pre, problem, settings.variant)
        return cls(
            problem.source, settings, rel_error_at_true_motion, start,
            projections={k: summary(r) for k, r in projections.items()},
            corrections={k: summary(r) for k, r in corrections.items()},
            partial={p: summary(r) for p, r in partial.items()},
            partial_continued={p: summary(r) for p, r in partial_continued.items()},
            taylor={k: TaylorCurve.from_taylor(t) for k, t in taylor.items()},
            taylor_own={k: TaylorCurve.from_taylor(t, with_order=True) for k, t in taylor_own.items()},
            inexact={n: summary(r) for n, r in inexact.items()},
            memory_mb_per_iteration={k: tuple(r.rss_mb) for k, r in memory_runs.items()},
            memory_growth_after_second=memory_growth, peak_memory_mb=peak_memory_mb, machine=dict(machine),
            timings=SuperresolutionTimings(dict(costs), {k: r.seconds for k, r in memory_runs.items()},
                                           notebook_seconds),
            ensembles=ensembles or EnsembleSet())


# ---- 04_reproduction --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReproductionResults(Record):
    """The report page's claims on the data of its build (``04_reproduction``): every claim, the count per
    status, and the statuses of the stable claims (what the regression test compares), keyed
    ``"<section>: <claim>"``."""

    data: str
    claims: tuple[Claim, ...]

    _json_extra = ("summary", "stable_status")

    @property
    def summary(self) -> dict[str, int]:
        return claims_summary(self.claims)

    @property
    def stable_status(self) -> dict[str, str]:
        return {f"{c.section}: {c.claim}": c.status.value for c in self.claims if c.stable}
