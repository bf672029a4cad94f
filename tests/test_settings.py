"""The pages' settings (imreg_lib.paper.settings): validated once when made, each wrong value named with what is
allowed, and stored in the pages' records (round trip through the results JSON)."""
import json

import pytest

from imreg_lib import paper

_MS = {"theta_max": 1e3, "theta_min": 1e-3, "n_scales": 3, "n_scales_prediction": 4, "gtol": 1e-4,
       "gtol_single": 1e-7, "gtol_prediction": 1e-8, "gtol_gn": 1e-5, "gtol_gn_first": 1e-4,
       "newton_method": "trust-exact", "scale_space_thetas": [1e4, 1.0]}
_SR = {"m": 8, "factor": 2, "n_templates": 2, "lam": 1e-2, "device": "cpu", "fractions": [0.9, 1],
       "cg_counts": [5, 25], "gn_iters": 10, "cg_iters": 500, "cg_iters_partial": 200, "taylor_cg_iters": 25,
       "cg_tol": 1e-3, "gtol": 1e-5, "variant": "as_coded", "preregistration": "as_coded"}


def _round_trip(settings):
    return type(settings).from_json(json.loads(json.dumps(settings.to_json())))


@pytest.mark.parametrize(("change", "match"), [({"n_scales": 1}, "n_scales"), ({"theta_min": 0.0}, "theta_min"),
                                               ({"theta_max": 1e-4}, "theta_max"), ({"gtol_gn": 0}, "gtol_gn"),
                                               ({"newton_method": "bfgs"}, "newton_method"),
                                               ({"scale_space_thetas": [1.0, -1.0]}, "scale_space_thetas"),
                                               ({"timing_repeats": 0}, "timing_repeats"),
                                               ({"timing_repeats": 2.5}, "timing_repeats")])
def test_check_multiscale_parameters(change, match):
    settings = paper.MultiscaleSettings(**_MS)
    thetas, thetas_prediction = settings.thetas, settings.thetas_prediction
    assert len(thetas) == 3 and len(thetas_prediction) == 4 and thetas[-1] == pytest.approx(1e-3)
    assert _round_trip(settings) == settings and settings.scale_space_thetas == (1e4, 1.0)
    with pytest.raises(ValueError, match=match):
        paper.MultiscaleSettings(**{**_MS, **change})


@pytest.mark.parametrize(("change", "match"), [({"fractions": [1.5]}, r"fractions must be .* in \[0, 1\]"),
                                               ({"fractions": []}, r"fractions must be a non-empty list"),
                                               ({"cg_counts": [0]}, "cg_counts must be"),
                                               ({"gn_iters": 1}, "gn_iters must be an integer >= 2"),
                                               ({"taylor_cg_iters": 2.0}, "taylor_cg_iters"),
                                               ({"cg_tol": -1.0}, "cg_tol must be a finite number >= 0"),
                                               ({"gtol": True}, "gtol"), ({"variant": "x"}, "variant must be"),
                                               ({"preregistration": "fast"}, "preregistration must be"),
                                               ({"ensemble_members": 0}, "ensemble_members"),
                                               ({"m": 8.0}, "m must be")])
def test_check_superresolution_parameters(change, match):
    settings = paper.SuperresolutionSettings(**_SR)
    assert (settings.fractions, settings.cg_counts) == ((0.9, 1.0), (5, 25))
    assert _round_trip(settings) == settings
    with pytest.raises(ValueError, match=match):
        paper.SuperresolutionSettings(**{**_SR, **change})


def test_data_and_ad_costs_settings():
    assert paper.DataSettings(theta=0).theta == 0.0
    with pytest.raises(ValueError, match="theta must be a finite number >= 0"):
        paper.DataSettings(theta=-1.0)
    s = paper.ADCostsSettings.from_parameters(m=8, theta=1e-3, n_runs=2, time_budget_s=None, device="cpu",
                                              source="synthetic hand", protocol="both")
    assert s.protocols == ("paper", "cached") and _round_trip(s) == s
    for change, match in (({"protocol": "fast"}, "protocol must be"), ({"m": 3}, "m must be an integer >= 4"),
                          ({"n_runs": 1}, "n_runs"), ({"time_budget_s": 0.0}, "time_budget_s")):
        kw = {"m": 8, "theta": 1e-3, "n_runs": 2, "time_budget_s": None, "device": "cpu", "source": "x",
              "protocol": "cached", **change}
        with pytest.raises(ValueError, match=match):
            paper.ADCostsSettings.from_parameters(**kw)
