r"""Multi-scale drivers over the scale parameter :math:`\theta` (paper §3).

The minimiser :math:`w^*(\theta)` of :math:`J(\cdot;\theta)` satisfies :math:`\nabla_w J(w^*(\theta);\theta) = 0`;
differentiating in :math:`\theta` gives the ODE

.. math::  \frac{dw^*}{d\theta} = -\big(\nabla^2_w J\big)^{-1}\, \partial_\theta \nabla_w J .

The **predictor-corrector** method takes one forward-Euler step of it from :math:`\theta_{n}` to
:math:`\theta_{n+1}`,

.. math::
    w_{pred} = w^*_n + (\theta_{n+1} - \theta_n)\,
    \Big(-H_n^{-1}\, \partial_\theta \nabla_w J(w^*_n; \theta_n)\Big),

(the sign of the authors' code; the paper's eq. 5 writes :math:`\theta_n - \theta_{n+1}`), with :math:`H_n` the
exact Hessian at the accepted iterate (reused, no extra Hessian) and a least-squares solve that tolerates an
indefinite or singular :math:`H_n`; then Newton corrects at :math:`\theta_{n+1}`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .objective import SSDObjective
from .optimizers import newton_trust_exact

__all__ = ["MultiscaleResult", "ScaleRecord", "check_schedule", "predictor_corrector", "single_scale"]


@dataclass(frozen=True)
class ScaleRecord:
    """History entry for one scale."""

    theta: float
    start_loss: float
    start_grad_norm: float
    final_loss: float
    final_grad_norm: float
    iterations: int
    n_hessians: int
    seconds: float


@dataclass(frozen=True)
class MultiscaleResult:
    """Final parameters and the per-scale history of a driver."""

    w: torch.Tensor
    final_loss: float
    history: tuple[ScaleRecord, ...]

    @property
    def n_hessians(self) -> int:
        return sum(r.n_hessians for r in self.history)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.history)


def check_schedule(thetas: Sequence[float]) -> tuple[float, ...]:
    """Validate a θ schedule: at least 2 finite positive values, strictly decreasing."""
    th = tuple(float(t) for t in thetas)
    if len(th) < 2:
        raise ValueError(f"the theta schedule needs at least 2 scales (n_scales >= 2), got {len(th)}")
    if not all(math.isfinite(t) and t > 0 for t in th):
        raise ValueError(f"every theta must be finite and > 0, got {th}")
    if not all(a > b for a, b in zip(th, th[1:], strict=False)):
        raise ValueError("the theta schedule must be strictly decreasing (theta_max > ... > theta_min)")
    return th


def _grad_norm(objective: SSDObjective, w: torch.Tensor, theta: float) -> tuple[float, float]:
    J, dJ, _ = objective.at_scale(theta).derivatives(w, "none")
    return float(J), float(torch.linalg.vector_norm(dJ))


def single_scale(objective: SSDObjective, theta: float, w0: torch.Tensor | None = None, *,
                 gtol: float = 1e-7) -> MultiscaleResult:
    """Newton (trust-exact, exact Hessian) at one scale from ``w0`` (default: identity)."""
    w0 = objective.identity() if w0 is None else w0
    objective.transformation.check(w0)
    t0 = time.perf_counter()
    start = _grad_norm(objective, w0, theta)
    res = newton_trust_exact(objective.at_scale(theta).derivatives, w0, gtol=gtol)
    rec = ScaleRecord(float(theta), *start, res.loss, res.grad_norm, res.iterations, res.n_hessians,
                      time.perf_counter() - t0)
    return MultiscaleResult(res.w, res.loss, (rec,))


def predictor_corrector(objective: SSDObjective, thetas: Sequence[float], w0: torch.Tensor | None = None, *,
                        gtol: float = 1e-4, predict: bool = True) -> MultiscaleResult:
    """Multi-scale Newton over a decreasing θ schedule, with the Euler predictor (``predict=False`` gives
    the traditional warm-started multi-scale method)."""
    thetas = check_schedule(thetas)
    w = objective.identity() if w0 is None else w0
    objective.transformation.check(w)
    history, H = [], None
    for n, theta in enumerate(thetas):
        t0 = time.perf_counter()
        if n > 0 and predict:
            rhs = objective.theta_derivative_of_gradient(w, thetas[n - 1])
            velocity = -torch.linalg.lstsq(H, rhs.unsqueeze(-1), driver="gelsd" if H.device.type == "cpu"
                                           else None).solution.squeeze(-1)
            w = w + (theta - thetas[n - 1]) * velocity
        start = _grad_norm(objective, w, theta)
        res = newton_trust_exact(objective.at_scale(theta).derivatives, w, gtol=gtol)
        w, H = res.w, res.hessian
        history.append(ScaleRecord(theta, *start, res.loss, res.grad_norm, res.iterations, res.n_hessians,
                                   time.perf_counter() - t0))
    return MultiscaleResult(w, history[-1].final_loss, tuple(history))
