"""The numeric settings: one file read alike by make and by Python, every value overridable from the environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import numerics

ROOT = Path(__file__).resolve().parents[1]


def test_the_settings_file_pins_threads_mkl_and_aten():
    on_avx2 = numerics.defaults(conditions={"CPU_AVX2": "yes"})
    elsewhere = numerics.defaults(conditions={"CPU_AVX2": ""})
    assert on_avx2["OMP_NUM_THREADS"] == "1" and on_avx2["MKL_CBWR"] == "COMPATIBLE"
    assert on_avx2["ATEN_CPU_CAPABILITY"] == "avx2" and "ATEN_CPU_CAPABILITY" not in elsewhere
    assert numerics.apply_defaults({})["MKL_NUM_THREADS"] == numerics.apply_defaults({})["OMP_NUM_THREADS"]


def test_the_environment_wins_and_references_follow_it():
    env = {"OMP_NUM_THREADS": "2", "MKL_CBWR": "AVX"}
    got = numerics.apply_defaults(env)
    assert got["OMP_NUM_THREADS"] == "2" and got["MKL_NUM_THREADS"] == "2" and got["MKL_CBWR"] == "AVX"
    assert env["OPENBLAS_NUM_THREADS"] == "1"  # unset ones are filled in


def test_malformed_settings_are_refused(tmp_path):
    bad = tmp_path / "n.mk"
    for text, match in (("X = 1\n", "expected NAME"), ("ifeq ($(A),yes)\nX ?= 1\n", "ifeq without endif"),
                        ("endif\n", "endif without ifeq"), ("X ?= $(Y)\n", "only \\$\\(NAME\\)")):
        bad.write_text(text)
        with pytest.raises(ValueError, match=match):
            numerics.defaults(bad, conditions={})


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_exports_what_python_applies():
    env = {k: v for k, v in os.environ.items() if k not in numerics.defaults() and not k.startswith("MAKE")}
    env["OMP_NUM_THREADS"] = "3"
    out = subprocess.run(["make", "-s", "--no-print-directory", "numerics"], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    made = dict(line.split("=", 1) for line in out.split())
    assert made == numerics.apply_defaults({"OMP_NUM_THREADS": "3"}) and made["MKL_NUM_THREADS"] == "3"


def test_simpleitk_runs_with_the_pinned_thread_count():
    # page 05's SimpleITK registrations change with ITK's global thread count (their pyramid's filters follow it),
    # so a run must not take it from the machine's cores
    pytest.importorskip("SimpleITK")
    pinned = numerics.defaults()["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"]
    env = {k: v for k, v in os.environ.items() if k != "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"}
    numerics.apply_defaults(env)
    out = subprocess.run([sys.executable, "-c", "import SimpleITK as s; "
                          "print(s.ProcessObject.GetGlobalDefaultNumberOfThreads())"],
                         env=env, check=True, capture_output=True, text=True).stdout
    assert pinned == "2" and out.strip() == pinned
