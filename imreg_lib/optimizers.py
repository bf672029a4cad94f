r"""Optimizers that see only functions of the parameters (FAIR's design: no images in here).

* :func:`newton_trust_region`: SciPy's trust-region Newton methods (``trust-exact``, the paper's choice, or
  ``trust-ncg``, what the authors' Fig. 3 script runs) with loss, gradient and Hessian computed together in
  one call ``w -> (J, ∇J, H)`` and cached per iterate (SciPy asks for them separately). ``trust-exact`` runs
  through a port of SciPy's code that takes the same steps bit for bit without SciPy's per-iteration
  bookkeeping (``imreg_lib._trust_exact``).
* :func:`levenberg_marquardt`: Gauss-Newton with Nielsen's damping for :math:`\min_w \|r(w)\|^2`, with the
  history semantics of the authors' ``lsq_lma``: ``max_iter`` counts *recorded points*, the initial
  one included, and a rejected trial step is recorded as a point (flat segments in convergence plots). The
  residual is evaluated once per distinct point and the Jacobian once per accepted point (in variable
  projection each residual is a full CG solve; the original evaluates it up to three times per iteration).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.optimize
import torch

from . import _checks, _trust_exact

__all__ = ["LMResult", "NewtonResult", "levenberg_marquardt", "newton_trust_region"]

Derivatives = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
TrustMethod = Literal["trust-exact", "trust-ncg"]


@dataclass(frozen=True)
class NewtonResult:
    """Outcome of a Newton run.

    Attributes
    ----------
    w
        Final parameters.
    loss, grad_norm
        :math:`J` and :math:`\\|\\nabla J\\|` at ``w``.
    initial_loss, initial_grad_norm
        The same at ``w0`` (SciPy's first evaluation: free for a caller that records its start).
    hessian
        Symmetrised Hessian at ``w`` (the last accepted iterate).
    iterations, n_hessians
        Newton iterations and evaluations of ``(J, ∇J, H)`` (one per distinct point).
    success, message
        SciPy's verdict.
    """

    w: torch.Tensor
    loss: float
    grad_norm: float
    initial_loss: float
    initial_grad_norm: float
    hessian: torch.Tensor
    iterations: int
    n_hessians: int
    success: bool
    message: str


class _Cache:
    """Evaluates ``derivatives`` once per distinct point."""

    def __init__(self, derivatives: Derivatives, like: torch.Tensor) -> None:
        self.derivatives, self.like = derivatives, like
        self.key: bytes | None = None
        self.value: tuple | None = None
        self.first: tuple | None = None
        self.accepted: tuple | None = None
        self.n_evaluations = 0

    def __call__(self, w: np.ndarray):
        key = w.tobytes()
        if key != self.key:
            wt = torch.as_tensor(w, dtype=self.like.dtype, device=self.like.device)
            J, dJ, H = self.derivatives(wt)
            self.key, self.value = key, (wt, J, dJ, H)
            self.n_evaluations += 1
            if self.first is None:
                self.first = self.value
        return self.value

    def accept(self, on_accept: Callable[[torch.Tensor], None] | None = None) -> None:
        """The point evaluated last is the optimizer's iterate now: keep its values (and tell ``on_accept``)."""
        self.accepted = self.value
        if on_accept is not None:
            on_accept(self.value[0])

    def fun(self, w):
        _, J, dJ, _ = self(w)
        return float(J), dJ.detach().cpu().numpy()

    def hess(self, w):
        H = self(w)[3]
        return (0.5 * (H + H.T)).detach().cpu().numpy()

    def all(self, w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """``(J, ∇J, H)`` as SciPy's callables give them (``H`` symmetrised), for :func:`_trust_exact.minimize`."""
        _, J, dJ, H = self(w)
        return float(J), dJ.detach().cpu().numpy(), (0.5 * (H + H.T)).detach().cpu().numpy()


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def newton_trust_region(derivatives: Derivatives, w0: torch.Tensor, *, gtol: float = 1e-4,
                        maxiter: int | None = None, method: TrustMethod = "trust-exact",
                        on_accept: Callable[[torch.Tensor], None] | None = None) -> NewtonResult:
    """Minimise with a SciPy trust-region Newton method from ``w0`` until ``||∇J|| < gtol``.

    Parameters
    ----------
    derivatives
        ``w -> (J, ∇J, H)`` (e.g. :meth:`imreg_lib.ScaleObjective.derivatives`).
    w0
        Starting point.
    gtol
        Gradient-norm tolerance (> 0).
    maxiter
        Iteration limit (SciPy's default ``200 * n`` if ``None``).
    method
        ``"trust-exact"`` (the paper) or ``"trust-ncg"`` (the authors' Fig. 3 script).
    on_accept
        ``trust-exact`` only: called with the new iterate (the very tensor given to ``derivatives``, whose
        evaluation was the last one) at the start and after each accepted step, before any other point is
        evaluated. :func:`~imreg_lib.multiscale.predictor_corrector` keeps there what the predictor reuses.
    """
    _check_positive("gtol", gtol)
    _checks.one_of("method", method, ("trust-exact", "trust-ncg"), words=True)
    if on_accept is not None and (method != "trust-exact" or not callable(on_accept)):
        raise ValueError(f"on_accept must be None or, with method 'trust-exact', a function of the iterate; got "
                         f"{on_accept!r} with method {method!r}")
    if maxiter is not None and not (isinstance(maxiter, int) and maxiter >= 1):
        raise ValueError(f"maxiter must be a positive integer or None, got {maxiter!r}")
    cache = _Cache(derivatives, w0)
    options = {"gtol": gtol}
    if maxiter is not None:
        options["maxiter"] = maxiter
    if method == "trust-exact":  # SciPy's algorithm and arithmetic, without its per-iteration overhead
        res = _trust_exact.minimize(cache.all, w0.detach().cpu().numpy(), gtol=gtol, maxiter=maxiter,
                                    accepted=functools.partial(cache.accept, on_accept))
        wt, J, dJ, H = cache.accepted  # the iterate's own evaluation: none again where the run ends on a rejection
    else:
        res = scipy.optimize.minimize(cache.fun, w0.detach().cpu().numpy(), jac=True, hess=cache.hess,
                                      method=method, options=options)
        wt, J, dJ, H = cache(res.x)
    _, J0, dJ0, _ = cache.first
    return NewtonResult(w=wt, loss=float(J), grad_norm=float(torch.linalg.vector_norm(dJ)),
                        initial_loss=float(J0), initial_grad_norm=float(torch.linalg.vector_norm(dJ0)),
                        hessian=0.5 * (H + H.T), iterations=int(res.nit), n_hessians=cache.n_evaluations,
                        success=bool(res.success), message=str(res.message))


@dataclass(frozen=True)
class LMResult:
    r"""Outcome of :func:`levenberg_marquardt` with its history.

    Attributes
    ----------
    w
        Final parameters.
    loss, grad_norm
        :math:`\|r(w)\|^2` and :math:`\|J_r^\top r\|` (half the gradient of the loss, as the original records).
    hessian
        :math:`J_r^\top J_r` at the last accepted point (the Gauss-Newton approximation of the Hessian of
        :math:`\tfrac12 \|r\|^2`).
    points, losses, grad_norms
        One entry per recorded point (initial point first; a rejected trial repeats the previous point).
    accepted
        Per trial step, whether it was accepted.
    n_residuals, n_jacobians
        Evaluations of ``residual`` and ``jacobian``.
    success, message
        Whether a stopping test (rather than ``max_iter``) ended the run, and which one.
    """

    w: torch.Tensor
    loss: float
    grad_norm: float
    hessian: torch.Tensor
    points: tuple[torch.Tensor, ...]
    losses: tuple[float, ...]
    grad_norms: tuple[float, ...]
    accepted: tuple[bool, ...]
    n_residuals: int
    n_jacobians: int
    success: bool
    message: str

    @property
    def iterations(self) -> int:
        """Number of trial steps (recorded points minus the initial one)."""
        return len(self.points) - 1


def levenberg_marquardt(residual: Callable[[torch.Tensor], torch.Tensor],
                        jacobian: Callable[[torch.Tensor], torch.Tensor], w0: torch.Tensor, *,
                        max_iter: int = 100, gtol: float = 1e-4, ptol: float = 1e-50, ftol: float = 1e-20,
                        tau: float = 1e-3) -> LMResult:
    r"""Levenberg-Marquardt for :math:`\min_w \|r(w)\|^2`.

    With :math:`g = J^\top r` and :math:`H = J^\top J` at the current point, the trial step solves
    :math:`(H + \mu I) h = -g`; the gain ratio is
    :math:`\rho = (\|r(w)\|^2 - \|r(w+h)\|^2) / (h^\top(\mu h - g))`. A step with :math:`\rho > 0` is accepted
    and :math:`\mu \leftarrow \mu \max(1/3, 1 - (2\rho - 1)^3)`; otherwise :math:`\mu \leftarrow \nu\mu`,
    :math:`\nu \leftarrow 2\nu` (Nielsen). Initially :math:`\mu = \tau \max \operatorname{diag} H`.

    Parameters
    ----------
    residual, jacobian
        ``w -> r`` of shape (n,) and ``w -> J`` of shape (n, p).
    w0
        Starting point, shape (p,).
    max_iter
        Maximum number of recorded points, the initial one included (so 10 gives at most 9 trial steps).
    gtol, ptol, ftol
        Tested after each trial step (as in the original, so at least one step is tried): stop when
        :math:`\|g\| < \text{gtol}`, when :math:`\|h\| < \text{ptol}(\text{ptol} + \|w\|)`, or after an
        accepted step with :math:`\|r_{prev} - r\|^2 < \|\text{ftol}\, r\|^2`.
    tau
        Initial damping relative to the largest diagonal entry of :math:`H`.
    """
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    for name, value in (("gtol", gtol), ("ptol", ptol), ("ftol", ftol), ("tau", tau)):
        _check_positive(name, value)
    if not isinstance(w0, torch.Tensor) or w0.ndim != 1:
        raise ValueError(f"w0 must be a 1-D tensor, got {type(w0).__name__}")

    n_res = n_jac = 0

    def res(w):
        nonlocal n_res
        n_res += 1
        return residual(w)

    def jac(w):
        nonlocal n_jac
        n_jac += 1
        return jacobian(w)

    w = w0
    f = res(w)
    Jm = jac(w)
    g, H = Jm.T @ f, Jm.T @ Jm
    mu, nu = tau * float(torch.max(torch.diagonal(H))), 2.0
    eye = torch.eye(w.numel(), dtype=w.dtype, device=w.device)
    driver = "gelsd" if w.device.type == "cpu" else None
    points, losses, grads, accepted = [w], [float(f @ f)], [float(torch.linalg.vector_norm(g))], []
    success, message = False, "max_iter reached"
    while not success and len(points) < max_iter:
        h = torch.linalg.lstsq(H + mu * eye, -g.unsqueeze(-1), driver=driver).solution.squeeze(-1)
        f_trial = res(w + h)
        gain = float(f @ f) - float(f_trial @ f_trial)
        predicted = float(h @ (mu * h - g))
        rho = gain / predicted if predicted > 0 else (math.inf if gain > 0 else -math.inf)
        f_prev = f
        if rho > 0:
            w, f = w + h, f_trial
            Jm = jac(w)
            g, H = Jm.T @ f, Jm.T @ Jm
            mu *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3) if math.isfinite(rho) else 1.0 / 3.0
            nu = 2.0
        else:
            mu *= nu
            nu *= 2.0
        accepted.append(rho > 0)
        points.append(w)
        losses.append(float(f @ f))
        grads.append(float(torch.linalg.vector_norm(g)))
        if grads[-1] < gtol:
            success, message = True, "gtol satisfied"
        elif float(torch.linalg.vector_norm(h)) < ptol * (ptol + float(torch.linalg.vector_norm(w))):
            success, message = True, "ptol satisfied"
        elif rho > 0 and float(torch.sum((f_prev - f) ** 2)) < float(torch.sum((ftol * f) ** 2)):
            success, message = True, "ftol satisfied"
    return LMResult(w=w, loss=losses[-1], grad_norm=grads[-1], hessian=H, points=tuple(points),
                    losses=tuple(losses), grad_norms=tuple(grads), accepted=tuple(accepted), n_residuals=n_res,
                    n_jacobians=n_jac, success=success, message=message)
