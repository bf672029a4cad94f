r"""The authors' full-size super-resolution problem, which the paper does not report and the §4 page does not run.

The authors' HEAD scripts set ``m = 128``, factor 4 and 16 templates (96 parameters, the ``as_coded`` variant);
their README says that running the experiments needs "at least 60 GB" of memory. :func:`run_full_scale` runs that
size with the methods of Figs 5-6 (Diff All, No Diff, implicit; 10 recorded LM points each, from the
continuation pre-registration) and records what the 60 GB figure is about: the peak resident memory of the
process, the memory after each LM point, times, CG iterations and relative errors, as a :class:`FullScaleResults`
record. ``make full-scale`` runs it with ``params/full.yaml`` (``DATA=paper``: on the paper's reference image) and
writes ``full_scale.json`` beside the notebooks' results (:func:`~imreg_lib.paper._schema.write_json`), where the
report reads it back through the same record.

From the command line::

    python -m imreg_lib.paper.fullscale --params params/full.yaml --out _build/results/full_scale.json
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import _checks
from ..superres import SuperResolutionProblem, superresolution_problem
from ..timing import machine_info, peak_rss_mb
from ..varpro import VARPRO_METHODS, VarProRun, reconstruct, relative_error, varpro_levenberg_marquardt
from ._schema import Record, write_json
from .preregistration import PREREGISTRATIONS, preregister
from .results import VarProSummary
from .settings import VARPRO_VARIANTS
from .superres_runs import METHOD_LABELS, memory_growth, parameter_error, varpro_variant

__all__ = ["FullScaleProblem", "FullScaleResults", "FullScaleRun", "FullScaleSettings", "FullScaleStart", "main",
           "run_full_scale"]


@dataclass(frozen=True)
class FullScaleSettings(Record):
    """Settings of :func:`run_full_scale` (defaults: the authors' HEAD scripts; ``params/full.yaml``), checked once
    when made (a wrong value is a :class:`ValueError` naming the parameter).

    Fields: the parameters of :func:`~imreg_lib.superresolution_problem`, of the projection's CG and of the LM runs,
    as documented in ``params/full.yaml``.
    """

    m: int = 128
    factor: int = 4
    n_templates: int = 16
    lam: float = 1e-2
    cg_iters: int = 500
    cg_tol: float = 1e-3
    gn_iters: int = 10
    gtol: float = 1e-5
    #: Jacobian methods, each one LM run (of :data:`~imreg_lib.varpro.VARPRO_METHODS`); stored as a tuple.
    methods: tuple[str, ...] = ("diff_all", "no_diff", "implicit")
    #: ``"as_coded"`` (the authors' residual, all ``6q`` parameters) or ``"paper"`` (eq. 7, template 0 fixed).
    variant: str = "as_coded"
    #: LM start: ``"continuation"`` (the fix) or ``"as_coded"`` (the authors' restarts).
    preregistration: str = "continuation"
    #: An image file for the true image (``None``: the synthetic hand; left out of the JSON).
    reference_path: str | None = None

    def __post_init__(self) -> None:
        for name, minimum in (("m", 4), ("factor", 1), ("n_templates", 2), ("lam", None), ("cg_iters", 1),
                              ("cg_tol", None), ("gn_iters", 1), ("gtol", None)):  # None: a number >= 0
            if minimum is None:
                self._set(name, _checks.positive_number(name, getattr(self, name), allow_zero=True))
            else:
                _checks.integer(name, getattr(self, name), minimum)
        self._set("methods", tuple(self.methods))
        allowed = f"a non-empty list of {', '.join(map(repr, VARPRO_METHODS))}"
        if not self.methods:
            raise ValueError(f"methods must be {allowed}, got []")
        for method in self.methods:
            _checks.one_of("methods", method, VARPRO_METHODS, allowed=allowed)
        _checks.one_of("variant", self.variant, VARPRO_VARIANTS)
        _checks.one_of("preregistration", self.preregistration, PREREGISTRATIONS)
        if self.reference_path is not None and not os.path.isfile(self.reference_path):
            raise ValueError(f"reference_path: image file not found: {os.path.abspath(self.reference_path)!r}")

    @classmethod
    def from_mapping(cls, values: Mapping) -> FullScaleSettings:
        """Settings from a mapping (a YAML file's); an unknown key is an error that lists the allowed ones."""
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise ValueError(f"unknown full-scale parameter(s) {', '.join(map(repr, unknown))}; allowed: "
                             f"{', '.join(allowed)}")
        return cls(**values)


@dataclass(frozen=True)
class FullScaleProblem(Record):
    """The size of the problem that ran: fine cells per dimension, pooling factor, templates, unknowns of the image
    and of the data, LM parameters, and what the true image is."""

    m: int
    factor: int
    n_templates: int
    n_pixels: int
    n_data: int
    n_params: int
    source: str


@dataclass(frozen=True)
class FullScaleStart(Record):
    r"""The LM start (the pre-registration): its largest parameter error :math:`\max_i |w_i - w^*_i|`."""

    parameter_error: float


@dataclass(frozen=True)
class FullScaleRun(VarProSummary):
    r"""One LM run of the full-size problem: the :class:`~imreg_lib.paper.results.VarProSummary` and, beside it,
    how far resident memory grew after the second LM point (:func:`~imreg_lib.paper.superres_runs.memory_growth`, a
    fraction) and the final parameter error :math:`\max_i |w_i - w^*_i|`."""

    memory_growth_after_second: float
    parameter_error: float

    @classmethod
    def from_problem_run(cls, run: VarProRun, problem: SuperResolutionProblem,
                         variant: str = "as_coded") -> FullScaleRun:
        """The record of ``run`` (:meth:`~imreg_lib.paper.results.VarProSummary.from_run`) on ``problem``, whose
        motion scores the final parameters."""
        summary = VarProSummary.from_run(run)
        return cls(**{f.name: getattr(summary, f.name) for f in dataclasses.fields(VarProSummary)},
                   memory_growth_after_second=memory_growth(run.rss_mb),
                   parameter_error=parameter_error(problem, run.lm.w, variant))


@dataclass(frozen=True)
class FullScaleResults(Record):
    """The results of :func:`run_full_scale` (``full_scale.json``)."""

    settings: FullScaleSettings
    problem: FullScaleProblem
    start: FullScaleStart
    runs: Mapping[str, FullScaleRun]  #: ``{method: FullScaleRun}`` in the order of ``settings.methods``.
    floor: float  #: Relative error of the accurate reconstruction at the true motion.
    peak_memory_mb: float  #: Peak resident memory of the process.
    seconds: float  #: Wall time of the whole run.
    machine: Mapping[str, Any]


def run_full_scale(settings: FullScaleSettings = FullScaleSettings(), *, progress: bool = True) -> FullScaleResults:
    """Run the full-size problem: one LM run per method from the pre-registration, then the accurate solve at the
    true motion for scale. Returns the :class:`FullScaleResults` record (``to_json()`` is ``full_scale.json``)."""
    from tqdm.auto import tqdm

    s = settings
    t0 = time.perf_counter()
    problem = superresolution_problem(s.m, s.factor, s.n_templates, s.lam, reference_path=s.reference_path)
    start = preregister(problem, loss="norm", continuation=s.preregistration == "continuation", variant=s.variant)
    runs = {}
    for method in s.methods:
        vp = varpro_variant(problem, s.variant, method=method, cg_iters=s.cg_iters, tol=s.cg_tol)
        with tqdm(total=s.gn_iters, desc=f"{METHOD_LABELS[method]:>10}", unit="LM point", disable=not progress,
                  file=sys.stderr) as bar:
            run = varpro_levenberg_marquardt(vp, start.w, max_iter=s.gn_iters, gtol=s.gtol,
                                             callback=lambda _k, bar=bar: bar.update(1))
        runs[method] = FullScaleRun.from_problem_run(run, problem, s.variant)
    floor = relative_error(reconstruct(problem, problem.w_true).x, problem.reference)
    size = FullScaleProblem(problem.m, problem.factor, problem.n_templates, problem.n_pixels, problem.n_data,
                            vp.n_params, problem.source)
    return FullScaleResults(s, size, FullScaleStart(parameter_error(problem, start.w, s.variant)), runs, floor,
                            peak_rss_mb(), time.perf_counter() - t0, machine_info("cpu"))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m imreg_lib.paper.fullscale --params FILE --out FILE [--reference-path IMAGE]``."""
    import yaml

    parser = argparse.ArgumentParser(prog="python -m imreg_lib.paper.fullscale", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default=None, help="YAML file of FullScaleSettings (default: the authors' sizes)")
    parser.add_argument("--out", required=True, help="results JSON to write (atomically)")
    parser.add_argument("--reference-path", default=None, help="image file for the true image (default: synthetic)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    values = {}
    if args.params is not None:
        try:
            with open(args.params) as f:
                values = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as e:
            parser.error(f"--params {args.params!r}: {e}")
        if not isinstance(values, Mapping):
            parser.error(f"--params {args.params!r} must hold a mapping of settings")
    if args.reference_path is not None:
        values = {**values, "reference_path": args.reference_path}
    try:
        settings = FullScaleSettings.from_mapping(values)
    except (TypeError, ValueError) as e:
        parser.error(str(e))
    out = run_full_scale(settings, progress=not args.no_progress)
    path = write_json(args.out, out)
    summary = ", ".join(f"{METHOD_LABELS.get(k, k)} {100 * r.rel_error:.2f} % in {r.seconds:.0f} s"
                        for k, r in out.runs.items())
    print(f"full scale (m = {settings.m}, factor {settings.factor}, {settings.n_templates} templates): {summary}; "
          f"peak memory {out.peak_memory_mb:.0f} MB; total {out.seconds:.0f} s; results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
