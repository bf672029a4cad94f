"""What a user on another platform meets first: importing the library, and installing it under its name."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_the_library_imports_and_measures_memory_without_the_posix_resource_module():
    code = textwrap.dedent("""
        import sys
        import psutil  # psutil's Linux backend uses `resource` itself: load it first
        sys.modules["resource"] = None  # then, as on Windows, `import resource` raises ImportError
        import imreg_lib as il
        from imreg_lib.timing import peak_rss_mb
        assert peak_rss_mb() > 1.0
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_the_install_line_of_the_book_resolves_the_distribution_name(tmp_path):
    """`pip install "imreg-ad-book[book] @ <location>"` (the Colab line of the introduction, here with a local
    wheel) installs a distribution of that name, with the library `imreg_lib` inside; nothing is downloaded."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(root / name, src / name)
    for package in ("imreg_lib", "tools"):  # the packages pyproject.toml lists
        shutil.copytree(root / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "-w", str(wheels), str(src)], check=True, timeout=300)
    (wheel,) = wheels.glob("*.whl")
    assert wheel.name.startswith("imreg_ad_book-")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / ("Scripts" if sys.platform == "win32" else "bin") / "python"
    target = venv / "site"
    line = f"imreg-ad-book[book] @ {wheel.as_uri()}"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target",
                    str(target), line], check=True, timeout=300)
    meta = subprocess.run([str(python), "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                           "from importlib import metadata as m; d = m.distribution('imreg-ad-book'); "
                           "files = {str(f) for f in d.files}; "
                           "need = {'imreg_lib/__init__.py', 'imreg_lib/paper/__init__.py'}; "
                           "print(d.metadata['Name'], need <= files, "
                           "[r for r in d.requires if r.startswith('torch')])", str(target)],
                          capture_output=True, text=True, check=True, timeout=300).stdout.split(None, 2)
    assert meta[0] == "imreg-ad-book" and meta[1] == "True"
    assert "==" not in meta[2]  # compatible ranges: a user's own torch is not replaced


def test_licence_and_citation_agree():
    import tomllib
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    assert tomllib.loads((root / "pyproject.toml").read_text())["project"]["license"] == "MIT"
    assert (root / "LICENSE").read_text().startswith("MIT License")
    cff = yaml.safe_load((root / "CITATION.cff").read_text())
    assert cff["license"] == "MIT" and cff["cff-version"] == "1.2.0"
    arxiv = {i["value"] for i in cff["preferred-citation"]["identifiers"]}
    assert arxiv == {"arXiv:2411.02806"}
    assert "eprint        = {2411.02806}" in (root / "book" / "references.bib").read_text()
