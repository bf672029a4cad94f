"""The multi-scale notebook runs under papermill with its parameters, on the default data and on a user's
image files, writes the results JSON with the keys the reproduction report relies on, and rejects bad
parameters before any work."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "notebooks" / "02_multiscale.ipynb"
SMALL = {"m": 16, "m_scale_space": 32, "n_scales": 6, "n_scales_prediction": 5, "device": "cpu"}


@pytest.fixture
def run(run_notebook):
    return lambda tmp_path, **params: run_notebook(NB, **params)


def test_parameters_and_results_keys_on_user_images(run, tmp_path, hand_pngs):
    """One kernel run serves both checks: non-default parameters reach every experiment, and a user's files replace
    the synthetic pair (the default data run under nbval)."""
    reference, template = hand_pngs(24)
    res = run(tmp_path, **SMALL, theta_max=1e2, gtol_prediction=1e-6, newton_method="trust-ncg",
              reference_path=reference, template_path=template)
    assert len(res["thetas"]) == 6 and res["thetas"][0] == pytest.approx(1e2)
    assert res["initial_loss"] > 0
    for key in ("single_scale", "traditional", "predictor_corrector"):
        assert res[key]["final_loss"] > 0 and len(res[key]["w"]) == 6
    assert len(res["predictor_corrector"]["history"]) == 6
    pred = res["prediction"]
    assert pred["newton_method"] == "trust-ncg" and len(pred["thetas"]) == 5
    for variant in ("exact", "gauss_newton", "gauss_newton_as_coded"):
        for metric in ("rel_loss_diff", "rel_grad_diff"):
            values = pred[variant][metric]
            assert len(values) == 5 and values[0] is None and all(isinstance(v, float) for v in values[1:])
    assert res["data"] == "r.png / t.png" and res["w_true"] is None
    assert "parameter_error" not in res["predictor_corrector"]


def test_bad_parameters_stop_the_set_up_cell(run, tmp_path):
    pm = pytest.importorskip("papermill")
    with pytest.raises(pm.PapermillExecutionError, match="n_scales") as err:
        run(tmp_path, **{**SMALL, "n_scales": 1})
    assert "compare_methods" not in str(err.value)  # rejected in the set-up cell, before any registration


DEFAULTS = {"theta_max": 1e3, "theta_min": 1e-3, "n_scales": 30, "n_scales_prediction": 40, "gtol": 1e-4,
            "gtol_single": 1e-7, "gtol_prediction": 1e-8, "gtol_gn": 1e-5, "gtol_gn_first": 1e-4,
            "newton_method": "trust-exact", "scale_space_thetas": [1e4, 1.0]}


@pytest.mark.parametrize("params, match", [({"n_scales": 1}, "n_scales"), ({"theta_min": 0.0}, "theta_min"),
                                           ({"theta_max": 1e-4}, "theta_max"), ({"gtol": -1.0}, "gtol"),
                                           ({"newton_method": "bfgs"}, "newton_method"),
                                           ({"m_scale_space": 2}, "m_scale_space"),
                                           ({"m_scale_space": 64.5}, "m_scale_space")])
def test_the_set_up_cell_check_names_each_parameter(params, match):
    """What the set-up cell calls (the notebook test above shows it runs before any work)."""
    from imreg_lib import paper

    paper.MultiscaleSettings(**DEFAULTS)
    with pytest.raises(ValueError, match=match):
        paper.MultiscaleSettings(**{**DEFAULTS, **params})
