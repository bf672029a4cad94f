"""Benchmark of the multi-scale experiments (issue: section 3) at the paper's settings on the default data.

* Fig. 2: single scale (θ = 1e-3, gtol 1e-7) + traditional + predictor-corrector (30 scales, gtol 1e-4);
  target ≤ 3 s (the authors' script: 34 s on this machine type).
* Fig. 3: predictor-corrector with exact (trust-region Newton, gtol 1e-8) and Gauss-Newton (LM) Hessians,
  consistent and as coded (40 scales); target ≤ 60 s (the authors' script had not finished after 12 min).
* Peak resident memory of the process; target ≤ 500 MB.

The first run in a fresh process ("cold") includes one-off costs (lazy imports of torch.func, spline bases);
the warm numbers are medians of repeats. Output: JSON (``--output``), also printed.

    python benchmarks/multiscale.py --output _build/benchmarks/multiscale.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from pathlib import Path

import torch

import imreg_lib as il
from imreg_lib import paper

TARGETS = {"fig2_seconds": 3.0, "fig3_seconds": 60.0, "peak_rss_mb": 500.0}


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, default=Path("_build/benchmarks/multiscale.json"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--m", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads > 0:  # small problems gain nothing from threads, and oversubscribed threads are very slow
        torch.set_num_threads(args.threads)
    device = il.resolve_device(args.device)

    def problem():  # a fresh objective each run: nothing cached between repeats
        pair = il.synthetic_hand_pair(args.m, device=device)
        return il.SSDObjective(il.SplineImage(pair.template, pair.grid), il.SplineImage(pair.reference, pair.grid))

    thetas30 = torch.logspace(3, -3, 30, dtype=torch.float64).tolist()
    thetas40 = torch.logspace(3, -3, 40, dtype=torch.float64).tolist()
    fig2 = lambda: paper.compare_methods(problem(), thetas30, gtol=1e-4, gtol_single=1e-7)  # noqa: E731
    fig3 = lambda: paper.compare_predictors(problem(), thetas40)  # noqa: E731

    out2, fig2_cold = timed(fig2)
    out3, fig3_cold = timed(fig3)
    fig2_warm = statistics.median(timed(fig2)[1] for _ in range(args.repeats))
    fig3_warm = statistics.median(timed(fig3)[1] for _ in range(args.repeats))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    methods = {name: {"final_loss": r.final_loss, "n_hessians": r.n_hessians, "iterations": r.iterations,
                      "algorithm_seconds": r.seconds}
               for name, r in (("single_scale", out2.single_scale), ("traditional", out2.traditional),
                               ("predictor_corrector", out2.predictor_corrector))}
    runs3 = {name: {"n_hessians": r.n_hessians, "iterations": r.iterations, "algorithm_seconds": r.seconds}
             for name, r in out3.runs.items()}
    measured = {"fig2_seconds": fig2_cold, "fig3_seconds": fig3_cold, "peak_rss_mb": peak_mb}
    result = {
        "benchmark": "multiscale",
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "m": args.m,
        "fig2": {"cold_seconds": fig2_cold, "warm_seconds_median": fig2_warm, "initial_loss": out2.initial_loss,
                 "methods": methods},
        "fig3": {"cold_seconds": fig3_cold, "warm_seconds_median": fig3_warm, "runs": runs3},
        "peak_rss_mb": peak_mb,
        "targets": {k: {"target": v, "measured": measured[k], "met": measured[k] <= v} for k, v in TARGETS.items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"Fig 2: {fig2_cold:.2f} s cold, {fig2_warm:.2f} s warm  |  Fig 3: {fig3_cold:.2f} s cold, "
          f"{fig3_warm:.2f} s warm  |  peak RSS {peak_mb:.0f} MB  (threads: {torch.get_num_threads()})")
    for name, m in methods.items():
        print(f"  {name:20s} loss {m['final_loss']:.4e}  Hessians {m['n_hessians']:4d}  "
              f"{m['algorithm_seconds']:.2f} s")
    for k, t in result["targets"].items():
        print(f"  target {k}: {t['measured']:.2f} <= {t['target']}: {'met' if t['met'] else 'MISSED'}")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
