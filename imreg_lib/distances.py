r"""Distance measures as blocks ``(value, derivatives)`` of the residual.

The paper uses the sum of squared differences weighted by the cell volume :math:`h = \prod_k h_k`,

.. math::  D(r) = h\, \| r \|_2^2, \qquad r = T_y - R

(no factor ½), with :math:`T_y` the template at the transformed cell centres and :math:`R` the reference there.
:func:`ssd` is the value alone (a pure function, ``torch.func``-friendly); :func:`ssd_block` returns, in the
manner of a plug-in block ``[D, dD, d2D] = distance(r)``, the value with its derivatives in :math:`r`:

.. math::
    \frac{\partial D}{\partial r} = 2h\, r, \qquad \frac{\partial^2 D}{\partial r^2} = 2h\, I.

An objective :math:`J(w) = D(r(w))` composes them with the residual's Jacobian :math:`J_r = \partial r /
\partial w`: :math:`\nabla J = J_r^\top \partial D/\partial r` and the Gauss-Newton matrix :math:`J_r^\top
(\partial^2 D / \partial r^2) J_r`.

**Mean squares over the overlap** (the metric of SimpleITK's ``SetMetricAsMeanSquares``): when the transformed
points :math:`y_n` leave the template's domain, the SSD compares the reference there with the template's zero
background, so a motion that moves part of the image out of view is not the SSD's minimiser. Weighting each point
by a smooth indicator :math:`m_n = m(y_n)` of the template's domain (:func:`overlap_block`) and normalising by the
overlap,

.. math::  D(r, m) = V \frac{\sum_n m_n r_n^2}{\sum_n m_n}, \qquad V = N h,

counts only the points that land inside; :func:`overlap_ssd_block` gives its derivatives in :math:`r` and
:math:`m` (with :math:`m \equiv 1` it is the SSD).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

__all__ = ["DistanceDerivatives", "OverlapDerivatives", "overlap_block", "overlap_ssd", "overlap_ssd_block", "ssd",
           "ssd_block"]


class DistanceDerivatives(NamedTuple):
    r"""A distance and its derivatives in the residual :math:`r`.

    Attributes
    ----------
    value
        :math:`D(r)`, a scalar tensor.
    gradient
        :math:`\partial D / \partial r`, the shape of ``r``.
    hessian
        The factor :math:`c` of the Hessian :math:`\partial^2 D / \partial r^2 = c\, I` (the Gauss-Newton matrix
        of an objective is :math:`c\, J_r^\top J_r`).
    """

    value: torch.Tensor
    gradient: torch.Tensor
    hessian: float


def ssd(residual: torch.Tensor, cell_volume: float) -> torch.Tensor:
    r""":math:`D(r) = h \|r\|^2`, the sum of squared differences weighted by the cell volume.

    Parameters
    ----------
    residual
        :math:`r = T(y(x_c)) - R(x_c)` on the cell centres (any shape).
    cell_volume
        :math:`h = \prod_k h_k`.

    Returns
    -------
    torch.Tensor
        The scalar :math:`h \sum_i r_i^2`.
    """
    return cell_volume * torch.sum(residual * residual)


def ssd_block(residual: torch.Tensor, cell_volume: float) -> DistanceDerivatives:
    r"""The SSD block: :math:`(D, \partial D / \partial r, c)` with :math:`D = h \|r\|^2`,
    :math:`\partial D / \partial r = 2h\, r` and :math:`\partial^2 D / \partial r^2 = c\, I`, :math:`c = 2h`.

    The value is :func:`ssd`'s (the same arithmetic, so that an objective's value from its derivatives equals its
    loss exactly). The Hessian in :math:`r` is exact, not an approximation: :math:`D` is quadratic.

    Parameters
    ----------
    residual
        :math:`r` on the cell centres (any shape).
    cell_volume
        :math:`h = \prod_k h_k`.

    Returns
    -------
    DistanceDerivatives
        ``(value, gradient, hessian)``; unpack as ``D, dD, d2D = ssd_block(r, h)``.
    """
    c = 2.0 * cell_volume
    return DistanceDerivatives(ssd(residual, cell_volume), c * residual, c)


#: Width of the overlap weight's ramp at the template's border, in cells of the template's grid.
OVERLAP_RAMP_CELLS = 2.0


def _smoothstep(u: torch.Tensor, orders: int) -> list[torch.Tensor]:
    r"""The quintic :math:`s(u) = 6u^5 - 15u^4 + 10u^3` on :math:`[0, 1]` (0 below, 1 above; twice continuously
    differentiable) and its first ``orders`` derivatives :math:`s' = 30 u^2 (1-u)^2`,
    :math:`s'' = 60\, u (1-u)(1-2u)`."""
    u = u.clamp(0.0, 1.0)
    out = [u * u * u * (10.0 + u * (6.0 * u - 15.0))]
    if orders >= 1:
        v = u * (1.0 - u)
        out.append(30.0 * v * v)
        if orders >= 2:
            out.append(60.0 * v * (1.0 - 2.0 * u))
    return out


def _others(d: int, skip: int, device: torch.device) -> torch.Tensor:
    """Index (d, ..., d - skip) of the dimensions other than ``skip`` given ones (``skip`` = 1 or 2)."""
    if skip == 1:
        rows = [[j for j in range(d) if j != k] for k in range(d)]
    else:
        rows = [[[i for i in range(d) if i not in (k, j)][: d - 2] for j in range(d)]  # k = j: unused
                for k in range(d)]
    return torch.tensor(rows, dtype=torch.long, device=device)


def overlap_block(y: torch.Tensor, omega: Sequence[float], ramp: Sequence[float], orders: int = 2,
                  ) -> list[torch.Tensor]:
    r"""The overlap weight :math:`m(y)` at points ``y`` and its derivatives: 1 at least ``ramp`` inside the domain,
    0 outside it, a smooth ramp between.

    .. math::
        m(y) = \prod_k f_k(y_k), \qquad f_k(t) = s\Big(\frac{t - a_k}{\delta_k}\Big)\,
        s\Big(\frac{b_k - t}{\delta_k}\Big),

    with :math:`[a_k, b_k]` the domain, :math:`\delta_k` the ramp and :math:`s` the quintic smoothstep, so that
    :math:`m` is twice continuously differentiable (a Newton method sees no jump in its Hessian when a point
    crosses the ramp): :math:`\partial_k m = f_k' \prod_{j \ne k} f_j`, :math:`\partial_{kk} m = f_k''
    \prod_{j \ne k} f_j` and :math:`\partial_{kl} m = f_k' f_l' \prod_{j \ne k, l} f_j`.

    Parameters
    ----------
    y
        Points, shape (N, d).
    omega
        The domain ``(a_1, b_1, ..., a_d, b_d)``.
    ramp
        :math:`\delta_k` per dimension (positive).
    orders
        0, 1 or 2: return ``[m]``, ``[m, ∇m]`` or ``[m, ∇m, ∇²m]`` with shapes (N,), (N, d), (N, d, d).
    """
    d = y.shape[-1]
    a = torch.tensor(omega[0::2], dtype=y.dtype, device=y.device)
    b = torch.tensor(omega[1::2], dtype=y.dtype, device=y.device)
    delta = torch.tensor(tuple(ramp), dtype=y.dtype, device=y.device)
    s = _smoothstep(torch.cat([y - a, b - y], dim=-1) / torch.cat([delta, delta]), orders)
    lo, hi = [v[..., :d] for v in s], [v[..., d:] for v in s]
    f = lo[0] * hi[0]  # (N, d)
    m = torch.prod(f, dim=-1)
    if orders == 0:
        return [m]
    rest = torch.prod(f[:, _others(d, 1, y.device)], dim=-1)  # prod_{j != k} f_j, (N, d)
    f1 = (lo[1] * hi[0] - lo[0] * hi[1]) / delta
    dm = f1 * rest
    if orders == 1:
        return [m, dm]
    f2 = (lo[2] * hi[0] - 2.0 * lo[1] * hi[1] + lo[0] * hi[2]) / (delta * delta)
    off = f1[:, :, None] * f1[:, None, :]
    if d > 2:
        off = off * torch.prod(f[:, _others(d, 2, y.device)], dim=-1)
    eye = torch.eye(d, dtype=torch.bool, device=y.device)
    d2m = torch.where(eye, torch.diag_embed(f2 * rest), off)
    return [m, dm, d2m]


def overlap_ssd(residual: torch.Tensor, weight: torch.Tensor, volume: float) -> torch.Tensor:
    r""":math:`D(r, m) = V \sum_n m_n r_n^2 / \sum_n m_n`: mean squares over the overlap, times the domain's volume
    :math:`V` (so that it is the SSD when every weight is 1); :math:`+\infty` when no point overlaps."""
    M = torch.sum(weight)
    S = torch.sum(weight * residual * residual)
    return torch.where(M > 0, volume * S / torch.where(M > 0, M, torch.ones_like(M)), torch.full_like(M, math.inf))


class OverlapDerivatives(NamedTuple):
    r""":func:`overlap_ssd_block`'s value and derivatives.

    Attributes
    ----------
    value
        :math:`D`, a scalar tensor (:math:`+\infty` without overlap).
    d_residual, d_weight
        :math:`\partial D / \partial r_n = 2 V m_n r_n / M` and :math:`\partial D / \partial m_n = (V r_n^2 - D) / M`
        with :math:`M = \sum_n m_n`.
    weight_sum
        :math:`M`.
    """

    value: torch.Tensor
    d_residual: torch.Tensor
    d_weight: torch.Tensor
    weight_sum: torch.Tensor


def overlap_ssd_block(residual: torch.Tensor, weight: torch.Tensor, volume: float) -> OverlapDerivatives:
    r"""Mean squares over the overlap with its first derivatives in :math:`r` and :math:`m` (see
    :class:`OverlapDerivatives`).

    The second derivatives are structured and need no storage: :math:`\partial^2 D / \partial r_n^2 = 2 V m_n / M`,
    :math:`\partial^2 D / \partial r_n \partial m_k = 2 V r_n (\delta_{nk} - m_n / M) / M` and
    :math:`\partial^2 D / \partial m_n \partial m_k = -(\partial_{m_n} D + \partial_{m_k} D) / M`; an objective
    composing them with :math:`a_n = \partial r_n / \partial w` and :math:`b_n = \partial m_n / \partial w` has the
    Hessian part

    .. math::
        \frac{2V}{M} \sum_n \big(m_n a_n a_n^\top + r_n (a_n b_n^\top + b_n a_n^\top)\big)
        - \frac{1}{M}\big(\nabla D\, \nabla M^\top + \nabla M\, \nabla D^\top\big),
        \qquad \nabla M = \sum_n b_n

    (see :meth:`imreg_lib.ScaleObjective.derivatives`).
    """
    value = overlap_ssd(residual, weight, volume)
    M = torch.sum(weight)
    safe = torch.where(M > 0, M, torch.ones_like(M))
    dr = (2.0 * volume / safe) * weight * residual
    dm = (volume * residual * residual - value) / safe
    return OverlapDerivatives(value, dr, dm, M)
