"""Write the bytecode of every module a book run imports, once, when the environment is set up.

``pip install --no-compile`` leaves compiling to the first import, and an environment with
``PYTHONDONTWRITEBYTECODE`` set (some containers and CI images) never writes it: every kernel, test process and
Dask worker then compiles about 1,600 modules from source again, some 5 s each on two cores. This imports what the
notebooks, the tests and the book build use, and compiles the source of each loaded module to its cache file
(``py_compile`` writes it whatever ``PYTHONDONTWRITEBYTECODE`` says). Modules that are not imported stay as pip left
them.

Run by ``make env`` (``python -m tools.precompile MODULE...``, the modules listed in the Makefile); prints how many
files it compiled. Nothing here names the library: the tools stay independent of it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import py_compile
import sys


def main(argv: list[str] | None = None) -> int:
    """Import the modules named in ``argv`` (the Makefile lists what a run uses), then compile every loaded one."""
    names = sys.argv[1:] if argv is None else argv
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional part of the stack that is absent or fails is skipped
            missing.append(name)
    done = 0
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py") or not os.path.isfile(path):
            continue
        cache = importlib.util.cache_from_source(path)
        if os.path.exists(cache) and os.path.getmtime(cache) >= os.path.getmtime(path):
            continue
        try:
            py_compile.compile(path, cfile=cache, doraise=True)
            done += 1
        except (py_compile.PyCompileError, OSError):
            pass  # a read-only or odd file: Python compiles it in memory as before
    note = f" (not importable here: {', '.join(missing)})" if missing else ""
    print(f"precompiled {done} modules{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
