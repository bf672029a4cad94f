"""The reproduction report: claims are judged by their rules from the results JSON, never by hand."""

from __future__ import annotations

import json

import pytest

from imreg_lib import report


def _ad_costs(paper_hessian_factor: float = 30.0) -> dict:
    paper = {"affine": {"gradient": 2.5, "hessian": 5.7, "jacobian": 11.0},
             "neural_ode": {"gradient": 2.7, "hessian": 24.0, "jacobian": 17.0}}
    out = {}
    for protocol, factors in (("paper", {"gradient": 2.6, "hessian": paper_hessian_factor, "jacobian": 3.0}),
                              ("cached", {"gradient": 1.5, "hessian": 1.7, "jacobian": 1.5})):
        out[protocol] = {m: {"factors_median": dict(factors), "paper": {"factors": paper[m]}} for m in paper}
    return out


def _multiscale(single_error: float = 30.0, traditional_error: float = 0.04, gn_coded_max: float = -5e4) -> dict:
    n = 5
    return {
        "w_true": [-1.0, -0.1, 0.1, -0.9, 22.5, 21.0],
        "single_scale": {"parameter_error": single_error},
        "traditional": {"parameter_error": traditional_error},
        "predictor_corrector": {"parameter_error": 0.04},
        "prediction": {
            "exact": {"rel_loss_diff": [None] + [0.1] * n, "rel_grad_diff": [None] + [0.8] * n},
            "gauss_newton": {"rel_loss_diff": [None] + [0.1] * n, "rel_grad_diff": [None] + [0.7] * n},
            "gauss_newton_as_coded": {"rel_loss_diff": [None] + [-0.2] * n,
                                      "rel_grad_diff": [None] + [-1e9] * (n - 1) + [gn_coded_max]},
        },
    }


def _run(rel_error: float, first_loss: float = 40.0, last_loss: float = 0.1) -> dict:
    return {"rel_error": rel_error, "losses": [first_loss, last_loss]}


def _superres(diff_all: float = 0.11, partial_70: float = 0.5) -> dict:
    taylor = {k: {"errors": [e, 1e-2]} for k, e in (("70%", 3e9), ("90%", 2.8e7), ("95%", 2.7e7),
                                                      ("100%", 2.6e7), ("0%", 1.8e8))}
    return {
        "diff_all": _run(diff_all, last_loss=0.08), "no_diff": _run(0.26, last_loss=9.0),
        "rel_error_at_true_motion": 0.1,
        "timings": {"per_method": {"Diff All (N = 500)": {"factor": 8.0}}},
        "taylor": taylor,
        "partial": {"0.7": _run(partial_70, last_loss=39.0), "0.9": _run(0.12, last_loss=0.3),
                    "0.95": _run(0.11, last_loss=0.2), "1": _run(0.105, last_loss=0.1)},
        "inexact": {str(n): _run(e, last_loss=ll) for n, e, ll in ((1, 0.4, 36), (10, 0.12, 6), (50, 0.11, 0.1),
                                                                   (100, 0.105, 0.09))},
        "memory_growth_after_second": 0.001, "peak_memory_mb": 500.0,
        "paper": {"rel_error": {"diff_all": 0.107, "no_diff": 0.2561},
                  "partial_rel_error_read": {"0.7": 0.37, "0.9": 0.12, "0.95": 0.117, "1": 0.105},
                  "inexact_rel_error_read": {"1": 0.23, "5": 0.124, "10": 0.115, "100": 0.103}},
    }


def _claim(claims, section: str, text: str) -> report.Claim:
    found = [c for c in claims if c.section.startswith(section) and text in c.claim]
    assert len(found) == 1, [c.claim for c in claims]
    return found[0]


def test_load_results_names_every_missing_file_before_reading(tmp_path):
    (tmp_path / "01_ad_costs.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="02_multiscale.json, 03_superresolution.json"):
        report.load_results(tmp_path)
    for nb in report.NOTEBOOKS[1:]:
        (tmp_path / f"{nb}.json").write_text(json.dumps({"nb": nb}))
    assert report.load_results(tmp_path)["03_superresolution"] == {"nb": "03_superresolution"}


def test_claim_rejects_an_unknown_status():
    with pytest.raises(ValueError, match="status must be one of"):
        report.Claim("Fig 1", "x", "1", "1", "fine", "why")


def test_table1_rules():
    claims = report.build_claims({"01_ad_costs": _ad_costs(paper_hessian_factor=30.0)})
    grad = _claim(claims, "Table 1", "gradient / loss time, affine (6 parameters) (authors'")
    assert grad.status == "reproduced" and not grad.stable
    hess = _claim(claims, "Table 1", "Hessian / loss time, affine (6 parameters) (authors'")
    assert hess.status == "differs" and "5.3× the paper's" in hess.explanation
    jac = _claim(claims, "Table 1", "Jacobian / forward map time, affine (6 parameters) (authors'")
    assert jac.status == "improved"
    cached = _claim(claims, "Table 1", "Hessian / loss time, neural ODE (50 parameters) (cached")
    assert cached.status == "improved" and cached.ours == "1.7×"


def test_fig2_and_fig3_rules():
    good = report.build_claims({"02_multiscale": _multiscale()})
    assert _claim(good, "Fig 2", "predictor-corrector registers").status == "reproduced"
    assert _claim(good, "§5", "standard multi-scale").status == "differs"  # traditional registers too
    assert _claim(good, "Fig 3", "exact-Hessian").status == "reproduced"
    assert _claim(good, "Fig 3", "below −31000").status == "reproduced"
    assert _claim(good, "Fig 3", "increase the loss (as coded)").status == "reproduced"
    assert _claim(good, "Fig 3", "(corrected)").status == "differs"

    bad = report.build_claims({"02_multiscale": _multiscale(single_error=0.05, traditional_error=20.0,
                                                            gn_coded_max=-964.0)})
    assert _claim(bad, "Fig 2", "predictor-corrector registers").status == "differs"
    assert _claim(bad, "§5", "standard multi-scale").status == "reproduced"
    coded = _claim(bad, "Fig 3", "below −31000")
    assert coded.status == "differs" and "4 of 5 below" in coded.ours


def test_superresolution_rules():
    claims = report.build_claims({"03_superresolution": _superres()})
    da = _claim(claims, "§4.3 / Fig 6", "Diff All")
    assert da.status == "reproduced" and da.ours == "11.00 %"
    nd = _claim(claims, "§4.3 / Fig 6", "No Diff")
    assert nd.status == "reproduced"
    assert _claim(claims, "§4.3 / Fig 5-6", "ratio").status == "reproduced"
    assert _claim(claims, "Fig 7", "last 70 %").status == "reproduced"
    assert _claim(claims, "Fig 7", "100 % converges better").status == "reproduced"
    assert _claim(claims, "§4.3.1", "more than 70 %").status == "reproduced"
    assert _claim(claims, "§4.3.1", "100 % is best").status == "reproduced"
    assert _claim(claims, "§4.3.2", "diminishing returns").status == "reproduced"
    assert _claim(claims, "§4.3.2", "50 or 100").status == "reproduced"
    assert _claim(claims, "§4.3", "memory grows").status == "improved"
    # a setting this run did not include
    assert _claim(claims, "Fig 10", "5 CG iterations").status == "not run"

    worse = report.build_claims({"03_superresolution": _superres(diff_all=0.2, partial_70=0.12)})
    da = _claim(worse, "§4.3 / Fig 6", "Diff All")
    assert da.status == "differs" and "1.87× the paper's" in da.explanation and "10.00 %" in da.explanation
    assert _claim(worse, "§4.3.1", "more than 70 %").status == "differs"


def test_every_claim_has_a_status_and_a_reason_and_the_tables_render():
    claims = report.build_claims({"01_ad_costs": _ad_costs(), "02_multiscale": _multiscale(),
                                  "03_superresolution": _superres()})
    assert all(c.status in report.STATUSES and c.explanation for c in claims)
    assert sum(report.claims_summary(claims).values()) == len(claims)
    table = report.markdown_table(claims)
    assert table.count("\n") == len(claims) + 1
    assert all(line.count(" | ") == 5 for line in table.splitlines()[2:])  # pipes inside cells are escaped
    assert json.loads(json.dumps(report.claims_json(claims)))[0]["section"] == "Table 1"
    defects = report.defects_table()
    assert defects.count("\n") == len(report.DEFECTS) + 1 and len(report.DEFECTS) == 20
