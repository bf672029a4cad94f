r"""Round-off ensembles of the §4 runs: how far a run's result moves when only round-off changes.

Some of the page's Levenberg-Marquardt runs amplify round-off: the same run under another thread count or another
MKL code path ends several tenths of a point, or points, away. A single number of such a run is one draw; the page
reports each of them as an **ensemble**. Member 0 is the page's own run; member :math:`k \ge 1` repeats it
(pre-registration included) on the problem whose data are moved by round-off,

.. math::
    d^{(k)}_i = d_i + n^{(k)}_i\,\mathrm{ulp}(d_i), \qquad n^{(k)}_i \in \{-U, \dots, U\}
    \text{ uniform, seeded by } k,

with :math:`U` = :data:`ULPS` (zero data stay zero). Why the data: every run of the page starts from them, so one
perturbation serves the runs from both pre-registrations, and its size is that of the differences numeric settings
make (the continuation start differs across the book's numeric settings by 4.4e-15 on parameters of size 10.7, a
few ulps). The page shows that the members' range covers the spread measured across numeric settings
(``make spread``).

Which runs: those whose result round-off moves (:data:`ENSEMBLE_FAMILIES`): Diff All, the partial
differentiation restarted at each fraction, the inexact projections, and both runs from the authors'
pre-registration. No Diff and implicit from the page's start, and the continued partial runs, end on the same
digits under every numeric setting and stay single; a run of these families whose first perturbed member ends
where the page's run did (:data:`NOT_AMPLIFIED`) keeps two members (:func:`round_off_ensembles`).
"""

from __future__ import annotations

import functools
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch

from .. import _checks
from ..superres import SuperResolutionProblem
from ..varpro import VarProRun, varpro_levenberg_marquardt
from ._jobs import run_jobs
from ._schema import Record
from .preregistration import preregister
from .recorded import PAPER_SR
from .superres_runs import METHOD_LABELS, _run_cost, percent_label, varpro_variant

__all__ = ["DEFAULT_MEMBERS", "ENSEMBLE_FAMILIES", "ULPS", "Ensemble", "EnsembleSet", "ensemble_label", "page_runs",
           "paper_value", "perturbed_problem", "round_off_ensembles"]

ULPS = 4  #: The largest move of one datum, in units in the last place.
DEFAULT_MEMBERS = 8  #: Members of an ensemble on the page (member 0 the page's own run).
#: The run families that get an ensemble, as keys of the page's results.
ENSEMBLE_FAMILIES: tuple[str, ...] = ("projections", "corrections", "partial", "inexact")


def _ulp(x: torch.Tensor) -> torch.Tensor:
    a = x.abs()
    return torch.nextafter(a, torch.full_like(a, float("inf"))) - a


def perturbed_problem(problem: SuperResolutionProblem, member: int, ulps: int = ULPS) -> SuperResolutionProblem:
    r"""The problem of ensemble member ``member``: its data moved by at most ``ulps`` units in the last place
    (module docstring); member 0 is ``problem`` itself. The same member always gets the same data."""
    _checks.integer("member", member, 0, allowed="an integer >= 0")
    _checks.integer("ulps", ulps, 1, allowed="an integer >= 1")
    if member == 0:
        return problem
    g = torch.Generator().manual_seed(1_000_003 * member)
    steps = torch.randint(-ulps, ulps + 1, tuple(problem.data.shape), generator=g).to(problem.data)
    data = problem.data + steps * torch.where(problem.data == 0, 0.0, _ulp(problem.data))
    return replace(problem, data=data)


@dataclass(frozen=True)
class Ensemble(Record):
    """The final results of one run's ensemble members (member 0 first: the page's run)."""

    rel_errors: tuple[float, ...]  #: Final relative reconstruction errors.
    rel_losses: tuple[float, ...]  #: Final loss over the initial loss.
    rel_grads: tuple[float, ...]  #: Final gradient norm over the initial one.

    _json_extra = ("median", "min", "max")

    @classmethod
    def from_runs(cls, runs: Sequence[VarProRun]) -> Ensemble:
        return cls(tuple(float(r.rel_error) for r in runs), tuple(r.losses[-1] / r.losses[0] for r in runs),
                   tuple(r.grad_norms[-1] / r.grad_norms[0] for r in runs))

    @property
    def members(self) -> int:
        return len(self.rel_errors)

    @property
    def amplified(self) -> bool:
        """Whether the members moved the final error by more than :data:`NOT_AMPLIFIED` (relative)."""
        return not all(_same(x, self.rel_errors[0]) for x in self.rel_errors)

    @property
    def median(self) -> float:
        """Median final relative error."""
        return statistics.median(self.rel_errors)

    @property
    def min(self) -> float:
        """Smallest final relative error."""
        return min(self.rel_errors)

    @property
    def max(self) -> float:
        """Largest final relative error."""
        return max(self.rel_errors)


#: A member whose final relative error lies within this relative distance of member 0's leaves the run in place:
#: the data's round-off (1e-16) was carried along, not amplified (an amplified run moves by 1e-4 to 1).
NOT_AMPLIFIED = 1e-6


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= NOT_AMPLIFIED * abs(b)


def _bar(total: int, progress: bool):
    from tqdm.std import tqdm

    return tqdm(total=total, desc="round-off ensembles", unit="run", file=sys.stderr, disable=not progress,
                mininterval=2.0, bar_format="{desc}: {n}/{total} runs (pre-registrations and LM) {bar:20}")


@dataclass(frozen=True)
class EnsembleSet(Record):
    """The round-off ensembles of a page, by family (:data:`ENSEMBLE_FAMILIES`) and key as the page's runs: the
    projections and the corrections by their run's key, the partial differentiation by its fraction, the inexact
    projections by their CG count. Empty families: not run."""

    projections: Mapping[str, Ensemble] = field(default_factory=dict)
    corrections: Mapping[str, Ensemble] = field(default_factory=dict)
    partial: Mapping[float, Ensemble] = field(default_factory=dict)
    inexact: Mapping[int, Ensemble] = field(default_factory=dict)

    def items(self) -> list[tuple[str, Mapping]]:
        """``[(family, {key: Ensemble})]`` of the families that ran, in :data:`ENSEMBLE_FAMILIES`' order."""
        return [(f, getattr(self, f)) for f in ENSEMBLE_FAMILIES if getattr(self, f)]

    def get(self, family: str, key) -> Ensemble | None:
        """The ensemble of a run with more than one member, or ``None``."""
        e = getattr(self, family).get(key)
        return e if e is not None and e.members > 1 else None


def page_runs(projections: Mapping[str, VarProRun], corrections: Mapping[str, VarProRun],
              partial: Mapping[float, VarProRun], inexact: Mapping[int, VarProRun]) -> dict[tuple, VarProRun]:
    """The page's runs as ``{(family, key): run}``, keyed as in its results: member 0 of
    :func:`round_off_ensembles`."""
    return {(family, key): run for family, runs in zip(ENSEMBLE_FAMILIES, (projections, corrections, partial, inexact),
                                                       strict=True) for key, run in runs.items()}


def _ensemble_varpros(problem: SuperResolutionProblem, *, fractions: Sequence[float], cg_counts: Sequence[int],
                      corrections: bool, continuation: bool, cg_iters: int, cg_iters_partial: int, tol: float,
                      variant: str) -> dict[tuple, tuple]:
    """``{(family, key): (make_varpro(problem), start)}``, ``start`` naming the pre-registration (loss, schedule)."""
    make = functools.partial(varpro_variant, variant=variant, tol=tol)
    runs = {("projections", "diff_all"): (functools.partial(make, method="diff_all", cg_iters=cg_iters),
                                          ("norm", continuation))}
    if corrections:
        other = "as_coded" if continuation else "continuation"
        for m in ("diff_all", "no_diff"):
            runs["corrections", f"{m}, {other} start"] = (
                functools.partial(make, method=m, cg_iters=cg_iters), ("norm", not continuation))
    for p in fractions:
        runs["partial", p] = (functools.partial(make, method="last_restarted", cg_iters=cg_iters_partial,
                                                       fraction=p), ("squared", continuation))
    for n in cg_counts:
        runs["inexact", n] = (functools.partial(make, method="diff_all", cg_iters=n), ("squared", continuation))
    return runs


def round_off_ensembles(problem: SuperResolutionProblem, page_runs: Mapping[tuple, VarProRun], *,
                        fractions: Sequence[float], cg_counts: Sequence[int], corrections: bool = True,
                        continuation: bool = True, members: int = DEFAULT_MEMBERS, ulps: int = ULPS,
                        cg_iters: int = 500, cg_iters_partial: int = 200, tol: float = 1e-3, gn_iters: int = 10,
                        gtol: float = 1e-5, variant: str = "as_coded",
                        progress: bool = False) -> EnsembleSet:
    """The ensembles of the page's round-off-sensitive runs (module docstring), by family and key.

    Parameters
    ----------
    problem
        The page's problem (member 0).
    page_runs
        The page's own runs, member 0 of each ensemble: ``{(family, key): VarProRun}`` for every run of
        :data:`ENSEMBLE_FAMILIES` that the page made (:func:`page_runs`: ``("projections", "diff_all")``,
        ``("partial", 0.7)``, ``("inexact", 100)``, ``("corrections", "diff_all, as_coded start")``, ...).
    fractions, cg_counts, corrections, continuation
        The page's partial fractions, inexact CG counts, whether it ran the authors' start, and its
        pre-registration schedule (``True``: continuation).
    members
        Members per ensemble, at least 1 (1: the page's runs alone, nothing is run).
    ulps
        The largest move of one datum (:func:`perturbed_problem`).
    cg_iters, cg_iters_partial, tol, gn_iters, gtol, variant
        The page's settings, as for :func:`~imreg_lib.paper.superres_runs.compare_projections`.
    progress
        A progress bar on standard error, one step per run.

    All members' pre-registrations run first, then member 1's LM runs, then the other members' runs of every run
    that member 1 moved by more than :data:`NOT_AMPLIFIED` (relative): a run that does not amplify round-off keeps
    two members. Each set runs side by side in worker processes where there are cores for them.
    """
    _checks.integer("members", members, 1, allowed="an integer >= 1")
    specs = _ensemble_varpros(problem, fractions=fractions, cg_counts=cg_counts, corrections=corrections,
                              continuation=continuation, cg_iters=cg_iters, cg_iters_partial=cg_iters_partial,
                              tol=tol, variant=variant)
    missing = sorted(set(specs) - set(page_runs))
    if missing:
        raise ValueError(f"page_runs lacks the page's runs {missing}: pass member 0 of every ensemble")
    problems = {k: perturbed_problem(problem, k, ulps) for k in range(1, members)}
    starts_needed = sorted({start for _, start in specs.values()})
    cpu = problem.device.type == "cpu"
    bar = _bar(len(problems) * (len(starts_needed) + len(specs)), progress)
    pre = run_jobs({(k, loss, cont): functools.partial(preregister, pk, loss=loss, continuation=cont,
                                                       variant=variant)
                    for k, pk in problems.items() for loss, cont in starts_needed}, cpu=cpu, done=bar.update)

    def lm_runs(which: Sequence[int], keys) -> dict:
        jobs, cost = {}, {}
        for k in which:
            for key in keys:
                make, (loss, cont) = specs[key]
                vp = make(problems[k])
                jobs[k, key] = functools.partial(varpro_levenberg_marquardt, vp, pre[k, loss, cont].w,
                                                 max_iter=gn_iters, gtol=gtol)
                cost[k, key] = _run_cost(vp)
        return run_jobs(jobs, cpu=cpu, cost=cost, done=bar.update)

    # member 1 first: a run whose result it leaves in place does not amplify round-off and stops at two members
    done = lm_runs([1], specs) if members > 1 else {}
    amplified = [key for key in specs
                 if members > 1 and not _same(done[1, key].rel_error, page_runs[key].rel_error)]
    if members > 2:
        bar.total -= (members - 2) * (len(specs) - len(amplified))
        bar.refresh()
    done |= lm_runs(range(2, members), amplified)
    bar.close()
    out: dict[str, dict] = {}
    for family, key in specs:
        runs = [page_runs[family, key], *(done[k, (family, key)] for k in problems if (k, (family, key)) in done)]
        out.setdefault(family, {})[key] = Ensemble.from_runs(runs)
    return EnsembleSet(**out)


def ensemble_label(family: str, key) -> str:
    """The label of a run on the page: ``("projections", "diff_all")`` is "Diff All", ``("partial", 0.7)`` "last
    70 %", ``("inexact", 100)`` "100 CG iterations", a correction its own label."""
    if family == "projections":
        return METHOD_LABELS.get(key, key)
    if family == "partial":
        return f"last {percent_label(key)}"
    if family == "inexact":
        return f"{key} CG iteration{'s' if key != 1 else ''}"
    method, _, rest = key.partition(", ")
    rest = rest.replace("as_coded start", "authors' start")
    return f"{METHOD_LABELS.get(method, method)}, {rest}"


def paper_value(family: str, key) -> float | None:
    """The paper's final relative error for the run (recorded, or read off its figures), or ``None``."""
    if family == "projections" or (family == "corrections" and key.endswith("as_coded start")):
        return PAPER_SR.get(key.partition(",")[0], {}).get("rel_error")
    return PAPER_SR[family].get(key, {}).get("rel_error_read") if family in ("partial", "inexact") else None
