"""The super-resolution notebook runs under papermill with its parameters, on the default data and on a user's
image file, writes the results JSON with the keys the reproduction report relies on, and rejects bad parameters
before any work."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "notebooks" / "03_superresolution.ipynb"
SMALL = {"m": 8, "factor": 2, "n_templates": 2, "cg_iters": 30, "cg_iters_partial": 20, "taylor_cg_iters": 5,
         "gn_iters": 3, "fractions": [0.5, 1.0], "cg_counts": [2, 5], "ensemble_members": 3, "device": "cpu"}


@pytest.fixture
def run(run_notebook):
    return lambda tmp_path, **params: run_notebook(NB, **params)


def check_run(rec, n_points):
    assert 0 < rec["rel_error"] < 5
    assert 1 <= len(rec["losses"]) == len(rec["grad_norms"]) <= n_points
    assert rec["losses"][-1] <= rec["losses"][0]


def test_parameters_and_results_keys(run, tmp_path):
    res = run(tmp_path, **SMALL, lam=0.05)
    settings = res["settings"]
    assert (settings["m"], settings["factor"], settings["n_templates"], settings["lam"], settings["gn_iters"]) == (
        8, 2, 2, 0.05, 3)
    assert settings["fractions"] == [0.5, 1.0] and settings["cg_counts"] == [2, 5]
    for key in ("diff_all", "no_diff", "implicit"):
        check_run(res[key], 3)
    assert set(res["partial"]) == {"0.5", "1"} and set(res["partial_continued"]) == {"0.5"}
    for rec in (*res["partial"].values(), *res["inexact"].values()):
        check_run(rec, 3)
    assert set(res["inexact"]) == {"2", "5"}
    assert max(res["inexact"]["2"]["cg_iterations"]) <= 2
    assert {"50%", "100%", "0%", "implicit"} <= set(res["taylor"])
    for rec in res["taylor"].values():
        assert len(rec["h"]) == len(rec["errors"]) == 10
    assert res["taylor_own"]["Diff All"]["order"] > 1.8 and res["taylor_own"]["No Diff"]["order"] < 1.2
    assert all(len(v) >= 1 for v in res["memory_mb_per_iteration"].values())
    assert res["peak_memory_mb"] > 0 and res["timings"]["notebook_seconds"] > 0
    for cost in res["timings"]["per_method"].values():
        assert cost["jacobian_ms"] > 0 and cost["residual_ms"] > 0
    assert res["corrections"]  # the authors' start and the paper's model
    ens = res["ensembles"]  # round-off ensembles: member 0 is the page's run
    assert set(ens) == {"projections", "corrections", "partial", "inexact"} and set(ens["partial"]) == {"0.5", "1"}
    assert ens["projections"]["diff_all"]["rel_errors"][0] == res["diff_all"]["rel_error"]
    assert all(2 <= len(e["rel_errors"]) <= 3 for family in ens.values() for e in family.values())


def test_user_image_and_options(run, tmp_path, hand_pngs):
    reference, _ = hand_pngs(12)
    res = run(tmp_path, **{**SMALL, "gn_iters": 2, "fractions": [1.0], "cg_counts": [3]}, variant="paper",
              preregistration="as_coded", corrections=False, reference_path=reference)
    assert res["data"] == "r.png" and res["settings"]["variant"] == "paper"
    assert res["settings"]["preregistration"] == "as_coded" and res["settings"]["corrections"] is False
    assert len(res["diff_all"]["w"]) == 12 and res["corrections"] == {} and res["partial_continued"] == {}


def test_bad_parameters_stop_the_set_up_cell(run, tmp_path):
    pm = pytest.importorskip("papermill")
    with pytest.raises(pm.PapermillExecutionError, match=r"fractions must be .* in \[0, 1\]") as err:
        run(tmp_path, **{**SMALL, "fractions": [0.5, 1.5]})
    assert err.value.exec_count <= 3  # raised in the set-up cell, before any work


CHECKED = {"m": 8, "factor": 2, "n_templates": 2, "lam": 1e-2, "device": "cpu", "fractions": [0.5, 1.0],
           "cg_counts": [2, 5], "gn_iters": 3, "cg_iters": 30, "cg_iters_partial": 20, "taylor_cg_iters": 5,
           "cg_tol": 1e-3, "gtol": 1e-5, "variant": "as_coded", "preregistration": "continuation"}


@pytest.mark.parametrize("params, message", [
    ({"fractions": [0.5, 1.5]}, r"fractions must be .* in \[0, 1\]"),
    ({"cg_counts": [5, -1]}, r"cg_counts must be .* integers >= 1"),
    ({"gn_iters": 1}, "gn_iters must be"),
    ({"preregistration": "fast"}, "preregistration must be"),
])
def test_the_set_up_cell_check_names_each_parameter(params, message):
    """What the set-up cell calls (the notebook test above shows it runs before any work)."""
    from imreg_lib import paper

    paper.SuperresolutionSettings(**CHECKED)
    with pytest.raises(ValueError, match=message):
        paper.SuperresolutionSettings(**{**CHECKED, **params})


@pytest.mark.parametrize("params, message", [({"factor": 3}, "factor"), ({"lam": -1.0}, "lam must be")])
def test_the_problem_rejects_bad_sizes_and_weights(params, message):
    import imreg_lib as il

    with pytest.raises(ValueError, match=message):
        il.superresolution_problem(**{"m": 8, "factor": 2, "n_templates": 2, **params})
