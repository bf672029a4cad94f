"""The GPU check script: its tolerances are the results regression's, and it stops clearly without CUDA."""
import importlib.util
from pathlib import Path

import pytest
import torch

from tools import regression

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tolerances_are_the_regression_rules(gpu_check):
    rules = regression.load_rules(ROOT / "tests" / "references" / regression.TOLERANCES)
    for name, (check, tol) in gpu_check.TOLERANCES.items():
        stem, key = name.split(":")
        rule = regression._rule_for(rules[stem], key)
        assert (rule.check, rule.tol) == (check, tol), name


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_without_cuda_it_stops_with_a_clear_message(gpu_check, capsys, tmp_path):
    assert gpu_check.main(["--output", str(tmp_path / "g.json")]) == 2
    assert "no CUDA device here" in capsys.readouterr().err
    assert gpu_check.main(["--devices", "tpu", "cpu"]) == 2


def test_comparison_fails_on_a_real_difference(gpu_check):
    a = {"no_diff.rel_error": 0.40, "diff_all.rel_error": 0.15}
    assert gpu_check.compare(a, dict(a), "03_superresolution") == []
    worse = {**a, "no_diff.rel_error": 0.40 * (1 + 2e-5)}
    assert gpu_check.compare(a, worse, "03_superresolution")[0].startswith("no_diff.rel_error")
    J = torch.ones(3, 2, dtype=torch.float64)
    assert gpu_check.compare({"full.x.jacobian": J}, {"full.x.jacobian": J * (1 + 1e-3)}, "full")
