"""The reproduction report: every claim is judged once, by a rule with a passing and a failing case, on records
built here from the results schema (:mod:`imreg_lib.paper.results`) and varied one number at a time."""

from __future__ import annotations

import json
import re
from dataclasses import fields, replace
from pathlib import Path

import pytest

from imreg_lib.paper import report, tables
from imreg_lib.paper._schema import write_json
from imreg_lib.paper.ad_costs import TABLE1_FUNCTIONS, ADCosts, ScalingStudy
from imreg_lib.paper.claims import STATUSES, Claim, claims_summary
from imreg_lib.paper.defects import DEFECTS
from imreg_lib.paper.fullscale import (
    FullScaleProblem,
    FullScaleResults,
    FullScaleRun,
    FullScaleSettings,
    FullScaleStart,
)
from imreg_lib.paper.multiscale_runs import MethodComparison
from imreg_lib.paper.peers import CaptureSweep, PeerResult, PeerScore, PeersResults
from imreg_lib.paper.recorded import PAPER_FACTORS, PAPER_SR, PAPER_TABLE1
from imreg_lib.paper.results import (
    PREDICTION_VARIANTS,
    ADCostsResults,
    DataResults,
    Fig2Timing,
    MultiscaleResults,
    PredictionCurve,
    PredictionResults,
    RegistrationRun,
    SuperresolutionResults,
    SuperresolutionTimings,
    TaylorCurve,
    VarProSummary,
)
from imreg_lib.paper.settings import ADCostsSettings, MultiscaleSettings, SuperresolutionSettings
from imreg_lib.paper.superres_runs import ProjectionCost

PAPER_NUMBERS = Path(__file__).resolve().parent / "references" / "paper_numbers.md"

# ---- records as the notebooks write them, small and built by hand ---------------------------------------------

MACHINE = {"cpu": "Test CPU", "cores": 2, "threads": 1, "torch": "2.13.0", "device": "cpu"}


def _costs(protocol: str, model: str, factors: dict[str, float], jacobian_ms: float) -> ADCosts:
    """Table 1 timings of one model whose mean-time ratios are ``factors`` (loss 1 ms; the forward map such that
    the Jacobian takes ``jacobian_ms``) and whose median ratios are all 99 (the rules read means)."""
    ms = {"loss": 1.0, "gradient": factors["gradient"], "hessian": factors["hessian"],
          "forward": jacobian_ms / factors["jacobian"], "jacobian": jacobian_ms}
    stats = {}
    for fn in TABLE1_FUNCTIONS:
        stats |= {f"{fn}_ms": ms[fn], f"{fn}_std": 0.0, f"{fn}_median_ms": 1.0 if fn in ("loss", "forward") else 99.0,
                  f"{fn}_n_runs": 10}
    return ADCosts(protocol, model, 6 if model == "affine" else 50, (32, 32), 1e-3, "cpu", **stats)


def _ad_costs(hessian: float = 30.0, gradient: float = 2.6, jacobian: float = 3.0,
              jacobian_ms: float = 1.0) -> ADCostsResults:
    table = {"paper": {m: _costs("paper", m, {"gradient": gradient, "hessian": hessian, "jacobian": jacobian},
                                 jacobian_ms) for m in PAPER_FACTORS},
             "cached": {m: _costs("cached", m, {"gradient": 1.5, "hessian": 1.7, "jacobian": 1.5}, 1.0)
                        for m in PAPER_FACTORS}}
    settings = ADCostsSettings(32, 1e-3, 100, 1.0, "cpu", "synthetic hand", ("paper", "cached"))
    return ADCostsResults(table, settings, {}, MACHINE, {}, ScalingStudy((), (), ()))


W_TRUE = (-1.0, -0.1, 0.1, -0.9, 22.5, 21.0)
MS_SETTINGS = MultiscaleSettings(1e3, 1e-3, 30, 40, 1e-4, 1e-7, 1e-8, 1e-5, 1e-4, "trust-exact")


def _moved(da: float = 0.0, db: float = 0.0) -> tuple[float, ...]:
    return tuple(w + da for w in W_TRUE[:4]) + tuple(w + db for w in W_TRUE[4:])


def _registration(errors: tuple[float, float], final_loss: float, n_hessians: int,
                  seconds: float) -> RegistrationRun:
    return RegistrationRun(final_loss, _moved(*errors), n_hessians, 100, seconds, ())


def _curve(loss: list, grad: list) -> PredictionCurve:
    n = len(loss)
    return PredictionCurve(tuple(float(k) for k in range(n)), tuple(loss), tuple(grad), *([(None,) * n] * 4))


def _prediction(gn_coded_max=-5e4, gn_loss=0.1, gn_grad=0.7, n=5) -> PredictionResults:
    coded_grad = [None] + [-1e9] * (n - 1) + [gn_coded_max]
    curves = {"exact": _curve([None] + [0.1] * n, [None] + [0.8] * n),
              "gauss_newton": _curve([None] + [gn_loss] * n, [None] + [gn_grad] * n),
              "gauss_newton_as_coded": _curve([None] + [-0.2] * n, coded_grad),
              "gauss_newton_double_step": _curve([None] + [0.1] * n, [None] + [0.5] * n)}
    assert set(curves) == set(PREDICTION_VARIANTS)
    below = sum(v < -31000 for v in coded_grad[1:])  # stored by the page (PredictionResults.from_runs)
    return PredictionResults(tuple(float(k) for k in range(n + 1)), "trust-exact", curves, {}, below, {})


def _multiscale(single=(1.5, 20.0), traditional=(0.004, 0.03), pc=(0.004, 0.03), gn_coded_max=-5e4,
                gn_loss=0.1, gn_grad=0.7, known=True) -> MultiscaleResults:
    return MultiscaleResults(
        "synthetic hand" if known else "hands-R.jpg / hands-T.jpg (rotate 180)", MS_SETTINGS, 32, (0.625, 0.78125),
        "cpu", MS_SETTINGS.thetas, 2e6, W_TRUE if known else None, _registration(single, 9.0e5, 105, 0.5),
        _registration(traditional, 1.0e5, 208, 0.9), _registration(pc, 1.0e5, 195, 1.0),
        _prediction(gn_coded_max, gn_loss, gn_grad))


def _run(rel_error: float, last_loss: float = 0.1, last_grad: float = 1.0, r0: float = 3.2) -> VarProSummary:
    return VarProSummary(rel_error, (40.0, last_loss), (500.0, last_grad), (r0, 0.2), (True, True), (500, 500),
                         (400.0, 400.0), 1.0, 0.1, 0.5, 2, 1, "stopped", ())


H = (1e5, 599.0, 3.6, 0.0215, 1.3e-4, 7.7e-7, 4.6e-9, 2.8e-11, 1.7e-13, 1e-15)


def _taylor(at_mid: float, at_large: float) -> TaylorCurve:
    """A Taylor curve: ``at_large`` at h = 1e5, ``at_mid`` at h = 0.0215 and 3.6, then a 2e-2 noise floor."""
    return TaylorCurve(H, (at_large, at_large / 100, at_mid * 100, at_mid, 0.02, 0.03, 0.037, 0.035, 0.019, 0.018))


SR_SETTINGS = SuperresolutionSettings(20, 2, 4, 1e-2, "as_coded", "cpu", 500, 200, 1e-3, 10, 1e-5, "continuation",
                                      fractions=(0.7, 0.9, 0.95, 1.0), cg_counts=(1, 10, 50, 100))


def _superres(diff_all=0.11, authors=0.11, partial=(0.5, 0.12, 0.11, 0.105), taylor_mid=(225.0, 37.0, 4.5, 4.3, 4.1),
              taylor_large=(1e9, 1.8e8, 2.8e7, 2.7e7, 2.6e7), inexact_grad_100=0.5,
              peak=500.0) -> SuperresolutionResults:
    labels = ("70%", "0%", "90%", "95%", "100%")
    p70, p90, p95, p100 = partial
    return SuperresolutionResults(
        "synthetic hand", SR_SETTINGS, 0.1, {},
        projections={"diff_all": _run(diff_all, last_loss=0.08), "no_diff": _run(0.26, last_loss=9.0)},
        corrections={"diff_all, as_coded start": _run(authors, r0=3.13)},
        partial={0.7: _run(p70, last_loss=39.0, last_grad=400.0), 0.9: _run(p90, last_loss=0.3, last_grad=3.0),
                 0.95: _run(p95, last_loss=0.2, last_grad=2.0), 1.0: _run(p100, last_loss=0.1, last_grad=1.0)},
        partial_continued={},
        taylor={k: _taylor(m, big) for k, m, big in zip(labels, taylor_mid, taylor_large, strict=True)},
        taylor_own={},
        inexact={n: _run(e, last_loss=ll, last_grad=g) for n, e, ll, g in (
            (1, 0.4, 36, 400.0), (10, 0.12, 6, 40.0), (50, 0.11, 0.1, 1.0), (100, 0.105, 0.09, inexact_grad_100))},
        memory_mb_per_iteration={}, memory_growth_after_second=0.001, peak_memory_mb=peak, machine=MACHINE,
        timings=SuperresolutionTimings({"diff_all": ProjectionCost(10.0, 80.0, 500, 500, "Diff All (N = 500)")}, {},
                                       60.0))


def _with_run(sr: SuperresolutionResults, family: str, key, **changes) -> SuperresolutionResults:
    """``sr`` with one run of ``family`` (``projections``, ``partial``, ``inexact``, ...) changed."""
    runs = getattr(sr, family)
    return replace(sr, **{family: {**runs, key: replace(runs[key], **changes)}})


def _data(peak: float | None = 300.0) -> DataResults:
    return DataResults("synthetic hand", (32, 32), 1e-3, 34.6, 181.4, 36.2, 2e6, 5e6, 2e-16, 8e-16, 2.0, 3.0,
                       W_TRUE, 1.3e4, peak)


def _by_id(claims) -> dict[str, Claim]:
    ids = [c.id for c in claims]
    assert len(ids) == len(set(ids)), ids
    return {c.id: c for c in claims}


def _status(results: dict, cid: str) -> str:
    return _by_id(report.build_claims(results))[cid].status


def _all(**kw) -> dict:
    return {"01_ad_costs": _ad_costs(), "02_multiscale": _multiscale(**kw), "03_superresolution": _superres()}


# ---- loading and the claim record ---------------------------------------------------------------------------------

def test_load_results_names_every_missing_file_before_reading(tmp_path):
    records = _all()
    write_json(tmp_path / "01_ad_costs.json", records["01_ad_costs"])
    with pytest.raises(FileNotFoundError, match="02_multiscale.json, 03_superresolution.json"):
        report.load_results(tmp_path)
    for nb in report.NOTEBOOKS[1:]:
        write_json(tmp_path / f"{nb}.json", records[nb])
    loaded = report.load_results(tmp_path)
    assert loaded == records  # typed records, read back through the schema
    assert loaded["03_superresolution"].partial[0.7].rel_error == 0.5  # numbers keyed by numbers
    assert "00_data" not in report.load_results(tmp_path)
    write_json(tmp_path / "00_data.json", _data())
    assert report.load_results(tmp_path)["00_data"] == _data()  # read where it exists (its peak memory)
    # a field the record needs is missing: an error naming it, never a claim quietly "not run"
    broken = records["03_superresolution"].to_json()
    del broken["memory_growth_after_second"]
    (tmp_path / "03_superresolution.json").write_text(json.dumps(broken))
    with pytest.raises(KeyError, match="memory_growth_after_second"):
        report.load_results(tmp_path)


def test_claim_rejects_an_unknown_status():
    with pytest.raises(ValueError, match="status must be one of"):
        Claim("x", "Fig 1", "x", "1", "1", "fine", "rule")


# ---- each rule: a passing and a failing case ------------------------------------------------------------------

def test_table1_authors_protocol_uses_means_and_cached_rows_are_beyond_the_paper():
    claims = _by_id(report.build_claims({"01_ad_costs": _ad_costs(hessian=30.0, gradient=2.6, jacobian=3.0)}))
    assert claims["table1.affine.gradient"].status == "reproduced"  # 2.6 against 2.5 (means; medians are 99)
    hess = claims["table1.affine.hessian"]
    assert hess.status == "differs" and "5.3× the paper's" in hess.explanation and "Test CPU" in hess.explanation
    assert claims["table1.affine.jacobian"].status == "improved"  # 3.0 against 11, and 1 ms against 11.59 ms
    # the same factor from a slower function (our Jacobian 20 ms against the paper's 11.59 ms): not improved
    slow = _by_id(report.build_claims({"01_ad_costs": _ad_costs(jacobian=3.0, jacobian_ms=20.0)}))
    assert slow["table1.affine.jacobian"].status == "reproduced"
    assert "not cheaper (20 ms against the paper's 11.6 ms" in slow["table1.affine.jacobian"].explanation
    cached = claims["table1.neural_ode.hessian.cached"]
    assert cached.status == "beyond the paper" and cached.ours == "1.7×"
    assert report.factor_status(2.5 * 1.49, 2.5) == "reproduced" and report.factor_status(2.5 * 1.51, 2.5) == "differs"
    assert report.factor_status(2.5 / 1.51, 2.5) == "improved"
    # a protocol the page's settings left out: the authors' rows are "not run", the cached rows absent
    ad = _ad_costs()
    cached_only = replace(ad, table={"cached": ad.table["cached"]},
                          settings=replace(ad.settings, protocols=("cached",)))
    claims = _by_id(report.build_claims({"01_ad_costs": cached_only}))
    assert claims["table1.affine.gradient"].status == "not run" and "table1.affine.gradient.cached" in claims


def test_fig2_judges_matrix_and_translation_separately():
    ok = _by_id(report.build_claims({"02_multiscale": _multiscale()}))
    assert ok["fig2.registers"].status == "reproduced"
    assert ok["conclusions.traditional_fails"].status == "differs"  # the traditional method registers too
    # matrix entries off by 0.02 (2 % of entries of order 1) fail, although ||w - w*||_inf = 0.02 < 1 % of ||w*||
    assert _status({"02_multiscale": _multiscale(pc=(0.02, 0.0))}, "fig2.registers") == "differs"
    # a translation off by 0.1 cell (h = 0.625) fails
    assert _status({"02_multiscale": _multiscale(pc=(0.0, 0.07))}, "fig2.registers") == "differs"
    assert _status({"02_multiscale": _multiscale(single=(0.001, 0.001))}, "fig2.registers") == "differs"
    assert _status({"02_multiscale": _multiscale(traditional=(1.0, 5.0))}, "conclusions.traditional_fails") == \
        "reproduced"


def _final_loss(ms: MultiscaleResults, run: str, loss: float) -> MultiscaleResults:
    return replace(ms, **{run: replace(getattr(ms, run), final_loss=loss)})


def test_fig2_without_known_motion_compares_final_losses():
    ms = _multiscale(known=False)
    claims = _by_id(report.build_claims({"02_multiscale": ms}))
    assert claims["fig2.registers"].status == "reproduced" and "no known motion" in claims["fig2.registers"].rule
    assert claims["conclusions.traditional_fails"].status == "differs"
    ms = _final_loss(ms, "single_scale", 1.5e5)  # not twice the predictor-corrector's
    assert _status({"02_multiscale": ms}, "fig2.registers") == "differs"
    assert _status({"02_multiscale": _final_loss(ms, "traditional", 3e5)}, "conclusions.traditional_fails") == \
        "reproduced"
    # a loss a hair above (or below) the predictor-corrector's is the same minimum, not a failure
    f_pc = ms.predictor_corrector.final_loss
    for f_t in (f_pc * (1 + 1e-5), f_pc * (1 - 1e-5), 1.9 * f_pc):
        assert _status({"02_multiscale": _final_loss(ms, "traditional", f_t)}, "conclusions.traditional_fails") == \
            "differs"
    assert _status({"02_multiscale": _final_loss(ms, "traditional", 2.1 * f_pc)}, "conclusions.traditional_fails") \
        == "reproduced"


def test_fig3_rules():
    ok = _by_id(report.build_claims({"02_multiscale": _multiscale()}))
    assert ok["fig3.exact_helps"].status == "reproduced"
    assert ok["fig3.coded_below_31000"].status == "reproduced"
    assert ok["fig3.coded_loss_increases"].status == "reproduced"
    gn = ok["fig3.gauss_newton_corrected"]
    assert gn.status == "differs" and "trust-exact" in gn.explanation  # GN helps as much: the conclusion fails
    coded = _by_id(report.build_claims({"02_multiscale": _multiscale(gn_coded_max=-964.0)}))["fig3.coded_below_31000"]
    assert coded.status == "differs" and coded.ours.startswith("4 of 5 below")
    # the conclusion holds when the consistent GN prediction does not help
    assert _status({"02_multiscale": _multiscale(gn_grad=-0.1)}, "fig3.gauss_newton_corrected") == "reproduced"
    assert _status({"02_multiscale": _multiscale(gn_loss=-0.1)}, "fig3.gauss_newton_corrected") == "reproduced"
    # the notebook's evaluation is the report's
    assert report.fig3_claims(_multiscale()) == [c for c in report.build_claims({"02_multiscale": _multiscale()})
                                                 if c.id.startswith("fig3.")]
    # Fig. 3 not yet added to the record: "not run"
    assert report.fig3_claims(replace(_multiscale(), prediction=None))[0].status == "not run"


def test_superresolution_error_rules_are_two_sided_and_disclose_the_start():
    claims = _by_id(report.build_claims({"03_superresolution": _superres()}))
    da = claims["sr.diff_all"]
    assert da.status == "reproduced" and da.ours == "11.00 %" and "continuation" in da.explanation
    assert claims["sr.diff_all_authors_start"].status == "reproduced" and "3.13" in claims[
        "sr.diff_all_authors_start"].ours
    assert claims["sr.ratio"].status == "reproduced"
    worse = _by_id(report.build_claims({"03_superresolution": _superres(diff_all=0.2, authors=1.02)}))
    assert worse["sr.diff_all"].status == "differs" and "1.87× the paper's" in worse["sr.diff_all"].explanation
    assert "synthetic hand" in worse["sr.diff_all"].explanation
    assert worse["sr.diff_all_authors_start"].status == "differs"
    assert _status({"03_superresolution": _superres(diff_all=0.107 * 0.79)}, "sr.diff_all") == "differs"  # better
    # the corrections switched off: the authors' start was not run
    off = replace(_superres(), corrections={}, settings=replace(SR_SETTINGS, corrections=False))
    assert _status({"03_superresolution": off}, "sr.diff_all_authors_start") == "not run"


def test_fig7_is_judged_where_accuracy_shows():
    ok = _by_id(report.build_claims({"03_superresolution": _superres()}))
    for cid in ("fig7.70_worse_than_0", "fig7.100_beats_90_95"):
        assert ok[cid].status == "reproduced" and "h = 0.021" in ok[cid].ours, ok[cid]
    # ordered right at h = 1e5 but wrong where accuracy shows: differs
    wrong = _superres(taylor_mid=(20.0, 37.0, 4.0, 4.3, 4.1), taylor_large=(1e9, 1.8e8, 2.8e7, 2.7e7, 2.6e7))
    claims = _by_id(report.build_claims({"03_superresolution": wrong}))
    assert claims["fig7.70_worse_than_0"].status == "differs"
    assert claims["fig7.100_beats_90_95"].status == "differs"
    # everything on the floor but the largest step: cannot be judged, so it differs
    sr = _superres()
    flat = replace(sr, taylor={k: replace(c, errors=(1e7,) + (0.02,) * 9) for k, c in sr.taylor.items()})
    assert _status({"03_superresolution": flat}, "fig7.100_beats_90_95") == "differs"
    assert report.taylor_accuracy_step({"a": [1e7, 5.0, 0.02, 0.03]}, [1.0, 0.1, 0.01, 0.001]) == 1


def test_partial_differentiation_rules():
    ok = _by_id(report.build_claims({"03_superresolution": _superres()}))
    assert ok["fig8.more_than_70"].status == "reproduced"
    assert ok["fig8.100_best"].status == "reproduced"
    # two-sided: 90 % far *better* than 100 % is also a difference
    assert _status({"03_superresolution": _superres(partial=(0.5, 0.08, 0.105, 0.105))}, "fig8.more_than_70") == \
        "differs"
    assert _status({"03_superresolution": _superres(partial=(0.2, 0.12, 0.11, 0.105))}, "fig8.more_than_70") == \
        "differs"  # 70 % not twice the 100 % error
    best = _by_id(report.build_claims({"03_superresolution": _superres(partial=(0.5, 0.12, 0.10, 0.105))}))
    assert best["fig8.100_best"].status == "differs" and "lowest error at 95 %" in best["fig8.100_best"].ours
    # a fraction the quick preview did not run: its row "not run", the comparisons across fractions absent
    sr = _superres()
    preview = replace(sr, partial={p: r for p, r in sr.partial.items() if p != 0.9})
    claims = _by_id(report.build_claims({"03_superresolution": preview}))
    assert claims["fig8.error_90"].status == "not run" and "fig8.more_than_70" not in claims


def test_inexact_rules_judge_loss_and_gradient():
    ok = _by_id(report.build_claims({"03_superresolution": _superres()}))
    assert ok["fig10.diminishing"].status == "reproduced"
    assert ok["fig10.50_100_best"].status == "reproduced"
    assert ok["fig10.error_5"].status == "not run"  # a count this run did not include
    # the two lowest losses at 50 and 100, but the gradient norm of 100 above that of 10: differs
    assert _status({"03_superresolution": _superres(inexact_grad_100=50.0)}, "fig10.50_100_best") == "differs"
    worse = _with_run(_superres(), "inexact", 10, rel_error=0.13)  # more than 20 % above the 100-iteration error
    assert _status({"03_superresolution": worse}, "fig10.diminishing") == "differs"
    better = _with_run(_superres(), "inexact", 10, rel_error=0.08)  # more than 20 % below: also not "close"
    assert _status({"03_superresolution": better}, "fig10.diminishing") == "differs"


def test_memory_claim_compares_every_notebook_and_can_fail():
    ms = replace(_multiscale(), peak_memory_mb=700.0)
    results = {"00_data": _data(300.0), "02_multiscale": ms, "03_superresolution": _superres(peak=500.0)}
    claim = _by_id(report.build_claims(results))["readme.60gb"]
    # the sizes differ (m = 20 here, m = 128 for the authors' figure): beside the paper, never "improved"
    assert claim.status == "beyond the paper" and "02_multiscale" in claim.ours and "m = 128" in claim.explanation
    assert "m = 20" in claim.ours and "m = 128" in claim.paper
    results["02_multiscale"] = replace(ms, peak_memory_mb=61 * 1024.0)
    assert _by_id(report.build_claims(results))["readme.60gb"].status == "differs"
    results["02_multiscale"] = replace(ms, peak_memory_mb=None)  # the page has not recorded its peak
    assert _by_id(report.build_claims(results))["readme.60gb"].status == "not run"
    assert _status({"03_superresolution": _superres()}, "sr.memory_growth") == "improved"


# ---- tables, JSON and the computed reading ---------------------------------------------------------------------

def test_every_claim_has_an_id_a_status_and_a_rule_and_the_tables_render():
    claims = report.build_claims(_all())
    assert all(c.status in STATUSES and c.rule and c.id for c in claims)
    assert sum(claims_summary(claims).values()) == len(claims)
    table = tables.markdown_table(claims)
    assert table.count("\n") == len(claims) + 1
    assert all(line.count(" | ") == 5 for line in table.splitlines()[2:])  # pipes inside cells are escaped
    assert json.loads(json.dumps([c.to_json() for c in claims]))[0]["section"] == "Table 1"
    assert Claim.from_json(claims[0].to_json()) == claims[0]
    defects = tables.defects_table()
    assert defects.count("\n") == len(DEFECTS) + 1 and len(DEFECTS) == 20


def test_two_data_sets_side_by_side_each_with_its_own_status(tmp_path):
    synthetic = report.build_claims(_all())
    paper = report.build_claims(_all(known=False, gn_grad=-0.1))
    by_data = {"paper": paper, "synthetic": synthetic}
    table = tables.comparison_table(by_data)
    row = next(line for line in table.splitlines() if "the predictor needs the exact Hessian" in line)
    assert row.count("✓ reproduced") == 1 and row.count("✗ differs") == 1  # paper's images: holds; synthetic: not
    assert "the paper's images" in table.splitlines()[0] and "the synthetic hand" in table.splitlines()[0]
    rules = tables.rules_table(by_data)
    assert rules.count("\n") == table.count("\n")
    records = report.report_records(by_data)
    assert len(records) == len(synthetic) + len(paper)
    assert {"id", "claim", "paper", "ours", "status", "rule", "data", "data_set"} <= set(records[0])
    path = write_json(tmp_path / "sub" / "report.json", {"claims": records})
    assert json.loads(path.read_text())["claims"][0]["data_set"] == "paper"
    assert not [p for p in path.parent.iterdir() if p.name != "report.json"]  # no temporary file left


def test_reading_is_computed_from_the_statuses():
    claims = report.build_claims(_all(gn_coded_max=-964.0))
    text = report.reading([c for c in claims if c.stable], "the synthetic hand")
    counts = claims_summary([c for c in claims if c.stable])
    assert f"{counts['reproduced']} reproduced" in text and f"{counts['differs']} differs" in text
    assert "Differing, by section: §5 Conclusions (1), Fig 3 (2)," in text  # sections of the differing claims


def test_write_json_leaves_the_old_file_when_writing_fails(tmp_path):
    path = write_json(tmp_path / "r.json", {"a": 1})
    with pytest.raises(TypeError):
        write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["r.json"]


# ---- the paper's recorded numbers, transcribed independently -------------------------------------------------

# Typed from the paper (Table 1; §4.3 and Figs 8, 10) and the authors' recorded runs, separately from the library:
# a typo in either shows here.
TABLE1 = {"affine": {"loss": (2.171, 0.259), "gradient": (5.422, 0.409), "hessian": (12.44, 1.798),
                     "forward": (1.054, 0.076), "jacobian": (11.59, 1.518)},
          "neural_ode": {"loss": (5.012, 2.168), "gradient": (13.65, 1.018), "hessian": (120.0, 8.737),
                         "forward": (3.204, 0.149), "jacobian": (54.31, 3.240)}}
FACTORS = {"affine": {"gradient": 2.5, "hessian": 5.7, "jacobian": 11.0},
           "neural_ode": {"gradient": 2.7, "hessian": 24.0, "jacobian": 17.0}}
SR = {"diff_all": 0.1070, "no_diff": 0.2561, "partial": {0.7: 0.37, 0.9: 0.12, 0.95: 0.117, 1.0: 0.105},
      "inexact": {1: 0.23, 5: 0.124, 10: 0.115, 25: 0.110, 50: 0.111, 100: 0.103},
      "inexact_loss": {1: 0.95, 5: 0.45, 10: 0.15, 25: 1.3e-2, 50: 2.0e-3, 100: 2.6e-3},
      "r_diff_all": [3.1410, 0.69426, 0.43870, 0.29379, 0.21883, 0.18505, 0.16783, 0.16350, 0.16350, 0.16350],
      "r_no_diff": [3.1410, 2.8485, 2.5925, 2.3706, 2.1798, 2.0169, 1.8784, 1.7611, 1.6618, 1.5775]}


def test_the_paper_numbers_in_the_library_match_an_independent_transcription():
    assert PAPER_TABLE1 == TABLE1
    assert PAPER_FACTORS == FACTORS
    assert PAPER_SR["diff_all"]["rel_error"] == SR["diff_all"] and PAPER_SR["no_diff"]["rel_error"] == SR["no_diff"]
    assert PAPER_SR["diff_all"]["residual_norms"] == SR["r_diff_all"]
    assert PAPER_SR["no_diff"]["residual_norms"] == SR["r_no_diff"]
    assert {p: v["rel_error_read"] for p, v in PAPER_SR["partial"].items()} == SR["partial"]
    assert {n: v["rel_error_read"] for n, v in PAPER_SR["inexact"].items()} == SR["inexact"]
    assert {n: v["rel_loss_read"] for n, v in PAPER_SR["inexact"].items()} == SR["inexact_loss"]


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _items(text: str, title: str) -> dict[str, str]:
    return dict(line[2:].split(": ", 1) for line in _section(text, title).splitlines() if line.startswith("- "))


def test_the_transcription_matches_the_committed_paper_numbers():
    """A third copy, in the repository (``tests/references/paper_numbers.md``), so that this always runs."""
    text = PAPER_NUMBERS.read_text()
    for model, col in (("affine", 0), ("neural_ode", 1)):
        for fn, label in (("loss", "Loss"), ("gradient", "Gradient"), ("hessian", "Hessian"),
                          ("forward", "Forward"), ("jacobian", "Jacobian")):
            row = re.search(rf"^\| {label} \| (.+) \|$", text, re.M).group(1).split(" | ")
            mean, std = (float(x) for x in row[2 * col].split(" ± "))
            assert (mean, std) == TABLE1[model][fn], (model, fn)
            if fn not in ("loss", "forward"):
                assert float(row[2 * col + 1].rstrip("×")) == FACTORS[model][fn]
    figs56 = _items(text, "Figs 5-6")
    assert float(figs56["Diff All"]) == SR["diff_all"] and float(figs56["No Diff"]) == SR["no_diff"]
    assert {float(k): float(v) for k, v in _items(text, "Fig 8").items()} == SR["partial"]
    assert {int(k): float(v) for k, v in _items(text, "Fig 10").items()} == SR["inexact"]
    runs = _items(text, "The authors' recorded")
    for name, key in (("Diff All", "r_diff_all"), ("No Diff", "r_no_diff")):
        assert [float(x) for x in runs[name].split(", ")] == SR[key], name


def _curve_changed(ms: MultiscaleResults, variant: str, **changes) -> MultiscaleResults:
    pred = ms.prediction
    curves = {**pred.curves, variant: replace(pred.curves[variant], **changes)}
    return replace(ms, prediction=replace(pred, curves=curves))


@pytest.mark.parametrize(("cid", "variant", "metric", "value", "passing", "failing"), [
    ("fig3.exact_helps", "exact", "rel_grad_diff", (None,) + (-0.1,) * 5, "reproduced", "differs"),
    ("fig3.coded_loss_increases", "gauss_newton_as_coded", "rel_loss_diff", (None,) + (0.2,) * 5,
     "reproduced", "differs"),
])
def test_fig3_rules_fail(cid, variant, metric, value, passing, failing):
    ms = _multiscale()
    assert _status({"02_multiscale": ms}, cid) == passing
    assert _status({"02_multiscale": _curve_changed(ms, variant, **{metric: value})}, cid) == failing


def test_remaining_superresolution_rules_fail():
    sr = _superres()
    assert _status({"03_superresolution": sr}, "fig7.floor") == "reproduced"
    low = replace(sr, taylor={k: replace(c, errors=c.errors[:-1] + (1e-5,)) for k, c in sr.taylor.items()})
    assert _status({"03_superresolution": low}, "fig7.floor") == "differs"
    sr = _with_run(_superres(), "projections", "no_diff", rel_error=0.1)  # No Diff better than Diff All
    assert _status({"03_superresolution": sr}, "sr.ratio") == "differs"
    for factor, status in ((8.0, "reproduced"), (12.0, "differs"), (4.0, "improved")):
        cost = ProjectionCost(10.0, 10.0 * factor, 500, 500, "Diff All (N = 500)")
        sr = replace(sr, timings=replace(sr.timings, per_method={"diff_all": cost}))
        assert _status({"03_superresolution": sr}, "sr.jacobian_cost") == status
    sr = replace(sr, memory_growth_after_second=0.2,  # still growing at the end
                 memory_mb_per_iteration={"Diff All": (400.0, 410.0, 430.0, 450.0, 470.0)})
    assert _status({"03_superresolution": sr}, "sr.memory_growth") == "reproduced"
    sr = replace(sr, memory_mb_per_iteration={"Diff All": (400.0, 410.0, 480.0, 490.0, 490.0, 490.0)})  # then level
    assert _status({"03_superresolution": sr}, "sr.memory_growth") == "differs"
    sr = replace(sr, memory_growth_after_second=0.01)
    assert _status({"03_superresolution": sr}, "sr.memory_growth") == "improved"
    assert report.error_status(0.107 * 1.19, 0.107) == "reproduced"
    assert report.error_status(0.107 * 1.21, 0.107) == "differs" == report.error_status(0.107 * 0.79, 0.107)
    sr = _with_run(_superres(), "partial", 0.9, rel_error=0.2)  # more than 20 % off the value read off Fig 8
    assert _status({"03_superresolution": sr}, "fig8.error_90") == "differs"
    assert _status({"03_superresolution": _superres()}, "fig8.error_90") == "reproduced"


def _score(success, error=0.1) -> PeerScore:
    return PeerScore(2.0, error if success is not None else None, 0.5, 12, success)


def _peer(success, error=0.1) -> PeerResult:
    s = _score(success, error)
    return PeerResult(s.final_loss, s.param_error, s.seconds, s.iterations, s.success, (1.0, 0.0, 0.0, 1.0, 0.0, 0.0),
                      "converged")


def _peers() -> PeersResults:
    return PeersResults(
        peers={"simpleitk": _peer(False, 50.0), "predictor_corrector": _peer(True)}, export_agreement=None,
        export_file_mse=None, capture=CaptureSweep((0.0, 90.0), {"simpleitk": (_score(True), _score(False)),
                                          "predictor_corrector": (_score(True), _score(True))}),
        peers_3d={"traditional": _peer(True)}, data="synthetic hand", data_3d="synthetic volume", identity_loss=4.0,
        identity_loss_3d=8.0)


def test_peers_rows_are_beyond_the_paper_and_say_what_was_recovered(tmp_path):
    pe = _peers()
    rows = {c.id: c for c in report.peers_claims(pe)}
    assert all(c.status == "beyond the paper" for c in rows.values())
    assert rows["peers.simpleitk"].ours == "not recovered"
    assert rows["peers.predictor_corrector"].ours == "recovered (motion error 0.10 cells, J / J(identity) = 0.5)"
    assert rows["capture.simpleitk"].ours == "1 of 2 angles (0°)"
    assert rows["capture.predictor_corrector"].ours == "2 of 2 angles (0°, 90°)"
    assert rows["peers_3d.traditional"].claim.endswith("registers the 3D pair")
    assert not rows["capture.seconds"].stable and rows["peers.simpleitk"].stable
    no_truth = report.peers_claims(PeersResults(peers={"simpleitk": _peer(None)}, export_agreement=None,
                                                 export_file_mse=None, identity_loss=4.0))
    assert no_truth[0].ours == "J / J(identity) = 0.5 (no known motion)"
    # the report reads 05_peers.json where it exists, never counts its rows as reproductions
    for nb, record in _all().items():
        write_json(tmp_path / f"{nb}.json", record)
    assert "05_peers" not in report.load_results(tmp_path)
    write_json(tmp_path / "05_peers.json", pe)
    results = report.load_results(tmp_path)
    assert results["05_peers"] == pe and results["05_peers"].peers_3d["traditional"].success is True
    peers_rows = [c for c in report.build_claims({"05_peers": pe}) if c.id.startswith(("peers", "capture"))]
    assert len(peers_rows) == len(rows)
    assert claims_summary(peers_rows)["beyond the paper"] == len(rows)


def _full_scale(peak_mb=900.0, growth=0.01, m=128) -> FullScaleResults:
    summary = replace(_run(0.05, last_loss=2.0), losses=(3.0, 2.0), seconds=120.0)
    run = FullScaleRun(**{f.name: getattr(summary, f.name) for f in fields(VarProSummary)},
                       memory_growth_after_second=growth, parameter_error=0.2)
    return FullScaleResults(FullScaleSettings(m=m), FullScaleProblem(m, 4, 16, m * m, m * m, 96, "synthetic hand"),
                            FullScaleStart(0.3), {"diff_all": run, "no_diff": run}, 0.03, peak_mb, 300.0, MACHINE)


def test_memory_claim_on_the_same_size_when_the_full_scale_ran():
    results = {"00_data": _data(300.0), "03_superresolution": _superres(peak=500.0), "full_scale": _full_scale()}
    claims = _by_id(report.build_claims(results))
    claim = claims["readme.60gb"]
    assert claim.status == "improved" and "same size" in claim.ours and "0.88 GB" in claim.ours
    assert claims["sr.full_scale"].status == "beyond the paper" and "Diff All 5.00 %" in claims["sr.full_scale"].ours
    # both can fail: a peak of 60 GB or more on the same size reproduces the README; memory growing per LM point
    results["full_scale"] = _full_scale(peak_mb=61 * 1024.0, growth=0.2)
    claims = _by_id(report.build_claims(results))
    assert claims["readme.60gb"].status == "reproduced" and claims["sr.full_scale"].status == "differs"
    # another size is not the authors' size: the notebooks' peaks, beside the paper
    results["full_scale"] = _full_scale(m=64)
    assert _by_id(report.build_claims(results))["readme.60gb"].status == "beyond the paper"


def test_the_report_reads_full_scale_results_only_when_asked(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(report, "load_results", lambda folder, optional=(): seen.append(tuple(optional)) or {})
    (tmp_path / "03_superresolution.json").write_text("{}")
    report.claims_by_data({"synthetic": tmp_path}, "synthetic")
    report.claims_by_data({"synthetic": tmp_path}, "synthetic", full_scale=True)
    assert "full_scale" not in seen[0] and "full_scale" in seen[1]


def _work(ms: MultiscaleResults, run: str, **changes) -> MultiscaleResults:
    return replace(ms, **{run: replace(getattr(ms, run), **changes)})


def test_the_predictors_work_against_the_traditional_method():
    ms = _work(_work(_multiscale(), "predictor_corrector", n_hessians=199, seconds=0.9), "traditional",
               n_hessians=207, seconds=0.5)
    claims = _by_id(report.build_claims({"02_multiscale": ms}))
    assert claims["fig2.predictor_saves_hessians"].status == "reproduced"
    pays = claims["fig2.predictor_pays_in_time"]
    assert pays.status == "beyond the paper" and pays.ours.startswith("does not pay off") and not pays.stable
    ms = _work(ms, "predictor_corrector", n_hessians=212)  # the predictor's saving gone: above the traditional's
    assert _status({"02_multiscale": ms}, "fig2.predictor_saves_hessians") == "differs"
    ms = _work(ms, "predictor_corrector", seconds=0.4)
    assert _by_id(report.build_claims({"02_multiscale": ms}))["fig2.predictor_pays_in_time"].ours.startswith("pays off")
    for seconds in (0.48, 0.51):  # within the spread of single runs: no verdict either way
        ms = _work(ms, "predictor_corrector", seconds=seconds)
        ours = _by_id(report.build_claims({"02_multiscale": ms}))["fig2.predictor_pays_in_time"].ours
        assert ours.startswith("breaks even (within 5%)"), ours


def _timed(ms: MultiscaleResults, pairs) -> MultiscaleResults:
    comparison = MethodComparison(ms.initial_loss, None, ms.traditional, ms.predictor_corrector, tuple(pairs))
    return replace(ms, fig2_timing=Fig2Timing.from_comparison(comparison))


def test_the_time_verdict_rests_on_the_paired_runs_not_on_one_pair():
    # one lucky pair (0.40 against 0.50 s) among pairs that break even: the median of the paired ratios decides
    ms = _work(_work(_multiscale(), "predictor_corrector", seconds=0.40), "traditional", seconds=0.50)
    pairs = [(0.50, 0.40), (0.50, 0.51), (0.52, 0.52), (0.49, 0.50), (0.50, 0.49)]
    timed = _timed(ms, pairs)
    assert timed.fig2_timing.repeats == 5 and timed.fig2_timing.paired_ratio == 1.0
    assert timed.fig2_timing.median_seconds == {"traditional": 0.50, "predictor_corrector": 0.50}
    ours = _by_id(report.build_claims({"02_multiscale": timed}))["fig2.predictor_pays_in_time"].ours
    assert ours.startswith("breaks even (within 5%)") and "medians of 5 runs" in ours, ours
    assert _by_id(report.build_claims({"02_multiscale": ms}))["fig2.predictor_pays_in_time"].ours.startswith("pays off")
    # a predictor that is 10 % slower on every pair does not pay off, one 10 % faster on the median pair does
    slower = _timed(ms, [(t, 1.1 * t) for t, _ in pairs])
    assert _by_id(report.build_claims({"02_multiscale": slower}))["fig2.predictor_pays_in_time"].ours.startswith(
        "does not pay off")
    faster = _timed(ms, [(0.5, 0.45), (0.5, 0.44), (0.5, 0.52), (0.5, 0.46), (0.5, 0.6)])
    assert _by_id(report.build_claims({"02_multiscale": faster}))["fig2.predictor_pays_in_time"].ours.startswith(
        "pays off")
    # the record reads back from its JSON
    assert MultiscaleResults.from_json(timed.to_json()) == timed
