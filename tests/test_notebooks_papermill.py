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
