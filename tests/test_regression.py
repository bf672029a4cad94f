"""The results regression test: its checks, its report, and that it fails when a committed result moves."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from tools import regression as rg

REFERENCES = Path(__file__).parent / "references"
RULES = rg.load_rules(REFERENCES / rg.TOLERANCES)
RELATIONS = rg.load_relations(REFERENCES / rg.TOLERANCES)


def _perturbed(rule: rg.Rule, value):
    """``value`` moved just beyond what ``rule`` allows."""
    if rule.check == "exact":
        return "moved" if value != "moved" else "moved again"
    if rule.check == "sign":
        return -value if value else 1.0
    if rule.check == "decades":
        return value * 10.0 ** (1.5 * rule.tol + 0.01)
    if rule.check == "atol":
        return value + 1.5 * rule.tol + 1e-9
    return value + math.copysign(1.5 * rule.tol * abs(value) + 2 * rule.atol + 1e-300, value or 1.0)


def _write(folder: Path, stem: str, flat: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(flat))  # a flat mapping flattens to itself


def _reference(stem: str) -> dict:
    return json.loads((REFERENCES / f"{stem}.json").read_text())["values"]


def _numbered(stem: str) -> list[tuple[str, object, rg.Rule]]:
    ref = _reference(stem)
    return [(k, v, rg._rule_for(RULES[stem], k)) for k, v in ref.items()]


# ---- the checks ----------------------------------------------------------------------------------------------

def test_flatten_joins_keys_and_list_indices():
    assert rg.flatten({"a": {"b": [1, {"c": None}]}, "d": [], "e": "x"}) == {"a.b.0": 1, "a.b.1.c": None,
                                                                          "d": [], "e": "x"}
    flat = {"a.b.0": 1.5, "c": "x"}
    assert rg.flatten(flat) == flat


@pytest.mark.parametrize(("rule", "value", "reference", "ok"), [
    (rg.Rule(("*",), "exact"), "a", "a", True),
    (rg.Rule(("*",), "exact"), 3, 4, False),
    (rg.Rule(("*",), "exact"), True, 1, True),  # JSON: true == 1 is no concern of a regression test
    (rg.Rule(("*",), "rtol", 1e-3), 1.0005, 1.0, True),
    (rg.Rule(("*",), "rtol", 1e-3), 1.002, 1.0, False),
    (rg.Rule(("*",), "rtol", 1e-3, atol=1e-6), 5e-7, 0.0, True),
    (rg.Rule(("*",), "rtol", 1e-3, atol=1e-6), 5e-6, 0.0, False),
    (rg.Rule(("*",), "atol", 2), 10, 12, True),
    (rg.Rule(("*",), "atol", 2), 9, 12, False),
    (rg.Rule(("*",), "decades", 0.5), -4e8, -5e8, True),
    (rg.Rule(("*",), "decades", 0.5), -4e8, -5e9, False),
    (rg.Rule(("*",), "decades", 0.5), 4e8, -5e8, False),
    (rg.Rule(("*",), "sign", None), -3.0, -1e-9, True),
    (rg.Rule(("*",), "sign", None), 0.0, -1e-9, False),
    (rg.Rule(("*",), "rtol", 1e-3), None, 1.0, False),
    (rg.Rule(("*",), "rtol", 1e-3), float("nan"), float("nan"), True),
    (rg.Rule(("*",), "rtol", 1e-3), float("nan"), 1.0, False),
    (rg.Rule(("*",), "ignore", why="time"), 1.0, 2.0, True),
])
def test_each_check_passes_and_fails(rule, value, reference, ok):
    assert rg.check_value(rule, value, reference) is ok


def test_rules_say_what_they_need():
    with pytest.raises(ValueError, match="check must be one of exact, rtol"):
        rg.Rule(("*",), "close")
    with pytest.raises(ValueError, match="check 'rtol' needs tol >= 0"):
        rg.Rule(("*",), "rtol")
    with pytest.raises(ValueError, match="an ignore rule says why"):
        rg.Rule(("*",), "ignore")
    with pytest.raises(ValueError, match="check 'exact' takes no tol"):
        rg.Rule(("*",), "exact", tol=1.0)


# ---- the committed tolerances and references -----------------------------------------------------------------

def test_every_tolerance_covers_its_measured_spread():
    for stem, rules in RULES.items():
        for rule in rules:
            if rule.check in ("ignore", "exact", "sign"):
                continue
            assert rule.spread is not None, f"{stem}: {rule.keys}: no measured spread"
            assert len(rule.settings) >= 3, f"{stem}: {rule.keys}: spread over fewer than three settings"
            assert rule.tol >= rule.spread, f"{stem}: {rule.keys}: tol {rule.tol} below the spread {rule.spread}"
            if not rule.floor:  # a stated floor rests on its why; it must still cover the spread (above)
                assert rule.tol >= min(2.0 * rule.spread, rg.suggest_tolerance(rule, rule.spread)), (
                    f"{stem}: {rule.keys}: below 2 x spread")


def test_the_spreads_are_those_of_the_committed_measurements():
    """Every spread in the tolerances file is computed again from the values per numeric setting that
    ``make spread SPREAD_WRITE=1`` committed (tests/references/spread/), over the settings it names; the pinned
    setting's values are the committed references, so the measurements belong to these results."""
    measured = rg.load_measurements(REFERENCES)
    assert set(measured) == set(RULES), "a notebook without committed measurements"
    for stem, rows in rg.spread_from_measurements(measured, REFERENCES).items():
        m = measured[stem]
        assert len(m["settings"]) >= 3 and m["settings"][0] == "pinned", (stem, m["settings"])
        ref = _reference(stem)
        moved = [k for k, v in m["values"].items() if k in ref and v[0] != ref[k]]
        assert not moved, f"{stem}: the pinned measurement is not the committed result at {moved[:3]}"
        for rule, spread, key in rows:
            if rule.check in ("exact", "sign"):
                assert spread == 0.0, f"{stem}: {rule.keys}: an exact key moved ({key})"
                continue
            assert rule.spread == float(f"{spread:.2g}"), f"{stem}: {rule.keys}: {rule.spread} vs measured {spread}"
            assert tuple(rule.settings) == tuple(m["settings"]), f"{stem}: {rule.keys}: settings"


def test_no_tolerance_is_more_than_three_times_its_spread_or_a_stated_floor():
    """A tolerance far above what was measured lets a real change through; where one rests on something else
    (the meaning of a Taylor order, what an export check needs), the rule says so (``floor``, with its why)."""
    for stem, rules in RULES.items():
        for rule in rules:
            if rule.check not in ("rtol", "atol", "decades") or rule.floor:
                continue
            bound = max(3.0 * rule.spread, rg.FLOORS[rule.check])
            assert rule.tol <= bound, f"{stem}: {rule.keys}: tol {rule.tol} above 3 x spread {rule.spread}"


@pytest.mark.parametrize("stem", sorted(RULES))
def test_references_pass_against_themselves_and_every_key_has_a_rule(stem, tmp_path):
    ref = _reference(stem)
    assert ref, f"{stem}: empty reference"
    assert all(rg._rule_for(RULES[stem], k) is not None for k in ref)
    _write(tmp_path, stem, ref)
    report = rg.check_results(tmp_path, REFERENCES, [stem])
    assert report.ok, report.text()
    assert report.checked[stem] == len(ref) + len(RELATIONS.get(stem, []))  # every relation holds on them


@pytest.mark.parametrize("stem", sorted(RULES))
def test_a_result_moved_beyond_its_tolerance_is_reported(stem, tmp_path):
    rows = _numbered(stem)
    by_check = {}
    for key, value, rule in rows:  # one key of every kind of check that occurs in this notebook
        if (rule.check in ("rtol", "atol", "decades", "sign") and isinstance(value, (int, float))
                and not isinstance(value, bool) and value != 0) or rule.check == "exact":
            by_check.setdefault(rule.check, (key, value, rule))
    assert by_check
    for key, value, rule in by_check.values():
        moved = dict(_reference(stem))
        moved[key] = _perturbed(rule, value)
        _write(tmp_path, stem, moved)
        report = rg.check_results(tmp_path, REFERENCES, [stem])
        assert not report.ok and [f.key for f in report.findings] == [key], report.text()
        finding = report.findings[0]
        assert finding.problem == "moved"
        assert f"{stem}: {key}: reference" in report.text() and rule.describe() in report.text()
        assert "regression: " in report.text() and " 1 failed" in report.text()


def test_every_numeric_rule_can_fail():
    """For every rule that compares numbers, a value of one of its keys moved by 1.5 tolerances fails and a value
    moved by half its tolerance passes."""
    rng = random.Random(0)
    for stem, rules in RULES.items():
        ref = _reference(stem)
        for rule in rules:
            keys = [k for k, v in ref.items() if rg._rule_for(rules, k) is rule and isinstance(v, (int, float))
                    and not isinstance(v, bool) and v != 0]
            if rule.check not in ("rtol", "atol", "decades") or not keys:
                continue
            key = rng.choice(keys)
            assert not rg.check_value(rule, _perturbed(rule, ref[key]), ref[key]), (stem, key)
            half = {"rtol": ref[key] * (1 + 0.5 * rule.tol), "atol": ref[key] + 0.5 * rule.tol,
                    "decades": ref[key] * 10.0 ** (0.5 * rule.tol)}[rule.check]
            assert rg.check_value(rule, half, ref[key]), (stem, key)


def test_a_dropped_and_an_unexpected_key_are_reported(tmp_path):
    stem = "02_multiscale"
    ref = dict(_reference(stem))
    dropped = next(k for k in ref if k.endswith("final_loss"))
    del ref[dropped]
    ref["a_new_number"] = 1.0
    _write(tmp_path, stem, ref)
    report = rg.check_results(tmp_path, REFERENCES, [stem])
    problems = {f.key: f.problem for f in report.findings}
    assert problems == {dropped: "missing", "a_new_number": "unexpected"}, report.text()
    assert f"{dropped}: in the reference" in report.text()


def test_missing_results_fail_and_the_command_line_exits_non_zero(tmp_path, capsys):
    assert rg.main(["check", str(tmp_path), "--references", str(REFERENCES), "--notebooks", "00_data"]) == 1
    assert "no results" in capsys.readouterr().out
    _write(tmp_path, "00_data", _reference("00_data"))
    assert rg.main(["check", str(tmp_path), "--references", str(REFERENCES), "--notebooks", "00_data"]) == 0
    assert "00_data: " in capsys.readouterr().out


def test_update_writes_references_atomically_and_refuses_uncovered_keys(tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / rg.TOLERANCES).write_text("nb:\n- keys: ['*.seconds']\n  check: ignore\n  why: time\n"
                                      "- keys: [a.*]\n  check: rtol\n  tol: 0.1\n")
    results = tmp_path / "res"
    _write(results, "nb", {"a": {"x": 1.0, "seconds": 3.0}})
    rg.update_references(results, refs)
    assert json.loads((refs / "nb.json").read_text())["values"] == {"a.x": 1.0}  # ignored keys left out
    assert sorted(p.name for p in refs.iterdir()) == ["nb.json", rg.TOLERANCES]  # no temporary file left
    _write(results, "nb", {"a": {"x": 1.0}, "b": 2})
    with pytest.raises(ValueError, match="no rule in tolerances.yaml covers these keys"):
        rg.update_references(results, refs)
    assert json.loads((refs / "nb.json").read_text())["values"] == {"a.x": 1.0}  # unchanged


def test_spread_is_measured_per_rule_in_its_own_measure(tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / rg.TOLERANCES).write_text("nb:\n- keys: [r]\n  check: rtol\n  tol: 0.1\n"
                                      "- keys: [d]\n  check: decades\n  tol: 1\n- keys: [c]\n  check: atol\n  tol: 5\n")
    for name, values in (("s1", {"r": 1.0, "d": 1e8, "c": 10}), ("s2", {"r": 1.01, "d": 1e9, "c": 12}),
                         ("s3", {"r": 0.995, "d": 3e8, "c": 11})):
        _write(tmp_path / name, "nb", values)
    spread = rg.measure_spread([tmp_path / s for s in ("s1", "s2", "s3")], refs)
    got = {r.keys[0]: s for r, s, _ in spread["nb"]}
    assert got["r"] == pytest.approx(0.015 / 0.995) and got["d"] == pytest.approx(1.0) and got["c"] == 2
    rg._write_spread(refs, spread, {"nb": ["s1", "s2", "s3"]})
    rules = rg.load_rules(refs / rg.TOLERANCES)["nb"]
    assert [r.spread for r in rules] == [0.015, 1.0, 2.0] and rules[0].settings == ("s1", "s2", "s3")


def test_another_machines_runs_are_added_to_the_committed_measurements(tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / rg.TOLERANCES).write_text("nb:\n- keys: [r, q]\n  check: rtol\n  tol: 0.1\n")
    (refs / "nb.json").write_text(json.dumps({"notebook": "nb", "values": {"r": 1.0, "q": 5.0}}))
    for name, values in (("pinned", {"r": 1.0, "q": 5.0}), ("other", {"r": 1.01, "q": 5.0})):
        _write(tmp_path / "a" / name, "nb", values)
    committed = rg.measurements([tmp_path / "a" / s for s in ("pinned", "other")], refs)
    assert committed["nb"]["values"] == {"r": [1.0, 1.01]} and committed["nb"]["identical"] == 1
    for name, values in (("pinned", {"r": 1.0, "q": 5.2}), ("avx", {"r": 0.98, "q": 5.2})):
        _write(tmp_path / "b" / name, "nb", values)
    merged = rg.add_machine(committed, [tmp_path / "b" / s for s in ("pinned", "avx")], "amd", refs)["nb"]
    assert merged["settings"] == ["pinned", "other", "amd/pinned", "amd/avx"]
    assert merged["values"] == {"r": [1.0, 1.01, 1.0, 0.98], "q": [5.0, 5.0, 5.2, 5.2]}  # q: the reference twice
    again = rg.add_machine({"nb": merged}, [tmp_path / "b" / s for s in ("pinned", "avx")], "amd", refs)["nb"]
    assert again == merged  # the machine's runs replace its earlier ones
    (rule, spread, key), = rg.spread_from_measurements({"nb": merged}, refs)["nb"]
    assert key == "q" and spread == pytest.approx(0.2 / 5.0)  # the largest move over both machines


def test_suggested_tolerances_are_twice_the_spread_rounded_up_with_floors():
    rtol, dec = rg.Rule(("*",), "rtol", 1.0), rg.Rule(("*",), "decades", 1.0)
    assert rg.suggest_tolerance(rtol, 0.146) == 0.3 and rg.suggest_tolerance(rtol, 0.15) == 0.3
    assert rg.suggest_tolerance(rtol, 1e-15) == 1e-9 and rg.suggest_tolerance(dec, 0.0) == 0.05
    assert rg.suggest_tolerance(rg.Rule(("*",), "exact"), 0.0) is None


# ---- plausible regressions of the headline numbers fail --------------------------------------------------------

def _scaled(prefix: str, factor: float):
    return lambda ref: {k: (v * factor if k.startswith(prefix) and isinstance(v, float) else v) for k, v in ref.items()}


def _scaled_where(contains: str, factor: float):
    return lambda ref: {k: (v * factor if contains in k and isinstance(v, float) else v) for k, v in ref.items()}


def _set(key: str, value):
    return lambda ref: {**ref, key: value(ref) if callable(value) else value}


#: Changes a broken engine could make, each applied to a copy of the committed results, and what must report it.
REGRESSIONS = {
    "Diff All's relative error up to 20 %": (
        "03_superresolution", _set("diff_all.rel_error", 0.20), "diff_all.rel_error < 0.5 * no_diff.rel_error"),
    "Diff All's losses x 50": ("03_superresolution", _scaled("diff_all.losses.", 50.0), "diff_all.losses."),
    "Diff All from the authors' start working (25 %) instead of failing": (
        "03_superresolution", _set("corrections.diff_all, as_coded start.rel_error", 0.25),
        "corrections.diff_all, as_coded start.rel_error"),
    "differentiating all of the last CG iterations no better than 70 %": (
        "03_superresolution", _set("partial.1.rel_error", lambda ref: 0.6 * ref["partial.0.7.rel_error"]),
        "partial.1.rel_error <= 0.5 * partial.0.7.rel_error"),
    "the implicit Jacobian as bad as No Diff": (
        "03_superresolution", _set("implicit.rel_error", lambda ref: ref["no_diff.rel_error"]),
        "implicit.rel_error < 0.5 * no_diff.rel_error"),
    "our Table 1 factors x 3": ("01_ad_costs", _scaled_where(".factors_median.", 3.0), ".factors_median."),
    "the authors' Fig 3 value -964 turned into -0.5": (
        "02_multiscale", _set("prediction.summary.gauss_newton_as_coded.max_grad", -0.5),
        "prediction.summary.gauss_newton_as_coded.max_grad"),
    "the global driver losing the hand turned by 135° (its search no longer finds the basin)": (
        "05_peers", _set("capture.global.9.success", False), "capture.global.9.success"),
    "the global driver's result on the MRI slice 3 times further from the motion (still recovered)": (
        "05_peers", _scaled("capture_images.mri.global.6.param_error", 3.0), "capture_images.mri.global.6.param_error"),
    "the global driver losing a 3D rotation": (
        "05_peers", _set("capture_3d.global.1.success", False), "capture_3d.global.1.success"),
    "Diff All's ensemble median up to 20 %": (
        "03_superresolution", _set("ensembles.projections.diff_all.median", 0.20),
        "ensembles.projections.diff_all.median"),
    "one Diff All member as bad as No Diff": (
        "03_superresolution", _set("ensembles.projections.diff_all.max", lambda ref: ref["no_diff.rel_error"]),
        "ensembles.projections.diff_all.max < 0.5 * no_diff.rel_error"),
    "the implicit Jacobian far above Diff All's ensemble": (
        "03_superresolution", _set("implicit.rel_error", lambda ref: 1.3 * ref["ensembles.projections.diff_all.max"]),
        "implicit.rel_error <= 1.2 * ensembles.projections.diff_all.max"),
    "a member with all of the last CG iterations differentiated no better than half of 70 %": (
        "03_superresolution",
        _set("ensembles.partial.1.max", lambda ref: 0.6 * ref["ensembles.partial.0.7.min"]),
        "ensembles.partial.1.max <= 0.5 * ensembles.partial.0.7.min"),
    "the authors' start's Diff All ensemble working (median 25 %)": (
        "03_superresolution", _set("ensembles.corrections.diff_all, as_coded start.median", 0.25),
        "ensembles.corrections.diff_all, as_coded start.median"),
    "the 100-iteration inexact ensemble 5 % wider": (
        "03_superresolution", _scaled("ensembles.inexact.100.max", 1.05), "ensembles.inexact.100.max"),
    "the predictor-corrector needing more Hessians than the traditional method": (
        "02_multiscale", _set("predictor_corrector.n_hessians", lambda ref: ref["traditional.n_hessians"] + 4),
        "predictor_corrector.n_hessians <= traditional.n_hessians"),
}


@pytest.mark.parametrize("change", sorted(REGRESSIONS))
def test_a_plausible_regression_of_a_headline_number_fails(change, tmp_path):
    stem, apply, named = REGRESSIONS[change]
    _write(tmp_path, stem, apply(dict(_reference(stem))))
    report = rg.check_results(tmp_path, REFERENCES, [stem])
    assert not report.ok, f"{change}: passed the regression"
    assert named in report.text(), report.text()


def test_relations_parse_evaluate_and_say_what_they_need():
    rel = rg.Relation.parse("a.x < 0.5 * b.y", "why")
    assert (rel.left, rel.op, rel.factor, rel.right) == ("a.x", "<", 0.5, "b.y")
    assert rel.evaluate({"a.x": 1.0, "b.y": 3.0}) == (True, "a.x = 1, b.y = 3")
    assert rel.evaluate({"a.x": 2.0, "b.y": 3.0})[0] is False
    assert rel.evaluate({"a.x": 1.0}) == (False, "no number at b.y")
    assert rg.Relation.parse("n <= m").evaluate({"n": 4, "m": 4})[0]
    with pytest.raises(ValueError, match="a relation reads"):
        rg.Relation.parse("a.x is below b.y")
