"""The GPU toggle, checked: the §3 and §4 experiments with ``device="cuda"`` and ``device="cpu"`` on one machine.

``make gpu-check`` (or ``PYTHONPATH=. python benchmarks/gpu_check.py``) runs from the source tree with nothing
installed but torch (>= 2.6, a CUDA build), NumPy and SciPy (matplotlib and Pillow are not needed here), no network
and no papermill. Sized for under five minutes on a GPU machine:

* Fig 2 (m = 32, 30 scales): single scale, traditional multi-scale and the predictor-corrector (exact Hessians);
* Fig 3 (40 scales): the predictor-corrector with an exact and with a Gauss-Newton predictor;
* §4 at the paper's settings (m = 20, factor 2, 4 templates, the authors' 24 parameters): Diff All, No Diff and
  the implicit Jacobian, 10 LM points each from the same start (the continuation pre-registration, on the CPU);
* §4 at the authors' full size (m = 128, factor 4, 16 templates, 96 parameters): one residual and one Jacobian of
  each method with 20 CG iterations (30 for the implicit solve): a full LM run at this size does not fit in five
  minutes.

Each number is compared between the devices with the tolerance the results regression uses for it
(``tests/references/tolerances.yaml``; a unit test keeps :data:`TOLERANCES` equal to those rules), and each
experiment is timed on both. Exit status: 0 when everything agrees, 1 when a comparison fails (each is printed),
2 when no CUDA device is present (``--devices cpu cpu`` checks the script itself on one CPU). The JSON summary
goes to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

#: Tolerances of the results regression for the numbers compared here: ``name -> (check, tol)``.
TOLERANCES: dict[str, tuple[str, float]] = {
    "02_multiscale:single_scale.final_loss": ("rtol", 1.0e-04),
    "02_multiscale:traditional.final_loss": ("rtol", 1.0e-04),
    "02_multiscale:predictor_corrector.final_loss": ("rtol", 1.0e-04),
    "02_multiscale:traditional.n_hessians": ("rtol", 0.25),
    "02_multiscale:predictor_corrector.n_hessians": ("rtol", 0.25),
    "03_superresolution:no_diff.rel_error": ("rtol", 1.1e-05),
    "03_superresolution:implicit.rel_error": ("rtol", 1.1e-05),
    "03_superresolution:diff_all.rel_error": ("rtol", 0.5),
}
#: Jacobians at full size after 20 CG iterations: the same arithmetic on both devices up to round-off.
FULL_SIZE_JACOBIAN_RTOL = 1e-6


def _close(a: float, b: float, check: str, tol: float) -> bool:
    if check == "rtol":
        return abs(a - b) <= tol * max(abs(a), abs(b))
    return abs(a - b) <= tol


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def multiscale(device: str) -> tuple[dict, dict]:
    import imreg_lib as il
    from imreg_lib import paper

    pair = il.synthetic_hand_pair(32, device=device)
    obj = il.SSDObjective(il.SplineImage(pair.template, pair.grid), il.SplineImage(pair.reference, pair.grid))
    fig2, t2 = _timed(lambda: paper.compare_methods(obj, il.theta_schedule(1e3, 1e-3, 30)))
    fig3, t3 = _timed(lambda: paper.compare_predictors(obj, il.theta_schedule(1e3, 1e-3, 40)))
    values = {"single_scale.final_loss": fig2.single_scale.final_loss,
              "traditional.final_loss": fig2.traditional.final_loss,
              "predictor_corrector.final_loss": fig2.predictor_corrector.final_loss,
              "traditional.n_hessians": fig2.traditional.n_hessians,
              "predictor_corrector.n_hessians": fig2.predictor_corrector.n_hessians,
              "fig3.exact.final_loss": fig3.runs["exact"].final_loss,
              "fig3.gauss_newton.final_loss": fig3.runs["gauss_newton"].final_loss}
    return values, {"fig2": t2, "fig3": t3}


def superresolution(device: str, start: torch.Tensor) -> tuple[dict, dict]:
    import imreg_lib as il
    from imreg_lib import paper

    pb = il.superresolution_problem(20, 2, 4, 1e-2, device=device)
    w0 = start.to(device)
    values, times = {}, {}
    for method in ("diff_all", "no_diff", "implicit"):
        vp = paper.AsCodedVarPro(pb, method=method, cg_iters=500, tol=1e-3)
        run, times[method] = _timed(lambda vp=vp: il.varpro_levenberg_marquardt(vp, w0, max_iter=10, gtol=1e-5))
        values[f"{method}.rel_error"] = run.rel_error
        values[f"{method}.final_loss"] = run.losses[-1]
    return values, times


def full_size(device: str) -> tuple[dict, dict]:
    import imreg_lib as il
    from imreg_lib import paper

    pb = il.superresolution_problem(128, 4, 16, 1e-2, device=device)
    g = torch.Generator().manual_seed(0)
    w = pb.w_true + 1e-3 * torch.randn(pb.n_params, generator=g, dtype=pb.dtype).to(device)
    values, times = {}, {}
    for method in ("diff_all", "no_diff", "implicit"):
        vp = paper.AsCodedVarPro(pb, method=method, cg_iters=20, tol=0.0, implicit_max_iter=30)
        (r, J), times[method] = _timed(lambda vp=vp: vp.residual_and_jacobian(w))
        values[f"full.{method}.residual"] = r.detach().cpu()
        values[f"full.{method}.jacobian"] = J.detach().cpu()
    return values, times


def compare(a: dict, b: dict, prefix: str) -> list[str]:
    failures = []
    for key, va in a.items():
        vb = b[key]
        if isinstance(va, torch.Tensor):
            rel = float(torch.linalg.vector_norm(va - vb) / torch.linalg.vector_norm(vb))
            if not rel <= FULL_SIZE_JACOBIAN_RTOL:
                failures.append(f"{key}: relative difference {rel:.2e} > {FULL_SIZE_JACOBIAN_RTOL:g}")
            continue
        check, tol = TOLERANCES.get(f"{prefix}:{key}", ("rtol", 5.0e-05))
        if not (math.isfinite(va) and math.isfinite(vb) and _close(va, vb, check, tol)):
            failures.append(f"{key}: {va!r} against {vb!r} ({check} {tol:g})")
    return failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", nargs=2, default=["cuda", "cpu"], metavar=("A", "B"),
                    help="the two devices compared (default: cuda cpu; 'cpu cpu' checks the script itself)")
    ap.add_argument("--output", type=Path, default=Path("_build/gpu-check.json"))
    ap.add_argument("--skip-full-size", action="store_true", help="leave out the m = 128 problem")
    args = ap.parse_args(argv)
    for dev in args.devices:
        if dev not in ("cpu", "cuda"):
            print(f"gpu-check: --devices takes 'cpu' or 'cuda', got {dev!r}", file=sys.stderr)
            return 2
    if "cuda" in args.devices and not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device here (torch {torch.__version__}, CUDA build: "
              f"{torch.version.cuda is not None}); run it on a machine with an NVIDIA GPU and a CUDA build of "
              "torch, or pass --devices cpu cpu to check the script on the CPU", file=sys.stderr)
        return 2
    import imreg_lib as il
    from imreg_lib import paper

    pb_cpu = il.superresolution_problem(20, 2, 4, 1e-2, device="cpu")
    start = paper.preregister(pb_cpu, loss="norm", continuation=True).w
    report: dict = {"torch": torch.__version__, "devices": args.devices, "seconds": {}, "failures": []}
    if "cuda" in args.devices:
        report["gpu"] = torch.cuda.get_device_name(0)
    results = {}
    for dev in args.devices:
        print(f"gpu-check: running on {dev} ...", flush=True)
        ms, t_ms = multiscale(dev)
        sr, t_sr = superresolution(dev, start)
        full, t_full = ({}, {}) if args.skip_full_size else full_size(dev)
        results.setdefault(dev, []).append((ms, sr, full))
        report["seconds"].setdefault(dev, []).append({"multiscale": t_ms, "superresolution": t_sr,
                                                      "full_size": t_full})
    (ms_a, sr_a, full_a), (ms_b, sr_b, full_b) = results[args.devices[0]][0], results[args.devices[1]][-1]
    failures = (compare(ms_a, ms_b, "02_multiscale") + compare(sr_a, sr_b, "03_superresolution")
                + compare(full_a, full_b, "full"))
    report["failures"] = failures
    report["values"] = {dev: {**r[-1][0], **r[-1][1]} for dev, r in results.items()}
    for dev, times in report["seconds"].items():
        print(f"{dev}: " + json.dumps(times[-1]))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=float) + "\n")
    tmp.replace(args.output)
    if failures:
        print("gpu-check: FAILED\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print(f"gpu-check: {args.devices[0]} and {args.devices[1]} agree within the regression's tolerances "
          f"({len(ms_a) + len(sr_a) + len(full_a)} numbers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
