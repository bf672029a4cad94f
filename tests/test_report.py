"""The reproduction report: every claim is judged once, by a rule with a passing and a failing case."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from imreg_lib.paper import report
from imreg_lib.paper.numbers import PAPER_FACTORS, PAPER_SR, PAPER_TABLE1

PAPER_NUMBERS = Path(__file__).resolve().parent / "references" / "paper_numbers.md"

# ---- synthetic results, shaped like the notebooks' JSON ---------------------------------------------------------


def _ad_costs(hessian: float = 30.0, gradient: float = 2.6, jacobian: float = 3.0, jacobian_ms: float = 1.0) -> dict:
    out = {"settings": {"source": "synthetic hand"}, "machine": {"cpu": "Test CPU", "cores": 2, "threads": 1,
                                                                "torch": "2.13.0", "device": "cpu"}}
    for protocol, factors in (("paper", {"gradient": gradient, "hessian": hessian, "jacobian": jacobian}),
                              ("cached", {"gradient": 1.5, "hessian": 1.7, "jacobian": 1.5})):
        out[protocol] = {m: {"factors": dict(factors), "factors_median": {k: 99.0 for k in factors},
                             "paper": {"factors": PAPER_FACTORS[m],
                                       "ms": {fn: PAPER_TABLE1[m][fn][0] for fn in PAPER_TABLE1[m]}},
                             **{f"{fn}_ms": 1.0 for fn in ("loss", "gradient", "hessian", "forward")},
                             "jacobian_ms": jacobian_ms} for m in PAPER_FACTORS}
    return out


W_TRUE = [-1.0, -0.1, 0.1, -0.9, 22.5, 21.0]


def _moved(da: float = 0.0, db: float = 0.0) -> list[float]:
    return [w + da for w in W_TRUE[:4]] + [w + db for w in W_TRUE[4:]]


def _multiscale(single=(1.5, 20.0), traditional=(0.004, 0.03), pc=(0.004, 0.03), gn_coded_max=-5e4,
                gn_loss=0.1, gn_grad=0.7, known=True) -> dict:
    n = 5
    runs = {"single_scale": (single, 9.0e5), "traditional": (traditional, 1.0e5), "predictor_corrector": (pc, 1.0e5)}
    out = {"data": "synthetic hand" if known else "hands-R.jpg / hands-T.jpg (rotate 180)", "h": [0.625, 0.78125],
           "w_true": W_TRUE if known else None,
           "prediction": {
               "newton_method": "trust-exact",
               "exact": {"rel_loss_diff": [None] + [0.1] * n, "rel_grad_diff": [None] + [0.8] * n},
               "gauss_newton": {"rel_loss_diff": [None] + [gn_loss] * n, "rel_grad_diff": [None] + [gn_grad] * n},
               "gauss_newton_as_coded": {"rel_loss_diff": [None] + [-0.2] * n,
                                         "rel_grad_diff": [None] + [-1e9] * (n - 1) + [gn_coded_max]}}}
    for key, ((da, db), loss) in runs.items():
        out[key] = {"w": _moved(da, db), "final_loss": loss}
    return out


def _run(rel_error: float, last_loss: float = 0.1, last_grad: float = 1.0, r0: float = 3.2) -> dict:
    return {"rel_error": rel_error, "losses": [40.0, last_loss], "grad_norms": [500.0, last_grad],
            "residual_norms": [r0, 0.2]}


H = [1e5, 599.0, 3.6, 0.0215, 1.3e-4, 7.7e-7, 4.6e-9, 2.8e-11, 1.7e-13, 1e-15]


def _taylor(at_mid: float, at_large: float) -> dict:
    """A Taylor curve: ``at_large`` at h = 1e5, ``at_mid`` at h = 0.0215 and 3.6, then a 2e-2 noise floor."""
    errors = [at_large, at_large / 100, at_mid * 100, at_mid, 0.02, 0.03, 0.037, 0.035, 0.019, 0.018]
    return {"h": H, "errors": errors}


def _superres(diff_all=0.11, authors=0.11, partial=(0.5, 0.12, 0.11, 0.105), taylor_mid=(225.0, 37.0, 4.5, 4.3, 4.1),
              taylor_large=(1e9, 1.8e8, 2.8e7, 2.7e7, 2.6e7), inexact_grad_100=0.5, peak=500.0) -> dict:
    labels = ("70%", "0%", "90%", "95%", "100%")
    p70, p90, p95, p100 = partial
    return {
        "data": "synthetic hand", "preregistration": "continuation",
        "diff_all": _run(diff_all, last_loss=0.08), "no_diff": _run(0.26, last_loss=9.0),
        "corrections": {"diff_all, as_coded start": _run(authors, r0=3.13)},
        "rel_error_at_true_motion": 0.1,
        "timings": {"per_method": {"Diff All (N = 500)": {"factor": 8.0}}},
        "taylor": {k: _taylor(m, big) for k, m, big in zip(labels, taylor_mid, taylor_large, strict=True)},
        "partial": {"0.7": _run(p70, last_loss=39.0, last_grad=400.0), "0.9": _run(p90, last_loss=0.3, last_grad=3.0),
                    "0.95": _run(p95, last_loss=0.2, last_grad=2.0), "1": _run(p100, last_loss=0.1, last_grad=1.0)},
        "inexact": {str(n): _run(e, last_loss=ll, last_grad=g) for n, e, ll, g in (
            (1, 0.4, 36, 400.0), (10, 0.12, 6, 40.0), (50, 0.11, 0.1, 1.0), (100, 0.105, 0.09, inexact_grad_100))},
        "memory_growth_after_second": 0.001, "peak_memory_mb": peak,
        "paper": {"rel_error": {"diff_all": 0.107, "no_diff": 0.2561},
                  "partial_rel_error_read": {"0.7": 0.37, "0.9": 0.12, "0.95": 0.117, "1": 0.105},
                  "inexact_rel_error_read": {"1": 0.23, "5": 0.124, "10": 0.115, "100": 0.103}},
    }


def _by_id(claims) -> dict[str, report.Claim]:
    ids = [c.id for c in claims]
    assert len(ids) == len(set(ids)), ids
    return {c.id: c for c in claims}


def _status(results: dict, cid: str) -> str:
    return _by_id(report.build_claims(results))[cid].status


# ---- loading and the claim record ---------------------------------------------------------------------------------

def test_load_results_names_every_missing_file_before_reading(tmp_path):
    (tmp_path / "01_ad_costs.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="02_multiscale.json, 03_superresolution.json"):
        report.load_results(tmp_path)
    for nb in report.NOTEBOOKS[1:]:
        (tmp_path / f"{nb}.json").write_text(json.dumps({"nb": nb}))
    assert report.load_results(tmp_path)["03_superresolution"] == {"nb": "03_superresolution"}
    assert "00_data" not in report.load_results(tmp_path)
    (tmp_path / "00_data.json").write_text("{}")
    assert "00_data" in report.load_results(tmp_path)  # read where it exists (its peak memory)


def test_claim_rejects_an_unknown_status():
    with pytest.raises(ValueError, match="status must be one of"):
        report.Claim("x", "Fig 1", "x", "1", "1", "fine", "rule")


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


def test_fig2_without_known_motion_compares_final_losses():
    ms = _multiscale(known=False)
    claims = _by_id(report.build_claims({"02_multiscale": ms}))
    assert claims["fig2.registers"].status == "reproduced" and "no known motion" in claims["fig2.registers"].rule
    assert claims["conclusions.traditional_fails"].status == "differs"
    ms["single_scale"]["final_loss"] = 1.5e5  # not twice the predictor-corrector's
    assert _status({"02_multiscale": ms}, "fig2.registers") == "differs"
    ms["traditional"]["final_loss"] = 3e5
    assert _status({"02_multiscale": ms}, "conclusions.traditional_fails") == "reproduced"
    # a loss a hair above (or below) the predictor-corrector's is the same minimum, not a failure
    f_pc = ms["predictor_corrector"]["final_loss"]
    for f_t in (f_pc * (1 + 1e-5), f_pc * (1 - 1e-5), 1.9 * f_pc):
        ms["traditional"]["final_loss"] = f_t
        assert _status({"02_multiscale": ms}, "conclusions.traditional_fails") == "differs"
    ms["traditional"]["final_loss"] = 2.1 * f_pc
    assert _status({"02_multiscale": ms}, "conclusions.traditional_fails") == "reproduced"


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
    flat = _superres()
    for curve in flat["taylor"].values():
        curve["errors"] = [1e7] + [0.02] * 9
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


def test_inexact_rules_judge_loss_and_gradient():
    ok = _by_id(report.build_claims({"03_superresolution": _superres()}))
    assert ok["fig10.diminishing"].status == "reproduced"
    assert ok["fig10.50_100_best"].status == "reproduced"
    assert ok["fig10.error_5"].status == "not run"  # a count this run did not include
    # the two lowest losses at 50 and 100, but the gradient norm of 100 above that of 10: differs
    assert _status({"03_superresolution": _superres(inexact_grad_100=50.0)}, "fig10.50_100_best") == "differs"
    worse = _superres()
    worse["inexact"]["10"]["rel_error"] = 0.13  # more than 20 % above the 100-iteration error
    assert _status({"03_superresolution": worse}, "fig10.diminishing") == "differs"
    better = _superres()
    better["inexact"]["10"]["rel_error"] = 0.08  # more than 20 % below: also not "close"
    assert _status({"03_superresolution": better}, "fig10.diminishing") == "differs"


def test_memory_claim_compares_every_notebook_and_can_fail():
    results = {"00_data": {"peak_memory_mb": 300.0}, "02_multiscale": {"peak_memory_mb": 700.0},
               "03_superresolution": _superres(peak=500.0)}
    claim = _by_id(report.build_claims(results))["readme.60gb"]
    # the sizes differ (m = 20 here, m = 128 for the authors' figure): beside the paper, never "improved"
    assert claim.status == "beyond the paper" and "02_multiscale" in claim.ours and "m = 128" in claim.explanation
    assert "m = 20" in claim.ours and "m = 128" in claim.paper
    results["02_multiscale"]["peak_memory_mb"] = 61 * 1024.0
    assert _by_id(report.build_claims(results))["readme.60gb"].status == "differs"
    del results["02_multiscale"]["peak_memory_mb"]
    assert _by_id(report.build_claims(results))["readme.60gb"].status == "not run"
    assert _status({"03_superresolution": _superres()}, "sr.memory_growth") == "improved"


# ---- tables, JSON and the computed reading ---------------------------------------------------------------------

def _all(**kw) -> dict:
    return {"01_ad_costs": _ad_costs(), "02_multiscale": _multiscale(**kw), "03_superresolution": _superres()}


def test_every_claim_has_an_id_a_status_and_a_rule_and_the_tables_render():
    claims = report.build_claims(_all())
    assert all(c.status in report.STATUSES and c.rule and c.id for c in claims)
    assert sum(report.claims_summary(claims).values()) == len(claims)
    table = report.markdown_table(claims)
    assert table.count("\n") == len(claims) + 1
    assert all(line.count(" | ") == 5 for line in table.splitlines()[2:])  # pipes inside cells are escaped
    assert json.loads(json.dumps(report.claims_json(claims)))[0]["section"] == "Table 1"
    defects = report.defects_table()
    assert defects.count("\n") == len(report.DEFECTS) + 1 and len(report.DEFECTS) == 20


def test_two_data_sets_side_by_side_each_with_its_own_status(tmp_path):
    synthetic = report.build_claims(_all())
    paper = report.build_claims(_all(known=False, gn_grad=-0.1))
    by_data = {"paper": paper, "synthetic": synthetic}
    table = report.comparison_table(by_data)
    row = next(line for line in table.splitlines() if "the predictor needs the exact Hessian" in line)
    assert row.count("✓ reproduced") == 1 and row.count("✗ differs") == 1  # paper's images: holds; synthetic: not
    assert "the paper's images" in table.splitlines()[0] and "the synthetic hand" in table.splitlines()[0]
    rules = report.rules_table(by_data)
    assert rules.count("\n") == table.count("\n")
    records = report.report_records(by_data)
    assert len(records) == len(synthetic) + len(paper)
    assert {"id", "claim", "paper", "ours", "status", "rule", "data", "data_set"} <= set(records[0])
    path = report.write_json(tmp_path / "sub" / "report.json", {"claims": records})
    assert json.loads(path.read_text())["claims"][0]["data_set"] == "paper"
    assert not [p for p in path.parent.iterdir() if p.name != "report.json"]  # no temporary file left


def test_reading_is_computed_from_the_statuses():
    claims = report.build_claims(_all(gn_coded_max=-964.0))
    text = report.reading([c for c in claims if c.stable], "the synthetic hand")
    counts = report.claims_summary([c for c in claims if c.stable])
    assert f"{counts['reproduced']} reproduced" in text and f"{counts['differs']} differs" in text
    assert "Differing, by section: §5 Conclusions (1), Fig 3 (2)," in text  # sections of the differing claims


def test_write_json_leaves_the_old_file_when_writing_fails(tmp_path):
    path = report.write_json(tmp_path / "r.json", {"a": 1})
    with pytest.raises(TypeError):
        report.write_json(path, {"a": object()})
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


def _set(d: dict, path: str, value) -> dict:
    *head, last = path.split("/")
    for k in head:
        d = d[k]
    d[last] = value
    return d


@pytest.mark.parametrize(("cid", "path", "value", "passing", "failing"), [
    ("fig3.exact_helps", "prediction/exact/rel_grad_diff", [None] + [-0.1] * 5, "reproduced", "differs"),
    ("fig3.coded_loss_increases", "prediction/gauss_newton_as_coded/rel_loss_diff", [None] + [0.2] * 5,
     "reproduced", "differs"),
])
def test_fig3_rules_fail(cid, path, value, passing, failing):
    ms = _multiscale()
    assert _status({"02_multiscale": ms}, cid) == passing
    _set(ms, path, value)
    assert _status({"02_multiscale": ms}, cid) == failing


def test_remaining_superresolution_rules_fail():
    sr = _superres()
    assert _status({"03_superresolution": sr}, "fig7.floor") == "reproduced"
    for curve in sr["taylor"].values():
        curve["errors"][-1] = 1e-5
    assert _status({"03_superresolution": sr}, "fig7.floor") == "differs"
    sr = _superres()
    sr["no_diff"]["rel_error"] = 0.1  # No Diff better than Diff All
    assert _status({"03_superresolution": sr}, "sr.ratio") == "differs"
    for factor, status in ((8.0, "reproduced"), (12.0, "differs"), (4.0, "improved")):
        sr["timings"]["per_method"]["Diff All (N = 500)"]["factor"] = factor
        assert _status({"03_superresolution": sr}, "sr.jacobian_cost") == status
    sr["memory_growth_after_second"] = 0.2
    sr["memory_mb_per_iteration"] = {"Diff All": [400.0, 410.0, 430.0, 450.0, 470.0]}  # still growing at the end
    assert _status({"03_superresolution": sr}, "sr.memory_growth") == "reproduced"
    sr["memory_mb_per_iteration"] = {"Diff All": [400.0, 410.0, 480.0, 490.0, 490.0, 490.0]}  # rose, then level
    assert _status({"03_superresolution": sr}, "sr.memory_growth") == "differs"
    sr["memory_growth_after_second"] = 0.01
    assert _status({"03_superresolution": sr}, "sr.memory_growth") == "improved"
    assert report.error_status(0.107 * 1.19, 0.107) == "reproduced"
    assert report.error_status(0.107 * 1.21, 0.107) == "differs" == report.error_status(0.107 * 0.79, 0.107)
    sr = _superres()
    sr["partial"]["0.9"]["rel_error"] = 0.2  # more than 20 % off the value read off Fig 8
    assert _status({"03_superresolution": sr}, "fig8.error_90") == "differs"
    assert _status({"03_superresolution": _superres()}, "fig8.error_90") == "reproduced"


def _peer(success, error=0.1):
    return {"final_loss": 2.0, "param_error": error if success is not None else None, "seconds": 0.5,
            "iterations": 12, "success": success}


def test_peers_rows_are_beyond_the_paper_and_say_what_was_recovered(tmp_path):
    pe = {"data": "synthetic hand", "data_3d": "synthetic volume", "identity_loss": 4.0, "identity_loss_3d": 8.0,
          "peers": {"simpleitk": _peer(False, 50.0), "predictor_corrector": _peer(True)},
          "capture": {"angles": [0.0, 90.0], "simpleitk": [_peer(True), _peer(False)],
                      "predictor_corrector": [_peer(True), _peer(True)]},
          "peers_3d": {"traditional": _peer(True)}}
    rows = {c.id: c for c in report.peers_claims(pe)}
    assert all(c.status == "beyond the paper" for c in rows.values())
    assert rows["peers.simpleitk"].ours == "not recovered"
    assert rows["peers.predictor_corrector"].ours == "recovered (motion error 0.10 cells, J / J(identity) = 0.5)"
    assert rows["capture.simpleitk"].ours == "1 of 2 angles (0°)"
    assert rows["capture.predictor_corrector"].ours == "2 of 2 angles (0°, 90°)"
    assert rows["peers_3d.traditional"].claim.endswith("registers the 3D pair")
    assert not rows["capture.seconds"].stable and rows["peers.simpleitk"].stable
    no_truth = report.peers_claims({"identity_loss": 4.0, "peers": {"simpleitk": _peer(None)}})
    assert no_truth[0].ours == "J / J(identity) = 0.5 (no known motion)"
    # the report reads 05_peers.json where it exists, never counts its rows as reproductions
    for nb in report.NOTEBOOKS:
        (tmp_path / f"{nb}.json").write_text("{}")
    assert "05_peers" not in report.load_results(tmp_path)
    (tmp_path / "05_peers.json").write_text(json.dumps(pe))
    results = report.load_results(tmp_path)
    assert results["05_peers"]["peers_3d"]["traditional"]["success"] is True
    peers_rows = [c for c in report.build_claims({"05_peers": pe}) if c.id.startswith(("peers", "capture"))]
    assert len(peers_rows) == len(rows)
    assert report.claims_summary(peers_rows)["beyond the paper"] == len(rows)


def _full_scale(peak_mb=900.0, growth=0.01, m=128) -> dict:
    run = {"rel_error": 0.05, "seconds": 120.0, "memory_growth_after_second": growth, "losses": [3.0, 2.0]}
    return {"problem": {"m": m, "factor": 4, "n_templates": 16, "n_params": 96, "source": "synthetic hand"},
            "settings": {"gn_iters": 10}, "runs": {"diff_all": run, "no_diff": run}, "floor": 0.03,
            "peak_memory_mb": peak_mb}


def test_memory_claim_on_the_same_size_when_the_full_scale_ran():
    results = {"00_data": {"peak_memory_mb": 300.0}, "03_superresolution": _superres(peak=500.0),
               "full_scale": _full_scale()}
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


def test_the_predictors_work_against_the_traditional_method():
    ms = _multiscale()
    ms["predictor_corrector"].update(n_hessians=199, seconds=0.9)
    ms["traditional"].update(n_hessians=207, seconds=0.5)
    claims = _by_id(report.build_claims({"02_multiscale": ms}))
    assert claims["fig2.predictor_saves_hessians"].status == "reproduced"
    pays = claims["fig2.predictor_pays_in_time"]
    assert pays.status == "beyond the paper" and pays.ours.startswith("does not pay off") and not pays.stable
    ms["predictor_corrector"]["n_hessians"] = 212  # the predictor's saving gone: above the traditional method's
    assert _status({"02_multiscale": ms}, "fig2.predictor_saves_hessians") == "differs"
    ms["predictor_corrector"]["seconds"] = 0.4
    assert _by_id(report.build_claims({"02_multiscale": ms}))["fig2.predictor_pays_in_time"].ours.startswith("pays off")
