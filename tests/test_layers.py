"""The layers of the repository: ``tools/`` (the book's build and test tooling) imports neither torch nor
``imreg_lib``, so that building the book does not pay the torch import, and ``imreg_lib`` imports nothing from
``tools``."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Every module of ``tools/``, imported as the Makefile and jupyter-book import them.
TOOLS_MODULES = ("tools.pipeline", "tools.sitecheck", "tools.sphinxext", "tools.regression", "tools.numerics",
                 "tools.spread", "tools.paper_data")
#: What no module of ``tools/`` may load.
FORBIDDEN = ("torch", "imreg_lib")


def loaded_after_import(modules: Sequence[str], watched: Sequence[str] = FORBIDDEN) -> list[str]:
    """The packages of ``watched`` found in ``sys.modules`` of a fresh interpreter after importing ``modules``.

    Parameters
    ----------
    modules : sequence of str
        Dotted module names to import, in order, in a new ``sys.executable`` started in the repository root.
    watched : sequence of str
        Top-level package names to look for afterwards.

    Returns
    -------
    list of str
        The names of ``watched`` that were loaded (the package itself or any of its submodules), in its order.
    """
    code = ("import importlib, json, sys\n"
            f"for name in {list(modules)!r}:\n"
            "    importlib.import_module(name)\n"
            f"print(json.dumps([w for w in {list(watched)!r} if any(m == w or m.startswith(w + '.')"
            " for m in sys.modules)]))\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"importing {modules} failed:\n{run.stderr}"
    return json.loads(run.stdout.strip().splitlines()[-1])


def _imported_names(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import in ``path``, at any depth (lazy imports inside functions too), and for
    ``importlib.import_module`` / ``__import__`` calls with a literal name; relative imports are skipped."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                yield node.lineno, node.args[0].value


def imports_of(folder: Path, packages: Sequence[str]) -> list[str]:
    """``file:line: module`` for every import, in the Python files under ``folder``, of one of ``packages`` (the
    package or one of its submodules)."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for line, module in _imported_names(path):
            if module.split(".")[0] in packages:
                found.append(f"{path.relative_to(folder.parent)}:{line}: {module}")
    return found


def test_tools_import_neither_torch_nor_the_library():
    assert loaded_after_import(TOOLS_MODULES) == []


def test_the_import_check_sees_torch_behind_the_library():
    assert loaded_after_import(["imreg_lib"]) == ["torch", "imreg_lib"]


def test_every_tools_module_is_checked():
    on_disk = {f"tools.{p.stem}" for p in (ROOT / "tools").glob("*.py") if p.stem != "__init__"}
    assert on_disk == set(TOOLS_MODULES)


def test_tools_never_import_torch_or_the_library_even_lazily():
    assert imports_of(ROOT / "tools", FORBIDDEN) == []


def test_the_library_does_not_import_tools():
    assert imports_of(ROOT / "imreg_lib", ["tools"]) == []


def test_the_static_check_finds_lazy_imports(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("import os\n\ndef f():\n    from tools.numerics import defaults\n"
                                           "    import importlib\n    importlib.import_module('torch.linalg')\n"
                                           "    from . import torch\n")
    assert imports_of(tmp_path / "pkg", ["tools", "torch"]) == ["pkg/m.py:4: tools.numerics",
                                                                "pkg/m.py:6: torch.linalg"]


def test_the_sphinx_extension_imports_from_any_directory(tmp_path):
    """jupyter-book imports ``tools.sphinxext`` while it builds in ``_build/src``: the package comes from the
    project's install (``make env``), not from the current directory."""
    run = subprocess.run([sys.executable, "-c", "import tools.sphinxext; print(tools.sphinxext.__file__)"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"{run.stderr}\n(is the project installed? make env)"
    assert Path(run.stdout.strip()) == ROOT / "tools" / "sphinxext.py"
