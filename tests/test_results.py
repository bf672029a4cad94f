"""The results schema (imreg_lib.paper.results): every record built from small runs through the same code as the
notebooks, its JSON layout, the round trip to_json / from_json, and the report's claims from a record and from its
JSON; the page-text builders (imreg_lib.paper.tables) and the notebooks' parameter checks."""
from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import imreg_lib as il
from imreg_lib import paper
from imreg_lib.paper import report, tables
from imreg_lib.paper.results import (
    ADCostsSettings,
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


# ---- small runs, assembled as the notebooks assemble them ------------------------------------------------------

@pytest.fixture(scope="module")
def pair12():
    return il.synthetic_hand_pair(12, device="cpu")


@pytest.fixture(scope="module")
def multiscale(pair12):
    thetas, thetas_prediction = paper.check_multiscale_parameters(
        theta_max=1e2, theta_min=1e-3, n_scales=5, n_scales_prediction=4, gtol=1e-4, gtol_single=1e-7,
        gtol_prediction=1e-6, gtol_gn=1e-5, gtol_gn_first=1e-4, newton_method="trust-exact",
        scale_space_thetas=[1.0])
    objective = il.SSDObjective(il.SplineImage(pair12.template, pair12.grid),
                                il.SplineImage(pair12.reference, pair12.grid))
    fig2 = paper.compare_methods(objective, thetas)
    results = paper.MultiscaleResults.from_runs(pair12, fig2, m=12, device="cpu", thetas=thetas)
    fig3 = paper.compare_predictors(objective, thetas_prediction, gtol_newton=1e-6)
    prediction = paper.PredictionResults.from_runs(fig3, thetas=thetas_prediction, newton_method="trust-exact")
    pc_other = il.predictor_corrector(objective, thetas_prediction, gtol=1e-6, newton_method="trust-ncg")
    other = paper.OtherSolverRun.from_runs("trust-ncg", pc_other, fig3.runs["exact"])
    full = replace(results, prediction=replace(prediction, other_newton_method=other), peak_memory_mb=100.0)
    return SimpleNamespace(objective=objective, fig2=fig2, fig3=fig3, results=results, prediction=prediction,
                           full=full, pair=pair12)


@pytest.fixture(scope="module")
def superres():
    problem = il.superresolution_problem(8, 2, 2, device="cpu")
    fractions, cg_counts = paper.check_superresolution_parameters(
        fractions=[0.5, 1.0], cg_counts=[2, 5], gn_iters=3, cg_iters=30, cg_iters_partial=20, taylor_cg_iters=5,
        cg_tol=1e-3, gtol=1e-5, variant="as_coded", preregistration="continuation")
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
        problem, m=8, factor=2, n_templates=2, lam=1e-2, variant="as_coded", device="cpu", cg_iters=30,
        cg_iters_partial=20, cg_tol=1e-3, gn_iters=3, gtol=1e-5, preregistration="continuation",
        rel_error_at_true_motion=floor, starts=starts, projections=runs, corrections=corrected, partial=partial,
        partial_continued=continued, taylor=taylor, taylor_own=taylor_own, inexact=inexact, memory_runs=all_runs,
        memory_growth=max(paper.memory_growth(r.rss_mb) for r in all_runs.values()), peak_memory_mb=200.0,
        machine=il.machine_info("cpu"), costs=costs, notebook_seconds=1.0)
    return SimpleNamespace(problem=problem, starts=starts, runs=runs, corrected=corrected, partial=partial,
                           continued=continued, inexact=inexact, costs=costs, results=results, all_runs=all_runs,
                           taylor=taylor, taylor_own=taylor_own)


@pytest.fixture(scope="module")
def ad_costs():
    pair = il.synthetic_hand_pair(8, device="cpu")
    table = paper.ad_cost_table(8, n_runs=2, warmup=0, max_seconds=0.05, device="cpu")
    comparisons, taylor = paper.derivative_checks(pair, n_runs=2, warmup=0, max_seconds=0.05)
    scaling = paper.scaling_study(pair, widths=(3,), sizes=(8,), node_sizes=(8,), n_runs=2, max_seconds=0.05,
                                  volume_m=6)
    results = paper.ADCostsResults.from_runs(table, comparisons, taylor, scaling, pair=pair, m=8, theta=1e-3,
                                             n_runs=2, time_budget_s=0.05, device="cpu",
                                             machine=il.machine_info("cpu"), peak_memory_mb=300.0)
    assert results.settings == ADCostsSettings(8, 1e-3, 2, 0.05, "cpu", pair.source, ("paper", "cached"))
    return SimpleNamespace(table=table, comparisons=comparisons, taylor=taylor, scaling=scaling, results=results)


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
    assert list(data) == ["data", "m", "h", "device", "thetas", "initial_loss", "w_true", "single_scale",
                          "traditional", "predictor_corrector", "prediction", "peak_memory_mb"]
    pc = data["predictor_corrector"]
    assert list(pc) == ["final_loss", "w", "n_hessians", "iterations", "seconds", "history", "parameter_error"]
    assert list(pc["history"][0]) == ["theta", "start_loss", "start_grad_norm", "predicted_loss",
                                      "predicted_grad_norm", "final_loss", "final_grad_norm", "iterations",
                                      "n_hessians", "seconds"]
    run = multiscale.fig2.predictor_corrector
    assert pc["parameter_error"] == (run.w - multiscale.pair.w_true).abs().max().item()
    assert pc["n_hessians"] == run.n_hessians and len(pc["history"]) == 5
    pred = data["prediction"]
    assert list(pred) == ["thetas", "newton_method", "other_newton_method", *paper.results.PREDICTION_VARIANTS,
                          "summary", "coded_below_minus_31000", "runs"]
    assert pred["exact"] == multiscale.fig3.exact.as_dict() and pred["exact"]["rel_loss_diff"][0] is None
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
    assert list(data)[:16] == ["data", "m", "factor", "n_templates", "lam", "variant", "device", "cg_iters",
                               "cg_iters_partial", "cg_tol", "gn_iters", "gtol", "preregistration",
                               "rel_error_at_true_motion", "start", "diff_all"]
    assert {"no_diff", "implicit", "corrections", "taylor_own", "timings", "paper"} <= set(data)
    assert set(data["start"]) == {"norm, continuation", "norm, as_coded", "squared, continuation",
                                  "squared, as_coded"}
    assert set(data["partial"]) == {"0.5", "1"} and set(data["partial_continued"]) == {"0.5"}
    assert set(data["inexact"]) == {"2", "5"}
    assert data["diff_all"] == paper.run_summary(superres.runs["diff_all"])
    assert set(data["corrections"]) == {"diff_all, as_coded start", "no_diff, as_coded start",
                                        "diff_all, paper's model (eq. 7)", "no_diff, paper's model (eq. 7)"}
    assert "order" not in data["taylor"]["100%"] and data["taylor_own"]["Diff All"]["order"] > 1.8
    assert data["paper"]["partial_rel_error_read"] == {"0.7": 0.37, "0.9": 0.12, "0.95": 0.117, "1": 0.105}
    assert list(data["timings"]["per_method"]) == ["Diff All (N = 30)", "No Diff (N = 30)", "Implicit",
                                                    "last 100% restarted (N = 20)", "inexact, 5 CG iterations"]
    assert set(data["memory_mb_per_iteration"]) == set(data["timings"]["runs_seconds"]) == set(superres.all_runs)
    summary = VarProSummary.from_run(superres.runs["no_diff"])
    assert summary.to_json() == data["no_diff"] and isinstance(summary.losses, tuple)


def test_ad_costs_results(ad_costs):
    data = _round_trip(ad_costs.results)
    assert list(data) == ["paper", "cached", "settings", "hand_coded_vs_ad", "machine", "peak_memory_mb",
                          "taylor_orders", "scaling"]
    assert data["paper"]["affine"] == ad_costs.table["paper"]["affine"].as_dict()
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
    cost = paper.ProjectionCost(2.0, 12.0, 7)
    assert cost.to_json() == {"residual_ms": 2.0, "jacobian_ms": 12.0, "cg_iterations": 7, "factor": 6.0}
    assert paper.ProjectionCost.from_json(cost.to_json()) == cost


# ---- the report reads a record as it reads its JSON ------------------------------------------------------------

def test_report_claims_from_records_equal_those_from_the_json(multiscale, superres, ad_costs):
    records = {"01_ad_costs": ad_costs.results, "02_multiscale": multiscale.full,
               "03_superresolution": superres.results}
    dicts = {nb: json.loads(json.dumps(r.to_json())) for nb, r in records.items()}
    claims = report.build_claims(records)
    assert claims == report.build_claims(dicts)
    assert {c.id for c in claims} >= {"table1.affine.hessian", "fig2.registers", "fig3.gauss_newton_corrected",
                                      "sr.diff_all", "fig8.error_100", "readme.60gb"}
    assert report.fig2_claims(multiscale.results) == report.fig2_claims(dicts["02_multiscale"])
    assert report.fig3_claims(multiscale.full) == report.fig3_claims(dicts["02_multiscale"])
    assert report.fig3_claims(multiscale.results)[0].status == "not run"  # Fig. 3 not yet added
    reproduction = _round_trip(paper.ReproductionResults("synthetic", tuple(claims)))
    assert reproduction["summary"] == report.claims_summary(claims)
    assert reproduction["stable_status"] == {f"{c.section}: {c.claim}": c.status for c in claims if c.stable}


def test_write_results_takes_a_record(tmp_path, multiscale):
    path = report.write_results(tmp_path / "02_multiscale.json", multiscale.full)
    assert paper.MultiscaleResults.from_json(json.loads(path.read_text())) == multiscale.full


def test_claims_by_data(tmp_path, multiscale, superres, ad_costs):
    for nb, r in (("01_ad_costs", ad_costs.results), ("02_multiscale", multiscale.full),
                  ("03_superresolution", superres.results)):
        report.write_results(tmp_path / "synthetic" / f"{nb}.json", r)
    by_data = report.claims_by_data({"paper": tmp_path / "none", "synthetic": tmp_path / "synthetic"}, "synthetic")
    assert list(by_data) == ["synthetic"]  # the paper's images have no results here
    with pytest.raises(FileNotFoundError, match="01_ad_costs.json"):
        report.claims_by_data({"paper": tmp_path / "none", "synthetic": tmp_path / "synthetic"}, "paper")
    with pytest.raises(ValueError, match="data must be one of"):
        report.claims_by_data({}, "mine")


# ---- the page text -----------------------------------------------------------------------------------------------

def test_key_numbers_text(pair12):
    r = paper.key_numbers(pair12, 1e-3)
    lines = tables.key_numbers_text(r).splitlines()
    assert len(lines) == 7 and lines[0].startswith("reference mean / max   : ")
    assert lines[4] == "w*                     : " + " ".join(f"{x:+.4f}" for x in pair12.w_true.tolist())
    assert lines[5] == "AD agreement (gradient, Hessian) < 1e-10: True, True"
    assert len(tables.key_numbers_text(replace(r, w_true=None, loss_truth=None)).splitlines()) == 5


def test_multiscale_text(multiscale):
    fig2_verdict = {c.id: c for c in report.fig2_claims(multiscale.results)}
    text = tables.fig2_summary(multiscale.fig2, multiscale.objective, multiscale.pair, fig2_verdict).splitlines()
    assert len(text) == 1 + 3 + 1 + 3 + 1 and text[-1].startswith("Fig. 2 claim: ")
    assert text[-1].endswith("(the report's rules)")  # one evaluation: the report's, no second check here
    phrases = tables.fig2_phrases(multiscale.fig2, fig2_verdict)
    assert list(phrases) == ["fig2_initial", "fig2_single", "fig2_pc", "fig2_trad", "fig2_status", "fig2_rule",
                             "fig2_rescue"]
    assert phrases["fig2_initial"] == f"{multiscale.fig2.initial_loss:.3e}"
    assert tables.fig2_work(multiscale.fig2).splitlines()[0].split() == ["method", "Newton", "iterations",
                                                                         "Hessians", "time"]
    work = tables.fig2_work_phrases(multiscale.fig2, fig2_verdict)
    assert set(work) == {"fig2_hess_pc", "fig2_hess_trad", "fig2_time_pc", "fig2_time_trad", "fig2_pays",
                         "fig2_saves"}
    assert work["fig2_pays"] in ("pays off", "does not pay off")
    assert work["fig2_saves"] == fig2_verdict["fig2.predictor_saves_hessians"].status
    verdict = {c.id: c for c in report.fig3_claims(multiscale.full)}
    summary = tables.fig3_summary(multiscale.prediction, verdict).splitlines()
    assert len(summary) == 1 + 4 + 2 and summary[-1].startswith("the paper's conclusion")
    phrases = tables.fig3_phrases(multiscale.prediction, verdict)
    assert phrases["fig3_exact_helped"] == f"{multiscale.prediction.summary['exact'].helped_loss} of 3"
    assert phrases["fig3_rule"] == verdict["fig3.gauss_newton_corrected"].rule
    assert tables.sign_and_decade(-1.2e8) == "~ -1e+08" and tables.sign_and_decade(3e-5) == "~ +1e-05"


def test_superresolution_tables(superres):
    problem = superres.problem
    assert tables.problem_summary(problem) == ("data: synthetic hand; reference 8x8, 2 templates of 4x4, 64 unknown "
                                               "pixels from 32 data, 12 motion parameters; device cpu")
    assert tables.starts_markdown(superres.starts, problem).count("\n") == 5
    run = SimpleNamespace(rel_error=0.105, losses=[40.0, 0.4], grad_norms=[500.0, 5.0], residual_norms=[3.2, 0.2],
                          lm=SimpleNamespace(accepted=[True, False, True]))
    assert tables.varpro_runs_markdown({"x": run}, {"x": 0.107}).splitlines() == [
        "| method | rel. error | paper | ‖r‖ first → last | rel. loss | rel. grad | accepted |",
        "|---|---|---|---|---|---|---|",
        "| x | 10.50 % | 10.70 % | 3.2000 → 0.2000 | 1.00e-02 | 1e-02 | 2 |"]
    projections = tables.projections_markdown(superres.runs).splitlines()
    assert projections[2].startswith("| Diff All | ") and " | 10.70 % | " in projections[2]
    assert projections[4].startswith("| Implicit | ") and projections[4].split(" | ")[2] == ""
    partial = tables.partial_markdown(superres.partial, superres.continued).splitlines()
    assert partial[0].startswith("| differentiated | rel. error | paper (read) |")
    assert [row.split(" | ")[0] for row in partial[2:]] == ["| last 50%, restarted", "| last 100%, restarted",
                                                            "| last 50%, continued"]
    assert " | 10.50 % | " in partial[3]  # read off the paper's Fig. 8 at 100 %
    assert set(tables.fig5_phrases(superres.runs, 0.1)) == {"fig5_diff_all", "fig5_no_diff", "fig5_implicit",
                                                            "fig5_floor", "fig5_r0", "fig5_ratio"}
    assert tables.costs_markdown(superres.costs).count("\n") == len(superres.costs) + 1
    costs = {"Diff All (N = 30)": paper.ProjectionCost(1.0, 8.0, 30), "inexact, 5 CG iterations":
             paper.ProjectionCost(1.0, 2.0, 5)}
    assert tables.cost_phrases(costs, 30, [2, 5]) == {"inexact_cost_name": "5-iteration", "inexact_cost_ratio": "1/4"}
    claims = report.build_claims({"03_superresolution": superres.results})
    phrases = tables.sr_verdict_phrases(claims, data=problem.source, partial_continued=superres.continued)
    assert phrases["sr_data"] == "synthetic hand" and phrases["fig8_more_than_70"] == "not run"  # no 70 % here
    assert phrases["partial_continued_errors"].startswith("50%: ")
    assert tables.sr_verdict_phrases(claims, data="", partial_continued={})["partial_continued_errors"] == "(not run)"


def test_ad_costs_text(ad_costs):
    text = tables.derivative_checks_text(ad_costs.comparisons, ad_costs.taylor).splitlines()
    assert text[0] == ("affine     ( 6 parameters): hand-coded = torch.func to a relative 1e-10: gradient True, "
                       "gauss_newton True, hessian True")
    assert text[1] == ("           Taylor test of J: first-order error decays like h^2.0, second-order like h^3.0 "
                       "(exact: h^2 and h^3)")
    assert paper.derivative_check_failures(ad_costs.comparisons, ad_costs.taylor) == []
    paper.check_derivatives(ad_costs.comparisons, ad_costs.taylor)
    # a wrong Hessian (order 2) and a hand-coded gradient that disagrees with torch.func are named
    bad = {**ad_costs.taylor, "affine": (ad_costs.taylor["affine"][0], 2.02)}
    failures = paper.derivative_check_failures(ad_costs.comparisons, bad)
    assert failures == ["affine: the Taylor error with the Hessian decays like h^2.02, not faster than h^2.5 "
                        "(exact: h^3; a wrong Hessian: h^2)"]
    comp = ad_costs.comparisons["affine"]
    wrong = replace(comp, rel_diff={**comp.rel_diff, "gradient": 3e-4})
    with pytest.raises(AssertionError, match="affine: the hand-coded gradient differs from torch.func by 3.0e-04"):
        paper.check_derivatives({"affine": wrong}, ad_costs.taylor)
    assert tables.derivative_times_markdown(ad_costs.comparisons).count("\n| neural_ode |") == 3
    pts = [paper.ScalingPoint("a", 50, (8, 8), 64, 1.0, 1.0, 30.0, 2.0, None, None),
           paper.ScalingPoint("b", 6, (8, 8), 64, 2.0, 1.0, 5.0, 3.0, None, None)]
    assert tables.factor_range(pts, "hessian_ms", "loss_ms") == "2.5× at p = 6 to 30.0× at p = 50"
    assert list(tables.scaling_phrases(ad_costs.scaling)) == ["scaling_ad_hessian", "scaling_ad_jacobian",
                                                              "scaling_hc_hessian", "scaling_hc_jacobian"]
    lines = tables.factors_against_paper(ad_costs.table, {"cpu": "Test CPU", "cores": 2, "threads": 1,
                                                          "torch": "2.13.0", "device": "cpu"}).splitlines()
    assert lines[0].startswith("* `paper`, affine: gradient ")
    assert sum(line.startswith("* ") for line in lines) == 4
    assert all("Test CPU (2 cores, 1 thread)" in line for line in lines if "`jacrev(grad)`" in line)


# ---- the notebooks' parameter checks ---------------------------------------------------------------------------

_MS = {"theta_max": 1e3, "theta_min": 1e-3, "n_scales": 3, "n_scales_prediction": 4, "gtol": 1e-4,
       "gtol_single": 1e-7, "gtol_prediction": 1e-8, "gtol_gn": 1e-5, "gtol_gn_first": 1e-4,
       "newton_method": "trust-exact", "scale_space_thetas": [1e4, 1.0]}


@pytest.mark.parametrize(("change", "match"), [({"n_scales": 1}, "n_scales"), ({"theta_min": 0.0}, "theta_min"),
                                               ({"theta_max": 1e-4}, "theta_max"), ({"gtol_gn": 0}, "gtol_gn"),
                                               ({"newton_method": "bfgs"}, "newton_method"),
                                               ({"scale_space_thetas": [1.0, -1.0]}, "scale_space_thetas")])
def test_check_multiscale_parameters(change, match):
    thetas, thetas_prediction = paper.check_multiscale_parameters(**_MS)
    assert len(thetas) == 3 and len(thetas_prediction) == 4 and thetas[-1] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match=match):
        paper.check_multiscale_parameters(**{**_MS, **change})


_SR = {"fractions": [0.9, 1], "cg_counts": [5, 25], "gn_iters": 10, "cg_iters": 500, "cg_iters_partial": 200,
       "taylor_cg_iters": 25, "cg_tol": 1e-3, "gtol": 1e-5, "variant": "as_coded", "preregistration": "as_coded"}


@pytest.mark.parametrize(("change", "match"), [({"fractions": [1.5]}, r"fractions must be .* in \[0, 1\]"),
                                               ({"cg_counts": [0]}, "cg_counts must be"),
                                               ({"gn_iters": 1}, "gn_iters must be an integer >= 2"),
                                               ({"taylor_cg_iters": 2.0}, "taylor_cg_iters"),
                                               ({"cg_tol": -1.0}, "cg_tol must be a number >= 0"),
                                               ({"gtol": True}, "gtol"), ({"variant": "x"}, "variant must be"),
                                               ({"preregistration": "fast"}, "preregistration must be")])
def test_check_superresolution_parameters(change, match):
    assert paper.check_superresolution_parameters(**_SR) == ((0.9, 1.0), (5, 25))
    with pytest.raises(ValueError, match=match):
        paper.check_superresolution_parameters(**{**_SR, **change})


def test_own_residual_and_cost_methods():
    problem = il.superresolution_problem(8, 2, 2, device="cpu")
    assert list(paper.own_residual_varpros(problem, [0.5, 1.0])) == ["Diff All", "No Diff",
                                                                    "Implicit (exact projection)"]
    assert "last 90% restarted" in paper.own_residual_varpros(problem, [0.7, 0.9, 1.0])  # the upper median
    single = paper.cost_varpros(problem, fractions=[1.0], cg_counts=[1, 10, 100])
    assert list(single) == ["Diff All (N = 500)", "No Diff (N = 500)", "Implicit", "inexact, 10 CG iterations"]
    w = problem.identity() + 0.01 * torch.ones(problem.n_params, dtype=torch.float64)
    assert paper.parameter_error(problem, w) == pytest.approx(float((w - problem.w_true).abs().max()))


# ---- the figures, widgets and players build from the same runs --------------------------------------------------

def test_figures_widgets_and_players(multiscale, superres, ad_costs, pair12):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from imreg_lib.paper import plotting

    objective, fig2, fig3 = multiscale.objective, multiscale.fig2, multiscale.fig3
    problem, theta_min = superres.problem, fig2.predictor_corrector.thetas[-1]
    figures = [plotting.plot_scaling(ad_costs.scaling, 8), plotting.plot_scale_space(pair12, [1e2, 1.0, 1e-3]),
               plotting.plot_fig2(objective, fig2, pair12.grid, theta_min), plotting.plot_predictor_work(fig2),
               plotting.plot_fig3(fig3.exact, fig3.gauss_newton, "Fig. 3"),
               plotting.plot_prediction_variants(fig3, multiscale.prediction.thetas),
               plotting.plot_fig5(superres.runs), plotting.plot_fig8(superres.partial, superres.continued, [0.5, 1.0]),
               plotting.plot_fig10(superres.inexact, [2, 5]), plotting.plot_memory(superres.all_runs),
               plotting.plot_fig7(superres.taylor), plotting.plot_own_taylor(superres.taylor_own, 5)]
    assert [len(f.axes) for f in figures[:2]] == [2, 3] and len(figures[2].axes) == 9 + 3  # three colour bars
    assert figures[2]._suptitle.get_text() == "Fig. 2: predictor-corrector (middle) vs single scale (bottom)"
    for f in figures:
        plt.close(f)
    players = [plotting.scale_space_player(objective, pair12.grid, theta_min, frames=2),
               plotting.predictor_corrector_player(objective, fig2.predictor_corrector, pair12.grid),
               plotting.lm_player(superres.runs, problem), plotting.inexact_player(superres.inexact,
                                                                                 problem.reference, problem.grid)]
    assert all("data:image/png;base64," in html for html in players)
    pytest.importorskip("ipywidgets")
    widgets = [plotting.scale_space_explorer(objective, pair12.grid, theta_min),
               plotting.affine_explorer(objective, fig2, pair12, theta_min),
               plotting.varpro_explorer(superres.runs, superres.inexact, problem, n_points=3)]
    assert [type(w).__name__ for w in widgets] == ["interactive", "VBox", "VBox"]
    plt.close("all")


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


def test_fig7_table_computes_what_the_prose_states():
    import math

    import torch

    import imreg_lib as il

    x, v = torch.tensor([0.3, -0.2], dtype=torch.float64), torch.tensor([1.0, 0.5], dtype=torch.float64)
    f = lambda w: torch.stack([torch.sin(w[0]), w[0] * w[1]])  # noqa: E731
    h = (1e2, 1e1, 1.0, 1e-2, 1e-4, 1e-6)
    exact = il.taylor_test(f, x, v, torch.stack([torch.cos(x[0]) * v[0], x[1] * v[0] + x[0] * v[1]]), h=h)
    wrong = il.taylor_test(f, x, v, torch.zeros(2, dtype=torch.float64), h=h)
    table, phrases = tables.fig7_table({"exact": exact, "zero": wrong})
    rows = table.splitlines()
    assert len(rows) == 4 and rows[2].startswith("| exact |") and rows[3].startswith("| zero |")
    slope = math.log10(wrong.errors[1][0] / wrong.errors[1][1]) / math.log10(h[0] / h[1])
    assert f"| {slope:.2f} |" in rows[3]
    assert set(phrases) == {"fig7_floor", "fig7_large_slopes"} and phrases["fig7_large_slopes"][0].isdigit()
