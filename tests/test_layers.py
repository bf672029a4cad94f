"""The layers of the repository: ``tools/`` (the book's build and test tooling) imports neither torch nor
``imreg_lib``, so that building the book does not pay the torch import, and ``imreg_lib`` imports nothing from
``tools``."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Every module of ``tools/``, imported as the Makefile and jupyter-book import them.
TOOLS_MODULES = ("tools.pipeline", "tools.sitecheck", "tools.sphinxext", "tools.regression", "tools.numerics",
                 "tools.spread", "tools.paper_data", "tools.precompile", "tools.ipython_kernel_config")
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


# ---- the library and the paper layer ----------------------------------------------------------------------------

#: The paper layer: the reproduction (experiments, recorded numbers, the authors' defects, the report).
PAPER = ROOT / "imreg_lib" / "paper"
#: The authors' deviations are named so only in the paper layer; the library computes the correct thing.
AS_CODED = re.compile(r"as[\s_-]+coded", re.IGNORECASE)


def _module_name(path: Path, root: Path) -> list[str]:
    """The dotted name of the module at ``path`` (a package's ``__init__.py``: the package), as a list."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _absolute_imports(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import in ``path`` with relative imports resolved against its package (``from
    . import x`` yields ``<package>.x``), plus ``importlib.import_module`` / ``__import__`` of a literal name."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + (node.module.split(".") if node.module else []))
            yield node.lineno, module
            yield from ((node.lineno, f"{module}.{alias.name}") for alias in node.names)  # from x import submodule
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called in ("import_module", "__import__"):
                yield node.lineno, node.args[0].value


def library_modules(package: Path) -> list[Path]:
    """Every module of ``package`` outside its ``paper`` subpackage."""
    return [p for p in sorted(package.rglob("*.py")) if (package / "paper") not in p.parents]


def paper_layer_violations(package: Path) -> list[str]:
    """``file:line: why`` for every module of ``package`` outside ``<package>/paper`` that imports the paper layer
    (absolute or relative, at any depth, or by ``importlib``) or names the authors' code "as coded" (in code,
    comments or docstrings)."""
    root, layer = package.parent, f"{package.name}.paper"
    found = []
    for path in library_modules(package):
        where = path.relative_to(root)
        for line, module in _absolute_imports(path, root):
            if module == layer or module.startswith(layer + "."):
                found.append(f"{where}:{line}: imports {module}")
        text = path.read_text(encoding="utf-8")
        for match in AS_CODED.finditer(text):
            found.append(f"{where}:{text.count(chr(10), 0, match.start()) + 1}: says {match.group()!r}")
    return sorted(set(found), key=lambda s: (s.split(":")[0], int(s.split(":")[1]), s))


def test_the_library_never_imports_the_paper_layer_nor_says_as_coded():
    modules = library_modules(ROOT / "imreg_lib")
    assert len(modules) >= 15 and ROOT / "imreg_lib" / "varpro.py" in modules  # the check is not vacuous
    assert not any(PAPER in p.parents for p in modules)
    assert paper_layer_violations(ROOT / "imreg_lib") == []


def test_importing_the_library_does_not_load_the_paper_layer():
    assert loaded_after_import(["imreg_lib"], ["imreg_lib.paper"]) == []
    assert loaded_after_import(["imreg_lib.paper"], ["imreg_lib.paper"]) == ["imreg_lib.paper"]


def test_the_layer_check_finds_every_kind_of_violation(tmp_path):
    pkg = tmp_path / "imreg_lib"
    (pkg / "paper").mkdir(parents=True)
    (pkg / "sub").mkdir()
    files = {
        "__init__.py": '"""The library."""\nfrom . import paper\n',
        "a.py": "from .paper import defects\nfrom .paperwork import x\n",
        "b.py": "import os\n\n\ndef f():\n    from imreg_lib.paper.report import Claim\n    import imreg_lib.paper\n",
        "c.py": '"""Reproduces the paper\'s numbers\n(As\n  coded by the authors)."""\nMODE = "AS_CODED"\n',
        "d.py": "import importlib\n\nimportlib.import_module('imreg_lib.paper.recorded')\n",
        "e.py": "from imreg_lib import paper as p\nfrom imreg_lib import grid\n",
        "sub/__init__.py": "from ..paper import recorded\nfrom .. import grid\n",
        "sub/m.py": "from .. import paper\n# variant as-coded\n",
        "paper/__init__.py": "from .defects import as_coded\n",  # the paper layer itself may say anything
        "paper/defects.py": "as_coded = 'as coded'\n",
        "clean.py": '"""Correct: the step of the ODE, twice J_r^T J_r."""\nfrom .grid import Grid\n',
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    assert paper_layer_violations(pkg) == [
        "imreg_lib/__init__.py:2: imports imreg_lib.paper",
        "imreg_lib/a.py:1: imports imreg_lib.paper",
        "imreg_lib/a.py:1: imports imreg_lib.paper.defects",
        "imreg_lib/b.py:5: imports imreg_lib.paper.report",
        "imreg_lib/b.py:5: imports imreg_lib.paper.report.Claim",
        "imreg_lib/b.py:6: imports imreg_lib.paper",
        "imreg_lib/c.py:2: says 'As\\n  coded'",
        "imreg_lib/c.py:4: says 'AS_CODED'",
        "imreg_lib/d.py:3: imports imreg_lib.paper.recorded",
        "imreg_lib/e.py:1: imports imreg_lib.paper",
        "imreg_lib/sub/__init__.py:1: imports imreg_lib.paper",
        "imreg_lib/sub/__init__.py:1: imports imreg_lib.paper.recorded",
        "imreg_lib/sub/m.py:1: imports imreg_lib.paper",
        "imreg_lib/sub/m.py:2: says 'as-coded'",
    ]


#: Names of the reproduction: exported by ``imreg_lib.paper``, not by the library's top level.
EXPERIMENT_NAMES = ("FIG7_STEPS", "PAPER_FACTORS", "PAPER_SR", "PAPER_TABLE1", "VARPRO_VARIANTS", "AsCodedVarPro",
                    "ad_cost_table", "compare_methods", "compare_predictors", "compare_projections",
                    "paper_spline_coefficients", "prediction_quality", "predictor_corrector_as_coded",
                    "preregister", "synthetic_volume_pair", "SuperresolutionSettings", "Claim")


def test_the_experiments_are_names_of_the_paper_layer_only():
    import imreg_lib
    import imreg_lib.paper

    assert [n for n in EXPERIMENT_NAMES if n in imreg_lib.__all__ or hasattr(imreg_lib, n)] == []
    assert [n for n in EXPERIMENT_NAMES if n not in imreg_lib.paper.__all__] == []
    assert [n for n in imreg_lib.paper.__all__ if not hasattr(imreg_lib.paper, n)] == []
    assert [n for n in imreg_lib.__all__ if not hasattr(imreg_lib, n)] == []


def test_the_public_api_is_curated():
    """About 40-60 names a user of the library needs; internals stay in their modules."""
    import imreg_lib

    assert 40 <= len(imreg_lib.__all__) <= 60 and len(set(imreg_lib.__all__)) == len(imreg_lib.__all__)
    for internal in ("spline_weights", "rk4_38", "cg_split", "check_transformation", "resolve_dtype"):
        assert internal not in imreg_lib.__all__
    assert all(not n.startswith("_") for n in imreg_lib.__all__)
