"""Why one image amplifies round-off more than another: the §4 Diff All run measured on several images.

For each image (the synthetic hand; matplotlib's real MRI slice and its photograph, offline; the paper's reference
where ``make paper-data`` fetched it), at the page's settings (m = 20, factor 2, 4 templates, the authors' 24
parameters, LM from the continuation pre-registration, 500 CG iterations to the absolute tolerance 1e-3), this
records what could make the run chaotic, and beside it the spread of its round-off ensemble
(:func:`imreg_lib.paper.round_off_ensembles`, 8 members):

* the initial residual norm and how far LM brings it down;
* the CG iterations per projection and the tolerance relative to the right-hand side ``‖Aᵀb‖`` (an absolute
  tolerance that is loose against the data stops CG where round-off decides the last iterate);
* LM's rejected steps;
* the condition number of ``JᵀJ`` at the start and at the end (the Diff All Jacobian);
* how far apart the members' losses are at each LM point (the growth of the data's round-off along the run).

    OMP_NUM_THREADS=1 python benchmarks/roundoff.py --output benchmarks/roundoff.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import imreg_lib as il
from imreg_lib import paper
from imreg_lib._srdense import AssembledNormal
from imreg_lib.paper import ensembles as ens
from imreg_lib.paper import superres_runs as ps

SETTINGS = {"cg_iters": 500, "tol": 1e-3, "gn_iters": 10, "gtol": 1e-5}


def measure(problem, members: int) -> dict:
    t0 = time.perf_counter()
    w0 = paper.preregister(problem, loss="norm", continuation=True).w
    vp = ps.varpro_variant(problem, method="diff_all", cg_iters=SETTINGS["cg_iters"], tol=SETTINGS["tol"])
    run = il.varpro_levenberg_marquardt(vp, w0, max_iter=SETTINGS["gn_iters"], gtol=SETTINGS["gtol"])
    r0, J0 = vp.residual_and_jacobian(w0)
    sv = torch.linalg.svdvals(J0)
    normal = AssembledNormal.build(problem, vp.full_parameters(w0))
    rhs = (normal.hd * normal.G.transpose(1, 2) @ normal.data[..., None]).sum(0).norm()
    members_runs = [run]
    for k in range(1, members):  # one after another here: the loss of every member at every LM point is kept
        pk = ens.perturbed_problem(problem, k)
        wk = paper.preregister(pk, loss="norm", continuation=True).w
        vpk = ps.varpro_variant(pk, method="diff_all", cg_iters=SETTINGS["cg_iters"], tol=SETTINGS["tol"])
        members_runs.append(il.varpro_levenberg_marquardt(vpk, wk, max_iter=SETTINGS["gn_iters"],
                                                          gtol=SETTINGS["gtol"]))
    e = ens.Ensemble.from_runs(members_runs)
    n = min(len(r.losses) for r in members_runs)
    # how far the members' losses are apart at each LM point, relative to member 0's: the growth of round-off
    apart = [max(abs(r.losses[i] / run.losses[i] - 1.0) for r in members_runs[1:]) for i in range(n)]
    _, J1 = vp.residual_and_jacobian(vp.reduced_parameters(run.w_full))
    sv1 = torch.linalg.svdvals(J1)
    return {
        "initial_residual_norm": float(r0.norm()), "final_rel_loss": run.losses[-1] / run.losses[0],
        "cg_iterations_median": statistics.median(run.cg_iterations),
        "cg_tol_over_rhs": SETTINGS["tol"] / float(rhs),
        "rejected_steps": sum(not a for a in run.lm.accepted),
        "cond_JtJ_start": float((sv[0] / sv[-1]) ** 2), "cond_JtJ_end": float((sv1[0] / sv1[-1]) ** 2),
        "members_loss_apart_per_point": apart,
        "ensemble": {"median": e.median, "min": e.min, "max": e.max, "members": e.members,
                     "range_over_median": (e.max - e.min) / e.median,
                     "final_rel_loss_range_over_median": (max(e.rel_losses) - min(e.rel_losses))
                     / statistics.median(e.rel_losses)},
        "seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, default=Path("benchmarks/roundoff.json"))
    ap.add_argument("--members", type=int, default=8)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from PIL import Image

    folder = Path(tempfile.mkdtemp())
    images = {"synthetic hand": None}
    for name in il.data.SAMPLE_IMAGES:  # as the 03 page reads a user's file: a PNG, upright
        pixels = il.data.sample_image(name, device="cpu").flip(1).T.round().clamp(0, 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{name}.png")
        images[name] = str(folder / f"{name}.png")
    paper_ref = Path("data/paper/hands-R.jpg")
    if paper_ref.is_file():
        images["paper's hand"] = str(paper_ref)
    results = {}
    for name, path in images.items():
        problem = il.superresolution_problem(20, 2, 4, 1e-2, reference_path=path)
        results[name] = measure(problem, args.members)
        print(name, json.dumps(results[name]), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(json.dumps({"settings": {"m": 20, "factor": 2, "n_templates": 4, "lam": 1e-2, **SETTINGS},
                               "machine": il.machine_info("cpu"), "images": results}, indent=1) + "\n")
    tmp.replace(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
