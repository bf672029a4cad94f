r"""Regular grids on a rectangular domain, in FAIR's conventions.

A domain :math:`\Omega = (\omega_0, \omega_1) \times (\omega_2, \omega_3) [\times (\omega_4, \omega_5)]` is
divided into :math:`m = (m_0, \dots, m_{d-1})` cells of size :math:`h_k = (\omega_{2k+1} - \omega_{2k}) / m_k`.
Cell-centred points are :math:`x_{i} = \omega_{2k} + (i_k + \tfrac12) h_k`; nodal points are the
:math:`m_k + 1` cell corners per dimension. Point lists are flattened with the first index slowest
(``meshgrid(..., indexing="ij")``), so an image ``X[i, j]`` and its point list agree.

The paper uses :math:`\Omega = (0, 20) \times (0, 25)` everywhere (``PAPER_OMEGA``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from . import _checks
from .device import DEFAULT_DTYPE

__all__ = ["PAPER_OMEGA", "Grid"]

#: The domain of every experiment in the paper: x in [0, 20], y in [0, 25].
PAPER_OMEGA: tuple[float, float, float, float] = (0.0, 20.0, 0.0, 25.0)


@dataclass(frozen=True)
class Grid:
    """A regular cell-centred grid (FAIR's ``omega``, ``m``).

    Parameters
    ----------
    omega
        Domain bounds ``(lo_0, hi_0, lo_1, hi_1[, lo_2, hi_2])``; 2 or 3 dimensions.
    m
        Number of cells per dimension, an int (same in every dimension) or a tuple.

    Examples
    --------
    >>> g = Grid(PAPER_OMEGA, 32)
    >>> g.h
    (0.625, 0.78125)
    >>> g.cell_centers().shape
    torch.Size([1024, 2])
    """

    omega: tuple[float, ...]
    m: tuple[int, ...]

    def __init__(self, omega: Sequence[float], m: int | Sequence[int]) -> None:
        try:
            om = tuple(float(v) for v in omega)
        except (TypeError, ValueError):
            raise ValueError(f"omega must be a sequence of 4 or 6 numbers, got {omega!r}") from None
        if len(om) not in (4, 6):
            raise ValueError(f"omega must have 4 (2D) or 6 (3D) entries (lo, hi, ...), got {len(om)}")
        if not all(math.isfinite(v) for v in om):
            raise ValueError(f"omega must be finite, got {om}")
        for k in range(len(om) // 2):
            if not om[2 * k] < om[2 * k + 1]:
                raise ValueError(f"omega must satisfy lo < hi in every dimension, got {om}")
        object.__setattr__(self, "omega", om)
        object.__setattr__(self, "m", _checks.integer_tuple("m", m, len(om) // 2))

    @property
    def dim(self) -> int:
        """Spatial dimension d."""
        return len(self.m)

    @property
    def h(self) -> tuple[float, ...]:
        """Cell size per dimension."""
        return tuple((self.omega[2 * k + 1] - self.omega[2 * k]) / self.m[k] for k in range(self.dim))

    @property
    def cell_volume(self) -> float:
        """``prod(h)``, the quadrature weight of one cell."""
        return math.prod(self.h)

    @property
    def lower(self) -> tuple[float, ...]:
        return tuple(self.omega[0::2])

    @property
    def upper(self) -> tuple[float, ...]:
        return tuple(self.omega[1::2])

    @property
    def n_cells(self) -> int:
        return math.prod(self.m)

    @property
    def extent(self) -> tuple[float, ...]:
        """``(lo_0, hi_0, lo_1, hi_1)`` for ``matplotlib.imshow(..., origin="lower")`` (2D)."""
        return self.omega

    def with_m(self, m: int | Sequence[int]) -> Grid:
        """The same domain with another number of cells."""
        return Grid(self.omega, m)

    def _axes(self, nodal: bool, device, dtype) -> list[torch.Tensor]:
        axes = []
        for k in range(self.dim):
            lo, hi, h = self.omega[2 * k], self.omega[2 * k + 1], self.h[k]
            if nodal:
                axes.append(torch.linspace(lo, hi, self.m[k] + 1, device=device, dtype=dtype))
            else:
                axes.append(lo + h * (torch.arange(self.m[k], device=device, dtype=dtype) + 0.5))
        return axes

    def cell_centers(self, device: torch.device | str | None = None, dtype: torch.dtype = DEFAULT_DTYPE,
                     ) -> torch.Tensor:
        """Cell-centred points, shape ``(prod(m), d)``, first index slowest."""
        mesh = torch.meshgrid(*self._axes(False, device, dtype), indexing="ij")
        return torch.stack(mesh, dim=-1).reshape(-1, self.dim)

    def nodes(self, device: torch.device | str | None = None, dtype: torch.dtype = DEFAULT_DTYPE,
              ) -> torch.Tensor:
        """Nodal points (cell corners), shape ``(prod(m + 1), d)``, first index slowest."""
        mesh = torch.meshgrid(*self._axes(True, device, dtype), indexing="ij")
        return torch.stack(mesh, dim=-1).reshape(-1, self.dim)

    def center(self) -> tuple[float, ...]:
        """Centre of the domain."""
        return tuple(0.5 * (lo + hi) for lo, hi in zip(self.lower, self.upper, strict=True))
