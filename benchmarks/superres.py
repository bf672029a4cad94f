"""Benchmark of the super-resolution experiments (issue: section 4) at the paper's settings on the default data.

Settings: m = 20, factor 2, 4 templates, λ = 1e-2, CG at most 500 iterations with absolute tolerance
1e-3, Levenberg-Marquardt max_iter = 10 (recorded points) and gtol = 1e-5.

* Cost per method at the LM start point: residual and Jacobian (median of repeats) for Diff All, No Diff,
  implicit, the last 90 % of N = 200 iterations differentiated (restarted as the authors, and continued), and an
  inexact projection of 50 iterations; the Jacobian/residual factor (the paper: 6-10x).
* Figs 5-6: pre-registration + Diff All and No Diff LM runs + final reconstructions, wall time (target: well
  under a minute). The authors' pre-registration (every scale restarted from the identity, norm loss) and the
  fix (warm-started continuation on blurred data) are both run; on the synthetic hand only the fix gives a
  usable start, so the Figs 5-6 numbers use it, and the as-coded start is reported beside them.
* Memory: resident set size after every LM iteration, read after ``malloc_trim`` (target: growth < 5 % after
  the second) and the peak of the process (target ≤ 1 GB); an extra longer run (``--memory-iters``) shows that
  nothing accumulates.
* Relative reconstruction errors and final ||r|| beside the paper's (10.70 % / 25.61 %, the authors' runs). Our data
  are a synthetic hand, not the FAIR image, so the numbers differ; nothing is tuned to match.
* Speed against the authors' notebook, which cannot run here (FAIR data, > 6 GB): an **estimate** from an
  authors-style implementation written here (per template: dense coefficient solves and a spline evaluation at
  every application, the adjoint by ``vjp``, generic forward AD through CG; checked to give our residual and
  Jacobian), timed per CG iteration and multiplied by the evaluation counts of their LM (3 residuals per
  accepted and 2 per rejected iteration, the Jacobian per accepted point) at our runs' CG iteration counts.

Output: JSON (``--output``), also printed.

    OMP_NUM_THREADS=1 python benchmarks/superres.py --output _build/benchmarks/superres.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import imreg_lib as il
from imreg_lib import paper
from imreg_lib.spline import spline_basis_matrices
from imreg_lib.timing import rss_mb

PAPER = {"rel_error": {k: paper.PAPER_SR[k]["rel_error"] for k in ("diff_all", "no_diff")},
         "residual_norms": {k: paper.PAPER_SR[k]["residual_norms"] for k in ("diff_all", "no_diff")},
         "jacobian_over_residual": list(paper.PAPER_SR["jacobian_over_residual"])}
TARGETS = {"figs56_seconds": 60.0, "peak_rss_mb": 1024.0, "memory_growth_after_second": 0.05}
SPEEDUP_TARGET = 10.0


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (lazy imports, sparse matrices, kernels)
    return statistics.median(timed(fn)[1] for _ in range(repeats))


def authors_style(pb: il.SuperResolutionProblem):
    """``(residual(w, n), jacobian(w, n))`` as the authors compute them (see the module docstring)."""
    from torch.func import jacfwd, vjp

    m, k, q = pb.m, pb.factor, pb.n_templates
    B = spline_basis_matrices(m)[0]
    x = pb.grid.cell_centers()
    h = pb.grid.h

    def apply(w, f):
        F = f.reshape(m, m)
        out = []
        for j in range(q):  # per template; coefficients by dense solves at every application
            M = B.T @ B
            c = torch.linalg.solve(M, B.T @ F)
            c = torch.linalg.solve(M, B.T @ c.T).T
            v = il.spline_evaluate(c, il.affine(w[6 * j:6 * j + 6], x), pb.grid)
            out.append(torch.nn.functional.avg_pool2d(v.reshape(1, 1, m, m), k).reshape(-1))
        Lf = torch.cat([(torch.diff(F, dim=0) / h[0]).reshape(-1), (torch.diff(F, dim=1) / h[1]).reshape(-1)])
        return torch.cat([pb.data_scale * torch.cat(out), pb.reg_scale * Lf])

    def residual(w, n):
        zero = torch.zeros(pb.n_pixels, dtype=pb.dtype)
        adjoint = lambda y: vjp(lambda f: apply(w, f), zero)[1](y)[0]  # noqa: E731
        f = il.conjugate_gradient(lambda v: adjoint(apply(w, v)), adjoint(pb.b), pb.f_init, max_iter=n, tol=0.0).x
        return apply(w, f)[:pb.n_data] / pb.data_scale - pb.d

    return residual, lambda w, n: jacfwd(lambda wv: residual(wv, n))(w)


def authors_estimate(pb, w0, runs, n: int = 20) -> dict:
    residual, jacobian = authors_style(pb)
    ours = paper.AsCodedVarPro(pb, cg_iters=n, tol=0.0)
    (r, t_r), (J, t_j) = timed(lambda: residual(w0, n)), timed(lambda: jacobian(w0, n))
    per_res, per_jac = t_r / n, t_j / n
    total = 0.0
    for name in ("diff_all", "no_diff"):
        run = runs[name]
        its = statistics.mean(run.cg_iterations)
        n_res = 1 + sum(3 if a else 2 for a in run.lm.accepted)
        per_j = per_jac if name == "diff_all" else per_res  # No Diff: CG without tangents
        total += its * (n_res * per_res + run.lm.n_jacobians * per_j)
    return {"per_cg_iteration_ms": {"residual": 1e3 * per_res, "jacobian": 1e3 * per_jac},
            "check_max_abs_residual_difference": float((r - ours.residual(w0)).abs().max()),
            "check_relative_jacobian_difference": float(torch.linalg.vector_norm(J - ours.jacobian(w0))
                                                        / torch.linalg.vector_norm(J)),
            "figs56_seconds_estimate": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, default=Path("_build/benchmarks/superres.json"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory-iters", type=int, default=25, help="LM max_iter of the extra memory run (0: skip)")
    args = ap.parse_args()
    rss_start = rss_mb()
    lm = {"max_iter": 10, "gtol": 1e-5}

    # --- Figs 5-6 end to end (problem, pre-registration, two LM runs, final reconstructions) -------------
    t0 = time.perf_counter()
    pb = il.superresolution_problem(20, 2, 4, 1e-2, device="cpu")
    prereg = paper.preregister(pb, loss="norm", continuation=True)
    runs = {m: il.varpro_levenberg_marquardt(paper.AsCodedVarPro(pb, method=m, cg_iters=500, tol=1e-3), prereg.w, **lm)
            for m in ("diff_all", "no_diff")}
    figs56_seconds = time.perf_counter() - t0

    runs["implicit"], _ = timed(lambda: il.varpro_levenberg_marquardt(paper.AsCodedVarPro(pb, method="implicit"),
                                                                      prereg.w, **lm))
    runs["diff_all_eager"] = il.varpro_levenberg_marquardt(paper.AsCodedVarPro(pb, method="diff_all"), prereg.w,
                                                           eager_jacobian=True, **lm)

    # the authors' pre-registration (restart from the identity at every scale) and what it leads to
    prereg_coded, prereg_coded_s = timed(lambda: paper.preregister(pb, loss="norm"))
    runs_coded = {m: il.varpro_levenberg_marquardt(paper.AsCodedVarPro(pb, method=m), prereg_coded.w, **lm)
                  for m in ("diff_all", "no_diff")}

    # --- cost per method at the LM start point ---------------------------------------------------------------
    w0 = prereg.w
    methods = {
        "diff_all": paper.AsCodedVarPro(pb, method="diff_all", cg_iters=500),
        "no_diff": paper.AsCodedVarPro(pb, method="no_diff", cg_iters=500),
        "implicit": paper.AsCodedVarPro(pb, method="implicit"),
        "last_restarted_p0.9_N200": paper.AsCodedVarPro(pb, method="last_restarted", cg_iters=200, fraction=0.9),
        "last_continued_p0.9_N200": paper.AsCodedVarPro(pb, method="last_continued", cg_iters=200, fraction=0.9),
        "inexact_n50": paper.AsCodedVarPro(pb, method="diff_all", cg_iters=50),
    }
    costs = {}
    for name, vp in methods.items():
        res_s = median_seconds(lambda vp=vp: vp.residual(w0), args.repeats)
        proj = vp.projection(w0)
        jac_s = median_seconds(lambda vp=vp, proj=proj: vp.jacobian(w0, proj.x), args.repeats)
        costs[name] = {"residual_seconds": res_s, "jacobian_seconds": jac_s, "jacobian_over_residual": jac_s / res_s,
                       "cg_iterations": proj.iterations, "cg_converged": proj.converged}
    vp_ad = paper.AsCodedVarPro(pb, method="diff_all", cg_iters=500, adjoint="ad")  # the authors' vjp adjoint inside CG
    costs["diff_all_ad_adjoint"] = {"residual_seconds": median_seconds(lambda: vp_ad.residual(w0), 1),
                                    "jacobian_seconds": median_seconds(lambda: vp_ad.jacobian(w0), 1)}
    costs["diff_all_ad_adjoint"]["jacobian_over_residual"] = (costs["diff_all_ad_adjoint"]["jacobian_seconds"]
                                                              / costs["diff_all_ad_adjoint"]["residual_seconds"])

    # --- memory over a longer run ----------------------------------------------------------------------------
    memory_run = None
    if args.memory_iters > 0:
        mr = il.varpro_levenberg_marquardt(paper.AsCodedVarPro(pb, method="diff_all"), prereg.w,
                                           max_iter=args.memory_iters, gtol=1e-30, final_solve=False)
        memory_run = {"max_iter": args.memory_iters, "rss_mb": list(mr.rss_mb),
                      "growth_after_second": paper.memory_growth(list(mr.rss_mb))}
    peak_mb = il.peak_rss_mb()
    authors = authors_estimate(pb, w0, runs)
    authors["speedup_estimate"] = authors["figs56_seconds_estimate"] / figs56_seconds

    growth = max(paper.memory_growth(list(runs[m].rss_mb)) for m in ("diff_all", "no_diff", "implicit"))
    if memory_run is not None:
        growth = max(growth, memory_run["growth_after_second"])
    measured = {"figs56_seconds": figs56_seconds, "peak_rss_mb": peak_mb, "memory_growth_after_second": growth}
    result = {
        "benchmark": "superres",
        "device": "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "settings": {"m": 20, "factor": 2, "n_templates": 4, "lam": 1e-2, "cg_max_iter": 500, "cg_tol": 1e-3, **lm},
        "figs56": {"seconds": figs56_seconds, "preregistration": {
            "continuation_fix": {"seconds": prereg.seconds, "final_loss": prereg.history[-1].loss,
                                 "w_error_vs_truth": float(torch.linalg.vector_norm(prereg.w - pb.w_true)),
                                 "per_scale": [{"theta": h.theta, "loss": h.loss, "iterations": h.iterations}
                                               for h in prereg.history]},
            "as_coded": {"seconds": prereg_coded_s, "final_loss": prereg_coded.history[-1].loss,
                         "w_error_vs_truth": float(torch.linalg.vector_norm(prereg_coded.w - pb.w_true)),
                         "per_scale": [{"theta": h.theta, "loss": h.loss, "iterations": h.iterations}
                                       for h in prereg_coded.history]}}},
        "runs": {k: paper.VarProSummary.from_run(v).to_json() for k, v in runs.items()},
        "runs_from_as_coded_preregistration": {k: paper.VarProSummary.from_run(v).to_json()
                                               for k, v in runs_coded.items()},
        "rel_error_at_true_parameters": il.relative_error(il.reconstruct(pb, pb.w_true).x, pb.reference),
        "costs": costs,
        "authors_style_estimate": authors,
        "memory": {"rss_at_start_mb": rss_start, "peak_rss_mb": peak_mb, "longer_run": memory_run,
                   "growth_after_second": growth},
        "paper": PAPER,
        "targets": {**{k: {"target": v, "measured": measured[k], "met": measured[k] <= v} for k, v in TARGETS.items()},
                    "speedup_vs_authors_estimate": {"target": SPEEDUP_TARGET, "measured": authors["speedup_estimate"],
                                                    "met": authors["speedup_estimate"] >= SPEEDUP_TARGET}},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
