"""`make lab` as a reader uses it: JupyterLab on 127.0.0.1 with a token, a page's widget cell run in a real kernel,
a slider moved in a real browser, the figure redrawn; and the kernels' start-up without warnings nobody can act on.

The browser test needs JupyterLab (requirements-lab.txt), Playwright (requirements-site.txt) and Chromium; without
them it is skipped, except under ``make lab-check`` (``IMREG_REQUIRE_BROWSER=1``), which installs them and where a
missing piece fails.
"""

import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tools import ipython_kernel_config as kernel_config

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("IPKernelApp", logging.WARNING, __file__, 1, message, None, None)


def test_the_kernel_config_drops_only_the_loopback_tcp_warning():
    warning = _record("Kernel is running over TCP without encryption. All communication ...")
    assert not kernel_config.keep_record(warning, ip="127.0.0.1")
    assert kernel_config.keep_record(warning, ip="10.0.0.5")  # reachable from elsewhere: the warning stays
    assert kernel_config.keep_record(warning, ip="")
    assert kernel_config.keep_record(_record("Failed to load connection file"), ip="127.0.0.1")


def test_the_environment_has_the_kernel_config():
    installed = Path(sys.prefix) / "etc" / "ipython" / "ipython_kernel_config.py"
    assert installed.read_text() == (ROOT / "tools" / "ipython_kernel_config.py").read_text(), (
        "make env copies tools/ipython_kernel_config.py into .venv/etc/ipython")


@pytest.mark.slow
def test_papermill_by_hand_starts_its_kernel_without_the_tcp_warning(tmp_path):
    """The README's way (papermill from the command line, over jupyter_client's default TCP on 127.0.0.1)."""
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                     "source": ["print('ran')"]}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "in.ipynb").write_text(json.dumps(nb))
    run = subprocess.run([sys.executable, "-m", "papermill", "in.ipynb", "out.ipynb", "--no-progress-bar"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "ran" in (tmp_path / "out.ipynb").read_text()
    assert "without encryption" not in run.stderr, run.stderr


# ---- the browser test -------------------------------------------------------------------------------------

def _missing() -> str | None:
    for module, where in (("jupyterlab", "requirements-lab.txt"), ("playwright", "requirements-site.txt")):
        try:
            __import__(module)
        except ImportError:
            return f"needs {module} ({where}; make lab-check installs it)"
    if shutil.which(CHROMIUM) is None:
        return f"needs Chromium at {CHROMIUM} (make lab-check installs Debian's)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _widget_notebook(path: Path) -> None:
    """The 02 page's parameters, its set-up and its widget cell (the scale-space slider), taken from the committed
    notebook, at a small size."""
    page = json.loads((ROOT / "notebooks" / "02_multiscale.ipynb").read_text())
    code = [c for c in page["cells"] if c["cell_type"] == "code"]
    params = next(c for c in code if "parameters" in c["metadata"].get("tags", []))
    setup = next(c for c in code if "reject_unknown_parameters()" in "".join(c["source"]))
    widget = next(c for c in code if "scale_space_explorer(" in "".join(c["source"]))
    small = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
             "source": ["m = 16\n", "results_path = 'r.json'"]}
    cells = [dict(c, outputs=[], execution_count=None) for c in (params, setup, widget)]
    nb = {"cells": [cells[0], small, *cells[1:]], "metadata": page["metadata"], "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))


@pytest.fixture
def lab(tmp_path):
    """JupyterLab as ``make lab`` starts it (127.0.0.1, a token), serving a folder with the widget notebook."""
    reason = _missing()
    if reason:
        if os.environ.get("IMREG_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    _widget_notebook(tmp_path / "widget.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_TOKEN": token}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--ServerApp.root_dir={tmp_path}", "--LabApp.expose_app_in_browser=True",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "w"))  # noqa: SIM115
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if server.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail("JupyterLab did not start: " + (tmp_path / "lab.log").read_text()[-2000:])
        yield base, token, tmp_path
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.mark.slow
def test_lab_listens_on_loopback_with_a_token(lab):
    base, token, _ = lab
    with pytest.raises(urllib.error.HTTPError) as err:  # no token: refused
        urllib.request.urlopen(f"{base}/api/contents", timeout=5)
    assert err.value.code == 403
    with urllib.request.urlopen(f"{base}/api/contents?token={token}", timeout=5) as r:
        assert "widget.ipynb" in r.read().decode()


@pytest.mark.slow
def test_a_page_widget_redraws_when_its_slider_moves(lab):
    from playwright.sync_api import sync_playwright

    from tools.sitecheck import CHROMIUM_ARGS

    base, token, folder = lab
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which(CHROMIUM), headless=True,
                                     args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{base}/lab/tree/widget.ipynb?token={token}&reset", timeout=120_000)
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                                   " && window.jupyterapp.shell.currentWidget.sessionContext"
                                   " && window.jupyterapp.shell.currentWidget.sessionContext.session",
                                   timeout=120_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            figure = page.locator(".widget-interact .jp-OutputArea-output img").first
            figure.wait_for(timeout=180_000)
            before = figure.get_attribute("src")
            readout = page.locator(".widget-interact .widget-readout").first
            start = readout.inner_text()
            handle = page.locator(".widget-interact .noUi-handle").first
            handle.focus()
            handle.press("ArrowLeft")  # one step of log10 θ down
            page.wait_for_function(
                "(old) => { const img = document.querySelector('.widget-interact .jp-OutputArea-output img');"
                " return img && img.getAttribute('src') !== old; }", arg=before, timeout=120_000)
            assert readout.inner_text() != start
            assert figure.get_attribute("src") != before
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            assert errors.count() == 0, errors.all_inner_texts()
        finally:
            browser.close()
    assert (folder / "widget.ipynb").exists()
