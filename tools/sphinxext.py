"""The book's Sphinx extension (``sphinx: extra_extensions`` in ``_config.yml``): one script tag per script.

Sphinx 7.4 writes some inline scripts twice into every page: an extension that adds one with
``app.add_js_file(None, body=...)`` once the builder exists (sphinx-thebe's ``const THEBE_JS_URL = ...``,
sphinx-togglebutton's selector) gets it into the builder's list as ``None`` and again, when the pages are
written, from the registry as ``''``, which the builder's de-duplication takes for another script. In the
browser the second ``const`` declaration throws ("Identifier 'THEBE_JS_URL' has already been declared"). The
extension drops such repeats from each page's scripts; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

__all__ = ["accessible_citations", "setup", "unique_scripts"]


def _script_key(script: Any) -> Hashable:
    """What makes two of Sphinx's script entries the same tag: file name (``None`` as ``''``) and attributes."""
    filename = getattr(script, "filename", script)
    attributes = getattr(script, "attributes", {})
    return str(filename or ""), tuple(sorted((str(k), str(v)) for k, v in attributes.items()))


def unique_scripts(scripts: Iterable[Any]) -> list[Any]:
    """``scripts`` (Sphinx's ``_JavaScript`` entries or file names) without repeats, first occurrence kept.

    Parameters
    ----------
    scripts
        A page's ``script_files``, in order.

    Returns
    -------
    list
        The same entries in the same order, each tag only once.
    """
    seen: set[Hashable] = set()
    out = []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            out.append(script)
    return out


def _dedupe_page_scripts(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    scripts = context.get("script_files")
    if scripts:
        scripts[:] = unique_scripts(scripts)  # in place: the builder restores this list after each page


def accessible_citations(html: str) -> str:
    """``html`` with the bibliography entries' deprecated ``role="doc-biblioentry"`` replaced by ``listitem``."""
    return html.replace('role="doc-biblioentry"', 'role="listitem"')


def _fix_written_pages(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    from pathlib import Path

    for page in Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        fixed = accessible_citations(text)
        if fixed != text:
            page.write_text(fixed, encoding="utf-8")


def setup(app) -> dict[str, Any]:
    """Register with Sphinx (after the other extensions' ``html-page-context`` handlers)."""
    app.connect("html-page-context", _dedupe_page_scripts, priority=900)
    app.connect("build-finished", _fix_written_pages)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
