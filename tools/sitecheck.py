"""Checks of the built book (``_build/html``): an offline static check and a check in a headless browser.

Used by the Makefile (``make site-check``)::

    python -m tools.sitecheck static  [--html _build/html] [--toc _toc.yml]
    python -m tools.sitecheck browser [--html _build/html] [--toc _toc.yml] [--out _build/site-check]
                                          [--chromium /usr/bin/chromium]

``static`` parses the HTML with the standard library only: every page of ``_toc.yml`` is built, every local
``<img src>``, ``<a href>``, ``<script src>`` and ``<link href>`` resolves to a file, and every section page
(a chapter of ``_toc.yml`` under ``notebooks/``) shows at least one figure.

``browser`` serves the site on 127.0.0.1 and loads every page of ``_toc.yml`` in headless Chromium driven by
Playwright (``pip install -r requirements-site.txt``; the browser is the system's, never downloaded). A
console error, an uncaught exception, a failed request, an HTTP status >= 400 or a request that leaves the
machine ("page needs the network") is a problem. It saves a full-page screenshot of every page and
``report.json`` into the output folder.

Both return a list of problems (empty when the site is fine); the command line prints them and exits 1, or
exits 2 when a check cannot run (no built site, no Chromium, no Playwright).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

__all__ = ["PageRefs", "PageReport", "SiteCheckError", "browse", "check_page", "check_site", "main", "parse_page",
           "section_pages", "serve", "toc_pages"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync")
SECTION_DIR = "notebooks"
_SOURCE_SUFFIXES = (".ipynb", ".md", ".rst", ".myst")
_FIGURE_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".gif", ".webp")
_LOCAL_HOST = "127.0.0.1"


class SiteCheckError(RuntimeError):
    """A check could not run (a missing browser, Playwright or site), as opposed to a problem it found."""


# ---- the table of contents -------------------------------------------------------------------------------

def _load_toc(toc_path: Path) -> dict:
    import yaml

    toc = yaml.safe_load(Path(toc_path).read_text(encoding="utf-8"))
    if not isinstance(toc, dict) or "root" not in toc:
        raise SiteCheckError(f"{toc_path}: not a Jupyter Book table of contents (no 'root' entry)")
    return toc


def _page_name(file: str) -> str:
    """``notebooks/00_data.ipynb`` or ``notebooks/00_data`` -> ``notebooks/00_data`` (a posix path)."""
    path = PurePosixPath(str(file).strip().lstrip("/"))
    return str(path.with_suffix("")) if path.suffix in _SOURCE_SUFFIXES else str(path)


def _entries(node: object) -> Iterator[dict]:
    """Every entry dictionary below ``node`` (parts, chapters, sections, subtrees), depth first."""
    if isinstance(node, dict):
        yield node
        for key in ("parts", "chapters", "sections", "subtrees", "entries"):
            yield from _entries(node.get(key))
    elif isinstance(node, list):
        for item in node:
            yield from _entries(item)


def toc_pages(toc_path: Path) -> list[str]:
    """The pages of a Jupyter Book 1 ``_toc.yml``: the root and every ``file:`` entry, without suffix.

    Parameters
    ----------
    toc_path
        The ``_toc.yml`` (format ``jb-book`` or ``jb-article``).

    Returns
    -------
    list of str
        Posix paths relative to the book root, root first, in table-of-contents order, no duplicates.
    """
    toc = _load_toc(toc_path)
    pages = [_page_name(toc["root"])]
    for entry in _entries({k: v for k, v in toc.items() if k != "root"}):
        if "file" in entry:
            name = _page_name(entry["file"])
            if name not in pages:
                pages.append(name)
    return pages


def section_pages(toc_path: Path, section_dir: str = SECTION_DIR) -> list[str]:
    """The chapters of ``_toc.yml`` that are notebooks under ``section_dir`` (the paper's sections)."""
    toc = _load_toc(toc_path)
    chapters = list(toc.get("chapters") or [])
    for part in toc.get("parts") or []:
        chapters.extend(part.get("chapters") or [])
    names = [_page_name(c["file"]) for c in chapters if isinstance(c, dict) and "file" in c]
    return [n for n in names if PurePosixPath(n).parts[:1] == (section_dir,)]


# ---- one HTML page ---------------------------------------------------------------------------------------

@dataclass
class PageRefs:
    """What the static check needs from one HTML page: its references and whether it has a ``<figure>``."""

    images: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    stylesheets: list[str] = field(default_factory=list)
    figures: int = 0
    anchors: set[str] = field(default_factory=set)


class _RefParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs = PageRefs()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if a.get("id"):
            self.refs.anchors.add(a["id"])
        if tag == "a" and a.get("name"):
            self.refs.anchors.add(a["name"])
        if tag == "img" and a.get("src"):
            self.refs.images.append(a["src"])
        elif tag == "a" and a.get("href"):
            self.refs.links.append(a["href"])
        elif tag == "script" and a.get("src"):
            self.refs.scripts.append(a["src"])
        elif tag == "link" and a.get("href"):
            self.refs.stylesheets.append(a["href"])
        elif tag == "figure":
            self.refs.figures += 1

    handle_startendtag = handle_starttag


def parse_page(html: str) -> PageRefs:
    """The ``img``/``a``/``script``/``link`` references, the number of ``<figure>`` elements and the anchors (``id``
    attributes and ``<a name>``) of ``html``."""
    parser = _RefParser()
    parser.feed(html)
    parser.close()
    return parser.refs


def _is_external(ref: str) -> bool:
    """True for URLs with a scheme or a host (http:, https:, mailto:, javascript:, data:, //host/...)."""
    parts = urlsplit(ref.strip())
    return bool(parts.scheme or parts.netloc)


def _local_target(ref: str) -> str | None:
    """The file part of a local reference (query and anchor stripped, percent-decoded); None if there is none
    to check (an external URL or a pure ``#anchor``/``?query``)."""
    ref = ref.strip()
    if not ref or _is_external(ref):
        return None
    path = unquote(urlsplit(ref).path)
    return path or None


def _resolve(html_dir: Path, page: Path, target: str) -> Path:
    """The file ``target`` (relative to ``page``) names; a folder means its ``index.html``."""
    base = html_dir if target.startswith("/") else page.parent
    path = (base / target.lstrip("/")).resolve()
    return path / "index.html" if path.is_dir() else path


def _is_figure_source(src: str, html_dir: Path, page: Path) -> bool:
    src = src.strip()
    if src.lower().startswith("data:image/"):
        return True
    target = _local_target(src)
    if target is None:
        return urlsplit(src).path.lower().endswith(_FIGURE_SUFFIXES)
    path = _resolve(html_dir, page, target)
    try:
        inside_static = path.relative_to(html_dir.resolve()).parts[:1] == ("_static",)
    except ValueError:
        inside_static = False
    return not inside_static and path.suffix.lower() in _FIGURE_SUFFIXES and path.is_file()


def _fragment(ref: str) -> str:
    """The anchor of a local reference (percent-decoded), or ``""``."""
    return "" if _is_external(ref.strip()) else unquote(urlsplit(ref.strip()).fragment)


def _anchors(path: Path, cache: dict[Path, set[str]]) -> set[str]:
    if path not in cache:
        cache[path] = parse_page(path.read_text(encoding="utf-8", errors="replace")).anchors
    return cache[path]


def check_page(html_dir: Path, page: Path, *, need_figure: bool = False,
               anchor_cache: dict[Path, set[str]] | None = None) -> list[str]:
    """The problems of one built page: local references that name no file, links to an anchor (``#id``) that the
    target page does not have, and (if ``need_figure``) no figure.

    Parameters
    ----------
    html_dir
        The built site (``_build/html``).
    page
        An HTML file inside ``html_dir``.
    need_figure
        Require at least one ``<figure>`` or an ``<img>`` whose source is an existing PNG/SVG (or other image)
        file outside ``_static/`` (the theme's icons) or a ``data:image`` URL.
    anchor_cache
        Anchors of the pages read so far (shared across the pages of a site).

    Returns
    -------
    list of str
        One line per problem, each starting with the page's path relative to ``html_dir``.
    """
    html_dir = Path(html_dir)
    name = page.relative_to(html_dir).as_posix()
    refs = parse_page(page.read_text(encoding="utf-8", errors="replace"))
    problems = []
    cache = {} if anchor_cache is None else anchor_cache
    cache.setdefault(page.resolve(), refs.anchors)
    for kind, tag, values in (("image", "img src", refs.images), ("link", "a href", refs.links),
                              ("script", "script src", refs.scripts), ("link", "link href", refs.stylesheets)):
        for ref in values:
            target = _local_target(ref)
            path = page.resolve() if target is None else _resolve(html_dir, page, target)
            if target is not None and not path.is_file():
                problems.append(f"{name}: broken {kind} <{tag}={ref!r}>")
            elif tag == "a href" and (anchor := _fragment(ref)) and path.suffix == ".html" \
                    and anchor not in _anchors(path, cache):
                problems.append(f"{name}: link to a missing anchor <a href={ref!r}>")
    if need_figure:
        has_image = any(_is_figure_source(src, html_dir, page) for src in refs.images)
        if not (has_image or refs.figures):
            problems.append(f"{name}: section page without a figure (no <figure> and no PNG/SVG <img>)")
    return problems


def _site_pages(html_dir: Path) -> list[Path]:
    """The HTML pages of the site (not the theme's templates and sources in ``_static/``, ``_sources/`` ...)."""
    return sorted(p for p in html_dir.rglob("*.html")
                  if not any(part.startswith("_") for part in p.relative_to(html_dir).parts[:-1]))


def check_site(html_dir: Path, toc_path: Path) -> list[str]:
    """The static, offline check of a built book.

    Parameters
    ----------
    html_dir
        The built site (``_build/html``).
    toc_path
        The book's ``_toc.yml``: the pages it lists must be built, its notebook chapters need a figure.

    Returns
    -------
    list of str
        The problems found, one line each naming the file; empty when the site is fine.
    """
    html_dir = Path(html_dir)
    if not html_dir.is_dir():
        return [f"{html_dir}: no built site here (run `make book`)"]
    pages = toc_pages(Path(toc_path))
    sections = set(section_pages(Path(toc_path)))
    problems = [f"{p}.html: page of _toc.yml not built" for p in pages if not (html_dir / f"{p}.html").is_file()]
    anchors: dict[Path, set[str]] = {}
    for page in _site_pages(html_dir):
        stem = page.relative_to(html_dir).with_suffix("").as_posix()
        problems.extend(check_page(html_dir, page, need_figure=stem in sections, anchor_cache=anchors))
    return problems


# ---- the browser check -----------------------------------------------------------------------------------

@dataclass
class PageReport:
    """What the browser saw on one page."""

    page: str
    url: str
    screenshot: str
    images: int = 0
    seconds: float = 0.0
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    widget_views: int = 0
    widget_views_rendered: int = 0
    mode: str = "light"
    unreadable_figures: list[str] = field(default_factory=list)
    accessibility: list[dict] = field(default_factory=list)
    accessibility_theme: list[dict] = field(default_factory=list)

    def problems(self) -> list[str]:
        """One line per problem, each naming the page (and the colour mode, for the dark pass)."""
        lines = [*(f"console error: {m}" for m in self.console_errors),
                 *(f"uncaught exception: {m}" for m in self.page_errors),
                 *self.failed_requests,
                 *(f"image not rendered: {src}" for src in self.broken_images),
                 *(f"figure unreadable in dark mode (transparent on a dark page): {src}"
                   for src in self.unreadable_figures),
                 *(f"accessibility ({v['impact']}): {v['id']}: {v['help']} ({v['nodes']} element(s), e.g. "
                   f"{v['example']})" for v in self.accessibility)]
        if self.widget_views_rendered < self.widget_views:
            lines.append(f"widget views: {self.widget_views_rendered} of {self.widget_views} saved views rendered")
        where = self.page if self.mode == "light" else f"{self.page} [{self.mode}]"
        return [f"{where}: {line}" for line in lines]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt: str, *args: object) -> None:  # no access log on the terminal
        pass


@contextlib.contextmanager
def serve(directory: Path, host: str = _LOCAL_HOST) -> Iterator[str]:
    """Serve ``directory`` over HTTP on a free port of ``host`` in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _require_browser(chromium: str) -> None:
    """Raise :class:`SiteCheckError` with how to install what is missing (Chromium, Playwright)."""
    path = shutil.which(chromium)
    if path is None:
        raise SiteCheckError(
            f"Chromium not found at {chromium}: install it (Debian/Ubuntu: `sudo apt-get install chromium`) or "
            "pass the path of a Chromium/Chrome (--chromium, or `make site-check CHROMIUM=/usr/bin/google-chrome`)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        raise SiteCheckError(
            "the Python package playwright is missing: `make site-check` installs it into .venv, or run "
            "`.venv/bin/python -m pip install -r requirements-site.txt` (the browser itself is the system's "
            "Chromium; `playwright install` is not needed)") from exc


def _is_browser_favicon(url: str) -> bool:
    """True for the browser's own request of ``/favicon.ico`` at the server root, which no page asks for (the
    book has no favicon; served below a path, as on GitHub Pages, it is not even the book's server)."""
    parts = urlsplit(url)
    return parts.hostname == _LOCAL_HOST and parts.path == "/favicon.ico"


def _screenshot_name(page: str) -> str:
    """``notebooks/02_multiscale`` -> ``notebooks__02_multiscale.png``."""
    return page.replace("/", "__") + ".png"


_BROKEN_IMAGES_JS = "Array.from(document.images).filter(i => i.complete && i.getAttribute('src') && " \
                    "i.naturalWidth === 0).map(i => i.getAttribute('src').slice(0, 120))"
#: Saved widget views (one script tag each) and how many the embedder rendered (it inserts a ``widget-subarea``
#: with the view before each tag).
_WIDGETS_JS = """() => {
  const views = Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'));
  const shown = views.filter(v => { const d = v.previousElementSibling;
    return d && d.classList.contains('widget-subarea') && d.childElementCount > 0 && d.offsetHeight > 0; });
  return [views.length, shown.length];
}"""
#: Figures of the page content whose corners are transparent and that get no light background from the page: on
#: a dark page their dark lines and labels vanish.
_TRANSPARENT_FIGURES_JS = """() => {
  const out = [];
  for (const img of document.querySelectorAll('article img')) {
    if (!img.complete || img.naturalWidth < 8) continue;
    const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext('2d'); g.drawImage(img, 0, 0);
    const w = c.width - 1, h = c.height - 1;
    const alpha = [[0, 0], [w, 0], [0, h], [w, h]].map(([x, y]) => g.getImageData(x, y, 1, 1).data[3]);
    if (Math.max(...alpha) > 127) continue;
    let el = img, light = false;
    while (el && !light) {
      const m = getComputedStyle(el).backgroundColor.match(/[\\d.]+/g) || [];
      const [r, gr, b, a] = [...m.map(Number), m.length === 3 ? 1 : undefined];
      if (m.length >= 3 && (a === undefined || a > 0.5)) { light = (r + gr + b) / 3 > 160; break; }
      el = el.parentElement;
    }
    if (!light) out.push((img.getAttribute('src') || '').slice(0, 120));
  }
  return out;
}"""
#: axe-core's WCAG 2 A/AA rules; a violation inside the page's article is ours, outside it the theme's. No preload:
#: axe would fetch every stylesheet again, resolving the theme's @import against the wrong base.
_AXE_JS = """async () => {
  const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']},
                                      resultTypes: ['violations'], preload: false});
  return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => ({target: n.target.join(' '), ours: !!document.querySelector('article') &&
      Array.from(document.querySelectorAll(n.target.join(' '))).some(e => e.closest('article'))}))}));
}"""
_MATHJAX_JS = "() => (window.MathJax && MathJax.startup && MathJax.startup.promise) ? " \
              "MathJax.startup.promise.then(() => true) : true"  # resolves at once on pages without MathJax


def _axe_source() -> str | None:
    """axe-core's script, as pinned by requirements-site.txt (axe-playwright-python ships it); None if absent."""
    try:
        from importlib.resources import files

        return (files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")
    except (ImportError, FileNotFoundError, ModuleNotFoundError):
        return None


def _summarise_axe(violations: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split axe's violations into those with an element in the page's article (ours) and the theme's."""
    ours, theme = [], []
    for v in violations:
        for mine, bucket in ((True, ours), (False, theme)):
            nodes = [n["target"] for n in v["nodes"] if n["ours"] == mine]
            if nodes:
                bucket.append({"id": v["id"], "impact": v["impact"] or "minor", "help": v["help"],
                               "nodes": len(nodes), "example": nodes[0][:100]})
    return ours, theme


def _visit(context, base_url: str, page: str, out_dir: Path, *, timeout_ms: int, settle_ms: int,
           mode: str = "light", axe: str | None = None) -> PageReport:
    """Load one page in a new tab of ``context`` and record what went wrong; in the light pass also the widget
    views and, with ``axe`` (its script), the accessibility violations; in the dark pass unreadable figures."""
    shot = _screenshot_name(page) if mode == "light" else f"{mode}/{_screenshot_name(page)}"
    report = PageReport(page=page, url=f"{base_url}{page}.html", screenshot=shot, mode=mode)
    tab = context.new_page()

    def on_console(msg) -> None:
        if msg.type == "error" and not _is_browser_favicon((msg.location or {}).get("url", "")):
            report.console_errors.append(msg.text)

    def on_failed(request) -> None:
        if urlsplit(request.url).hostname == _LOCAL_HOST and not _is_browser_favicon(request.url):
            report.failed_requests.append(f"request failed ({request.failure}): {request.url}")

    def on_response(response) -> None:
        if response.status >= 400 and not _is_browser_favicon(response.url):
            report.failed_requests.append(f"HTTP {response.status}: {response.url}")

    tab.on("console", on_console)
    tab.on("pageerror", lambda exc: report.page_errors.append(str(exc)))
    tab.on("requestfailed", on_failed)
    tab.on("response", on_response)

    def route(r) -> None:
        url = r.request.url
        if urlsplit(url).scheme in ("http", "https") and urlsplit(url).hostname != _LOCAL_HOST:
            report.failed_requests.append(f"page needs the network: {url}")
            r.abort("blockedbyclient")
        else:
            r.continue_()

    tab.route("**/*", route)
    start = time.perf_counter()
    try:
        tab.goto(report.url, wait_until="networkidle", timeout=timeout_ms)
        with contextlib.suppress(Exception):
            tab.wait_for_function(_MATHJAX_JS, timeout=timeout_ms)
        tab.wait_for_timeout(settle_ms)
        report.images = tab.evaluate("document.images.length")
        report.broken_images = tab.evaluate(_BROKEN_IMAGES_JS)
        report.widget_views, report.widget_views_rendered = tab.evaluate(_WIDGETS_JS)
        if mode == "dark":
            report.unreadable_figures = tab.evaluate(_TRANSPARENT_FIGURES_JS)
        (out_dir / report.screenshot).parent.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(out_dir / report.screenshot), full_page=True)
        if axe is not None and mode == "light":
            tab.add_script_tag(content=axe)
            report.accessibility, report.accessibility_theme = _summarise_axe(tab.evaluate(_AXE_JS))
    except Exception as exc:  # a timeout or a crash of the tab is a problem of this page, not of the check
        report.page_errors.append(f"{type(exc).__name__}: {exc}".splitlines()[0])
    finally:
        report.seconds = round(time.perf_counter() - start, 2)
        tab.close()
    return report


def browse(html_dir: Path, out_dir: Path, chromium: str = CHROMIUM, *, toc_path: Path = Path("_toc.yml"),
           timeout_ms: int = 60_000, settle_ms: int = 1500) -> list[str]:
    """Load every page of ``_toc.yml`` from a local server in headless Chromium and report what goes wrong.

    Parameters
    ----------
    html_dir
        The built site (``_build/html``), served on 127.0.0.1 at a free port.
    out_dir
        Where the screenshots (``<page with / as __>.png``) and ``report.json`` go.
    chromium
        The browser executable (Debian's ``/usr/bin/chromium``, or a Chrome); Playwright drives it.
    toc_path
        The table of contents whose pages are loaded.
    timeout_ms, settle_ms
        Time limit of one page load; wait after network idle so that MathJax and widgets render.

    Returns
    -------
    list of str
        One line per problem (console errors, uncaught exceptions, failed requests, requests to other hosts,
        images that did not render), each naming the page; empty when every page is clean.

    Raises
    ------
    SiteCheckError
        If the site, Chromium or Playwright is missing.
    """
    html_dir, out_dir = Path(html_dir), Path(out_dir)
    if not html_dir.is_dir():
        raise SiteCheckError(f"{html_dir}: no built site here (run `make book`)")
    _require_browser(chromium)
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    pages = toc_pages(Path(toc_path))
    start = time.perf_counter()
    with serve(html_dir) as base_url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which(chromium), headless=True,
                                     args=list(CHROMIUM_ARGS))
        try:
            axe = _axe_source()
            if axe is None:
                raise SiteCheckError("axe-core is missing: `make site-check` installs requirements-site.txt into "
                                     ".venv (axe-playwright-python ships the pinned axe-core)")
            reports = []
            for mode in ("light", "dark"):
                context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block",
                                              color_scheme=mode)
                reports += [_visit(context, base_url, page, out_dir, timeout_ms=timeout_ms, settle_ms=settle_ms,
                                   mode=mode, axe=axe) for page in pages]
                context.close()
            version = browser.version
        finally:
            browser.close()
    problems = [line for r in reports for line in r.problems()]
    theme = sorted({f"{v['id']} ({v['impact']}): {v['help']}" for r in reports for v in r.accessibility_theme})
    summary = {"chromium": version, "seconds": round(time.perf_counter() - start, 2), "ok": not problems,
               "problems": problems, "accessibility_theme": theme, "pages": [asdict(r) for r in reports]}
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return problems


# ---- command line ----------------------------------------------------------------------------------------

def _report(problems: list[str], what: str) -> int:
    for line in problems:
        print(line)
    print(f"{what}: {len(problems)} problem(s)" if problems else f"{what}: OK")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.sitecheck", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, help_ in (("static", "offline check of files, links and figures"),
                        ("browser", "load every page in headless Chromium")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--html", type=Path, default=Path("_build/html"), help="the built site")
        p.add_argument("--toc", type=Path, default=Path("_toc.yml"), help="the book's table of contents")
        if name == "browser":
            p.add_argument("--out", type=Path, default=Path("_build/site-check"),
                           help="screenshots and report.json")
            p.add_argument("--chromium", default=CHROMIUM, help="Chromium/Chrome executable")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "static":
            return _report(check_site(args.html, args.toc), "static site check")
        start = time.perf_counter()
        problems = browse(args.html, args.out, args.chromium, toc_path=args.toc)
        print(f"screenshots (light, and dark/ for the dark mode) and report.json in {args.out} "
              f"({time.perf_counter() - start:.1f} s)")
        theme = json.loads((args.out / "report.json").read_text()).get("accessibility_theme", [])
        for line in theme:  # outside the pages' articles: the theme's, listed, not failed
            print(f"theme accessibility finding (not ours): {line}")
        return _report(problems, "browser site check")
    except SiteCheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
