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
Hessian at the accepted iterate (reused: no extra Hessian) and a least-squares solve (``gelsd``) that tolerates
an indefinite or singular :math:`H_n`; then the corrector minimises at :math:`\theta_{n+1}` from
:math:`w_{pred}`. Without the predictor this is the **traditional** multi-scale method (warm start only).

Two Hessians can drive the predictor (paper Fig. 3), chosen by ``hessian``:

* ``"exact"``: the exact Hessian of :math:`J`, corrector = trust-region Newton;
* ``"gauss_newton"``: the Gauss-Newton approximation :math:`2 J_r^\top J_r` of the Hessian of :math:`J = \|r\|^2`
  (:math:`r` the residual), corrector = Levenberg-Marquardt. The factor 2 belongs to :math:`J`, whose
  :math:`\partial_\theta \nabla_w J` is the right-hand side, so the step is the Euler step of the ODE above.

The hook ``predictor_hessian`` of :func:`predictor_corrector` replaces :math:`H_n` by any function of it before the
predictor solves with it (a scaled, shifted or otherwise modified matrix), so that other predictors can be built
from these blocks without touching the driver; the corrector and its Hessian are not affected.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.linalg
import torch

from . import _checks
from .objective import SSDObjective
from .optimizers import TrustMethod, levenberg_marquardt, newton_trust_region

__all__ = ["MultiscaleResult", "ScaleRecord", "check_schedule", "predictor_corrector", "single_scale", "theta_schedule",
           "traditional"]

_EPS = float(np.finfo(np.float64).eps)

PredictorHessian = Literal["exact", "gauss_newton"]
_HESSIANS = ("exact", "gauss_newton")


@dataclass(frozen=True)
class ScaleRecord:
    r"""History entry for one scale :math:`\theta`.

    Attributes
    ----------
    theta
        The scale.
    w_start, start_loss, start_grad_norm
        The warm start (previous minimiser, or the initial guess at the first scale) and :math:`J`,
        :math:`\\|\nabla_w J\\|` there at this θ: the traditional method's starting values (``None`` for a
        predicted scale run with ``record_start=False``).
    w_predicted, predicted_loss, predicted_grad_norm
        The predictor's point and the values there at this θ (``None`` without a prediction).
    w, final_loss, final_grad_norm
        The corrector's result.
    iterations, n_hessians
        Corrector iterations and Hessian (Newton) or Jacobian (Gauss-Newton) evaluations.
    seconds
        Wall time of predictor and corrector. The values above come from Newton's own evaluations (its first
        and last); the start values of a predicted scale, and for Levenberg-Marquardt all of them, are evaluated
        after the clock stops.
    """

    theta: float
    w_start: torch.Tensor
    start_loss: float | None
    start_grad_norm: float | None
    w_predicted: torch.Tensor | None
    predicted_loss: float | None
    predicted_grad_norm: float | None
    w: torch.Tensor
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
    def thetas(self) -> tuple[float, ...]:
        return tuple(r.theta for r in self.history)

    @property
    def n_hessians(self) -> int:
        return sum(r.n_hessians for r in self.history)

    @property
    def iterations(self) -> int:
        return sum(r.iterations for r in self.history)

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


def theta_schedule(theta_max: float, theta_min: float, n_scales: int) -> tuple[float, ...]:
    """``n_scales`` log-spaced scales from ``theta_max`` down to ``theta_min`` (the paper's ``logspace(3, -3, n)``),
    validated with errors that name the parameter."""
    for name, value in (("theta_max", theta_max), ("theta_min", theta_min)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if not theta_max > theta_min:
        raise ValueError(f"theta_max must be larger than theta_min (the schedule decreases), got theta_max="
                         f"{theta_max!r}, theta_min={theta_min!r}")
    _checks.integer("n_scales", n_scales, 2)
    thetas = torch.logspace(math.log10(theta_max), math.log10(theta_min), n_scales, dtype=torch.float64)
    return tuple(thetas.tolist())


@functools.lru_cache(maxsize=8)
def _gelsd(n: int):
    """LAPACK ``gelsd`` for an ``n × n`` system with one right-hand side and its workspace sizes."""
    gelsd, gelsd_lwork = scipy.linalg.get_lapack_funcs(("gelsd", "gelsd_lwork"), (np.zeros((1, 1)),))
    work, iwork, info = gelsd_lwork(n, n, 1, -1.0)
    if info != 0:
        raise np.linalg.LinAlgError(f"gelsd's workspace query failed (info {info})")
    return gelsd, int(np.real(work)), int(iwork)


def _least_squares(M: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The minimum-norm least-squares solution of ``M v = b`` by LAPACK ``gelsd`` (singular values below machine
    precision times the size ignored, as NumPy's and torch's default): on the CPU called directly with a cached
    workspace (torch's call costs several times the solve of a matrix this small); elsewhere torch's default
    driver."""
    if M.device.type != "cpu":
        return torch.linalg.lstsq(M, b.unsqueeze(-1)).solution.squeeze(-1)
    n = M.shape[-1]
    gelsd, lwork, liwork = _gelsd(n)
    v, _, _, info = gelsd(M.detach().numpy(), b.detach().numpy(), lwork, liwork, _EPS * n, False, False)
    if info != 0:
        raise np.linalg.LinAlgError(f"the predictor's least-squares solve did not converge (gelsd info {info})")
    return torch.from_numpy(v).to(b.dtype)


def _loss_and_grad_norm(objective: SSDObjective, w: torch.Tensor, theta: float) -> tuple[float, float]:
    J, dJ, _ = objective.at_scale(theta).derivatives(w, "none")
    return float(J), float(torch.linalg.vector_norm(dJ))


def _check_options(gtol: float, hessian: str, newton_method: str) -> None:
    if not (isinstance(gtol, (int, float)) and math.isfinite(gtol) and gtol > 0):
        raise ValueError(f"gtol must be a positive finite number, got {gtol!r}")
    _checks.one_of("hessian", hessian, _HESSIANS)
    _checks.one_of("newton_method", newton_method, ("trust-exact", "trust-ncg"), words=True)


def _minimise(objective: SSDObjective, theta: float, w: torch.Tensor, hessian: PredictorHessian, gtol: float,
              newton_method: TrustMethod, max_iter: int | None):
    """Corrector at one scale; returns ``(w, iterations, n_hessians, H, first, last)`` with ``H`` the predictor's
    Hessian and ``first``, ``last`` the values ``(J, ||∇J||)`` at the start and at the result, taken from Newton's
    own evaluations (``None`` for Levenberg-Marquardt, whose norms are of :math:`J_r^\top r`)."""
    scale = objective.at_scale(theta)
    if hessian == "exact":
        res = newton_trust_region(scale.derivatives, w, gtol=gtol, maxiter=max_iter, method=newton_method,
                                  on_accept=scale.keep if newton_method == "trust-exact" else None)
        return (res.w, res.iterations, res.n_hessians, res.hessian, (res.initial_loss, res.initial_grad_norm),
                (res.loss, res.grad_norm))
    res = levenberg_marquardt(scale.residual, scale.residual_jacobian, w, gtol=gtol,
                              max_iter=1000 if max_iter is None else max_iter)
    return res.w, res.iterations, res.n_jacobians, 2.0 * res.hessian, None, None  # J = ||r||^2: twice J_r^T J_r


def single_scale(objective: SSDObjective, theta: float, w0: torch.Tensor | None = None, *, gtol: float = 1e-7,
                 hessian: PredictorHessian = "exact", newton_method: TrustMethod = "trust-exact",
                 max_iter: int | None = None) -> MultiscaleResult:
    """Minimise at one scale from ``w0`` (default: identity): Newton, or Levenberg-Marquardt for a
    Gauss-Newton ``hessian``."""
    _check_options(gtol, hessian, newton_method)
    if not (isinstance(theta, (int, float)) and math.isfinite(theta) and theta > 0):
        raise ValueError(f"theta must be a positive finite number, got {theta!r}")
    w0 = objective.identity() if w0 is None else w0
    objective.transformation.check(w0)
    t0 = time.perf_counter()
    w, iters, n_h, _, start, final = _minimise(objective, float(theta), w0, hessian, gtol, newton_method, max_iter)
    seconds = time.perf_counter() - t0
    start = start or _loss_and_grad_norm(objective, w0, theta)
    final = final or _loss_and_grad_norm(objective, w, theta)
    rec = ScaleRecord(float(theta), w0, *start, None, None, None, w, *final, iters, n_h, seconds)
    return MultiscaleResult(w, final[0], (rec,))


def predictor_corrector(objective: SSDObjective, thetas: Sequence[float], w0: torch.Tensor | None = None, *,
                        gtol: float = 1e-4, first_gtol: float | None = None, predict: bool = True,
                        hessian: PredictorHessian = "exact", newton_method: TrustMethod = "trust-exact",
                        max_iter: int | None = None,
                        predictor_hessian: Callable[[torch.Tensor], torch.Tensor] | None = None,
                        callback: Callable[[ScaleRecord], None] | None = None,
                        record_start: bool = True) -> MultiscaleResult:
    r"""Multi-scale minimisation over a decreasing θ schedule with the Euler predictor.

    Parameters
    ----------
    objective
        The registration objective :math:`J(w;\theta)`.
    thetas
        Strictly decreasing positive scales (e.g. ``logspace(3, -3, 30)``).
    w0
        Initial guess at the first scale (default: identity).
    gtol, first_gtol
        Corrector tolerance (``first_gtol`` at the first scale; default ``gtol``): on :math:`\|\nabla J\|` for
        Newton, on :math:`\|J_r^\top r\|` for Levenberg-Marquardt (as the original).
    predict
        ``False`` gives the traditional multi-scale method (warm start only).
    hessian
        The predictor's Hessian and corrector: see the module docstring.
    newton_method
        ``"trust-exact"`` (the paper) or ``"trust-ncg"`` (the authors' Fig. 3 script).
    max_iter
        Corrector iteration limit (Newton: SciPy's default; LM: 1000 recorded points).
    predictor_hessian
        Optional function ``H -> M`` applied to the corrector's Hessian :math:`H_n` (exact, or
        :math:`2J_r^\top J_r`) at the accepted iterate; the predictor then solves with ``M``, a square tensor of
        the same shape. Default: :math:`H_n` itself (the Euler step). Not called without ``predict``.
    callback
        Called with each scale's :class:`ScaleRecord` when it is done (progress reports).
    record_start
        Record :math:`J` and :math:`\|\nabla_w J\|` at the warm start of each predicted scale (the traditional
        method's starting values, against which Fig. 3 measures the prediction). They are not part of the method:
        one evaluation per scale, made after the scale's clock stops; ``False`` skips it and leaves them ``None``.
    """
    thetas = check_schedule(thetas)
    _checks.boolean("record_start", record_start)
    _check_options(gtol, hessian, newton_method)
    first_gtol = gtol if first_gtol is None else first_gtol
    _check_options(first_gtol, hessian, newton_method)
    if predictor_hessian is not None and not callable(predictor_hessian):
        raise ValueError(f"predictor_hessian must be None or a function of the Hessian, got {predictor_hessian!r}")
    w = objective.identity() if w0 is None else w0
    objective.transformation.check(w)
    history, H = [], None
    for n, theta in enumerate(thetas):
        t0 = time.perf_counter()
        w_start, w_pred = w, None
        if n > 0 and predict:  # at the corrector's accepted iterate: its points and values are reused
            if n == 1:
                objective.theta_tangents(thetas[:-1])  # the closed-form θ-derivatives of every scale left, at once
            rhs = objective.at_scale(thetas[n - 1]).theta_derivative_of_gradient(w)
            M = H if predictor_hessian is None else predictor_hessian(H)
            velocity = -_least_squares(M, rhs)
            w = w_pred = w + (theta - thetas[n - 1]) * velocity
        w, iters, n_h, H, first, final = _minimise(objective, theta, w, hessian, first_gtol if n == 0 else gtol,
                                                   newton_method, max_iter)
        seconds = time.perf_counter() - t0
        first = first or _loss_and_grad_norm(objective, w_start if w_pred is None else w_pred, theta)
        predicted = (None, None) if w_pred is None else first
        start = first if w_pred is None else (_loss_and_grad_norm(objective, w_start, theta) if record_start
                                              else (None, None))
        final = final or _loss_and_grad_norm(objective, w, theta)
        history.append(ScaleRecord(theta, w_start, *start, w_pred, *predicted, w, *final, iters, n_h, seconds))
        if callback is not None:
            callback(history[-1])
    return MultiscaleResult(w, history[-1].final_loss, tuple(history))


def traditional(objective: SSDObjective, thetas: Sequence[float], w0: torch.Tensor | None = None,
                **options) -> MultiscaleResult:
    """The traditional multi-scale method: minimise at each scale, warm-started at the previous minimiser
    (:func:`predictor_corrector` with ``predict=False``)."""
    return predictor_corrector(objective, thetas, w0, predict=False, **options)
