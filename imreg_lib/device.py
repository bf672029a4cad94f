"""Device and dtype selection.

Everything in :mod:`imreg_lib` computes in float64 unless told otherwise. The ``device`` argument that
notebooks and drivers accept is resolved here, once, before any work starts.
"""

from __future__ import annotations

import torch

__all__ = ["DEFAULT_DTYPE", "resolve_device", "resolve_dtype", "synchronize"]

#: The dtype of every tensor the library creates unless a caller asks for another.
DEFAULT_DTYPE = torch.float64

_DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn a user's ``device`` setting into a :class:`torch.device`.

    Parameters
    ----------
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:<index>"``, or a
        :class:`torch.device`. ``None`` means ``"auto"``.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        For an unknown name, or ``"cuda"`` on a machine where CUDA is not available (no silent fallback).
    """
    if device is None:
        device = "auto"
    if isinstance(device, torch.device):
        name = str(device)
    elif isinstance(device, str):
        name = device.strip().lower()
    else:
        raise ValueError(
            f"device must be one of {_DEVICE_CHOICES} (or 'cuda:<index>'), got {device!r} of type "
            f"{type(device).__name__}"
        )
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available on this machine "
                f"(torch {torch.__version__}); use device='cpu' or device='auto'"
            )
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) are available"
            )
        return dev
    raise ValueError(f"device must be one of {_DEVICE_CHOICES} (or 'cuda:<index>'), got {device!r}")


def resolve_dtype(dtype: torch.dtype | str | None = None) -> torch.dtype:
    """Return a floating dtype, float64 by default.

    Parameters
    ----------
    dtype
        ``torch.float64`` or ``torch.float32``, or one of the names ``"float64"``, ``"double"``, ``"float32"``,
        ``"float"``; ``None`` means :data:`DEFAULT_DTYPE`.

    Returns
    -------
    torch.dtype

    Raises
    ------
    ValueError
        If ``dtype`` is not float32 or float64.
    """
    if dtype is None:
        return DEFAULT_DTYPE
    if isinstance(dtype, str):
        dtype = {"float64": torch.float64, "double": torch.float64, "float32": torch.float32,
                 "float": torch.float32}.get(dtype, dtype)
    if dtype not in (torch.float64, torch.float32):
        raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype!r}")
    return dtype


def synchronize(device: torch.device | str) -> None:
    """Wait for queued kernels on ``device`` (a no-op on the CPU); call before reading a timer.

    Parameters
    ----------
    device
        The device whose queue to wait for.
    """
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
