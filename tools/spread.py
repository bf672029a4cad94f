"""Measure how much the notebooks' results move under other numeric settings on this machine.

Runs each notebook once per setting (the pinned defaults of ``tools/numerics.mk`` with a few variables changed,
each run in its own process so the kernel starts with that environment) into ``OUT/<setting>/<notebook>.json``,
then prints, for every tolerance rule, the largest difference between the settings and whether the rule's
tolerance covers it (:func:`tools.regression.measure_spread`). ``--write`` records the spreads in the tolerances
file. This is how the tolerances of the results regression test were derived; rerun it after a change that
makes a result more or less sensitive::

    python -m tools.spread --out _build/spread [--settings pinned,aten_default,...] [--notebooks 00_data,...]

On a second kind of machine (another CPU vendor, with or without AVX-512), ``--machine NAME --write`` adds its runs
to the committed measurements instead of replacing them, so that every tolerance covers both machines.

It takes about as long as running the chosen notebooks once per setting (about 8 minutes per setting for all
of them on 2 cores), and leaves the last setting's results in ``_build/results``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tools import numerics, regression

__all__ = ["SETTINGS", "ensemble_coverage", "run_settings"]

#: Each setting: environment variables changed from the pinned defaults.
SETTINGS: dict[str, dict[str, str]] = {
    "pinned": {},
    "aten_default": {"ATEN_CPU_CAPABILITY": "default"},
    "threads_2": {"OMP_NUM_THREADS": "2"},
    "mkl_auto": {"MKL_CBWR": "AUTO"},
    "mkl_avx": {"MKL_CBWR": "AVX"},
    "combined": {"MKL_CBWR": "AVX", "ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1"},
}


#: The ensembles' floor, ``imreg_lib.paper.ensembles.NOT_AMPLIFIED`` (the tools do not import the library; a test
#: keeps the two equal): a relative move below it is round-off carried along, not amplified.
NOT_AMPLIFIED = 1e-6


def run_settings(out: Path, settings: list[str], notebooks: list[Path], cell_timeout: float | None = None) -> None:
    """Execute every notebook under every setting into ``out/<setting>/``; raise on the first failure."""
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; allowed: {', '.join(SETTINGS)}")
    for name in settings:
        env = dict(os.environ)
        for var in numerics.defaults():  # start from the pinned defaults, not from the caller's overrides
            env.pop(var, None)
        env.update(SETTINGS[name])
        numerics.apply_defaults(env)
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        for nb in notebooks:
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "tools.pipeline", "execute", str(nb), str(folder / nb.name)]
            cmd += ["--cell-timeout", str(cell_timeout)] if cell_timeout else []
            subprocess.run(cmd, env=env, check=True)
            # the run wrote _build/results/<stem>.json (where the report notebook reads it): keep a copy
            shutil.copy2(Path("_build/results") / f"{nb.stem}.json", folder / f"{nb.stem}.json")
            print(f"{name:14s} {nb.stem:22s} {time.perf_counter() - t0:6.0f} s", flush=True)


def ensemble_coverage(run_dirs: list[Path], stem: str = "03_superresolution") -> dict:
    """Whether the round-off ensembles cover the spread that numeric settings make.

    For every ensemble of ``stem``'s results: each setting's single run (member 0) and its members' range, the
    spread of the single runs across the settings, and the width of the first setting's ensemble (the page's).
    ``covered``: the settings' spread is at most that width (round-off does no more to a run than the ensemble
    shows), or both are below the ensembles' floor :data:`NOT_AMPLIFIED` (relative);
    ``within``: every single run lies inside the first setting's range (eight members are a sample, so a single
    run of another setting may fall just outside); ``pooled_within``: inside the range of all settings' members
    together. Returns ``{"settings": [...], "runs":
    {"<family>.<key>": {...}}}``; runs without an ensemble in every setting are left out."""
    results = {Path(d).name: json.loads((Path(d) / f"{stem}.json").read_text()) for d in run_dirs}
    names = list(results)
    first = results[names[0]].get("ensembles", {})
    runs = {}
    for family, members in first.items():
        for key in members:
            per = {n: r.get("ensembles", {}).get(family, {}).get(key) for n, r in results.items()}
            if any(e is None for e in per.values()):
                continue
            single = {n: e["rel_errors"][0] for n, e in per.items()}
            spread = max(single.values()) - min(single.values())
            width = per[names[0]]["max"] - per[names[0]]["min"]
            floor = NOT_AMPLIFIED * max(single.values())
            low, high = per[names[0]]["min"], per[names[0]]["max"]
            runs[f"{family}.{key}"] = {
                "single_run": single, "range": {n: [e["min"], e["max"]] for n, e in per.items()},
                "settings_spread": spread, "width": width,
                "covered": spread <= width or max(spread, width) <= floor,
                "within": all(low <= v <= high for v in single.values()),
                "pooled_within": all(min(e["min"] for e in per.values()) <= v <= max(e["max"] for e in per.values())
                                     for v in single.values())}
    return {"settings": names, "runs": runs}


def _print_coverage(coverage: dict) -> None:
    first = coverage["settings"][0]
    print(f"\nround-off ensembles against the single runs of every setting (final relative error, %; ranges of "
          f"{first}):")
    for name, row in coverage["runs"].items():
        low, high = row["range"][first]
        singles = row["single_run"].values()
        print(f"  {name:36s} ensemble {100 * low:8.3f} – {100 * high:8.3f}   settings {100 * min(singles):8.3f} – "
              f"{100 * max(singles):8.3f}   spread {100 * row['settings_spread']:.2g} vs width "
              f"{100 * row['width']:.2g}: {'covered' if row['covered'] else 'NOT covered'}"
              f"{'' if row['within'] else ' (a single run outside the range)'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.spread", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("_build/spread"))
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, from: {', '.join(SETTINGS)}")
    ap.add_argument("--notebooks", default=None,
                    help="comma-separated notebook stems (default: every notebook, the report last)")
    ap.add_argument("--references", type=Path, default=regression.REFERENCES)
    ap.add_argument("--cell-timeout", type=float, default=None)
    ap.add_argument("--skip-runs", action="store_true", help="only measure the runs already in --out")
    ap.add_argument("--write", action="store_true", help="record the spreads in the tolerances file")
    ap.add_argument("--machine", default=None,
                    help="this is another machine than the one of the committed measurements: add its runs to them "
                         "as settings <machine>/<setting> (the committed references stay the pinned run's)")
    args = ap.parse_args(argv)
    settings = args.settings.split(",")
    notebooks = sorted(Path("notebooks").glob("*.ipynb"), key=lambda p: (p.stem == "04_reproduction", p.stem))
    if args.notebooks:
        notebooks = [Path("notebooks") / f"{stem}.ipynb" for stem in args.notebooks.split(",")]
    if not args.skip_runs:
        run_settings(args.out, settings, notebooks, args.cell_timeout)
    if len(settings) < 2:
        print("one setting: nothing to compare (measure it together with others, e.g. --skip-runs --settings ...)")
        return 0
    dirs = [args.out / s for s in settings]
    if all((d / "03_superresolution.json").is_file() for d in dirs):
        coverage = ensemble_coverage(dirs)
        _print_coverage(coverage)
        if args.write and not args.machine:  # the committed coverage is the reference machine's
            target = args.references / "ensemble_coverage.json"
            tmp = target.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(coverage, indent=1) + "\n")
            tmp.replace(target)
    return regression.main(["spread", *(str(args.out / s) for s in settings), "--references", str(args.references),
                            *(["--write"] if args.write else []),
                            *(["--machine", args.machine] if args.machine else [])])


if __name__ == "__main__":
    sys.exit(main())
