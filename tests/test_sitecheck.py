"""The static site check on a tiny synthetic book (no browser needed), and the book's Sphinx extension."""

import urllib.request
from pathlib import Path

import pytest

from tools import sitecheck
from tools.sitecheck import SiteCheckError, browse, check_site, section_pages, toc_pages
from tools.sphinxext import unique_scripts

TOC = """\
format: jb-book
root: book/intro
parts:
  - caption: Sections
    chapters:
      - file: notebooks/00_a
      - file: notebooks/01_b.ipynb
        sections:
          - file: notebooks/01_b_details
  - caption: More
    chapters:
      - file: book/appendix
      - url: https://example.org
"""

PNG = b"\x89PNG\r\n\x1a\n"  # enough for a file that exists

PAGES = {
    "index.html": '<meta http-equiv="Refresh" content="0; url=book/intro.html" />',
    "book/intro.html": """<html><head>
        <link rel="stylesheet" href="../_static/style.css?v=1"><script src="../_static/app.js?digest=2"></script>
        <script src="https://cdn.example.org/x.js"></script></head><body id="top">
        <a href="../notebooks/00_a.html#the-pair">next</a> <a href="#top">top</a> <a href="#">#</a>
        <a href="https://example.org">web</a> <a href="mailto:a@b.c">mail</a> <a href="javascript:void(0)">js</a>
        <a href="../notebooks/">folder</a> <a href="appendix.html?x=1">appendix</a>
        <img src="../_static/logo.svg"></body></html>""",
    "notebooks/index.html": "<p>folder index</p>",
    "notebooks/00_a.html": """<body><section id="the-pair"><img src="../_images/fig.png" alt="figure"></section>
        <a href="01_b.html">next</a> <img id="player"></body>""",
    "notebooks/01_b.html": '<body><img src="data:image/png;base64,iVBORw0KGgo="></body>',
    "notebooks/01_b_details.html": "<body><p>a section without a figure is fine</p></body>",
    "book/appendix.html": "<body><figure><p>a table</p></figure></body>",
    "_static/style.css": "body {}",
    "_static/app.js": "",
    "_static/logo.svg": "<svg/>",
    "_static/webpack-macros.html": '<script src="{{ pathto(\'x.js\', 1) }}"></script>',
}


@pytest.fixture
def site(tmp_path):
    html = tmp_path / "html"
    for name, text in PAGES.items():
        path = html / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (html / "_images").mkdir()
    (html / "_images" / "fig.png").write_bytes(PNG)
    toc = tmp_path / "_toc.yml"
    toc.write_text(TOC)
    return html, toc


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_toc_pages_and_section_pages(site):
    _, toc = site
    assert toc_pages(toc) == ["book/intro", "notebooks/00_a", "notebooks/01_b", "notebooks/01_b_details",
                              "book/appendix"]
    assert section_pages(toc) == ["notebooks/00_a", "notebooks/01_b"]


def test_good_site_passes(site):
    assert check_site(*site) == []


def test_missing_page(site):
    html, toc = site
    (html / "notebooks" / "01_b_details.html").unlink()
    assert check_site(html, toc) == ["notebooks/01_b_details.html: page of _toc.yml not built"]


def test_broken_image(site):
    html, toc = site
    _edit(html / "notebooks" / "00_a.html", "../_images/fig.png", "../_images/gone.png")
    problems = check_site(html, toc)
    assert len(problems) == 2  # the broken image, and so no figure left on this section page
    assert problems[0].startswith("notebooks/00_a.html: broken image") and "gone.png" in problems[0]


def test_broken_internal_link(site):
    html, toc = site
    _edit(html / "book" / "intro.html", "../notebooks/00_a.html#the-pair", "../notebooks/00_x.html#the-pair")
    problems = check_site(html, toc)
    assert len(problems) == 1
    assert problems[0].startswith("book/intro.html: broken link") and "00_x.html" in problems[0]


def test_link_to_a_missing_anchor(site):
    html, toc = site
    _edit(html / "book" / "intro.html", "00_a.html#the-pair", "00_a.html#no-such-section")
    _edit(html / "book" / "intro.html", 'href="#top"', 'href="#bottom"')
    problems = check_site(html, toc)
    assert problems == ["book/intro.html: link to a missing anchor <a href='../notebooks/00_a.html#no-such-section'>",
                        "book/intro.html: link to a missing anchor <a href='#bottom'>"]


def test_broken_script_and_stylesheet(site):
    html, toc = site
    (html / "_static" / "app.js").unlink()
    (html / "_static" / "style.css").unlink()
    problems = check_site(html, toc)
    assert len(problems) == 2
    assert all(p.startswith("book/intro.html: broken") for p in problems)
    assert any("app.js" in p for p in problems) and any("style.css" in p for p in problems)


def test_section_page_without_figure(site):
    html, toc = site
    _edit(html / "notebooks" / "01_b.html", '<img src="data:image/png;base64,iVBORw0KGgo=">', "<p>text</p>")
    assert check_site(html, toc) == [
        "notebooks/01_b.html: section page without a figure (no <figure> and no PNG/SVG <img>)"]


def test_theme_images_are_not_figures(site):
    html, toc = site
    _edit(html / "notebooks" / "01_b.html", "data:image/png;base64,iVBORw0KGgo=", "../_static/logo.svg")
    assert check_site(html, toc) == [
        "notebooks/01_b.html: section page without a figure (no <figure> and no PNG/SVG <img>)"]


def test_no_site(tmp_path):
    (tmp_path / "_toc.yml").write_text(TOC)
    problems = check_site(tmp_path / "missing", tmp_path / "_toc.yml")
    assert len(problems) == 1 and "no built site" in problems[0]


def test_command_line(site, capsys):
    html, toc = site
    assert sitecheck.main(["static", "--html", str(html), "--toc", str(toc)]) == 0
    assert "OK" in capsys.readouterr().out
    (html / "_images" / "fig.png").unlink()
    assert sitecheck.main(["static", "--html", str(html), "--toc", str(toc)]) == 1
    out = capsys.readouterr().out
    assert "notebooks/00_a.html: broken image" in out and "problem(s)" in out


def test_browser_check_says_how_to_install_chromium(site, tmp_path):
    html, toc = site
    with pytest.raises(SiteCheckError, match="apt-get install chromium"):
        browse(html, tmp_path / "out", chromium=str(tmp_path / "no-chromium"), toc_path=toc)


def test_serve_serves_the_site_locally(site):
    html, _ = site
    with sitecheck.serve(html) as base:
        assert base.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(base + "notebooks/01_b.html", timeout=10) as response:
            assert b"data:image/png" in response.read()


def test_unique_scripts_drops_repeated_inline_scripts():
    from sphinx.builders.html._assets import _JavaScript

    body = 'const THEBE_JS_URL = "x"'
    scripts = [_JavaScript("_static/a.js"), _JavaScript(None, body=body), _JavaScript("_static/b.js"),
               _JavaScript("", body=body), _JavaScript(None, body="other")]
    assert unique_scripts(scripts) == [scripts[0], scripts[1], scripts[2], scripts[4]]
    assert unique_scripts(["a.js", "b.js", "a.js"]) == ["a.js", "b.js"]


def _have_browser() -> bool:
    import importlib.util
    import shutil

    return bool(shutil.which(sitecheck.CHROMIUM)) and importlib.util.find_spec("playwright") is not None \
        and sitecheck._axe_source() is not None


def test_accessibility_violations_split_into_ours_and_the_theme():
    ours, theme = sitecheck._summarise_axe([
        {"id": "image-alt", "impact": "critical", "help": "Images must have alternate text",
         "nodes": [{"target": "article img", "ours": True}, {"target": ".navbar img", "ours": False}]},
        {"id": "color-contrast", "impact": None, "help": "Contrast", "nodes": [{"target": "nav a", "ours": False}]}])
    assert [(v["id"], v["nodes"], v["example"]) for v in ours] == [("image-alt", 1, "article img")]
    assert [(v["id"], v["impact"]) for v in theme] == [("image-alt", "critical"), ("color-contrast", "minor")]
    report = sitecheck.PageReport("p", "u", "s.png", accessibility=ours, widget_views=2, widget_views_rendered=1)
    assert report.problems() == ["p: accessibility (critical): image-alt: Images must have alternate text "
                                 "(1 element(s), e.g. article img)", "p: widget views: 1 of 2 saved views rendered"]
    dark = sitecheck.PageReport("p", "u", "s.png", mode="dark", unreadable_figures=["../_images/a.png"])
    assert dark.problems() == ["p [dark]: figure unreadable in dark mode (transparent on a dark page): "
                               "../_images/a.png"]


@pytest.mark.skipif(not _have_browser(), reason="needs Chromium, Playwright and axe-core (requirements-site.txt)")
def test_the_browser_finds_unrendered_widgets_unreadable_figures_and_missing_alt_text(tmp_path):
    """Each new check of the browser pass can fail: a saved widget view nobody renders, a transparent figure on a
    dark page, an image without alternative text in the article."""
    import base64
    import struct
    import zlib

    def png(rgba: bytes, size: int = 16) -> bytes:
        raw = b"".join(b"\x00" + rgba * size for _ in range(size))
        chunk = lambda tag, data: struct.pack(">I", len(data)) + tag + data + struct.pack(  # noqa: E731
            ">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

    html = tmp_path / "html"
    (html / "notebooks").mkdir(parents=True)
    (html / "notebooks" / "clear.png").write_bytes(png(b"\x00\x00\x00\x00"))
    solid = base64.b64encode(png(b"\xff\xff\xff\xff")).decode()
    (html / "notebooks" / "00_a.html").write_text(f"""<!DOCTYPE html><html lang="en"><head><title>a</title>
        <style>@media (prefers-color-scheme: dark) {{ body {{ background: #111; color: #eee; }} }}</style></head>
        <body><main><article><h1>A</h1><img src="clear.png" alt="a transparent figure">
        <img src="data:image/png;base64,{solid}" alt="an opaque figure"><img src="clear.png">
        <script type="application/vnd.jupyter.widget-view+json">{{"model_id": "x", "version_major": 2}}</script>
        </article></main></body></html>""")
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: notebooks/00_a\n")
    problems = browse(html, tmp_path / "out", toc_path=toc, settle_ms=200)
    assert any("widget views: 0 of 1 saved views rendered" in p for p in problems), problems
    assert any("[dark]: figure unreadable in dark mode" in p and "clear.png" in p for p in problems), problems
    assert not any("[dark]" in p and "data:image" in p for p in problems)  # the opaque one is fine
    assert any("accessibility (critical): image-alt" in p for p in problems), problems
    assert (tmp_path / "out" / "dark" / "notebooks__00_a.png").is_file()


def test_bibliography_entries_get_a_role_their_list_accepts():
    from tools.sphinxext import accessible_citations

    html = '<div role="list" class="citation-list">\n<div class="citation" id="id1" role="doc-biblioentry">x</div>'
    assert accessible_citations(html) == html.replace('role="doc-biblioentry"', 'role="listitem"')
    assert accessible_citations("<p>no bibliography</p>") == "<p>no bibliography</p>"
