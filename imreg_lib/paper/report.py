r"""The reproduction report: every claim of the paper beside this book's number, judged once, by a stated rule.

The section notebooks write their key numbers to ``<results>/<notebook>.json``. :func:`load_results` reads them
and :func:`build_claims` turns them into :class:`Claim` rows. Each claim is evaluated here and nowhere else:
its row holds the paper's number, ours, the status, the rule in words and the data it ran on, and the notebooks
glue their verdicts from the same evaluation (:func:`fig3_claims`). A rule compares numbers; none is a verdict
typed by hand. The statuses:

* ``"reproduced"``: our number agrees with the paper's within the rule's tolerance, or the paper's statement
  holds in our run by the rule;
* ``"differs"``: it does not; ``explanation`` says by how much and what we think the reason is;
* ``"improved"``: the paper's own measurement, under the paper's protocol, comes out clearly better here;
* ``"beyond the paper"``: a measurement of another method than the paper's (cached, hand-coded derivatives,
  SimpleITK on the same images), shown for comparison and never counted as a reproduction;
* ``"not run"``: the notebook ran with parameters that leave the setting out (e.g. the quick preview).

When the notebooks have run on both data sets, the synthetic hand and the paper's own images, every claim is
judged on each with its own status; :func:`comparison_table` sets them side by side and :func:`report_records`
writes them as JSON (``report.json``).

:data:`DEFECTS` lists the defects of the authors' code and how the book handles each.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .peers import SUCCESS_CELLS
from .superres import METHOD_LABELS

__all__ = ["DATA_SETS", "DEFECTS", "ERROR_TOLERANCE", "FACTOR_TOLERANCE", "NOTEBOOKS", "STATUSES", "Claim", "Defect",
           "build_claims", "claims_by_data", "claims_json", "claims_summary", "comparison_table", "defects_table",
           "error_status", "factor_status", "fig2_claims", "fig3_claims", "load_results", "markdown_table",
           "peers_claims", "reading", "report_records", "rules_table", "taylor_accuracy_step", "write_json",
           "write_results"]

#: The notebooks whose results the report reads (file stems).
NOTEBOOKS: tuple[str, ...] = ("01_ad_costs", "02_multiscale", "03_superresolution")
#: The notebooks whose peak memory the 60 GB claim compares (every section notebook that records one).
MEMORY_NOTEBOOKS: tuple[str, ...] = ("00_data", "01_ad_costs", "02_multiscale", "03_superresolution")

STATUSES: tuple[str, ...] = ("reproduced", "differs", "improved", "beyond the paper", "not run")
#: The data sets a report can judge, with the words the report uses for them.
DATA_SETS: dict[str, str] = {"paper": "the paper's images", "synthetic": "the synthetic hand"}

#: Tolerance of a timing factor against the paper's (different machines): a ratio within [1/1.5, 1.5].
FACTOR_TOLERANCE = 1.5
#: Tolerance of a reconstruction error against the paper's: within 20 % (relative).
ERROR_TOLERANCE = 0.2
#: Fig 2: a registration is "found" when every matrix entry is within this of the truth ...
MATRIX_TOLERANCE = 0.01
#: ... and the translation within this many cells.
SHIFT_TOLERANCE_CELLS = 0.1
#: The README's memory figure for running the authors' experiments, in GB.
AUTHORS_MEMORY_GB = 60.0


@dataclass(frozen=True)
class Claim:
    """One statement of the paper with our number and its verdict.

    Attributes
    ----------
    id : str
        Stable identifier (``"fig2.registers"``): the same claim on another data set has the same id.
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
    rule : str
        The rule that decided ``status``, in words.
    explanation : str
        Why it differs, where it does, and the settings behind the row.
    stable : bool
        Whether ``ours`` is reproducible on one machine (``False`` for timings and memory), so the regression
        tests may compare the status.
    paper_value, ours_value : float, optional
        The two numbers, where the claim is one number (for plotting ours against the paper's).
    data : str
        What the numbers were computed on (the notebook's own description of its data).
    """

    id: str
    section: str
    claim: str
    paper: str
    ours: str
    status: str
    rule: str
    explanation: str = ""
    stable: bool = True
    paper_value: float | None = None
    ours_value: float | None = None
    data: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


@dataclass(frozen=True)
class Defect:
    """A defect of the authors' code and how the book handles it."""

    number: int
    defect: str
    handling: str


# ---- loading ----------------------------------------------------------------------------------------------

def load_results(directory: str | Path, notebooks: Sequence[str] = NOTEBOOKS, *,
                 optional: Sequence[str] = ("00_data", "05_peers")) -> dict[str, dict]:
    """Read ``<directory>/<notebook>.json`` for every notebook (and for each ``optional`` one that exists).

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
            "first (`make book` does, in order; so does `make test`'s nbval step; `make paper-results` for the "
            "paper's images)")
    names = list(notebooks) + [nb for nb in optional if nb not in notebooks and (directory / f"{nb}.json").is_file()]
    return {nb: json.loads((directory / f"{nb}.json").read_text()) for nb in names}


def claims_by_data(folders: Mapping[str, str | Path | None], data: str, *,
                   full_scale: bool = False) -> dict[str, list[Claim]]:
    """The claims of every data set whose results exist, for the report page.

    Parameters
    ----------
    folders : mapping
        ``{data set: results folder or None}`` with keys of :data:`DATA_SETS`, in the order of the report's
        columns.
    data : str
        The data set this build of the book ran on: its results must be complete (:func:`load_results` raises
        otherwise); another data set is read where any of its notebooks' results exist.
    full_scale : bool
        Also read ``full_scale.json`` (``make full-scale``: the authors' full size) where a folder has it; off by
        default, so that the committed report does not depend on what a machine ran besides the notebooks.

    Returns
    -------
    dict
        ``{data set: claims}`` in the order of ``folders``.
    """
    if data not in DATA_SETS:
        raise ValueError(f"data must be one of {list(DATA_SETS)}, got {data!r}")
    by_data = {}
    for name, folder in folders.items():
        present = folder is not None and any((Path(folder) / f"{nb}.json").is_file() for nb in NOTEBOOKS)
        if name == data or present:
            optional = ("00_data", "05_peers") + (("full_scale",) if full_scale else ())
            by_data[name] = build_claims(load_results(folder, optional=optional))
    return by_data


# ---- helpers ----------------------------------------------------------------------------------------------

def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _x(x: float) -> str:
    return f"{x:.1f}×"


def _as_json(results):
    """A notebook's results as its JSON mapping: a record of :mod:`imreg_lib.paper.results` (anything with
    ``to_json()``) through its ``to_json()``, a mapping as it is."""
    return results.to_json() if hasattr(results, "to_json") else results


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


def _not_run(cid: str, section: str, claim: str, paper: str, what: str, data: str = "") -> Claim:
    return Claim(cid, section, claim, paper, "—", "not run", f"this build did not run {what}", data=data)


def _finite(values: Sequence) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _rel_loss(run: Mapping) -> float:
    losses = run["losses"]
    return losses[-1] / losses[0]


def _rel_grad(run: Mapping) -> float:
    grads = run["grad_norms"]
    return grads[-1] / grads[0]


def _within(ours: float, paper: float, tol: float) -> bool:
    """Two-sided relative agreement: :math:`|o - p| \\le \\mathrm{tol}\\,|p|`."""
    return abs(ours - paper) <= tol * abs(paper)


def _is_synthetic(data: str) -> bool:
    return "synthetic" in data


def factor_status(ours: float, paper: float, tol: float = FACTOR_TOLERANCE) -> str:
    """A timing factor under the paper's protocol: within ``[paper/tol, paper·tol]`` reproduces, below improves."""
    ratio = ours / paper
    if ratio > tol:
        return "differs"
    return "improved" if ratio < 1 / tol else "reproduced"


def error_status(ours: float, paper: float, tol: float = ERROR_TOLERANCE) -> str:
    """A reconstruction error: within ``tol`` (relative, either side) of the paper's reproduces."""
    return "reproduced" if _within(ours, paper, tol) else "differs"


def _ensemble(sr: Mapping, family: str, key: str) -> Mapping | None:
    """The round-off ensemble of a run (more than one member), or ``None``."""
    e = _get(sr, "ensembles", family, key)
    return e if e is not None and len(e["rel_errors"]) > 1 else None


def ensemble_status(low: float, high: float, paper: float, tol: float = ERROR_TOLERANCE) -> str:
    r"""A round-off ensemble's final error reproduces when the paper's value :math:`p` lies within the members'
    range ``[low, high]`` widened by ``tol`` (relative): :math:`(1 - tol)\,low \le p \le (1 + tol)\,high`."""
    return "reproduced" if (1 - tol) * low <= paper <= (1 + tol) * high else "differs"


def _typical(sr: Mapping, family: str, key: str, run: Mapping) -> dict[str, float]:
    """A run's final relative loss, gradient norm and error: the medians of its round-off ensemble where the page
    ran one, else the run's own."""
    e = _ensemble(sr, family, key)
    if e is None:
        return {"loss": _rel_loss(run), "gradient norm": _rel_grad(run), "error": run["rel_error"]}
    return {"loss": _median(e["rel_losses"]), "gradient norm": _median(e["rel_grads"]), "error": e["median"]}


def _judged_error(sr: Mapping, family: str, key: str, run: Mapping, ref: float) -> tuple[str, str, float, str]:
    """``(status, ours, ours_value, rule)`` of a final error against the paper's: on the run's round-off ensemble
    where the page ran one, else on the run."""
    e = _ensemble(sr, family, key)
    if e is None:
        return (error_status(run["rel_error"], ref), _pct(run["rel_error"]), run["rel_error"],
                f"within {100 * ERROR_TOLERANCE:.0f} % (relative, either side) of the paper's")
    return (ensemble_status(e["min"], e["max"], ref),
            f"{_pct(e['median'])} (range {_pct(e['min'])}–{_pct(e['max'])}, {len(e['rel_errors'])} members)",
            e["median"], f"the paper's value within the members' range widened by {100 * ERROR_TOLERANCE:.0f} %")


def taylor_accuracy_step(curves: Mapping[str, Sequence[float]], h: Sequence[float], *,
                         factor: float = 10.0) -> int | None:
    r"""The index of the step at which a Taylor test shows the accuracy of the compared Jacobians.

    At the largest steps the residual is far from linear and bounded, so the error is about :math:`h\,\|J_p v\|`
    and orders the Jacobians by the size of :math:`J_p v`, not by their accuracy; at the smallest steps every curve
    sits on the same noise floor. The step used is the smallest one at which every curve is at least ``factor``
    times above the highest floor (the largest of the curves' minima), excluding the largest step. ``None`` when
    no step qualifies.
    """
    floor = max(min(e) for e in curves.values())
    order = sorted(range(len(h)), key=lambda i: h[i])  # smallest h first
    largest = order[-1]
    for i in order:
        if i != largest and all(e[i] >= factor * floor for e in curves.values()):
            return i
    return None


# ---- Table 1 ----------------------------------------------------------------------------------------------

_MODEL_NAMES = {"affine": "affine (6 parameters)", "neural_ode": "neural ODE (50 parameters)"}
_RATIO_NAMES = {"gradient": "gradient / loss", "hessian": "Hessian / loss", "jacobian": "Jacobian / forward map"}


def _machine(info: Mapping | None) -> str:
    from ..timing import describe_machine

    return describe_machine(dict(info) if info else None)


def _table1_claims(ad: Mapping) -> list[Claim]:
    data = _get(ad, "settings", "source", default="")
    machine = _machine(_get(ad, "machine"))
    rows = []
    for model, name in _MODEL_NAMES.items():
        for fn in ("gradient", "hessian", "jacobian"):
            cid, claim = f"table1.{model}.{fn}", f"{_RATIO_NAMES[fn]} time, {name}"
            paper_entry = _get(ad, "paper", model, "paper", "factors", fn) or _get(ad, "cached", model, "paper",
                                                                                   "factors", fn)
            paper = _x(paper_entry) if paper_entry is not None else "—"
            ours_p = _get(ad, "paper", model, "factors", fn)
            ours_c = _get(ad, "cached", model, "factors", fn)
            if ours_p is None or paper_entry is None:
                rows.append(_not_run(cid, "Table 1", claim, paper, "the authors' timing protocol", data))
            else:
                status = factor_status(ours_p, paper_entry)
                ratio = ours_p / paper_entry
                why = {"differs": f"{ratio:.1f}× the paper's factor; generic torch.func (vmap over "
                                  f"{50 if model == 'neural_ode' else 6} tangents) on {machine}",
                       "improved": f"{1 / ratio:.1f}× below the paper's factor under the same protocol, on {machine}",
                       "reproduced": f"on {machine}; the paper's machine is not stated"}[status]
                ours_ms = _get(ad, "paper", model, f"{fn}_ms")
                paper_ms = _get(ad, "paper", model, "paper", "ms", fn)
                if status == "improved" and not (ours_ms is not None and paper_ms is not None and ours_ms < paper_ms):
                    # a lower factor from a slower function is no cheaper derivative
                    status = "reproduced"
                    took = (f"{ours_ms:.3g} ms against the paper's {paper_ms:.3g} ms" if None not in (ours_ms, paper_ms)
                            else "not recorded")
                    why = (f"{1 / ratio:.1f}× below the paper's factor, but the derivative itself is not cheaper "
                           f"({took}; on {machine}): the function is slower, not the derivative faster")
                rows.append(Claim(cid, "Table 1", claim + " (authors' protocol)", paper, _x(ours_p), status,
                                  f"ratio of mean times, as the paper's; within a factor {FACTOR_TOLERANCE} of the "
                                  f"paper's reproduces, above differs, below improves where the derivative itself "
                                  f"takes less time than the paper's (else reproduces)", why, stable=False,
                                  paper_value=paper_entry, ours_value=ours_p, data=data))
            if ours_c is not None and paper_entry is not None:
                rows.append(Claim(
                    f"{cid}.cached", "Table 1", claim + " (cached, structured)", paper, _x(ours_c), "beyond the paper",
                    "not judged: another method than the paper's (spline coefficients cached per θ, hand-coded "
                    "FAIR-style derivatives); shown for comparison only",
                    f"ratio of mean times on {machine}", stable=False, paper_value=paper_entry, ours_value=ours_c,
                    data=data))
    return rows


# ---- Figs 2 and 3 -----------------------------------------------------------------------------------------

def _registration_error(w: Sequence[float], w_true: Sequence[float]) -> tuple[float, float]:
    """Largest error of the 2x2 matrix entries and of the translation of an affine ``w = (A.ravel(), b)``."""
    d = [abs(a - b) for a, b in zip(w, w_true, strict=True)]
    return max(d[:4]), max(d[4:6])


def fig2_claims(ms) -> list[Claim]:
    """The Fig 2 claim, the conclusions' claim on the traditional method and the predictor's work against the
    traditional method's, from 02's results: the :class:`~imreg_lib.paper.results.MultiscaleResults` record
    (Fig. 3 not needed) or its JSON mapping (at least ``data``, ``w_true``, ``h`` and per run ``w`` and
    ``final_loss``; ``n_hessians`` and ``seconds`` for the work)."""
    ms = _as_json(ms)
    return _fig2_registration_claims(ms) + _fig2_work_claims(ms)


def _fig2_work_claims(ms: Mapping) -> list[Claim]:
    """With exact Hessians the predictor should save Newton work over the traditional method on the same schedule
    (the abstract's "benefits over a traditional multi-scale method"); whether it also saves time is ours."""
    pc, trad = _get(ms, "predictor_corrector"), _get(ms, "traditional")
    if not pc or not trad or "n_hessians" not in pc or "n_hessians" not in trad:
        return []
    data = _get(ms, "data", default="")
    h_pc, h_t = pc["n_hessians"], trad["n_hessians"]
    rows = [Claim("fig2.predictor_saves_hessians", "Abstract / Fig 2",
                  "with exact Hessians the predictor saves Newton work over the traditional multi-scale method",
                  "stated", f"Hessian evaluations: predictor-corrector {h_pc}, traditional {h_t}",
                  "reproduced" if h_pc < h_t else "differs",
                  "fewer Hessian evaluations than the traditional method on the same θ schedule", data=data)]
    s_pc, s_t = pc.get("seconds"), trad.get("seconds")
    if s_pc is not None and s_t is not None:
        pays = s_pc < s_t
        rows.append(Claim("fig2.predictor_pays_in_time", "Fig 2", "the predictor's saving shows in the time",
                          "— (no times reported)",
                          f"{'pays off' if pays else 'does not pay off'}: predictor-corrector {s_pc:.2f} s, "
                          f"traditional {s_t:.2f} s", "beyond the paper",
                          "not judged (the paper reports no times): pays off when the predictor-corrector's run "
                          "takes less time than the traditional method's", stable=False, data=data))
    return rows


def _fig2_registration_claims(ms: Mapping) -> list[Claim]:
    data = _get(ms, "data", default="")
    single, pc, trad = (_get(ms, k) for k in ("single_scale", "predictor_corrector", "traditional"))
    cid, section = "fig2.registers", "Fig 2"
    claim = "predictor-corrector registers the hand; a single fine scale stops in a bad local minimum"
    if not single or not pc:
        return [_not_run(cid, section, claim, "shown in Fig 2", "Fig 2", data)]
    w_true, h = _get(ms, "w_true"), _get(ms, "h")
    rows = []
    if w_true and h and "w" in pc and "w" in single:
        tol_b = SHIFT_TOLERANCE_CELLS * min(h)

        def found(run):
            e_a, e_b = _registration_error(run["w"], w_true)
            return e_a <= MATRIX_TOLERANCE and e_b <= tol_b, e_a, e_b

        ok_pc, a_pc, b_pc = found(pc)
        ok_single, a_s, b_s = found(single)
        rule = (f"against the known motion: found when every matrix entry is within {MATRIX_TOLERANCE} and the "
                f"translation within {SHIFT_TOLERANCE_CELLS} cell ({tol_b:.3g}); predictor-corrector found, single "
                "scale not")
        ours = (f"max error of A / b: predictor-corrector {a_pc:.2g} / {b_pc:.2g}, single scale {a_s:.2g} / "
                f"{b_s:.2g}")
        rows.append(Claim(cid, section, claim, "shown in Fig 2", ours,
                          "reproduced" if ok_pc and not ok_single else "differs", rule, data=data))
        if trad and "w" in trad:
            ok_trad, a_t, b_t = found(trad)
            rows.append(Claim(
                "conclusions.traditional_fails", "§5 Conclusions",
                "the predictor-corrector succeeds where the standard multi-scale approach fails", "stated",
                f"traditional multi-scale: max error of A / b {a_t:.2g} / {b_t:.2g}",
                "differs" if ok_trad else "reproduced", "the traditional multi-scale method does not find the motion "
                "(same test as Fig 2)",
                "on the paper's Fig 2 problem the traditional multi-scale method (no predictor) registers too"
                if ok_trad else "", data=data))
        return rows
    # no known motion (the user's or the paper's images): the final loss at θ_min tells a bad local minimum
    f_pc, f_s = pc["final_loss"], single["final_loss"]
    worse = f"more than {WORSE_LOSS_FACTOR:g} times the predictor-corrector's (a distinct, worse local minimum)"
    rule = f"no known motion: the single-scale loss at θ_min is {worse}"
    rows.append(Claim(cid, section, claim, "shown in Fig 2",
                      f"final loss: predictor-corrector {f_pc:.4g}, single scale {f_s:.4g}",
                      "reproduced" if f_s > WORSE_LOSS_FACTOR * f_pc else "differs", rule, data=data))
    if trad:
        f_t = trad["final_loss"]
        fails = f_t > WORSE_LOSS_FACTOR * f_pc
        rows.append(Claim(
            "conclusions.traditional_fails", "§5 Conclusions",
            "the predictor-corrector succeeds where the standard multi-scale approach fails", "stated",
            f"final loss: traditional {f_t:.4g}, predictor-corrector {f_pc:.4g}",
            "reproduced" if fails else "differs",
            f"no known motion: the traditional method fails when its final loss at θ_min is {worse}",
            "" if fails else "the traditional multi-scale method (no predictor) reaches a minimum as good or "
            f"within a factor {WORSE_LOSS_FACTOR:g}", data=data))
    return rows


def _corrector_note(pred: Mapping) -> str:
    method = _get(pred, "newton_method", default="trust-exact")
    other = _get(pred, "other_newton_method", default={})
    note = f"corrector: SciPy {method} (the paper's; the authors' Fig 3 script used trust-ncg)"
    if other:
        note += (f"; {other.get('method')} reaches {'the same' if other.get('same_minimiser') else 'another'} "
                 "minimiser at θ_min")
    return note


def fig3_claims(ms) -> list[Claim]:
    """The Fig 3 claims from 02's results with their ``prediction`` (the
    :class:`~imreg_lib.paper.results.MultiscaleResults` record or its JSON mapping): the exact predictor, the
    as-coded Gauss-Newton metric, and the corrected comparison.

    The notebook glues its verdicts from these rows, so the page and the report cannot disagree.
    """
    ms = _as_json(ms)
    data = _get(ms, "data", default="")
    pred = _get(ms, "prediction")
    if not pred:
        return [_not_run("fig3.exact_helps", "Fig 3", "exact vs Gauss-Newton predictor", "—", "Fig 3", data)]
    note = _corrector_note(pred)
    rows = []
    exact_l = _finite(_get(pred, "exact", "rel_loss_diff", default=[]))
    exact_g = _finite(_get(pred, "exact", "rel_grad_diff", default=[]))
    if exact_l and exact_g:
        share_l = sum(v >= 0 for v in exact_l) / len(exact_l)
        share_g = sum(v >= 0 for v in exact_g) / len(exact_g)
        rows.append(Claim(
            "fig3.exact_helps", "Fig 3", "exact-Hessian prediction decreases the loss and the gradient norm",
            "differences ≥ 0 (one gradient outlier)",
            f"loss ≥ 0 at {100 * share_l:.0f} %, gradient ≥ 0 at {100 * share_g:.0f} % of {len(exact_l)} scales",
            "reproduced" if share_l >= 0.9 and share_g >= 0.9 else "differs",
            "at least 90 % of the scales improve, in loss and in gradient norm", note, data=data))
    coded_g = _finite(_get(pred, "gauss_newton_as_coded", "rel_grad_diff", default=[]))
    coded_l = _finite(_get(pred, "gauss_newton_as_coded", "rel_loss_diff", default=[]))
    if coded_g and coded_l:
        below = sum(v < -31000 for v in coded_g)
        rows.append(Claim(
            "fig3.coded_below_31000", "Fig 3",
            "Gauss-Newton prediction: all relative gradient-norm differences below −31000 (as coded)", "all < −31000",
            f"{below} of {len(coded_g)} below −31000", "reproduced" if below == len(coded_g) else "differs",
            "every scale below −31000, under the authors' metric",
            "the size depends on how tightly LM converged at the previous θ, where the authors' code evaluates the "
            "reference (defect 9); " + note, data=data))
        neg = sum(v < 0 for v in coded_l) / len(coded_l)
        rows.append(Claim(
            "fig3.coded_loss_increases", "Fig 3",
            "approximated (Gauss-Newton) Hessians tend to increase the loss (as coded)", "verdict of §3.3",
            f"as coded: loss difference < 0 at {100 * neg:.0f} % of {len(coded_l)} scales",
            "reproduced" if neg >= 0.5 else "differs", "most scales negative under the authors' metric", note,
            data=data))
    gn_l = _finite(_get(pred, "gauss_newton", "rel_loss_diff", default=[]))
    gn_g = _finite(_get(pred, "gauss_newton", "rel_grad_diff", default=[]))
    if gn_l and gn_g and exact_l:
        helped_gn, helped_ex, n = sum(v > 0 for v in gn_l), sum(v > 0 for v in exact_l), len(gn_l)
        med_gn, med_ex = _median(gn_g), _median(exact_g)
        survives = med_gn <= 0 or helped_gn < helped_ex - 0.1 * n
        rows.append(Claim(
            "fig3.gauss_newton_corrected", "Fig 3",
            "the predictor needs the exact Hessian: Gauss-Newton predictions do not help (corrected metric)",
            "verdict of §3.3",
            f"Gauss-Newton: loss better at {helped_gn} of {n} scales (exact {helped_ex}), median gradient "
            f"difference {med_gn:.2f} (exact {med_ex:.2f})", "reproduced" if survives else "differs",
            "with every term at θ_n+1 and a consistent step: holds if the Gauss-Newton median gradient difference "
            "is ≤ 0 or it improves the loss at ≥ 10 % fewer scales than the exact Hessian",
            ("the Gauss-Newton prediction helps almost as much as the exact one; " if not survives else "") + note,
            data=data))
    return rows


# ---- super-resolution -------------------------------------------------------------------------------------

def _error_reason(ours: float, paper: float, sr: Mapping) -> str:
    floor = _get(sr, "rel_error_at_true_motion")
    why = f"{ours / paper:.2f}× the paper's"
    if _is_synthetic(_get(sr, "data", default="")):
        why += " on the synthetic hand, not the paper's image"
    if floor is not None:
        why += f"; an exact solve at the true motion gives {_pct(floor)} on these data"
    return why


def _start_note(sr: Mapping, run: Mapping | None, start: str) -> str:
    r0 = run["residual_norms"][0] if run and run.get("residual_norms") else None
    words = {"continuation": "the continuation pre-registration (the fix)",
             "as_coded": "the authors' pre-registration (restarts from the identity)"}[start]
    return f"LM from {words}" + (f"; initial ‖r‖ {r0:.3g} (the paper's 3.14)" if r0 is not None else "")


def _sr_claims(sr: Mapping) -> list[Claim]:
    data = _get(sr, "data", default="")
    rows: list[Claim] = []
    paper = _get(sr, "paper", default={})
    da, nd = _get(sr, "diff_all"), _get(sr, "no_diff")
    p_da, p_nd = _get(paper, "rel_error", "diff_all"), _get(paper, "rel_error", "no_diff")
    if da is None or nd is None or p_da is None or p_nd is None:
        return [_not_run("sr.diff_all", "§4.3", "Diff All vs No Diff", "10.7 % / 25.61 %", "Figs 5-6", data)]
    start = _get(sr, "preregistration", default="continuation")
    for key, name, run, ref in (("diff_all", "differentiating all CG iterations (Diff All)", da, p_da),
                                ("no_diff", "ignoring the projection's Jacobian (No Diff)", nd, p_nd)):
        status, ours, value, rule = _judged_error(sr, "projections", key, run, ref)
        why = (_error_reason(value, ref, sr) + "; " if status == "differs" else "") + _start_note(sr, run, start)
        rows.append(Claim(f"sr.{key}", "§4.3 / Fig 6", f"final relative reconstruction error, {name}", _pct(ref),
                          ours, status, rule, why, paper_value=ref, ours_value=value, data=data))
    other = "as_coded" if start == "continuation" else "continuation"
    authors = da if start == "as_coded" else _get(sr, "corrections", f"diff_all, {other} start")
    cid, claim = "sr.diff_all_authors_start", "Diff All from the authors' pre-registration"
    if authors is None:
        rows.append(_not_run(cid, "§4.3 / Fig 6", claim, f"{_pct(p_da)} (‖r₀‖ 3.14)",
                             "LM from the authors' start (corrections=False)", data))
    else:
        family, key = ("projections", "diff_all") if start == "as_coded" else ("corrections",
                                                                              f"diff_all, {other} start")
        status, ours, value, rule = _judged_error(sr, family, key, authors, p_da)
        why = (_error_reason(value, p_da, sr) + "; " if status == "differs" else "") + _start_note(
            sr, authors, "as_coded")
        rows.append(Claim(cid, "§4.3 / Fig 6", claim, f"{_pct(p_da)} (‖r₀‖ 3.14)",
                          f"{ours} (‖r₀‖ {authors['residual_norms'][0]:.3g})", status, rule, why, paper_value=p_da,
                          ours_value=value, data=data))
    p_ratio = p_nd / p_da
    e = _ensemble(sr, "projections", "diff_all")
    if e is None:
        ratio = nd["rel_error"] / da["rel_error"]
        ours, holds = f"{ratio:.2f}", ratio > 1 and _within(ratio, p_ratio, ERROR_TOLERANCE)
        rule = f"ratio > 1 and within {100 * ERROR_TOLERANCE:.0f} % of the paper's"
    else:
        ratios = sorted(nd["rel_error"] / x for x in e["rel_errors"])
        ratio = nd["rel_error"] / e["median"]
        ours = f"{ratio:.2f} (members {ratios[0]:.2f}–{ratios[-1]:.2f})"
        holds = ratios[0] > 1 and ensemble_status(ratios[0], ratios[-1], p_ratio) == "reproduced"
        rule = (f"ratio > 1 for every Diff All member, and the paper's ratio within the members' range widened by "
                f"{100 * ERROR_TOLERANCE:.0f} %")
    rows.append(Claim(
        "sr.ratio", "§4.3 / Fig 5-6", "Diff All beats No Diff (ratio of the errors)", f"{p_ratio:.2f}", ours,
        "reproduced" if holds else "differs", rule,
        f"relative loss {_rel_loss(da):.1e} vs {_rel_loss(nd):.2g}; " + _start_note(sr, da, start), data=data))
    cost = _get(sr, "timings", "per_method")
    if cost:
        key = next((k for k in cost if k.startswith("Diff All")), None)
        if key is not None:
            f = cost[key]["factor"]
            rows.append(Claim(
                "sr.jacobian_cost", "§4.3", "the Jacobian by forward-mode AD costs six to ten residuals", "6–10×",
                _x(f), "reproduced" if 6 <= f <= 10 else ("improved" if f < 6 else "differs"),
                "inside the paper's range reproduces, below improves",
                "the implicit Jacobian (one batched CG) is cheaper still", stable=False, data=data))
    rows += _fig7_claims(sr)
    rows += _partial_claims(sr, paper)
    rows += _inexact_claims(sr, paper)
    rows += _memory_growth_claims(sr)
    return rows


def _fig7_claims(sr: Mapping) -> list[Claim]:
    data = _get(sr, "data", default="")
    taylor = _get(sr, "taylor", default={})
    rows = []

    def judge(cid, claim, labels, holds, describe, rule):
        if not all(k in taylor for k in labels):
            return _not_run(cid, "Fig 7", claim, "stated", "the " + "/".join(labels) + " Jacobian tests", data)
        h = taylor[labels[0]]["h"]
        curves = {k: taylor[k]["errors"] for k in labels}
        i = taylor_accuracy_step(curves, h)
        if i is None:
            return Claim(cid, "Fig 7", claim, "stated", "no step between the floor and the largest step", "differs",
                         rule, "every curve is on the noise floor or saturated: the test does not order these "
                         "Jacobians by accuracy", data=data)
        at = {k: curves[k][i] for k in labels}
        return Claim(cid, "Fig 7", claim, "stated", f"error at h = {h[i]:.2g}: " + describe(at),
                     "reproduced" if holds(at) else "differs", rule,
                     "at the largest step (h = 1e5) the error is about h‖J_p v‖ and orders nothing by accuracy",
                     data=data)

    step_rule = ("Taylor error at the smallest step where every compared curve is 10× above the noise floor "
                 "(not the largest step)")
    rows.append(judge("fig7.70_worse_than_0", "differentiating the last 70 % is worse than not differentiating at all",
                      ("70%", "0%"), lambda e: e["70%"] > e["0%"],
                      lambda e: f"70 % {e['70%']:.3g}, 0 % {e['0%']:.3g}", "larger error for 70 %; " + step_rule))
    rows.append(judge("fig7.100_beats_90_95", "differentiating 100 % converges better than 90 % and 95 %",
                      ("100%", "95%", "90%"), lambda e: e["100%"] < min(e["90%"], e["95%"]),
                      lambda e: f"100 % {e['100%']:.3g}, 95 % {e['95%']:.3g}, 90 % {e['90%']:.3g}",
                      "smallest error for 100 %; " + step_rule))
    floor = [min(v["errors"]) for k, v in taylor.items() if "continued" not in k]
    if floor:
        rows.append(Claim("fig7.floor", "Fig 7", "errors level off at about 1e-2 for small h", "≈ 1e-2",
                          f"{min(floor):.1g} … {max(floor):.1g}",
                          "reproduced" if 1e-3 <= min(floor) and max(floor) <= 1e-1 else "differs",
                          "every curve's smallest error within a decade of 1e-2",
                          "the floor is the roughness of the 200-step CG residual", data=data))
    return rows


def _partial_claims(sr: Mapping, paper: Mapping) -> list[Claim]:
    data = _get(sr, "data", default="")
    part = _get(sr, "partial", default={})
    keys = {p: _fraction_key(part, p) for p in (0.7, 0.9, 0.95, 1.0)}
    read = _get(paper, "partial_rel_error_read", default={})
    rows = []
    for p, k in keys.items():
        rk = _fraction_key(read, p)
        ref = read[rk] if rk is not None else None
        cid, label = f"fig8.error_{round(100 * p)}", (f"relative error with the last {100 * p:.0f} % of 200 CG "
                                                      "iterations differentiated")
        if k is None or ref is None:
            rows.append(_not_run(cid, "Fig 8", label, _pct(ref) if ref else "—", f"p = {p}", data))
            continue
        status, ours, value, rule = _judged_error(sr, "partial", k, part[k], ref)
        rows.append(Claim(cid, "Fig 8", label, f"≈ {_pct(ref)} (read off)", ours, status,
                          rule.replace("the paper's", "the value read off Fig 8"),
                          _error_reason(value, ref, sr) if status == "differs" else "", paper_value=ref,
                          ours_value=value, data=data))
    if all(keys.values()):
        ens = {p: _ensemble(sr, "partial", k) for p, k in keys.items()}
        err = {p: (e["median"] if e else part[keys[p]]["rel_error"]) for p, e in ens.items()}
        # on ensembles: every 70 % member more than twice every 100 % member; medians for "little difference"
        low70 = ens[0.7]["min"] if ens[0.7] else err[0.7]
        high100 = ens[1.0]["max"] if ens[1.0] else err[1.0]
        ok = low70 > 2 * high100 and all(_within(err[p], err[1.0], 0.2) for p in (0.9, 0.95))
        rows.append(Claim(
            "fig8.more_than_70", "§4.3.1 / Fig 8", "more than 70 % must be differentiated; little difference after "
            "90 %", "stated",
            f"70 %: {_pct(err[0.7])} (relative loss {_rel_loss(part[keys[0.7]]):.2g}); 90/95/100 %: "
            f"{_pct(err[0.9])} / {_pct(err[0.95])} / {_pct(err[1.0])}", "reproduced" if ok else "differs",
            "70 % more than twice the 100 % error (on ensembles: the lowest 70 % member more than twice the highest "
            "100 % member); 90 % and 95 % within 20 % of it, either side (medians)", data=data))
        typical = {p: _typical(sr, "partial", k, part[k]) for p, k in keys.items()}
        best = {name: min(keys, key=lambda p, n=name: typical[p][n]) for name in ("loss", "gradient norm", "error")}
        rows.append(Claim(
            "fig8.100_best", "§4.3.1 / Fig 8", "100 % is best in loss and gradient-norm reduction and in the final "
            "error", "stated", ", ".join(f"lowest {n} at {100 * p:.0f} %" for n, p in best.items()),
            "reproduced" if all(p == 1.0 for p in best.values()) else "differs",
            "100 % lowest in final relative loss, relative gradient norm and relative error (medians of the "
            "round-off ensembles where the page ran them)",
            "the 90, 95 and 100 % runs end within a few tenths of a point of each other and round-off reorders them: "
            "under other numeric settings on one machine this verdict flipped (make spread)", stable=False, data=data))
    return rows


def _inexact_claims(sr: Mapping, paper: Mapping) -> list[Claim]:
    data = _get(sr, "data", default="")
    inex = _get(sr, "inexact", default={})
    read = _get(paper, "inexact_rel_error_read", default={})
    rows = []
    for k_read, ref in read.items():
        n = int(k_read)
        cid, label = f"fig10.error_{n}", f"relative error with {n} CG iteration{'s' if n > 1 else ''} per projection"
        if str(n) not in inex:
            rows.append(_not_run(cid, "Fig 10", label, _pct(ref), f"{n} CG iterations", data))
            continue
        status, ours, value, rule = _judged_error(sr, "inexact", str(n), inex[str(n)], ref)
        rows.append(Claim(cid, "Fig 10", label, f"≈ {_pct(ref)} (read off)", ours, status,
                          rule.replace("the paper's", "the value read off Fig 10"),
                          _error_reason(value, ref, sr) if status == "differs" else "", paper_value=ref,
                          ours_value=value, data=data))
    counts = sorted(int(n) for n in inex)
    if {10, 100} <= set(counts):
        e10, e100 = (e["median"] if (e := _ensemble(sr, "inexact", n)) else inex[n]["rel_error"]
                     for n in ("10", "100"))
        rows.append(Claim(
            "fig10.diminishing", "§4.3.2 / Fig 10", "diminishing returns: 10 CG iterations are close to 100", "stated",
            f"10: {_pct(e10)}, 100: {_pct(e100)}", "reproduced" if _within(e10, e100, 0.2) else "differs",
            "the 10-iteration error within 20 % of the 100-iteration error, either side", data=data))
    if {50, 100} <= set(counts):
        typical = {n: _typical(sr, "inexact", str(n), inex[str(n)]) for n in counts}
        two = {name: sorted(counts, key=lambda n, m=name: typical[n][m])[:2] for name in ("loss", "gradient norm")}
        rows.append(Claim(
            "fig10.50_100_best", "§4.3.2 / Fig 10", "50 or 100 iterations reduce the loss and the gradient norm most",
            "stated", "; ".join(f"two lowest relative {n} at {a} and {b} iterations" for n, (a, b) in two.items()),
            "reproduced" if all(set(v) == {50, 100} for v in two.values()) else "differs",
            "the two lowest final relative losses and the two lowest relative gradient norms both at 50 and 100 "
            "(medians of the round-off ensembles where the page ran them)",
            data=data))
    return rows


#: Resident memory that rises by less than this fraction after the second LM point is flat.
FLAT_MEMORY = 0.05


def memory_verdict(growth: float, rss_per_run: Mapping[str, Sequence[float]] | None) -> str:
    """The verdict on "memory grows with the optimisation steps": ``"improved"`` where every run stays flat (less
    than :data:`FLAT_MEMORY` above its first two points); ``"reproduced"`` where a run still grows at its last
    points (by more than 1 % over the last two: growth with the steps, as the authors saw); ``"differs"`` where
    memory rose and then levelled off (a bounded rise, e.g. a cache filling, not growth with the steps)."""
    if growth < FLAT_MEMORY:
        return "improved"
    rising = any(len(rss) >= 3 and rss[-1] > 1.01 * rss[-3] for rss in (rss_per_run or {}).values())
    return "reproduced" if rising else "differs"


def _memory_growth_claims(sr: Mapping) -> list[Claim]:
    growth = _get(sr, "memory_growth_after_second")
    if growth is None:
        return []
    return [Claim(
        "sr.memory_growth", "§4.3", "memory grows with the optimisation steps (a PyTorch issue)", "observed",
        f"growth after the second LM point ≤ {100 * growth:.2f} %",
        memory_verdict(growth, _get(sr, "memory_mb_per_iteration", default={})),
        f"< {100 * FLAT_MEMORY:.0f} % growth after the second LM point is flat (improved); more, and still rising over "
        "the last two points, reproduces the growth; more but levelled off differs (a bounded rise)",
        "no graph is kept between LM points (torch.func, no retained autograd state)", stable=False,
        data=_get(sr, "data", default=""))]


#: Without a known motion, a method "fails" when its final loss is more than this factor above the
#: predictor-corrector's: a distinct, worse local minimum (round-off or a slightly different stop never qualifies).
WORSE_LOSS_FACTOR = 2.0

#: The size of the authors' HEAD scripts, to which their README's memory figure refers.
AUTHORS_FULL_SIZE = {"m": 128, "factor": 4, "n_templates": 16}


def _full_size(fs: Mapping) -> bool:
    problem = fs.get("problem", {})
    return all(problem.get(k) == v for k, v in AUTHORS_FULL_SIZE.items())


def _memory_claim(results: Mapping[str, Mapping]) -> list[Claim]:
    """The README's 60 GB against our peak: on the same size where ``make full-scale`` ran (``full_scale``), else
    beside the peak of every section notebook of this build (another size, so never "improved")."""
    cid, claim = "readme.60gb", "at least 60 GB are needed to run all experiments"
    paper = "≥ 60 GB (m = 128, factor 4, 16 templates)"
    fs = results.get("full_scale")
    if fs is not None and _full_size(fs):
        gb = fs["peak_memory_mb"] / 1024
        methods = ", ".join(METHOD_LABELS.get(k, k) for k in fs["runs"])
        return [Claim(cid, "README", claim, paper,
                      f"peak {gb:.2f} GB on the same size ({methods}, {fs['settings']['gn_iters']} LM points each)",
                      "improved" if gb < AUTHORS_MEMORY_GB else "reproduced",
                      f"the same size (m = 128, factor 4, 16 templates): a peak below {AUTHORS_MEMORY_GB:.0f} GB is "
                      "improved, at or above it reproduced",
                      "forward mode through CG on the assembled operator, float64, nothing retained between "
                      "evaluations (make full-scale)", stable=False)]
    peaks = {nb: _get(results.get(nb, {}), "peak_memory_mb") for nb in MEMORY_NOTEBOOKS if nb in results}
    if not peaks:
        return []
    covers = ("the authors' figure is for their scripts at m = 128 with 16 templates: `make full-scale` runs that "
              "size, and this row then compares the same size")
    missing = [nb for nb, v in peaks.items() if v is None]
    if missing:
        return [Claim(cid, "README", claim, "≥ 60 GB", "—", "not run",
                      f"peak memory of every notebook; {', '.join(missing)} recorded none", covers, stable=False)]
    top = max(peaks, key=peaks.get)
    gb = peaks[top] / 1024
    # without the full-size results, the book's notebooks run the paper's m = 20 problem, so a smaller peak is a
    # measurement beside theirs, not an improvement on the same size (it can still fail: a peak of 60 GB or more
    # on the smaller problem differs)
    return [Claim(cid, "README", claim, paper,
                  f"largest peak {gb:.2f} GB ({top}, of {len(peaks)} notebooks; m = 20, 4 templates)",
                  "differs" if gb >= AUTHORS_MEMORY_GB else "beyond the paper",
                  f"a peak of {AUTHORS_MEMORY_GB:.0f} GB or more on the smaller problem differs; below it the sizes "
                  "differ, so it is not counted as improved",
                  "forward mode through CG, float64, nothing retained between evaluations; " + covers,
                  stable=False)]


def _full_scale_claims(results: Mapping[str, Mapping]) -> list[Claim]:
    """The authors' full-size problem, which the paper does not report: our relative errors and times."""
    fs = results.get("full_scale")
    if fs is None:
        return []
    p = fs["problem"]
    runs = fs["runs"]
    ours = "; ".join(f"{METHOD_LABELS.get(k, k)} {_pct(r['rel_error'])} (final loss {r['losses'][-1]:.3g}) in "
                     f"{r['seconds'] / 60:.1f} min" for k, r in runs.items())
    flat = all(r["memory_growth_after_second"] < 0.05 for r in runs.values())
    return [Claim(
        "sr.full_scale", "scripts (HEAD)", "the super-resolution experiment at the scripts' size (no results "
        "reported)", "— (README: ≥ 60 GB)",
        f"{ours}; accurate solve at the true motion {_pct(fs['floor'])}; peak {fs['peak_memory_mb'] / 1024:.2f} GB",
        "beyond the paper" if flat else "differs",
        "ran to the end with memory flat after the second LM point (< 5 % growth); otherwise differs",
        f"m = {p['m']}, factor {p['factor']}, {p['n_templates']} templates, {p['n_params']} parameters, on "
        f"{p['source']}; make full-scale. With every template free (the authors' residual), a lower loss need not "
        "mean a smaller error: moving all templates and the image together changes nothing", stable=False)]


# ---- beyond the paper: SimpleITK and the paper's methods on the same images (05_peers) -------------------

_PEER_LABELS = {"simpleitk": "SimpleITK (pyramid, from the identity)",
                "simpleitk_search": "SimpleITK after an exhaustive rotation search",
                "single_scale": "single-scale Newton", "traditional": "traditional multi-scale",
                "predictor_corrector": "predictor-corrector",
                "global": "the global driver (rotation search at a coarse θ, exact Newton, continuation)",
                "newton_from_truth": "Newton started at the true motion (where the objective's minimum lies)"}
_PEER_RULE = f"the motion is recovered when every cell centre lands within {SUCCESS_CELLS} cells of its true place"


def _peer_outcome(run: Mapping, identity_loss: float | None) -> str:
    if run.get("success") is None:
        ratio = run["final_loss"] / identity_loss if identity_loss else float("nan")
        return f"J / J(identity) = {ratio:.3g} (no known motion)"
    if not run["success"]:
        return "not recovered"
    ratio = f", J / J(identity) = {run['final_loss'] / identity_loss:.3g}" if identity_loss else ""
    return f"recovered (motion error {run['param_error']:.2f} cells{ratio})"


def peers_claims(pe: Mapping) -> list[Claim]:
    """Rows "beyond the paper" for the comparison with SimpleITK: each method on the default pair, its capture
    range over rotations, the 3D pair, and the time per registration (not judged: the paper makes no such
    claim)."""
    rows: list[Claim] = []
    paper = "not compared"
    for key, section, data, identity in (("peers", "Peers", _get(pe, "data", default=""), _get(pe, "identity_loss")),
                                         ("peers_3d", "Peers 3D", _get(pe, "data_3d", default=""),
                                          _get(pe, "identity_loss_3d"))):
        for method, run in (_get(pe, key) or {}).items():
            what = "the 3D pair" if key == "peers_3d" else "the pair"
            rows.append(Claim(f"{key}.{method}", section, f"{_PEER_LABELS.get(method, method)} registers {what}",
                              paper, _peer_outcome(run, identity), "beyond the paper", _PEER_RULE,
                              f"{run['iterations']} iterations; scored by J(w; θ_min) of this book", data=data))
    images = [("capture", _get(pe, "capture") or {}, _get(pe, "capture_source", default="synthetic hand"))]
    images += [(f"capture_{name}", entry, entry.get("source", name))
               for name, entry in (_get(pe, "capture_images") or {}).items()]
    for prefix, capture, source in images:
        angles = capture.get("angles", [])
        for method, runs in capture.items():
            if method in ("angles", "source"):
                continue
            hits = [a for a, r in zip(angles, runs, strict=True) if r["success"]]
            where = ", ".join(f"{a:g}°" for a in hits) or "none"
            rows.append(Claim(f"{prefix}.{method}", "Capture range", f"{_PEER_LABELS.get(method, method)} recovers "
                              f"the motion of {source} over rotations of {angles[0]:g}–{angles[-1]:g}°", paper,
                              f"{len(hits)} of {len(angles)} angles ({where})", "beyond the paper", _PEER_RULE,
                              f"{source} moved by the synthetic hand's scaling and shift, rotated", data=source))
        if angles:
            times = {m: _median([r["seconds"] for r in rs]) for m, rs in capture.items()
                     if m not in ("angles", "source", "newton_from_truth")}
            rows.append(Claim(f"{prefix}.seconds", "Capture range", f"time per registration on {source} (median "
                              "over the angles)", paper, "; ".join(f"{m.replace('_', ' ')} {t:.2f} s"
                                                                   for m, t in times.items()),
                              "beyond the paper", "measured, not judged", "wall-clock time on the machine that built "
                              "the book", stable=False, data=source))
    cap3 = _get(pe, "capture_3d") or {}
    rotations = cap3.get("rotations", [])
    for method, runs in cap3.items():
        if method == "rotations":
            continue
        hits = [f"{r[0]:g}°/{r[1]:g}°" for r, run in zip(rotations, runs, strict=True) if run["success"]]
        rows.append(Claim(f"capture_3d.{method}", "Peers 3D", f"{_PEER_LABELS.get(method, method)} recovers the "
                          "volume's motion under rotations about z / x", paper,
                          f"{len(hits)} of {len(rotations)} ({', '.join(hits) or 'none'})", "beyond the paper",
                          _PEER_RULE, "the synthetic volume with its default scaling and shift, rotated",
                          data=_get(pe, "data_3d", default="")))
    return rows


# ---- public ----------------------------------------------------------------------------------------------

_BUILDERS: dict[str, Callable[[Mapping], list[Claim]]] = {
    "01_ad_costs": _table1_claims,
    "02_multiscale": lambda ms: fig2_claims(ms) + fig3_claims(ms),
    "03_superresolution": _sr_claims,
    "05_peers": peers_claims,
}


def build_claims(results: Mapping) -> list[Claim]:
    """All claims, in the paper's order, from the results of :func:`load_results` (one data set).

    ``results`` maps a notebook to its results: the JSON mapping, or the record of
    :mod:`imreg_lib.paper.results` that wrote it (the same claims). A notebook missing from ``results`` gives no
    rows; a setting the notebook did not run gives a ``"not run"`` row.
    """
    results = {nb: _as_json(r) for nb, r in results.items()}
    claims: list[Claim] = []
    for nb, builder in _BUILDERS.items():
        if nb in results:
            claims += builder(results[nb])
    return claims + _full_scale_claims(results) + _memory_claim(results)


def claims_summary(claims: Sequence[Claim]) -> dict[str, int]:
    """How many claims have each status."""
    return {s: sum(c.status == s for c in claims) for s in STATUSES}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


_STATUS_MARK = {"reproduced": "✓ reproduced", "differs": "✗ differs", "improved": "▲ improved",
                "beyond the paper": "◇ beyond the paper", "not run": "– not run"}


def _why(c: Claim) -> str:
    return f"rule: {c.rule}" + (f". {c.explanation[0].upper()}{c.explanation[1:]}" if c.explanation else "")


def markdown_table(claims: Sequence[Claim]) -> str:
    """The claims of one data set as a Markdown table (section, claim, paper, ours, status, rule and reasons)."""
    lines = ["| where | claim | paper | ours | status | rule and reasons |", "|---|---|---|---|---|---|"]
    for c in claims:
        lines.append("| " + " | ".join(_cell(v) for v in (c.section, c.claim, c.paper, c.ours,
                                                           _STATUS_MARK[c.status], _why(c))) + " |")
    return "\n".join(lines)


def _aligned(by_data: Mapping[str, Sequence[Claim]]) -> list[tuple[Claim, dict[str, Claim]]]:
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
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for first, row in _aligned(by_data):
        cells = [first.section, first.claim, first.paper]
        for n in names:
            c = row[n]
            cells += [c.ours, _STATUS_MARK[c.status]] if c is not None else ["—", "– not run"]
        lines.append("| " + " | ".join(_cell(v) for v in cells) + " |")
    return "\n".join(lines)


def rules_table(by_data: Mapping[str, Sequence[Claim]]) -> str:
    """The rule of every claim and, per data set, the reasons behind its status."""
    names = list(by_data)
    lines = ["| claim | rule | " + " | ".join(f"reasons ({DATA_SETS.get(n, n)})" for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for first, row in _aligned(by_data):
        cells = [f"{first.section}: {first.claim}", first.rule]
        cells += [row[n].explanation if row[n] is not None else "" for n in names]
        lines.append("| " + " | ".join(_cell(v) for v in cells) + " |")
    return "\n".join(lines)


def report_records(by_data: Mapping[str, Sequence[Claim]]) -> list[dict]:
    """Every claim of every data set as a JSON-ready record: id, section, claim, paper, ours, status, rule,
    explanation, data (what it ran on), data_set (the key of ``by_data``), stable."""
    out = []
    for name, claims in by_data.items():
        for c in claims:
            out.append({"id": c.id, "section": c.section, "claim": c.claim, "paper": c.paper, "ours": c.ours,
                        "status": c.status, "rule": c.rule, "explanation": c.explanation, "data": c.data,
                        "data_set": name, "stable": c.stable, "paper_value": c.paper_value,
                        "ours_value": c.ours_value})
    return out


def reading(claims: Sequence[Claim], data: str) -> str:
    """A paragraph that reads the table: counts per status and the claims that differ, from the statuses only."""
    counts = claims_summary(claims)
    judged = [c for c in claims if c.status not in ("not run", "beyond the paper")]
    parts = [f"{counts[s]} {s}" for s in ("reproduced", "differs", "improved") if counts[s]]
    text = (f"On {data}, {len(judged)} claims were judged: " + ", ".join(parts) + "."
            if judged else f"On {data}, no claim was judged.")
    differ: dict[str, int] = {}
    for c in claims:
        if c.status == "differs":
            differ[c.section] = differ.get(c.section, 0) + 1
    if differ:
        text += " Differing, by section: " + ", ".join(f"{s} ({n})" for s, n in differ.items()) + "."
    if counts["not run"]:
        text += f" {counts['not run']} not run with these parameters."
    return text


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as JSON to ``path`` through a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=1, ensure_ascii=False)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make results private to their writer
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_results(path: str | os.PathLike, results) -> Path:
    """A notebook's results JSON, written atomically (:func:`write_json`); returns the path. ``results`` is a
    record of :mod:`imreg_lib.paper.results` (written through its ``to_json()``) or a mapping."""
    return write_json(path, dict(_as_json(results)))


#: The defects of the authors' code and what the book does about each.
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
           "notebooks at the paper's commits"),
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
