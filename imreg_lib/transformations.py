r"""Parametric transformations :math:`y(w, x)` as pure functions (paper §2.1).

Affine in d dimensions: :math:`y(x) = A x + b` with the flat parameter vector
:math:`w = [A_{11}, A_{12}, \dots, A_{dd}, b_1, \dots, b_d]` (row-major A, then b), so the 2D identity is
``[1, 0, 0, 1, 0, 0]``. Points are rows: ``y = x @ A.T + b``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from .device import DEFAULT_DTYPE

__all__ = ["Affine", "affine", "affine_from_geometry"]


def affine(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply the affine map with parameters ``w`` (length d² + d) to points ``x`` of shape (N, d)."""
    d = x.shape[-1]
    A = w[: d * d].reshape(d, d)
    return x @ A.T + w[d * d:]


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
        n, d = x.shape
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        QA = torch.einsum("kj,nl->nkjl", eye, x).reshape(n, d, d * d)
        return torch.cat([QA, eye.expand(n, d, d)], dim=-1)


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
