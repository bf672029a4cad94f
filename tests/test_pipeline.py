"""The book pipeline: papermill execution with clean metadata, and parameter sweeps collected into a table."""

from __future__ import annotations

import csv
import json
import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tools import pipeline


@pytest.fixture
def tiny_notebook(tmp_path):
    """A notebook with two parameters that writes its results JSON, and fails for ``a == 3``."""
    nb = new_notebook(cells=[
        new_code_cell('a = 1\nb = "x"\nresults_path = ""', metadata={"tags": ["parameters"]}),
        new_code_cell("import json\nif a == 3:\n    raise ValueError('a must not be 3')\n"
                      "json.dump({'twice': 2 * a, 'nested': {'b': b, 'n': [1, 2]}, 'list': [a]},"
                      " open(results_path, 'w'))\nprint(2 * a)"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


def test_plan_checks_every_parameter_before_running(tiny_notebook, tmp_path):
    with pytest.raises(ValueError, match="'c' is not a parameter of tiny.ipynb; allowed: a, b, results_path"):
        pipeline.plan_sweep(tiny_notebook, {"a": [1], "c": [2]}, tmp_path)
    with pytest.raises(ValueError, match=r"grid\['a'\] must be a non-empty list"):
        pipeline.plan_sweep(tiny_notebook, {"a": []}, tmp_path)
    with pytest.raises(ValueError, match="grid may not set results_path"):
        pipeline.plan_sweep(tiny_notebook, {"results_path": ["x.json"]}, tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        pipeline.plan_sweep(tmp_path / "missing.ipynb", {"a": [1]}, tmp_path)
    runs = pipeline.plan_sweep(tiny_notebook, {"a": [1, 2], "b": ["u v", "w"]}, tmp_path / "sw", base={"b": "z"})
    assert [r.name for r in runs] == ["a-1__b-u_v", "a-1__b-w", "a-2__b-u_v", "a-2__b-w"]
    assert all(r.notebook.parent == tmp_path / "sw" / "tiny" for r in runs)
    assert runs[0].params["results_path"] == str(runs[0].results)


def test_workers_must_be_positive(tiny_notebook, tmp_path):
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        pipeline.run_sweep(tiny_notebook, {"a": [1]}, tmp_path, workers=0)


def test_sweep_runs_in_parallel_and_collects_one_table(tiny_notebook, tmp_path):
    with pytest.raises(RuntimeError, match="1 of 3 runs failed"):
        pipeline.run_sweep(tiny_notebook, {"a": [1, 2, 3]}, tmp_path / "sw", base={"b": "q"}, workers=2)
    folder = tmp_path / "sw" / "tiny"
    rows = list(csv.DictReader(open(folder / "table.csv")))
    assert [r["a"] for r in rows] == ["1", "2", "3"]
    assert [r["twice"] for r in rows[:2]] == ["2", "4"] and rows[0]["nested.b"] == "q"
    assert "list" not in rows[0] and "nested.n" not in rows[0]  # lists are not table cells
    assert rows[2]["status"].startswith("failed: ") and "a must not be 3" in rows[2]["status"]
    executed = nbformat.read(folder / "a-2.ipynb", as_version=4)
    assert "papermill" not in executed.metadata  # timing metadata stripped
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "remove-cell" in injected[0].metadata["tags"]  # hidden on the book page
    assert all("papermill" not in c.metadata and "execution" not in c.metadata for c in executed.cells)
    md = (folder / "table.md").read_text().splitlines()
    assert md[0].startswith("| a | b | run | status | twice | nested.b |") and len(md) == 5


def test_collect_selects_columns(tiny_notebook, tmp_path):
    folder = pipeline.run_sweep(tiny_notebook, {"a": [5]}, tmp_path, collect=["twice", "missing.key"])
    row = next(csv.DictReader(open(folder / "table.csv")))
    assert row["twice"] == "10" and row["missing.key"] == "" and "nested.b" not in row
    assert json.loads((folder / "a-5.json").read_text())["twice"] == 10


def test_a_hung_cell_fails_with_the_notebook_and_cell_named(tmp_path):
    nb = new_notebook(cells=[
        new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        new_code_cell("print('fast')"),
        new_code_cell("import time\ntime.sleep(60)"),
        new_code_cell("print('never')"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    src = tmp_path / "hang.ipynb"
    nbformat.write(nb, src)
    with pytest.raises(TimeoutError, match=r"hang.ipynb: cell 2 \('import time'\) ran longer than the per-cell "
                                           r"limit of 2 s"):
        pipeline.execute_notebook(src, tmp_path / "out.ipynb", cell_timeout=2)
    assert not (tmp_path / "out.ipynb").exists()  # nothing half-written where the result belongs
    with pytest.raises(ValueError, match="cell_timeout must be a positive number"):
        pipeline.execute_notebook(src, tmp_path / "out.ipynb", cell_timeout=0)


def _idle_notebook(tmp_path, source: str):
    nb = new_notebook(cells=[new_code_cell("x = 1", metadata={"tags": ["parameters"]}), new_code_cell(source),
                             new_code_cell("print('after')")],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    src = tmp_path / "idle.ipynb"
    nbformat.write(nb, src)
    return src


def test_a_kernel_that_goes_idle_under_a_running_cell_is_killed_and_the_run_repeated_once(tmp_path, capsys):
    # the lost-message hang: papermill waits for a cell while the kernel uses no CPU; a sleep is such a kernel
    marker = tmp_path / "first-run"
    src = _idle_notebook(tmp_path, f"import pathlib, time\nm = pathlib.Path({str(marker)!r})\n"
                                   "if not m.exists():\n    m.touch()\n    time.sleep(120)")
    pipeline.execute_notebook(src, tmp_path / "out.ipynb", cell_timeout=100, stall_timeout=3)
    err = capsys.readouterr().err
    assert re.search(r"idle.ipynb: the kernel was idle \(below 5% of a core\) for \d+ s while cell 1 "
                     r"\('import pathlib, time'\) ran",
                     err)
    assert "running the notebook once more" in err
    outputs = [o.get("text", "") for c in nbformat.read(tmp_path / "out.ipynb", as_version=4).cells
               if c.cell_type == "code" for o in c.outputs]
    assert "after\n" in outputs  # the second run went through


def test_a_kernel_idle_in_both_runs_stops_with_a_clear_error(tmp_path):
    src = _idle_notebook(tmp_path, "import time\ntime.sleep(120)")
    with pytest.raises(RuntimeError, match=r"idle.ipynb: the kernel was idle \(below 5% of a core\) for \d+ s while "
                                           r"cell 1 \('import time'\) ran, in both runs: killed \(stall_timeout 3 s\)"):
        pipeline.execute_notebook(src, tmp_path / "out.ipynb", cell_timeout=100, stall_timeout=3)
    assert not (tmp_path / "out.ipynb").exists()
    with pytest.raises(ValueError, match="stall_timeout must be a positive number of seconds or None"):
        pipeline.execute_notebook(src, tmp_path / "out.ipynb", stall_timeout=-1)


def _watched(code: str, **options):
    import subprocess
    import sys
    from types import SimpleNamespace

    proc = subprocess.Popen([sys.executable, "-c", code])
    return proc, pipeline._Watchdog([SimpleNamespace(provisioner=SimpleNamespace(process=proc))], **options)


def test_the_watch_leaves_a_computing_kernel_alone():
    proc, dog = _watched("import time\nt = time.process_time()\nwhile time.process_time() - t < 4: pass",
                         stall_timeout=1.0, poll=0.2)
    try:
        assert proc.wait(30) == 0  # four seconds of CPU, never idle for one: not killed
        assert not dog.fired
    finally:
        dog.stop()
        proc.kill()


def test_the_watch_kills_a_kernel_that_is_nearly_idle():
    # the lost-message hang as measured: the kernel's threads add a little CPU time every few seconds. Here 5 ms
    # of work every 0.25 s (2 % of a core) moves the CPU time every poll, so a watch for CPU time that does not move
    # at all never fires; 2 % is idle.
    code = ("import time\nwhile True:\n    t = time.process_time()\n    while time.process_time() - t < 0.005: pass\n"
            "    time.sleep(0.25)")
    proc, dog = _watched(code, stall_timeout=2.0, poll=0.2, grace=60.0)
    try:
        assert proc.wait(30) != 0  # killed
        assert dog.fired and 2.0 <= dog.idle_seconds < 4.0
    finally:
        dog.stop()
        proc.kill()


def test_the_watch_interrupts_the_main_thread_when_killing_the_kernel_frees_nothing():
    import time

    proc, dog = _watched("import time\ntime.sleep(60)", stall_timeout=1.0, poll=0.2, grace=0.5)
    try:
        with pytest.raises(KeyboardInterrupt):  # a client that would wait for ever: the last resort reaches it
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                time.sleep(0.05)
        assert dog.fired and dog.idle_seconds >= 1.0
        assert proc.wait(10) != 0  # the idle process was killed first
    finally:
        dog.stop()
        proc.kill()


def test_a_sweep_run_that_hangs_is_a_failed_row(tiny_notebook, tmp_path):
    nb = nbformat.read(tiny_notebook, as_version=4)
    nb.cells.append(new_code_cell("import time\nif a == 2:\n    time.sleep(60)"))
    nbformat.write(nb, tiny_notebook)
    with pytest.raises(RuntimeError, match="1 of 2 runs failed"):
        pipeline.run_sweep(tiny_notebook, {"a": [1, 2]}, tmp_path / "sw", cell_timeout=3)
    rows = list(csv.DictReader(open(tmp_path / "sw" / "tiny" / "table.csv")))
    assert rows[0]["status"] == "ok" and "ran longer than the per-cell limit" in rows[1]["status"]


def test_params_files_overlay_and_results_path_is_relative(tmp_path, tiny_notebook, monkeypatch):
    base, overlay = tmp_path / "base.yaml", tmp_path / "overlay.yaml"
    base.write_text("tiny:\n  a: 2\n  b: base\nother:\n  a: 9\n")
    overlay.write_text("tiny:\n  b: overlay\n")
    assert pipeline._load_params([str(base), str(overlay)], "tiny") == {"a": 2, "b": "overlay"}
    assert pipeline._load_params(str(base), "tiny") == {"a": 2, "b": "base"}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "_build" / "results").mkdir(parents=True)
    out = tmp_path / "out.ipynb"
    pipeline.execute_notebook(tiny_notebook, out, [str(base), str(overlay)])
    assert json.loads((tmp_path / "_build" / "results" / "tiny.json").read_text())["nested"]["b"] == "overlay"
    cells = nbformat.read(out, as_version=4).cells
    injected = [c for c in cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "results_path = \"_build/results/tiny.json\"" in injected[0].source  # no path of this machine
    assert str(tmp_path) not in injected[0].source


def test_execution_records_feed_the_status_page(tmp_path, tiny_notebook, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "_build" / "results").mkdir(parents=True)
    executed = tmp_path / "_build" / "executed"
    pipeline.execute_notebook(tiny_notebook, executed / "tiny.ipynb", params={"a": 2})
    record = json.loads((executed / pipeline.STATUS_DIR / "tiny.json").read_text())
    assert record["status"] == "completed" and record["parameters"]["a"] == 2 and record["seconds"] > 0
    assert [c["index"] for c in record["cells"]] == [0, 1] and record["cells"][1]["first_line"] == "import json"
    assert "papermill" not in nbformat.read(executed / "tiny.ipynb", as_version=4).metadata  # still cleaned
    with pytest.raises(Exception, match="a must not be 3"):
        pipeline.execute_notebook(tiny_notebook, executed / "tiny.ipynb", params={"a": 3})
    assert json.loads((executed / pipeline.STATUS_DIR / "tiny.json").read_text())["status"] == "failed"

    page = pipeline.status_page([record], {"cpu": "Test CPU", "cores": 2, "torch": "2.13.0"}, "abc123",
                                {"OMP_NUM_THREADS": "1"}, ["results/tiny.json"])
    assert "Built from commit `abc123`." in page and "| tiny | completed |" in page and "`a=2`" in page
    assert "| cpu | Test CPU |" in page and "| `OMP_NUM_THREADS` | `1` |" in page
    assert "{download}`tiny.json <results/tiny.json>`" in page


def test_stage_generates_the_status_page_and_the_downloads(tmp_path, tiny_notebook, monkeypatch):
    root = tmp_path / "repo"
    (root / "book").mkdir(parents=True)
    (root / "notebooks").mkdir()
    (root / "_build" / "results").mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        (root / name).write_text("")
    (root / "book" / "status.md").write_text("# Execution status\n")
    nb = root / "notebooks" / "tiny.ipynb"
    nb.write_bytes(tiny_notebook.read_bytes())
    monkeypatch.chdir(root)
    pipeline.execute_notebook(nb, root / "_build" / "executed" / "tiny.ipynb", params={"a": 4})
    pipeline.stage_book(root / "_build" / "executed", root / "_build" / "src")
    src = root / "_build" / "src"
    assert sorted(p.name for p in (src / "notebooks").iterdir()) == ["tiny.ipynb"]  # no records among the pages
    generated = (src / "book" / pipeline.STATUS_PAGE).read_text()
    assert "| tiny | completed |" in generated and "`a=4`" in generated
    assert json.loads((src / "book" / "results" / "tiny.json").read_text())["twice"] == 8
    assert "Built from commit `" in generated


def test_a_rerun_skips_points_with_results_for_the_same_parameters(tiny_notebook, tmp_path):
    folder = pipeline.run_sweep(tiny_notebook, {"a": [1, 2]}, tmp_path / "sw", workers=1, progress=False)
    stamp = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.ipynb")}
    assert sorted(p.name for p in folder.glob("*.params.json")) == ["a-1.params.json", "a-2.params.json"]
    assert sorted(p.name for p in (folder / pipeline.STATUS_DIR).glob("*.json")) == ["a-1.json", "a-2.json"]
    pipeline.run_sweep(tiny_notebook, {"a": [1, 2, 4]}, tmp_path / "sw", workers=1, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("a-[12].ipynb")} == stamp  # not run again
    rows = list(csv.DictReader(open(folder / "table.csv")))
    assert [r["twice"] for r in rows] == ["2", "4", "8"]
    pipeline.run_sweep(tiny_notebook, {"a": [1]}, tmp_path / "sw", base={"b": "other"}, workers=1, progress=False)
    assert (folder / "a-1.ipynb").stat().st_mtime_ns != stamp["a-1.ipynb"]  # other parameters: run again
    before = (folder / "a-2.ipynb").stat().st_mtime_ns
    pipeline.run_sweep(tiny_notebook, {"a": [2]}, tmp_path / "sw", workers=1, force=True, progress=False)
    assert (folder / "a-2.ipynb").stat().st_mtime_ns != before  # --force
    with pytest.raises(ValueError, match="scheduler must be an address"):
        pipeline.run_sweep(tiny_notebook, {"a": [1]}, tmp_path / "sw", scheduler="localhost:8786")
    with pytest.raises(ValueError, match="retries must be an integer >= 0"):
        pipeline.run_sweep(tiny_notebook, {"a": [1]}, tmp_path / "sw", retries=-1)


def test_a_sweep_on_a_scheduler_and_a_worker_started_as_processes(tiny_notebook, tmp_path):
    """`dask scheduler` and `dask worker` as separate processes on 127.0.0.1, as the README's recipe."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    info = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", "0", "--no-dashboard", "--scheduler-file", str(info)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        for _ in range(300):
            if info.is_file() and info.read_text().strip():
                break
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                   "--host", "127.0.0.1", "--no-dashboard"], env=env, cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with pytest.raises(RuntimeError, match="1 of 2 runs failed"):
            pipeline.run_sweep(tiny_notebook, {"a": [2, 3]}, tmp_path / "sw", scheduler=address, retries=0,
                               progress=False)
        rows = {r["a"]: r for r in csv.DictReader(open(tmp_path / "sw" / "tiny" / "table.csv"))}
        assert rows["2"]["status"] == "ok" and rows["2"]["twice"] == "4"
        assert rows["3"]["status"].startswith("failed: ") and "a must not be 3" in rows["3"]["status"]
        assert (tmp_path / "sw" / "tiny" / "a-2.ipynb").is_file()  # returned to the client, written here
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def test_stage_offers_the_sweep_tables_for_download(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    for d in ("book", "notebooks", "_build/executed", "_build/sweeps/00_data"):
        (root / d).mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        (root / name).write_text("")
    (root / "_build/sweeps/00_data/table.csv").write_text("m,status\n16,ok\n")
    monkeypatch.chdir(root)
    pipeline.stage_book(root / "_build" / "executed", root / "_build" / "src")
    assert (root / "_build/src/book/results/sweep-00_data-table.csv").read_text() == "m,status\n16,ok\n"
    assert "results/sweep-00_data-table.csv" in (root / "_build/src/book" / pipeline.STATUS_PAGE).read_text()


def test_sweep_errors_speak_the_users_language(tiny_notebook, tmp_path, capsys, monkeypatch):
    """A malformed GRID fails in one line that names it (the make variable under make, else the option)."""
    monkeypatch.delenv("MAKELEVEL", raising=False)
    assert pipeline.main(["sweep", str(tiny_notebook), "--grid", "{a: [1, 2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sweep: --grid is not valid YAML at line 1") and len(err.splitlines()) == 1
    monkeypatch.setenv("MAKELEVEL", "1")
    assert pipeline.main(["sweep", str(tiny_notebook), "--grid", "[1, 2]", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sweep: GRID must be a YAML mapping") and len(err.splitlines()) == 1
    assert pipeline.main(["sweep", str(tiny_notebook), "--grid", "{c: [1]}", "--out", str(tmp_path)]) == 2
    assert "'c' is not a parameter of tiny.ipynb; allowed: a, b, results_path" in capsys.readouterr().err
    assert not (tmp_path / "tiny").exists()  # nothing ran


def test_a_failed_point_still_prints_the_table(tiny_notebook, tmp_path, capsys, monkeypatch):
    args = ["sweep", str(tiny_notebook), "--grid", "{a: [1, 3]}", "--out", str(tmp_path), "--workers", "1",
            "--retries", "0"]
    assert pipeline.main(args) == 1
    out, err = capsys.readouterr()
    assert "| 1 |" in out and "a must not be 3" in out  # both rows, the failed one with its error
    assert "1 of 2 runs failed (a-3)" in err and "Compute Failed" not in err
    monkeypatch.setenv("MAKELEVEL", "1")  # a rerun under make: the skipped point names FORCE=1
    assert pipeline.main(args) == 1
    assert "already had results for the same parameters (FORCE=1 to run them again)" in capsys.readouterr().err


def test_a_sweep_survives_a_lost_worker(tmp_path):
    """A scheduler and two workers as separate processes; the worker running one point is killed mid-run (a
    pre-empted machine). The sweep finishes on the other worker with every point once, nothing half-written, and
    the killed point's kernel does not outlive its worker."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time
    from pathlib import Path

    marks = tmp_path / "marks"
    marks.mkdir()
    nb = new_notebook(cells=[
        new_code_cell('a = 1\nresults_path = ""', metadata={"tags": ["parameters"]}),
        new_code_cell("import json, os, pathlib, time\n"
                      f"marks = pathlib.Path({str(marks)!r})\n"
                      "first = not list(marks.glob(f'{a}-*'))\n"
                      "(marks / f'{a}-{os.getpid()}-{os.getppid()}').write_text('')\n"
                      "if a == 2 and first:\n    time.sleep(60)  # killed here\n"
                      "json.dump({'twice': 2 * a}, open(results_path, 'w'))"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    notebook = tmp_path / "lost.ipynb"
    nbformat.write(nb, notebook)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    info = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(info)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(300):
            if info.is_file() and info.read_text().strip():
                break
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads",
                                           "1", "--host", "127.0.0.1", "--no-dashboard", "--no-nanny"], env=env,
                                          cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        outcome = {}
        sweep = threading.Thread(target=lambda: outcome.update(folder=pipeline.run_sweep(
            notebook, {"a": [1, 2, 3]}, tmp_path / "sw", scheduler=address, retries=0, progress=False)))
        sweep.start()
        for _ in range(600):  # the first attempt of a = 2 is running: kill its worker
            found = list(marks.glob("2-*"))
            if found:
                break
            time.sleep(0.1)
        _, kernel, worker = found[0].name.split("-")
        assert int(worker) in [p.pid for p in procs[1:]]
        os.kill(int(worker), signal.SIGKILL)
        sweep.join(timeout=240)
        assert not sweep.is_alive() and "folder" in outcome
        rows = list(csv.DictReader(open(outcome["folder"] / "table.csv")))
        assert sorted(r["a"] for r in rows) == ["1", "2", "3"] and all(r["status"] == "ok" for r in rows)
        assert [r["twice"] for r in sorted(rows, key=lambda r: r["a"])] == ["2", "4", "6"]
        assert len(list(marks.glob("2-*"))) == 2  # a = 2 ran again, on the other worker
        left = [p.name for p in outcome["folder"].rglob("*") if p.name.endswith((".tmp", ".running.ipynb"))]
        assert left == []  # nothing half-written
        for _ in range(150):  # the killed worker's kernel notices its parent is gone and exits
            try:
                os.kill(int(kernel), 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"the kernel {kernel} of the killed worker is still running")
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
