r"""Distance measures. The paper uses the sum of squared differences weighted by the cell volume,

.. math::  D(T_y, R) = \prod_k h_k \, \| T_y - R \|_2^2

(no factor ½).
"""

from __future__ import annotations

import torch

__all__ = ["ssd"]


def ssd(residual: torch.Tensor, cell_volume: float) -> torch.Tensor:
    """``cell_volume * ||residual||²`` for a residual ``T(y(x_c)) - R(x_c)`` on the cell centres."""
    return cell_volume * torch.sum(residual * residual)
