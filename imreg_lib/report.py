r"""The reproduction report: every claim of the paper beside this book's number, with a status.

The section notebooks write their key numbers to ``_build/results/<notebook>.json``. :func:`load_results`
reads them, :func:`build_claims` turns them into :class:`Claim` rows and :func:`markdown_table` renders the
rows for the book. Each claim is judged by a rule stated in its explanation, never by hand:

* ``"reproduced"``: our number agrees with the paper's within the stated tolerance, or the qualitative
  statement holds in our run;
* ``"differs"``: it does not, and the explanation says by how much and why we think so;
* ``"improved"``: our implementation does clearly better than the paper reports (cheaper derivatives,
  flat memory), for a reason the explanation names;
* ``"not run"``: the notebook ran with parameters that do not include this setting (e.g. the quick preview).

:data:`DEFECTS` lists the defects of the authors' code found by the experiment specification and how the
book handles each.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["DEFECTS", "NOTEBOOKS", "STATUSES", "Claim", "Defect", "build_claims", "claims_summary",
           "defects_table", "load_results", "markdown_table"]

#: The notebooks whose results the report reads (file stems).
NOTEBOOKS: tuple[str, ...] = ("01_ad_costs", "02_multiscale", "03_superresolution")

STATUSES: tuple[str, ...] = ("reproduced", "differs", "improved", "not run")

#: Tolerance of a timing factor against the paper's (different machines): a ratio within [1/1.5, 1.5].
FACTOR_TOLERANCE = 1.5
#: Tolerance of a reconstruction error against the paper's: within 20 % (relative).
ERROR_TOLERANCE = 0.2


@dataclass(frozen=True)
class Claim:
    """One statement of the paper with our number and the verdict.

    Attributes
    ----------
    section : str
        Where the paper makes it ("Table 1", "Fig 2", "§4.3.1", ...).
    claim : str
        The statement, in a few words.
    paper : str
        The paper's number or wording.
    ours : str
        Ours, formatted.
    status : str
        One of :data:`STATUSES`.
    explanation : str
        One line: the rule applied and, where it differs, the reason.
    stable : bool
        Whether ``ours`` is reproducible bit for bit on one machine (``False`` for timings), so the
        regression tests may compare it.
    paper_value, ours_value : float, optional
        The two numbers, where the claim is one number (for plotting ours against the paper's).
    """

    section: str
    claim: str
    paper: str
    ours: str
    status: str
    explanation: str
    stable: bool = True
    paper_value: float | None = None
    ours_value: float | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


@dataclass(frozen=True)
class Defect:
    """A defect of the authors' code (spec §11-12) and how the book handles it."""

    number: int
    defect: str
    handling: str


# ---- loading ----------------------------------------------------------------------------------------------

def load_results(directory: str | Path, notebooks: Sequence[str] = NOTEBOOKS) -> dict[str, dict]:
    """Read ``<directory>/<notebook>.json`` for every notebook.

    Raises
    ------
    FileNotFoundError
        Naming every missing file and the command that writes it, before anything is read.
    """
    directory = Path(directory)
    missing = [nb for nb in notebooks if not (directory / f"{nb}.json").is_file()]
    if missing:
        raise FileNotFoundError(
            f"results_dir={str(directory)!r} lacks {', '.join(m + '.json' for m in missing)}: run those notebooks "
            "first (`make book` does, in order; so does `make test`'s nbval step)")
    return {nb: json.loads((directory / f"{nb}.json").read_text()) for nb in notebooks}


# ---- formatting helpers -----------------------------------------------------------------------------------

def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _x(x: float) -> str:
    return f"{x:.1f}×"


def _get(d: Mapping, *keys, default=None):
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return default
        d = d[k]
    return d


def _fraction_key(d: Mapping, p: float):
    """The key of fraction ``p`` in a JSON dict whose keys are fractions written as strings ("0.9", "1")."""
    for k in d:
        try:
            if math.isclose(float(k), p):
                return k
        except ValueError:
            continue
    return None


def _not_run(section: str, claim: str, paper: str, what: str) -> Claim:
    return Claim(section, claim, paper, "—", "not run", f"this build did not run {what}")


# ---- Table 1 ----------------------------------------------------------------------------------------------

_MODEL_NAMES = {"affine": "affine (6 parameters)", "neural_ode": "neural ODE (50 parameters)"}
_RATIO_NAMES = {"gradient": "gradient / loss", "hessian": "Hessian / loss", "jacobian": "Jacobian / forward map"}


def _table1_claims(ad: Mapping) -> list[Claim]:
    rows = []
    for model, name in _MODEL_NAMES.items():
        for fn in ("gradient", "hessian", "jacobian"):
            claim = f"{_RATIO_NAMES[fn]} time, {name}"
            paper_entry = _get(ad, "paper", model, "paper", "factors", fn) or _get(ad, "cached", model, "paper",
                                                                                   "factors", fn)
            paper = _x(paper_entry) if paper_entry is not None else "—"
            ours_p = _get(ad, "paper", model, "factors_median", fn)
            ours_c = _get(ad, "cached", model, "factors_median", fn)
            if ours_p is None or paper_entry is None:
                rows.append(_not_run("Table 1", claim, paper, "the authors' timing protocol"))
            else:
                ratio = ours_p / paper_entry
                if ratio > FACTOR_TOLERANCE:
                    status = "differs"
                    n = 50 if model == "neural_ode" else 6
                    why = (f"{ratio:.1f}× the paper's: generic torch.func (vmap over {n} tangents) is "
                           "overhead-bound on this 2-core CPU")
                elif ratio < 1 / FACTOR_TOLERANCE:
                    status, why = "improved", f"{1 / ratio:.1f}× below the paper's factor under the same protocol"
                else:
                    status, why = "reproduced", f"within a factor {FACTOR_TOLERANCE} of the paper's (other machine)"
                rows.append(Claim("Table 1", claim + " (authors' protocol)", paper, _x(ours_p), status, why,
                                  stable=False, paper_value=paper_entry, ours_value=ours_p))
            if ours_c is not None and paper_entry is not None:
                status = "improved" if ours_c < paper_entry / FACTOR_TOLERANCE else (
                    "differs" if ours_c > paper_entry * FACTOR_TOLERANCE else "reproduced")
                why = ("cached spline coefficients and structured (FAIR-style) derivatives; "
                       + ("cheaper than the paper's" if status == "improved" else "no cheaper than the paper's"))
                rows.append(Claim("Table 1", claim + " (cached, structured)", paper, _x(ours_c), status, why,
                                  stable=False, paper_value=paper_entry, ours_value=ours_c))
    return rows


# ---- Figs 2 and 3 -----------------------------------------------------------------------------------------

def _fig2_claims(ms: Mapping) -> list[Claim]:
    single = _get(ms, "single_scale", "parameter_error")
    pc = _get(ms, "predictor_corrector", "parameter_error")
    trad = _get(ms, "traditional", "parameter_error")
    w_true = _get(ms, "w_true")
    if single is None or pc is None or not w_true:
        return [_not_run("Fig 2", "single scale fails, predictor-corrector registers", "—", "Fig 2")]
    scale = math.sqrt(sum(v * v for v in w_true))
    aligned = pc < 0.01 * scale
    stuck = single > 0.1 * scale
    rows = [Claim(
        "Fig 2", "predictor-corrector registers the hand; a single fine scale stops in a bad local minimum",
        "shown in Fig 2", f"‖w − w_true‖: predictor-corrector {pc:.3g}, single scale {single:.3g}",
        "reproduced" if aligned and stuck else "differs",
        f"rule: predictor-corrector within 1 % of ‖w_true‖ = {scale:.3g} and single scale off by more than 10 %")]
    if trad is not None:
        rows.append(Claim(
            "§5 Conclusions", "the predictor-corrector succeeds where the standard multi-scale approach fails",
            "stated", f"traditional multi-scale ‖w − w_true‖ = {trad:.3g}",
            "differs" if trad < 0.01 * scale else "reproduced",
            "on the paper's Fig 2 problem the traditional multi-scale method (no predictor) registers too"
            if trad < 0.01 * scale else "the traditional multi-scale method fails here as well"))
    return rows


def _finite(values: Sequence) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _fig3_claims(ms: Mapping) -> list[Claim]:
    pred = _get(ms, "prediction")
    if not pred:
        return [_not_run("Fig 3", "exact vs Gauss-Newton predictor", "—", "Fig 3")]
    rows = []
    exact_l = _finite(_get(pred, "exact", "rel_loss_diff", default=[]))
    exact_g = _finite(_get(pred, "exact", "rel_grad_diff", default=[]))
    if exact_l and exact_g:
        share_l = sum(v >= 0 for v in exact_l) / len(exact_l)
        share_g = sum(v >= 0 for v in exact_g) / len(exact_g)
        rows.append(Claim(
            "Fig 3", "exact-Hessian prediction decreases the loss and the gradient norm",
            "differences ≥ 0 (one gradient outlier)",
            f"loss ≥ 0 at {100 * share_l:.0f} %, gradient ≥ 0 at {100 * share_g:.0f} % of {len(exact_l)} scales",
            "reproduced" if share_l >= 0.9 and share_g >= 0.9 else "differs",
            "rule: at least 90 % of the scales improve"))
    coded_g = _finite(_get(pred, "gauss_newton_as_coded", "rel_grad_diff", default=[]))
    coded_l = _finite(_get(pred, "gauss_newton_as_coded", "rel_loss_diff", default=[]))
    if coded_g and coded_l:
        below = sum(v < -31000 for v in coded_g)
        rows.append(Claim(
            "Fig 3", "Gauss-Newton prediction: all relative gradient-norm differences below −31000 (as coded)",
            "< −31000", f"{below} of {len(coded_g)} below −31000; largest {max(coded_g):.3g}",
            "reproduced" if below == len(coded_g) else "differs",
            "all negative by orders of magnitude; the size depends on how tightly LM converged at the previous θ, "
            "where the authors' code evaluates the reference (defect 9)"))
        neg = sum(v < 0 for v in coded_l) / len(coded_l)
        rows.append(Claim(
            "Fig 3", "approximated (Gauss-Newton) Hessians tend to increase the loss (as coded)", "verdict of §3.3",
            f"as coded: loss difference < 0 at {100 * neg:.0f} % of {len(coded_l)} scales",
            "reproduced" if neg >= 0.5 else "differs", "rule: most scales negative under the authors' metric"))
    gn_l = _finite(_get(pred, "gauss_newton", "rel_loss_diff", default=[]))
    gn_g = _finite(_get(pred, "gauss_newton", "rel_grad_diff", default=[]))
    if gn_l and gn_g and exact_g:
        share_l = sum(v >= 0 for v in gn_l) / len(gn_l)
        share_g = sum(v >= 0 for v in gn_g) / len(gn_g)
        med_gn = sorted(gn_g)[len(gn_g) // 2]
        med_ex = sorted(exact_g)[len(exact_g) // 2]
        helps = share_l >= 0.9 and share_g >= 0.9
        rows.append(Claim(
            "Fig 3", "approximated (Gauss-Newton) Hessians tend to increase loss and gradient (corrected)",
            "verdict of §3.3", f"corrected metric: loss ≥ 0 at {100 * share_l:.0f} %, gradient ≥ 0 at "
            f"{100 * share_g:.0f} % of scales; median gradient gain {med_gn:.2f} (exact {med_ex:.2f})",
            "differs" if helps else "reproduced",
            "with every term at θ_n+1 and a consistent GN step, GN prediction helps almost as much as the exact one"
            if helps else "the GN prediction does not help under the corrected metric either"))
    return rows


# ---- super-resolution -------------------------------------------------------------------------------------

def _rel_loss(run: Mapping) -> float:
    losses = run["losses"]
    return losses[-1] / losses[0]


def _error_status(ours: float, paper: float, floor: float | None) -> tuple[str, str]:
    if abs(ours - paper) <= ERROR_TOLERANCE * paper:
        return "reproduced", f"within {100 * ERROR_TOLERANCE:.0f} % of the paper's"
    why = f"{ours / paper:.2f}× the paper's; our data differ (synthetic hand, LM start farther from the motion)"
    if floor is not None:
        why += f": an exact solve at the true motion already gives {_pct(floor)} here"
    return "differs", why


def _sr_claims(sr: Mapping) -> list[Claim]:
    rows: list[Claim] = []
    paper = _get(sr, "paper", default={})
    da, nd = _get(sr, "diff_all"), _get(sr, "no_diff")
    p_da, p_nd = _get(paper, "rel_error", "diff_all"), _get(paper, "rel_error", "no_diff")
    if da is None or nd is None or p_da is None or p_nd is None:
        return [_not_run("§4.3", "Diff All vs No Diff", "10.7 % / 25.61 %", "Figs 5-6")]
    for name, run, ref in (("differentiating all CG iterations (Diff All)", da, p_da),
                           ("ignoring the projection's Jacobian (No Diff)", nd, p_nd)):
        status, why = _error_status(run["rel_error"], ref, _get(sr, "rel_error_at_true_motion"))
        rows.append(Claim("§4.3 / Fig 6", f"final relative reconstruction error, {name}", _pct(ref),
                          _pct(run["rel_error"]), status, why, paper_value=ref, ours_value=run["rel_error"]))
    ratio, p_ratio = nd["rel_error"] / da["rel_error"], p_nd / p_da
    rows.append(Claim(
        "§4.3 / Fig 5-6", "Diff All beats No Diff (ratio of the errors)", f"{p_ratio:.2f}", f"{ratio:.2f}",
        "reproduced" if ratio > 1 and abs(ratio - p_ratio) <= ERROR_TOLERANCE * p_ratio else "differs",
        f"rule: ratio > 1 and within {100 * ERROR_TOLERANCE:.0f} % of the paper's; relative loss "
        f"{_rel_loss(da):.1e} vs {_rel_loss(nd):.2g}"))
    cost = _get(sr, "timings", "per_method")
    if cost:
        key = next((k for k in cost if k.startswith("Diff All")), None)
        if key is not None:
            f = cost[key]["factor"]
            rows.append(Claim(
                "§4.3", "the Jacobian by forward-mode AD costs six to ten residuals", "6–10×", _x(f),
                "reproduced" if 6 <= f <= 10 else ("improved" if f < 6 else "differs"),
                "rule: inside the paper's range; the implicit Jacobian (one batched CG) is cheaper still",
                stable=False))
    rows += _fig7_claims(sr)
    rows += _partial_claims(sr, paper)
    rows += _inexact_claims(sr, paper)
    rows += _memory_claims(sr)
    return rows


def _taylor_at_largest_step(sr: Mapping, label: str) -> float | None:
    errors = _get(sr, "taylor", label, "errors")
    return float(errors[0]) if errors else None


def _fig7_claims(sr: Mapping) -> list[Claim]:
    e70, e0 = _taylor_at_largest_step(sr, "70%"), _taylor_at_largest_step(sr, "0%")
    e90, e95, e100 = (_taylor_at_largest_step(sr, k) for k in ("90%", "95%", "100%"))
    rows = []
    if e70 is None or e0 is None:
        rows.append(_not_run("Fig 7", "70 % converges worse than 0 %", "stated", "the 70 % and 0 % Jacobian tests"))
    else:
        rows.append(Claim("Fig 7", "differentiating the last 70 % is worse than not differentiating at all",
                          "stated", f"error at h = 1e5: 70 % {e70:.2g}, 0 % {e0:.2g}",
                          "reproduced" if e70 > e0 else "differs", "rule: larger Taylor error at the largest step"))
    if None in (e90, e95, e100):
        rows.append(_not_run("Fig 7", "100 % beats 90 % and 95 %", "stated", "the 90/95/100 % Jacobian tests"))
    else:
        rows.append(Claim("Fig 7", "differentiating 100 % converges better than 90 % and 95 %", "stated",
                          f"error at h = 1e5: 100 % {e100:.3g}, 95 % {e95:.3g}, 90 % {e90:.3g}",
                          "reproduced" if e100 < min(e90, e95) else "differs",
                          "rule: smallest Taylor error at the largest step; all slopes are 1 at the authors' steps, "
                          "see the Fig 7 discussion"))
    floor = [min(v["errors"]) for k, v in _get(sr, "taylor", default={}).items() if "continued" not in k]
    if floor:
        rows.append(Claim("Fig 7", "errors level off at about 1e-2 for small h", "≈ 1e-2",
                          f"{min(floor):.1g} … {max(floor):.1g}",
                          "reproduced" if 1e-3 <= min(floor) and max(floor) <= 1e-1 else "differs",
                          "rule: floor within a decade of 1e-2; it is the roughness of the 200-step CG residual"))
    return rows


def _partial_claims(sr: Mapping, paper: Mapping) -> list[Claim]:
    part = _get(sr, "partial", default={})
    keys = {p: _fraction_key(part, p) for p in (0.7, 0.9, 0.95, 1.0)}
    read = _get(paper, "partial_rel_error_read", default={})
    rows = []
    for p, k in keys.items():
        rk = _fraction_key(read, p)
        ref = read[rk] if rk is not None else None
        label = f"relative error with the last {100 * p:.0f} % of 200 CG iterations differentiated"
        if k is None or ref is None:
            rows.append(_not_run("Fig 8", label, _pct(ref) if ref else "—", f"p = {p}"))
            continue
        status, why = _error_status(part[k]["rel_error"], ref, _get(sr, "rel_error_at_true_motion"))
        rows.append(Claim("Fig 8", label, f"≈ {_pct(ref)} (read off)", _pct(part[k]["rel_error"]), status, why,
                          paper_value=ref, ours_value=part[k]["rel_error"]))
    if all(keys.values()):
        err = {p: part[k]["rel_error"] for p, k in keys.items()}
        ok = err[0.7] > 2 * err[1.0] and max(err[0.9], err[0.95]) <= 1.2 * err[1.0]
        rows.append(Claim(
            "§4.3.1 / Fig 8", "more than 70 % must be differentiated; little difference after 90 %", "stated",
            f"70 %: {_pct(err[0.7])}; 90/95/100 %: {_pct(err[0.9])} / {_pct(err[0.95])} / {_pct(err[1.0])}",
            "reproduced" if ok else "differs",
            "rule: 70 % more than twice the 100 % error, 90 % and 95 % within 20 % of it"))
        loss = {p: _rel_loss(part[k]) for p, k in keys.items()}
        best_loss = min(loss, key=loss.get)
        best_err = min(err, key=err.get)
        rows.append(Claim(
            "§4.3.1 / Fig 8", "100 % is best in loss reduction and reconstruction error", "stated",
            f"lowest relative loss at {100 * best_loss:.0f} %, lowest error at {100 * best_err:.0f} %",
            "reproduced" if best_loss == 1.0 and best_err == 1.0 else "differs",
            "rule: 100 % lowest in both; differences between 90-100 % are within LM's noise on our data"))
    return rows


def _inexact_claims(sr: Mapping, paper: Mapping) -> list[Claim]:
    inex = _get(sr, "inexact", default={})
    read = _get(paper, "inexact_rel_error_read", default={})
    rows = []
    for k_read, ref in read.items():
        n = int(k_read)
        label = f"relative error with {n} CG iteration{'s' if n > 1 else ''} per projection"
        if str(n) not in inex:
            rows.append(_not_run("Fig 10", label, _pct(ref), f"{n} CG iterations"))
            continue
        status, why = _error_status(inex[str(n)]["rel_error"], ref, _get(sr, "rel_error_at_true_motion"))
        rows.append(Claim("Fig 10", label, f"≈ {_pct(ref)} (read off)", _pct(inex[str(n)]["rel_error"]), status,
                          why, paper_value=ref, ours_value=inex[str(n)]["rel_error"]))
    counts = sorted(int(n) for n in inex)
    if {10, 100} <= set(counts):
        e10, e100 = inex["10"]["rel_error"], inex["100"]["rel_error"]
        rows.append(Claim(
            "§4.3.2 / Fig 10", "diminishing returns: 10 CG iterations are close to 100", "stated",
            f"10: {_pct(e10)}, 100: {_pct(e100)}", "reproduced" if e10 <= 1.2 * e100 else "differs",
            "rule: the 10-iteration error within 20 % of the 100-iteration error"))
    if {50, 100} <= set(counts):
        loss = {n: _rel_loss(inex[str(n)]) for n in counts}
        best = sorted(loss, key=loss.get)[:2]
        rows.append(Claim(
            "§4.3.2 / Fig 10", "50 or 100 iterations reduce the loss most", "stated",
            f"two lowest relative losses at {best[0]} and {best[1]} iterations",
            "reproduced" if set(best) == {50, 100} else "differs", "rule: the two lowest final relative losses"))
    return rows


def _memory_claims(sr: Mapping) -> list[Claim]:
    growth = _get(sr, "memory_growth_after_second")
    peak = _get(sr, "peak_memory_mb")
    rows = []
    if growth is not None:
        rows.append(Claim(
            "§4.3", "memory grows with the optimisation steps (a PyTorch issue)", "observed",
            f"growth after the second LM point ≤ {100 * growth:.2f} %",
            "improved" if growth < 0.05 else "reproduced",
            "no graph is kept between LM points (torch.func, no retained autograd state); rule: < 5 % is flat",
            stable=False))
    if peak is not None:
        rows.append(Claim("README", "at least 60 GB are needed to run all experiments", "≥ 60 GB",
                          f"peak {peak / 1024:.2f} GB (whole super-resolution notebook)",
                          "improved" if peak < 60 * 1024 else "differs",
                          "forward mode through CG with vmap, float64, nothing recomputed", stable=False))
    return rows


# ---- public ----------------------------------------------------------------------------------------------

_BUILDERS: dict[str, Callable[[Mapping], list[Claim]]] = {
    "01_ad_costs": _table1_claims,
    "02_multiscale": lambda ms: _fig2_claims(ms) + _fig3_claims(ms),
    "03_superresolution": _sr_claims,
}


def build_claims(results: Mapping[str, Mapping]) -> list[Claim]:
    """All claims, in the paper's order, from the results of :func:`load_results`.

    A notebook missing from ``results`` gives no rows; a setting the notebook did not run gives a
    ``"not run"`` row.
    """
    claims: list[Claim] = []
    for nb, builder in _BUILDERS.items():
        if nb in results:
            claims += builder(results[nb])
    return claims


def claims_summary(claims: Sequence[Claim]) -> dict[str, int]:
    """How many claims have each status."""
    return {s: sum(c.status == s for c in claims) for s in STATUSES}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


_STATUS_MARK = {"reproduced": "✓ reproduced", "differs": "✗ differs", "improved": "▲ improved",
                "not run": "– not run"}


def markdown_table(claims: Sequence[Claim]) -> str:
    """The claims as one Markdown table (section, claim, paper, ours, status, explanation)."""
    lines = ["| where | claim | paper | ours | status | why |", "|---|---|---|---|---|---|"]
    for c in claims:
        lines.append("| " + " | ".join(_cell(v) for v in (c.section, c.claim, c.paper, c.ours,
                                                           _STATUS_MARK[c.status], c.explanation)) + " |")
    return "\n".join(lines)


#: The defects of the authors' code (spec §12; numbers as there) and what the book does about each.
DEFECTS: tuple[Defect, ...] = (
    Defect(1, "Spline coefficients recomputed in every call", "cached per θ (still θ-differentiable); the "
           "authors' protocol is kept for Table 1 as `protocol='paper'`"),
    Defect(2, "Forward mode through up to 500 CG iterations needs a lot of memory (README: ≥ 60 GB)",
           "vmap'ed JVPs with no retained graph; peak and growth per LM point are measured"),
    Defect(3, "LM evaluates the residual 2-3 times per step; `max_iter` counts points, rejected ones included",
           "the semantics are reproduced; each distinct point is evaluated once"),
    Defect(4, "`newton-cg` ignores `gtol` in the pre-registration",
           "reproduced as coded (`preregistration='as_coded'`)"),
    Defect(5, "Pre-registration restarts from the identity at every θ",
           "as coded fails on our data; the default continues from the previous θ (both shown)"),
    Defect(6, "Pre-registration loss is ‖·‖ in one notebook and ‖·‖² in the others",
           "both norms are run and compared on the super-resolution page"),
    Defect(7, "VarPro residual without the λL rows and √h weights; template 0 has free parameters (24 vs 18)",
           "`variant='as_coded'` (default) and `variant='paper'` (eq. 7, 18 parameters) are both run"),
    Defect(8, "Random affines: unused translations, hard-coded rotation centre, float32, re-seeded",
           "the authors' parameter stream is reproduced exactly (seed j + 1, float32 rounding) without global state"),
    Defect(9, "Fig 3: GN reference at the previous θ, GN step 2× too long, trust-ncg instead of trust-exact",
           "Fig 3 is drawn as coded and corrected, with a split separating the two GN defects; both solvers run"),
    Defect(10, "Fig 2 colour limit uses min instead of max", "fixed"),
    Defect(11, "Paper eq. (5) has the wrong sign", "the code's (correct) sign; a test checks the step against an AD "
           "right-hand side and a dense solve"),
    Defect(12, "Asymmetric spline valid window; unused vmapped spline",
           "the authors' window is the default (`window='paper'`); FAIR's is available (`window='fair'`)"),
    Defect(13, "Partial differentiation restarts CG at the split; 90 % uses 199 iterations",
           "reproduced (restart, 199 iterations); a continued variant is added: its Jacobian is wrong (Fig 7 errors "
           "≈ 1e17) and its LM runs stall, so the restart is what makes partial differentiation work"),
    Defect(14, "The N = 500 Jacobian test is overlaid on the N = 200 axes",
           "Fig 7 shows the N = 200 test only, as the paper"),
    Defect(15, "Stale figures from a toy run in the authors' repository", "the paper's settings are taken from the "
           "notebooks at the paper's commits (spec §9-10)"),
    Defect(16, "Absolute CG tolerance and Python `if` breaks inside traced code",
           "a primal-value break that works under jacfwd/vmap; the Fig 7 floor is explained"),
    Defect(17, "Integer domain, no-op dtype casts", "float64 throughout"),
    Defect(18, "Table 1 times `torch.randn` and uses random, unrealistic parameters; float32 images",
           "`protocol='paper'` reproduces it; `protocol='cached'` uses near-identity parameters in float64"),
    Defect(19, "Unused and broken modules", "not ported"),
    Defect(20, "Platform-dependent newton-cg results", "numbers are compared with tolerances, never tuned"),
)


def defects_table(defects: Sequence[Defect] = DEFECTS) -> str:
    """The defects as a Markdown table."""
    lines = ["| # | defect in the authors' code | how this book handles it |", "|---|---|---|"]
    lines += [f"| {d.number} | {_cell(d.defect)} | {_cell(d.handling)} |" for d in defects]
    return "\n".join(lines)


def claims_json(claims: Sequence[Claim]) -> list[dict]:
    """The claims as JSON-ready dictionaries."""
    return [asdict(c) for c in claims]
