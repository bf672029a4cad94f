r"""The authors' full-size super-resolution problem, which the paper does not report and the §4 page does not run.

The authors' HEAD scripts set ``m = 128``, factor 4 and 16 templates (96 parameters, the ``as_coded`` variant);
their README says that running the experiments needs "at least 60 GB" of memory. :func:`run_full_scale` runs that
size with the methods of Figs 5-6 (Diff All, No Diff, implicit; 10 recorded LM points each, from the
continuation pre-registration) and records what the 60 GB figure is about: the peak resident memory of the
process, the memory after each LM point, times, CG iterations and relative errors. ``make full-scale`` runs it
with ``params/full.yaml`` (``DATA=paper``: on the paper's reference image) and writes ``full_scale.json`` beside
the notebooks' results, where the report reads it.

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

from .. import _checks
from ..superres import superresolution_problem
from ..timing import machine_info, peak_rss_mb
from ..varpro import VARPRO_METHODS, reconstruct, relative_error, varpro_levenberg_marquardt
from .preregistration import preregister
from .superres import METHOD_LABELS, memory_growth, parameter_error, run_summary, varpro_variant

__all__ = ["FullScaleSettings", "main", "run_full_scale"]


@dataclass(frozen=True)
class FullScaleSettings:
    """Settings of :func:`run_full_scale` (defaults: the authors' HEAD scripts; ``params/full.yaml``).

    Parameters
    ----------
    m, factor, n_templates, lam
        Fine resolution, pooling factor, number of templates, regularisation weight
        (:func:`~imreg_lib.superresolution_problem`).
    cg_iters, cg_tol
        CG iterations per projection and its absolute tolerance.
    gn_iters, gtol
        Recorded LM points per run and the gradient tolerance.
    methods
        Jacobian methods, each one LM run (of :data:`~imreg_lib.varpro.VARPRO_METHODS`).
    variant
        ``"as_coded"`` (the authors' residual, all ``6q`` parameters) or ``"paper"`` (eq. 7, template 0 fixed).
    preregistration
        LM start: ``"continuation"`` (the fix) or ``"as_coded"`` (the authors' restarts).
    reference_path
        An image file for the true image (``None``: the synthetic hand).
    """

    m: int = 128
    factor: int = 4
    n_templates: int = 16
    lam: float = 1e-2
    cg_iters: int = 500
    cg_tol: float = 1e-3
    gn_iters: int = 10
    gtol: float = 1e-5
    methods: tuple[str, ...] = ("diff_all", "no_diff", "implicit")
    variant: str = "as_coded"
    preregistration: str = "continuation"
    reference_path: str | None = None

    def __post_init__(self) -> None:
        _checks.integer("m", self.m, 4)
        _checks.integer("factor", self.factor, 1)
        _checks.integer("n_templates", self.n_templates, 2, allowed="an integer >= 2")
        _checks.positive_number("lam", self.lam, allow_zero=True)
        _checks.integer("cg_iters", self.cg_iters, 1)
        _checks.positive_number("cg_tol", self.cg_tol, allow_zero=True)
        _checks.integer("gn_iters", self.gn_iters, 1)
        _checks.positive_number("gtol", self.gtol, allow_zero=True)
        if isinstance(self.methods, str) or not isinstance(self.methods, Sequence) or not self.methods:
            raise ValueError(f"methods must be a non-empty list of {list(VARPRO_METHODS)}, got {self.methods!r}")
        for method in self.methods:
            _checks.one_of("methods", method, VARPRO_METHODS)
        object.__setattr__(self, "methods", tuple(self.methods))
        _checks.one_of("variant", self.variant, ("as_coded", "paper"))
        _checks.one_of("preregistration", self.preregistration, ("continuation", "as_coded"))
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


def run_full_scale(settings: FullScaleSettings = FullScaleSettings(), *, progress: bool = True) -> dict:
    """Run the full-size problem: one LM run per method from the pre-registration, then the accurate solve at the
    true motion for scale. Returns the results as JSON-ready values (``settings``, ``problem``, ``start``,
    ``runs`` keyed by method, ``floor``, ``peak_memory_mb``, ``seconds``, ``machine``)."""
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
        runs[method] = {**run_summary(run), "memory_growth_after_second": memory_growth(run.rss_mb),
                        "parameter_error": parameter_error(problem, run.lm.w, s.variant)}
    floor = relative_error(reconstruct(problem, problem.w_true).x, problem.reference)
    return {"settings": {**dataclasses.asdict(s), "methods": list(s.methods)},
            "problem": {"m": problem.m, "factor": problem.factor, "n_templates": problem.n_templates,
                        "n_pixels": problem.n_pixels, "n_data": problem.n_data, "n_params": vp.n_params,
                        "source": problem.source},
            "start": {"parameter_error": parameter_error(problem, start.w, s.variant)},
            "runs": runs, "floor": floor, "peak_memory_mb": peak_rss_mb(),
            "seconds": time.perf_counter() - t0, "machine": machine_info("cpu")}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m imreg_lib.paper.fullscale --params FILE --out FILE [--reference-path IMAGE]``."""
    import yaml

    from .report import write_json

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
    summary = ", ".join(f"{METHOD_LABELS.get(k, k)} {100 * r['rel_error']:.2f} % in {r['seconds']:.0f} s"
                        for k, r in out["runs"].items())
    print(f"full scale (m = {settings.m}, factor {settings.factor}, {settings.n_templates} templates): {summary}; "
          f"peak memory {out['peak_memory_mb']:.0f} MB; total {out['seconds']:.0f} s; results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
