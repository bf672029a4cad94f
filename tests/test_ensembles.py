"""Round-off ensembles of the §4 runs (imreg_lib.paper.ensembles) and the report's rules on them."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import imreg_lib as il
from imreg_lib.paper import ensembles as ens
from imreg_lib.paper import report
from imreg_lib.paper import superres_runs as ps
from imreg_lib.paper.preregistration import preregister
from imreg_lib.paper.results import SuperresolutionResults
from imreg_lib.paper.settings import SuperresolutionSettings

REFERENCES = Path(__file__).resolve().parent / "references"


@pytest.fixture(scope="module")
def problem(small_problem):
    return small_problem


def _ulp(x):
    return torch.nextafter(x.abs(), torch.tensor(float("inf"), dtype=x.dtype)) - x.abs()


def test_member_data_move_by_at_most_four_ulps_and_are_reproducible(problem):
    assert ens.perturbed_problem(problem, 0) is problem
    one, again, two = (ens.perturbed_problem(problem, k) for k in (1, 1, 2))
    d = problem.data
    steps = (one.data - d) / torch.where(d == 0, 1.0, _ulp(d))
    assert steps.abs().max() <= ens.ULPS and steps.abs().max() >= 1
    assert torch.equal(steps, steps.round())  # whole units in the last place
    assert torch.equal(one.data[d == 0], d[d == 0])  # zero data stay zero (no subnormal numbers)
    assert torch.equal(one.data, again.data) and not torch.equal(one.data, two.data)
    assert torch.equal(one.reference, problem.reference) and torch.equal(one.w_true, problem.w_true)


@pytest.mark.parametrize("kwargs, match", [({"member": -1}, "member"), ({"member": 1.5}, "member"),
                                           ({"member": 1, "ulps": 0}, "ulps")])
def test_bad_member_or_ulps_are_named(problem, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ens.perturbed_problem(problem, **kwargs)


SETTINGS = {"cg_iters": 60, "cg_iters_partial": 40, "tol": 1e-3, "gn_iters": 3, "gtol": 1e-5}


@pytest.fixture(scope="module")
def page(problem):
    """A small page: the runs that get ensembles, from the continuation starts."""
    w = {loss: preregister(problem, loss=loss, continuation=True).w for loss in ("norm", "squared")}
    s = {k: v for k, v in SETTINGS.items() if k != "cg_iters_partial"}
    runs = ps.compare_projections(problem, w["norm"], methods=("diff_all", "no_diff"), **s)
    partial = ps.partial_differentiation(problem, w["squared"], [0.9], cg_iters=SETTINGS["cg_iters_partial"],
                                         tol=1e-3, gn_iters=3)
    inexact = ps.inexact_projections(problem, w["squared"], [5], tol=1e-3, gn_iters=3)
    return runs, partial, inexact


def _ensembles(problem, page, members):
    runs, partial, inexact = page
    return ens.round_off_ensembles(problem, ens.page_runs(runs, {}, partial, inexact), fractions=[0.9], cg_counts=[5],
                                   corrections=False, members=members, **SETTINGS)


def test_member_zero_is_the_page_run_and_members_rerun_everything_on_their_data(problem, page):
    out = _ensembles(problem, page, 3)
    assert {f: set(v) for f, v in out.items()} == {"projections": {"diff_all"}, "partial": {0.9}, "inexact": {5}}
    assert set(out.to_json()["partial"]) == {"0.9"} and out.corrections == {}
    runs, partial, _ = page
    da = out.projections["diff_all"]
    assert da.members == 3 and da.rel_errors[0] == runs["diff_all"].rel_error
    assert out.partial[0.9].rel_errors[0] == partial[0.9].rel_error
    assert out.get("partial", 0.9) is out.partial[0.9] and ens.EnsembleSet.from_json(out.to_json()) == out
    # member 2 is the whole run (pre-registration and LM) on member 2's data
    p2 = ens.perturbed_problem(problem, 2)
    w2 = preregister(p2, loss="norm", continuation=True).w
    vp = ps.varpro_variant(p2, method="diff_all", cg_iters=SETTINGS["cg_iters"], tol=1e-3)
    again = il.varpro_levenberg_marquardt(vp, w2, max_iter=SETTINGS["gn_iters"], gtol=SETTINGS["gtol"])
    assert da.rel_errors[2] == again.rel_error
    assert da.min <= da.median <= da.max
    assert ens.Ensemble.from_json(json.loads(json.dumps(da.to_json()))) == da


def test_one_member_runs_nothing_more_and_a_missing_page_run_is_named(problem, page):
    out = _ensembles(problem, page, 1)
    assert all(e.members == 1 for _, family in out.items() for e in family.values())
    assert out.get("projections", "diff_all") is None  # one member: no ensemble to judge on
    runs, partial, inexact = page
    with pytest.raises(ValueError, match="inexact"):
        ens.round_off_ensembles(problem, ens.page_runs(runs, {}, partial, {}), fractions=[0.9], cg_counts=[5],
                                corrections=False, members=2, **SETTINGS)
    with pytest.raises(ValueError, match="members"):
        ens.round_off_ensembles(problem, ens.page_runs(runs, {}, partial, inexact), fractions=[0.9], cg_counts=[5],
                                corrections=False, members=0, **SETTINGS)


def test_labels_and_paper_values():
    assert ens.ensemble_label("projections", "diff_all") == "Diff All"
    assert ens.ensemble_label("corrections", "no_diff, as_coded start") == "No Diff, authors' start"
    assert ens.ensemble_label("partial", 0.95) == "last 95%"
    assert ens.ensemble_label("inexact", 1) == "1 CG iteration"
    assert ens.paper_value("projections", "diff_all") == 0.107
    assert ens.paper_value("corrections", "no_diff, as_coded start") == 0.2561
    assert ens.paper_value("partial", 0.7) == 0.37 and ens.paper_value("inexact", 100) == 0.103
    assert ens.paper_value("corrections", "diff_all, paper's model (eq. 7)") is None


# ---- the report judges on ensembles ------------------------------------------------------------------------------

def test_ensemble_status_widens_the_range_by_the_tolerance():
    assert report.ensemble_status(0.10, 0.12, 0.125) == "reproduced"
    assert report.ensemble_status(0.10, 0.12, 0.12 * 1.2) == "reproduced"
    assert report.ensemble_status(0.10, 0.12, 0.12 * 1.21) == "differs"
    assert report.ensemble_status(0.10, 0.12, 0.079) == "differs"


def _flat_reference() -> dict:
    return json.loads((REFERENCES / "03_superresolution.json").read_text())["values"]


def _committed_sr() -> SuperresolutionResults:
    """The report's input: the test page of test_report with the committed ensembles' statistics (the references
    keep each ensemble's median and range, not its members: member 0 is the committed single run, the others the
    range and the median, twice, so that the ensemble's median is the committed one) and the committed single
    runs' errors."""
    from test_report import _superres, _with_run

    flat = _flat_reference()
    families: dict[str, dict] = {}
    for key in flat:
        if key.startswith("ensembles.") and key.endswith(".median"):
            family, _, name = key[len("ensembles."):-len(".median")].partition(".")
            low, median, high = (flat[f"ensembles.{family}.{name}.{stat}"] for stat in ("min", "median", "max"))
            single = flat[f"{name}.rel_error" if family == "projections" else f"{family}.{name}.rel_error"]
            typed = {"partial": float, "inexact": int}.get(family, str)(name)  # keyed as the page's runs
            families.setdefault(family, {})[typed] = ens.Ensemble((single, low, median, median, high), (0.01,) * 5,
                                                                  (0.01,) * 5)
    sr = replace(_superres(), ensembles=ens.EnsembleSet(**families))
    for key in ("diff_all", "no_diff"):
        sr = _with_run(sr, "projections", key, rel_error=flat[f"{key}.rel_error"])
    return sr


def _claims(sr: SuperresolutionResults) -> dict:
    return {c.id: c for c in report.build_claims({"03_superresolution": sr})}


def _with_ensemble(sr: SuperresolutionResults, family: str, key, rel_errors) -> SuperresolutionResults:
    e = getattr(sr.ensembles, family)[key]
    moved = replace(e, rel_errors=tuple(rel_errors))
    return replace(sr, ensembles=replace(sr.ensembles, **{family: {**getattr(sr.ensembles, family), key: moved}}))


def test_committed_results_carry_ensembles_and_the_report_quotes_their_ranges():
    sr = _committed_sr()
    e = sr.ensembles.projections["diff_all"]
    assert e.min <= sr.projections["diff_all"].rel_error <= e.max and e.min <= e.median <= e.max
    assert {"projections", "corrections", "partial", "inexact"} == {f for f, _ in sr.ensembles.items()}
    claims = _claims(sr)
    assert "members" in claims["sr.diff_all"].ours and claims["sr.diff_all"].ours_value == e.median
    assert "every Diff All member" in claims["sr.ratio"].rule


def _shift(sr: SuperresolutionResults, family: str, key, to: float) -> SuperresolutionResults:
    e = getattr(sr.ensembles, family)[key]
    return _with_ensemble(sr, family, key, [x * to / e.median for x in e.rel_errors])


@pytest.mark.parametrize("family, key, cid", [("projections", "diff_all", "sr.diff_all"),
                                              ("partial", 1.0, "fig8.error_100"),
                                              ("inexact", 100, "fig10.error_100")])
def test_an_ensemble_far_from_the_paper_differs_and_one_around_it_reproduces(family, key, cid):
    ref = ens.paper_value(family, key)
    assert _claims(_shift(_committed_sr(), family, key, ref)).get(cid).status == "reproduced"
    assert _claims(_shift(_committed_sr(), family, key, 2.0 * ref)).get(cid).status == "differs"


def test_diff_all_beats_no_diff_must_hold_for_every_member():
    sr = _committed_sr()
    e = sr.ensembles.projections["diff_all"]
    assert _claims(sr)["sr.ratio"].status in ("reproduced", "differs")
    worse = [*e.rel_errors[:-1], 1.01 * sr.projections["no_diff"].rel_error]  # one member worse than No Diff
    claim = _claims(_with_ensemble(sr, "projections", "diff_all", worse))["sr.ratio"]
    assert claim.status == "differs" and claim.ours.split("members ")[1].startswith("0.99")


@pytest.mark.parametrize("bad", [0, 2.5, True, "8"])
def test_the_page_checks_its_ensemble_size_before_any_work(bad):
    with pytest.raises(ValueError, match="ensemble_members"):
        SuperresolutionSettings(m=8, factor=2, n_templates=2, lam=1e-2, variant="as_coded", device="cpu",
                                fractions=[0.9], cg_counts=[5], gn_iters=3, cg_iters=10, cg_iters_partial=10,
                                taylor_cg_iters=5, cg_tol=1e-3, gtol=1e-5, preregistration="continuation",
                                ensemble_members=bad)


def test_the_ensembles_cover_the_single_runs_of_every_numeric_setting():
    """``make spread`` records, for every ensemble, the single run of each numeric setting against the ensembles
    (tools/spread.py): every single run lies within the members of the settings' ensembles together, and the
    record says, per run, whether the page's eight members alone span the settings' spread."""
    coverage = json.loads((REFERENCES / "ensemble_coverage.json").read_text())
    assert len(coverage["settings"]) >= 4 and coverage["settings"][0] == "pinned"
    sr = _committed_sr()
    committed = {f"{f}.{k}" for f, family in sr.to_json()["ensembles"].items() for k in family}
    assert committed == set(coverage["runs"])
    for name, row in coverage["runs"].items():
        assert set(row["single_run"]) == set(coverage["settings"]), name
        assert row["pooled_within"], (name, row["single_run"], row["range"])
        assert isinstance(row["covered"], bool) and row["settings_spread"] >= 0 and row["width"] >= 0


def test_the_spread_tool_uses_the_ensembles_floor():
    from tools import spread

    assert spread.NOT_AMPLIFIED == ens.NOT_AMPLIFIED
