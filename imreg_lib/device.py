"""Device and dtype selection.

Everything in :mod:`imreg_lib` computes in float64 unless told otherwise. The ``device`` argument that
notebooks and drivers accept is resolved here, once, before any work starts.
"""

from __future__ import annotations

import contextlib
import functools

import torch

__all__ = ["DEFAULT_DTYPE", "is_grad_traced", "is_traced", "primal", "primal_if_unbatched", "resolve_device",
           "resolve_dtype", "synchronize", "untraced"]

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
    """Wait for queued kernels on ``device`` (a no-op on the CPU); call before reading a timer."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def is_traced(x: torch.Tensor) -> bool:
    """True for a tensor wrapped by a ``torch.func`` transform (its values must not be cached)."""
    return torch._C._functorch.is_functorch_wrapped_tensor(x)


def primal(x: torch.Tensor) -> torch.Tensor:
    """The plain values under every ``torch.func`` wrapper of ``x``: no tangents, no batching wrapper.

    For decisions that must be taken on primal values inside traced code (e.g. a solver's early break under
    ``jacfwd``). Each functorch level (``jvp``/``grad`` wrappers, ``vmap`` batching) is peeled off; a
    ``vmap``-batched value comes back with its batch dimension materialised (at an unspecified position), so
    reduce it (``all``, ``any``, ``max``) rather than index it. The result must not flow back into traced
    computation: it is for control flow and reporting only.
    """
    from torch._C import _functorch

    while _functorch.maybe_get_level(x) != -1:
        x = _functorch.get_unwrapped(x)
    return x.detach()


def primal_if_unbatched(x: torch.Tensor) -> torch.Tensor:
    """:func:`primal` of ``x`` when no ``vmap`` batches it (then the plain value is a faithful constant), else
    ``x.detach()`` (which keeps the batching and drops tangents)."""
    p = primal(x)
    return p if p.dim() == x.dim() else x.detach()


def is_grad_traced(x: torch.Tensor) -> bool:
    """True if ``x`` is seen by a differentiating transform (``jvp``/``jacfwd``/``grad`` wrapper, at any level)
    or records autograd history; ``vmap`` batching alone does not count."""
    from torch._C import _functorch

    while _functorch.maybe_get_level(x) != -1:
        if _functorch.is_gradtrackingtensor(x):
            return True
        x = _functorch.get_unwrapped(x)
    return x.requires_grad


@contextlib.contextmanager
def untraced():
    """Compute with ``torch.func`` transforms switched off, so that results are plain tensors.

    Caches (spline coefficients, per-scale constants) are filled inside this context: a cache filled during a
    transform would otherwise hold wrapped tensors that escape their transform. Inputs must be plain.
    """
    with torch._C._DisableFuncTorch():
        yield


def untraced_function(fn):
    """Decorator form of :func:`untraced` for cache builders."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with untraced():
            return fn(*args, **kwargs)

    return wrapper
