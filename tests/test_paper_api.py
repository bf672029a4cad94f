"""The paper layer's names (imreg_lib.paper): every name exported once, and reached one way."""
import re
from pathlib import Path

import imreg_lib.paper as paper

ROOT = Path(__file__).resolve().parent.parent


def test_every_name_is_exported_by_one_module():
    owners: dict[str, list[str]] = {}
    for module in paper.API_MODULES:
        for name in module.__all__:
            owners.setdefault(name, []).append(module.__name__)
            assert getattr(paper, name) is getattr(module, name), name
    assert not {n: m for n, m in owners.items() if len(m) > 1}
    assert set(paper.__all__) == set(owners) | set(paper.PRESENTATION_MODULES)
    assert not set(paper.PRESENTATION_MODULES) & {m.__name__.rsplit(".", 1)[1] for m in paper.API_MODULES}


def test_the_book_reaches_each_name_one_way():
    """Notebooks, tests, tools and benchmarks call a package name as ``paper.<name>``, never through the module
    that defines it (``paper.superres_runs.compare_projections``), so that a name has one spelling."""
    modules = "|".join(m.__name__.rsplit(".", 1)[1] for m in paper.API_MODULES)
    pattern = re.compile(rf"\bpaper\.({modules})\.([A-Za-z_]\w*)")
    files = [*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("tests/*.py"), *ROOT.glob("tools/*.py"),
             *ROOT.glob("benchmarks/*.py")]
    found = [f"{f.relative_to(ROOT)}: paper.{m}.{n}" for f in files if f.name != "test_paper_api.py"
             for m, n in pattern.findall(f.read_text(encoding="utf-8")) if n in paper.__all__]
    assert not found, found
