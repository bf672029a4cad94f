"""Measure how much the notebooks' results move under other numeric settings on this machine.

Runs each notebook once per setting (the pinned defaults of ``tools/numerics.mk`` with a few variables changed,
each run in its own process so the kernel starts with that environment) into ``OUT/<setting>/<notebook>.json``,
then prints, for every tolerance rule, the largest difference between the settings and whether the rule's
tolerance covers it (:func:`tools.regression.measure_spread`). ``--write`` records the spreads in the tolerances
file. This is how the tolerances of the results regression test were derived; rerun it after a change that
makes a result more or less sensitive::

    python -m tools.spread --out _build/spread [--settings pinned,aten_default,...] [--notebooks 00_data,...]

It takes about as long as running the chosen notebooks once per setting (about 8 minutes per setting for all
of them on 2 cores), and leaves the last setting's results in ``_build/results``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tools import numerics, regression

__all__ = ["SETTINGS", "run_settings"]

#: Each setting: environment variables changed from the pinned defaults.
SETTINGS: dict[str, dict[str, str]] = {
    "pinned": {},
    "aten_default": {"ATEN_CPU_CAPABILITY": "default"},
    "threads_2": {"OMP_NUM_THREADS": "2"},
    "mkl_auto": {"MKL_CBWR": "AUTO"},
    "mkl_avx": {"MKL_CBWR": "AVX"},
    "combined": {"MKL_CBWR": "AVX", "ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1"},
}


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
    return regression.main(["spread", *(str(args.out / s) for s in settings), "--references", str(args.references),
                            *(["--write"] if args.write else [])])


if __name__ == "__main__":
    sys.exit(main())
