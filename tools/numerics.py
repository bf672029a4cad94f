"""The numeric settings of every notebook run, in one place (``tools/numerics.mk``).

The Makefile includes ``tools/numerics.mk`` (``NAME ?= value`` lines, so the environment wins) and exports the
variables to every command it runs: ``make test``, ``make book``, ``make notebooks`` and ``make sweep``. Python
entry points that start kernels without make (``python -m tools.pipeline``, the tests' papermill fixture)
call :func:`apply_defaults`, which reads the same file and sets each variable that the environment does not set.

``python -m tools.numerics`` prints the settings in force and where each comes from.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import MutableMapping
from pathlib import Path

__all__ = ["MK_FILE", "apply_defaults", "cpu_avx2", "defaults"]

MK_FILE = Path(__file__).with_name("numerics.mk")
_ASSIGN = re.compile(r"^([A-Z][A-Z0-9_]*)\s*\?=\s*(.*?)\s*$")
_REF = re.compile(r"\$\(([A-Z][A-Z0-9_]*)\)")
_IFEQ = re.compile(r"^ifeq\s*\(\$\(([A-Z][A-Z0-9_]*)\),\s*([^)]*)\)$")


def cpu_avx2() -> bool:
    """Whether the CPU has AVX2, read as the Makefile reads it (``avx2`` among the flags of /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return re.search(r"\bavx2\b", text) is not None


def _conditions() -> dict[str, str]:
    """The Makefile's variables that ``ifeq`` blocks of the settings file may test."""
    return {"CPU_AVX2": "yes" if cpu_avx2() else ""}


def defaults(path: Path = MK_FILE, conditions: dict[str, str] | None = None) -> dict[str, str]:
    """``{NAME: value}`` of the ``NAME ?= value`` lines of ``path`` that apply on this machine: lines inside
    ``ifeq ($(VAR),value)`` ... ``endif`` count where ``conditions[VAR] == value`` (default: this machine's).
    A value may refer to a setting defined above it as ``$(NAME)`` (resolved by :func:`apply_defaults`)."""
    conditions = _conditions() if conditions is None else conditions
    out, active = {}, [True]
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        cond = _IFEQ.match(line)
        if cond:
            active.append(active[-1] and conditions.get(cond.group(1), "") == cond.group(2).strip())
            continue
        if line == "endif":
            if len(active) == 1:
                raise ValueError(f"{path}:{number}: endif without ifeq")
            active.pop()
            continue
        match = _ASSIGN.match(line)
        if not match:
            raise ValueError(f"{path}:{number}: expected NAME ?= value, ifeq ($(VAR),value) or endif: {raw!r}")
        name, value = match.groups()
        unknown = [ref for ref in _REF.findall(value) if ref not in out]
        if "$" in _REF.sub("", value) or unknown:
            raise ValueError(f"{path}:{number}: {name} ?= {value}: only $(NAME) of a setting defined above is allowed")
        if active[-1]:
            out[name] = value
    if len(active) != 1:
        raise ValueError(f"{path}: ifeq without endif")
    return out


def apply_defaults(environ: MutableMapping[str, str] | None = None, path: Path = MK_FILE) -> dict[str, str]:
    """Set every variable of ``path`` that ``environ`` (default ``os.environ``) lacks; returns the settings in
    force (``{NAME: value}``), as make would export them."""
    environ = os.environ if environ is None else environ
    pinned = defaults(path)
    for name, value in pinned.items():
        environ.setdefault(name, _REF.sub(lambda m: environ[m.group(1)], value))
    return {name: environ[name] for name in pinned}


def main() -> int:
    """Print the settings in force (under make: what make exported, the environment's value where it set one)."""
    for name, value in apply_defaults(dict(os.environ)).items():
        print(f"{name}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
