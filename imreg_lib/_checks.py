"""Argument checks shared by the core modules (private).

Each function checks one argument and raises :class:`ValueError` with a message of the form
``"<name> must be <what is allowed>, got <value!r>"``, so a user sees which parameter is wrong and what it
may be. The wording of ``<what is allowed>`` follows from the arguments (``allowed=`` overrides it where a
call site has its own established wording). The functions return the checked value, normalised where that is
useful (integers as :class:`int`, numbers as :class:`float`, sizes as a tuple).

Rules common to all of them:

* Booleans are never numbers: ``True`` and ``False`` (and ``numpy.bool_``) are rejected wherever an integer or
  a number is asked for, although ``bool`` is a subclass of ``int``.
* The accepted types are exactly the Python ones named: integers are :class:`int` (NumPy integer scalars only
  with ``numpy=True``), numbers are :class:`int` or :class:`float`, which includes ``numpy.float64`` (a
  subclass of :class:`float`) but not ``numpy.float32`` or tensors.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np

__all__ = ["boolean", "fraction", "integer", "integer_tuple", "number", "one_of", "positive_number", "sequence"]


def _fail(name: str, allowed: str, value: object) -> ValueError:
    return ValueError(f"{name} must be {allowed}, got {value!r}")


def boolean(name: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False`` (not 0, 1 or a string), else a ``ValueError`` naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise _fail(name, "True or False", value)
    return bool(value)


def sequence(name: str, value: object, allowed: str, length: int | None = None, *, empty: bool = False) -> tuple:
    """``value`` as a tuple: a list, tuple or other iterable (not a string) of ``length`` entries, or of any number
    (at least one unless ``empty``); else ``ValueError("<name> must be <allowed>, got <value>")``. The entries are
    the caller's to check."""
    try:
        entries = None if isinstance(value, str) else tuple(value)
    except TypeError:
        entries = None
    if entries is None or (len(entries) != length if length is not None else not (entries or empty)):
        raise _fail(name, allowed, value)
    return entries


def number(name: str, value: object, allowed: str = "a finite number") -> float:
    """``value`` as a float if it is a finite number of either sign (not a bool), else a ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(
            value):
        raise _fail(name, allowed, value)
    return float(value)


def _integer_words(minimum: int) -> str:
    if minimum == 1:
        return "a positive integer"
    if minimum == 0:
        return "a non-negative integer"
    return f"an integer >= {minimum}"


def _is_integer(value: object, numpy: bool = False) -> bool:
    types = (int, np.integer) if numpy else int
    return isinstance(value, types) and not isinstance(value, bool)


def integer(name: str, value: object, minimum: int = 1, *, allowed: str | None = None,
            numpy: bool = False) -> int:
    """Check that ``value`` is an integer ``>= minimum``.

    Parameters
    ----------
    name
        The parameter's name, as the caller spells it.
    value
        The argument.
    minimum
        The smallest allowed value.
    allowed
        What the message says is allowed; default ``"a positive integer"`` for ``minimum=1``,
        ``"a non-negative integer"`` for ``minimum=0``, else ``"an integer >= <minimum>"``.
    numpy
        Also accept NumPy integer scalars (``numpy.int64`` etc.).

    Returns
    -------
    int
        ``value`` as a Python :class:`int`.

    Raises
    ------
    ValueError
        If ``value`` is a bool, not an integer, or smaller than ``minimum``.

    Examples
    --------
    >>> integer("factor", 2)
    2
    >>> integer("n_runs", 1, 2)
    Traceback (most recent call last):
    ...
    ValueError: n_runs must be an integer >= 2, got 1
    """
    if not _is_integer(value, numpy) or value < minimum:
        raise _fail(name, allowed or _integer_words(minimum), value)
    return int(value)


def integer_tuple(name: str, value: object, length: int, minimum: int = 1, *,
                  allowed: str | None = None) -> tuple[int, ...]:
    """Check a size: an integer (used for every entry) or ``length`` integers, each ``>= minimum``.

    Parameters
    ----------
    name
        The parameter's name.
    value
        An :class:`int`, or any iterable of ``length`` :class:`int` (a tuple, a list, ...).
    length
        The number of entries (the dimension).
    minimum
        The smallest allowed entry.
    allowed
        What the message says is allowed; default ``"a positive integer or a tuple of <length> positive
        integers"`` for ``minimum=1``, else ``"an integer >= <minimum> or a tuple of <length> such integers"``.

    Returns
    -------
    tuple of int
        ``length`` entries.

    Raises
    ------
    ValueError
        If ``value`` is a bool, neither an integer nor iterable, has the wrong length, or has an entry that
        is not an integer (bools included) or is smaller than ``minimum``.

    Examples
    --------
    >>> integer_tuple("m", 4, 2)
    (4, 4)
    >>> integer_tuple("m", [4, 6], 2)
    (4, 6)
    """
    if allowed is None:
        allowed = (f"a positive integer or a tuple of {length} positive integers" if minimum == 1 else
                   f"an integer >= {minimum} or a tuple of {length} such integers")
    if isinstance(value, bool):
        raise _fail(name, allowed, value)
    try:
        entries = (value,) * length if isinstance(value, int) else tuple(value)
    except TypeError:
        raise _fail(name, allowed, value) from None
    if len(entries) != length or not all(_is_integer(k) and k >= minimum for k in entries):
        raise _fail(name, allowed, value)
    return entries


def positive_number(name: str, value: object, *, allow_zero: bool = False, finite: bool = True,
                    allowed: str | None = None) -> float:
    """Check that ``value`` is a number ``> 0`` (``>= 0`` with ``allow_zero``), finite unless told otherwise.

    Parameters
    ----------
    name
        The parameter's name.
    value
        The argument: an :class:`int` or :class:`float` (``numpy.float64`` included); NaN is never accepted.
    allow_zero
        Accept 0.
    finite
        Reject infinities.
    allowed
        What the message says is allowed; default ``"a positive finite number"``, ``"a finite number >= 0"``
        (``allow_zero``), ``"a positive number"`` or ``"a number >= 0"`` (``finite=False``).

    Returns
    -------
    float
        ``value`` as a :class:`float`.

    Raises
    ------
    ValueError
        If ``value`` is a bool, not a number, NaN, infinite (with ``finite``) or out of range.

    Examples
    --------
    >>> positive_number("lam", 0, allow_zero=True)
    0.0
    >>> positive_number("gtol", 0.0)
    Traceback (most recent call last):
    ...
    ValueError: gtol must be a positive finite number, got 0.0
    """
    if allowed is None:
        bound = "a number >= 0" if allow_zero else "a positive number"
        allowed = bound.replace("number", "finite number") if finite else bound
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(name, allowed, value)
    if (finite and not math.isfinite(value)) or not (value >= 0 if allow_zero else value > 0):
        raise _fail(name, allowed, value)
    return float(value)


def fraction(name: str, value: object, *, allow_zero: bool = True, allowed: str | None = None) -> float:
    """Check that ``value`` is a number in :math:`[0, 1]` (in :math:`(0, 1]` without ``allow_zero``).

    Parameters
    ----------
    name
        The parameter's name.
    value
        The argument: an :class:`int` or :class:`float` (``numpy.float64`` included).
    allow_zero
        Accept 0 (the default: every core fraction may be 0).
    allowed
        What the message says is allowed; default ``"a number in [0, 1]"`` or ``"a number in (0, 1]"``.

    Returns
    -------
    float
        ``value`` as a :class:`float`.

    Raises
    ------
    ValueError
        If ``value`` is a bool, not a number, NaN or outside the interval.

    Examples
    --------
    >>> fraction("fraction", 1)
    1.0
    """
    if allowed is None:
        allowed = "a number in [0, 1]" if allow_zero else "a number in (0, 1]"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(name, allowed, value)
    if not ((0.0 <= value if allow_zero else 0.0 < value) and value <= 1.0):
        raise _fail(name, allowed, value)
    return float(value)


def _spoken(choices: Collection) -> str:
    words = [repr(c) for c in choices]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def one_of(name: str, value: object, choices: Collection, *, words: bool = False,
           allowed: str | None = None) -> object:
    """Check that ``value`` is one of ``choices`` (membership as ``value in choices``).

    Parameters
    ----------
    name
        The parameter's name.
    value
        The argument.
    choices
        The allowed values: a tuple or list (shown as it is), or another collection such as a dict's keys
        (shown sorted).
    words
        List the choices as words in the message (``"'exact' or 'ad'"``) instead of as a tuple or list
        (``"one of ('exact', 'ad')"``).
    allowed
        What the message says is allowed, overriding both forms.

    Returns
    -------
    object
        ``value``, unchanged.

    Raises
    ------
    ValueError
        If ``value`` is not in ``choices``.

    Examples
    --------
    >>> one_of("adjoint", "ad", ("exact", "ad"))
    'ad'
    >>> one_of("adjoint", "x", ("exact", "ad"), words=True)
    Traceback (most recent call last):
    ...
    ValueError: adjoint must be 'exact' or 'ad', got 'x'
    """
    if value not in choices:
        if allowed is None:
            shown = choices if isinstance(choices, (tuple, list)) else sorted(choices)
            allowed = _spoken(shown) if words else f"one of {shown}"
        raise _fail(name, allowed, value)
    return value
