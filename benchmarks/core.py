"""Benchmark of the library core (issue: foundation): at m = 32 and m = 128, the time of one SSD loss, its
gradient and its Hessian in the 6 affine parameters, and of the spline evaluation at all cell centres.

Coefficients are built once per (image, θ) ("cached" protocol). Derivatives are timed both by the
structured path (one spline pass; AD only for the transformation) and by generic ``torch.func`` AD of the
loss. Output: JSON (``--output``), also printed.

    python benchmarks/core.py --output _build/benchmarks/core.json [--device cpu] [--n-runs 100]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from torch.func import grad, hessian, jacrev

import imreg_lib as il


def bench(m: int, theta: float, n_runs: int, device: torch.device) -> dict:
    pair = il.synthetic_hand_pair(m, device=device)
    g = pair.grid
    obj = il.SSDObjective(il.SplineImage(pair.template, g), il.SplineImage(pair.reference, g))
    scale = obj.at_scale(theta)
    w = obj.identity() + torch.tensor([0.02, -0.01, 0.01, -0.02, 0.1, -0.1], dtype=torch.float64, device=device)
    x = obj.x
    coef = scale.template_coefficients
    t = lambda fn: il.time_function(fn, n_runs=n_runs, device=device).as_dict()  # noqa: E731
    res = {
        "m": m,
        "n_points": int(x.shape[0]),
        "spline_eval_ms": t(lambda: il.spline_evaluate(coef, x, g)),
        "loss_ms": t(lambda: scale.loss(w)),
        "structured": {
            "loss_gradient_ms": t(lambda: scale.derivatives(w, "none")),
            "loss_gradient_gauss_newton_ms": t(lambda: scale.derivatives(w, "gauss_newton")),
            "loss_gradient_hessian_ms": t(lambda: scale.derivatives(w, "exact")),
        },
        "torch_func": {
            "gradient_ms": t(lambda: grad(scale.loss)(w)),
            "hessian_ms": t(lambda: hessian(scale.loss)(w)),
            "hessian_rev_rev_ms": t(lambda: jacrev(grad(scale.loss))(w)),
        },
        "coefficients_ms": t(lambda: il.spline_coefficients(pair.template, theta)),
    }
    loss = res["loss_ms"]["median_ms"]
    res["factors_vs_loss_median"] = {
        "structured_gradient": res["structured"]["loss_gradient_ms"]["median_ms"] / loss,
        "structured_hessian": res["structured"]["loss_gradient_hessian_ms"]["median_ms"] / loss,
        "torch_func_gradient": res["torch_func"]["gradient_ms"]["median_ms"] / loss,
        "torch_func_hessian": res["torch_func"]["hessian_ms"]["median_ms"] / loss,
    }
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, default=Path("_build/benchmarks/core.json"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n-runs", type=int, default=100)
    ap.add_argument("--theta", type=float, default=1e-3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 128])
    args = ap.parse_args()
    device = il.resolve_device(args.device)
    out = {
        "benchmark": "core",
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "theta": args.theta,
        "results": [bench(m, args.theta, args.n_runs, device) for m in args.sizes],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2))
    for r in out["results"]:
        med = lambda d: f"{d['median_ms']:.3f} ms"  # noqa: E731
        print(f"m={r['m']:4d}  spline eval {med(r['spline_eval_ms'])}  loss {med(r['loss_ms'])}  "
              f"structured: grad {med(r['structured']['loss_gradient_ms'])}, "
              f"hessian {med(r['structured']['loss_gradient_hessian_ms'])}  "
              f"torch.func: grad {med(r['torch_func']['gradient_ms'])}, hessian {med(r['torch_func']['hessian_ms'])}")
        print("        factors (median / loss):", {k: round(v, 2) for k, v in r["factors_vs_loss_median"].items()})
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
