"""05_peers runs on a user's pair (no known motion) with small settings and writes the documented results keys."""
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_peers.ipynb"
FIELDS = {"final_loss", "param_error", "seconds", "iterations", "success"}

pytest.importorskip("SimpleITK")


def test_peers_notebook_on_user_images(run_notebook, hand_pngs, tmp_path):
    reference, template = hand_pngs(24)
    tfm = tmp_path / "result.tfm"
    res = run_notebook(NOTEBOOK, m=12, n_scales=5, capture_angles=[0.0, 150.0], capture_m=12, m_3d=6,
                       device="cpu", reference_path=reference, template_path=template, transform_path=str(tfm))
    assert res["data"] == "r.png / t.png"
    methods = {"simpleitk", "simpleitk_search", "single_scale", "traditional", "predictor_corrector", "global"}
    assert set(res["peers"]) == methods
    for run in res["peers"].values():  # no known motion: scored by the loss only
        assert FIELDS <= set(run) and run["param_error"] is None and run["success"] is None
    assert res["capture"]["angles"] == [0.0, 150.0]
    assert all(len(res["capture"][k]) == 2 and FIELDS == set(res["capture"][k][0]) for k in methods)
    # the capture sweep moved the user's reference file by known maps (so its motions are scored) ...
    assert res["capture_source"] == "r.png" and res["capture"]["global"][0]["success"] is not None
    # ... and matplotlib's MRI slice too
    assert res["capture_images"]["mri"]["source"].startswith("MRI slice")
    assert len(res["capture_3d"]["rotations"]) == 3 and len(res["capture_3d"]["global"]) == 3
    # the exported transform maps the files' physical space: SimpleITK registers the template file with it
    before, after = res["export_file_mse"]
    assert after < 0.5 * before and res["export_agreement"] is None
    assert set(res["peers_3d"]) == methods - {"simpleitk_search"}
    assert res["settings"]["settings"]["shrink_factors"] == [4, 2, 1]
    assert tfm.read_text().startswith("#Insight Transform File V1.0")

