"""The registration benchmark's balance of the predictor: its break-even and verdicts follow from the rows."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("registration_bench", ROOT / "benchmarks" / "registration.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(saved, predictor_s=0.012, per_hessian_s=0.0015, base_s=0.3, noise=None):
    """Pairs whose predictor-corrector costs ``predictor_s`` more and ``per_hessian_s`` less per Hessian saved."""
    noise = noise or [0.0] * len(saved)
    rows = []
    for dh, eps in zip(saved, noise, strict=True):
        trad = base_s
        pc = base_s + predictor_s - per_hessian_s * dh + eps
        rows.append({"saved_hessians": dh, "n_hessians": {"traditional": 200 + dh, "predictor_corrector": 200},
                     "median_seconds": {"traditional": trad, "predictor_corrector": pc}, "ratio": pc / trad})
    return rows


def _accounting(predictor_ms, hessian_ms):
    return {"corrector_ms": {"traditional": 200 * hessian_ms}, "n_hessians": {"traditional": 200},
            "predictor_total_ms": predictor_ms, "step_ms": predictor_ms / 29}


def test_break_even_is_fitted_and_predicted(bench):
    saved = [-20, -5, 0, 2, 4, 6, 10, 20, 40, 80]
    summary = bench._balance_summary(_rows(saved), _accounting(12.0, 1.5))
    assert summary["fit"]["predictor_ms"] == pytest.approx(12.0)
    assert summary["fit"]["ms_per_hessian"] == pytest.approx(1.5)
    assert summary["break_even_hessians"]["fitted"] == pytest.approx(8.0)
    assert summary["break_even_hessians"]["in_situ"] == pytest.approx(8.0)
    # fewer Hessians on 7 pairs: slower where it saves 2, 4, 6, faster where it saves 10 or more
    assert summary["fewer_hessians"] == 7 and summary["no_slower_where_fewer"] == 4
    assert summary["above_break_even"] == {"pairs": 4, "no_slower": 4}
    assert summary["at_or_below_break_even"] == {"pairs": 3, "no_slower": 0}
    assert summary["met"] is False


def test_met_when_every_saving_pays(bench):
    summary = bench._balance_summary(_rows([-10, 0, 20, 40, 60, 80, 100, 120]), _accounting(12.0, 1.5))
    assert summary["met"] is True and summary["no_slower_where_fewer"] == summary["fewer_hessians"] == 6
    # a predictor twice as dear (break-even 16 Hessians) does not pay on a pair that saves 5
    dear = bench._balance_summary(_rows([-10, 0, 5, 40, 60, 80, 100, 120], predictor_s=0.024),
                                  _accounting(24.0, 1.5))
    assert dear["met"] is False and dear["at_or_below_break_even"] == {"pairs": 1, "no_slower": 0}


def test_no_line_through_few_pairs(bench):
    summary = bench._balance_summary(_rows([39, -151, 70, -60]), _accounting(113.0, 10.2))
    assert summary["fit"] is None and summary["break_even_hessians"]["fitted"] is None
    assert summary["break_even_hessians"]["in_situ"] == pytest.approx(113.0 / 10.2)
    assert summary["above_break_even"] == {"pairs": 2, "no_slower": 2} and summary["met"] is True


def test_corrector_stops_account_for_every_hessian_of_fig2(bench):
    import imreg_lib as il

    stops = bench._corrector_stops(il.synthetic_hand_pair(32, device="cpu"))
    for method in ("traditional", "predictor_corrector"):
        s = stops[method]
        assert s["converged_scales_hessians"] + s["unconverged_scales_hessians"] == s["n_hessians"] > 100
        assert s["at_the_cut_hessians"] <= s["unconverged_scales_hessians"]
        for u in s["unconverged"]:  # left above gtol, each with the trust-region's reason
            assert u["final_grad_norm"] >= 1e-4 and u["n_hessians"] >= 1 and u["message"]
            assert 1e-3 <= u["theta"] <= 1e3 and u["cut_distance_cells"] >= 0.0
