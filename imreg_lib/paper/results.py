r"""The results schema: one typed record per notebook, written as its results JSON and read back.

Every section notebook ends by writing its key numbers to ``<results>/<notebook>.json``; the reproduction report
(:mod:`imreg_lib.paper.report`) reads them, and the regression test (``tools/regression.py``) compares them with
``tests/references/<notebook>.json``. The layout of those files is defined here, once:

* ``00_data``: :class:`DataResults`, from :func:`~imreg_lib.paper.keynumbers.key_numbers`;
* ``01_ad_costs``: :class:`ADCostsResults`, from the Table 1 timings, the derivative checks and the scaling study
  (:mod:`imreg_lib.paper.ad_costs`);
* ``02_multiscale``: :class:`MultiscaleResults`, from Figs 2-3 (:mod:`imreg_lib.paper.multiscale`);
* ``03_superresolution``: :class:`SuperresolutionResults`, from Figs 4-11 (:mod:`imreg_lib.paper.superres`);
* ``04_reproduction``: :class:`ReproductionResults`, from the report's claims.

A record is a frozen dataclass of plain values (numbers, strings, tuples, mappings and nested records; no tensors).
``to_json()`` gives the JSON-ready dictionary, ``from_json(data)`` reads one back, and the two are inverse:
``R.from_json(r.to_json()) == r`` for a record ``r``, and ``R.from_json(d).to_json() == d`` for every dictionary
``d`` a notebook writes. ``from_json`` is strict: a missing key raises :class:`KeyError`. The builders
(``from_runs``) turn the experiments' outputs (tensors, optimiser results) into records, so that the notebooks
and the tests assemble the JSON through the same code.

Fields a notebook fills in at its end (``peak_memory_mb``) or in a later cell default to ``None`` and are left
out of the JSON while unset; :func:`dataclasses.replace` sets them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..data import ImagePair
from ..derivatives import TaylorResult
from ..multiscale import MultiscaleResult, ScaleRecord
from ..superres import SuperResolutionProblem
from ..varpro import VarProRun
from .ad_costs import ADCosts, DerivativeComparison, ScalingStudy
from .ensembles import Ensemble
from .multiscale import MethodComparison, PredictionQuality, PredictorComparison
from .numbers import PAPER_SR
from .preregistration import PreregistrationResult
from .report import Claim, claims_json, claims_summary
from .superres import ProjectionCost, parameter_error, run_summary

__all__ = ["PREDICTION_VARIANTS", "ADCostsResults", "ADCostsSettings", "DataResults", "MultiscaleResults",
           "OtherSolverRun", "PaperSRNumbers", "PredictionCurve", "PredictionResults", "PredictionSummary",
           "PredictorRun", "RegistrationRun", "ReproductionResults", "ScaleStep", "StartRecord",
           "SuperresolutionResults", "SuperresolutionTimings", "TaylorCurve", "VarProSummary"]

#: The predictor variants of Fig. 3 (:class:`~imreg_lib.paper.multiscale.PredictorComparison`), in the JSON's order.
PREDICTION_VARIANTS: tuple[str, ...] = ("exact", "gauss_newton", "gauss_newton_as_coded", "gauss_newton_double_step")


def _floats(values: Sequence | None) -> tuple | None:
    return None if values is None else tuple(values)


def _with_peak(out: dict, peak_memory_mb: float | None) -> dict:
    if peak_memory_mb is not None:
        out["peak_memory_mb"] = peak_memory_mb
    return out


# ---- 00_data ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DataResults:
    r"""The key numbers of the data page (``00_data``).

    Attributes
    ----------
    source : str
        What the images are (``"synthetic hand"`` or the user's file names).
    m : tuple of int
        Cells per dimension.
    theta : float
        The scale at which the numbers are computed.
    reference_mean, reference_max, template_mean : float
        Image statistics.
    loss_identity, grad_norm_identity : float
        :math:`J(w_\mathrm{id};\theta)` and :math:`\|\nabla J\|` there.
    gradient_rel_diff_ad, hessian_rel_diff_ad : float
        :math:`\|D_\mathrm{structured} - D_\mathrm{AD}\| / \|D_\mathrm{AD}\|` of the gradient and the Hessian at the
        identity (``torch.func``).
    taylor_order_gradient, taylor_order_hessian : float
        Observed orders of the first- and second-order Taylor errors (about 2 and 3).
    w_true : tuple of float, optional
        The known motion (synthetic pair only) ...
    loss_truth : float, optional
        ... and :math:`J(w^*;\theta)`.
    peak_memory_mb : float, optional
        Peak resident memory of the kernel.
    """

    source: str
    m: tuple[int, ...]
    theta: float
    reference_mean: float
    reference_max: float
    template_mean: float
    loss_identity: float
    grad_norm_identity: float
    gradient_rel_diff_ad: float
    hessian_rel_diff_ad: float
    taylor_order_gradient: float
    taylor_order_hessian: float
    w_true: tuple[float, ...] | None = None
    loss_truth: float | None = None
    peak_memory_mb: float | None = None

    def to_json(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("w_true", "loss_truth", "peak_memory_mb")}
        out["m"] = list(self.m)
        if self.w_true is not None:
            out["w_true"] = list(self.w_true)
            out["loss_truth"] = self.loss_truth
        return _with_peak(out, self.peak_memory_mb)

    @classmethod
    def from_json(cls, data: Mapping) -> DataResults:
        keys = ("source", "theta", "reference_mean", "reference_max", "template_mean", "loss_identity",
                "grad_norm_identity", "gradient_rel_diff_ad", "hessian_rel_diff_ad", "taylor_order_gradient",
                "taylor_order_hessian")
        return cls(m=tuple(data["m"]), w_true=_floats(data.get("w_true")), loss_truth=data.get("loss_truth"),
                   peak_memory_mb=data.get("peak_memory_mb"), **{k: data[k] for k in keys})


# ---- 01_ad_costs ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ADCostsSettings:
    """The settings of the Table 1 measurement: grid size, scale, timed calls, time budget per function (seconds,
    or ``None``), device type, data and the protocols run."""

    m: int
    theta: float
    n_runs: int
    time_budget_s: float | None
    device: str
    source: str
    protocols: tuple[str, ...]

    def to_json(self) -> dict:
        return {**asdict(self), "protocols": list(self.protocols)}

    @classmethod
    def from_json(cls, data: Mapping) -> ADCostsSettings:
        return cls(data["m"], data["theta"], data["n_runs"], data["time_budget_s"], data["device"], data["source"],
                   tuple(data["protocols"]))


@dataclass(frozen=True)
class ADCostsResults:
    """The cost of derivatives (``01_ad_costs``).

    Attributes
    ----------
    table : dict
        Table 1, ``{protocol: {model: ADCosts}}`` (:func:`~imreg_lib.paper.ad_costs.ad_cost_table`); each protocol
        is a top-level key of the JSON.
    settings : ADCostsSettings
        The measurement's settings.
    hand_coded_vs_ad : dict
        ``{model: DerivativeComparison}`` (:func:`~imreg_lib.paper.ad_costs.derivative_checks`).
    machine : dict
        :func:`~imreg_lib.timing.machine_info` of the machine that measured.
    taylor_orders : dict
        ``{model: (order of E_1, order of E_2)}`` of the hand-coded derivatives.
    scaling : ScalingStudy
        Costs against the number of parameters and the image size.
    peak_memory_mb : float, optional
        Peak resident memory of the kernel.
    """

    table: Mapping[str, Mapping[str, ADCosts]]
    settings: ADCostsSettings
    hand_coded_vs_ad: Mapping[str, DerivativeComparison]
    machine: Mapping
    taylor_orders: Mapping[str, tuple[float, float]]
    scaling: ScalingStudy
    peak_memory_mb: float | None = None

    @classmethod
    def from_runs(cls, table: Mapping[str, Mapping[str, ADCosts]], comparisons: Mapping[str, DerivativeComparison],
                  taylor_orders: Mapping[str, tuple[float, float]], scaling: ScalingStudy, *, pair: ImagePair, m: int,
                  theta: float, n_runs: int, time_budget_s: float | None, device: torch.device | str,
                  machine: Mapping, peak_memory_mb: float | None = None) -> ADCostsResults:
        """The record from :func:`~imreg_lib.paper.ad_costs.ad_cost_table`,
        :func:`~imreg_lib.paper.ad_costs.derivative_checks` and :func:`~imreg_lib.paper.ad_costs.scaling_study`
        on ``pair``, with the page's settings."""
        settings = ADCostsSettings(m, theta, n_runs, time_budget_s, torch.device(device).type, pair.source,
                                   tuple(table))
        return cls(table, settings, comparisons, dict(machine), taylor_orders, scaling, peak_memory_mb)

    def to_json(self) -> dict:
        out: dict = {prot: {model: c.to_json() for model, c in costs.items()} for prot, costs in self.table.items()}
        out["settings"] = self.settings.to_json()
        out["hand_coded_vs_ad"] = {model: c.to_json() for model, c in self.hand_coded_vs_ad.items()}
        out["machine"] = dict(self.machine)
        _with_peak(out, self.peak_memory_mb)
        out["taylor_orders"] = {model: list(o) for model, o in self.taylor_orders.items()}
        out["scaling"] = self.scaling.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> ADCostsResults:
        settings = ADCostsSettings.from_json(data["settings"])
        table = {prot: {model: ADCosts.from_json(c) for model, c in data[prot].items()} for prot in settings.protocols}
        return cls(table, settings, {k: DerivativeComparison.from_json(v) for k, v in data["hand_coded_vs_ad"].items()},
                   dict(data["machine"]), {k: tuple(v) for k, v in data["taylor_orders"].items()},
                   ScalingStudy.from_json(data["scaling"]), data.get("peak_memory_mb"))


# ---- 02_multiscale ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScaleStep:
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

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> ScaleStep:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class RegistrationRun:
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

    def to_json(self) -> dict:
        out = {"final_loss": self.final_loss, "w": list(self.w), "n_hessians": self.n_hessians,
               "iterations": self.iterations, "seconds": self.seconds,
               "history": [s.to_json() for s in self.history]}
        if self.parameter_error is not None:
            out["parameter_error"] = self.parameter_error
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> RegistrationRun:
        return cls(data["final_loss"], tuple(data["w"]), data["n_hessians"], data["iterations"], data["seconds"],
                   tuple(ScaleStep.from_json(s) for s in data["history"]), data.get("parameter_error"))


@dataclass(frozen=True)
class PredictionCurve:
    """The Fig. 3 metric of one predictor per scale (:class:`~imreg_lib.paper.multiscale.PredictionQuality`), as in
    the JSON: ``None`` where there is no prediction (the first scale)."""

    thetas: tuple[float, ...]
    rel_loss_diff: tuple[float | None, ...]
    rel_grad_diff: tuple[float | None, ...]
    loss_reference: tuple[float | None, ...]
    loss_predicted: tuple[float | None, ...]
    grad_reference: tuple[float | None, ...]
    grad_predicted: tuple[float | None, ...]

    @classmethod
    def from_quality(cls, q: PredictionQuality) -> PredictionCurve:
        return cls.from_json(q.as_dict())

    def to_json(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping) -> PredictionCurve:
        return cls(**{k: tuple(data[k]) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class PredictionSummary:
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

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> PredictionSummary:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class PredictorRun:
    """A predictor-corrector run of Fig. 3: final loss, Hessian (or Jacobian) evaluations, iterations, time."""

    final_loss: float
    n_hessians: int
    iterations: int
    seconds: float

    @classmethod
    def from_result(cls, run: MultiscaleResult) -> PredictorRun:
        return cls(run.final_loss, run.n_hessians, run.iterations, run.seconds)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> PredictorRun:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class OtherSolverRun:
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

    def to_json(self) -> dict:
        return {**asdict(self), "w": list(self.w)}

    @classmethod
    def from_json(cls, data: Mapping) -> OtherSolverRun:
        return cls(data["method"], data["final_loss"], tuple(data["w"]), data["same_minimiser"])


_PREDICTION_KEYS = ("thetas", "newton_method", "other_newton_method", "summary", "coded_below_minus_31000", "runs")


@dataclass(frozen=True)
class PredictionResults:
    """Fig. 3, exact against Gauss-Newton Hessians in the predictor (the ``"prediction"`` entry of 02's JSON).

    Attributes
    ----------
    thetas : tuple of float
        The schedule.
    newton_method : str
        The SciPy trust-region solver of the exact-Hessian corrector.
    curves : dict
        ``{variant: PredictionCurve}`` for :data:`PREDICTION_VARIANTS`; each variant is a key of the JSON entry.
    summary : dict
        ``{variant: PredictionSummary}``.
    coded_below_minus_31000 : int
        At how many scales the as-coded Gauss-Newton gradient difference is below -31000 (the paper: all).
    runs : dict
        ``{name: PredictorRun}`` of the underlying predictor-corrector runs.
    other_newton_method : OtherSolverRun, optional
        The exact branch with the other solver (set once it has run).
    """

    thetas: tuple[float, ...]
    newton_method: str
    curves: Mapping[str, PredictionCurve]
    summary: Mapping[str, PredictionSummary]
    coded_below_minus_31000: int
    runs: Mapping[str, PredictorRun]
    other_newton_method: OtherSolverRun | None = None

    @classmethod
    def from_runs(cls, comparison: PredictorComparison, *, thetas: Sequence[float],
                  newton_method: str = "trust-exact", other: OtherSolverRun | None = None) -> PredictionResults:
        qualities = {name: getattr(comparison, name) for name in PREDICTION_VARIANTS}
        coded = np.array(comparison.gauss_newton_as_coded.rel_grad_diff[1:])
        return cls(tuple(thetas), newton_method, {k: PredictionCurve.from_quality(q) for k, q in qualities.items()},
                   {k: PredictionSummary.from_quality(q) for k, q in qualities.items()}, int((coded < -31000).sum()),
                   {k: PredictorRun.from_result(r) for k, r in comparison.runs.items()}, other)

    def to_json(self) -> dict:
        out: dict = {"thetas": list(self.thetas), "newton_method": self.newton_method}
        if self.other_newton_method is not None:
            out["other_newton_method"] = self.other_newton_method.to_json()
        out.update({k: c.to_json() for k, c in self.curves.items()})
        out["summary"] = {k: s.to_json() for k, s in self.summary.items()}
        out["coded_below_minus_31000"] = self.coded_below_minus_31000
        out["runs"] = {k: r.to_json() for k, r in self.runs.items()}
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> PredictionResults:
        other = data.get("other_newton_method")
        return cls(tuple(data["thetas"]), data["newton_method"],
                   {k: PredictionCurve.from_json(v) for k, v in data.items() if k not in _PREDICTION_KEYS},
                   {k: PredictionSummary.from_json(v) for k, v in data["summary"].items()},
                   data["coded_below_minus_31000"], {k: PredictorRun.from_json(v) for k, v in data["runs"].items()},
                   None if other is None else OtherSolverRun.from_json(other))


@dataclass(frozen=True)
class MultiscaleResults:
    """The multi-scale page (``02_multiscale``): Fig. 2's three runs and Fig. 3's predictors.

    Attributes
    ----------
    data : str
        What the images are.
    m : int
        Cells per dimension.
    h : tuple of float
        Cell widths.
    device : str
        The device the runs used.
    thetas : tuple of float
        The Fig. 2 schedule.
    initial_loss : float
        :math:`J` at the identity at :math:`\\theta_{\\min}`.
    w_true : tuple of float or None
        The known motion (synthetic pair), or ``None``.
    single_scale, traditional, predictor_corrector : RegistrationRun
        Fig. 2's runs from the identity.
    prediction : PredictionResults, optional
        Fig. 3 (``None`` until it has run; the report's Fig. 2 claims need only the rest).
    peak_memory_mb : float, optional
        Peak resident memory of the kernel.
    """

    data: str
    m: int
    h: tuple[float, ...]
    device: str
    thetas: tuple[float, ...]
    initial_loss: float
    w_true: tuple[float, ...] | None
    single_scale: RegistrationRun
    traditional: RegistrationRun
    predictor_corrector: RegistrationRun
    prediction: PredictionResults | None = None
    peak_memory_mb: float | None = None

    @classmethod
    def from_runs(cls, pair: ImagePair, comparison: MethodComparison, *, m: int, device: torch.device | str,
                  thetas: Sequence[float]) -> MultiscaleResults:
        """Fig. 2's part from the pair and :func:`~imreg_lib.paper.multiscale.compare_methods` (no prediction)."""
        w_true = pair.w_true
        runs = (comparison.single_scale, comparison.traditional, comparison.predictor_corrector)
        return cls(pair.source, m, tuple(pair.grid.h), str(device), tuple(thetas), comparison.initial_loss,
                   None if w_true is None else tuple(w_true.tolist()),
                   *(RegistrationRun.from_result(r, w_true) for r in runs))

    def to_json(self) -> dict:
        out = {"data": self.data, "m": self.m, "h": list(self.h), "device": self.device, "thetas": list(self.thetas),
               "initial_loss": self.initial_loss, "w_true": None if self.w_true is None else list(self.w_true),
               "single_scale": self.single_scale.to_json(), "traditional": self.traditional.to_json(),
               "predictor_corrector": self.predictor_corrector.to_json()}
        if self.prediction is not None:
            out["prediction"] = self.prediction.to_json()
        return _with_peak(out, self.peak_memory_mb)

    @classmethod
    def from_json(cls, data: Mapping) -> MultiscaleResults:
        prediction = data.get("prediction")
        runs = (RegistrationRun.from_json(data[k]) for k in ("single_scale", "traditional", "predictor_corrector"))
        return cls(data["data"], data["m"], tuple(data["h"]), data["device"], tuple(data["thetas"]),
                   data["initial_loss"], _floats(data["w_true"]), *runs,
                   None if prediction is None else PredictionResults.from_json(prediction), data.get("peak_memory_mb"))


# ---- 03_superresolution -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VarProSummary:
    """A variable-projection LM run (:func:`~imreg_lib.paper.superres.run_summary` of a
    :class:`~imreg_lib.varpro.VarProRun`): final relative error, per-point losses, gradient norms, residual norms,
    accepted steps, CG iterations and resident memory, times, evaluation counts, the stop message and the final
    parameters of all templates."""

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

    _SEQUENCES = ("losses", "grad_norms", "residual_norms", "accepted", "cg_iterations", "rss_mb", "w")

    @classmethod
    def from_run(cls, run: VarProRun) -> VarProSummary:
        return cls.from_json(run_summary(run))

    def to_json(self) -> dict:
        return {k: list(v) if k in self._SEQUENCES else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping) -> VarProSummary:
        return cls(**{k: tuple(data[k]) if k in cls._SEQUENCES else data[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class StartRecord:
    """A pre-registration (the LM start): its final loss at the finest scale, its parameters and their largest
    error against the generating motion."""

    final_loss: float
    w: tuple[float, ...]
    max_parameter_error: float

    @classmethod
    def from_preregistration(cls, pre: PreregistrationResult, problem: SuperResolutionProblem,
                             variant: str = "as_coded") -> StartRecord:
        return cls(pre.history[-1].loss, tuple(pre.w.tolist()), parameter_error(problem, pre.w, variant))

    def to_json(self) -> dict:
        return {"final_loss": self.final_loss, "w": list(self.w), "max_parameter_error": self.max_parameter_error}

    @classmethod
    def from_json(cls, data: Mapping) -> StartRecord:
        return cls(data["final_loss"], tuple(data["w"]), data["max_parameter_error"])


@dataclass(frozen=True)
class TaylorCurve:
    r"""The first-order Taylor errors :math:`E_1(h)` of one Jacobian (``errors[1]`` of a
    :class:`~imreg_lib.derivatives.TaylorResult`) and, for the test against its own residual, the observed order
    (the slope over :math:`10^{-4} \le h \le 10^{-2}`)."""

    h: tuple[float, ...]
    errors: tuple[float, ...]
    order: float | None = None

    @classmethod
    def from_taylor(cls, t: TaylorResult, *, with_order: bool = False) -> TaylorCurve:
        return cls(tuple(t.h), tuple(t.errors[1]), t.slope(1, 1e-4, 1e-2) if with_order else None)

    def to_json(self) -> dict:
        out = {"h": list(self.h), "errors": list(self.errors)}
        if self.order is not None:
            out["order"] = self.order
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> TaylorCurve:
        return cls(tuple(data["h"]), tuple(data["errors"]), data.get("order"))


@dataclass(frozen=True)
class SuperresolutionTimings:
    """Times of the super-resolution page: residual and Jacobian per method (:class:`ProjectionCost`), each LM run's
    wall time by label, and the notebook's."""

    per_method: Mapping[str, ProjectionCost]
    runs_seconds: Mapping[str, float]
    notebook_seconds: float

    def to_json(self) -> dict:
        return {"per_method": {k: c.to_json() for k, c in self.per_method.items()},
                "runs_seconds": dict(self.runs_seconds), "notebook_seconds": self.notebook_seconds}

    @classmethod
    def from_json(cls, data: Mapping) -> SuperresolutionTimings:
        return cls({k: ProjectionCost.from_json(v) for k, v in data["per_method"].items()},
                   dict(data["runs_seconds"]), data["notebook_seconds"])


@dataclass(frozen=True)
class PaperSRNumbers:
    """The paper's super-resolution numbers beside ours (:data:`~imreg_lib.paper.numbers.PAPER_SR`): final relative
    errors of Diff All and No Diff, and the errors read off Figs 8 and 10, keyed as in the JSON (fractions written
    ``f"{p:g}"``, CG counts ``str(n)``)."""

    rel_error: Mapping[str, float]
    partial_rel_error_read: Mapping[str, float]
    inexact_rel_error_read: Mapping[str, float]

    @classmethod
    def recorded(cls) -> PaperSRNumbers:
        return cls({k: PAPER_SR[k]["rel_error"] for k in ("diff_all", "no_diff")},
                   {f"{p:g}": v["rel_error_read"] for p, v in PAPER_SR["partial"].items()},
                   {str(n): v["rel_error_read"] for n, v in PAPER_SR["inexact"].items()})

    def to_json(self) -> dict:
        return {k: dict(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping) -> PaperSRNumbers:
        return cls(*(dict(data[k]) for k in ("rel_error", "partial_rel_error_read", "inexact_rel_error_read")))


_SR_SETTINGS = ("data", "m", "factor", "n_templates", "lam", "variant", "device", "cg_iters", "cg_iters_partial",
                "cg_tol", "gn_iters", "gtol", "preregistration")
_SR_KEYS = (*_SR_SETTINGS, "rel_error_at_true_motion", "start", "corrections", "partial", "partial_continued",
            "taylor", "taylor_own", "inexact", "memory_mb_per_iteration", "memory_growth_after_second",
            "peak_memory_mb", "machine", "timings", "paper", "ensembles")


@dataclass(frozen=True)
class SuperresolutionResults:
    """The super-resolution page (``03_superresolution``).

    Attributes
    ----------
    data, m, factor, n_templates, lam, variant, device, cg_iters, cg_iters_partial, cg_tol, gn_iters, gtol, \
preregistration
        The data and the page's settings.
    rel_error_at_true_motion : float
        Relative error of the accurate reconstruction at the generating motion.
    start : dict
        ``{"<loss>, <schedule>": StartRecord}`` for both losses and both pre-registration schedules.
    projections : dict
        ``{method: VarProSummary}`` of Figs 5-6 (each method is a top-level key of the JSON).
    corrections : dict
        The runs from the other start and on the paper's model, by label (empty when not run).
    partial, partial_continued : dict
        Figs 8-9, keyed by the fraction as written in the JSON (``f"{p:g}"``), restarted and continued.
    taylor, taylor_own : dict
        Fig. 7's Jacobian test and the test of each Jacobian against its own residual, ``{label: TaylorCurve}``.
    inexact : dict
        Figs 10-11, keyed by the CG count as written (``str(n)``).
    memory_mb_per_iteration : dict
        Resident memory after each LM point, by run label.
    memory_growth_after_second : float
        The largest growth after the second LM point over all runs (a fraction).
    peak_memory_mb : float
        Peak resident memory of the kernel.
    machine : dict
        :func:`~imreg_lib.timing.machine_info`.
    timings : SuperresolutionTimings
        Costs per method and times.
    paper : PaperSRNumbers
        The paper's numbers.
    ensembles : dict
        ``{family: {key: Ensemble}}``: the round-off ensembles of the runs that round-off moves
        (:func:`~imreg_lib.paper.ensembles.round_off_ensembles`; member 0 is the run above), empty when not run.
    """

    data: str
    m: int
    factor: int
    n_templates: int
    lam: float
    variant: str
    device: str
    cg_iters: int
    cg_iters_partial: int
    cg_tol: float
    gn_iters: int
    gtol: float
    preregistration: str
    rel_error_at_true_motion: float
    start: Mapping[str, StartRecord]
    projections: Mapping[str, VarProSummary]
    corrections: Mapping[str, VarProSummary]
    partial: Mapping[str, VarProSummary]
    partial_continued: Mapping[str, VarProSummary]
    taylor: Mapping[str, TaylorCurve]
    taylor_own: Mapping[str, TaylorCurve]
    inexact: Mapping[str, VarProSummary]
    memory_mb_per_iteration: Mapping[str, tuple[float, ...]]
    memory_growth_after_second: float
    peak_memory_mb: float
    machine: Mapping
    timings: SuperresolutionTimings
    paper: PaperSRNumbers = field(default_factory=PaperSRNumbers.recorded)
    ensembles: Mapping[str, Mapping[str, Ensemble]] = field(default_factory=dict)

    @classmethod
    def from_runs(cls, problem: SuperResolutionProblem, *, m: int, factor: int, n_templates: int, lam: float,
                  variant: str, device: torch.device | str, cg_iters: int, cg_iters_partial: int, cg_tol: float,
                  gn_iters: int, gtol: float, preregistration: str, rel_error_at_true_motion: float,
                  starts: Mapping[tuple[str, bool], PreregistrationResult], projections: Mapping[str, VarProRun],
                  corrections: Mapping[str, VarProRun], partial: Mapping[float, VarProRun],
                  partial_continued: Mapping[float, VarProRun], taylor: Mapping[str, TaylorResult],
                  taylor_own: Mapping[str, TaylorResult], inexact: Mapping[int, VarProRun],
                  memory_runs: Mapping[str, VarProRun], memory_growth: float, peak_memory_mb: float,
                  machine: Mapping, costs: Mapping[str, ProjectionCost], notebook_seconds: float,
                  ensembles: Mapping[str, Mapping[str, Ensemble]] | None = None) -> SuperresolutionResults:
        """The record from the page's runs: ``starts`` from
        :func:`~imreg_lib.paper.preregistration.preregistration_starts`, ``projections`` from
        :func:`~imreg_lib.paper.superres.compare_projections`, ``memory_runs`` every run by its label
        (:func:`~imreg_lib.paper.superres.labelled_runs`), ``costs`` from
        :func:`~imreg_lib.paper.superres.projection_costs`; the rest as the attributes."""
        summary = VarProSummary.from_run
        return cls(
            problem.source, m, factor, n_templates, lam, variant, str(device), cg_iters, cg_iters_partial, cg_tol,
            gn_iters, gtol, preregistration, rel_error_at_true_motion,
            start={f"{loss}, {'continuation' if cont else 'as_coded'}": StartRecord.from_preregistration(
                pre, problem, variant) for (loss, cont), pre in starts.items()},
            projections={k: summary(r) for k, r in projections.items()},
            corrections={k: summary(r) for k, r in corrections.items()},
            partial={f"{p:g}": summary(r) for p, r in partial.items()},
            partial_continued={f"{p:g}": summary(r) for p, r in partial_continued.items()},
            taylor={k: TaylorCurve.from_taylor(t) for k, t in taylor.items()},
            taylor_own={k: TaylorCurve.from_taylor(t, with_order=True) for k, t in taylor_own.items()},
            inexact={str(n): summary(r) for n, r in inexact.items()},
            memory_mb_per_iteration={k: tuple(r.rss_mb) for k, r in memory_runs.items()},
            memory_growth_after_second=memory_growth, peak_memory_mb=peak_memory_mb, machine=dict(machine),
            timings=SuperresolutionTimings(dict(costs), {k: r.seconds for k, r in memory_runs.items()},
                                           notebook_seconds),
            ensembles={f: dict(e) for f, e in (ensembles or {}).items()})

    def to_json(self) -> dict:
        out: dict = {k: getattr(self, k) for k in _SR_SETTINGS}
        out["rel_error_at_true_motion"] = self.rel_error_at_true_motion
        out["start"] = {k: s.to_json() for k, s in self.start.items()}
        out.update({k: r.to_json() for k, r in self.projections.items()})
        for key in ("corrections", "partial", "partial_continued"):
            out[key] = {k: r.to_json() for k, r in getattr(self, key).items()}
        out["taylor"] = {k: t.to_json() for k, t in self.taylor.items()}
        out["taylor_own"] = {k: t.to_json() for k, t in self.taylor_own.items()}
        out["inexact"] = {k: r.to_json() for k, r in self.inexact.items()}
        out["memory_mb_per_iteration"] = {k: list(v) for k, v in self.memory_mb_per_iteration.items()}
        out["memory_growth_after_second"] = self.memory_growth_after_second
        out["peak_memory_mb"] = self.peak_memory_mb
        out["machine"] = dict(self.machine)
        out["timings"] = self.timings.to_json()
        out["paper"] = self.paper.to_json()
        out["ensembles"] = {f: {k: e.to_json() for k, e in family.items()} for f, family in self.ensembles.items()}
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> SuperresolutionResults:
        runs = lambda key: {k: VarProSummary.from_json(v) for k, v in data[key].items()}  # noqa: E731
        return cls(
            *(data[k] for k in _SR_SETTINGS), data["rel_error_at_true_motion"],
            start={k: StartRecord.from_json(v) for k, v in data["start"].items()},
            projections={k: VarProSummary.from_json(v) for k, v in data.items() if k not in _SR_KEYS},
            corrections=runs("corrections"), partial=runs("partial"), partial_continued=runs("partial_continued"),
            taylor={k: TaylorCurve.from_json(v) for k, v in data["taylor"].items()},
            taylor_own={k: TaylorCurve.from_json(v) for k, v in data["taylor_own"].items()},
            inexact=runs("inexact"),
            memory_mb_per_iteration={k: tuple(v) for k, v in data["memory_mb_per_iteration"].items()},
            memory_growth_after_second=data["memory_growth_after_second"], peak_memory_mb=data["peak_memory_mb"],
            machine=dict(data["machine"]), timings=SuperresolutionTimings.from_json(data["timings"]),
            paper=PaperSRNumbers.from_json(data["paper"]),
            ensembles={f: {k: Ensemble.from_json(e) for k, e in family.items()}
                       for f, family in data.get("ensembles", {}).items()})


# ---- 04_reproduction --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReproductionResults:
    """The report page's claims on the data of its build (``04_reproduction``): every claim, the count per
    status, and the statuses of the stable claims (what the regression test compares), keyed
    ``"<section>: <claim>"``."""

    data: str
    claims: tuple[Claim, ...]

    @property
    def summary(self) -> dict[str, int]:
        return claims_summary(self.claims)

    @property
    def stable_status(self) -> dict[str, str]:
        return {f"{c.section}: {c.claim}": c.status for c in self.claims if c.stable}

    def to_json(self) -> dict:
        return {"data": self.data, "claims": claims_json(self.claims), "summary": self.summary,
                "stable_status": self.stable_status}

    @classmethod
    def from_json(cls, data: Mapping) -> ReproductionResults:
        return cls(data["data"], tuple(Claim(**c) for c in data["claims"]))
