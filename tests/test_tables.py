"""The page-text builders (imreg_lib.paper.tables): key numbers, the multi-scale and super-resolution tables and
phrases, the AD-costs text and the Fig. 7 table, built from the small runs of conftest.py (``pair12``,
``multiscale``, ``superres``, ``ad_costs``) as the notebooks build them."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from imreg_lib import paper
from imreg_lib.paper import report, tables


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
    assert set(work) == {"fig2_hess_pc", "fig2_hess_trad", "fig2_time_pc", "fig2_time_trad", "fig2_timing_pairs",
                         "fig2_timing_ratio", "fig2_pays", "fig2_saves"}
    assert work["fig2_timing_pairs"] == str(len(multiscale.fig2.timing))
    assert work["fig2_pays"] in ("pays off", "does not pay off", "breaks even (within 5%)")
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
    costs = {"diff_all": paper.ProjectionCost(1.0, 8.0, 30, 30), "inexact": paper.ProjectionCost(1.0, 2.0, 4, 5)}
    assert tables.cost_phrases(costs) == {"inexact_cost_name": "5-iteration", "inexact_cost_ratio": "1/4"}
    assert tables.costs_markdown(superres.costs).splitlines()[2].startswith("| Diff All (N = 30) | ")
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
