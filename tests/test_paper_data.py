"""`make paper-data`: the paper's images on request, checked by SHA-256, from a mirror, file:// or a folder.

The real images are not redistributable and never appear here: stand-in files with overridden checksums are
served from a temporary folder, over file://, and over HTTP from a server on 127.0.0.1 started by the test.
"""

from __future__ import annotations

import functools
import http.server
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tools import paper_data

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def standins(tmp_path):
    """A folder with two stand-in files and the checksums that accept them."""
    src = tmp_path / "mirror"
    src.mkdir()
    sums = {}
    for i, name in enumerate(paper_data.FILES):
        (src / name).write_bytes(bytes([i]) * (1000 + i))
        sums[name] = paper_data.sha256(src / name)
    return src, sums


def _left(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


def test_pinned_checksums_and_address():
    assert paper_data.FILES == {
        "hands-R.jpg": "608a8f54793a05a375d8d611a5f7196554d3ccc1d2271f3cd758cd99cb4d6e21",
        "hands-T.jpg": "33458a21ad3bc9aea49f0a704a2d99c5b1968b48e8cb1d75d3e98571ba218392"}
    assert paper_data.COMMIT == "8ae715d744cbbe13356e68477df782c0894fe9d3"
    assert paper_data.DEFAULT_URL.endswith(f"/{paper_data.COMMIT}/data")
    assert paper_data.DEFAULT_DEST == Path("data/paper")


@pytest.mark.parametrize("form", ["folder", "file_url"])
def test_fetch_from_a_folder_or_file_url_checks_and_stores(standins, tmp_path, form):
    src, sums = standins
    url = str(src) if form == "folder" else src.as_uri()
    dest = tmp_path / "store"
    stored = paper_data.fetch(url, dest, checksums=sums)
    assert sorted(stored) == sorted(paper_data.FILES) and _left(dest) == sorted(paper_data.FILES)
    assert all(paper_data.sha256(p) == sums[n] for n, p in stored.items())
    assert paper_data.check(dest, checksums=sums) == stored
    # stored files are not fetched again (the source may go away)
    for f in src.iterdir():
        f.unlink()
    assert paper_data.fetch(url, dest, checksums=sums) == stored


def test_the_pinned_checksums_reject_stand_ins_and_leave_nothing(standins, tmp_path):
    src, _ = standins
    dest = tmp_path / "store"
    with pytest.raises(paper_data.PaperDataError, match=r"hands-R.jpg: SHA-256 .* does not match the pinned 608a8f54"):
        paper_data.fetch(str(src), dest)
    assert _left(dest) == []  # no partial file, no temporary file
    with pytest.raises(paper_data.PaperDataError, match="hands-R.jpg is missing; hands-T.jpg is missing"):
        paper_data.check(dest)


def test_a_changed_file_is_replaced_and_a_wrong_one_never_appears(standins, tmp_path):
    src, sums = standins
    dest = tmp_path / "store"
    paper_data.fetch(str(src), dest, checksums=sums)
    (dest / "hands-T.jpg").write_bytes(b"tampered")
    with pytest.raises(paper_data.PaperDataError, match="hands-T.jpg has another SHA-256"):
        paper_data.check(dest, checksums=sums)
    paper_data.fetch(str(src), dest, checksums=sums)  # fetched again, verified
    assert paper_data.sha256(dest / "hands-T.jpg") == sums["hands-T.jpg"]
    (src / "hands-T.jpg").write_bytes(b"another image")
    (dest / "hands-T.jpg").unlink()
    with pytest.raises(paper_data.PaperDataError, match="hands-T.jpg: SHA-256"):
        paper_data.fetch(str(src), dest, checksums=sums)
    assert _left(dest) == ["hands-R.jpg"]


def test_missing_files_bad_addresses_and_bad_checksums_are_clear_errors(standins, tmp_path):
    src, sums = standins
    (src / "hands-T.jpg").unlink()
    with pytest.raises(paper_data.PaperDataError, match="hands-T.jpg: not found at .*PAPER_DATA_URL"):
        paper_data.fetch(str(src), tmp_path / "a", checksums=sums)
    with pytest.raises(paper_data.PaperDataError, match="the scheme 'ftp' is not supported"):
        paper_data.fetch("ftp://example.org/data", tmp_path / "b")
    assert not (tmp_path / "b").exists()  # checked before any work
    with pytest.raises(paper_data.PaperDataError, match="unknown file 'hands.jpg'"):
        paper_data.fetch(str(src), tmp_path / "c", checksums={"hands.jpg": "0" * 64})
    with pytest.raises(paper_data.PaperDataError, match="64 lowercase hex digits"):
        paper_data.fetch(str(src), tmp_path / "c", checksums={"hands-R.jpg": "xyz"})
    with pytest.raises(paper_data.PaperDataError, match="non-empty"):
        paper_data.fetch("", tmp_path / "c")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


def test_fetch_over_http_from_a_local_server_and_no_network(standins, tmp_path):
    src, sums = standins
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(src)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        stored = paper_data.fetch(url + "/", tmp_path / "http", checksums=sums)
        assert paper_data.sha256(stored["hands-R.jpg"]) == sums["hands-R.jpg"]
        with pytest.raises(paper_data.PaperDataError, match="answered HTTP 404"):
            paper_data.fetch(url + "/nowhere", tmp_path / "404", checksums=sums)
        assert _left(tmp_path / "404") == []
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as s:  # a port nothing listens on: "no network"
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(paper_data.PaperDataError, match="could not download .*no network"):
        paper_data.fetch(f"http://127.0.0.1:{port}/data", tmp_path / "off", checksums=sums)
    assert _left(tmp_path / "off") == []


def test_command_line_exit_codes_and_the_stand_in_warning(standins, tmp_path):
    src, sums = standins
    cmd = [sys.executable, "-m", "tools.paper_data"]
    dest = str(tmp_path / "cli")
    bad = subprocess.run([*cmd, "fetch", "--url", str(src), "--dest", dest], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and "paper-data: hands-R.jpg: SHA-256" in bad.stderr
    over = [f"--sha256={n}={d}" for n, d in sums.items()]
    good = subprocess.run([*cmd, "fetch", "--url", str(src), "--dest", dest, *over], cwd=ROOT, capture_output=True,
                          text=True)
    assert good.returncode == 0, good.stderr
    assert "stand-in images, not the paper's data" in good.stderr and "hands-T.jpg  sha256" in good.stdout
    checked = subprocess.run([*cmd, "check", "--dest", dest], cwd=ROOT, capture_output=True, text=True)
    assert checked.returncode == 1 and "run `make paper-data`" in checked.stderr
    assert "torch" not in subprocess.run(
        [sys.executable, "-c", "import sys, tools.paper_data; print(' '.join(sys.modules))"], cwd=ROOT,
        capture_output=True, text=True).stdout.split()


def test_the_data_folder_is_ignored_by_git():
    out = subprocess.run(["git", "check-ignore", "-q", "data/paper/hands-R.jpg"], cwd=ROOT)
    assert out.returncode == 0


def test_the_data_overlay_names_real_parameters_and_the_fetched_files():
    import ast

    import nbformat
    import yaml

    from imreg_lib.data import ORIENTATIONS

    overlay = yaml.safe_load((ROOT / "params" / "data-paper.yaml").read_text())
    for stem, params in overlay.items():
        cell = next(c for c in nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4).cells
                    if "parameters" in c.metadata.get("tags", []))
        names = {t.id for node in ast.parse(cell.source).body for t in getattr(node, "targets", [])}
        assert set(params) <= names, (stem, set(params) - names)
        for key in ("reference_path", "template_path"):
            if key in params:
                path = (ROOT / "notebooks" / params[key]).resolve()
                assert path.parent == (ROOT / paper_data.DEFAULT_DEST).resolve() and path.name in paper_data.FILES
        assert params.get("template_orientation", "upright") in ORIENTATIONS
        for key in ("results_path", "report_path"):
            if key in params:
                assert params[key].startswith("../_build/results/paper/"), (stem, key)
    assert overlay["02_multiscale"]["template_orientation"] == "rotate_180"  # the paper's Figs 2-3
    assert "template_path" not in overlay["03_superresolution"]  # the super-resolution uses the reference only
    assert overlay["04_reproduction"]["data"] == "paper"
