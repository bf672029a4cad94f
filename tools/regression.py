r"""Tolerance-based regression test of the notebooks' results JSON against committed references.

nbval compares the text of stored outputs exactly, so the text a notebook prints holds only digits that are stable
across machines. The numbers that round-off moves (a ratio of two round-off-sized gradient norms, a
Levenberg-Marquardt run stopped after ten unconverged iterations, ...) are checked here instead: each notebook's
results JSON, flattened to ``{"a.b.0.c": value}``, against ``tests/references/<notebook>.json``, key by key, with
the first rule of ``tests/references/tolerances.yaml`` whose pattern matches the key.

A rule is ``{keys: [fnmatch patterns], check: KIND, tol: number, spread: number, why: text}`` with KIND one of

``exact``
    equal values (strings, booleans, integers, configuration);
``rtol``
    :math:`|x - x_{ref}| \le \mathrm{tol}\,|x_{ref}| + \mathrm{atol}` (``atol`` optional, default 0);
``atol``
    :math:`|x - x_{ref}| \le \mathrm{tol}`;
``decades``
    same sign and :math:`|\log_{10}|x| - \log_{10}|x_{ref}|| \le \mathrm{tol}` (an order of magnitude: tol = 1);
``sign``
    the same sign (negative, zero, positive);
``ignore``
    not compared (wall-clock times, memory), with the reason in ``why``.

A notebook's list may also hold **relations**, ``{relation: "A < 0.5 * B", why: text}``: a named inequality
between two of its results (``<``, ``<=``, ``>``, ``>=``, an optional factor on the right), checked on the results
themselves, not against the reference. They state what the results must show whatever round-off does to each
number (Diff All well below No Diff; the predictor-corrector needing no more Hessians than the traditional
method), and a result that breaks one fails, naming the relation.

``spread`` is the largest difference, in the rule's own measure, that :func:`measure_spread` found between runs
of the same notebooks under different numeric settings on one machine (``settings`` lists them); every tolerance
must cover its spread. Every key of a result must match a rule, and the keys of result and reference must agree,
so a new or vanished number fails until the maintainer regenerates the references (``make notebooks``).

Command line::

    python -m tools.regression check RESULTS_DIR [--references tests/references]
    python -m tools.regression update RESULTS_DIR [--references tests/references]
    python -m tools.regression spread RUN_DIR RUN_DIR [RUN_DIR ...] [--write]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import operator
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CHECKS", "FLOORS", "Finding", "Relation", "Report", "Rule", "add_machine", "check_results", "check_value",
           "flatten", "load_relations", "load_rules", "measure_spread", "suggest_tolerance", "update_references"]

CHECKS = ("exact", "rtol", "atol", "decades", "sign", "ignore")
REFERENCES = Path("tests/references")
TOLERANCES = "tolerances.yaml"


@dataclass(frozen=True)
class Rule:
    """One tolerance rule: the keys it covers (fnmatch patterns over flattened keys) and how they are compared."""

    keys: tuple[str, ...]
    check: str
    tol: float | None = None
    atol: float = 0.0
    spread: float | None = None
    settings: tuple[str, ...] = ()
    why: str = ""
    #: The tolerance is a stated floor (its ``why`` says what it rests on), not a multiple of the measured spread.
    floor: bool = False

    def __post_init__(self) -> None:
        if self.check not in CHECKS:
            raise ValueError(f"check must be one of {', '.join(CHECKS)}, got {self.check!r} (keys {self.keys})")
        if not self.keys or not all(isinstance(k, str) and k for k in self.keys):
            raise ValueError(f"keys must be a non-empty list of patterns, got {self.keys!r}")
        needs_tol = self.check in ("rtol", "atol", "decades")
        if needs_tol and not (isinstance(self.tol, (int, float)) and self.tol >= 0):
            raise ValueError(f"check {self.check!r} needs tol >= 0 (keys {list(self.keys)}), got {self.tol!r}")
        if not needs_tol and self.tol is not None:
            raise ValueError(f"check {self.check!r} takes no tol (keys {list(self.keys)})")
        if self.check == "ignore" and not self.why:
            raise ValueError(f"an ignore rule says why (keys {list(self.keys)})")
        if self.floor and not self.why:
            raise ValueError(f"a stated floor says why (keys {list(self.keys)})")

    def matches(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.keys)

    def describe(self) -> str:
        if self.check == "rtol":
            return f"rtol {self.tol:.0e}" + (f" + atol {self.atol:.0e}" if self.atol else "")
        if self.check == "atol":
            return f"atol {self.tol:g}"
        if self.check == "decades":
            return f"within {self.tol:g} decade(s)"
        return self.check

    def as_dict(self) -> dict:
        out: dict = {"keys": list(self.keys), "check": self.check}
        if self.tol is not None:
            out["tol"] = self.tol
        if self.atol:
            out["atol"] = self.atol
        if self.spread is not None:
            out["spread"] = self.spread
        if self.settings:
            out["settings"] = list(self.settings)
        if self.floor:
            out["floor"] = True
        if self.why:
            out["why"] = self.why
        return out


_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_RELATION = re.compile(r"\s*(\S+)\s*(<=|<|>=|>)\s*(?:([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?(\S+)\s*")


@dataclass(frozen=True)
class Relation:
    """A named inequality between two results of one notebook: ``left op factor * right``."""

    text: str
    left: str
    op: str
    right: str
    factor: float = 1.0
    why: str = ""

    @classmethod
    def parse(cls, text: str, why: str = "", where: str = "") -> Relation:
        match = _RELATION.fullmatch(text or "")
        if match is None:
            raise ValueError(f"{where}: a relation reads 'KEY < [FACTOR *] KEY' (<, <=, >, >=), got {text!r}")
        left, op, factor, right = match.groups()
        return cls(text.strip(), left, op, right, float(factor) if factor else 1.0, why)

    def evaluate(self, flat: Mapping) -> tuple[bool, str]:
        """Whether the relation holds on the flattened results ``flat``, and the values it compared."""
        missing = [k for k in (self.left, self.right) if not _is_number(flat.get(k))]
        if missing:
            return False, f"no number at {', '.join(missing)}"
        a, b = flat[self.left], flat[self.right]
        return bool(_OPS[self.op](a, self.factor * b)), f"{self.left} = {a:.6g}, {self.right} = {b:.6g}"


def load_relations(path: Path) -> dict[str, list[Relation]]:
    """``{notebook stem: [Relation, ...]}`` from the ``relation`` entries of a tolerances YAML file."""
    import yaml

    table = yaml.safe_load(Path(path).read_text()) or {}
    out = {}
    for stem, entries in table.items():
        rows = []
        for i, e in enumerate(entries or []):
            if isinstance(e, Mapping) and "relation" in e:
                unknown = set(e) - {"relation", "why"}
                if unknown:
                    raise ValueError(f"{path}: {stem}[{i}]: unknown field(s) {sorted(unknown)} in a relation")
                rows.append(Relation.parse(e["relation"], e.get("why", ""), f"{path}: {stem}[{i}]"))
        out[stem] = rows
    return out


def _rule(entry: Mapping, where: str) -> Rule:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: a rule must be a mapping, got {entry!r}")
    unknown = set(entry) - {"keys", "check", "tol", "atol", "spread", "settings", "why", "floor"}
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)} in rule {dict(entry)}")
    keys = entry.get("keys")
    keys = (keys,) if isinstance(keys, str) else tuple(keys or ())
    return Rule(keys=keys, check=entry.get("check", ""), tol=entry.get("tol"), atol=float(entry.get("atol", 0.0)),
                spread=entry.get("spread"), settings=tuple(entry.get("settings", ())), why=entry.get("why", ""),
                floor=bool(entry.get("floor", False)))


def load_rules(path: Path) -> dict[str, list[Rule]]:
    """``{notebook stem: [Rule, ...]}`` from a tolerances YAML file (first matching rule wins)."""
    import yaml

    table = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(table, Mapping):
        raise ValueError(f"{path} must map notebook names to lists of rules")
    return {stem: [_rule(e, f"{path}: {stem}[{i}]") for i, e in enumerate(entries or [])
                   if not (isinstance(e, Mapping) and "relation" in e)]
            for stem, entries in table.items()}


def flatten(results, prefix: str = "") -> dict:
    """Every leaf of a results JSON as ``{"a.b.0.c": value}`` (dictionary keys and list indices joined by ``.``)."""
    flat: dict = {}
    if isinstance(results, Mapping):
        items: Iterable = ((str(k), v) for k, v in results.items())
    elif isinstance(results, list):
        items = ((str(i), v) for i, v in enumerate(results))
    else:
        return {prefix[:-1]: results}
    empty = True
    for key, value in items:
        empty = False
        flat.update(flatten(value, f"{prefix}{key}."))
    if empty and prefix:
        flat[prefix[:-1]] = results  # an empty list or mapping is a value of its own
    return flat


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def difference(rule: Rule, value, reference) -> float:
    """The difference of ``value`` from ``reference`` in the rule's measure (``inf`` where not comparable)."""
    if rule.check in ("exact", "ignore") or not (_is_number(value) and _is_number(reference)):
        same = value == reference or (_is_number(value) and _is_number(reference) and math.isnan(value)
                                      and math.isnan(reference))
        return 0.0 if same else math.inf
    if math.isnan(value) or math.isnan(reference):
        return 0.0 if math.isnan(value) and math.isnan(reference) else math.inf
    if rule.check == "sign":
        return 0.0 if _sign(value) == _sign(reference) else math.inf
    if rule.check == "decades":
        if value == reference:
            return 0.0
        if _sign(value) != _sign(reference) or value == 0 or reference == 0:
            return math.inf
        return abs(math.log10(abs(value)) - math.log10(abs(reference)))
    delta = abs(value - reference)
    if rule.check == "atol":
        return delta
    # rtol: the relative difference beyond the absolute allowance
    excess = max(delta - rule.atol, 0.0)
    if excess == 0.0:
        return 0.0
    return excess / abs(reference) if reference != 0 else math.inf


def check_value(rule: Rule, value, reference) -> bool:
    """Whether ``value`` agrees with ``reference`` under ``rule``."""
    if rule.check == "ignore":
        return True
    d = difference(rule, value, reference)
    return d == 0.0 if rule.tol is None else d <= rule.tol


@dataclass(frozen=True)
class Finding:
    """A key that failed: what was expected, what came, and by which rule."""

    notebook: str
    key: str
    problem: str  # "moved", "missing", "unexpected", "no rule", "no results"
    reference: object = None
    value: object = None
    difference: float | None = None
    rule: Rule | None = None
    detail: str = ""

    def line(self) -> str:
        ref, got = _short(self.reference), _short(self.value)
        if self.problem == "relation":
            return f"{self.notebook}: relation '{self.key}' does not hold: {self.detail}"
        if self.problem == "moved":
            d = "" if self.difference is None or math.isinf(self.difference) else f" (difference {self.difference:.2e})"
            return f"{self.notebook}: {self.key}: reference {ref}, got {got}{d}; allowed: {self.rule.describe()}"
        if self.problem == "missing":
            return f"{self.notebook}: {self.key}: in the reference ({ref}) but not in the results"
        if self.problem == "unexpected":
            return f"{self.notebook}: {self.key}: in the results ({got}) but not in the reference"
        if self.problem == "no rule":
            return f"{self.notebook}: {self.key}: no rule in {TOLERANCES} covers this key"
        return f"{self.notebook}: {self.problem}"


def _short(x) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    text = json.dumps(x)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Report:
    """The outcome of :func:`check_results`: per notebook the number of keys compared, and every finding."""

    checked: dict[str, int]
    ignored: dict[str, int]
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.findings

    def text(self) -> str:
        lines = []
        for stem in self.checked:
            bad = [f for f in self.findings if f.notebook == stem]
            mark = "ok" if not bad else f"{len(bad)} FAILED"
            lines.append(f"{stem}: {self.checked[stem]} numbers compared, {self.ignored[stem]} ignored: {mark}")
            lines += ["  " + f.line() for f in bad]
        moved = sum(f.problem in ("moved", "relation") for f in self.findings)
        lines.append(f"regression: {sum(self.checked.values()) - moved} passed, {len(self.findings)} failed")
        return "\n".join(lines)


def _rule_for(rules: Sequence[Rule], key: str) -> Rule | None:
    return next((r for r in rules if r.matches(key)), None)


def compare(stem: str, results: Mapping, reference: Mapping, rules: Sequence[Rule]) -> tuple[int, int, list[Finding]]:
    """Compare one notebook's flattened results with its flattened reference; returns (checked, ignored, findings)."""
    findings: list[Finding] = []
    checked = ignored = 0
    for key in sorted(set(results) | set(reference)):
        rule = _rule_for(rules, key)
        if rule is None:
            findings.append(Finding(stem, key, "no rule", reference.get(key), results.get(key)))
            continue
        if rule.check == "ignore":
            ignored += 1
            continue
        if key not in results:
            findings.append(Finding(stem, key, "missing", reference[key], None, rule=rule))
        elif key not in reference:
            findings.append(Finding(stem, key, "unexpected", None, results[key], rule=rule))
        else:
            checked += 1
            if not check_value(rule, results[key], reference[key]):
                findings.append(Finding(stem, key, "moved", reference[key], results[key],
                                        difference(rule, results[key], reference[key]), rule))
    return checked, ignored, findings


def check_results(results_dir: Path, references: Path = REFERENCES,
                  notebooks: Sequence[str] | None = None) -> Report:
    """Check ``results_dir/<stem>.json`` against ``references/<stem>.json`` for every notebook with rules."""
    rules = load_rules(Path(references) / TOLERANCES)
    relations = load_relations(Path(references) / TOLERANCES)
    checked, ignored, findings = {}, {}, []
    for stem in notebooks or sorted(rules):
        ref_path, res_path = Path(references) / f"{stem}.json", Path(results_dir) / f"{stem}.json"
        checked[stem] = ignored[stem] = 0
        if not ref_path.is_file():
            findings.append(Finding(stem, "", f"no reference {ref_path} (run `make notebooks`)"))
            continue
        if not res_path.is_file():
            findings.append(Finding(stem, "", f"no results {res_path} (did the notebook run?)"))
            continue
        reference = json.loads(ref_path.read_text())["values"]
        flat = flatten(json.loads(res_path.read_text()))
        n, k, found = compare(stem, flat, reference, rules.get(stem, []))
        for relation in relations.get(stem, []):
            holds, detail = relation.evaluate(flat)
            n += 1
            if not holds:
                found.append(Finding(stem, relation.text, "relation",
                                     detail=detail + (f" ({relation.why})" if relation.why else "")))
        checked[stem], ignored[stem] = n, k
        findings += found
    return Report(checked, ignored, tuple(findings))


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def update_references(results_dir: Path, references: Path = REFERENCES) -> list[Path]:
    """Write ``references/<stem>.json`` from ``results_dir`` for every notebook with rules (ignored keys left
    out, so that timings do not churn the references). Every key must be covered by a rule."""
    rules = load_rules(Path(references) / TOLERANCES)
    written, uncovered = [], []
    for stem in sorted(rules):
        res_path = Path(results_dir) / f"{stem}.json"
        if not res_path.is_file():
            raise FileNotFoundError(f"no results {res_path}: run the notebook first")
        flat = flatten(json.loads(res_path.read_text()))
        values = {}
        for key, value in flat.items():
            rule = _rule_for(rules[stem], key)
            if rule is None:
                uncovered.append(f"{stem}: {key}")
            elif rule.check != "ignore":
                values[key] = value
        if not uncovered:
            written.append((Path(references) / f"{stem}.json", values))
    if uncovered:
        raise ValueError(f"no rule in {TOLERANCES} covers these keys (add one):\n  " + "\n  ".join(uncovered))
    for path, values in written:
        _write_atomic(path, json.dumps({"notebook": path.stem, "values": values}, indent=0, sort_keys=True) + "\n")
    return [p for p, _ in written]


#: The folder of the committed measurements behind the spreads: ``<references>/spread/<notebook>.json``.
MEASUREMENTS = "spread"


def measurements(run_dirs: Sequence[Path], references: Path = REFERENCES) -> dict[str, dict]:
    """The values behind the spreads: for every notebook with results in at least two of ``run_dirs`` (one folder
    per numeric setting), ``{"notebook", "settings": [folder names], "values": {key: [value per setting]},
    "identical": n}``, where ``values`` holds every key a rule compares (not ``ignore``) whose value is not the same
    under every setting, and ``identical`` counts the others. What ``make spread SPREAD_WRITE=1`` commits under
    ``<references>/spread/`` and :func:`spread_from_measurements` reads."""
    rules = load_rules(Path(references) / TOLERANCES)
    out = {}
    for stem, stem_rules in rules.items():
        present = [Path(d) for d in run_dirs if (Path(d) / f"{stem}.json").is_file()]
        if len(present) < 2:
            continue
        runs = [flatten(json.loads((d / f"{stem}.json").read_text())) for d in present]
        values, identical = {}, 0
        for key in sorted(set().union(*runs)):
            rule = _rule_for(stem_rules, key)
            if rule is None or rule.check == "ignore":
                continue
            got = [r.get(key) for r in runs]
            if all(v == got[0] for v in got):
                identical += 1
            else:
                values[key] = got
        out[stem] = {"notebook": stem, "settings": [d.name for d in present], "values": values,
                     "identical": identical}
    return out


def spread_from_measurements(measured: Mapping[str, Mapping], references: Path = REFERENCES,
                             ) -> dict[str, list[tuple[Rule, float, str]]]:
    """For every rule, the largest difference (in the rule's own measure) between any two settings of the
    measurements (:func:`measurements`) and the key where it occurs: ``{stem: [(rule, spread, key), ...]}``
    (spread 0 and key ``""`` where no key of the rule moved)."""
    rules = load_rules(Path(references) / TOLERANCES)
    out: dict = {}
    for stem, m in measured.items():
        stem_rules = rules[stem]
        worst: dict[int, tuple[float, str]] = {}
        for key, values in m["values"].items():
            rule = _rule_for(stem_rules, key)
            if rule is None or rule.check == "ignore":
                continue
            i = stem_rules.index(rule)
            probe = Rule(keys=("*",), check={"exact": "exact", "sign": "sign"}.get(rule.check, rule.check),
                         tol=None if rule.check in ("exact", "sign") else 0.0, atol=rule.atol)
            d = max(max(difference(probe, a, b), difference(probe, b, a)) for a in values for b in values)
            if d > worst.get(i, (-1.0, ""))[0]:
                worst[i] = (d, key)
        out[stem] = [(r, *worst.get(i, (0.0, ""))) for i, r in enumerate(stem_rules) if r.check != "ignore"]
    return out


def measure_spread(run_dirs: Sequence[Path], references: Path = REFERENCES) -> dict[str, list[tuple[Rule, float,
                                                                                                    str]]]:
    """For every rule, the largest difference (in the rule's measure) between any two runs of a notebook in
    ``run_dirs`` (each holding ``<stem>.json``, e.g. one folder per numeric setting) and the key where it occurs.

    Returns ``{stem: [(rule, spread, key), ...]}``.
    """
    if len(run_dirs) < 2:
        raise ValueError("measure_spread needs at least two run folders")
    return spread_from_measurements(measurements(run_dirs, references), references)


def add_machine(committed: Mapping[str, Mapping], run_dirs: Sequence[Path], machine: str,
                references: Path = REFERENCES) -> dict[str, dict]:
    """The committed measurements with the runs of ``run_dirs`` (one folder per setting, on another machine) added
    as settings ``<machine>/<folder>``: the pinned run of the machine that wrote the references stays first, and
    the spread of every rule is then the largest difference over both machines' settings.

    A key the committed measurements do not list did not move over their settings, so its value under each of them
    is the committed reference; the new runs are read in full. Settings of the same ``machine`` already committed are
    replaced (measuring a machine again does not count it twice)."""
    rules = load_rules(Path(references) / TOLERANCES)
    out = {}
    for stem, old in committed.items():
        present = [Path(d) for d in run_dirs if (Path(d) / f"{stem}.json").is_file()]
        if not present:
            out[stem] = dict(old)
            continue
        keep = [i for i, name in enumerate(old["settings"]) if not name.startswith(f"{machine}/")]  # measured again
        old = {"settings": [old["settings"][i] for i in keep],
               "values": {k: [v[i] for i in keep] for k, v in old["values"].items()}}
        ref = json.loads((Path(references) / f"{stem}.json").read_text())["values"]
        runs = [flatten(json.loads((d / f"{stem}.json").read_text())) for d in present]
        n_old = len(old["settings"])
        values, identical = {}, 0
        for key in sorted(set(ref).union(*runs)):
            rule = _rule_for(rules[stem], key)
            if rule is None or rule.check == "ignore":
                continue
            got = list(old["values"].get(key, [ref.get(key)] * n_old)) + [r.get(key) for r in runs]
            if all(v == got[0] for v in got):
                identical += 1
            else:
                values[key] = got
        out[stem] = {"notebook": stem, "settings": list(old["settings"]) + [f"{machine}/{d.name}" for d in present],
                     "values": values, "identical": identical}
    return out


def load_measurements(references: Path = REFERENCES) -> dict[str, dict]:
    """The committed measurements, ``{stem: measurement}`` (:func:`measurements`), from ``<references>/spread/``."""
    folder = Path(references) / MEASUREMENTS
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def _write_measurements(references: Path, measured: Mapping[str, Mapping]) -> None:
    folder = Path(references) / MEASUREMENTS
    folder.mkdir(parents=True, exist_ok=True)
    for stem, m in measured.items():
        _write_atomic(folder / f"{stem}.json", json.dumps(m, indent=0, sort_keys=True) + "\n")


#: Floors of :func:`suggest_tolerance` where the measured spread is at round-off level.
FLOORS = {"rtol": 1e-9, "atol": 1e-11, "decades": 0.05}


def suggest_tolerance(rule: Rule, spread: float, factor: float = 2.0) -> float | None:
    """The tolerance the committed rules were derived by: ``factor`` times the measured ``spread``, rounded up to
    one significant digit, at least the floor of :data:`FLOORS` (``None`` for checks without a tolerance or an
    infinite spread)."""
    if rule.check not in FLOORS or not math.isfinite(spread):
        return None
    x = factor * spread
    if x <= 0:
        return FLOORS[rule.check]
    exponent = math.floor(math.log10(x))
    mantissa = math.ceil(round(x / 10.0 ** exponent, 9))
    return max(FLOORS[rule.check], float(f"{mantissa}e{exponent}"))


def _write_spread(references: Path, spread: Mapping, settings: Mapping[str, Sequence[str]]) -> None:
    """Record each rule's measured spread, and the settings (run folders) it was measured over per notebook."""
    import yaml

    path = Path(references) / TOLERANCES
    rules = load_rules(path)
    relations = load_relations(path)
    measured = {(stem, r.keys): s for stem, rows in spread.items() for r, s, _ in rows}
    table = {}
    for stem, stem_rules in rules.items():
        entries = []
        for r in stem_rules:
            d = r.as_dict()
            if (stem, r.keys) in measured and r.check not in ("ignore",):
                d["spread"] = float(f"{measured[stem, r.keys]:.2g}")
                d["settings"] = list(settings[stem])
            entries.append(d)
        table[stem] = entries + [{"relation": r.text, **({"why": r.why} if r.why else {})}
                                 for r in relations.get(stem, [])]
    header = "".join(line + "\n" for line in path.read_text().splitlines() if line.startswith("#"))
    text = yaml.safe_dump(table, sort_keys=False, width=120, allow_unicode=True, default_flow_style=None)
    _write_atomic(path, header + text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.regression", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, text in (("check", "compare results with the references"),
                       ("update", "write the references from results (after an intended change)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("results", type=Path)
        p.add_argument("--references", type=Path, default=REFERENCES)
        if name == "check":
            p.add_argument("--notebooks", default=None, help="comma-separated notebook stems (default: all)")
    sp = sub.add_parser("spread", help="measure the spread of results over runs under different settings")
    sp.add_argument("runs", type=Path, nargs="+")
    sp.add_argument("--references", type=Path, default=REFERENCES)
    sp.add_argument("--write", action="store_true", help="record the measured spread in the tolerances file")
    sp.add_argument("--machine", default=None,
                    help="the runs are another machine's: add them to the committed measurements as <machine>/<run>")
    args = ap.parse_args(argv)
    if args.cmd == "check":
        report = check_results(args.results, args.references, args.notebooks.split(",") if args.notebooks else None)
        print(report.text())
        return 0 if report.ok else 1
    if args.cmd == "update":
        for path in update_references(args.results, args.references):
            print(f"wrote {path}")
        return 0
    if args.machine:
        measured = add_machine(load_measurements(args.references), args.runs, args.machine, args.references)
    else:
        measured = measurements(args.runs, args.references)
    spread = spread_from_measurements(measured, args.references)
    status = 0
    for stem, rows in spread.items():
        print(stem)
        for rule, s, key in rows:
            tol = rule.tol if rule.tol is not None else 0.0
            ok = s <= tol if rule.check not in ("exact", "sign") else s == 0.0
            status |= not ok
            hint = suggest_tolerance(rule, s)
            print(f"  {'ok ' if ok else 'TOO TIGHT'} {rule.check:8s} tol {tol:<9.3g} spread {s:<9.3g} "
                  f"{'' if hint is None else f'(2 x spread: {hint:.1g}) '}{', '.join(rule.keys)[:60]}  (worst: {key})")
    if args.write:
        _write_measurements(args.references, measured)
        _write_spread(args.references, spread, {stem: m["settings"] for stem, m in measured.items()})
    return status


if __name__ == "__main__":
    sys.exit(main())
