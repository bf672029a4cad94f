"""The committed notebooks, read without executing them: clean metadata, renderable figures, valid citations."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SECTIONS = [nb for nb in NOTEBOOKS if nb.stem != "04_reproduction"]


def _read(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return nb


def _pngs(nb):
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "image/png" in out.get("data", {}):
                yield cell, out["data"]["image/png"]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 5 and SECTIONS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_clean(path):
    nb = _read(path)
    assert "papermill" not in nb.metadata
    tags = [t for c in nb.cells for t in c.metadata.get("tags", [])]
    assert tags.count("parameters") == 1 and "injected-parameters" not in tags
    assert all("papermill" not in c.metadata and "execution" not in c.metadata for c in nb.cells)
    assert all(c.execution_count is not None for c in nb.cells if c.cell_type == "code")  # nbval compares them
    text = path.read_text()
    for private in ("/work/", "/tmp/", "/root/", "/home/"):
        assert private not in text, f"{path.name} contains a path of the machine that executed it ({private})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_figures_have_an_opaque_background(path):
    from PIL import Image

    for _, data in _pngs(_read(path)):
        image = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGBA")
        assert image.getextrema()[3][0] == 255, "a transparent figure is unreadable in the book's dark mode"


@pytest.mark.parametrize("path", SECTIONS, ids=lambda p: p.stem)
def test_section_figures_are_numbered_and_captioned(path):
    nb = _read(path)
    captioned = [c for c in nb.cells if "figure" in c.metadata.get("mystnb", {})]
    assert captioned, f"{path.name} has no captioned figure"
    for cell in captioned:
        fig = cell.metadata["mystnb"]["figure"]
        assert fig.get("caption") and re.fullmatch(r"fig-[a-z0-9-]+", fig.get("name", ""))
        # myst-nb wraps every display output of the cell in the same figure (same name): exactly one, an image
        shown = [o for o in cell.outputs if o.output_type in ("display_data", "execute_result")]
        assert len(shown) == 1 and "image/png" in shown[0].get("data", {}), cell.source[:80]
    names = [c.metadata["mystnb"]["figure"]["name"] for c in captioned]
    assert len(names) == len(set(names))


def test_every_citation_is_in_the_bibliography():
    pybtex = pytest.importorskip("pybtex.database")
    keys = set(pybtex.parse_file(str(ROOT / "book" / "references.bib")).entries)
    sources = [c.source for nb in NOTEBOOKS for c in _read(nb).cells if c.cell_type == "markdown"]
    sources += [p.read_text() for p in (ROOT / "book").glob("*.md")]
    cited = {k.strip() for s in sources for group in re.findall(r"\{cite:[pt]\}`([^`]+)`", s)
             for k in group.split(",")}
    assert cited and cited <= keys, sorted(cited - keys)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(path):
    """Papermill's own reading of the parameters cell (``papermill --help-notebook``, and the types it gives
    ``-p`` values) finds every name the cell assigns: a line it cannot parse (a colon in the comment) is skipped
    with a mere warning."""
    from papermill.translators import PythonTranslator

    cell = next(c for c in _read(path).cells if "parameters" in c.metadata.get("tags", []))
    assigned = [m.group(1) for line in cell.source.splitlines() if (m := re.match(r"(\w+)\s*=", line))]
    found = [p.name for p in PythonTranslator.inspect(cell)]
    assert assigned and found == assigned
