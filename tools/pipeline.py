"""The book pipeline: execute notebooks with papermill, clean them, stage the book sources, run sweeps on Dask.

Used by the Makefile (``python -m tools.pipeline ...``)::

    execute IN OUT --params params/paper.yaml [--params params/data-paper.yaml]
                                                # papermill with the notebook's parameter set (overlays win)
    execute NB NB --in-place                    # re-execute a committed notebook at its defaults
    stage EXECUTED_DIR SRC_DIR                  # book sources + executed notebooks + the status page
    sweep NB --grid '{cg_counts: [[5], [25]], cg_iters_partial: [100, 200]}' [--workers 2 | --scheduler ADDR]
                                                # one run per grid point on Dask, into _build/sweeps/<stem>/

``params/*.yaml`` maps each notebook's file stem to its parameters. The parameter ``results_path`` is set
to ``_build/results/<stem>.json`` unless the file sets it. Every execution leaves a record (status, wall time,
per-cell durations, parameters, peak memory) in ``status/<stem>.json`` beside the executed notebook, from which
:func:`stage_book` generates the book's execution-status page.

A sweep runs the Cartesian product of the grid's values (each key a parameter of the notebook's
``parameters`` cell, each value a list), on top of an optional ``--base`` parameter file, one papermill
execution per point on a Dask cluster (a local one on 127.0.0.1 by default). Every run's ``<name>.ipynb`` and
``<name>.json`` come back to the client, into ``--out``/<stem>/; the scalar entries of the results JSON are
collected into ``table.csv`` and ``table.md``.
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
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SweepRun", "clean_notebook", "execute_notebook", "flatten_results", "plan_sweep", "run_sweep",
           "stage_book", "status_page", "sweep_table", "write_execution_record"]

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


def _kernel_manager_class(started: list | None = None):
    """Kernels over Unix domain sockets where the platform has them; each manager is appended to ``started``.

    Over TCP, jupyter_client picks five free ports, releases them and lets the kernel bind them; kernels that
    start at the same moment (parallel sweep workers, tests) can take each other's ports, and a client then
    waits forever for a reply that went elsewhere. A socket file with a unique name cannot collide, and nothing
    listens on a network port at all. On Windows (no Unix sockets) the default TCP transport on 127.0.0.1 is kept.
    """
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            if os.name == "posix":
                runtime = jupyter_runtime_dir()
                os.makedirs(runtime, exist_ok=True)
                kwargs.setdefault("transport", "ipc")
                kwargs.setdefault("ip", os.path.join(runtime, f"imreg-{uuid.uuid4().hex[:12]}-ipc"))
            super().__init__(**kwargs)
            if started is not None:
                started.append(self)

    return IPCKernelManager


#: How long (seconds) a kernel may stay idle, its own CPU time and its children's growing by less than
#: :data:`IDLE_CPU_FRACTION` of the time that passed, while papermill waits on it, before :func:`execute_notebook`
#: takes the run as lost and runs the notebook once more. Every cell of the book computes; an idle kernel under a
#: cell that papermill still waits for is the lost-message hang between nbclient and ipykernel around widget cells
#: (jupyter/nbclient#312), in which nbclient's own per-cell limit may never fire.
STALL_TIMEOUT = 120.0
#: Below this share of one core a kernel counts as idle. A kernel in the lost-message hang is not at zero: its
#: threads (heartbeat, I/O) add a clock tick of system time every few seconds (measured: 0.01 s in 5 to 20 s), which
#: kept a watch for CPU time that does not move at all from firing for 15 minutes; a cell that computes uses a
#: whole core.
IDLE_CPU_FRACTION = 0.05


class _Watchdog:
    """Watches the CPU time of the kernel the current papermill run started (and of its child processes); kills
    the kernel when, over the last ``stall_timeout`` seconds, that grew by less than ``idle_fraction`` of them
    (:data:`IDLE_CPU_FRACTION`), so that nbclient, which polls the kernel every second, stops with a dead-kernel
    error. If the run still has not returned ``grace`` seconds later and runs in the main thread, the main thread is
    interrupted (``KeyboardInterrupt``) as a last resort."""

    def __init__(self, started: list, stall_timeout: float, poll: float = 1.0, grace: float = 30.0,
                 idle_fraction: float = IDLE_CPU_FRACTION) -> None:
        import threading

        self.started, self.stall_timeout, self.poll, self.grace = started, stall_timeout, poll, grace
        self.idle_fraction = idle_fraction
        self.fired = False
        self.idle_seconds = 0.0
        self._done = threading.Event()
        self._main = threading.current_thread() is threading.main_thread()
        self._thread = threading.Thread(target=self._run, name="imreg-kernel-watchdog", daemon=True)
        self._thread.start()

    @staticmethod
    def _cpu(pid: int) -> float | None:
        import psutil

        try:
            proc = psutil.Process(pid)
            total = sum(proc.cpu_times()[:2])
            for child in proc.children(recursive=True):
                try:
                    total += sum(child.cpu_times()[:2])
                except psutil.Error:
                    pass
            return total
        except psutil.Error:
            return None

    def _run(self) -> None:
        import collections
        import time

        samples: collections.deque = collections.deque()  # (time, CPU time), the oldest at or before the window
        while not self._done.wait(self.poll):
            process = getattr(getattr(self.started[-1], "provisioner", None), "process", None) if self.started else None
            cpu = None if process is None else self._cpu(process.pid)
            now = time.monotonic()
            if cpu is None:  # no kernel yet, or it is gone: nothing to judge
                samples.clear()
                continue
            samples.append((now, cpu))
            while len(samples) > 1 and samples[1][0] <= now - self.stall_timeout:
                samples.popleft()
            start, cpu_then = samples[0]
            if now - start >= self.stall_timeout and cpu - cpu_then < self.idle_fraction * (now - start):
                self.fired, self.idle_seconds = True, now - start
                try:
                    process.kill()
                except OSError:
                    pass
                if not self._done.wait(self.grace) and self._main:
                    import _thread

                    _thread.interrupt_main()
                return

    def stop(self) -> None:
        """Stop watching (idempotent)."""
        self._done.set()
        self._thread.join()


def execute_notebook(src: Path, dst: Path, params_file: str | Sequence[str] | None = None, in_place: bool = False,
                     params: Mapping | None = None, cell_timeout: float | None = None,
                     stall_timeout: float | None = STALL_TIMEOUT) -> None:
    """Run ``src`` with papermill into ``dst`` (cwd = the notebook's folder) and clean the result.

    The parameters are the entry for ``src`` in ``params_file`` (or in several files, later ones overriding
    earlier ones, e.g. the paper's settings and then a data overlay), updated by ``params``. ``cell_timeout`` (seconds)
    limits every cell: a cell that runs longer stops the run with a ``TimeoutError`` naming the notebook and the
    cell. The numeric settings of ``tools/numerics.mk`` are applied to the kernel's environment where the
    environment does not set them.

    A kernel that stays idle for ``stall_timeout`` seconds while papermill waits on it (:data:`STALL_TIMEOUT`;
    ``None``: no watch) is killed and the notebook run once more from the start, with a warning on stderr; a second
    stall stops with a ``RuntimeError`` naming the notebook and the cell.
    """
    import papermill as pm

    from tools.numerics import apply_defaults

    if cell_timeout is not None and not (isinstance(cell_timeout, (int, float)) and not isinstance(cell_timeout, bool)
                                         and cell_timeout > 0):
        raise ValueError(f"cell_timeout must be a positive number of seconds or None, got {cell_timeout!r}")
    if stall_timeout is not None and not (isinstance(stall_timeout, (int, float))
                                          and not isinstance(stall_timeout, bool) and stall_timeout > 0):
        raise ValueError(f"stall_timeout must be a positive number of seconds or None, got {stall_timeout!r}")
    apply_defaults()
    params = {**_load_params(params_file, src.stem), **(params or {})}
    if not in_place:
        # relative to the notebook's folder (papermill's cwd): no path of this machine in the executed notebook
        results = os.path.abspath(os.path.join("_build", "results", f"{src.stem}.json"))
        params.setdefault("results_path", os.path.relpath(results, os.path.abspath(src.parent)))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".running.ipynb")
    record = None if in_place else dst.parent / STATUS_DIR / f"{src.stem}.json"
    for attempt in (1, 2):
        started: list = []
        watchdog = None if stall_timeout is None else _Watchdog(started, float(stall_timeout))
        try:
            pm.execute_notebook(str(src), str(tmp), parameters=params, cwd=str(src.parent), progress_bar=False,
                                kernel_name="python3", execution_timeout=cell_timeout,
                                kernel_manager_class=_kernel_manager_class(started))
            break
        except BaseException as exc:
            if watchdog is not None:
                watchdog.stop()
            if watchdog is None or not watchdog.fired:
                if isinstance(exc, TimeoutError):  # nbclient's CellTimeoutError
                    index, first = _running_cell(tmp) if tmp.is_file() else (-1, "")
                    if record is not None:
                        write_execution_record(tmp, src, params, record, status="timed out")
                    raise TimeoutError(f"{src}: cell {index} ({first!r}) ran longer than the per-cell limit of "
                                       f"{cell_timeout} s (CELL_TIMEOUT / --cell-timeout); partial output in {tmp}"
                                       ) from exc
                if record is not None and tmp.is_file() and isinstance(exc, Exception):
                    write_execution_record(tmp, src, params, record, status="failed")
                raise
            index, first = _running_cell(tmp) if tmp.is_file() else (-1, "")
            if record is not None and tmp.is_file():
                write_execution_record(tmp, src, params, record, status="stalled")
            where = (f"{src}: the kernel was idle (below {watchdog.idle_fraction:.0%} of a core) for "
                     f"{watchdog.idle_seconds:.0f} s while cell {index} "
                     f"({first!r}) ran")
            if attempt == 2:
                raise RuntimeError(f"{where}, in both runs: killed (stall_timeout {stall_timeout} s)") from exc
            print(f"warning: {where} (a message lost between papermill and the kernel): killed; running the "
                  f"notebook once more", file=sys.stderr, flush=True)
        finally:
            if watchdog is not None:
                watchdog.stop()
    if record is not None:  # papermill's timings, before clean_notebook strips them from the notebook
        write_execution_record(tmp, src, params, record, status="completed")
    if in_place:  # keep the committed notebook free of an injected cell
        import nbformat

        nb = nbformat.read(tmp, as_version=4)
        nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
        nbformat.write(nb, tmp)
    clean_notebook(tmp)
    tmp.replace(dst)


#: Where :func:`execute_notebook` keeps each run's execution record, beside the executed notebook.
STATUS_DIR = "status"
#: The generated part of the book's execution-status page (included by ``book/status.md``).
STATUS_PAGE = "_status_generated.md"


def _json_safe(value):
    try:
        json.dumps(value)
        return value
    except TypeError:
        return repr(value)


def write_execution_record(executed: Path, src: Path, params: Mapping, path: Path, *, status: str) -> Path:
    """Keep what papermill measured of one run: status, wall time, per-cell durations, parameters and, where the
    notebook wrote one, the kernel's peak memory from its results JSON. Written atomically to ``path``."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    meta = nb.metadata.get("papermill", {})
    cells = []
    for index, cell in enumerate(c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])):
        pm_meta = cell.metadata.get("papermill", {})
        if cell.cell_type == "code" and pm_meta.get("duration") is not None:
            first = next((line for line in cell.source.splitlines() if line.strip()), "")
            cells.append({"index": index, "first_line": first[:80], "seconds": float(pm_meta["duration"])})
    peak = None
    results = params.get("results_path")
    if results:
        res = Path(src.parent, results)
        try:
            peak = json.loads(res.read_text()).get("peak_memory_mb")
        except (OSError, ValueError, AttributeError):
            peak = None
    record = {"notebook": src.stem, "status": status, "seconds": meta.get("duration"),
              "started": meta.get("start_time"), "finished": meta.get("end_time"), "cells": cells,
              "parameters": {k: _json_safe(v) for k, v in params.items()}, "peak_memory_mb": peak}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)
    return path


def _git_commit(root: Path) -> str:
    import subprocess

    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return sha + (" with local changes" if dirty else "")


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def status_page(records: Sequence[Mapping], machine: Mapping | None, commit: str, numerics: Mapping[str, str],
                downloads: Sequence[str] = ()) -> str:
    """The generated Markdown of the execution-status page: one row per notebook, the slowest cells, the machine,
    the numeric settings, the commit and the results files to download."""
    lines = [f"Built from commit `{commit}`.", "", "| notebook | status | wall time | peak memory | parameters |",
             "|---|---|---|---|---|"]
    for r in records:
        params = ", ".join(f"`{k}={v}`" for k, v in sorted(r.get("parameters", {}).items()) if k != "results_path")
        wall = f"{r['seconds']:.1f} s" if r.get("seconds") is not None else "—"
        peak = f"{r['peak_memory_mb']:.0f} MB" if r.get("peak_memory_mb") is not None else "—"
        lines.append(f"| {r['notebook']} | {r['status']} | {wall} | {peak} | {_cell(params) or '—'} |")
    lines += ["", "The slowest cells of each notebook:", "", "| notebook | cell | first line | time |",
              "|---|---|---|---|"]
    for r in records:
        for c in sorted(r.get("cells", []), key=lambda c: -c["seconds"])[:3]:
            lines.append(f"| {r['notebook']} | {c['index']} | `{_cell(c['first_line'])}` | {c['seconds']:.1f} s |")
    lines += ["", "| machine | |", "|---|---|"]
    for key in ("cpu", "cores", "os", "python", "torch", "numpy", "scipy", "threads", "device", "gpu"):
        if machine and machine.get(key) is not None:
            lines.append(f"| {key} | {_cell(machine[key])} |")
    if not machine:
        lines.append("| (not recorded) | the AD-costs notebook records the machine in its results |")
    lines += ["", "Numeric settings of the run (`tools/numerics.mk`; the environment wins):", "",
              "| variable | value |", "|---|---|"]
    lines += [f"| `{k}` | `{v}` |" for k, v in numerics.items()]
    if downloads:
        lines += ["", "Results of this build to take away (the notebooks' JSON, the report's claims, and the tables of "
                  "the sweeps run in this checkout):", ""]
        lines += [f"* {{download}}`{Path(d).name} <{d}>`" for d in downloads]
    return "\n".join(lines) + "\n"


def _write_status(executed: Path, out: Path, root: Path) -> None:
    """Generate ``out/book/_status_generated.md`` from the execution records in ``executed/status`` and copy the
    results JSON they point at, and the tables of the sweeps in ``_build/sweeps``, into ``out/book/results`` for
    download."""
    from tools.numerics import defaults

    records = [json.loads(p.read_text()) for p in sorted((executed / STATUS_DIR).glob("*.json"))]
    machine, downloads = None, []
    results_dir = out / "book" / "results"
    for r in records:
        res = r.get("parameters", {}).get("results_path")
        if not res:
            continue
        path = (root / "notebooks" / res).resolve()
        if path.is_file():
            results_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, results_dir / path.name)
            downloads.append(f"results/{path.name}")
            machine = machine or json.loads(path.read_text()).get("machine")
            report = path.parent / "report.json"
            if r["notebook"].startswith("04") and report.is_file():
                shutil.copy2(report, results_dir / "report.json")
                downloads.append("results/report.json")
    for table in sorted(root.glob("_build/sweeps/*/table.csv")) + sorted(root.glob("_build/sweeps/*/table.md")):
        name = f"sweep-{table.parent.name}-{table.name}"  # the sweep tables of this checkout, if any ran
        results_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(table, results_dir / name)
        downloads.append(f"results/{name}")
    numerics = {k: os.environ.get(k, v) for k, v in defaults().items()}
    (out / "book" / STATUS_PAGE).write_text(status_page(records, machine, _git_commit(root), numerics, downloads))


def stage_book(executed: Path, out: Path) -> None:
    """Copy the book's sources and the executed notebooks into ``out`` (what Jupyter Book renders), and generate
    the execution-status page from the runs' records."""
    root = Path.cwd()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in _ROOT_FILES:
        shutil.copy2(root / name, out / name)
    shutil.copytree(root / "book", out / "book")
    shutil.copytree(executed, out / "notebooks", ignore=shutil.ignore_patterns("*.running.ipynb", STATUS_DIR))
    _write_status(executed, out, root)


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


def _execute_point(notebook: str, name: str, params: Mapping, threads: int | None,
                   cell_timeout: float | None = None) -> dict:
    """Task of a sweep (on a Dask worker): execute one grid point in a temporary folder and return its notebook,
    results JSON and execution record to the client, so that a remote worker needs the repository and its
    environment at the same path but no shared file system. Raises ``RuntimeError`` on failure (Dask's retries
    then run the point again)."""
    import tempfile

    if threads is None:  # the thread count of the worker the task landed on
        try:
            from distributed import get_worker

            threads = max(1, int(get_worker().state.nthreads))
        except (ImportError, ValueError, AttributeError):
            threads = 1
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the kernel inherits it: no oversubscription across workers
    os.environ["MKL_NUM_THREADS"] = str(threads)
    os.environ["IMREG_WORKERS"] = str(threads)  # and a page's runs use this point's share of cores, no more
    with tempfile.TemporaryDirectory(prefix="imreg-sweep-") as tmp:
        out = Path(tmp) / f"{name}.ipynb"
        results = Path(tmp) / f"{name}.json"
        try:
            execute_notebook(Path(notebook), out, params={**params, "results_path": str(results)},
                             cell_timeout=cell_timeout)
        except Exception as exc:  # a plain message: every exception type must travel back to the client
            text = str(exc).strip()
            raise RuntimeError(f"{type(exc).__name__}: {text.splitlines()[-1] if text else ''}") from None
        record = out.parent / STATUS_DIR / f"{Path(notebook).stem}.json"  # execute_notebook's record of the run
        return {"notebook": out.read_bytes(), "results": results.read_bytes() if results.is_file() else None,
                "record": record.read_bytes() if record.is_file() else None}


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _params_path(run: SweepRun) -> Path:
    return run.results.with_suffix(".params.json")


def _is_done(run: SweepRun) -> bool:
    """Whether a previous sweep already ran this point with the same parameters (results and parameters kept)."""
    try:
        return run.results.is_file() and json.loads(_params_path(run).read_text()) == _jsonable(run.params)
    except (OSError, ValueError):
        return False


def _jsonable(params: Mapping) -> dict:
    return json.loads(json.dumps({k: v for k, v in params.items() if k != "results_path"}, default=repr))


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
              base: Mapping | None = None, workers: int | None = None, collect: Sequence[str] | None = None,
              cell_timeout: float | None = None, *, scheduler: str | None = None, retries: int = 1,
              force: bool = False, progress: bool = True) -> Path:
    """Execute every run of :func:`plan_sweep` on Dask and write ``table.csv`` and ``table.md`` into the sweep
    folder, whose path is returned.

    Parameters
    ----------
    workers
        Worker processes of the local cluster (one thread each); default: the machine's cores. Ignored with
        ``scheduler``.
    scheduler
        Address of an existing Dask scheduler (``tcp://host:port``, or ``tls://`` with Dask's security settings
        from its configuration); ``None`` starts a ``LocalCluster`` on 127.0.0.1 for this sweep.
    retries
        How often a failed point is run again (a lost worker, a hung kernel stopped by ``cell_timeout``).
    force
        Run points whose results for the same parameters already exist (by default they are skipped).
    progress
        A progress bar over finished runs (tqdm, on stderr).

    Each point is one papermill execution in its own kernel process on a worker; its notebook, results and
    execution record come back to the client, which writes them into the sweep folder. A failed point is a row
    with its error, and ``RuntimeError`` is raised after the table is written. The threads of the numeric
    settings (``OMP_NUM_THREADS``, default 1) are split among the local workers (at least one each); on an
    existing cluster each kernel uses its worker's thread count.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer or None (the cores), got {workers!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    if scheduler is not None and not (isinstance(scheduler, str) and re.match(r"^(tcp|tls|inproc)://.+", scheduler)):
        raise ValueError(f"scheduler must be an address such as tcp://127.0.0.1:8786 or tls://host:8786, "
                         f"got {scheduler!r}")
    runs = plan_sweep(notebook, grid, out, base)
    folder = runs[0].notebook.parent
    folder.mkdir(parents=True, exist_ok=True)
    todo = [r for r in runs if force or not _is_done(r)]
    errors: dict[str, str | None] = {r.name: None for r in runs}
    if todo:
        errors.update(_run_on_dask(str(Path(notebook).resolve()), todo, workers, cell_timeout, scheduler, retries,
                                   progress))
    skipped = len(runs) - len(todo)
    columns, rows = sweep_table(runs, errors, collect)
    with open(folder / "table.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    (folder / "table.md").write_text("\n".join(lines) + "\n")
    if skipped and progress:
        print(f"sweep: {skipped} of {len(runs)} points already had results for the same parameters "
              f"({_option('--force')} to run them again)", file=sys.stderr)
    failed = [name for name, e in errors.items() if e]
    if failed:
        raise SweepFailed(f"{len(failed)} of {len(runs)} runs failed ({', '.join(failed)}); their errors are in the "
                          f"table's error column ({folder / 'table.md'})", folder)
    return folder


class SweepFailed(RuntimeError):
    """Some points of a sweep failed; the table (with their errors) was written into ``folder``."""

    def __init__(self, message: str, folder: Path):
        super().__init__(message)
        self.folder = folder


#: How make users spell the sweep's command-line options (``make sweep ...``).
MAKE_VARIABLES = {"--grid": "GRID", "--base": "BASE", "--scheduler": "SCHEDULER", "--workers": "WORKERS",
                  "--collect": "COLLECT", "--force": "FORCE=1", "--retries": "RETRIES", "notebook": "NB"}


def _option(name: str) -> str:
    """An option as the user typed it: the make variable under ``make`` (``MAKELEVEL`` set), else the option."""
    return MAKE_VARIABLES.get(name, name) if os.environ.get("MAKELEVEL") else name


def _run_on_dask(notebook: str, runs: Sequence[SweepRun], workers: int | None, cell_timeout: float | None,
                 scheduler: str | None, retries: int, progress: bool) -> dict[str, str | None]:
    """Submit every run to a Dask cluster (local unless ``scheduler``) and write what comes back."""
    import logging

    from distributed import Client, LocalCluster, as_completed

    from tools.numerics import apply_defaults

    cluster = None
    if scheduler is None:
        n = workers or os.cpu_count() or 1
        threads = max(1, int(apply_defaults()["OMP_NUM_THREADS"]) // n)
        # a failed point's error goes into the table (and its row is printed): not Dask's log blocks too
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, silence_logs=logging.CRITICAL)
        client = Client(cluster)
    else:
        threads = None  # each worker's own thread count
        client = Client(scheduler, timeout="30s")
    errors: dict[str, str | None] = {}
    try:
        futures = {client.submit(_execute_point, notebook, r.name, r.params, threads, cell_timeout,
                                 key=f"sweep-{r.name}", pure=False, retries=retries): r for r in runs}
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(futures), desc=f"sweep {Path(notebook).stem}", unit="run", file=sys.stderr)
        for future in as_completed(futures):
            run = futures[future]
            if future.status == "error":
                exc = future.exception()
                errors[run.name] = str(exc) or type(exc).__name__
            else:
                got = future.result()
                _write_atomic(run.notebook, got["notebook"])
                if got["results"] is not None:
                    _write_atomic(run.results, got["results"])
                if got["record"] is not None:
                    (run.notebook.parent / STATUS_DIR).mkdir(exist_ok=True)
                    _write_atomic(run.notebook.parent / STATUS_DIR / f"{run.name}.json", got["record"])
                _write_atomic(_params_path(run), json.dumps(_jsonable(run.params), indent=1).encode())
                errors[run.name] = None
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return errors


def _yaml_arg(text: str | None, what: str) -> dict:
    """A YAML mapping given inline or as a file name."""
    import yaml

    if not text:
        return {}
    try:
        value = yaml.safe_load(Path(text).read_text()) if Path(text).is_file() else yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"{_option(what)} is not valid YAML{where} ({getattr(err, 'problem', None) or err}): "
                         f"{text!r}; expected a mapping such as '{{param: [v1, v2]}}'") from None
    if not isinstance(value, dict):
        raise ValueError(f"{_option(what)} must be a YAML mapping (inline or a file) such as '{{param: [v1, v2]}}', "
                         f"got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.pipeline", description=__doc__,
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
    sw.add_argument("--workers", type=int, default=None,
                    help="worker processes of the local Dask cluster, one thread each (default: the cores)")
    sw.add_argument("--scheduler", default=None,
                    help="address of an existing Dask scheduler (tcp://host:port, tls://...) instead of a local one")
    sw.add_argument("--retries", type=int, default=1, help="runs of a failed point again (default: 1)")
    sw.add_argument("--force", action="store_true", help="run points whose results already exist")
    sw.add_argument("--collect", default=None, help="comma-separated result keys (a.b.c) for the table")
    sw.add_argument("--cell-timeout", type=float, default=None, help="per-cell time limit of each run, seconds")
    args = ap.parse_args(argv)
    if args.cmd == "execute":
        execute_notebook(args.src, args.dst, args.params, args.in_place, cell_timeout=args.cell_timeout)
    elif args.cmd == "stage":
        stage_book(args.executed, args.out)
    else:
        try:
            base = _load_params(args.base, args.notebook.stem) if args.base else {}
            base.pop("results_path", None)
            grid = _yaml_arg(args.grid, "--grid")
            folder = run_sweep(args.notebook, grid, args.out, base, args.workers,
                               args.collect.split(",") if args.collect else None, cell_timeout=args.cell_timeout,
                               scheduler=args.scheduler, retries=args.retries, force=args.force)
        except SweepFailed as err:  # the table is written: show it, then what failed
            print((err.folder / "table.md").read_text())
            print(f"sweep: {err}", file=sys.stderr)
            return 1
        except (ValueError, FileNotFoundError) as err:  # a bad setting: one line, before any run
            print(f"sweep: {err}", file=sys.stderr)
            return 2
        print((folder / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
