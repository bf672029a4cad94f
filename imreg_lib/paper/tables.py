"""The computed text of the book's pages: Markdown tables, printed summaries and the phrases glued into the prose.

Every function here formats numbers that the experiments computed; none computes a number of its own beyond a
ratio or a count of what it is given. The phrase builders (``*_phrases``) return ``{glue name: text}`` in the
order the page glues them (:func:`imreg_lib.paper.notebook.glue`); the markdown cells of the notebooks name
those keys. The report page's tables are here too: the claims of :mod:`imreg_lib.paper.report` on one data set or
side by side, their rules, and the authors' defects (:data:`~imreg_lib.paper.defects.DEFECTS`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..data import ImagePair
from ..derivatives import TaylorResult
from ..objective import SSDObjective
from ..superres import SuperResolutionProblem
from ..timing import describe_machine
from ..varpro import VarProRun
from .ad_costs import ADCosts, DerivativeComparison, ScalingPoint, ScalingStudy
from .claims import Claim, Status
from .defects import DEFECTS, Defect
from .ensembles import NOT_AMPLIFIED, EnsembleSet, ensemble_label, paper_value
from .multiscale_runs import MethodComparison
from .preregistration import PreregistrationResult
from .recorded import PAPER_FACTORS, PAPER_SR, PAPER_TABLE1
from .results import DataResults, PredictionResults
from .superres_runs import METHOD_LABELS, ProjectionCost, parameter_error, percent_label, varpro_variant

__all__ = ["DATA_SETS", "comparison_table", "cost_phrases", "costs_markdown", "defects_table",
           "derivative_checks_text", "derivative_times_markdown", "ensemble_phrases", "ensembles_markdown",
           "factor_range", "factors_against_paper", "fig2_phrases", "fig2_summary", "fig2_work", "fig2_work_phrases",
           "fig3_phrases", "fig3_summary", "fig5_phrases", "fig7_table", "key_numbers_text", "markdown_table",
           "partial_markdown", "partial_phrases", "problem_summary", "projections_markdown", "rules_table",
           "scaling_phrases", "sign_and_decade", "sr_verdict_phrases", "starts_markdown", "varpro_runs_markdown"]

_DERIVATIVES = ("gradient", "gauss_newton", "hessian")


def _table(head: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A Markdown table: the header, a ``---`` separator per column, then one line per row of cells."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(map(str, cells)) + " |" for cells in rows])


def _machine(info: Mapping | None) -> str:
    return describe_machine(dict(info) if info else None)


# ---- 00_data ----------------------------------------------------------------------------------------------------

def key_numbers_text(r: DataResults) -> str:
    """The data page's key numbers, one per line (the known motion only where there is one)."""
    lines = [f"reference mean / max   : {r.reference_mean:.4f} / {r.reference_max:.4f}",
             f"template mean          : {r.template_mean:.4f}",
             f"J(identity)            : {r.loss_identity:.6e}"]
    if r.w_true is not None:
        lines += [f"J(w*)                  : {r.loss_truth:.6e}",
                  "w*                     : " + " ".join(f"{x:+.4f}" for x in r.w_true)]
    lines += [f"AD agreement (gradient, Hessian) < 1e-10: {r.gradient_rel_diff_ad < 1e-10}, "
              f"{r.hessian_rel_diff_ad < 1e-10}",
              f"Taylor orders (gradient, Hessian): {r.taylor_order_gradient:.1f}, {r.taylor_order_hessian:.1f}"]
    return "\n".join(lines)


# ---- 01_ad_costs ------------------------------------------------------------------------------------------------

def derivative_checks_text(comparisons: Mapping[str, DerivativeComparison],
                           taylor: Mapping[str, tuple[float, float]], *, tol: float = 1e-10) -> str:
    """Per model: whether every hand-coded derivative agrees with ``torch.func`` to ``tol`` (relative), and the
    decay of the Taylor errors (:func:`~imreg_lib.paper.ad_costs.derivative_checks`)."""
    lines = []
    for model, c in comparisons.items():
        agree = ", ".join(f"{k} {c.rel_diff[k] <= tol}" for k in _DERIVATIVES)
        lines.append(f"{model:10s} ({c.n_params:2d} parameters): hand-coded = torch.func to a relative {tol:g}: "
                     + agree)
        lines.append(f"{'':10s} Taylor test of J: first-order error decays like h^{taylor[model][0]:.1f}, "
                     f"second-order like h^{taylor[model][1]:.1f} (exact: h^2 and h^3)")
    return "\n".join(lines)


def derivative_times_markdown(comparisons: Mapping[str, DerivativeComparison]) -> str:
    """Median times of the hand-coded and the ``torch.func`` derivatives, their ratio and relative difference."""
    labels = {"gradient": "gradient", "gauss_newton": "Gauss-Newton matrix", "hessian": "exact Hessian"}
    rows = [(model, label, f"{c.structured_ms[k]:.3f}", f"{c.ad_ms[k]:.3f}", f"{c.ad_ms[k] / c.structured_ms[k]:.1f}×",
             f"{c.rel_diff[k]:.1e}") for model, c in comparisons.items() for k, label in labels.items()]
    return ("Median times at the same point (hand-coded includes the loss value; the exact Hessian includes value "
            "and gradient):\n\n" + _table(("model", "derivative", "hand-coded (ms)", "torch.func (ms)",
                                           "torch.func / hand-coded", "relative difference"), rows))


def factor_range(points: Sequence[ScalingPoint], num: str, den: str) -> str:
    """``"a× at p = i to b× at p = j"``: the ratio of the times ``num`` and ``den`` (attribute names of
    :class:`~imreg_lib.paper.ad_costs.ScalingPoint`) at the fewest and at the most parameters."""
    pts = sorted(points, key=lambda pt: pt.n_params)
    lo, hi = pts[0], pts[-1]
    return (f"{getattr(lo, num) / getattr(lo, den):.1f}× at p = {lo.n_params} to "
            f"{getattr(hi, num) / getattr(hi, den):.1f}× at p = {hi.n_params}")


def scaling_phrases(study: ScalingStudy) -> dict[str, str]:
    """The factor ranges of the parameter study: generic AD and hand-coded, Hessian and Jacobian."""
    return {"scaling_ad_hessian": factor_range(study.with_ad, "hessian_ad_ms", "loss_ms"),
            "scaling_ad_jacobian": factor_range(study.with_ad, "jacobian_ad_ms", "forward_ms"),
            "scaling_hc_hessian": factor_range(study.by_params, "hessian_ms", "loss_ms"),
            "scaling_hc_jacobian": factor_range(study.by_params, "jacobian_ms", "forward_ms")}


def factors_against_paper(table: Mapping[str, Mapping[str, ADCosts]], machine: Mapping | None) -> str:
    """A Markdown list: every measured factor (of means) against the paper's, with the factor of medians, and, for
    the authors' protocol, why a factor is worse than the paper's even in medians.

    Parameters
    ----------
    table : mapping
        ``{protocol: {model: ADCosts}}`` (:func:`~imreg_lib.paper.ad_costs.ad_cost_table`).
    machine : mapping or None
        :func:`~imreg_lib.timing.machine_info` of the measuring machine (named in the explanation).
    """
    lines = []
    for prot, costs in table.items():
        for model, c in costs.items():
            ours, theirs = c.factors, PAPER_FACTORS[model]
            parts = [f"{fn} {ours[fn]:.1f}× ({'better than' if ours[fn] < theirs[fn] else 'worse than'} the "
                     f"paper's {theirs[fn]:g}×; medians {c.factors_median[fn]:.1f}×)"
                     for fn in ("gradient", "hessian", "jacobian")]
            lines.append(f"* `{prot}`, {model}: " + "; ".join(parts) + ".")
            worse = [fn for fn in ("gradient", "hessian", "jacobian") if c.factors_median[fn] >= theirs[fn]]
            if prot == "paper" and worse:
                lines.append(_worse_than_paper(c, model, worse, machine))
    return "\n".join(lines)


def _worse_than_paper(c: ADCosts, model: str, worse: Sequence[str], machine: Mapping | None) -> str:
    n_p = c.n_params
    text = (f"  Worse than the paper even in medians: {', '.join(worse)}. The loss itself costs "
            f"{c.loss_median_ms:.2f} ms here (the paper: {PAPER_TABLE1[model]['loss'][0]:g} ms).")
    alt = c.alternatives.get("gradient:torch.autograd")
    if "gradient" in worse and alt is not None:
        text += (f" The gradient by `torch.func.grad` takes {c.gradient_median_ms:.1f} ms, by plain "
                 f"`torch.autograd` {alt['median_ms']:.1f} ms: the transform's per-operation overhead "
                 "weighs on a function made of many small operations.")
    if "hessian" in worse or "jacobian" in worse:
        text += (f" `jacrev(grad)` and `jacfwd` push all {n_p} cotangents or tangents through every "
                 f"operation at once (`vmap`), on arrays {n_p} times larger than the function's, here on "
                 f"{_machine(machine)} in float64. The authors' machine is not "
                 "known.")
    return text


# ---- 02_multiscale ----------------------------------------------------------------------------------------------

_FIG2_RUNS = (("single scale", "single_scale"), ("traditional", "traditional"),
              ("predictor-corrector", "predictor_corrector"))


def fig2_summary(comparison: MethodComparison, objective: SSDObjective, pair: ImagePair,
                 verdict: Mapping[str, Claim]) -> str:
    """Fig. 2 in words: every run's final loss against the initial one, the known motion's loss and each run's
    parameter error (where the motion is known), the page's two checks, and the report's verdict.

    Parameters
    ----------
    comparison : MethodComparison
        :func:`~imreg_lib.paper.multiscale_runs.compare_methods`.
    objective : SSDObjective
        The registration objective (for :math:`J(w^*;\\theta_{\\min})`).
    pair : ImagePair
        The images (``w_true``, the known motion, or ``None``).
    verdict : mapping
        The report's Fig. 2 claims by id (:func:`~imreg_lib.paper.report.fig2_claims`).
    """
    runs = {name: getattr(comparison, key) for name, key in _FIG2_RUNS}
    initial = comparison.initial_loss
    lines = [f"initial loss J(identity; theta_min) = {initial:.4e}"]
    lines += [f"{name:20s} final loss {run.final_loss:.4e}  ({run.final_loss / initial:.4f} x initial)"
              for name, run in runs.items()]
    if pair.w_true is not None:
        theta_min = comparison.predictor_corrector.thetas[-1]
        lines.append(f"{'known truth':20s} loss       {float(objective.loss(pair.w_true, theta_min)):.4e}")
        for name, run in runs.items():
            dA = float((run.w - pair.w_true)[:4].abs().max())
            db = float((run.w - pair.w_true)[4:].abs().max())
            lines.append(f"{name:20s} parameter error: max |A - A*| = {dA:.3f}, max |b - b*| = {db:.3f}")
    lines.append(f"Fig. 2 claim: {verdict['fig2.registers'].status}; traditional method registers too: "
                 f"{_traditional_registers(verdict)} (the report's rules)")
    return "\n".join(lines)


def _traditional_registers(verdict: Mapping[str, Claim]) -> bool:
    return verdict["conclusions.traditional_fails"].status == "differs"


def fig2_phrases(comparison: MethodComparison, verdict: Mapping[str, Claim]) -> dict[str, str]:
    """The losses of Fig. 2, the report's status and rule of its claim, and whether the predictor is what rescues
    the registration (it is not when the traditional method registers too)."""
    rescue = ("The predictor is not what rescues the registration here: the traditional method, warm starting "
              "alone, registers too." if _traditional_registers(verdict) else "The traditional method does not "
              "register here: the predictor is what rescues the registration.")
    return {"fig2_initial": f"{comparison.initial_loss:.3e}",
            "fig2_single": f"{comparison.single_scale.final_loss:.3e}",
            "fig2_pc": f"{comparison.predictor_corrector.final_loss:.3e}",
            "fig2_trad": f"{comparison.traditional.final_loss:.3e}",
            "fig2_status": verdict["fig2.registers"].status, "fig2_rule": verdict["fig2.registers"].rule,
            "fig2_rescue": rescue}


def fig2_work(comparison: MethodComparison) -> str:
    """Newton iterations, Hessian evaluations and time of each Fig. 2 run, as a fixed-width table."""
    lines = [f"{'method':20s} {'Newton iterations':>18s} {'Hessians':>9s} {'time':>9s}"]
    for name, key in _FIG2_RUNS:
        run = getattr(comparison, key)
        lines.append(f"{name:20s} {run.iterations:18d} {run.n_hessians:9d} {run.seconds:8.3f} s")
    return "\n".join(lines)


def fig2_work_phrases(comparison: MethodComparison, verdict: Mapping[str, Claim]) -> dict[str, str]:
    """The Newton work and times of the predictor-corrector and the traditional method, and, from the report's
    claims (``verdict``), whether the predictor saves Hessians and pays off in time."""
    pc, trad = comparison.predictor_corrector, comparison.traditional
    pays = verdict["fig2.predictor_pays_in_time"].ours.split(":")[0]
    pairs = comparison.timing or ((trad.seconds, pc.seconds),)
    s_trad, s_pc = (statistics.median(p[k] for p in pairs) for k in (0, 1))
    return {"fig2_hess_pc": str(pc.n_hessians), "fig2_hess_trad": str(trad.n_hessians),
            "fig2_time_pc": f"{s_pc:.2f}", "fig2_time_trad": f"{s_trad:.2f}", "fig2_timing_pairs": str(len(pairs)),
            "fig2_timing_ratio": f"{comparison.paired_ratio:.2f}", "fig2_pays": pays,
            "fig2_saves": verdict["fig2.predictor_saves_hessians"].status}


def sign_and_decade(x: float) -> str:
    """``"~ -1e+08"``: the sign and decade of ``x``, what is stable of a ratio of round-off-sized numbers (the values
    themselves are in the results JSON, checked by the regression test in decades)."""
    return f"~ {'-' if x < 0 else '+'}1e{int(np.floor(np.log10(abs(x)))):+03d}"


def _median_grad(name: str, median: float) -> str:
    # the as-coded gradient ratios divide by round-off-sized norms: only their sign and decade are stable
    return sign_and_decade(median) if name.endswith("as_coded") else f"{median:.2f}"


def fig3_summary(prediction: PredictionResults, verdict: Mapping[str, Claim]) -> str:
    """Fig. 3 in words: per predictor variant, at how many scales it improved the loss and the median relative
    differences; the as-coded count below -31000; and the report's verdict on the paper's conclusion."""
    n_pred = len(prediction.thetas) - 1
    lines = [f"{'variant':26s} {'loss better':>11s} {'median rel. loss diff':>22s} {'median rel. grad diff':>22s}"]
    for name, s in prediction.summary.items():
        lines.append(f"{name:26s} {s.helped_loss:5d} / {n_pred:<3d} {s.median_loss:22.3f} "
                     f"{_median_grad(name, s.median_grad):>22s}")
    lines.append(f"as coded: gradient differences below -31000 at {prediction.coded_below_minus_31000} of {n_pred} "
                 "scales")
    gn_claim = verdict["fig3.gauss_newton_corrected"]
    lines.append(f"the paper's conclusion (the predictor needs the exact Hessian): {gn_claim.status}; rule: "
                 f"{gn_claim.rule}")
    return "\n".join(lines)


def fig3_phrases(prediction: PredictionResults, verdict: Mapping[str, Claim]) -> dict[str, str]:
    """Per variant the median gradient difference and the count of helped scales; the as-coded count below
    -31000; whether the paper's conclusion survives the correction, by the report's rule and status."""
    n_pred = len(prediction.thetas) - 1
    out = {}
    for name, s in prediction.summary.items():
        out[f"fig3_{name}_median_grad"] = _median_grad(name, s.median_grad)
        out[f"fig3_{name}_helped"] = f"{s.helped_loss} of {n_pred}"
    out["fig3_coded_below"] = f"{prediction.coded_below_minus_31000} of {n_pred}"
    gn_claim = verdict["fig3.gauss_newton_corrected"]
    out["fig3_verdict"] = ("survives the correction" if gn_claim.status == "reproduced"
                           else "does not survive the correction")
    out["fig3_rule"] = gn_claim.rule
    out["fig3_coded_status"] = verdict["fig3.coded_below_31000"].status
    return out


# ---- 03_superresolution -----------------------------------------------------------------------------------------

def problem_summary(problem: SuperResolutionProblem, variant: str = "as_coded") -> str:
    """One line on the super-resolution problem: data, sizes, unknowns, data values, motion parameters, device."""
    m, mt = problem.grid.m[0], problem.template_grid.m[0]
    return (f"data: {problem.source}; reference {m}x{m}, {problem.n_templates} templates of {mt}x{mt}, "
            f"{problem.n_pixels} unknown pixels from {problem.n_data} data, "
            f"{varpro_variant(problem, variant=variant).n_params} motion parameters; device {problem.device.type}")


def starts_markdown(starts: Mapping[tuple[str, bool], PreregistrationResult], problem: SuperResolutionProblem,
                    variant: str = "as_coded") -> str:
    """The pre-registrations (:func:`~imreg_lib.paper.preregistration.preregistration_starts`): schedule, loss, final
    loss at the finest scale and the largest parameter error against the generating motion."""
    return _table(("schedule", "loss", "final loss (θ = 1e-3)", "max parameter error"),
                  [("continuation (fix)" if cont else "restart from identity (authors)", loss,
                    f"{pre.history[-1].loss:.4g}", f"{parameter_error(problem, pre.w, variant):.3f}")
                   for (loss, cont), pre in starts.items()])


def _varpro_row(label: str, run: VarProRun, paper: float | None = None) -> tuple:
    """One table row; the final gradient norm is round-off sensitive after convergence, so one digit."""
    return (label, f"{100 * run.rel_error:.2f} %", "" if paper is None else f"{100 * paper:.2f} %",
            f"{run.residual_norms[0]:.4f} → {run.residual_norms[-1]:.4f}", f"{run.losses[-1] / run.losses[0]:.2e}",
            f"{run.grad_norms[-1] / run.grad_norms[0]:.0e}", sum(run.lm.accepted))


def varpro_runs_markdown(runs: Mapping[str, VarProRun], paper: Mapping[str, float | None] | None = None, *,
                         first: str = "method", paper_head: str = "paper") -> str:
    """LM runs of variable projection by label: final relative error (and the paper's, where ``paper`` has the
    label), :math:`\\|r\\|` at the first and last point, relative loss and gradient norm, accepted steps."""
    paper = paper or {}
    return _table((first, "rel. error", paper_head, "‖r‖ first → last", "rel. loss", "rel. grad", "accepted"),
                  [_varpro_row(label, run, paper.get(label)) for label, run in runs.items()])


def projections_markdown(runs: Mapping[str, VarProRun]) -> str:
    """Figs 5-6: the runs of :func:`~imreg_lib.paper.superres_runs.compare_projections` by their labels, with the
    paper's final errors (:data:`~imreg_lib.paper.recorded.PAPER_SR`)."""
    return varpro_runs_markdown({METHOD_LABELS[k]: r for k, r in runs.items()},
                                {METHOD_LABELS[k]: PAPER_SR.get(k, {}).get("rel_error") for k in runs})


def partial_markdown(partial: Mapping[float, VarProRun], continued: Mapping[float, VarProRun]) -> str:
    """Figs 8-9: the restarted runs, with the errors read off the paper's Fig. 8, then the continued ones."""
    rows = {f"last {percent_label(p)}, restarted": r for p, r in partial.items()}
    paper = {f"last {percent_label(p)}, restarted": PAPER_SR["partial"].get(p, {}).get("rel_error_read")
             for p in partial}
    rows |= {f"last {percent_label(p)}, continued": r for p, r in continued.items()}
    return varpro_runs_markdown(rows, paper, first="differentiated", paper_head="paper (read)")


def fig5_phrases(runs: Mapping[str, VarProRun], floor: float) -> dict[str, str]:
    """The final errors of Diff All, No Diff and the implicit derivative, the error at the true motion, the first
    residual norm and the ratio of the No Diff and Diff All errors."""
    da, nd = runs["diff_all"], runs["no_diff"]
    return {"fig5_diff_all": f"{100 * da.rel_error:.2f} %", "fig5_no_diff": f"{100 * nd.rel_error:.2f} %",
            "fig5_implicit": f"{100 * runs['implicit'].rel_error:.2f} %", "fig5_floor": f"{100 * floor:.2f} %",
            "fig5_r0": f"{da.residual_norms[0]:.2f}", "fig5_ratio": f"{nd.rel_error / da.rel_error:.2f}"}


def partial_phrases(partial: Mapping[float, VarProRun]) -> dict[str, str]:
    """The final errors and relative losses of the restarted partial differentiation, by fraction."""
    return {"partial_errors": ", ".join(f"{percent_label(p)}: {100 * r.rel_error:.1f} %" for p, r in partial.items()),
            "partial_losses": ", ".join(f"{percent_label(p)}: {r.losses[-1] / r.losses[0]:.1e}"
                                        for p, r in partial.items())}


def costs_markdown(costs: Mapping[str, ProjectionCost]) -> str:
    """Median time of one residual and one Jacobian per method
    (:func:`~imreg_lib.paper.superres_runs.projection_costs`)."""
    return _table(("method", "CG iterations", "residual", "Jacobian", "Jacobian / residual"),
                  [(c.label or name, c.cg_iterations, f"{c.residual_ms:.1f} ms", f"{c.jacobian_ms:.1f} ms",
                    f"{c.factor:.1f}") for name, c in costs.items()])


def cost_phrases(costs: Mapping[str, ProjectionCost]) -> dict[str, str]:
    """The inexact projection of :func:`~imreg_lib.paper.superres_runs.cost_varpros` and its Jacobian time as a fraction
    of the converged Diff All one's."""
    inexact = costs["inexact"]
    ratio = costs["diff_all"].jacobian_ms / inexact.jacobian_ms
    return {"inexact_cost_name": f"{inexact.cg_iters}-iteration", "inexact_cost_ratio": f"1/{ratio:.0f}"}


_SR_GLUED = (("sr_diff_all_status", "sr.diff_all"), ("sr_no_diff_status", "sr.no_diff"),
             ("sr_authors_start_status", "sr.diff_all_authors_start"), ("fig8_more_than_70", "fig8.more_than_70"),
             ("fig8_100_best", "fig8.100_best"), ("fig10_diminishing", "fig10.diminishing"),
             ("fig10_best", "fig10.50_100_best"))


def sr_verdict_phrases(claims: Sequence[Claim], *, data: str,
                       partial_continued: Mapping[float, VarProRun]) -> dict[str, str]:
    """The report's verdicts on the super-resolution claims as ``"<status> (<ours>)"`` (``"not run"`` for a claim
    this build did not evaluate), the two Fig. 7 claims in one phrase, the data, and the final errors of the
    continued partial differentiation."""
    verdict = {c.id: c for c in claims}

    def said(cid: str) -> str:
        c = verdict[cid]
        return c.status if c.status == "not run" else f"{c.status} ({c.ours})"

    out = {key: said(cid) if cid in verdict else "not run" for key, cid in _SR_GLUED}
    out["fig7_judged"] = "; ".join(f"{verdict[c].claim}: {said(c)}" for c in ("fig7.70_worse_than_0",
                                                                             "fig7.100_beats_90_95"))
    out["sr_data"] = data
    out["partial_continued_errors"] = ", ".join(f"{percent_label(p)}: {100 * r.rel_error:.1f} %"
                                                for p, r in partial_continued.items()) or "(not run)"
    return out


def fig7_table(taylor: Mapping[str, TaylorResult]) -> tuple[str, dict[str, str]]:
    r"""The Fig. 7 Taylor errors of each Jacobian as a Markdown table (error at the largest step, the slope between
    the two largest steps, the floor over :math:`h \le 10^{-4}`) and the page's phrases: the noise floor of the
    residual (``fig7_floor``) and the range of the large-step slopes (``fig7_large_slopes``), computed here rather
    than asserted in prose."""
    rows, slopes = [], {}
    for label, t in taylor.items():
        e = t.errors[1]
        slopes[label] = math.log10(e[0] / e[1]) / math.log10(t.h[0] / t.h[1])
        tail = [x for h, x in zip(t.h, e, strict=True) if h <= 1e-4]
        rows.append((label, f"{e[0]:.1e}", f"{slopes[label]:.2f}", f"{min(tail):.0e}"))
    ref = taylor[next(iter(taylor))]
    floor = min(x for h, x in zip(ref.h, ref.errors[0], strict=True) if h <= 1e-4)
    lo, hi = f"{min(slopes.values()):.2f}", f"{max(slopes.values()):.2f}"
    table = _table(("Jacobian", "error at the largest h", "slope between the two largest h",
                    "error floor (h ≤ 1e-4)"), rows)
    return table, {"fig7_floor": f"{floor:.0e}", "fig7_large_slopes": lo if lo == hi else f"{lo} to {hi}"}


# ---- 03_superresolution: round-off ensembles --------------------------------------------------------------------

def _ensemble_rows(ensembles: EnsembleSet):
    for family, runs in ensembles.items():
        for key, e in runs.items():
            yield ensemble_label(family, key), paper_value(family, key), e


def ensembles_markdown(ensembles: EnsembleSet) -> str:
    """The final relative error of every ensemble (:class:`~imreg_lib.paper.ensembles.EnsembleSet`): the paper's,
    the members' median and range, the page's own run (member 0) and the range relative to the median."""
    return _table(("run", "paper", "median", "range over the members", "the page's run", "range / median", "members"),
                  [(label, "" if ref is None else f"{100 * ref:.1f} %", f"{100 * e.median:.2f} %",
                    f"{100 * e.min:.2f}–{100 * e.max:.2f} %", f"{100 * e.rel_errors[0]:.2f} %",
                    f"{100 * (e.max - e.min) / e.median:.2g} %" if e.amplified else "not amplified", e.members)
                   for label, ref, e in _ensemble_rows(ensembles)])


def ensemble_phrases(ensembles: EnsembleSet, no_diff: VarProRun | None = None) -> dict[str, str]:
    """Glue phrases: members, Diff All's range, the widest relative range, the runs that did not move, and No
    Diff's error over every Diff All member's."""
    rows = list(_ensemble_rows(ensembles))
    if not rows:
        return {"ens_members": "one (no ensembles)", "ens_diff_all": "not run", "ens_widest": "not run",
                "ens_still": "not run", "ens_ratio": "not run"}
    members = max(e.members for _, _, e in rows)
    out = {"ens_members": str(members)}
    da = ensembles.projections.get("diff_all")
    out["ens_diff_all"] = (f"{100 * da.min:.1f}–{100 * da.max:.1f} % (median {100 * da.median:.1f} %)"
                           if da is not None else "not run")
    label, _, e = max(rows, key=lambda r: (r[2].max - r[2].min) / r[2].median)
    out["ens_widest"] = (f"{label}: {100 * e.min:.1f}–{100 * e.max:.1f} %, "
                         f"{100 * (e.max - e.min) / e.median:.0f} % of its median")
    still = [label for label, _, e in rows if not e.amplified]
    out["ens_still"] = (", ".join(still) + f" end within {NOT_AMPLIFIED:.0e} (relative) of the page's run in their "
                        "first perturbed member: they carry round-off along without amplifying it, and keep two members"
                        if still else "every run amplified round-off")
    if da is not None and no_diff is not None:
        ratios = [no_diff.rel_error / x for x in da.rel_errors]
        out["ens_ratio"] = (f"{min(ratios):.2f}–{max(ratios):.2f} over the {da.members} Diff All members "
                            f"({'above 1 for every member' if min(ratios) > 1 else 'not above 1 for every member'})")
    else:
        out["ens_ratio"] = "not run"
    return out


# ---- 04_reproduction: the report's tables -----------------------------------------------------------------------

#: The data sets a report can judge, with the words the report uses for them.
DATA_SETS: dict[str, str] = {"paper": "the paper's images", "synthetic": "the synthetic hand"}

_STATUS_MARK: dict[Status, str] = {Status.REPRODUCED: "✓ reproduced", Status.DIFFERS: "✗ differs",
                                   Status.IMPROVED: "▲ improved", Status.BEYOND: "◇ beyond the paper",
                                   Status.NOT_RUN: "– not run"}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _why(c: Claim) -> str:
    return f"rule: {c.rule}" + (f". {c.explanation[0].upper()}{c.explanation[1:]}" if c.explanation else "")


def markdown_table(claims: Sequence[Claim]) -> str:
    """The claims of one data set as a Markdown table (section, claim, paper, ours, status, rule and reasons)."""
    return _table(("where", "claim", "paper", "ours", "status", "rule and reasons"),
                  [[_cell(v) for v in (c.section, c.claim, c.paper, c.ours, _STATUS_MARK[c.status], _why(c))]
                   for c in claims])


def _aligned(by_data: Mapping[str, Sequence[Claim]]) -> list[tuple[Claim, dict[str, Claim | None]]]:
    """Rows matched by claim id across data sets, in the order of first appearance."""
    order: dict[str, Claim] = {}
    for claims in by_data.values():
        for c in claims:
            order.setdefault(c.id, c)
    index = {name: {c.id: c for c in claims} for name, claims in by_data.items()}
    return [(first, {name: index[name].get(cid) for name in by_data}) for cid, first in order.items()]


def comparison_table(by_data: Mapping[str, Sequence[Claim]]) -> str:
    """One Markdown table with a column pair (ours, status) per data set, claims matched by id.

    ``by_data`` maps a data-set key of :data:`DATA_SETS` (or any label) to its claims, in the column order wanted.
    Every data set is judged by the same rule; :func:`rules_table` lists the rules and the reasons.
    """
    names = list(by_data)
    head = ["where", "claim", "paper"] + [f"{h} ({DATA_SETS.get(n, n)})" for n in names for h in ("ours", "status")]
    rows = []
    for first, row in _aligned(by_data):
        cells = [first.section, first.claim, first.paper]
        for n in names:
            c = row[n]
            cells += [c.ours, _STATUS_MARK[c.status]] if c is not None else ["—", _STATUS_MARK[Status.NOT_RUN]]
        rows.append([_cell(v) for v in cells])
    return _table(head, rows)


def rules_table(by_data: Mapping[str, Sequence[Claim]]) -> str:
    """The rule of every claim and, per data set, the reasons behind its status."""
    names = list(by_data)
    return _table(["claim", "rule"] + [f"reasons ({DATA_SETS.get(n, n)})" for n in names],
                  [[_cell(v) for v in (f"{first.section}: {first.claim}", first.rule,
                                       *(row[n].explanation if row[n] is not None else "" for n in names))]
                   for first, row in _aligned(by_data)])


def defects_table(defects: Sequence[Defect] = DEFECTS) -> str:
    """The defects of the authors' code (:data:`~imreg_lib.paper.defects.DEFECTS`) as a Markdown table."""
    return _table(("#", "defect in the authors' code", "how this book handles it"),
                  [(d.number, _cell(d.defect), _cell(d.handling)) for d in defects])
