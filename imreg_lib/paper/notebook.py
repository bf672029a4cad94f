"""Small helpers the notebooks share: computed text glued into the book's prose, and how a page reports a file it
wrote."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["glue", "report_written", "save_results"]

#: The repository: the folder that holds the library (an editable install), to which written paths are relative.
_ROOT = Path(__file__).resolve().parents[2]


def glue(name: str, value, display: bool = False) -> None:
    """Store ``value`` under ``name`` for the book's ``{glue:text}`` roles (myst-nb); a no-op without myst-nb, so
    a notebook runs the same in a plain Jupyter kernel."""
    try:
        from myst_nb import glue as _glue
    except ImportError:  # pragma: no cover - myst-nb is pinned with the book
        return
    _glue(name, value, display=display)


def report_written(path: str | os.PathLike, what: str = "results", *, created: bool = False) -> str:
    """The line a page prints after writing ``path``: relative to the repository where the file lies inside it
    (``_build/results/02_multiscale.json`` whichever directory the notebook ran in), else as given; ``created``:
    the folder did not exist before and was made."""
    full = Path(path).resolve()
    try:
        shown = full.relative_to(_ROOT).as_posix()
    except ValueError:
        shown = os.fspath(path)
    return f"{what} written to {shown}" + (f" (created the folder {Path(shown).parent.as_posix()})" if created else "")


def save_results(path: str | os.PathLike, results) -> Path:
    """Write a page's results JSON (:func:`~imreg_lib.paper.report.write_results`: through a temporary file and a
    rename) and print where (:func:`report_written`); returns the path."""
    from .report import write_results

    created = not Path(path).resolve().parent.is_dir()
    out = write_results(path, results)
    print(report_written(out, created=created))
    return out
