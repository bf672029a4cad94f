"""The results schema (imreg_lib.paper.results): every record built from small runs through the same code as the
notebooks (the fixtures ``pair12``, ``multiscale``, ``superres`` and ``ad_costs`` of conftest.py), its JSON layout,
the round trip to_json / from_json, and the report's claims from a record and from its JSON."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

import imreg_lib as il
from imreg_lib import paper
from imreg_lib.paper import report
from imreg_lib.paper._schema import write_json
from imreg_lib.paper.claims import claims_summary
from imreg_lib.paper.results import (
    PredictionCurve,
    RegistrationRun,
    TaylorCurve,
    VarProSummary,
)


def _round_trip(record):
    """The record survives to_json -> JSON text -> from_json, and so does its JSON."""
    data = record.to_json()
    text = json.dumps(data)
    back = type(record).from_json(json.loads(text))
    assert back == record
    assert back.to_json() == data and json.dumps(back.to_json()) == text
    return data


def _flat_keys(d, prefix=""):
    keys = set()
    for k, v in d.items():
        keys.add(prefix + k)
        if isinstance(v, dict):
            keys |= _flat_keys(v, prefix + k + ".")
    return keys


# ---- the records: layout and round trip -------------------------------------------------------------------------

def test_data_results(pair12):
    r = paper.key_numbers(pair12, 1e-3)
    assert r.gradient_rel_diff_ad < 1e-10 and r.hessian_rel_diff_ad < 1e-10
    assert r.taylor_order_gradient == pytest.approx(2.0, abs=0.1)
    assert r.taylor_order_hessian == pytest.approx(3.0, abs=0.1)
    assert "peak_memory_mb" not in r.to_json()  # unset until the notebook's last cell
    data = _round_trip(replace(r, peak_memory_mb=50.0))
    assert list(data) == ["source", "m", "theta", "reference_mean", "reference_max", "template_mean", "loss_identity",
                          "grad_norm_identity", "gradient_rel_diff_ad", "hessian_rel_diff_ad",
                          "taylor_order_gradient", "taylor_order_hessian", "w_true", "loss_truth", "peak_memory_mb"]
    assert data["m"] == [12, 12] and data["w_true"] == pair12.w_true.tolist()
    user = _round_trip(replace(r, w_true=None, loss_truth=None))  # the user's images: no known motion
    assert "w_true" not in user and "loss_truth" not in user


def test_multiscale_results(multiscale):
    data = _round_trip(multiscale.full)
    assert list(data) == ["data", "settings", "m", "h", "device", "thetas", "initial_loss", "w_true", "single_scale",
                          "traditional", "predictor_corrector", "prediction", "peak_memory_mb", "fig2_timing"]
    assert data["settings"]["n_scales"] == 5 and data["thetas"] == list(multiscale.full.settings.thetas)
    assert data["settings"]["timing_repeats"] == 3
    timing = data["fig2_timing"]  # the page's runs first, then two more pairs
    assert list(timing) == ["repeats", "traditional_seconds", "predictor_corrector_seconds", "median_seconds",
                            "paired_ratio"] and timing["repeats"] == 3
    assert timing["traditional_seconds"][0] == multiscale.fig2.traditional.seconds
    assert timing["predictor_corrector_seconds"][0] == multiscale.fig2.predictor_corrector.seconds
    assert timing["paired_ratio"] == sorted(p / t for t, p in zip(timing["traditional_seconds"],
                                                                  timing["predictor_corrector_seconds"],
                                                                  strict=True))[1]
    pc = data["predictor_corrector"]
    assert list(pc) == ["final_loss", "w", "n_hessians", "iterations", "seconds", "history", "parameter_error"]
    assert list(pc["history"][0]) == ["theta", "start_loss", "start_grad_norm", "predicted_loss",
                                      "predicted_grad_norm", "final_loss", "final_grad_norm", "iterations",
                                      "n_hessians", "seconds"]
    run = multiscale.fig2.predictor_corrector
    assert pc["parameter_error"] == (run.w - multiscale.pair.w_true).abs().max().item()
    assert pc["n_hessians"] == run.n_hessians and len(pc["history"]) == 5
    pred = data["prediction"]
    assert list(pred) == ["thetas", "newton_method", *paper.PREDICTION_VARIANTS, "summary", "coded_below_minus_31000",
                          "runs", "other_newton_method"]
    assert pred["exact"] == PredictionCurve.from_quality(multiscale.fig3.exact).to_json()
    assert pred["exact"]["rel_loss_diff"][0] is None
    assert set(pred["runs"]) == {"exact", "gauss_newton", "gauss_newton_as_coded"}
    assert list(pred["other_newton_method"]) == ["method", "final_loss", "w", "same_minimiser"]
    coded = multiscale.fig3.gauss_newton_as_coded.rel_grad_diff[1:]
    assert pred["coded_below_minus_31000"] == sum(v < -31000 for v in coded)
    # Fig. 2's part alone (the notebook's first verdict), and a run without a known motion
    assert "prediction" not in multiscale.results.to_json()
    _round_trip(multiscale.results)
    no_truth = RegistrationRun.from_result(run)
    assert "parameter_error" not in no_truth.to_json()
    assert PredictionCurve.from_json(pred["exact"]).to_json() == pred["exact"]


def test_superresolution_results(superres):
    data = _round_trip(superres.results)
    assert list(data)[:5] == ["data", "settings", "rel_error_at_true_motion", "start", "diff_all"]
    assert data["settings"]["fractions"] == [0.5, 1.0] and data["settings"]["cg_counts"] == [2, 5]
    assert {"no_diff", "implicit", "corrections", "taylor_own", "timings", "paper"} <= set(data)
    assert {loss: set(v) for loss, v in data["start"].items()} == {"norm": {"continuation", "as_coded"},
                                                                   "squared": {"continuation", "as_coded"}}
    # numbers keyed by numbers in Python, written as strings
    r = superres.results
    assert set(r.partial) == {0.5, 1.0} and set(r.partial_continued) == {0.5} and set(r.inexact) == {2, 5}
    assert set(data["partial"]) == {"0.5", "1"} and set(data["partial_continued"]) == {"0.5"}
    assert set(data["inexact"]) == {"2", "5"}
    assert r.projections["diff_all"] == VarProSummary.from_run(superres.runs["diff_all"])
    assert set(data["corrections"]) == {"diff_all, as_coded start", "no_diff, as_coded start",
                                        "diff_all, paper's model (eq. 7)", "no_diff, paper's model (eq. 7)"}
    assert "order" not in data["taylor"]["100%"] and data["taylor_own"]["Diff All"]["order"] > 1.8
    assert data["paper"]["partial_rel_error_read"] == {"0.7": 0.37, "0.9": 0.12, "0.95": 0.117, "1": 0.105}
    assert r.paper.partial_rel_error_read[0.95] == 0.117 and r.paper.inexact_rel_error_read[50] > 0
    per_method = data["timings"]["per_method"]
    assert list(per_method) == ["diff_all", "no_diff", "implicit", "last_restarted", "inexact"]
    assert [c["label"] for c in per_method.values()] == ["Diff All (N = 30)", "No Diff (N = 30)", "Implicit",
                                                        "last 100% restarted (N = 20)", "inexact, 5 CG iterations"]
    assert set(data["memory_mb_per_iteration"]) == set(data["timings"]["runs_seconds"]) == set(superres.all_runs)
    summary = VarProSummary.from_run(superres.runs["no_diff"])
    assert summary.to_json() == data["no_diff"] and isinstance(summary.losses, tuple)
    assert summary.rel_loss == summary.losses[-1] / summary.losses[0]


def test_ad_costs_results(ad_costs):
    data = _round_trip(ad_costs.results)
    assert list(data) == ["paper", "cached", "settings", "hand_coded_vs_ad", "machine", "taylor_orders", "scaling",
                          "peak_memory_mb"]
    assert data["paper"]["affine"] == ad_costs.table["paper"]["affine"].to_json()
    assert data["paper"]["affine"]["factors"] == ad_costs.table["paper"]["affine"].factors
    assert "paper" not in data["cached"]["neural_ode"] or data["cached"]["neural_ode"]["paper"]
    assert data["settings"]["protocols"] == ["paper", "cached"]
    assert [pt["n_params"] for pt in data["scaling"]["by_params"]] == [6, 12, 20]
    assert list(data["scaling"]) == ["by_params", "by_size", "by_size_neural_ode"]
    for model, c in ad_costs.comparisons.items():
        assert max(c.rel_diff.values()) <= 1e-10
        assert ad_costs.taylor[model][0] > 1.9 and ad_costs.taylor[model][1] > 2.9
        assert paper.DerivativeComparison.from_json(c.to_json()) == c
    assert ad_costs.scaling.with_ad == ad_costs.scaling.by_params  # every model has <= 60 parameters here
    cached = _round_trip(replace(ad_costs.results, table={"cached": ad_costs.table["cached"]},
                                 settings=replace(ad_costs.results.settings, protocols=("cached",))))
    assert "paper" not in cached


def test_from_json_is_strict(multiscale):
    data = multiscale.full.to_json()
    del data["predictor_corrector"]["history"]
    with pytest.raises(KeyError, match="history"):
        paper.MultiscaleResults.from_json(data)


def test_taylor_curve_and_projection_cost():
    t = il.TaylorResult((1.0, 0.1, 0.01), ((1.0, 0.1, 0.01), (1e-2, 1e-4, 1e-6)), ((1.0, 1.0), (2.0, 2.0)))
    assert TaylorCurve.from_taylor(t).to_json() == {"h": [1.0, 0.1, 0.01], "errors": [1e-2, 1e-4, 1e-6]}
    cost = paper.ProjectionCost(2.0, 12.0, 7, 10, "Diff All (N = 10)")
    assert cost.to_json() == {"residual_ms": 2.0, "jacobian_ms": 12.0, "cg_iterations": 7, "cg_iters": 10,
                              "label": "Diff All (N = 10)", "factor": 6.0}
    assert paper.ProjectionCost.from_json(cost.to_json()) == cost


# ---- the report reads a record as it reads its JSON ------------------------------------------------------------

def test_report_claims_from_records(tmp_path, multiscale, superres, ad_costs):
    records = {"01_ad_costs": ad_costs.results, "02_multiscale": multiscale.full,
               "03_superresolution": superres.results}
    for nb, r in records.items():
        write_json(tmp_path / f"{nb}.json", r)
    assert report.load_results(tmp_path) == records  # read back through the schema, as typed records
    claims = report.build_claims(records)
    assert {c.id for c in claims} >= {"table1.affine.hessian", "fig2.registers", "fig3.gauss_newton_corrected",
                                      "sr.diff_all", "fig8.error_100", "readme.60gb"}
    assert report.fig3_claims(multiscale.results)[0].status == "not run"  # Fig. 3 not yet added
    reproduction = _round_trip(paper.ReproductionResults("synthetic", tuple(claims)))
    assert reproduction["summary"] == claims_summary(claims)
    assert reproduction["stable_status"] == {f"{c.section}: {c.claim}": c.status for c in claims if c.stable}


def test_write_json_takes_a_record(tmp_path, multiscale):
    path = write_json(tmp_path / "02_multiscale.json", multiscale.full)
    assert paper.MultiscaleResults.from_json(json.loads(path.read_text())) == multiscale.full


def test_claims_by_data(tmp_path, multiscale, superres, ad_costs):
    for nb, r in (("01_ad_costs", ad_costs.results), ("02_multiscale", multiscale.full),
                  ("03_superresolution", superres.results)):
        write_json(tmp_path / "synthetic" / f"{nb}.json", r)
    by_data = report.claims_by_data({"paper": tmp_path / "none", "synthetic": tmp_path / "synthetic"}, "synthetic")
    assert list(by_data) == ["synthetic"]  # the paper's images have no results here
    with pytest.raises(FileNotFoundError, match="01_ad_costs.json"):
        report.claims_by_data({"paper": tmp_path / "none", "synthetic": tmp_path / "synthetic"}, "paper")
    with pytest.raises(ValueError, match="data must be one of"):
        report.claims_by_data({}, "mine")


def test_a_page_says_where_it_wrote_its_results(tmp_path, capsys, monkeypatch):
    from imreg_lib.paper import notebook

    out = notebook.save_results(tmp_path / "new" / "r.json", {"a": 1})
    assert out.is_file()
    line = capsys.readouterr().out.strip()
    assert line == f"results written to {out} (created the folder {out.parent.as_posix()})"
    notebook.save_results(out, {"a": 2})  # the folder exists now: nothing about it
    assert capsys.readouterr().out.strip() == f"results written to {out}"
    # inside the repository the path is relative to it, whichever directory the page ran in
    monkeypatch.setattr(notebook, "_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path / "new")
    assert notebook.report_written("r.json") == "results written to new/r.json"
