"""Independent runs of one page side by side, in worker processes (private module).

The §4 page runs many Levenberg-Marquardt runs that share a problem and nothing else: each is single-threaded (the
book pins one thread for reproducibility), so on a machine with several cores they can run at the same time. Each
run executes in its own process with exactly the arithmetic it has alone, so the results are bit for bit those of
running them one after another (tests assert it); only the wall time changes.

Two ways, by where the runs are started:

* **A script** (``make bench``, ``make full-scale``): a pool of processes forked for the batch, which inherit the
  jobs (nothing is pickled on the way out).
* **A Jupyter kernel** (the book's pages): a kernel must not fork (its message threads and sockets do not survive
  it: a forked §4 page hung one test run in four), so the kernel keeps a small pool of workers started from a clean
  *forkserver* process, once, the first time it has runs to share (about 2-3 s on one core, overlapped with the
  kernel's own first run). The kernel sends each job pickled, without the problem's caches
  (:class:`~imreg_lib._sroperator.CachesNotPickled`), and runs jobs itself while the workers run others. If a worker
  is lost, its job runs in the kernel.

Workers: ``IMREG_WORKERS`` or the usable cores, at most :data:`MAX_WORKERS` (a kernel counts as one). Runs stay in
this process for one run or one worker, off Linux, in a daemonic process (Dask's workers), on a GPU, or where PyTorch
runs more than one thread (the runs then use the cores already; its OpenMP pool does not survive a fork).

Memory: each run records the resident memory of the process that ran it; :func:`worker_peak_mb` is the largest
peak any kernel worker reported, which a page adds to its own peak.
"""

from __future__ import annotations

import atexit
import collections
import gc
import multiprocessing
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

import torch

K = TypeVar("K")
T = TypeVar("T")

#: The most worker processes used by default (each holds a copy-on-write view of the parent).
MAX_WORKERS = 4

_JOBS: dict = {}  # the jobs of the pool being run, inherited by its forked workers
_KERNEL_POOL: dict = {}  # a kernel's persistent workers: {"executor": ProcessPoolExecutor, "size": int}
_POOL_LOCK = threading.Lock()
_WORKER_PEAK_MB = [0.0]  # the largest peak resident memory a kernel worker reported


def workers() -> int:
    """The number of worker processes: ``IMREG_WORKERS`` or the usable cores (at most :data:`MAX_WORKERS`)."""
    value = os.environ.get("IMREG_WORKERS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"IMREG_WORKERS must be an integer >= 1, got {value!r}")
        return int(value)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


def _in_kernel() -> bool:
    """Whether this is a Jupyter kernel, which must not fork (module docstring)."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _quiet() -> None:
    """Forked worker start-up: output to ``os.devnull``, not to an inherited stream over a kernel's sockets."""
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the worker


def _call(key) -> bytes:
    """Run one job; its result as plain pickle bytes (tensors by value, not as PyTorch's shared-memory handles)."""
    return pickle.dumps(_JOBS[key](), protocol=pickle.HIGHEST_PROTOCOL)


def worker_peak_mb() -> float:
    """The largest peak resident memory (MB) reported by a kernel worker process so far (0 if none ran)."""
    return _WORKER_PEAK_MB[0]


def _run_pickled(job: bytes) -> tuple[bytes, float]:
    """Kernel worker: run one pickled job; its result as pickle bytes and this process's peak memory. The job's copy
    of the problem is freed before the next (its caches refer back to it: only the cycle collector frees them)."""
    from ..timing import peak_rss_mb

    fn = pickle.loads(job)
    result = fn()
    del fn
    gc.collect()
    return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL), peak_rss_mb()


def _ready() -> bool:
    return True


def _worker_start(threads: int) -> None:
    """Kernel worker start-up: an interrupt of the kernel (sent to its process group) stops the kernel's loop; the
    worker ignores it and finishes its job."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)


def _kernel_executor(size: int) -> ProcessPoolExecutor:
    """The kernel's persistent pool of ``size`` workers (started from a forkserver that has imported the library)."""
    pool = _KERNEL_POOL
    with _POOL_LOCK:
        if pool.get("size") != size:
            if pool.get("executor") is not None:
                pool["executor"].shutdown(wait=False, cancel_futures=True)
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["imreg_lib.paper"])
            if "closes_at_exit" not in pool:
                atexit.register(_close_at_exit)
            executor = ProcessPoolExecutor(size, mp_context=ctx, initializer=_worker_start,
                                           initargs=(torch.get_num_threads(),))
            pool.update(executor=executor, size=size, closes_at_exit=True)
        return pool["executor"]


def _close_at_exit() -> None:
    """At the kernel's exit: stop the workers and free the pool's queues (else reported as leaked semaphores)."""
    _drop_kernel_pool(wait=True)
    gc.collect()


def _drop_kernel_pool(wait: bool = False) -> None:
    """Shut the kernel's pool down (a lost worker breaks it; the next batch starts a new one)."""
    with _POOL_LOCK:
        executor = _KERNEL_POOL.pop("executor", None)
        _KERNEL_POOL.pop("size", None)
    if executor is not None:
        executor.shutdown(wait=wait, cancel_futures=True)


def _start_kernel_pool(size: int, wait: bool = False) -> bool:
    """Start the kernel's pool of ``size`` workers (``wait``: until one is up); ``False`` (pool dropped) if it fails."""
    try:
        future = _kernel_executor(size).submit(_ready)
        if wait:
            future.result()
    except (BrokenProcessPool, OSError):
        _drop_kernel_pool()
        return False
    return True


def _share_with_kernel_workers(jobs: Mapping[K, Callable[[], T]], size: int, order: list,
                               done: Callable[[], None]) -> dict[K, T]:
    """Run ``jobs`` in this kernel and in the kernel's pool of ``size`` persistent workers (at most one job less
    than there are jobs in use), each taking the next job (in ``order``) when it is free; a job whose worker was
    lost runs here."""
    pending = collections.deque(order)
    cond = threading.Condition()
    sent: list = []  # keys a worker took
    remote: dict = {}  # key -> ("ok", result), ("error", exception) or ("lost", None)

    def take_for_worker():
        with cond:  # (a reentrant lock) popped and recorded at once
            if (key := take_here()) is not None:
                sent.append(key)
            return key

    def finish(key, status, value=None) -> None:
        with cond:
            remote[key] = (status, value)
            cond.notify_all()
        if status != "lost":
            done()

    def dispatch() -> None:
        if not _start_kernel_pool(size, wait=True):  # takes jobs once up (the first time: while the kernel runs some)
            return
        while (key := take_for_worker()) is not None:
            try:
                payload = pickle.dumps(jobs[key], protocol=pickle.HIGHEST_PROTOCOL)
                data, peak = _kernel_executor(size).submit(_run_pickled, payload).result()
            except (BrokenProcessPool, OSError):  # the worker was lost or could not start: the kernel runs it
                _drop_kernel_pool()
                finish(key, "lost")
                return
            except (pickle.PicklingError, AttributeError, TypeError) as exc:
                # a job that cannot be sent runs in the kernel; one that failed in the worker raises there again
                finish(key, "lost", exc)
                continue
            except Exception as exc:  # noqa: BLE001 - the job itself failed: raised in the kernel, in order
                finish(key, "error", exc)
                continue
            _WORKER_PEAK_MB[0] = max(_WORKER_PEAK_MB[0], peak)
            finish(key, "ok", pickle.loads(data))

    def take_here():
        with cond:
            return pending.popleft() if pending else None

    key = take_here()  # the kernel starts on the first job while the workers start (the first time)
    for i in range(min(size, len(jobs) - 1)):
        threading.Thread(target=dispatch, daemon=True, name=f"imreg-jobs-{i}").start()
    local: dict = {}
    try:
        while key is not None:
            local[key] = jobs[key]()
            done()
            key = take_here()
        with cond:  # the jobs the workers took (a worker still starting up takes none)
            cond.wait_for(lambda: all(k in remote for k in sent))
    except BaseException:
        with cond:
            pending.clear()  # an error or an interrupt here: no further jobs go out
        raise
    for key, (status, _) in list(remote.items()):
        if status == "lost":
            local[key] = jobs[key]()
            done()
    for key in jobs:  # a job that failed in a worker raises here, in the order of the jobs
        if key not in local and remote[key][0] == "error":
            raise remote[key][1]
    return {key: local[key] if key in local else remote[key][1] for key in jobs}


def _side_by_side_possible() -> bool:
    return not (sys.platform != "linux" or multiprocessing.current_process().daemon or torch.get_num_threads() != 1)


def start_workers() -> bool:
    """In a Jupyter kernel that will share runs (module docstring), start its worker processes now, in the
    background, so that they are up when the first runs come (a page calls this in its set-up cell); returns
    whether workers are starting. Elsewhere a no-op."""
    if workers() < 2 or not _in_kernel() or not _side_by_side_possible():
        return False
    # submit() waits for the forkserver's imports: in a thread, the kernel goes on
    threading.Thread(target=_start_kernel_pool, args=(workers() - 1,), daemon=True, name="imreg-jobs-start").start()
    return True


def run_jobs(jobs: Mapping[K, Callable[[], T]], *, cpu: bool = True,
             cost: Mapping[K, float] | None = None, done: Callable[[], None] | None = None) -> dict[K, T]:
    """``{key: job()}`` for every job, in worker processes where that is possible (module docstring), returned in
    the order of ``jobs``.

    ``cpu``: whether the jobs compute on the CPU only (a CUDA context cannot be forked). ``cost``: an estimate of
    each job's time in any unit; the jobs then start longest first (the classic longest-processing-time rule,
    which keeps two processes from waiting on one long job started last). Results do not depend on it. ``done``:
    called once after each job has finished (a progress bar's update), from any thread."""
    order = sorted(jobs, key=lambda k: -cost[k]) if cost is not None else list(jobs)
    done = done if done is not None else (lambda: None)
    total = workers()
    n = min(total, len(jobs))
    if n < 2 or not cpu or not _side_by_side_possible() or _JOBS:
        out = {}
        for key, job in jobs.items():
            out[key] = job()
            done()
        return out
    if _in_kernel():
        return _share_with_kernel_workers(jobs, total - 1, order, done)
    _JOBS.update(jobs)
    try:
        with multiprocessing.get_context("fork").Pool(n, initializer=_quiet) as pool:
            results = {}
            for key, data in zip(order, pool.imap(_call, order, chunksize=1), strict=True):
                results[key] = data
                done()
    finally:
        _JOBS.clear()
    return {key: pickle.loads(results[key]) for key in jobs}
