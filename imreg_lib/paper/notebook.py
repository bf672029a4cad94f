"""Small helpers the notebooks share: computed text glued into the book's prose."""

from __future__ import annotations

__all__ = ["glue"]


def glue(name: str, value, display: bool = False) -> None:
    """Store ``value`` under ``name`` for the book's ``{glue:text}`` roles (myst-nb); a no-op without myst-nb, so
    a notebook runs the same in a plain Jupyter kernel."""
    try:
        from myst_nb import glue as _glue
    except ImportError:  # pragma: no cover - myst-nb is pinned with the book
        return
    _glue(name, value, display=display)
