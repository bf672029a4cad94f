"""Independent LM runs of a page side by side in worker processes: bit for bit the results of one after another."""
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
    monkeypatch.setattr(_jobs, "_in_kernel", lambda: True)
    assert _jobs.run_jobs(jobs) == {"a": 1, "b": 2}  # a Jupyter kernel
    monkeypatch.setattr(_jobs, "_in_kernel", lambda: False)
    monkeypatch.setattr(_jobs.multiprocessing.current_process(), "daemon", True, raising=False)
    assert _jobs.run_jobs(jobs) == {"a": 1, "b": 2}  # a daemonic process (Dask's workers)
