r"""The super-resolution experiments of paper §4 (Figs 5-11), as functions of a problem and a start point.

Each driver validates all of its settings before the first solve, runs
:func:`~imreg_lib.varpro.varpro_levenberg_marquardt` once per setting and returns the runs keyed by the setting.
The page's sets of runs and methods are built here too. The page's settings are
:class:`~imreg_lib.paper.settings.SuperresolutionSettings`.

Every driver takes ``variant``, the residual and parametrisation (:data:`VARPRO_VARIANTS`, :func:`varpro_variant`):
``"as_coded"`` (the default, :class:`~imreg_lib.paper.defects.AsCodedVarPro`: the authors' script, which the paper's
numbers come from) or ``"paper"`` (:class:`~imreg_lib.varpro.VarPro`: the text's eq. 7, template 0 fixed).

The numbers recorded in the authors' runs, to print beside ours, are :data:`~imreg_lib.paper.recorded.PAPER_SR`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from .. import _checks
from ..derivatives import TaylorResult, taylor_from_differences
from ..superres import SuperResolutionProblem
from ..timing import time_function
from ..varpro import VarPro, VarProRun, reconstruct, varpro_levenberg_marquardt
from ._jobs import run_jobs
from ._schema import Record
from .defects import AsCodedVarPro
from .preregistration import PreregistrationResult, preregister
from .recorded import FIG7_STEPS
from .settings import VARPRO_VARIANTS, check_counts, check_fractions

__all__ = ["METHOD_LABELS", "VARPRO_VARIANTS", "ProjectionCost", "compare_projections", "correction_runs", "cost_label",
           "cost_varpros", "inexact_projections", "labelled_runs", "memory_growth", "own_residual_varpros",
           "parameter_error", "partial_differentiation", "partial_runs", "percent_label", "projection_costs",
           "projection_taylor", "reconstruction_path", "varpro_taylor", "varpro_variant"]

#: The legend labels of the Jacobian methods of :func:`compare_projections`.
METHOD_LABELS: dict[str, str] = {"diff_all": "Diff All", "no_diff": "No Diff", "implicit": "Implicit"}
_VARPRO_CLASSES: dict[str, type[VarPro]] = {"as_coded": AsCodedVarPro, "paper": VarPro}


def varpro_variant(problem: SuperResolutionProblem, variant: str = "as_coded", **options) -> VarPro:
    """The variable projection of one of :data:`VARPRO_VARIANTS` for ``problem``, with the settings ``options`` of
    :class:`~imreg_lib.varpro.VarPro` (``method``, ``cg_iters``, ``tol``, ...): ``"as_coded"`` is
    :class:`~imreg_lib.paper.defects.AsCodedVarPro` (all :math:`6q` parameters, data misfit; the authors' script),
    ``"paper"`` :class:`~imreg_lib.varpro.VarPro` (template 0 fixed, eq. 7)."""
    _checks.one_of("variant", variant, VARPRO_VARIANTS)
    return _VARPRO_CLASSES[variant](problem, **options)


def percent_label(fraction: float) -> str:
    """``0.95 -> "95%"`` (the authors' legend, ``int(100 p)``, but rounded so that 0.95 is not 94 %)."""
    return f"{round(100 * fraction)}%"


def parameter_error(problem: SuperResolutionProblem, w: torch.Tensor, variant: str = "as_coded") -> float:
    r"""Largest error of the motion parameters ``w`` of ``variant`` against the generating motion,
    :math:`\max_i |w_i - w^*_i|` over all :math:`6q` parameters (template 0's included)."""
    w_full = varpro_variant(problem, variant=variant).full_parameters(w)
    return float((w_full - problem.w_true).abs().max())


def _run_all(varpros: Mapping, w0: torch.Tensor | Mapping, gn_iters: int, gtol: float) -> dict:
    """One LM run per entry of ``varpros``, from ``w0`` (or from ``w0[key]``); every start is checked first."""
    _checks.integer("gn_iters", gn_iters, 1, allowed="an integer >= 1")
    _checks.positive_number("gtol", gtol, allow_zero=True)
    starts = {key: (w0[key] if isinstance(w0, Mapping) else w0) for key in varpros}
    for key, vp in varpros.items():
        vp.full_parameters(starts[key])  # validates each start's shape before any solve
    # independent runs: side by side in worker processes where possible, the same results as one after another
    jobs = {key: functools.partial(varpro_levenberg_marquardt, vp, starts[key], max_iter=gn_iters, gtol=gtol)
            for key, vp in varpros.items()}
    return run_jobs(jobs, cpu=all(vp.problem.device.type == "cpu" for vp in varpros.values()),
                    cost={key: _run_cost(vp) for key, vp in varpros.items()})


def _steps(h: Sequence[float]) -> tuple[float, ...]:
    steps = tuple(float(s) for s in h)
    if len(steps) < 2 or any(not (math.isfinite(s) and s > 0) for s in steps):
        raise ValueError(f"h must be at least two positive step sizes, got {list(steps)!r}")
    return steps


def _fraction_varpros(make: functools.partial, fractions: Sequence[float], continued: bool) -> dict:
    """``{(method, p): VarPro}`` of ``make``: restarted for every ``p`` and, if ``continued``, continued for
    ``0 < p < 1``."""
    varpros = {("last_restarted", p): make(method="last_restarted", fraction=p) for p in fractions}
    if continued:
        varpros |= {("last_continued", p): make(method="last_continued", fraction=p) for p in fractions if 0 < p < 1}
    return varpros


def _run_cost(vp: VarPro) -> float:
    """A rough estimate of one LM run's time, for starting the longest runs first: a CG iteration with all
    parameter tangents costs about four plain ones (measured on the §4 page), and each LM point a fixed amount."""
    traced = {"diff_all": 1.0, "last_restarted": vp.fraction, "last_continued": vp.fraction}.get(vp.method, 0.0)
    return 250.0 + vp.cg_iters * (1.0 + 4.0 * traced)


def compare_projections(problem: SuperResolutionProblem, w0: torch.Tensor, *,
                        methods: Sequence[str] = ("diff_all", "no_diff", "implicit"), cg_iters: int = 500,
                        tol: float = 1e-3, gn_iters: int = 10, gtol: float = 1e-5,
                        variant: str = "as_coded") -> dict[str, VarProRun]:
    """Figs 5-6: one LM run per Jacobian method from ``w0`` (N = 500, tol 1e-3, 10 LM points)."""
    make = functools.partial(varpro_variant, problem, variant=variant, cg_iters=cg_iters, tol=tol)
    return _run_all({m: make(method=m) for m in methods}, w0, gn_iters, gtol)


def correction_runs(problem: SuperResolutionProblem, starts: Mapping[tuple[str, bool], PreregistrationResult], *,
                    continuation: bool = True, cg_iters: int = 500, tol: float = 1e-3, gn_iters: int = 10,
                    gtol: float = 1e-5, variant: str = "as_coded") -> dict[str, VarProRun]:
    """Diff All and No Diff runs that are not in the paper: from the other start, and on the paper's model.

    Parameters
    ----------
    starts : mapping
        The pre-registrations ``{(loss, continuation): PreregistrationResult}`` of :func:`preregistration_starts`;
        the ``"norm"`` start of the schedule that is *not* ``continuation`` is used.
    continuation : bool
        The schedule of the page's own start (``preregistration="continuation"``).
    cg_iters, tol, gn_iters, gtol, variant
        As :func:`compare_projections`.

    The runs are keyed ``"<method>, <other> start"`` for both methods, and, when ``variant="as_coded"`` with at
    least two templates, ``"<method>, paper's model (eq. 7)"``: the runs of ``variant="paper"`` from its own
    pre-registration (template 0 fixed, 18 parameters for 4 templates).
    """
    other = "as_coded" if continuation else "continuation"
    make = functools.partial(varpro_variant, problem, cg_iters=cg_iters, tol=tol)
    varpros = {f"{m}, {other} start": make(method=m, variant=variant) for m in ("diff_all", "no_diff")}
    w0 = dict.fromkeys(varpros, starts["norm", not continuation].w)
    if variant == "as_coded" and problem.n_templates >= 2:
        w_paper = preregister(problem, loss="norm", continuation=continuation, variant="paper").w
        paper = {f"{m}, paper's model (eq. 7)": make(method=m, variant="paper") for m in ("diff_all", "no_diff")}
        varpros |= paper
        w0 |= dict.fromkeys(paper, w_paper)
    return _run_all(varpros, w0, gn_iters, gtol)


def partial_differentiation(problem: SuperResolutionProblem, w0: torch.Tensor, fractions: Sequence[float], *,
                            cg_iters: int = 200, restarted: bool = True, tol: float = 1e-3, gn_iters: int = 10,
                            gtol: float = 1e-5, variant: str = "as_coded") -> dict[float, VarProRun]:
    """Figs 8-9: the last fraction ``p`` of ``cg_iters`` CG iterations differentiated, one run per ``p``.

    ``restarted=True`` is the authors' "lastdiff" (a fresh CG at the split); ``False`` continues one
    CG run (the same iterates as differentiating everything).
    """
    method = "last_restarted" if restarted else "last_continued"
    make = functools.partial(varpro_variant, problem, method=method, variant=variant, cg_iters=cg_iters, tol=tol)
    return _run_all({p: make(fraction=p) for p in check_fractions(fractions)}, w0, gn_iters, gtol)


def partial_runs(problem: SuperResolutionProblem, w0: torch.Tensor, fractions: Sequence[float], *,
                 continued: bool = True, cg_iters: int = 200, tol: float = 1e-3, gn_iters: int = 10,
                 gtol: float = 1e-5, variant: str = "as_coded",
                 ) -> tuple[dict[float, VarProRun], dict[float, VarProRun]]:
    """:func:`partial_differentiation` restarted (every ``p``) and, if ``continued``, continued (``0 < p < 1``),
    as one batch of runs (side by side where workers are available): ``(restarted, continued)``, the second
    empty if not ``continued``."""
    make = functools.partial(varpro_variant, problem, variant=variant, cg_iters=cg_iters, tol=tol)
    runs = _run_all(_fraction_varpros(make, check_fractions(fractions), continued), w0, gn_iters, gtol)
    return ({p: r for (m, p), r in runs.items() if m == "last_restarted"},
            {p: r for (m, p), r in runs.items() if m == "last_continued"})


def inexact_projections(problem: SuperResolutionProblem, w0: torch.Tensor, cg_counts: Sequence[int], *,
                        tol: float = 1e-3, gn_iters: int = 10, gtol: float = 1e-5,
                        variant: str = "as_coded") -> dict[int, VarProRun]:
    """Figs 10-11: projections of at most ``n`` CG iterations (all differentiated), one run per ``n``."""
    make = functools.partial(varpro_variant, problem, method="diff_all", variant=variant, tol=tol)
    return _run_all({n: make(cg_iters=n) for n in check_counts(cg_counts)}, w0, gn_iters, gtol)


def projection_taylor(problem: SuperResolutionProblem, w0: torch.Tensor, fractions: Sequence[float], *,
                      cg_iters: int = 200, tol: float = 1e-3, continued: bool = True, implicit: bool = True,
                      h: Sequence[float] = FIG7_STEPS, variant: str = "as_coded") -> dict[str, TaylorResult]:
    r"""Fig 7: how well each Jacobian predicts the change of the residual.

    As the authors: the direction is :math:`v = J^\top r / \|J^\top r\|` with :math:`J` the Diff-All Jacobian,
    and every method's :math:`J_p v` is compared with one reference function, the residual of ``cg_iters``
    uninterrupted CG iterations (all traced):
    :math:`E_p(h) = \|r(w_0 + h v) - r(w_0) - h J_p v\|`. The residual differences are computed once and
    shared by all methods, and all come from the same (untraced) code path, since a traced evaluation rounds
    differently. After hundreds of CG iterations the residual is itself rough at round-off level (it changes by
    about 1e-2 under perturbations of 1e-11), which is the error floor of the paper's figure; see
    :func:`varpro_taylor` for a test of each Jacobian against its own residual.

    Keys: ``"<p>%"`` (restarted, the authors' curves), ``"<p>% continued"`` (if ``continued``; not for 0 and 100 %,
    where both agree) and ``"implicit"``, each a :class:`~imreg_lib.derivatives.TaylorResult` whose ``errors[1]``
    is :math:`E_p`.
    """
    fractions = check_fractions(fractions)
    steps = _steps(h)
    make = functools.partial(varpro_variant, problem, variant=variant, cg_iters=cg_iters, tol=tol)
    reference = make(method="diff_all")
    methods = {percent_label(p) + ("" if m == "last_restarted" else " continued"): vp
               for (m, p), vp in _fraction_varpros(make, fractions, continued).items()}
    reference.full_parameters(w0)
    w0 = w0.detach()
    with torch.no_grad():  # r(w0) on the same code path as the perturbed evaluations (see below)
        r0 = reference.residual(w0)
    g = reference.jacobian(w0).T @ r0
    v = g / torch.linalg.vector_norm(g)
    with torch.no_grad():
        differences = [reference.residual(w0 + s * v) - r0 for s in steps]
    if implicit:
        methods["implicit"] = varpro_variant(problem, method="implicit", variant=variant)
    # one product J_p v per method, independent: side by side where workers are (the same values)
    directional = run_jobs({label: functools.partial(_jvp, vp, w0, v) for label, vp in methods.items()},
                           cpu=problem.device.type == "cpu")
    return {label: taylor_from_differences(steps, differences, jv) for label, jv in directional.items()}


def _jvp(vp: VarPro, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return vp.jvp(w, v).detach()


def own_residual_varpros(problem: SuperResolutionProblem, fractions: Sequence[float], *, cg_iters: int = 25,
                         tol: float = 1e-3, variant: str = "as_coded") -> dict[str, VarPro]:
    """The Jacobians of the second Jacobian test (:func:`varpro_taylor`), each against its own residual.

    Diff All and No Diff with ``cg_iters`` CG iterations; the restarted partial differentiation of the middle
    fraction (the upper median of ``fractions``) when it lies strictly between 0 and 1; and the implicit
    derivative of the exact projection.
    """
    fractions = check_fractions(fractions)
    make = functools.partial(varpro_variant, problem, variant=variant, cg_iters=cg_iters, tol=tol)
    own = {"Diff All": make(method="diff_all"), "No Diff": make(method="no_diff")}
    p_mid = sorted(fractions)[len(fractions) // 2]
    if 0 < p_mid < 1:
        own[f"last {percent_label(p_mid)} restarted"] = make(method="last_restarted", fraction=p_mid)
    own["Implicit (exact projection)"] = varpro_variant(problem, method="implicit", variant=variant)
    return own


def varpro_taylor(varpros: Mapping[str, VarPro], w0: torch.Tensor, *,
                  h: Sequence[float] = tuple(10.0 ** -k for k in range(0, 11)),
                  direction: torch.Tensor | None = None) -> dict[str, TaylorResult]:
    r"""Taylor test of each method's Jacobian against **its own** residual, along one direction.

    ``direction`` defaults to the normalised :math:`J^\top r` of the first method. A method whose Jacobian is
    the derivative of its residual shows :math:`E_1 = O(h^2)`; No Diff shows :math:`O(h)`.
    """
    steps = _steps(h)
    if not varpros:
        raise ValueError("varpros must name at least one method")
    for vp in varpros.values():
        vp.full_parameters(w0)
    w0 = w0.detach()
    if direction is None:
        r0, J = next(iter(varpros.values())).residual_and_jacobian(w0)
        direction = J.detach().T @ r0.detach()
    v = direction / torch.linalg.vector_norm(direction)
    out = {}
    for label, vp in varpros.items():
        with torch.no_grad():
            proj = vp.projection(w0)
            r0 = vp.residual_at(w0, proj.x)
            differences = [vp.residual(w0 + s * v) - r0 for s in steps]
        out[label] = taylor_from_differences(steps, differences, (vp.jacobian(w0, proj.x) @ v).detach())
    return out


@dataclass(frozen=True)
class ProjectionCost(Record):
    """Median wall time (ms) of one residual and one Jacobian of a :class:`~imreg_lib.varpro.VarPro`, the CG
    iterations its projection took and its cap, and the method's label in the page's table."""

    residual_ms: float
    jacobian_ms: float
    cg_iterations: int
    cg_iters: int = 0
    label: str = ""

    _json_extra = ("factor",)

    @property
    def factor(self) -> float:
        """Jacobian time over residual time (the paper: 6-10)."""
        return self.jacobian_ms / self.residual_ms


def cost_label(key: str, vp: VarPro) -> str:
    """The table label of a method of :func:`cost_varpros` (``"Diff All (N = 500)"``, ``"inexact, 25 CG
    iterations"``, ...)."""
    if key == "inexact":
        return f"inexact, {vp.cg_iters} CG iterations"
    if key == "last_restarted":
        return f"last {percent_label(vp.fraction)} restarted (N = {vp.cg_iters})"
    name = METHOD_LABELS.get(key, key)
    return name if vp.method == "implicit" else f"{name} (N = {vp.cg_iters})"


def projection_costs(varpros: Mapping[str, VarPro], w0: torch.Tensor, *, n_runs: int = 3,
                     warmup: int = 1) -> dict[str, ProjectionCost]:
    """Time the residual and the Jacobian of each method at ``w0`` (medians of ``n_runs`` after ``warmup``).

    The Jacobian is timed as a user pays it: the AD methods re-run CG traced; "implicit" and "no_diff" reuse
    the projection of the residual evaluated just before (as in the LM driver), so their Jacobian time
    excludes that solve.
    """
    w0 = w0.detach()
    out = {}
    for name, vp in varpros.items():
        vp.full_parameters(w0)
        proj = vp.projection(w0)
        res = time_function(lambda vp=vp: vp.residual(w0), n_runs, warmup, w0.device)
        jac = time_function(lambda vp=vp, f=proj.x: vp.jacobian(w0, f), n_runs, warmup, w0.device)
        out[name] = ProjectionCost(res.median_ms, jac.median_ms, proj.iterations, vp.cg_iters, cost_label(name, vp))
    return out


def cost_varpros(problem: SuperResolutionProblem, *, cg_iters: int = 500, cg_iters_partial: int = 200,
                 fractions: Sequence[float] = (1.0,), cg_counts: Sequence[int] = (10,), tol: float = 1e-3,
                 variant: str = "as_coded") -> dict[str, VarPro]:
    """The methods whose residual and Jacobian :func:`projection_costs` times on the page: ``"diff_all"``,
    ``"no_diff"``, ``"implicit"``, ``"last_restarted"`` and ``"inexact"`` (labels: :func:`cost_label`).

    Diff All and No Diff with ``cg_iters`` CG iterations, the implicit derivative, the restarted partial
    differentiation of the middle fraction (the upper median of ``fractions``; only when more than one fraction or
    one strictly below 1 is run) with ``cg_iters_partial``, and the inexact projection of the middle CG count (the
    upper median of ``cg_counts``).
    """
    fractions, cg_counts = check_fractions(fractions), check_counts(cg_counts)
    make = functools.partial(varpro_variant, problem, variant=variant, tol=tol)
    methods = {m: make(method=m, cg_iters=cg_iters) for m in ("diff_all", "no_diff")}
    methods["implicit"] = varpro_variant(problem, method="implicit", variant=variant)
    if 0 < max(fractions) < 1 or len(fractions) > 1:
        p_cost = sorted(fractions)[len(fractions) // 2]
        methods["last_restarted"] = make(method="last_restarted", cg_iters=cg_iters_partial, fraction=p_cost)
    methods["inexact"] = make(method="diff_all", cg_iters=sorted(cg_counts)[len(cg_counts) // 2])
    return methods


def labelled_runs(runs: Mapping[str, VarProRun], partial: Mapping[float, VarProRun],
                  inexact: Mapping[int, VarProRun]) -> dict[str, VarProRun]:
    """Every LM run of the page under its legend label: the projections (:data:`METHOD_LABELS`), ``"last <p>%"``
    for the partial differentiation and ``"<n> CG iters"`` for the inexact projections."""
    return {**{METHOD_LABELS.get(k, k): r for k, r in runs.items()},
            **{f"last {percent_label(p)}": r for p, r in partial.items()},
            **{f"{n} CG iters": r for n, r in inexact.items()}}


def reconstruction_path(run: VarProRun, problem: SuperResolutionProblem, varpro: VarPro,
                        points: Sequence[int] | None = None) -> torch.Tensor:
    """Exact reconstructions at the recorded LM points of ``run`` (all, or the indices ``points``),
    shape ``(n_points, m, m)``: what the image estimate looked like along the optimisation."""
    idx = range(len(run.lm.points)) if points is None else points
    m = problem.grid.m
    return torch.stack([reconstruct(problem, varpro.full_parameters(run.lm.points[k])).x.reshape(m) for k in idx])


def memory_growth(rss_mb: Sequence[float]) -> float:
    """How far resident memory rises after the second recorded LM point above the level of the first two (which
    hold every warm-up allocation), as a fraction; 0 for runs of two points or fewer."""
    rss = list(rss_mb)
    return max(rss[2:]) / max(rss[:2]) - 1.0 if len(rss) > 2 else 0.0
