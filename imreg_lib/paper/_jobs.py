"""Independent runs of one page side by side, in forked worker processes (private module).

The §4 page runs many Levenberg-Marquardt runs that share a problem and nothing else: each is single-threaded (the
book pins one thread for reproducibility), so on a machine with several cores they can run at the same time. Each
run executes in its own process with exactly the arithmetic it has alone, so the results are bit for bit those of
running them one after another (a test asserts it); only the wall time changes.

Workers: ``IMREG_WORKERS`` (an integer >= 1) or, by default, the cores this process may use, at most
:data:`MAX_WORKERS`. Runs stay in this process where forking is not possible or not safe: one run, one worker, not
Linux, a daemonic process (Dask's workers), a Jupyter kernel (its message threads and sockets do not survive a
fork: a forked §4 page hung one test run in four), a problem on a GPU, or PyTorch running more than one thread (its
OpenMP pool does not survive a fork, and the runs then use the cores already). So the book's pages run their LM
runs one after another; scripts (and ``make bench``'s engine runs) get the workers.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
from collections.abc import Callable, Mapping
from typing import TypeVar

import torch

K = TypeVar("K")
T = TypeVar("T")

#: The most worker processes used by default (each holds a copy-on-write view of the parent).
MAX_WORKERS = 4

_JOBS: dict = {}  # the jobs of the pool being run, inherited by its forked workers


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
    """Whether this is a Jupyter kernel: a fork of it hung one run in four in the tests (the kernel's message
    threads and sockets do not survive a fork), so the runs stay in the kernel, one after another."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _quiet() -> None:
    """Worker start-up: output to ``os.devnull``. In a Jupyter kernel the inherited ``sys.stdout`` is the kernel's
    stream over its message sockets, which a forked process must not touch (its flush at exit would)."""
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the worker


def _call(key) -> bytes:
    """Run one job; its result as plain pickle bytes (tensors by value, not through PyTorch's shared-memory file
    descriptors, which tie the parent to the worker's lifetime)."""
    return pickle.dumps(_JOBS[key](), protocol=pickle.HIGHEST_PROTOCOL)


def run_jobs(jobs: Mapping[K, Callable[[], T]], *, cpu: bool = True) -> dict[K, T]:
    """``{key: job()}`` for every job, in worker processes where that is possible (module docstring), in the order
    of ``jobs``. ``cpu``: whether the jobs compute on the CPU only (a CUDA context cannot be forked)."""
    n = min(workers(), len(jobs))
    if (n < 2 or not cpu or sys.platform != "linux" or multiprocessing.current_process().daemon
            or torch.get_num_threads() != 1 or _in_kernel() or _JOBS):
        return {key: job() for key, job in jobs.items()}
    _JOBS.update(jobs)
    try:
        with multiprocessing.get_context("fork").Pool(n, initializer=_quiet) as pool:
            results = pool.map(_call, list(jobs), chunksize=1)
    finally:
        _JOBS.clear()
    return {key: pickle.loads(data) for key, data in zip(jobs, results, strict=True)}
