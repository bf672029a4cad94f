"""The book pipeline: execute notebooks with papermill, clean them, stage the book sources.

Used by the Makefile (``python -m imreg_lib.pipeline ...``)::

    execute IN OUT --params params/paper.yaml   # papermill with the notebook's parameter set
    execute NB NB --in-place                    # re-execute a committed notebook at its defaults
    stage EXECUTED_DIR SRC_DIR                  # book sources + executed notebooks, for Jupyter Book

``params/*.yaml`` maps each notebook's file stem to its parameters. The parameter ``results_path`` is set
to ``_build/results/<stem>.json`` unless the file sets it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

__all__ = ["clean_notebook", "execute_notebook", "stage_book"]

_ROOT_FILES = ("_config.yml", "_toc.yml")


def clean_notebook(path: Path) -> None:
    """Strip volatile metadata (papermill timings, execution timestamps) and hide the injected parameters."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
        if cell.cell_type == "code":
            cell.metadata.pop("collapsed", None)
    nbformat.write(nb, path)


def _load_params(params_file: str | None, stem: str) -> dict:
    if not params_file:
        return {}
    import yaml

    with open(params_file) as fh:
        table = yaml.safe_load(fh) or {}
    if not isinstance(table, dict):
        raise ValueError(f"{params_file} must map notebook names to parameter dictionaries")
    params = table.get(stem, {}) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{params_file}: the entry for {stem!r} must be a dictionary of parameters")
    return dict(params)


def execute_notebook(src: Path, dst: Path, params_file: str | None = None, in_place: bool = False) -> None:
    """Run ``src`` with papermill into ``dst`` (cwd = the notebook's folder) and clean the result."""
    import papermill as pm

    params = _load_params(params_file, src.stem)
    if not in_place:
        params.setdefault("results_path", os.path.abspath(os.path.join("_build", "results", f"{src.stem}.json")))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".running.ipynb")
    pm.execute_notebook(str(src), str(tmp), parameters=params, cwd=str(src.parent), progress_bar=False,
                        kernel_name="python3")
    if in_place:  # keep the committed notebook free of an injected cell
        import nbformat

        nb = nbformat.read(tmp, as_version=4)
        nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
        nbformat.write(nb, tmp)
    clean_notebook(tmp)
    tmp.replace(dst)


def stage_book(executed: Path, out: Path) -> None:
    """Copy the book's sources and the executed notebooks into ``out`` (what Jupyter Book renders)."""
    root = Path.cwd()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in _ROOT_FILES:
        shutil.copy2(root / name, out / name)
    shutil.copytree(root / "book", out / "book")
    shutil.copytree(executed, out / "notebooks", ignore=shutil.ignore_patterns("*.running.ipynb"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m imreg_lib.pipeline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("execute", help="execute one notebook with papermill")
    ex.add_argument("src", type=Path)
    ex.add_argument("dst", type=Path)
    ex.add_argument("--params", default=None, help="YAML file: {notebook stem: {parameter: value}}")
    ex.add_argument("--in-place", action="store_true", help="re-execute a committed notebook at its defaults")
    st = sub.add_parser("stage", help="stage book sources and executed notebooks")
    st.add_argument("executed", type=Path)
    st.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "execute":
        execute_notebook(args.src, args.dst, args.params, args.in_place)
    else:
        stage_book(args.executed, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
