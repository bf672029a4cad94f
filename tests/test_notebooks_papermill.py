"""The notebooks run under papermill with their parameters and write their results JSON."""
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_papermill_parameters_on_user_images(run_notebook, hand_pngs):
    """One kernel run serves both checks: the parameters reach the notebook, and a user's files replace the synthetic
    pair (the default data run under nbval)."""
    reference, template = hand_pngs(24)
    res = run_notebook(NOTEBOOKS / "00_data.ipynb", m=16, device="cpu", reference_path=reference,
                       template_path=template)
    assert res["m"] == [16, 16]
    assert res["gradient_rel_diff_ad"] < 1e-10 and res["hessian_rel_diff_ad"] < 1e-10
    assert res["taylor_order_gradient"] > 1.9
    assert res["source"] == "r.png / t.png" and "w_true" not in res


def test_ad_costs_notebook_with_user_images(run_notebook, hand_pngs):
    """01_ad_costs with non-default parameters: the cached protocol only, few runs, the user's PNG files."""
    reference, template = hand_pngs(20)
    res = run_notebook(NOTEBOOKS / "01_ad_costs.ipynb", m=12, n_runs=3, warmup=1, protocol="cached", device="cpu",
                       time_budget_s=0.2, comparison_n_runs=2, scaling_n_runs=2, scaling_widths=[3],
                       scaling_sizes=[8, 12], scaling_node_sizes=[8], reference_path=reference,
                       template_path=template)
    assert "paper" not in res and set(res["cached"]) == {"affine", "neural_ode"}
    for model, n_params in (("affine", 6), ("neural_ode", 50)):
        rec = res["cached"][model]
        assert rec["n_params"] == n_params and rec["m"] == [12, 12] and rec["protocol"] == "cached"
        for fn in ("loss", "gradient", "hessian", "forward", "jacobian"):
            assert rec[f"{fn}_ms"] > 0 and rec[f"{fn}_std"] >= 0 and 2 <= rec[f"{fn}_n_runs"] <= 3
        assert max(res["hand_coded_vs_ad"][model]["rel_diff"].values()) < 1e-10
    assert res["settings"]["source"] == "r.png / t.png" and res["settings"]["protocols"] == ["cached"]
    assert [pt["n_params"] for pt in res["scaling"]["by_params"]] == [6, 12, 20]


def test_a_misspelt_papermill_parameter_stops_the_run(tmp_path):
    """Run as the README's papermill line does (not through the pipeline, which checks names itself): papermill
    only warns about an unknown name; the page's set-up cell stops, naming it and the allowed ones."""
    import papermill as pm
    import pytest

    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(NOTEBOOKS / "00_data.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters={"n_scale": 20, "results_path": str(tmp_path / "r.json")},
                            cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=False)
    assert "unknown parameter 'n_scale'" in str(err.value) and "parameters are m, " in str(err.value)
    assert not (tmp_path / "r.json").exists()  # stopped before any work


def test_the_unknown_parameter_check_reads_the_kernels_history():
    import pytest

    from imreg_lib.paper.notebook import reject_unknown_parameters

    own = "# Parameters (papermill overrides these)\nm = 20\nfactor: int = 2  # a comment\n"
    reject_unknown_parameters(["", own, "# Parameters\nm = 16\n", "x = 1"])  # known names pass
    reject_unknown_parameters(["", own, "x = 1"])  # nothing injected (nbval, a plain kernel)
    with pytest.raises(ValueError, match=r"unknown parameters 'n_scale', 'fctor': this notebook's parameters are "
                                         r"m, factor"):
        reject_unknown_parameters(["", own, "# Parameters\nn_scale = 20\nfctor = 3\nm = 3\n"])


def test_a_bad_theta_stops_the_data_page_in_its_set_up_cell(run_notebook):
    import papermill as pm
    import pytest

    with pytest.raises(pm.PapermillExecutionError, match="theta must be a finite number >= 0") as err:
        run_notebook(NOTEBOOKS / "00_data.ipynb", m=16, theta=-1.0, device="cpu")
    assert err.value.exec_count == 3  # parameters, injected parameters, set-up: before any figure
