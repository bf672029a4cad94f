"""Small helpers the notebooks share: computed text glued into the book's prose, and how a page reports a file it
wrote."""

from __future__ import annotations

import ast
import os
from pathlib import Path

from ..timing import peak_rss_mb
from ._jobs import start_workers, worker_peak_mb
from ._schema import write_json

__all__ = ["glue", "peak_memory_mb", "reject_unknown_parameters", "report_written", "save_results", "start_workers"]

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


def peak_memory_mb() -> float:
    """Peak resident memory (MB) of this kernel and of the worker processes that ran its runs (the larger):
    :func:`~imreg_lib.timing.peak_rss_mb` and the peaks the workers reported."""
    return max(peak_rss_mb(), worker_peak_mb())


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
    """Write a page's results record as JSON (:func:`~imreg_lib.paper._schema.write_json`: through a temporary file
    and a rename) and print where (:func:`report_written`); returns the path."""
    created = not Path(path).resolve().parent.is_dir()
    out = write_json(path, results)
    print(report_written(out, created=created))
    return out


def _assigned(source: str) -> list[str]:
    """The names a cell's top-level assignments bind, in order."""
    names = []
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def reject_unknown_parameters(history: list[str] | None = None) -> None:
    """Stop a run whose injected parameters include a name the notebook does not have.

    Papermill passes ``-p name value`` as a cell it injects after the notebook's parameters cell, and a misspelt
    name is only a warning there: the run goes on with the default. Called first in a page's set-up cell, this
    compares the names the injected cell (``# Parameters``) assigns with those of the parameters cell (the first
    cell of the kernel's history) and raises ``ValueError`` naming the unknown ones and listing the allowed names.
    ``history``: the executed cells' sources (default: the kernel's ``In``); outside a kernel, nothing is checked.
    """
    if history is None:
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - IPython comes with the notebook stack
            return
        shell = get_ipython()
        if shell is None:
            return
        history = list(shell.user_ns.get("In", []))
    cells = [s for s in history if s and s.strip()]
    injected = [s for s in cells if s.lstrip().splitlines()[0].strip() == "# Parameters"]
    own = [s for s in cells if s.lstrip().startswith("# Parameters") and s not in injected]
    if not injected or not own:
        return
    allowed = _assigned(own[0])
    unknown = [n for n in _assigned(injected[-1]) if n not in allowed]
    if unknown:
        raise ValueError(f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: this "
                         f"notebook's parameters are {', '.join(allowed)}")
