import os
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import imreg_lib as il

#: Per-cell time limit of the notebook tests (seconds), as ``make``'s ``CELL_TIMEOUT``.
CELL_TIMEOUT = float(os.environ.get("CELL_TIMEOUT", "900"))


@pytest.fixture(scope="session")
def hand32():
    return il.synthetic_hand_pair(32, device="cpu")


@pytest.fixture(scope="session")
def objective32(hand32):
    g = hand32.grid
    return il.SSDObjective(il.SplineImage(hand32.template, g), il.SplineImage(hand32.reference, g))


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def small_problem():
    """The small super-resolution problem of the tests: 8 × 8 reference, factor 2, 2 templates (on the CPU)."""
    return il.superresolution_problem(8, 2, 2)


def _perturbed_start(problem, seed=0, scale=0.02):
    g = torch.Generator().manual_seed(seed)
    return problem.w_true + scale * torch.randn(problem.n_params, generator=g, dtype=torch.float64)


@pytest.fixture(scope="session")
def perturbed_start():
    """``perturbed_start(problem, seed=0, scale=0.02)``: a start near the true motion, ``w_true + scale · N(0, 1)``
    drawn from a generator seeded with ``seed``."""
    return _perturbed_start


# ---- small runs of the paper layer, assembled as the notebooks assemble them (test_results, test_tables and
# test_plotting use them; the paper layer is imported inside, so that core tests do not load it) -------------------

@pytest.fixture(scope="session")
def pair12():
    return il.synthetic_hand_pair(12, device="cpu")


@pytest.fixture(scope="session")
def multiscale(pair12):
    from imreg_lib import paper

    settings = paper.MultiscaleSettings(
        theta_max=1e2, theta_min=1e-3, n_scales=5, n_scales_prediction=4, gtol=1e-4, gtol_single=1e-7,
        gtol_prediction=1e-6, gtol_gn=1e-5, gtol_gn_first=1e-4, newton_method="trust-exact",
        scale_space_thetas=[1.0], timing_repeats=3)
    thetas, thetas_prediction = settings.thetas, settings.thetas_prediction
    objective = il.SSDObjective(il.SplineImage(pair12.template, pair12.grid),
                                il.SplineImage(pair12.reference, pair12.grid))
    fig2 = paper.compare_methods(objective, thetas, timing_repeats=settings.timing_repeats)
    results = paper.MultiscaleResults.from_runs(pair12, fig2, settings, m=12, device="cpu")
    fig3 = paper.compare_predictors(objective, thetas_prediction, gtol_newton=1e-6)
    prediction = paper.PredictionResults.from_runs(fig3, thetas=thetas_prediction, newton_method="trust-exact")
    pc_other = il.predictor_corrector(objective, thetas_prediction, gtol=1e-6, newton_method="trust-ncg")
    other = paper.OtherSolverRun.from_runs("trust-ncg", pc_other, fig3.runs["exact"])
    full = replace(results, prediction=replace(prediction, other_newton_method=other), peak_memory_mb=100.0)
    return SimpleNamespace(objective=objective, fig2=fig2, fig3=fig3, results=results, prediction=prediction,
                           full=full, pair=pair12)


@pytest.fixture(scope="session")
def superres(small_problem):
    from imreg_lib import paper

    problem = small_problem
    settings = paper.SuperresolutionSettings(
        m=8, factor=2, n_templates=2, lam=1e-2, variant="as_coded", device="cpu", fractions=[0.5, 1.0],
        cg_counts=[2, 5], gn_iters=3, cg_iters=30, cg_iters_partial=20, taylor_cg_iters=5, cg_tol=1e-3, gtol=1e-5,
        preregistration="continuation")
    fractions, cg_counts = settings.fractions, settings.cg_counts
    lm = {"tol": 1e-3, "gn_iters": 3, "gtol": 1e-5}
    starts = paper.preregistration_starts(problem)
    w_start = {loss: starts[loss, True].w for loss in ("norm", "squared")}
    runs = paper.compare_projections(problem, w_start["norm"], cg_iters=30, **lm)
    corrected = paper.correction_runs(problem, starts, continuation=True, cg_iters=30, **lm)
    taylor = paper.projection_taylor(problem, w_start["squared"], (*fractions, 0.0), cg_iters=20)
    taylor_own = paper.varpro_taylor(paper.own_residual_varpros(problem, fractions, cg_iters=5), w_start["squared"])
    partial = paper.partial_differentiation(problem, w_start["squared"], fractions, cg_iters=20, **lm)
    continued = paper.partial_differentiation(problem, w_start["squared"], [0.5], cg_iters=20, restarted=False, **lm)
    inexact = paper.inexact_projections(problem, w_start["squared"], cg_counts, **lm)
    costs = paper.projection_costs(paper.cost_varpros(problem, cg_iters=30, cg_iters_partial=20, fractions=fractions,
                                                      cg_counts=cg_counts), w_start["squared"], n_runs=2, warmup=0)
    all_runs = paper.labelled_runs(runs, partial, inexact)
    floor = il.relative_error(il.reconstruct(problem, problem.w_true).x, problem.reference)
    results = paper.SuperresolutionResults.from_runs(
        problem, settings, rel_error_at_true_motion=floor, starts=starts, projections=runs, corrections=corrected,
        partial=partial, partial_continued=continued, taylor=taylor, taylor_own=taylor_own, inexact=inexact,
        memory_runs=all_runs, memory_growth=max(paper.memory_growth(r.rss_mb) for r in all_runs.values()),
        peak_memory_mb=200.0, machine=il.machine_info("cpu"), costs=costs, notebook_seconds=1.0)
    return SimpleNamespace(problem=problem, starts=starts, runs=runs, corrected=corrected, partial=partial,
                           continued=continued, inexact=inexact, costs=costs, results=results, all_runs=all_runs,
                           taylor=taylor, taylor_own=taylor_own)


@pytest.fixture(scope="session")
def ad_costs():
    from imreg_lib import paper

    pair = il.synthetic_hand_pair(8, device="cpu")
    table = paper.ad_cost_table(8, n_runs=2, warmup=0, max_seconds=0.05, device="cpu")
    comparisons, taylor = paper.derivative_checks(pair, n_runs=2, warmup=0, max_seconds=0.05)
    scaling = paper.scaling_study(pair, widths=(3,), sizes=(8,), node_sizes=(8,), n_runs=2, max_seconds=0.05,
                                  volume_m=6)
    settings = paper.ADCostsSettings.from_parameters(m=8, theta=1e-3, n_runs=2, time_budget_s=0.05, device="cpu",
                                                     source=pair.source, protocol="both")
    results = paper.ADCostsResults.from_runs(table, comparisons, taylor, scaling, settings,
                                             machine=il.machine_info("cpu"), peak_memory_mb=300.0)
    return SimpleNamespace(table=table, comparisons=comparisons, taylor=taylor, scaling=scaling, results=results)


@pytest.fixture
def run_notebook(tmp_path):
    """``run_notebook(path, **params)``: execute a notebook under papermill in ``tmp_path`` with ``params`` and a
    ``results_path`` there, under the pipeline's numeric settings and per-cell time limit; returns its results
    JSON."""
    import json

    from tools import pipeline

    def run(notebook, **params):
        out = tmp_path / "results.json"
        pipeline.execute_notebook(notebook, tmp_path / "out.ipynb", params={**params, "results_path": str(out)},
                                  cell_timeout=CELL_TIMEOUT)
        return json.loads(out.read_text())

    return run


@pytest.fixture
def hand_pngs(tmp_path):
    """``hand_pngs(size)``: the synthetic hand pair written as greyscale PNGs ``r.png`` and ``t.png`` (upright,
    0-255) in ``tmp_path``, as a user would supply them; returns their paths as strings."""
    import os

    import numpy as np
    from PIL import Image

    def write(size):
        pair = il.synthetic_hand_pair(size, device="cpu")
        paths = []
        for name, img in (("r.png", pair.reference), ("t.png", pair.template)):
            Image.fromarray(np.clip(img.numpy().T[::-1], 0, 255).astype(np.uint8)).save(tmp_path / name)
            paths.append(os.fspath(tmp_path / name))
        return tuple(paths)

    return write


#: Fixtures that start a Jupyter kernel (papermill) or a Dask cluster: tests that use them are ``slow``.
_SLOW_FIXTURES = {"run_notebook", "tiny_notebook"}
#: Tests that start a Python interpreter (or pip) in a subprocess to import the library afresh.
_SLOW_TESTS = {"test_importing_the_library_does_not_load_the_paper_layer",
               "test_the_import_check_sees_torch_behind_the_library",
               "test_the_library_imports_and_measures_memory_without_the_posix_resource_module",
               "test_the_install_line_of_the_book_resolves_the_distribution_name",
               "test_a_misspelt_papermill_parameter_stops_the_run", "test_a_sweep_survives_a_lost_worker"}


def pytest_collection_modifyitems(config, items):
    """Mark as ``slow`` every test that starts a kernel, a Dask cluster, a browser or a fresh interpreter (``make
    unit`` leaves them out; ``make test`` runs them)."""
    for item in items:
        if _SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.originalname in _SLOW_TESTS \
                or "browser" in item.name or "chromium" in item.name:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def real_image_pngs(tmp_path_factory):
    """Real images that ship offline with matplotlib (pinned): its 256 × 256 MRI slice (``s1045.ima.gz``, raw
    little-endian 16-bit) and its photograph of Grace Hopper (in grey), written as 8-bit PNGs as a user would supply
    them; ``{"mri": path, "grace_hopper": path}``."""
    import numpy as np
    from matplotlib import cbook
    from PIL import Image

    out = tmp_path_factory.mktemp("real_images")
    with cbook.get_sample_data("s1045.ima.gz") as f:
        mri = np.frombuffer(f.read(), dtype="<u2").reshape(256, 256).astype(np.float64)
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        grace = np.asarray(Image.open(f).convert("L"))
    paths = {}
    for name, img in (("mri", (255 * mri / mri.max()).astype(np.uint8)), ("grace_hopper", grace)):
        Image.fromarray(img).save(out / f"{name}.png")
        paths[name] = os.fspath(out / f"{name}.png")
    return paths
