"""Independent LM runs of a page side by side in worker processes: bit for bit the results of one after another."""
import functools
import os
import time

import pytest
import torch

import imreg_lib as il
from imreg_lib import paper
from imreg_lib.paper import _jobs


@pytest.fixture
def one_thread():
    """The book's setting (OMP_NUM_THREADS=1), under which the page's runs go to worker processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_parallel_runs_equal_sequential_runs(monkeypatch, one_thread):
    pb = il.superresolution_problem(12, 2, 3)
    w0 = paper.preregister(pb, loss="norm", continuation=True).w
    kw = dict(gn_iters=3, gtol=1e-5)
    monkeypatch.setenv("IMREG_WORKERS", "1")
    alone = paper.inexact_projections(pb, w0, (5, 10, 25), **kw)
    monkeypatch.setenv("IMREG_WORKERS", "2")
    calls = []
    pool = _jobs.multiprocessing.get_context("fork").Pool
    counted = type("C", (), {"Pool": lambda self, n, **kw: calls.append(n) or pool(n, **kw)})()
    monkeypatch.setattr(_jobs.multiprocessing, "get_context", lambda method: counted)
    side = paper.inexact_projections(pb, w0, (5, 10, 25), **kw)
    assert calls == [2]  # the runs went to two worker processes
    assert list(side) == list(alone)
    for n in alone:
        a, b = alone[n], side[n]
        assert torch.equal(a.w_full, b.w_full) and a.losses == b.losses and a.rel_error == b.rel_error
        assert a.cg_iterations == b.cg_iterations and torch.equal(a.reconstruction, b.reconstruction)


def test_workers_setting_is_checked(monkeypatch):
    monkeypatch.setenv("IMREG_WORKERS", "two")
    with pytest.raises(ValueError, match="IMREG_WORKERS"):
        _jobs.workers()
    monkeypatch.setenv("IMREG_WORKERS", "3")
    assert _jobs.workers() == 3
    monkeypatch.delenv("IMREG_WORKERS")
    assert 1 <= _jobs.workers() <= _jobs.MAX_WORKERS


def test_jobs_stay_in_process_where_forking_is_not_safe(monkeypatch, one_thread):
    monkeypatch.setenv("IMREG_WORKERS", "2")
    monkeypatch.setattr(_jobs.multiprocessing, "get_context", lambda method: pytest.fail("forked"))
    jobs = {"a": lambda: 1, "b": lambda: 2}
    assert _jobs.run_jobs(jobs, cpu=False) == {"a": 1, "b": 2}  # a GPU problem
    assert _jobs.run_jobs({"a": lambda: 1}) == {"a": 1}  # one job
    torch.set_num_threads(2)
    assert _jobs.run_jobs(jobs) == {"a": 1, "b": 2}  # PyTorch's thread pool (it does not survive a fork)
    torch.set_num_threads(1)
    monkeypatch.setattr(_jobs.multiprocessing.current_process(), "daemon", True, raising=False)
    assert _jobs.run_jobs(jobs) == {"a": 1, "b": 2}  # a daemonic process (Dask's workers)


@pytest.fixture
def in_kernel(monkeypatch, one_thread):
    """As in a Jupyter kernel with two workers' worth of cores: runs are shared with the kernel's persistent pool
    (started from a forkserver, never forked from the kernel); the pool is shut down afterwards."""
    monkeypatch.setenv("IMREG_WORKERS", "2")
    monkeypatch.setattr(_jobs, "_in_kernel", lambda: True)
    fork = _jobs.multiprocessing.get_context
    monkeypatch.setattr(_jobs.multiprocessing, "get_context",
                        lambda method: pytest.fail("a kernel forked") if method == "fork" else fork(method))
    yield
    _jobs._drop_kernel_pool(wait=True)


def _die_unless_in(pid: int) -> str:
    """A job that kills the worker process it runs in (a pre-empted worker) and returns in process ``pid``."""
    if os.getpid() != pid:
        os._exit(3)
    time.sleep(0.3)  # long enough for the worker to take (and die on) another job
    return "ran here"


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_kernel_shares_runs_with_persistent_workers(in_kernel):
    quick = {i: os.getpid for i in range(3)}
    assert _jobs.run_jobs(quick) == dict.fromkeys(quick, os.getpid())  # done before a worker is up: all here
    _jobs._kernel_executor(1).submit(_jobs._ready).result()  # (the pool started in the background) wait for it
    jobs = {i: functools.partial(_pid_after, 0.3) for i in range(6)}
    first = _jobs.run_jobs(jobs)
    assert list(first) == list(jobs)
    workers = set(first.values()) - {os.getpid()}
    assert len(workers) == 1 and os.getpid() in first.values()  # the kernel and one worker took jobs
    assert set(_jobs.run_jobs(jobs).values()) - {os.getpid()} == workers  # the same worker: started once
    assert _jobs.worker_peak_mb() > 0


def test_kernel_runs_equal_sequential_runs(monkeypatch, in_kernel):
    pb = il.superresolution_problem(12, 2, 3)
    w0 = paper.preregister(pb, loss="norm", continuation=True).w
    kw = dict(gn_iters=3, gtol=1e-5)
    shared = paper.inexact_projections(pb, w0, (5, 10, 25), **kw)
    restarted, continued = paper.partial_runs(pb, w0, (0.5, 1.0), cg_iters=20, **kw)
    monkeypatch.setenv("IMREG_WORKERS", "1")
    alone = paper.inexact_projections(pb, w0, (5, 10, 25), **kw)
    assert list(shared) == list(alone)
    for a, b in zip(alone.values(), shared.values(), strict=True):
        assert torch.equal(a.w_full, b.w_full) and a.losses == b.losses and a.rel_error == b.rel_error
        assert a.cg_iterations == b.cg_iterations and torch.equal(a.reconstruction, b.reconstruction)
    assert list(restarted) == [0.5, 1.0] and list(continued) == [0.5]
    one = paper.partial_differentiation(pb, w0, [0.5], cg_iters=20, restarted=False, **kw)[0.5]
    assert torch.equal(one.w_full, continued[0.5].w_full) and one.losses == continued[0.5].losses


def test_a_lost_kernel_worker_runs_its_job_in_the_kernel(in_kernel):
    _jobs._kernel_executor(1).submit(_jobs._ready).result()
    jobs = {k: functools.partial(_die_unless_in, os.getpid()) for k in "abc"}
    assert _jobs.run_jobs(jobs) == {k: "ran here" for k in "abc"}
    assert "executor" not in _jobs._KERNEL_POOL  # the broken pool was dropped ...
    assert _jobs.run_jobs({"a": os.getpid, "b": os.getpid})  # ... and the next batch starts a new one


def test_a_job_failing_in_a_worker_raises_in_the_kernel(in_kernel):
    _jobs._kernel_executor(1).submit(_jobs._ready).result()
    jobs = {"a": functools.partial(time.sleep, 0.5), "b": functools.partial(int, "x"), "c": os.getpid}
    with pytest.raises(ValueError, match="invalid literal"):  # "b" went to the worker while the kernel ran "a"
        _jobs.run_jobs(jobs)


def test_longest_jobs_start_first(monkeypatch, one_thread):
    monkeypatch.setenv("IMREG_WORKERS", "1")  # one process: the order the jobs ran in is visible
    ran = []
    jobs = {k: functools.partial(ran.append, k) for k in "abc"}
    assert list(_jobs.run_jobs(jobs, cost={"a": 1, "b": 3, "c": 2})) == ["a", "b", "c"]  # results in given order
    assert ran == ["a", "b", "c"]  # one process: in the given order (nothing to balance)


def test_start_workers_starts_the_kernel_pool_in_the_background(monkeypatch, in_kernel):
    from imreg_lib.paper.notebook import start_workers

    t0 = time.perf_counter()
    assert start_workers()
    assert time.perf_counter() - t0 < 0.5  # in the background: the forkserver's imports take seconds
    _jobs._kernel_executor(1).submit(_jobs._ready).result()
    assert "executor" in _jobs._KERNEL_POOL
    monkeypatch.setattr(_jobs, "_in_kernel", lambda: False)
    _jobs._drop_kernel_pool(wait=True)
    assert not start_workers() and "executor" not in _jobs._KERNEL_POOL  # a script: nothing started
