r"""Cubic B-spline image model with the scale parameter :math:`\theta` (paper §2.1).

Model
-----
Per dimension, with the *unnormalised* cubic B-spline

.. math::
    \beta(s) = \begin{cases} 4 - 6s^2 + 3|s|^3 & |s| \le 1 \\ (2 - |s|)^3 & 1 \le |s| \le 2 \\
    0 & \text{otherwise,} \end{cases}

an image is :math:`T(x) = \sum_k c_k \prod_d \beta(\xi_d - k_d)` with index coordinates
:math:`\xi_d = (x_d - \omega_{2d}) / h_d - \tfrac12` (cell centres sit at :math:`\xi = 0, \dots, m-1`).
The coefficients solve, along every dimension,

.. math::
    \min_c \|B c - t\|^2 + \theta\, c^\top P c \quad\Longleftrightarrow\quad
    (B^\top B + \theta P)\, c = B^\top t,

with :math:`B = \mathrm{tridiag}(1, 4, 1)` and FAIR's "moments" matrix :math:`P` (offsets 0: 96, ±1: −54,
±3: 6), so :math:`\theta` weights a curvature penalty: :math:`\theta = 0` interpolates, large
:math:`\theta` smooths (the scale space of Fig. 1).

Scale and smoothing
-------------------
The spline model smooths the data at scale :math:`\theta` with the transfer function (per dimension, frequency
:math:`\omega` in radians per cell)

.. math::
    H_\theta(\omega) = \frac{\hat B(\omega)^2}{\hat B(\omega)^2 + \theta \hat P(\omega)}, \qquad
    \hat B = 4 + 2\cos\omega,\quad \hat P = 96 - 108\cos\omega + 12\cos 3\omega ,

so :math:`H_\theta \approx 1 / (1 + \theta\omega^4)` at low frequencies (:math:`\hat P/\hat B^2 = \omega^4 +
O(\omega^6)`). A Gaussian of standard deviation :math:`\sigma` cells has :math:`e^{-\sigma^2\omega^2/2}`. Matching
the frequency where each halves the signal gives :func:`sigma_for_theta`; roughly
:math:`\sigma \approx \sqrt{2\ln 2}\,\theta^{1/4}`.

Implementation
--------------
* **θ in closed form.** With :math:`B^\top B = L L^\top` and :math:`L^{-1} P L^{-\top} = V \Lambda V^\top`,
  :math:`(B^\top B + \theta P)^{-1} = U\, \mathrm{diag}\big(1 / (1 + \theta\lambda)\big)\, U^\top` with
  :math:`U = L^{-\top} V`. The data are transformed once, :math:`\hat t = t \times_d (B_d U_d)^\top`
  (mode products), and the coefficients at any :math:`\theta` are two small matrix products,
  exactly differentiable in :math:`\theta` to any order (:math:`dc/d\theta` included) and linear in the data.
* **Evaluation** gathers the :math:`4^d` neighbouring coefficients of each point and weights them with the
  four cubic pieces (fixed polynomials of the fractional index :math:`t \in [0, 1)`), one axis at a time with the
  points along the last axis, so that each step is an elementwise product and a sum vectorised over the points
  (:func:`_contract`; a batched product of one 4 × 4 matrix per point took three to four times longer). It is
  written in pure tensor operations, so ``grad``, ``jacrev``, ``jacfwd``, ``hessian``, ``jvp``, ``vmap`` and all their
  compositions work (no ``grid_sample``, which has neither forward-mode AD nor a double backward).
  :func:`spline_derivatives` returns :math:`T`, :math:`\nabla T` and :math:`\nabla^2 T` from **one** gather
  (FAIR's ``[Tc, dT]``, continued to second order), which the objective composes with AD derivatives of
  the transformation for cheap exact Hessians. (A custom ``torch.autograd.Function`` with analytic rules
  was tried and dropped: under generic transforms it was no faster at these sizes, and torch.func's nested
  forward mode silently drops the outer tangent of a custom ``jvp`` rule, so ``jacfwd(jacfwd(...))`` was
  wrong. The tests check every composition.)
* **Valid window.** Outside :math:`-2 < \xi_d < m_d` (``window="paper"``, the authors' asymmetric window)
  or :math:`-1 < \xi_d < m_d` (``window="fair"``, FAIR's) the image is exactly 0 with zero derivative.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from . import _checks
from ._torch import fast_paths_enabled, is_grad_traced, is_traced, untraced, untraced_function
from .grid import Grid

__all__ = [
    "WINDOWS",
    "SplineImage",
    "SplineWeights",
    "spline_basis_matrices",
    "spline_coefficients",
    "spline_derivatives",
    "spline_evaluate",
    "spline_gradients",
    "sigma_for_theta",
    "theta_for_sigma",
    "transfer",
    "spline_weights",
]

#: Lower bound of the valid window in index coordinates xi (the upper bound is always m).
WINDOWS: dict[str, int] = {"paper": -2, "fair": -1}


# ------------------------------------------------------------------------------------------------
# One-dimensional matrices and the closed-form theta dependence
# ------------------------------------------------------------------------------------------------
def spline_basis_matrices(m: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(B, P)`` for ``m`` cells: ``B = tridiag(1, 4, 1)`` and the moments matrix ``P``."""
    if not isinstance(m, int) or m < 1:
        raise ValueError(f"m must be a positive integer, got {m!r}")
    B = 4.0 * torch.eye(m, dtype=dtype)
    P = 96.0 * torch.eye(m, dtype=dtype)
    for k, (b, p) in {1: (1.0, -54.0), 3: (0.0, 6.0)}.items():
        if k < m:
            off = torch.ones(m - k, dtype=dtype)
            B += b * (torch.diag(off, k) + torch.diag(off, -k))
            P += p * (torch.diag(off, k) + torch.diag(off, -k))
    return B, P


@functools.lru_cache(maxsize=64)
@untraced_function
def _basis_1d(m: int, device: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(U, W, lam)`` with ``(BᵀB + θP)⁻¹ = U diag(1/(1+θ lam)) Uᵀ`` and ``W = B U``.

    Computed once per (m, device, dtype) in float64 on the CPU.
    """
    B, P = spline_basis_matrices(m, torch.float64)
    L = torch.linalg.cholesky(B.T @ B)
    Linv = torch.linalg.solve_triangular(L, torch.eye(m, dtype=torch.float64), upper=False)
    S = Linv @ P @ Linv.T
    lam, V = torch.linalg.eigh(0.5 * (S + S.T))
    lam = lam.clamp_min(0.0)  # P is positive semi-definite; remove round-off negatives
    U = Linv.T @ V
    W = B @ U
    return tuple(a.to(device=device, dtype=dtype) for a in (U, W, lam))


def _mode_product(X: torch.Tensor, M: torch.Tensor, axis: int) -> torch.Tensor:
    """``X ×_axis M``: apply the matrix ``M`` along ``axis`` of ``X``."""
    return torch.movedim(torch.tensordot(M, X, dims=([1], [axis])), 0, axis)


def _check_theta(theta) -> None:
    if isinstance(theta, torch.Tensor):
        if theta.numel() != 1:
            raise ValueError(f"theta must be a scalar, got a tensor of shape {tuple(theta.shape)}")
        return  # values of traced tensors cannot be inspected; checked where they are concrete
    _checks.positive_number("theta", theta, allow_zero=True)


def _spectral(data: torch.Tensor) -> torch.Tensor:
    """``t̂ = t ×_d (B_d U_d)ᵀ``: the data in the theta-diagonal basis."""
    X = data
    for axis, m in enumerate(data.shape):
        _, W, _ = _basis_1d(m, str(data.device), data.dtype)
        X = _mode_product(X, W.T, axis)
    return X


def _from_spectral(X: torch.Tensor, theta) -> torch.Tensor:
    """Coefficients ``c(θ) = (t̂ ⊙ ⊗_d 1/(1+θλ_d)) ×_d U_d``."""
    for axis, m in enumerate(X.shape):
        U, _, lam = _basis_1d(m, str(X.device), X.dtype)
        shape = [1] * X.dim()
        shape[axis] = m
        X = _mode_product(X / (1.0 + theta * lam).reshape(shape), U, axis)
    return X


@functools.lru_cache(maxsize=8)
def _theta_rates(m: tuple[int, ...], thetas: tuple[float, ...], device: str, dtype: torch.dtype) -> torch.Tensor:
    r"""The θ-derivative of the spectral filter at each θ, shape ``(K,) + m``: with :math:`f_d = 1/(1+\theta
    \lambda_d)`, :math:`\frac{d}{d\theta}\prod_d f_d = \prod_d f_d \sum_d \big(-\lambda_d f_d\big)`. The outer
    products of these short vectors are formed in NumPy (float64) and moved once, and kept for the next image
    of the same shape and schedule (the reference's after the template's)."""
    th = np.asarray(thetas, dtype=np.float64)[:, None]
    filt = rate = np.zeros((len(thetas),) + (1,) * len(m))
    for axis, k in enumerate(m):
        lam = _basis_1d(k, "cpu", torch.float64)[2].numpy()
        f = 1.0 / (1.0 + th * lam)  # (K, m_axis)
        shape = (len(thetas),) + tuple(k if a == axis else 1 for a in range(len(m)))
        filt = f.reshape(shape) if axis == 0 else filt * f.reshape(shape)
        rate = rate - (lam * f).reshape(shape)
    return torch.as_tensor(filt * rate, dtype=dtype, device=device)


def _theta_derivatives(X: torch.Tensor, thetas: tuple[float, ...], basis: int) -> torch.Tensor:
    r"""``(t̂ ⊙ d/dθ ⊗_d f_d) ×_d M_d`` at each θ, shape ``(K,) + m``, with :math:`M_d = U_d` (``basis=0``:
    :math:`dc/d\theta`) or :math:`M_d = W_d = B_d U_d` (``basis=1``: the θ-derivative of the values at the cell
    centres): one product with the rates (:func:`_theta_rates`) and one pass of mode products, as for :math:`c`."""
    device = str(X.device)
    mats = [_basis_1d(k, device, X.dtype)[basis] for k in X.shape]
    Y = X * _theta_rates(tuple(X.shape), thetas, device, X.dtype)
    if X.dim() == 2:
        return mats[0] @ Y @ mats[1].T
    for axis, M in enumerate(mats):
        Y = _mode_product(Y, M, axis + 1)
    return Y


def spline_coefficients(data: torch.Tensor, theta: float | torch.Tensor = 0.0) -> torch.Tensor:
    r"""Spline coefficients of ``data`` (values at cell centres) at scale ``theta``.

    Solves :math:`(B^\top B + \theta P) c = B^\top t` along every dimension. Linear in
    ``data``; exactly differentiable in ``theta`` (pass a tensor) under every ``torch.func`` transform.

    Parameters
    ----------
    data
        Image values, shape ``m`` (2 or 3 dimensions).
    theta
        Non-negative scale; 0 gives interpolation.
    """
    if not isinstance(data, torch.Tensor) or data.dim() not in (2, 3):
        raise ValueError("data must be a 2D or 3D tensor of image values at cell centres")
    _check_theta(theta)
    return _from_spectral(_spectral(data), theta)


# ------------------------------------------------------------------------------------------------
# The weighting kernel: derivatives of sum_a G[a] prod_j beta(t_j - a_j) for gathered coefficients G
# ------------------------------------------------------------------------------------------------
# Rows: neighbour offsets -1, 0, 1, 2; columns: coefficients of t^0..t^3 of beta(t - offset), t in [0, 1).
_CUBIC_PIECES = ((1.0, -3.0, 3.0, -1.0), (4.0, 0.0, -6.0, 3.0), (1.0, 3.0, 3.0, -3.0), (0.0, 0.0, 0.0, 1.0))


@functools.lru_cache(maxsize=32)
@untraced_function
def _piece_derivatives(max_order: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    """``C[p, a, q]``: coefficient of ``t^q`` in the ``p``-th derivative of piece ``a``, p = 0..max_order."""
    C = torch.zeros(max_order + 1, 4, 4, dtype=torch.float64)
    for p in range(min(max_order, 3) + 1):  # the fourth derivative of a cubic vanishes
        for a in range(4):
            for q in range(4 - p):
                C[p, a, q] = _CUBIC_PIECES[a][q + p] * math.perm(q + p, p)
    return C.to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=64)
@untraced_function
def _order_rows(dim: int, order: int, table: int, device: str) -> torch.Tensor:
    """Where the entries of the order-``order`` derivative tensor (``dim**order`` multi-indices, row-major) sit
    among the ``table**dim`` mixed partials of :func:`_contract` (orders 0..table-1 per axis, axis 0 the most
    significant)."""
    rows = []
    for alpha in itertools.product(range(dim), repeat=order):
        rows.append(sum(alpha.count(j) * table ** (dim - 1 - j) for j in range(dim)))
    return torch.tensor(rows, device=device)


#: On the CPU the contraction of :func:`_contract` runs over blocks of points whose largest temporary holds about
#: this many numbers (8 MiB in float64): it stays in cache, where one pass over a 3D image's points would not
#: (3.6 times slower at 172,032 points). A GPU takes all points at once.
_BLOCK_NUMBERS = 2**20


def _contract(G: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    r"""The mixed partials of the spline at located points from their gathered neighbouring coefficients.

    With :math:`G_{a_0 \dots a_{d-1}, n}` the coefficient of neighbour :math:`a` of point :math:`n` and
    :math:`W_{j, p, a, n}` the :math:`p`-th derivative of neighbour :math:`a`'s cubic weight along axis :math:`j` at
    that point (:class:`_Points`),

    .. math::
        D_{p_0 \dots p_{d-1}, n} = \sum_{a_0} W_{0, p_0, a_0, n} \cdots \sum_{a_{d-1}} W_{d-1, p_{d-1}, a_{d-1}, n}\,
        G_{a_0 \dots a_{d-1}, n},

    the last axis first. The points run along the innermost axis, so every step is one elementwise product and
    one sum over a neighbour axis, vectorised over the points (a batched matrix product of one tiny matrix per
    point costs several times more here).

    Parameters
    ----------
    G
        ``lead + (4^d, N)``: the neighbours of each point, ``lead`` any batch shape (several coefficient arrays).
    W
        ``(d, K, 4, N)``: the per-axis weights and their derivatives up to order ``K - 1``.

    Returns
    -------
    torch.Tensor
        ``lead + (K^d, N)``, the partial of orders :math:`(p_0, \dots, p_{d-1})` at row
        :math:`\sum_j p_j K^{d-1-j}`, in index units.
    """
    d, K, _, n = W.shape
    block = max(1, _BLOCK_NUMBERS // (4**d * K))
    if n > block and G.device.type == "cpu":
        return torch.cat([_contract(G[..., i:i + block], W[..., i:i + block]) for i in range(0, n, block)], dim=-1)
    lead = G.shape[:-2]
    D = G.reshape(lead + (4 ** (d - 1), 4, 1, n))  # (neighbours a_0 .. a_{d-2}, a_{d-1}, orders so far, N)
    for j in range(d - 1, -1, -1):  # a_j -> p_j: (4^j, 4, R, N) -> (4^j, K, R, N), R = K^(d-1-j)
        D = (D.unsqueeze(-4) * W[j][:, :, None, :]).sum(-3)
        if j:
            D = D.reshape(lead + (4 ** (j - 1), 4, K ** (d - j), n))
    return D.reshape(lead + (K**d, n))


# ------------------------------------------------------------------------------------------------
# Evaluation at points
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    lower: torch.Tensor
    h: torch.Tensor
    upper_index: torch.Tensor  # m as a tensor
    last_cell: torch.Tensor  # m - 1, the highest cell a point is based in (the upper end of the window)
    offsets: torch.Tensor  # flat offsets of the 4^d neighbours in the padded array
    strides: torch.Tensor
    padded_shape: tuple[int, ...]


@functools.lru_cache(maxsize=64)
@untraced_function
def _layout(grid: Grid, device: str, dtype: torch.dtype) -> _Layout:
    padded = tuple(k + 5 for k in grid.m)  # 3 zeros below, 2 above: neighbours -3 .. m+1
    strides = [math.prod(padded[j + 1:]) for j in range(grid.dim)]
    offsets = [sum(a * s for a, s in zip(nb, strides, strict=True))
               for nb in itertools.product(range(4), repeat=grid.dim)]
    as_t = functools.partial(torch.tensor, device=device)
    return _Layout(as_t(grid.lower, dtype=dtype), as_t(grid.h, dtype=dtype), as_t(grid.m, dtype=dtype),
                   as_t([k - 1.0 for k in grid.m], dtype=dtype), as_t(offsets, dtype=torch.long),
                   as_t(strides, dtype=torch.long), padded)


def _locate(x: torch.Tensor, grid: Grid, window: str):
    """Where the points ``x`` sit among the cells: ``(layout, valid, t, corner)`` with ``valid`` the window mask,
    ``t`` the local coordinates in [0, 1) per dimension and ``corner`` the flat index of each point's first
    neighbour in the coefficient array padded by (3, 2) per dimension (its 4^d neighbours are ``corner +
    layout.offsets``)."""
    lay = _layout(grid, str(x.device), x.dtype)
    xi = (x - lay.lower) / lay.h - 0.5
    valid = ((xi > WINDOWS[window]) & (xi < lay.upper_index)).all(dim=-1)
    base = torch.minimum(torch.floor(xi).clamp_min(-2.0), lay.last_cell)
    t = xi - base
    corner = ((base.long() + 2) * lay.strides).sum(-1)
    return lay, valid, t, corner


@dataclass(frozen=True, eq=False)
class _Points:
    """Points located among a grid's cells with their per-axis kernel weights: all that evaluations of any
    coefficients at the same points share (:func:`_points`). The points run along the last axis of each tensor
    (:func:`_contract`)."""

    grid: Grid
    mask: torch.Tensor  #: (N,): 1 inside the valid window, 0 outside
    index: torch.Tensor  #: (4^d, N): the neighbours in the flattened coefficients padded by (3, 2) per axis
    weights: torch.Tensor  #: (d, K, 4, N): the p-th derivative (p < K) of neighbour a's weight along axis j
    h: torch.Tensor  #: (d,) cell widths, for derivatives in physical units


def _points(x: torch.Tensor, grid: Grid, window: str, max_order: int) -> _Points:
    """Locate ``x`` (N, d) on ``grid`` and weigh its neighbours for derivatives up to ``max_order``."""
    _checks.one_of("window", window, WINDOWS)
    if x.dim() != 2 or x.shape[-1] != grid.dim:
        raise ValueError(f"x must have shape (N, {grid.dim}), got {tuple(x.shape)}")
    lay, valid, t, corner = _locate(x, grid, window)
    C = _piece_derivatives(max_order, str(t.device), t.dtype)  # (K, 4 neighbours, 4 powers)
    t = t.T  # (d, N)
    t2 = t * t
    tpow = torch.stack([torch.ones_like(t), t, t2, t2 * t], dim=1)  # (d, 4 powers, N)
    W = torch.matmul(C.reshape(-1, 4), tpow).reshape(grid.dim, C.shape[0], 4, -1)  # (d, K, 4, N)
    return _Points(grid, valid.to(x.dtype), lay.offsets[:, None] + corner, W, lay.h)


def _derivatives_at(coefficients: torch.Tensor, points: _Points, orders: tuple[int, ...]) -> list[torch.Tensor]:
    """:func:`spline_derivatives` at located points (``points.weights`` must reach ``max(orders)``)."""
    grid = points.grid
    if tuple(coefficients.shape) != grid.m:
        raise ValueError(f"coefficients must have shape {grid.m}, got {tuple(coefficients.shape)}")
    flat = torch.nn.functional.pad(coefficients, (3, 2) * grid.dim).reshape(-1)
    index = points.index
    # (4^d, N) neighbouring coefficients; ``take`` is faster, but has no batching rule for ``vmap``
    G = flat[index] if is_traced(flat) or is_traced(index) else flat.take(index)
    W = points.weights
    K = max(orders) + 1
    D = _contract(G, W if W.shape[1] == K else W[:, :K])  # (K^d, N) mixed partials
    n, d = D.shape[-1], grid.dim
    outs = []
    for k in orders:
        out = D[0] if k == 0 else D.index_select(0, _order_rows(d, k, K, str(D.device))).T.reshape((n,) + (d,) * k)
        out = out * points.mask.reshape((-1,) + (1,) * k)
        for j in range(k):  # index units -> physical units: one factor 1/h per derivative axis
            shape = [1] * (k + 1)
            shape[j + 1] = grid.dim
            out = out / points.h.reshape(shape)
        outs.append(out)
    return outs


def _evaluate(coefficients: torch.Tensor, x: torch.Tensor, grid: Grid, orders: tuple[int, ...],
              window: str) -> list[torch.Tensor]:
    if not orders or any(not isinstance(k, int) or k < 0 for k in orders):
        raise ValueError(f"order must be a non-negative integer (or a tuple of them), got {orders!r}")
    return _derivatives_at(coefficients, _points(x, grid, window, max(orders)), orders)


def spline_evaluate(coefficients: torch.Tensor, x: torch.Tensor, grid: Grid, *, order: int = 0,
                    window: str = "paper") -> torch.Tensor:
    r"""Evaluate the spline with ``coefficients`` on ``grid`` (or one of its derivatives) at points ``x``.

    Parameters
    ----------
    coefficients
        Shape ``grid.m`` (from :func:`spline_coefficients`).
    x
        Points in physical coordinates, shape ``(N, d)``.
    grid
        The grid the coefficients live on.
    order
        0 for values ``(N,)``; 1 for the gradient ``(N, d)``; 2 for the Hessian ``(N, d, d)``; ...
        (derivatives with respect to physical ``x``; all orders above 3 vanish).
    window
        ``"paper"`` (valid for :math:`-2 < \xi < m`) or ``"fair"`` (:math:`-1 < \xi < m`).

    Returns
    -------
    torch.Tensor
        Linear in ``coefficients`` and differentiable in ``x`` to any order, under every ``torch.func``
        transform (pure tensor operations: a gather and polynomial weights).
    """
    return _evaluate(coefficients, x, grid, (order,), window)[0]


def spline_derivatives(coefficients: torch.Tensor, x: torch.Tensor, grid: Grid, *,
                       orders: tuple[int, ...] = (0, 1, 2), window: str = "paper") -> tuple[torch.Tensor, ...]:
    """Several derivative orders from **one** gather: e.g. ``(T, dT, d2T)`` with shapes ``(N,), (N, d),
    (N, d, d)``. This is FAIR's ``[Tc, dT]`` continued to second order; see :func:`spline_evaluate`."""
    return tuple(_evaluate(coefficients, x, grid, tuple(orders), window))



def spline_gradients(coefficients: torch.Tensor, x: torch.Tensor, grid: Grid, *, window: str = "paper",
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Values and gradients of **several** splines on one grid at the same points, from one gather.

    With the per-axis weights :math:`\beta(\xi_{n,j} - a)` and their derivatives built once for the points, every
    coefficient set :math:`c^{(s)}` costs one gather and one contraction per axis:
    :math:`T^{(s)}(x_n) = \sum_k \omega_{nk} c^{(s)}_k` and :math:`\nabla T^{(s)}(x_n) = \sum_k \nabla\omega_{nk}
    c^{(s)}_k` with :math:`\omega_{nk} = \prod_j \beta(\xi_{n,j} - k_j)`. The predictor's right-hand side uses it
    for :math:`dc/d\theta` at the corrector's points. Same window and values as :func:`spline_derivatives` (to
    round-off: the sums run in another order).

    Parameters
    ----------
    coefficients
        Shape ``(S,) + grid.m``: ``S`` coefficient arrays on ``grid``.
    x
        Points in physical coordinates, shape ``(N, d)``.
    grid, window
        As in :func:`spline_evaluate`.

    Returns
    -------
    tuple
        Values ``(S, N)`` and gradients ``(S, N, d)`` (physical units).
    """
    if coefficients.dim() != grid.dim + 1 or tuple(coefficients.shape[1:]) != grid.m:
        raise ValueError(f"coefficients must have shape (S,) + {grid.m}, got {tuple(coefficients.shape)}")
    return _gradients_at(coefficients, _points(x, grid, window, 1))


def _gradients_at(coefficients: torch.Tensor, points: _Points) -> tuple[torch.Tensor, torch.Tensor]:
    r""":func:`spline_gradients` at located points: one gather of the ``S`` coefficient arrays, then the
    neighbours' axes contracted one at a time, last axis first (:func:`_contract`), with the value and
    first-derivative weights along that axis: the :math:`2^d` mixed partials of order at most one per axis, of which
    the value and the gradient are kept."""
    return _padded_gradients_at(_pad(coefficients, points.grid.dim).reshape(-1), coefficients.shape[0], points)


def _pad(coefficients: torch.Tensor, dim: int) -> torch.Tensor:
    """Coefficients padded by (3, 2) zeros along each of their last ``dim`` axes: the layout that
    :attr:`_Points.index` addresses."""
    return torch.nn.functional.pad(coefficients, (3, 2) * dim)


def _padded_gradients_at(padded: torch.Tensor, S: int, points: _Points) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_gradients_at` of ``S`` coefficient arrays already padded (:func:`_pad`) and flattened into one
    vector ``padded``: a caller that evaluates the same coefficients often pads them once."""
    W, grid = points.weights, points.grid
    d = W.shape[0]
    device = str(W.device)
    index = points.index[None] if S == 1 else points.index + _set_offsets(S, padded.numel() // S, device)
    D = _contract(padded.take(index), W[:, :2])  # (S, 2^d, N): orders 0 or 1 per axis
    out = D.index_select(1, _gradient_channels(d, device)).transpose(1, 2)  # (S, N, 1 + d)
    out = out * (points.mask[:, None] * _gradient_scale(grid, device, W.dtype))
    return out[..., 0], out[..., 1:]  # (S, N), (S, N, d)


@functools.lru_cache(maxsize=16)
@untraced_function
def _set_offsets(S: int, size: int, device: str) -> torch.Tensor:
    """``(S, 1, 1)`` offsets of ``S`` stacked flattened arrays of ``size`` entries each."""
    return (torch.arange(S, device=device) * size).reshape(S, 1, 1)


@functools.lru_cache(maxsize=16)
@untraced_function
def _gradient_scale(grid: Grid, device: str, dtype: torch.dtype) -> torch.Tensor:
    """``(1, 1/h_0, ..., 1/h_{d-1})``: index units to physical units for a value and its gradient."""
    return torch.tensor((1.0,) + tuple(1.0 / h for h in grid.h), device=device, dtype=dtype)


@functools.lru_cache(maxsize=8)
def _gradient_channels(d: int, device: str) -> torch.Tensor:
    """Where the value and d/dx_0, ..., d/dx_{d-1} sit among the :math:`2^d` mixed partials (orders 0 or 1 per
    axis, axis 0 the most significant) of :func:`_gradients_at`."""
    return torch.tensor([0] + [2 ** (d - 1 - j) for j in range(d)], device=device)

# ------------------------------------------------------------------------------------------------
# The image model
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SplineImage:
    r"""An image as a continuous spline model :math:`T_\theta(x)` on ``grid``.

    The theta-independent part of the coefficient solve is done once per image; coefficients for a given
    float ``theta`` are cached, so repeated evaluations (losses, gradients, Hessians) do no solves.

    Parameters
    ----------
    data
        Values at the cell centres, shape ``grid.m``, on the paper's convention ``X[i, j]`` with ``i``
        along x and ``j`` along y (bottom to top).
    grid
        The grid of ``data``.
    window
        Valid window, ``"paper"`` or ``"fair"`` (see :data:`WINDOWS`).
    """

    data: torch.Tensor
    grid: Grid
    window: str = "paper"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.data, torch.Tensor) or not torch.is_floating_point(self.data):
            raise ValueError("data must be a floating-point torch.Tensor")
        if tuple(self.data.shape) != self.grid.m:
            raise ValueError(f"data has shape {tuple(self.data.shape)} but grid.m is {self.grid.m}")
        _checks.one_of("window", self.window, WINDOWS)

    @cached_property
    def spectral(self) -> torch.Tensor:
        """The data in the basis that diagonalises the theta dependence (computed once)."""
        if is_traced(self.data):
            return _spectral(self.data)
        with untraced():  # a cache must hold plain tensors, even if filled inside a transform
            return _spectral(self.data)

    def coefficients(self, theta: float | torch.Tensor = 0.0) -> torch.Tensor:
        """Spline coefficients at ``theta``; cached for numbers, differentiable for tensors."""
        _check_theta(theta)
        if isinstance(theta, torch.Tensor) or is_traced(self.data):
            return _from_spectral(self.spectral, theta)
        key = float(theta)
        if key not in self._cache:
            if len(self._cache) >= 128:
                self._cache.clear()
            with untraced():
                self._cache[key] = _from_spectral(self.spectral, key)
        return self._cache[key]

    def coefficients_theta_derivative(self, theta: float) -> torch.Tensor:
        r""":math:`dc/d\theta` at a number ``theta``, in closed form (no AD transform; agrees with ``jvp`` of
        :meth:`coefficients` to round-off, as a test asserts). Not cached; see :meth:`theta_derivatives`."""
        return self.theta_derivatives((theta,))[0]

    def values_theta_derivative(self, theta: float) -> torch.Tensor:
        r""":math:`dT_\theta(x_c)/d\theta` at the image's own cell centres, shape ``grid.m``, in closed form.

        At a cell centre the spline is :math:`B` applied along every axis (the pieces at :math:`t = 0` are
        1, 4, 1), and :math:`B_d U_d = W_d`, so the values are :math:`(\hat t \odot \otimes_d f_d) \times_d W_d`
        and their θ-derivative is :math:`(\hat t \odot \otimes_d f_d \odot \sum_d (-\lambda_d f_d)) \times_d W_d`:
        mode products, no evaluation at points. Not cached; see :meth:`theta_derivatives`.
        """
        return self.theta_derivatives((theta,), at="centres")[0]

    def theta_derivatives(self, thetas: Sequence[float], at: str = "coefficients") -> torch.Tensor:
        r"""The θ-derivatives of the coefficients (``at="coefficients"``, :math:`dc/d\theta`) or of the values at
        the cell centres (``at="centres"``) at several numbers ``thetas`` at once, shape ``(K,) + grid.m``: the
        closed forms of :meth:`coefficients_theta_derivative` and :meth:`values_theta_derivative`, batched over
        the scales (one elementwise product and one pass of mode products for all of them)."""
        _checks.one_of("at", at, ("coefficients", "centres"))
        thetas = tuple(float(t) for t in thetas)
        for theta in thetas:
            _check_theta(theta)
        with untraced():
            return _theta_derivatives(self.spectral, thetas, 0 if at == "coefficients" else 1)

    def __call__(self, x: torch.Tensor, theta: float | torch.Tensor = 0.0, order: int = 0) -> torch.Tensor:
        """Evaluate :math:`T_\\theta` (or its ``order``-th derivative) at points ``x`` of shape (N, d)."""
        return spline_evaluate(self.coefficients(theta), x, self.grid, order=order, window=self.window)

    def on_grid(self, theta: float | torch.Tensor = 0.0, grid: Grid | None = None) -> torch.Tensor:
        """Evaluate at the cell centres of ``grid`` (default: its own), returned with shape ``grid.m``."""
        grid = grid or self.grid
        x = grid.cell_centers(self.data.device, self.data.dtype)
        return self(x, theta).reshape(grid.m)

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype


# ------------------------------------------------------------------------------------------------
# The interpolation matrix in gather form (for linear operators that apply it and its transpose)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SplineWeights:
    r"""The sparse interpolation matrix :math:`W` with :math:`T(x_n) = \sum_k W_{nk} c_k`, in gather form.

    Row ``n`` has :math:`4^d` non-zeros, the weights :math:`\prod_d \beta(\xi_{n,d} - k_d)` (zero outside the
    valid window) at positions ``index[n]`` of the flattened coefficient array zero-padded by 3 below and 2
    above in every dimension. Built once for fixed points ``x`` (e.g. once per transformation :math:`y(w)`),
    it is applied to many coefficient arrays without recomputing the cubic weights:
    :meth:`apply` is :math:`c \mapsto Wc` (equal to :func:`spline_evaluate`) and :meth:`transpose` is the exact
    :math:`W^\top` (a scatter-add), so no AD is needed for adjoints.

    Two implementations, chosen per call:

    * **generic** (pure tensor ops: ``index_select`` and a weighted sum; ``index_add`` for the transpose):
      differentiable in the weights (hence in ``x``) and in the coefficients under every ``torch.func``
      transform and to any order. Used whenever the weights or the input are traced by a differentiating
      transform or require grad.
    * **sparse** (CSR matrix-vector products, built once from the weights): for constant weights on the CPU
      and inputs that are plain or only ``vmap``-batched (e.g. many right-hand sides at once). Several times
      faster; the same numbers up to summation order. ``with imreg_lib._torch.fast_paths(False):`` switches it
      off (with the other fast paths of the library).

    Attributes
    ----------
    index
        ``(N, 4^d)`` long tensor into the flattened padded coefficients.
    weights
        ``(N, 4^d)`` weights, zero for points outside the valid window.
    m
        Coefficient shape (``grid.m``).
    gradient
        ``(N, 4^d, d)`` weights of the spatial gradient, :math:`\partial W_{nk} / \partial x_{n,j}` (physical
        units), or ``None`` (see :func:`spline_weights`).
    """

    index: torch.Tensor
    weights: torch.Tensor
    m: tuple[int, ...]
    gradient: torch.Tensor | None = None
    _sparse: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def padded_shape(self) -> tuple[int, ...]:
        return tuple(k + 5 for k in self.m)

    def detach(self) -> SplineWeights:
        """The same matrix with the weights detached (no dependence on the points)."""
        g = None if self.gradient is None else self.gradient.detach()
        return SplineWeights(self.index, self.weights.detach(), self.m, g)

    def _use_sparse(self, x: torch.Tensor) -> bool:
        """Whether :meth:`apply` or :meth:`transpose` of ``x`` takes the CSR path (see the class docstring)."""
        w = self.weights
        return (fast_paths_enabled() and not (is_traced(w) or w.requires_grad or is_grad_traced(x))
                and w.device.type == "cpu")

    def sparse(self) -> dict[str, torch.Tensor]:
        r"""CSR matrices from the (plain) weights, built once: ``W`` (N × P, P the padded size) and ``WT``;
        with ``gradient``, also ``WG`` ((d+1)N × P: ``W`` stacked over the gradient weights
        :math:`\partial W / \partial x_j`, j = 1..d) and its transpose ``WGT``. Raises ``ValueError`` for
        traced weights."""
        if not self._sparse:
            if is_traced(self.weights) or self.weights.requires_grad:
                raise ValueError("sparse matrices need plain weights (detach them first)")
            with untraced(), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                n, k = self.weights.shape
                size = math.prod(self.padded_shape)
                flat = self.index.reshape(-1)
                self._sparse["W"], self._sparse["WT"] = _csr_pair(flat, self.weights.reshape(-1), n, size, k)
                if self.gradient is not None:
                    d = self.gradient.shape[-1]
                    vals = torch.cat([self.weights.reshape(-1), self.gradient.permute(2, 0, 1).reshape(-1)])
                    self._sparse["WG"], self._sparse["WGT"] = _csr_pair(flat.repeat(d + 1), vals, (d + 1) * n,
                                                                        size, k)
        return self._sparse

    def apply(self, coefficients: torch.Tensor) -> torch.Tensor:
        """:math:`Wc`, shape ``(N,)``, for coefficients of shape ``m``."""
        flat = torch.nn.functional.pad(coefficients, (3, 2) * len(self.m)).reshape(-1)
        if self._use_sparse(flat):
            return self.sparse()["W"] @ flat
        return (flat.index_select(0, self.index.reshape(-1)).reshape(self.weights.shape) * self.weights).sum(-1)

    def transpose(self, values: torch.Tensor) -> torch.Tensor:
        """:math:`W^\top v`, shape ``m``, for values of shape ``(N,)``."""
        if self._use_sparse(values):
            flat = self.sparse()["WT"] @ values
        else:
            contrib = (values[:, None] * self.weights).reshape(-1)
            zero = torch.zeros(math.prod(self.padded_shape), dtype=contrib.dtype, device=contrib.device)
            flat = zero.index_add(0, self.index.reshape(-1), contrib)
        return flat.reshape(self.padded_shape)[tuple(slice(3, 3 + k) for k in self.m)]


def _csr_pair(flat: torch.Tensor, values: torch.Tensor, n: int, size: int, k: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR ``M`` (n × size) with ``k`` entries per row (columns ``flat``, ascending within a row) and ``Mᵀ``."""
    dev = flat.device
    M = torch.sparse_csr_tensor(torch.arange(0, n * k + 1, k, device=dev), flat, values, (n, size),
                                check_invariants=False)
    order = torch.argsort(flat, stable=True)  # rows of Mᵀ; ties keep ascending row order
    rows = torch.arange(n, device=dev).repeat_interleave(k)[order]
    counts = torch.bincount(flat, minlength=size)
    crow = torch.cat([torch.zeros(1, dtype=torch.long, device=dev), torch.cumsum(counts, 0)])
    return M, torch.sparse_csr_tensor(crow, rows, values[order], (size, n), check_invariants=False)


def spline_weights(x: torch.Tensor, grid: Grid, *, window: str = "paper", gradient: bool = False) -> SplineWeights:
    r"""The interpolation matrix of the spline on ``grid`` at points ``x`` (shape ``(N, d)``), in gather form.

    ``spline_weights(x, grid).apply(c)`` equals ``spline_evaluate(c, x, grid)`` (same window, same cubic
    pieces); see :class:`SplineWeights`. With ``gradient=True`` the weights of the spatial gradient,
    :math:`\partial W_{nk} / \partial x_{n,j}` (shape ``(N, 4^d, d)``, physical units), come along, so that
    :math:`\nabla T(x_n) = \sum_k \partial_x W_{nk} c_k`.
    """
    _checks.one_of("window", window, WINDOWS)
    if x.dim() != 2 or x.shape[-1] != grid.dim:
        raise ValueError(f"x must have shape (N, {grid.dim}), got {tuple(x.shape)}")
    lay, valid, t, corner = _locate(x, grid, window)
    index = corner[:, None] + lay.offsets
    C = _piece_derivatives(1 if gradient else 0, str(x.device), x.dtype)  # (order, 4 neighbours, 4 powers)
    tpow = torch.stack([torch.ones_like(t), t, t * t, t * t * t], dim=-1)  # (N, d, 4)
    per_dim = torch.einsum("njq,paq->pnja", tpow, C)  # (order, N, d, 4): weight of neighbour a along dim j
    n, d = t.shape
    mask = valid.to(x.dtype)[:, None]

    def outer(factors):  # outer product over dimensions, first dimension slowest (the layout's offset order)
        out = factors[0]
        for f in factors[1:]:
            out = (out[:, :, None] * f[:, None, :]).reshape(n, -1)
        return out * mask

    weights = outer([per_dim[0, :, j] for j in range(d)])
    grad = None
    if gradient:  # d/dx_j: the derivative of the j-th factor, divided by h_j
        grad = torch.stack([outer([per_dim[1 if i == j else 0, :, i] for i in range(d)]) / lay.h[j]
                            for j in range(d)], dim=-1)
    return SplineWeights(index, weights, grid.m, grad)


# ------------------------------------------------------------------------------------------------
# Scale and smoothing: theta against a Gaussian's sigma
# ------------------------------------------------------------------------------------------------
_LN2 = math.log(2.0)


def transfer(theta: float, omega: float) -> float:
    r"""The spline's smoothing :math:`H_\theta(\omega)` at frequency ``omega`` (radians per cell), per dimension."""
    b = 4.0 + 2.0 * math.cos(omega)
    p = 96.0 - 108.0 * math.cos(omega) + 12.0 * math.cos(3.0 * omega)
    return b * b / (b * b + theta * p)


def sigma_for_theta(theta: float) -> float:
    r"""The Gaussian smoothing sigma (in cells) that halves the same frequency as the spline at scale ``theta``.

    Solves :math:`H_\theta(\omega_c) = 1/2` by bisection and returns :math:`\sigma = \sqrt{2\ln 2} / \omega_c`;
    0 where no frequency up to Nyquist (:math:`\omega = \pi`) is halved (:math:`\theta` below about 0.01: the
    spline hardly smooths).
    """
    theta = _checks.positive_number("theta", theta, allow_zero=True)
    if theta == 0 or transfer(theta, math.pi) > 0.5:
        return 0.0
    lo, hi = 1e-12, math.pi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if transfer(theta, mid) > 0.5:
            lo = mid
        else:
            hi = mid
    return math.sqrt(2.0 * _LN2) / (0.5 * (lo + hi))


def theta_for_sigma(sigma: float) -> float:
    """The inverse of :func:`sigma_for_theta`: the spline scale that smooths like a Gaussian of ``sigma`` cells."""
    sigma = _checks.positive_number("sigma", sigma, allow_zero=True)
    if sigma == 0:
        return 0.0
    lo, hi = 0.0, 1.0
    while sigma_for_theta(hi) < sigma:
        hi *= 10.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if sigma_for_theta(mid) < sigma:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
