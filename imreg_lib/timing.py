"""Timing of functions the way derivative costs should be reported: warm-up, synchronisation on CUDA,
several repeats, mean, standard deviation and median; and the process's resident memory."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from . import _checks
from .device import synchronize

__all__ = ["Timing", "describe_machine", "machine_info", "peak_rss_mb", "rss_mb", "time_function"]


@dataclass(frozen=True)
class Timing:
    """Wall-clock statistics in milliseconds over ``n_runs`` calls."""

    mean_ms: float
    std_ms: float
    median_ms: float
    min_ms: float
    n_runs: int

    def as_dict(self) -> dict:
        return asdict(self)


#: With a time budget, at least this many runs are timed (fewer only if ``n_runs`` is smaller).
MIN_RUNS = 5


def time_function(fn: Callable[[], object], n_runs: int = 100, warmup: int = 5,
                  device: torch.device | str = "cpu", max_seconds: float | None = None) -> Timing:
    """Time ``fn()`` (no arguments) ``n_runs`` times after ``warmup`` untimed calls.

    Parameters
    ----------
    max_seconds
        Optional budget for the timed calls: stop early once it is spent and at least
        ``min(n_runs, MIN_RUNS)`` calls are timed. ``Timing.n_runs`` reports how many calls were timed.
    """
    _checks.integer("n_runs", n_runs, 2)
    _checks.integer("warmup", warmup, 0)
    if max_seconds is not None and not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
        raise ValueError(f"max_seconds must be None or a positive number, got {max_seconds!r}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    times: list[float] = []
    spent = 0.0
    for _ in range(n_runs):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        dt = time.perf_counter() - t0
        times.append(1e3 * dt)
        spent += dt
        if max_seconds is not None and spent >= max_seconds and len(times) >= min(n_runs, MIN_RUNS):
            break
    return Timing(statistics.fmean(times), statistics.stdev(times), statistics.median(times), min(times),
                  len(times))




def rss_mb(trim: bool = False) -> float:
    """Current resident set size of this process in MB (Linux: ``/proc/self/statm``; elsewhere the peak).

    ``trim=True`` first hands freed heap memory back to the operating system (glibc ``malloc_trim``; a no-op
    elsewhere), so that the reading is memory in use rather than allocator slack, which otherwise makes
    readings after each step jitter by tens of MB.
    """
    if trim:
        _malloc_trim()
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def _malloc_trim() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def peak_rss_mb() -> float:
    """Peak resident set size in MB of this process or of any worker process it waited for (the larger):
    ``getrusage`` where the platform has it (kB on Linux, bytes on macOS), psutil's peak working set on Windows."""
    try:
        import resource
    except ImportError:  # Windows
        import psutil

        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss) / 2**20
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info(device: torch.device | str | None = None) -> dict:
    """What ran this: CPU model, cores, torch/numpy/scipy versions, torch's thread count and the device, for the
    book to describe the machine from the run rather than in hand-typed prose."""
    import platform

    import numpy
    import scipy

    info = {"cpu": _cpu_model(), "cores": os.cpu_count(), "os": platform.system(), "python": platform.python_version(),
            "torch": torch.__version__.split("+")[0], "numpy": numpy.__version__, "scipy": scipy.__version__,
            "threads": torch.get_num_threads(), "device": str(device) if device is not None else "cpu"}
    if device is not None and torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def describe_machine(info: dict | None) -> str:
    """One line from :func:`machine_info`'s dictionary: "AMD EPYC 7B13 (2 cores, 1 thread), torch 2.13.0, cpu"."""
    if not info:
        return "an unrecorded machine"
    threads = info.get("threads")
    where = info.get("gpu") or info.get("device", "cpu")
    return (f"{info.get('cpu', 'unknown CPU')} ({info.get('cores', '?')} cores, {threads} thread"
            f"{'' if threads == 1 else 's'}), torch {info.get('torch', '?')}, {where}")
