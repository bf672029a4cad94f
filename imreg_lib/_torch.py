"""PyTorch internals used by :mod:`imreg_lib`, in one place (private module).

Every use of PyTorch's private or unstable API in the library lives here, behind the small functions below, so that
a PyTorch upgrade has one module to check. No other module of :mod:`imreg_lib` imports ``torch._C`` or
``torch._functorch`` (a test parses every module to assert it).

What is used, and why
---------------------
* **Inspecting** ``torch.func`` **state** (``torch._C._functorch``: wrapper levels, the interpreter stack):
  :func:`is_traced`, :func:`is_grad_traced`, :func:`primal`, :func:`primal_if_unbatched`,
  :func:`transform_stack`. Caches must not hold wrapped tensors, solvers take their early-break decisions on
  primal values, and the fast code paths are chosen from the active transforms.
* **Leaving every transform** (``torch._C._DisableFuncTorch``): :func:`untraced`, :func:`untraced_function`, for
  filling caches with plain tensors.
* **Lowering through transform levels** (``torch._functorch.pyfunctorch`` interpreters and the batching and
  gradient wrappers): :func:`call_on_vmap_batch`, :func:`batched_tangent_rule`. This is what ``torch.func``
  itself does for a custom ``torch.autograd.Function``; here it lets a sparse kernel see a whole ``vmap`` batch
  (or all ``jacfwd`` tangents) as one plain ``(B, ...)`` tensor.
* **An operator overload** (``torch.ops.aten.mul.Scalar``): :func:`scale`, which avoids a slow wrapped-number
  path of ``Tensor * float`` under forward-mode transforms.

The code paths that rely on the lowering helpers can be switched off with :func:`fast_paths` (one switch for the
whole library): everything then runs on public, differentiable tensor operations. The tests compare both ways.

Versions
--------
Checked with torch 2.13.0 (the version pinned in ``requirements-lock.txt``): the test suite, the comparison of
the fast and generic paths, and the bitwise comparison with the code before these helpers were gathered here.
``pyproject.toml`` allows ``torch>=2.6``; the names used exist in the 2.x series, where ``torch.func`` relies on
them for custom functions, but only the pinned version is tested. If an upgrade breaks a helper, ``with
fast_paths(False):`` keeps the library working (on the generic paths) while it is fixed.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch
from torch._C import _functorch
from torch._functorch.pyfunctorch import retrieve_current_functorch_interpreter

__all__ = [
    "batched_tangent_rule",
    "call_on_vmap_batch",
    "fast_paths",
    "fast_paths_enabled",
    "is_grad_traced",
    "is_traced",
    "primal",
    "primal_if_unbatched",
    "scale",
    "transform_stack",
    "untraced",
    "untraced_function",
]

_F = TypeVar("_F", bound=Callable)

_TRANSFORM_NAMES = {
    _functorch.TransformType.Vmap: "vmap",
    _functorch.TransformType.Jvp: "jvp",
    _functorch.TransformType.Grad: "grad",
    _functorch.TransformType.Functionalize: "functionalize",
}


# ------------------------------------------------------------------------------------------------
# The switch for the fast code paths
# ------------------------------------------------------------------------------------------------
_FAST_PATHS: contextvars.ContextVar[bool] = contextvars.ContextVar("imreg_lib_fast_paths", default=True)


def fast_paths_enabled() -> bool:
    """Whether the fast code paths may be taken (``True`` unless inside ``fast_paths(False)``).

    Returns
    -------
    bool
        The setting of the innermost active :func:`fast_paths` context of this thread, ``True`` outside any.
    """
    return _FAST_PATHS.get()


@contextlib.contextmanager
def fast_paths(enabled: bool = True) -> Iterator[None]:
    """Enable or disable, within the block, the fast code paths of the library.

    The fast paths are :meth:`~imreg_lib.SplineWeights.apply` and :meth:`~imreg_lib.SplineWeights.transpose` by
    CSR products, and the plain (sparse, batched) and primitive (custom ``jvp``) implementations of
    :meth:`~imreg_lib.SROperator.normal`. With ``enabled=False`` every call takes the generic path (pure tensor
    operations, differentiable to any order); the numbers agree to round-off.

    Parameters
    ----------
    enabled
        ``False`` routes everything to the generic paths; ``True`` restores the default choice per call.

    Yields
    ------
    None
        The setting holds for the block (per thread and per ``contextvars`` context) and is restored on exit.

    Raises
    ------
    TypeError
        If ``enabled`` is not a bool.

    Examples
    --------
    >>> from imreg_lib._torch import fast_paths, fast_paths_enabled
    >>> with fast_paths(False):
    ...     fast_paths_enabled()
    False
    >>> fast_paths_enabled()
    True
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    token = _FAST_PATHS.set(enabled)
    try:
        yield
    finally:
        _FAST_PATHS.reset(token)


# ------------------------------------------------------------------------------------------------
# Inspecting torch.func state
# ------------------------------------------------------------------------------------------------
def is_traced(x: torch.Tensor) -> bool:
    """Whether ``x`` is wrapped by a ``torch.func`` transform (then its values must not be cached).

    Parameters
    ----------
    x
        Any tensor.

    Returns
    -------
    bool
        ``True`` for a tensor wrapped at any ``torch.func`` level (``vmap`` batching, ``jvp`` or ``grad``).
    """
    return _functorch.is_functorch_wrapped_tensor(x)


def primal(x: torch.Tensor) -> torch.Tensor:
    """The plain values under every ``torch.func`` wrapper of ``x``: no tangents, no batching wrapper.

    For decisions that must be taken on primal values inside traced code (e.g. a solver's early break under
    ``jacfwd``). Each functorch level (``jvp``/``grad`` wrappers, ``vmap`` batching) is peeled off; a
    ``vmap``-batched value comes back with its batch dimension materialised (at an unspecified position), so
    reduce it (``all``, ``any``, ``max``) rather than index it.

    Parameters
    ----------
    x
        Any tensor, plain or wrapped.

    Returns
    -------
    torch.Tensor
        The values, detached. Inside an active transform ``detach`` itself runs under that transform, so the
        result may be wrapped again at the innermost level (with no tangent); it must not flow back into traced
        computation: it is for control flow and reporting only.
    """
    while _functorch.maybe_get_level(x) != -1:
        x = _functorch.get_unwrapped(x)
    return x.detach()


def primal_if_unbatched(x: torch.Tensor) -> torch.Tensor:
    """:func:`primal` of ``x`` when no ``vmap`` batches it, else ``x.detach()``.

    Parameters
    ----------
    x
        Any tensor, plain or wrapped.

    Returns
    -------
    torch.Tensor
        The plain value (a faithful constant) when unbatched; otherwise ``x.detach()``, which keeps the batching
        and drops the tangents.
    """
    p = primal(x)
    return p if p.dim() == x.dim() else x.detach()


def is_grad_traced(x: torch.Tensor) -> bool:
    """Whether a differentiating transform sees ``x`` or autograd records its history.

    Parameters
    ----------
    x
        Any tensor, plain or wrapped.

    Returns
    -------
    bool
        ``True`` if ``x`` is wrapped by a ``jvp``/``jacfwd``/``grad`` level (at any depth) or requires grad;
        ``vmap`` batching alone does not count.
    """
    while _functorch.maybe_get_level(x) != -1:
        if _functorch.is_gradtrackingtensor(x):
            return True
        x = _functorch.get_unwrapped(x)
    return x.requires_grad


def transform_stack() -> tuple[str, ...]:
    """The active ``torch.func`` transforms, outermost first.

    Returns
    -------
    tuple of str
        One of ``"vmap"``, ``"jvp"``, ``"grad"``, ``"functionalize"`` per level; ``()`` outside every transform.
        ``jacfwd`` shows as ``("vmap", "jvp")`` (a ``vmap`` over the ``jvp`` of the basis vectors).
    """
    stack = _functorch.get_interpreter_stack()
    if not stack:
        return ()
    return tuple(_TRANSFORM_NAMES.get(i.key(), str(i.key())) for i in stack)


# ------------------------------------------------------------------------------------------------
# Leaving every transform
# ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """Compute with ``torch.func`` transforms switched off, so that results are plain tensors.

    Caches (spline coefficients, per-scale constants) are filled inside this context: a cache filled during a
    transform would otherwise hold wrapped tensors that escape their transform. Inputs must be plain.

    Yields
    ------
    None
    """
    with torch._C._DisableFuncTorch():
        yield


def untraced_function(fn: _F) -> _F:
    """Decorator form of :func:`untraced` for cache builders.

    Parameters
    ----------
    fn
        The function to run with every transform switched off.

    Returns
    -------
    callable
        ``fn`` wrapped (same signature and metadata).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with untraced():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------
# Lowering through transform levels
# ------------------------------------------------------------------------------------------------
def call_on_vmap_batch(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply a batched map to ``x`` with every ``vmap`` level unwrapped, so that ``fn`` sees the whole batch.

    Sparse products then run once on the whole batch (no per-sample overhead). Each ``vmap`` level is unwrapped
    (its batch dimension moved to the front), ``fn`` is called below it, and the result is wrapped back.

    Parameters
    ----------
    fn
        A map of plain ``(B, n)`` tensors to ``(B, n)`` tensors, row by row.
    x
        Shape ``(..., n)`` (logical shape), plain or batched by ``vmap`` levels only; the caller checks that no
        other transform is active (:func:`transform_stack`).

    Returns
    -------
    torch.Tensor
        ``fn`` applied to every row of ``x``, with the batching of ``x``.
    """
    if not _functorch.get_interpreter_stack():
        return fn(x.reshape(-1, x.shape[-1])).reshape(x.shape)
    interpreter = retrieve_current_functorch_interpreter()  # a vmap level (checked by the caller)
    level = interpreter.level()
    physical, bdim = _functorch._unwrap_batched(x, level)
    with interpreter.lower():
        out = call_on_vmap_batch(fn, physical if bdim is None else physical.movedim(bdim, 0))
    return out if bdim is None else _functorch._add_batch_dim(out, 0, level)


def batched_tangent_rule(kernel: Callable[..., torch.Tensor],
                         tangents: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """Evaluate a forward-mode rule on plain tensors, inside ``torch.autograd.Function.jvp``.

    There the tangents arrive wrapped at the current forward-mode level, and batched by a ``vmap`` directly below
    it under ``jacfwd``. Both levels are unwrapped, ``kernel`` runs on plain tensors with an explicit batch
    dimension, and the result is wrapped back: the lowering ``torch.func`` itself applies to a custom function's
    ``forward``.

    Parameters
    ----------
    kernel
        Called as ``kernel(*plain)`` with one entry per tangent: ``None`` where the tangent is ``None``, else a
        plain tensor of shape ``(B,) + tangent.shape`` (``B`` the ``vmap`` batch size, 1 without a ``vmap``; an
        unbatched tangent under a ``vmap`` is expanded). Must return a plain ``(B, ...)`` tensor.
    tangents
        The tangents given to ``jvp`` (at least one not ``None``).

    Returns
    -------
    torch.Tensor
        The tangent of the output, wrapped at the caller's levels (logical shape: ``kernel``'s output without
        ``B``).
    """
    jvp_level = retrieve_current_functorch_interpreter()
    jl = jvp_level.level()
    plain = [None if t is None else _functorch._unwrap_for_grad(t, jl) for t in tangents]
    with jvp_level.lower():
        inner = _functorch.peek_interpreter_stack()
        if inner is not None and inner.key() == _functorch.TransformType.Vmap:
            vmap_level = retrieve_current_functorch_interpreter()
            vl, size = vmap_level.level(), vmap_level.batch_size()
            physical = []
            for t in plain:
                if t is None:
                    physical.append(None)
                    continue
                p, bdim = _functorch._unwrap_batched(t, vl)
                physical.append(p.expand(size, *p.shape) if bdim is None else p.movedim(bdim, 0))
            with vmap_level.lower():
                out = kernel(*physical)
            out = _functorch._add_batch_dim(out, 0, vl)
        else:
            out = kernel(*[None if t is None else t[None] for t in plain])[0]
    return _functorch._wrap_for_grad(out, jl)


# ------------------------------------------------------------------------------------------------
# Operator overloads
# ------------------------------------------------------------------------------------------------
def scale(x: torch.Tensor, s: float) -> torch.Tensor:
    """``s * x`` for a Python number ``s``, through ``aten.mul.Scalar``.

    Under forward-mode transforms the ``Tensor * float`` overload goes through a wrapped-number zero-tangent path
    that costs about 20 times more; the ``Scalar`` overload gives the same numbers.

    Parameters
    ----------
    x
        Any tensor.
    s
        A Python number.

    Returns
    -------
    torch.Tensor
        ``s * x``.
    """
    return torch.ops.aten.mul.Scalar(x, s)
