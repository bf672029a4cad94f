"""The notebooks run under papermill with their parameters and write their results JSON."""
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("notebook", ["00_data"])
def test_papermill_parameters(tmp_path, notebook):
    pm = pytest.importorskip("papermill")
    out = tmp_path / "results.json"
    pm.execute_notebook(str(ROOT / "notebooks" / f"{notebook}.ipynb"), str(tmp_path / "out.ipynb"),
                        parameters={"m": 16, "device": "cpu", "results_path": str(out)},
                        cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3")
    res = json.loads(out.read_text())
    assert res["m"] == [16, 16]
    assert res["gradient_rel_diff_ad"] < 1e-10 and res["hessian_rel_diff_ad"] < 1e-10
    assert res["taylor_order_gradient"] > 1.9


def test_user_images(tmp_path):
    pm = pytest.importorskip("papermill")
    import numpy as np
    from PIL import Image

    import imreg_lib as il

    pair = il.synthetic_hand_pair(24, device="cpu")
    for name, img in (("r.png", pair.reference), ("t.png", pair.template)):
        Image.fromarray(np.clip(img.numpy().T[::-1], 0, 255).astype(np.uint8)).save(tmp_path / name)
    out = tmp_path / "res.json"
    pm.execute_notebook(str(ROOT / "notebooks" / "00_data.ipynb"), str(tmp_path / "out.ipynb"),
                        parameters={"m": 16, "device": "cpu", "results_path": str(out),
                                    "reference_path": os.fspath(tmp_path / "r.png"),
                                    "template_path": os.fspath(tmp_path / "t.png")},
                        cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3")
    res = json.loads(out.read_text())
    assert res["source"] == "r.png / t.png" and "w_true" not in res


def test_ad_costs_notebook_with_user_images(tmp_path):
    """01_ad_costs with non-default parameters: the cached protocol only, few runs, the user's PNG files."""
    pm = pytest.importorskip("papermill")
    import numpy as np
    from PIL import Image

    import imreg_lib as il

    pair = il.synthetic_hand_pair(20, device="cpu")
    for name, img in (("r.png", pair.reference), ("t.png", pair.template)):
        Image.fromarray(np.clip(img.numpy().T[::-1], 0, 255).astype(np.uint8)).save(tmp_path / name)
    out = tmp_path / "res.json"
    params = {"m": 12, "n_runs": 3, "warmup": 1, "protocol": "cached", "device": "cpu", "time_budget_s": 0.2,
              "comparison_n_runs": 2, "scaling_n_runs": 2, "scaling_widths": [3], "scaling_sizes": [8, 12],
              "scaling_node_sizes": [8], "results_path": str(out),
              "reference_path": os.fspath(tmp_path / "r.png"), "template_path": os.fspath(tmp_path / "t.png")}
    pm.execute_notebook(str(ROOT / "notebooks" / "01_ad_costs.ipynb"), str(tmp_path / "out.ipynb"),
                        parameters=params, cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3")
    res = json.loads(out.read_text())
    assert "paper" not in res and set(res["cached"]) == {"affine", "neural_ode"}
    for model, n_params in (("affine", 6), ("neural_ode", 50)):
        rec = res["cached"][model]
        assert rec["n_params"] == n_params and rec["m"] == [12, 12] and rec["protocol"] == "cached"
        for fn in ("loss", "gradient", "hessian", "forward", "jacobian"):
            assert rec[f"{fn}_ms"] > 0 and rec[f"{fn}_std"] >= 0 and 2 <= rec[f"{fn}_n_runs"] <= 3
        assert max(res["hand_coded_vs_ad"][model]["rel_diff"].values()) < 1e-10
    assert res["settings"]["source"] == "r.png / t.png" and res["settings"]["protocols"] == ["cached"]
    assert [pt["n_params"] for pt in res["scaling"]["by_params"]] == [6, 12, 20]
