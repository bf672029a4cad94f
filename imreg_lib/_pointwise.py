r"""Point-wise products with a dense transformation Jacobian :math:`Q` of shape (N, d, p).

Points are independent: :math:`Q_n = \partial y(x_n) / \partial w` is a d × p block and a point-wise quantity (a
gradient :math:`g_n \in \mathbb{R}^d` or a symmetric form :math:`M_n \in \mathbb{R}^{d \times d}`) meets only its
own block. Both products are written as broadcasting over the d rows, not as batched matrix products: a batched
product of N tiny matrices is several times slower on the CPU.
"""

from __future__ import annotations

import torch

__all__ = ["congruence", "contract"]


def contract(g: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    r"""Rows :math:`g_n^\top Q_n`: ``out[n, p] = sum_k g[n, k] Q[n, k, p]``.

    Parameters
    ----------
    g
        Point-wise vectors, shape (N, d).
    Q
        Jacobian blocks, shape (N, d, p).

    Returns
    -------
    torch.Tensor
        Shape (N, p). With :math:`g_n = \nabla f(y_n)` this is the Jacobian of :math:`f(y(w, x_n))` in
        :math:`w`.
    """
    out = g[:, 0, None] * Q[:, 0]
    for k in range(1, Q.shape[1]):
        out = out.addcmul_(g[:, k, None], Q[:, k])
    return out


def congruence(M: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    r""":math:`\sum_n Q_n^\top M_n Q_n`, the p × p pull-back of point-wise d × d forms.

    Parameters
    ----------
    M
        Point-wise forms, shape (N, d, d).
    Q
        Jacobian blocks, shape (N, d, p).

    Returns
    -------
    torch.Tensor
        Shape (p, p); symmetric up to round-off when every :math:`M_n` is symmetric.
    """
    n, d, p = Q.shape
    MQ = M[:, :, 0, None] * Q[:, None, 0, :]  # (M_n Q_n), shape (N, d, p)
    for e in range(1, d):
        MQ = MQ.addcmul_(M[:, :, e, None], Q[:, None, e, :])
    return Q.reshape(n * d, p).T @ MQ.reshape(n * d, p)
