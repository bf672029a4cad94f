r"""Taylor tests of derivatives (FAIR's ``checkDerivative``, returning numbers that tests can assert).

For a smooth :math:`f`, a direction :math:`v` and steps :math:`h`,

.. math::
    E_0(h) = \|f(x + hv) - f(x)\|, \quad
    E_1(h) = \|f(x + hv) - f(x) - h\, f'(x)v\|, \quad
    E_2(h) = \|f(x + hv) - f(x) - h\, f'(x)v - \tfrac{h^2}{2} v^\top f''(x) v\|

decay like :math:`h`, :math:`h^2` and :math:`h^3` when the derivatives are right. A wrong first derivative
leaves :math:`E_1 = O(h)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["NOISE_FACTOR", "TaylorResult", "taylor_from_differences", "taylor_test"]

#: The round-off floor of a Taylor test in units of machine epsilon times the size of the function value: below
#: about ten ulps of :math:`f`, a difference :math:`f(x + hv) - f(x)` is dominated by the rounding of the two values.
NOISE_FACTOR = 10.0


@dataclass(frozen=True)
class TaylorResult:
    """Errors of a Taylor test and their observed orders of decay.

    Attributes
    ----------
    h
        Step sizes (decreasing).
    errors
        ``errors[k]`` is :math:`E_k(h)` for ``k = 0, 1[, 2]``.
    orders
        ``orders[k][i] = log(E_k[i] / E_k[i+1]) / log(h[i] / h[i+1])``.
    noise
        The round-off floor of the differences, :math:`10\\, \\varepsilon \\|f(x)\\|` (:data:`NOISE_FACTOR` times
        machine epsilon times the size of the function value), or ``None`` when unknown.
    """

    h: tuple[float, ...]
    errors: tuple[tuple[float, ...], ...]
    orders: tuple[tuple[float, ...], ...]
    noise: float | None = None

    def order(self, k: int, floor: float = 1e-11) -> float:
        """Median observed order of :math:`E_k` over the steps where both errors exceed ``floor`` times
        :math:`E_0` at the largest step (below that, round-off dominates)."""
        scale = self.errors[0][0] or 1.0
        e = self.errors[k]
        usable = [self.orders[k][i] for i in range(len(self.h) - 1)
                  if e[i] > floor * scale and e[i + 1] > floor * scale]
        if not usable:
            return float("nan")
        usable.sort()
        return usable[len(usable) // 2]

    def fitted_order(self, k: int, n_points: int = 3) -> float:
        r"""The asymptotic order of :math:`E_k`: the least-squares slope of :math:`\log E_k` against :math:`\log h`
        over the ``n_points`` smallest steps whose error lies above the round-off floor (:attr:`noise`; when unknown,
        ``1e-11`` times :math:`E_0` at the largest step); NaN with fewer than two such steps.

        Why these steps: below the floor a difference of two function values is round-off, whatever the
        derivative; at the largest steps a piecewise-polynomial model (a spline crossing its knots) is not yet in
        its Taylor regime. The smallest steps above the floor are the asymptotic range, and a fit over several of
        them does not hang on one noisy ratio (as :meth:`order`'s neighbour ratios can)."""
        floor = self.noise if self.noise is not None else 1e-11 * (self.errors[0][0] or 1.0)
        pts = [(math.log(hk), math.log(e)) for hk, e in zip(self.h, self.errors[k], strict=True) if e > floor]
        pts = sorted(pts)[:n_points]
        if len(pts) < 2:
            return float("nan")
        mx = sum(x for x, _ in pts) / len(pts)
        my = sum(y for _, y in pts) / len(pts)
        return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)

    def slope(self, k: int, h_min: float, h_max: float = math.inf) -> float:
        r"""Least-squares slope of :math:`\log E_k` against :math:`\log h` over the steps
        :math:`h_{min} \le h \le h_{max}` (the decay between the nonlinear range and a round-off floor)."""
        pts = [(math.log(hk), math.log(e)) for hk, e in zip(self.h, self.errors[k], strict=True)
               if h_min <= hk <= h_max and e > 0]
        if len(pts) < 2:
            return float("nan")
        mx = sum(x for x, _ in pts) / len(pts)
        my = sum(y for _, y in pts) / len(pts)
        return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def taylor_test(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, v: torch.Tensor,
                df_v: torch.Tensor, d2f_v: torch.Tensor | None = None,
                h: tuple[float, ...] = tuple(10.0 ** -k for k in range(0, 8))) -> TaylorResult:
    r"""Taylor test of the directional derivatives of ``f`` at ``x`` along ``v``.

    Parameters
    ----------
    f
        Function of one tensor (scalar or tensor valued).
    x, v
        Point and direction (same shape).
    df_v
        The claimed first directional derivative :math:`f'(x)v` (shape of ``f(x)``).
    d2f_v
        The claimed second directional derivative :math:`v^\top f''(x) v`, optional.
    h
        Decreasing step sizes.
    """
    if tuple(v.shape) != tuple(x.shape):
        raise ValueError(f"v must have the shape of x {tuple(x.shape)}, got {tuple(v.shape)}")
    with torch.no_grad():
        f0 = f(x)
        differences = [f(x + hk * v) - f0 for hk in h]
        noise = NOISE_FACTOR * torch.finfo(f0.dtype).eps * float(torch.linalg.vector_norm(f0))
    return taylor_from_differences(h, differences, df_v, d2f_v, noise=noise)


def taylor_from_differences(h: Sequence[float], differences: Sequence[torch.Tensor], df_v: torch.Tensor,
                            d2f_v: torch.Tensor | None = None, noise: float | None = None) -> TaylorResult:
    r"""The Taylor errors from precomputed differences :math:`f(x + h_i v) - f(x)`.

    Lets several claimed derivatives be tested against the same (expensive) function evaluations:
    :math:`E_0 = \|\Delta_i\|`, :math:`E_1 = \|\Delta_i - h_i f'v\|`,
    :math:`E_2 = \|\Delta_i - h_i f'v - \tfrac12 h_i^2 v^\top f'' v\|`; ``noise`` is the round-off floor of the
    differences where known (:attr:`TaylorResult.noise`).
    """
    h = tuple(float(s) for s in h)
    if len(differences) != len(h):
        raise ValueError(f"differences must have one entry per step size ({len(h)}), got {len(differences)}")
    errs: list[list[float]] = [[], []] + ([[]] if d2f_v is not None else [])
    with torch.no_grad():
        for hk, diff in zip(h, differences, strict=True):
            errs[0].append(float(torch.linalg.vector_norm(diff)))
            diff = diff - hk * df_v
            errs[1].append(float(torch.linalg.vector_norm(diff)))
            if d2f_v is not None:
                errs[2].append(float(torch.linalg.vector_norm(diff - 0.5 * hk * hk * d2f_v)))
    orders = []
    for e in errs:
        orders.append(tuple(math.log(e[i] / e[i + 1]) / math.log(h[i] / h[i + 1]) if e[i] > 0 and e[i + 1] > 0
                            else float("nan") for i in range(len(h) - 1)))
    return TaylorResult(h, tuple(tuple(e) for e in errs), tuple(orders), noise)
