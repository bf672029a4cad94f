r"""Parametric transformations :math:`y(w, x)` and the interface every transformation satisfies (paper §2.1).

The interface
-------------
A transformation maps N points :math:`x_n \in \mathbb{R}^d` (the rows of ``x``, shape (N, d)) with a flat parameter
vector :math:`w \in \mathbb{R}^p` to :math:`y_n = y(w, x_n)`. :class:`Transformation` states what objectives use:
the map itself (a pure function of ``(w, x)``, so ``torch.func`` transforms apply), its size, a starting point,
input validation, the Jacobian

.. math::  Q[n, k, p] = \frac{\partial y_k(x_n)}{\partial w_p}, \qquad Q \in \mathbb{R}^{N \times d \times p},

and :meth:`Transformation.linearize`, which returns a :class:`Linearization`: :math:`y` at one ``w`` together with
its derivatives, computed the transformation's own way (closed form, a hand-coded sweep, or automatic
differentiation by :class:`AutodiffLinearization`). For a cotangent :math:`\lambda \in \mathbb{R}^{N \times d}` (in an
objective, :math:`\lambda_n = \partial J / \partial y_n`) a linearization gives

.. math::
    \text{vjp}(\lambda) = \sum_n Q_n^\top \lambda_n \in \mathbb{R}^p, \qquad
    C_\lambda = \sum_{n, k} \lambda_{nk} \frac{\partial^2 y_k(x_n)}{\partial w^2} \in \mathbb{R}^{p \times p},

the curvature :math:`C_\lambda` being the transformation's term of an exact Hessian (the chain rule gives
:math:`\nabla^2_w J = \sum_n Q_n^\top (\partial^2 J / \partial y_n^2) Q_n + C_\lambda` when :math:`J` couples no
two points). ``is_linear`` declares :math:`\partial^2 y / \partial w^2 = 0`: then :math:`C_\lambda = 0` and
:math:`Q` does not depend on :math:`w`, so one linearization serves every ``w`` (objectives cache it per grid).

Models
------
Affine in d dimensions (:class:`Affine`): :math:`y(x) = A x + b` with the flat parameter vector
:math:`w = [A_{11}, A_{12}, \dots, A_{dd}, b_1, \dots, b_d]` (row-major A, then b), so the 2D identity is
``[1, 0, 0, 1, 0, 0]``. Points are rows: ``y = x @ A.T + b``. The neural ODE (:class:`~imreg_lib.NeuralODE`)
satisfies the same interface.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch.func import hessian, jacfwd, vjp

from . import _pointwise
from .device import DEFAULT_DTYPE

__all__ = ["Affine", "AffineLinearization", "AutodiffLinearization", "Linearization", "Transformation", "affine",
           "affine_from_geometry", "check_transformation"]


@runtime_checkable
class Linearization(Protocol):
    r"""A transformation evaluated at one parameter vector ``w``, with its derivatives in ``w``.

    Made by :meth:`Transformation.linearize` for fixed points ``x`` (N, d); ``p`` is the number of parameters.
    Every method refers to the Jacobian :math:`Q[n, k, p] = \partial y_k(x_n) / \partial w_p` at that ``w``; a
    linearization computes :math:`Q` at most once and reuses it in later calls.

    Attributes
    ----------
    y
        The mapped points :math:`y(w, x_n)`, shape (N, d).
    """

    @property
    def y(self) -> torch.Tensor: ...

    def vjp(self, cotangent: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_n Q_n^\top \lambda_n` (p,) for a cotangent :math:`\lambda` of shape (N, d) (reverse mode:
        no Jacobian needed)."""
        ...

    def jacobian(self) -> torch.Tensor:
        """The Jacobian ``Q`` of shape (N, d, p)."""
        ...

    def jacobian_and_curvature(self, cotangent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""``(Q, C)`` with the curvature :math:`C = \sum_{n,k} \lambda_{nk}\, \partial^2 y_k(x_n) / \partial w^2`
        (p × p, zero for a linear map) for a cotangent :math:`\lambda` of shape (N, d)."""
        ...

    def contract(self, g: torch.Tensor) -> torch.Tensor:
        r"""Rows :math:`g_n^\top Q_n` (N, p) for point-wise vectors ``g`` (N, d).

        With :math:`g_n = \nabla f(y_n)` for a scalar field :math:`f` (an image), this is the Jacobian of
        :math:`f(y(w, x_n))` in ``w``."""
        ...

    def congruence(self, M: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_n Q_n^\top M_n Q_n` (p × p) for point-wise forms ``M`` (N, d, d)."""
        ...


@runtime_checkable
class Transformation(Protocol):
    r"""The interface of a parametric transformation :math:`y(w, x)` (see the module docstring).

    Attributes
    ----------
    dim
        Spatial dimension d of the points.
    n_params
        Length p of the flat parameter vector ``w``.
    is_linear
        True when :math:`y` is linear in :math:`w` (:math:`\partial^2 y / \partial w^2 = 0`): the Jacobian is
        then the same at every ``w`` and the curvature of :meth:`linearize` vanishes.
    """

    @property
    def dim(self) -> int: ...

    @property
    def n_params(self) -> int: ...

    @property
    def is_linear(self) -> bool: ...

    def identity(self, device: torch.device | str | None = None, dtype: torch.dtype = DEFAULT_DTYPE,
                 ) -> torch.Tensor:
        """Parameters of the identity map :math:`y(x) = x`, shape (p,)."""
        ...

    def check(self, w: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``w`` is a valid parameter vector (shape (p,))."""
        ...

    def __call__(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The mapped points :math:`y(w, x_n)` (N, d) of points ``x`` (N, d); a pure, ``torch.func``-friendly
        function of ``(w, x)``."""
        ...

    def jacobian(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r""":math:`Q[n, k, p] = \partial y_k(x_n) / \partial w_p`, shape (N, d, p)."""
        ...

    def linearize(self, w: torch.Tensor, x: torch.Tensor) -> Linearization:
        """:math:`y(w, x)` and its derivatives at ``w`` as a :class:`Linearization`."""
        ...


#: The members of :class:`Transformation`, checked by :func:`check_transformation`.
_TRANSFORMATION_MEMBERS = ("dim", "n_params", "is_linear", "identity", "check", "__call__", "jacobian", "linearize")


def check_transformation(transformation: object, name: str = "transformation") -> None:
    """Raise ``TypeError`` naming the missing members unless ``transformation`` satisfies :class:`Transformation`.

    Parameters
    ----------
    transformation
        The object to check.
    name
        How the error message calls it (the argument's name).
    """
    missing = [m for m in _TRANSFORMATION_MEMBERS if not hasattr(transformation, m)]
    if missing:
        raise TypeError(f"{name} must satisfy the Transformation protocol ({', '.join(_TRANSFORMATION_MEMBERS)}); "
                        f"{type(transformation).__name__} lacks {', '.join(missing)}")


def affine(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply the affine map with parameters ``w`` (length d² + d) to points ``x`` of shape (N, d)."""
    d = x.shape[-1]
    A = w[: d * d].reshape(d, d)
    return x @ A.T + w[d * d:]


def _affine_jacobian(x: torch.Tensor) -> torch.Tensor:
    n, d = x.shape
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    QA = torch.einsum("kj,nl->nkjl", eye, x).reshape(n, d, d * d)
    return torch.cat([QA, eye.expand(n, d, d)], dim=-1)


@dataclass(frozen=True)
class Affine:
    """The d-dimensional affine transformation (6 parameters in 2D, 12 in 3D).

    Its Jacobian ``Q[n, k, p] = dy_k(x_n) / dw_p`` does not depend on ``w`` (``y`` is linear in ``w``),
    so objectives compute it once per grid.
    """

    dim: int = 2

    def __post_init__(self) -> None:
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim!r}")

    @property
    def n_params(self) -> int:
        return self.dim * self.dim + self.dim

    #: ``y`` is linear in ``w``: the second derivative of ``y`` with respect to ``w`` vanishes.
    is_linear: ClassVar[bool] = True

    def identity(self, device: torch.device | str | None = None, dtype: torch.dtype = DEFAULT_DTYPE,
                 ) -> torch.Tensor:
        return torch.cat([torch.eye(self.dim, dtype=dtype, device=device).reshape(-1),
                          torch.zeros(self.dim, dtype=dtype, device=device)])

    def check(self, w: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``w`` is a vector of ``n_params`` floats."""
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != (self.n_params,):
            shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise ValueError(f"w must be a tensor of shape ({self.n_params},) for a {self.dim}D affine map, "
                             f"got {shape}")

    def __call__(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return affine(w, x)

    def jacobian(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``Q`` of shape (N, d, n_params): ``Q[n, k, k*d + l] = x[n, l]`` and ``Q[n, k, d*d + k] = 1``."""
        return _affine_jacobian(x)

    def linearize(self, w: torch.Tensor, x: torch.Tensor) -> AffineLinearization:
        """``y(w, x)`` and the closed-form derivatives (:class:`AffineLinearization`)."""
        if x.dim() != 2 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (N, {self.dim}), got {tuple(x.shape)}")
        return AffineLinearization(x, affine(w, x))


@dataclass(frozen=True, eq=False)
class AffineLinearization:
    r"""The derivatives of :math:`y = A x + b` in closed form, from the factor :math:`v_n = [x_n; 1]`.

    The Jacobian is :math:`\partial y_k(x_n) / \partial A_{kl} = x_{nl}`, :math:`\partial y_k(x_n) / \partial b_k =
    1`: in the layout :math:`(k, l)` (``l < d``: :math:`A_{kl}`, ``l = d``: :math:`b_k`) it is
    :math:`Q_n = I_d \otimes v_n^\top`, so that

    .. math::
        g_n^\top Q_n = g_n \otimes v_n, \qquad
        \sum_n Q_n^\top M_n Q_n = \Big[\sum_n M_{n, kk'}\, v_{nl} v_{nl'}\Big]_{(k,l),(k',l')}, \qquad
        \sum_n Q_n^\top \lambda_n = \lambda^\top v,

    the middle one a single matrix product of the d² entries of :math:`M` with the cached :math:`v \otimes v`;
    results are permuted to the flat parameter order. Nothing depends on ``w`` except :attr:`y`.

    Attributes
    ----------
    x
        The points, shape (N, d).
    y
        The mapped points, shape (N, d).
    """

    x: torch.Tensor
    y: torch.Tensor

    @cached_property
    def _v(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``v = [x, 1]`` (N, d+1) and the permutation from the ``(k, l)`` layout to the flat parameter order."""
        x = self.x
        d = x.shape[1]
        v = torch.cat([x, torch.ones_like(x[:, :1])], 1)
        k = torch.arange(d, device=x.device)[:, None]
        l = torch.arange(d + 1, device=x.device)[None, :]
        flat = torch.where(l < d, k * d + l, d * d + k).reshape(-1)  # flat index of (k, l)
        return v, torch.argsort(flat)

    @cached_property
    def _vv(self) -> torch.Tensor:
        """``v ⊗ v``, shape (N, (d+1)²)."""
        v = self._v[0]
        return (v[:, :, None] * v[:, None, :]).reshape(v.shape[0], -1)

    @cached_property
    def _jacobian(self) -> torch.Tensor:
        return _affine_jacobian(self.x)

    def vjp(self, cotangent: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_n Q_n^\top \lambda_n = \lambda^\top v` in the flat parameter order, shape (d² + d,)."""
        if tuple(cotangent.shape) != tuple(self.y.shape):
            raise ValueError(f"cotangent must have shape {tuple(self.y.shape)}, got {tuple(cotangent.shape)}")
        v, perm = self._v
        return (cotangent.T @ v).reshape(-1).index_select(0, perm)

    def jacobian(self) -> torch.Tensor:
        """``Q`` of shape (N, d, d² + d) (the same at every ``w``)."""
        return self._jacobian

    def jacobian_and_curvature(self, cotangent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Q, 0)``: the map is linear in ``w``, its curvature vanishes."""
        if tuple(cotangent.shape) != tuple(self.y.shape):
            raise ValueError(f"cotangent must have shape {tuple(self.y.shape)}, got {tuple(cotangent.shape)}")
        Q = self._jacobian
        return Q, Q.new_zeros(Q.shape[-1], Q.shape[-1])

    def contract(self, g: torch.Tensor) -> torch.Tensor:
        r"""Rows :math:`g_n^\top Q_n = g_n \otimes v_n` in the flat parameter order, shape (N, d² + d)."""
        v, perm = self._v
        n = g.shape[0]
        return (g[:, :, None] * v[:, None, :]).reshape(n, -1).index_select(1, perm)

    def congruence(self, M: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_n Q_n^\top M_n Q_n` by one product with :math:`v \otimes v`, shape (d² + d, d² + d)."""
        _, perm = self._v
        n, d = self.x.shape
        S = (M.reshape(n, d * d).T @ self._vv).reshape(d, d, d + 1, d + 1)
        S = S.permute(0, 2, 1, 3).reshape(d * (d + 1), d * (d + 1))
        return S.index_select(0, perm).index_select(1, perm)


class AutodiffLinearization:
    r"""The :class:`Linearization` of any pure map :math:`y(w, x)` by ``torch.func``.

    :math:`Q` by ``jacfwd`` (computed once, on first use), the vjp by ``torch.func.vjp`` and the curvature
    :math:`\nabla^2_w \sum_{n,k} \lambda_{nk} y_k(w, x_n)` by ``torch.func.hessian``. A transformation without
    hand-coded derivatives can return it from ``linearize``:
    ``def linearize(self, w, x): return AutodiffLinearization(self, w, x)``.

    Parameters
    ----------
    fn
        The map ``fn(w, x) -> y`` (N, d), pure and ``torch.func``-friendly (a transformation itself).
    w, x
        Parameters (p,) and points (N, d).
    """

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], w: torch.Tensor,
                 x: torch.Tensor) -> None:
        self.fn, self.w, self.x = fn, w, x
        self.y = fn(w, x)
        self._Q: torch.Tensor | None = None

    def _map(self, v: torch.Tensor) -> torch.Tensor:
        return self.fn(v, self.x)

    def vjp(self, cotangent: torch.Tensor) -> torch.Tensor:
        """:math:`\\sum_n Q_n^\\top \\lambda_n` by reverse-mode AD, shape (p,)."""
        return vjp(self._map, self.w)[1](cotangent)[0]

    def jacobian(self) -> torch.Tensor:
        """``Q`` (N, d, p) by forward-mode AD."""
        if self._Q is None:
            self._Q = jacfwd(self._map)(self.w)
        return self._Q

    def jacobian_and_curvature(self, cotangent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Q, C)`` with the curvature by ``torch.func.hessian`` of :math:`\\lambda \\cdot y`."""
        lam = cotangent.detach()
        return self.jacobian(), hessian(lambda v: torch.sum(lam * self._map(v)))(self.w)

    def contract(self, g: torch.Tensor) -> torch.Tensor:
        """Rows :math:`g_n^\\top Q_n`, shape (N, p)."""
        return _pointwise.contract(g, self.jacobian())

    def congruence(self, M: torch.Tensor) -> torch.Tensor:
        """:math:`\\sum_n Q_n^\\top M_n Q_n`, shape (p, p)."""
        return _pointwise.congruence(M, self.jacobian())


def affine_from_geometry(angle_deg: float = 0.0, scale: float | Sequence[float] = 1.0,
                         shift: Sequence[float] = (0.0, 0.0), center: Sequence[float] = (0.0, 0.0),
                         dtype: torch.dtype = DEFAULT_DTYPE) -> torch.Tensor:
    r"""2D affine parameters for :math:`y(x) = R S (x - c) + c + s`.

    ``R`` rotates by ``angle_deg`` (counter-clockwise), ``S = diag(scale)``, ``c`` is the centre and ``s`` the
    shift. Returns ``w = [A11, A12, A21, A22, b1, b2]``.
    """
    sx, sy = (scale, scale) if isinstance(scale, (int, float)) else tuple(scale)
    a = math.radians(angle_deg)
    R = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=dtype)
    A = R @ torch.diag(torch.tensor([sx, sy], dtype=dtype))
    c = torch.tensor(center, dtype=dtype)
    b = c - A @ c + torch.tensor(shift, dtype=dtype)
    return torch.cat([A.reshape(-1), b])
