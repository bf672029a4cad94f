"""The shared argument checks (imreg_lib._checks): what each accepts and rejects, and what its message says."""

import numpy as np
import pytest
import torch

from imreg_lib import _checks

NAN, INF = float("nan"), float("inf")


# --- integer -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, minimum", [(1, 1), (7, 1), (0, 0), (2, 2), (10**30, 4)])
def test_integer_accepts(value, minimum):
    out = _checks.integer("k", value, minimum)
    assert out == value and type(out) is int


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 1.0, 2.5, "3", None, np.int64(3), np.int32(3),
                                   torch.tensor(3), [3], NAN])
def test_integer_rejects_non_integers(value):
    with pytest.raises(ValueError, match=r"^k must be a positive integer, got "):
        _checks.integer("k", value)


@pytest.mark.parametrize("minimum, words", [(1, "a positive integer"), (0, "a non-negative integer"),
                                            (2, "an integer >= 2"), (4, "an integer >= 4"), (-3, "an integer >= -3")])
def test_integer_message_names_the_bound(minimum, words):
    with pytest.raises(ValueError, match=f"^n_runs must be {words}, got {minimum - 1}$"):
        _checks.integer("n_runs", minimum - 1, minimum)


def test_integer_allowed_overrides_the_words():
    with pytest.raises(ValueError, match=r"^cg_iters must be an integer >= 0, got -1$"):
        _checks.integer("cg_iters", -1, 0, allowed="an integer >= 0")


def test_integer_numpy_scalars_only_when_asked():
    out = _checks.integer("seed", np.int64(3), 0, numpy=True)
    assert out == 3 and type(out) is int
    assert _checks.integer("seed", np.uint8(0), 0, numpy=True) == 0
    for bad in (np.int64(-1), np.bool_(True), True, np.float64(3.0)):
        with pytest.raises(ValueError, match="seed must be a non-negative integer"):
            _checks.integer("seed", bad, 0, numpy=True)


# --- integer_tuple -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, length, expected", [(4, 2, (4, 4)), (3, 3, (3, 3, 3)), ((4, 5), 2, (4, 5)),
                                                     ([4, 5, 6], 3, (4, 5, 6)), (range(4, 6), 2, (4, 5)),
                                                     (torch.Size([8, 9]), 2, (8, 9))])
def test_integer_tuple_accepts(value, length, expected):
    assert _checks.integer_tuple("m", value, length) == expected


@pytest.mark.parametrize("value", [True, False, 0, -1, 2.5, None, "ab", (4,), (4, 4, 4), (True, 4), (4.0, 4),
                                   (0, 4), np.int64(4), np.array([4, 4]), []])
def test_integer_tuple_rejects(value):
    with pytest.raises(ValueError, match=r"^m must be a positive integer or a tuple of 2 positive integers, got "):
        _checks.integer_tuple("m", value, 2)


def test_integer_tuple_minimum_and_message():
    assert _checks.integer_tuple("m", (4, 9), 2, 4) == (4, 9)
    with pytest.raises(ValueError, match=r"^m must be an integer >= 4 or a tuple of 2 such integers, got \(3, 9\)$"):
        _checks.integer_tuple("m", (3, 9), 2, 4)
    with pytest.raises(ValueError, match=r"^size must be two cell counts, got 3$"):
        _checks.integer_tuple("size", 3, 2, 4, allowed="two cell counts")
    with pytest.raises(ValueError, match=r"got 'ab'$"):  # the value as passed, not as iterated
        _checks.integer_tuple("m", "ab", 2)


# --- positive_number -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [1, 0.5, 1e-300, 1e300, np.float64(0.5)])
def test_positive_number_accepts(value):
    out = _checks.positive_number("gtol", value)
    assert out == value and type(out) is float


@pytest.mark.parametrize("value", [0, 0.0, -1.0, NAN, INF, -INF, True, False, np.bool_(True), "1", None,
                                   np.float32(0.5), np.int64(1), torch.tensor(1.0), 1j])
def test_positive_number_rejects(value):
    with pytest.raises(ValueError, match=r"^gtol must be a positive finite number, got "):
        _checks.positive_number("gtol", value)


def test_positive_number_allow_zero():
    assert _checks.positive_number("lam", 0, allow_zero=True) == 0.0
    assert _checks.positive_number("lam", -0.0, allow_zero=True) == 0.0
    for bad in (-1e-12, NAN, INF, True, False):
        with pytest.raises(ValueError, match=r"^lam must be a finite number >= 0, got "):
            _checks.positive_number("lam", bad, allow_zero=True)


def test_positive_number_infinite_allowed_but_never_nan():
    assert _checks.positive_number("t", INF, finite=False) == INF
    assert _checks.positive_number("t", INF, finite=False, allow_zero=True) == INF
    with pytest.raises(ValueError, match=r"^t must be a positive number, got nan$"):
        _checks.positive_number("t", NAN, finite=False)
    with pytest.raises(ValueError, match=r"^t must be a number >= 0, got -inf$"):
        _checks.positive_number("t", -INF, finite=False, allow_zero=True)
    with pytest.raises(ValueError, match=r"^t must be a duration, got -1$"):
        _checks.positive_number("t", -1, allowed="a duration")


# --- fraction ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, 0.0, 0.25, 1, 1.0, np.float64(0.5)])
def test_fraction_accepts(value):
    out = _checks.fraction("fraction", value)
    assert out == value and type(out) is float


@pytest.mark.parametrize("value", [-0.1, 1.0000001, 2, NAN, INF, True, False, "0.5", None, np.float32(0.5)])
def test_fraction_rejects(value):
    with pytest.raises(ValueError, match=r"^fraction must be a number in \[0, 1\], got "):
        _checks.fraction("fraction", value)


def test_fraction_without_zero():
    assert _checks.fraction("p", 1e-9, allow_zero=False) == 1e-9
    with pytest.raises(ValueError, match=r"^p must be a number in \(0, 1\], got 0$"):
        _checks.fraction("p", 0, allow_zero=False)


# --- one_of --------------------------------------------------------------------------------------------------
def test_one_of_accepts_and_returns_the_value():
    assert _checks.one_of("adjoint", "ad", ("exact", "ad")) == "ad"
    assert _checks.one_of("window", "fair", {"paper": -2, "fair": -1}) == "fair"


def test_one_of_messages():
    with pytest.raises(ValueError, match=r"^method must be one of \('a', 'b'\), got 'c'$"):
        _checks.one_of("method", "c", ("a", "b"))
    with pytest.raises(ValueError, match=r"^window must be one of \['fair', 'paper'\], got 'x'$"):
        _checks.one_of("window", "x", {"paper": -2, "fair": -1})  # not a sequence: shown sorted
    with pytest.raises(ValueError, match=r"^adjoint must be 'exact' or 'ad', got 'x'$"):
        _checks.one_of("adjoint", "x", ("exact", "ad"), words=True)
    with pytest.raises(ValueError, match=r"^kind must be 'exact', 'gauss_newton' or 'none', got None$"):
        _checks.one_of("kind", None, ("exact", "gauss_newton", "none"), words=True)
    with pytest.raises(ValueError, match=r"^mode must be 'only', got 'x'$"):
        _checks.one_of("mode", "x", ("only",), words=True)
    with pytest.raises(ValueError, match=r"^device must be a device name, got 'x'$"):
        _checks.one_of("device", "x", ("cpu",), allowed="a device name")


# --- the call sites keep their messages ------------------------------------------------------------------------
def test_call_sites_name_the_parameter():
    import imreg_lib as il
    from imreg_lib.cg import cg_split

    cases = [
        (lambda: cg_split(True, 0.5, "all"), r"^max_iter must be a non-negative integer, got True$"),
        (lambda: cg_split(10, True, "all"), r"^fraction must be a number in \[0, 1\], got True$"),
        (lambda: il.Grid((0, 1, 0, 1), True), r"^m must be a positive integer or a tuple of 2 positive integers"),
        (lambda: il.time_function(lambda: None, n_runs=True), r"^n_runs must be an integer >= 2, got True$"),
        (lambda: il.time_function(lambda: None, n_runs=2, warmup=-1), r"^warmup must be a non-negative integer"),
        (lambda: il.superresolution_problem(8, 2, 0), r"^n_templates must be an integer >= 1, got 0$"),
        (lambda: il.superresolution_problem(8, 2, 1, lam=True), r"^lam must be a finite number >= 0, got True$"),
        (lambda: il.spline_coefficients(torch.ones(4, 4, dtype=torch.float64), True), r"^theta must be a finite"),
        (lambda: il.theta_schedule(10.0, 1.0, 1), r"^n_scales must be an integer >= 2, got 1$"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()
