"""The book pipeline: execute notebooks with papermill, clean them, stage the book sources.

Used by the Makefile (``python -m imreg_lib.pipeline ...``)::

    execute IN OUT --params params/paper.yaml   # papermill with the notebook's parameter set
    execute NB NB --in-place                    # re-execute a committed notebook at its defaults
    stage EXECUTED_DIR SRC_DIR                  # book sources + executed notebooks, for Jupyter Book
    sweep NB --grid '{cg_counts: [[5], [25]], cg_iters_partial: [100, 200]}' --workers 2
                                                # one run per grid point into _build/sweeps/<stem>/, one table

``params/*.yaml`` maps each notebook's file stem to its parameters. The parameter ``results_path`` is set
to ``_build/results/<stem>.json`` unless the file sets it.

A sweep runs the Cartesian product of the grid's values (each key a parameter of the notebook's
``parameters`` cell, each value a list), on top of an optional ``--base`` parameter file, with papermill,
optionally in parallel worker processes. Every run writes ``<name>.ipynb`` and ``<name>.json`` into
``--out``/<stem>/; the scalar entries of the results JSON are collected into ``table.csv`` and ``table.md``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SweepRun", "clean_notebook", "execute_notebook", "flatten_results", "plan_sweep", "run_sweep",
           "stage_book", "sweep_table"]

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


def _load_params(params_file: str | Sequence[str] | None, stem: str) -> dict:
    """The parameters of notebook ``stem`` from one params file or several (later files override earlier)."""
    if not params_file:
        return {}
    if not isinstance(params_file, (str, os.PathLike)):
        merged: dict = {}
        for f in params_file:
            merged.update(_load_params(f, stem))
        return merged
    import yaml

    with open(params_file) as fh:
        table = yaml.safe_load(fh) or {}
    if not isinstance(table, dict):
        raise ValueError(f"{params_file} must map notebook names to parameter dictionaries")
    params = table.get(stem, {}) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{params_file}: the entry for {stem!r} must be a dictionary of parameters")
    return dict(params)


def _running_cell(path: Path) -> tuple[int, str]:
    """The cell a papermill run stopped in (the last one it started), numbered as in the source notebook (an
    injected parameters cell not counted), and its first line."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    started = [i for i, c in enumerate(cells) if (c.metadata.get("papermill") or {}).get("start_time")]
    if not started:
        return -1, ""
    lines = [line for line in cells[started[-1]].source.splitlines() if line.strip()]
    return started[-1], (lines[0] if lines else "")


def execute_notebook(src: Path, dst: Path, params_file: str | Sequence[str] | None = None, in_place: bool = False,
                     params: Mapping | None = None, cell_timeout: float | None = None) -> None:
    """Run ``src`` with papermill into ``dst`` (cwd = the notebook's folder) and clean the result.

    The parameters are the entry for ``src`` in ``params_file`` (or in several files, later ones overriding
    earlier ones, e.g. the paper's settings and then a data overlay), updated by ``params``. ``cell_timeout`` (seconds)
    limits every cell: a cell that runs longer stops the run with a ``TimeoutError`` naming the notebook and the
    cell. The numeric settings of ``tools/numerics.mk`` are applied to the kernel's environment where the
    environment does not set them.
    """
    import papermill as pm

    from tools.numerics import apply_defaults

    if cell_timeout is not None and not (isinstance(cell_timeout, (int, float)) and not isinstance(cell_timeout, bool)
                                         and cell_timeout > 0):
        raise ValueError(f"cell_timeout must be a positive number of seconds or None, got {cell_timeout!r}")
    apply_defaults()
    params = {**_load_params(params_file, src.stem), **(params or {})}
    if not in_place:
        # relative to the notebook's folder (papermill's cwd): no path of this machine in the executed notebook
        results = os.path.abspath(os.path.join("_build", "results", f"{src.stem}.json"))
        params.setdefault("results_path", os.path.relpath(results, os.path.abspath(src.parent)))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".running.ipynb")
    try:
        pm.execute_notebook(str(src), str(tmp), parameters=params, cwd=str(src.parent), progress_bar=False,
                            kernel_name="python3", execution_timeout=cell_timeout)
    except TimeoutError as exc:  # nbclient's CellTimeoutError
        index, first = _running_cell(tmp) if tmp.is_file() else (-1, "")
        raise TimeoutError(f"{src}: cell {index} ({first!r}) ran longer than the per-cell limit of {cell_timeout} s "
                           f"(CELL_TIMEOUT / --cell-timeout); partial output in {tmp}") from exc
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


# ---- sweeps -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepRun:
    """One point of a sweep: its name, the parameters given to papermill and its output files."""

    name: str
    params: dict
    notebook: Path
    results: Path


def _slug(value) -> str:
    text = json.dumps(value, separators=(",", ":")) if not isinstance(value, str) else value
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "empty"


def plan_sweep(notebook: Path, grid: Mapping[str, Sequence], out: Path, base: Mapping | None = None) -> list[SweepRun]:
    """The runs of a sweep, checked before anything executes.

    Parameters
    ----------
    notebook : Path
        A notebook with a cell tagged ``parameters``.
    grid : mapping
        ``{parameter: [value, ...]}``; every parameter must be one of the notebook's, every list non-empty.
    out : Path
        The sweep folder; runs go to ``out / <stem>``.
    base : mapping, optional
        Parameters shared by every run (e.g. an entry of ``params/quick.yaml``); the grid overrides them.

    Raises
    ------
    ValueError
        Naming the offending parameter and what is allowed.
    """
    import papermill as pm

    notebook = Path(notebook)
    if not notebook.is_file():
        raise ValueError(f"notebook={str(notebook)!r} does not exist")
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError("grid must be a non-empty mapping {parameter: [values]}, got " + repr(grid))
    allowed = set(pm.inspect_notebook(str(notebook)))
    for key in {**(base or {}), **grid}:
        if key not in allowed:
            raise ValueError(f"{key!r} is not a parameter of {notebook.name}; allowed: {', '.join(sorted(allowed))}")
    for key, values in grid.items():
        if key == "results_path":
            raise ValueError("grid may not set results_path: every run writes its own JSON into the sweep folder")
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid[{key!r}] must be a non-empty list of values, got {values!r}")
    folder = Path(out) / notebook.stem
    runs = []
    keys = list(grid)
    for combo in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, combo, strict=True))
        name = "__".join(f"{k}-{_slug(v)}" for k, v in point.items())
        results = (folder / f"{name}.json").resolve()
        shared = {k: v for k, v in (base or {}).items() if k not in point}
        runs.append(SweepRun(name, {**point, **shared, "results_path": str(results)},  # grid keys first
                             folder / f"{name}.ipynb", results))
    if len({r.name for r in runs}) != len(runs):
        raise ValueError("grid values give duplicate run names; make the values distinct")
    return runs


def _execute_run(notebook: str, run: SweepRun, threads: int, cell_timeout: float | None = None) -> str | None:
    """Worker: execute one sweep run; returns an error message or None."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the kernel inherits it: no oversubscription across workers
    os.environ["MKL_NUM_THREADS"] = str(threads)
    try:
        execute_notebook(Path(notebook), run.notebook.resolve(), params=run.params, cell_timeout=cell_timeout)
    except Exception as exc:  # a failed run is reported in the table; the others go on
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    return None


def flatten_results(results: Mapping, prefix: str = "") -> dict:
    """The scalar leaves (numbers, strings, booleans, None) of a results JSON as ``{"a.b.c": value}``; lists
    are left out."""
    flat: dict = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_results(value, name + "."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            flat[name] = value
    return flat


def sweep_table(runs: Sequence[SweepRun], errors: Mapping[str, str | None],
                collect: Sequence[str] | None = None) -> tuple[list[str], list[dict]]:
    """Columns and rows of the sweep table: the grid parameters, the run's status, then the collected results
    (every scalar of the results JSON, or only the ``collect`` keys)."""
    rows = []
    for run in runs:
        row = {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in run.params.items()
               if k != "results_path"}
        row["run"] = run.name
        row["status"] = "failed: " + errors[run.name] if errors.get(run.name) else "ok"
        if not errors.get(run.name) and run.results.is_file():
            flat = flatten_results(json.loads(run.results.read_text()))
            row.update(flat if collect is None else {k: flat.get(k) for k in collect})
        rows.append(row)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    return columns, rows


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def run_sweep(notebook: Path, grid: Mapping[str, Sequence], out: Path = Path("_build/sweeps"),
              base: Mapping | None = None, workers: int = 1, collect: Sequence[str] | None = None,
              cell_timeout: float | None = None) -> Path:
    """Execute every run of :func:`plan_sweep` (``workers`` processes, the cores shared among them) and write
    ``table.csv`` and ``table.md`` into the sweep folder, whose path is returned. Raises ``RuntimeError`` after
    writing the table if a run failed. ``cell_timeout``: the per-cell limit of each run, in seconds.

    The threads of the numeric settings (``OMP_NUM_THREADS``, default 1) are split among the workers (at least one
    each)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    runs = plan_sweep(notebook, grid, out, base)
    folder = runs[0].notebook.parent
    folder.mkdir(parents=True, exist_ok=True)
    from tools.numerics import apply_defaults

    threads = max(1, int(apply_defaults()["OMP_NUM_THREADS"]) // workers)
    if workers == 1:
        errors = {r.name: _execute_run(str(notebook), r, threads, cell_timeout) for r in runs}
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {r.name: pool.submit(_execute_run, str(notebook), r, threads, cell_timeout) for r in runs}
            errors = {name: f.result() for name, f in futures.items()}
    columns, rows = sweep_table(runs, errors, collect)
    with open(folder / "table.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    (folder / "table.md").write_text("\n".join(lines) + "\n")
    failed = [name for name, e in errors.items() if e]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(runs)} runs failed ({', '.join(failed)}); see {folder / 'table.md'}")
    return folder


def _yaml_arg(text: str | None, what: str) -> dict:
    """A YAML mapping given inline or as a file name."""
    import yaml

    if not text:
        return {}
    value = yaml.safe_load(Path(text).read_text()) if Path(text).is_file() else yaml.safe_load(text)
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a YAML mapping (inline or a file), got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m imreg_lib.pipeline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("execute", help="execute one notebook with papermill")
    ex.add_argument("src", type=Path)
    ex.add_argument("dst", type=Path)
    ex.add_argument("--params", action="append", default=None,
                    help="YAML file: {notebook stem: {parameter: value}}; repeat to overlay (later files win)")
    ex.add_argument("--in-place", action="store_true", help="re-execute a committed notebook at its defaults")
    ex.add_argument("--cell-timeout", type=float, default=None, help="per-cell time limit in seconds")
    st = sub.add_parser("stage", help="stage book sources and executed notebooks")
    st.add_argument("executed", type=Path)
    st.add_argument("out", type=Path)
    sw = sub.add_parser("sweep", help="run one notebook over a grid of parameters and collect the results")
    sw.add_argument("notebook", type=Path)
    sw.add_argument("--grid", required=True, help="YAML {parameter: [values]}, inline or a file")
    sw.add_argument("--base", default=None, help="a params file (its entry for the notebook) shared by all runs")
    sw.add_argument("--out", type=Path, default=Path("_build/sweeps"))
    sw.add_argument("--workers", type=int, default=1, help="parallel worker processes (cores are shared)")
    sw.add_argument("--collect", default=None, help="comma-separated result keys (a.b.c) for the table")
    sw.add_argument("--cell-timeout", type=float, default=None, help="per-cell time limit of each run, seconds")
    args = ap.parse_args(argv)
    if args.cmd == "execute":
        execute_notebook(args.src, args.dst, args.params, args.in_place, cell_timeout=args.cell_timeout)
    elif args.cmd == "stage":
        stage_book(args.executed, args.out)
    else:
        base = _load_params(args.base, args.notebook.stem) if args.base else {}
        base.pop("results_path", None)
        folder = run_sweep(args.notebook, _yaml_arg(args.grid, "--grid"), args.out, base, args.workers,
                           args.collect.split(",") if args.collect else None, cell_timeout=args.cell_timeout)
        print((folder / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
