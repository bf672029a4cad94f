"""Benchmark of the super-resolution engine per CG iteration, against the arithmetic it must do (issue: speed).

For each Jacobian method of §4 at the paper's settings (m = 20, factor 2, 4 templates, the as-coded 24 parameters,
the LM start of the page's continuation pre-registration), on both engines:

* ``assembled``: the default for small problems (``imreg_lib._srdense``: the operator assembled per motion, the
  CG tangents carried by hand);
* ``generic``: the matrix-free operator with ``jacfwd`` through CG (``fast_paths(False)`` off: the sparse and
  primitive paths of the earlier engine, i.e. the state before this engine).

Recorded: CG iterations, the Jacobian's wall time, time per CG iteration and per tangent, and the PyTorch operations
dispatched per CG iteration (a ``TorchDispatchMode`` count; the assembled engine's dense products run through
NumPy's BLAS and are counted separately). Beside them, the floor: the flops and bytes one traced iteration must move
(the product with ``AᵀA`` for the primal and the T tangents, ``2 n² (T + 1)`` flops over ``8 n²`` bytes, plus the
derivative term ``Ṁp``, ``3 · 2 q n_t 6 n`` flops over the ``8 q n_t 6 n`` bytes of ``Ġ``), and the time of that
arithmetic on this machine, measured in the same run as dense products of the same sizes. The ratio achieved/floor
is reported per engine.

    OMP_NUM_THREADS=1 python benchmarks/sr_engine.py --output _build/benchmarks/sr_engine.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import imreg_lib as il
from imreg_lib import _srdense, paper
from imreg_lib._torch import fast_paths


class _Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def _median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def floor(n: int, T: int, q: int, nt: int, repeats: int = 50) -> dict:
    """The arithmetic of one traced CG iteration and its time as plain dense products of the same sizes."""
    rng = np.random.default_rng(0)
    M, P = rng.standard_normal((n, n)), rng.standard_normal((n, T + 1))
    Gd, V = rng.standard_normal((q * nt * 6, n)), rng.standard_normal((n, 64))
    t_mp = _median_time(lambda: M @ P, repeats)
    t_gd = 3 * _median_time(lambda: Gd @ V, max(repeats // 5, 3)) / 64  # three passes over Ġ per direction
    flops = 2 * n * n * (T + 1) + 3 * 2 * q * nt * 6 * n
    bytes_ = 8 * (n * n + q * nt * 6 * n)
    return {"flops": flops, "bytes": bytes_, "seconds": t_mp + t_gd,
            "parts": {"M @ [p, P] (n x (T+1))": t_mp, "M' p (three Ġ products, blocked)": t_gd}}


def measure(vp, w, repeats: int) -> dict:
    proj = vp.projection(w)
    seconds = _median_time(lambda: vp.jacobian(w), repeats)
    calls = {"n": 0}
    original = _srdense._mm

    def counted(a, b):
        calls["n"] += 1
        return original(a, b)

    _srdense._mm = counted
    try:
        with _Count() as c:
            vp.jacobian(w)
    finally:
        _srdense._mm = original
    its = max(proj.iterations, 1)
    return {"cg_iterations": proj.iterations, "jacobian_seconds": seconds, "ms_per_iteration": 1e3 * seconds / its,
            "us_per_iteration_per_tangent": 1e6 * seconds / its / vp.n_params,
            "torch_ops_per_iteration": c.n / its, "blas_calls_per_iteration": calls["n"] / its}


def page_seconds(repeats: int = 1, ensemble_members: int | None = None) -> dict:
    """Time of executing the §4 page at the paper's settings as the book does (a papermill kernel, the numeric
    settings of ``tools/numerics.mk``, independent LM runs on the usable cores), best of ``repeats``: the notebook's
    own execution time as papermill records it (the measure of the book's build-status page), and the wall time of
    the whole command (interpreter, kernel start, cleaning the notebook). ``ensemble_members`` overrides the book's
    round-off ensembles (``1``: the page's own runs only, the engine's target of 45 s)."""
    import os
    import subprocess
    import sys
    import tempfile

    from tools.numerics import apply_defaults

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)  # make bench's one thread for this script; the page gets the book's settings
    apply_defaults(env)
    notebook, wall = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "tools.pipeline", "execute", "notebooks/03_superresolution.ipynb",
                            str(Path(tmp) / "03.ipynb"), "--params", "params/paper.yaml",
                            "--params", str(_results_elsewhere(Path(tmp), ensemble_members))], cwd=root, env=env,
                           check=True,
                           capture_output=True)
            wall.append(time.perf_counter() - t0)
            notebook.append(json.loads((Path(tmp) / "status" / "03_superresolution.json").read_text())["seconds"])
    # the kernel shares the page's LM runs with its persistent worker processes (imreg_lib.paper._jobs) when more
    # than one core is usable
    from imreg_lib.paper._jobs import workers

    out = {"seconds": min(notebook), "runs": notebook, "wall_seconds": min(wall), "wall_runs": wall,
           "lm_runs_in_workers": workers() > 1, "workers": workers()}
    return out | ({"ensemble_members": ensemble_members, "target_seconds": 45.0} if ensemble_members == 1 else {})


def _results_elsewhere(folder: Path, ensemble_members: int | None = None) -> Path:
    """A parameter file that sends the page's results JSON into ``folder`` (the book's stay untouched), with
    ``ensemble_members`` where given."""
    path = folder / "results.yaml"
    extra = "" if ensemble_members is None else f"  ensemble_members: {ensemble_members}\n"
    path.write_text(f"03_superresolution:\n  results_path: {folder / '03.json'}\n{extra}")
    return path


def full_scale(path: Path) -> dict | None:
    """The last ``make full-scale`` run's time, peak memory and errors (``None`` where it has not run)."""
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    return {"problem": d["problem"], "seconds": d["seconds"], "peak_memory_mb": d["peak_memory_mb"],
            "targets": {"seconds": 900.0, "peak_memory_mb": 2048.0},
            "runs": {k: {"seconds": r["seconds"], "rel_error": r["rel_error"], "final_loss": r["losses"][-1],
                         "cg_iterations": r["cg_iterations"], "memory_growth_after_second":
                             r["memory_growth_after_second"]} for k, r in d["runs"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, default=Path("_build/benchmarks/sr_engine.json"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--full-scale-results", type=Path, default=Path("_build/results/full_scale.json"),
                    help="results of make full-scale to record beside (skipped where missing)")
    ap.add_argument("--only-page", action="store_true",
                    help="update only the page time and the full-scale record of an existing --output")
    args = ap.parse_args()
    if args.only_page:
        out = json.loads(args.output.read_text())
        out["page_03"] = page_seconds(args.repeats)
        out["page_03_without_ensembles"] = page_seconds(args.repeats, ensemble_members=1)
        out["full_scale"] = full_scale(args.full_scale_results)
        _write(args.output, out)
        print(json.dumps({k: out[k] for k in ("page_03", "page_03_without_ensembles", "full_scale")}, indent=1))
        return
    pb = il.superresolution_problem(20, 2, 4, 1e-2)
    w0 = paper.preregister(pb, loss="norm", continuation=True).w
    methods = {"diff_all": dict(method="diff_all", cg_iters=500),
               "last_90_restarted_N200": dict(method="last_restarted", cg_iters=200, fraction=0.9),
               "inexact_50": dict(method="diff_all", cg_iters=50),
               "implicit": dict(method="implicit")}
    T, q, nt = pb.n_params, pb.n_templates, (pb.m // pb.factor) ** 2
    fl = floor(pb.n_pixels, T, q, nt)
    problem = {"m": pb.m, "factor": pb.factor, "n_templates": q, "n_pixels": pb.n_pixels, "tangents": T}
    out = {"machine": il.machine_info(torch.device("cpu")), "problem": problem,
           "floor_per_iteration": fl, "methods": {}}
    for name, options in methods.items():
        vp = paper.AsCodedVarPro(pb, tol=1e-3, **options)
        row = {"assembled": measure(vp, w0, args.repeats)}
        with fast_paths(False):
            row["generic"] = measure(vp, w0, 1)
        for engine in ("assembled", "generic"):
            row[engine]["achieved_over_floor"] = row[engine]["ms_per_iteration"] / (1e3 * fl["seconds"])
        out["methods"][name] = row
        print(name, json.dumps(row))
    out["page_03"] = page_seconds(min(args.repeats, 2))
    out["page_03_without_ensembles"] = page_seconds(min(args.repeats, 2), ensemble_members=1)
    out["full_scale"] = full_scale(args.full_scale_results)
    _write(args.output, out)
    print(json.dumps(out["floor_per_iteration"], indent=1))


def _write(path: Path, out: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    main()
