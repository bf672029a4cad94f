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
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["DistanceDerivatives", "ssd", "ssd_block"]


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
