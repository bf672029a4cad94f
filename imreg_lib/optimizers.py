r"""Optimizers that see only a function ``w -> (J, ∇J, H)`` (FAIR's design: no images in here).

:func:`newton_trust_exact` runs SciPy's exact trust-region Newton method (``trust-exact``, the paper's
choice) with loss, gradient and Hessian computed together in one call and cached per iterate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch

__all__ = ["NewtonResult", "newton_trust_exact"]

Derivatives = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class NewtonResult:
    """Outcome of a Newton run.

    Attributes
    ----------
    w
        Final parameters.
    loss, grad_norm
        :math:`J` and :math:`\\|\\nabla J\\|` at ``w``.
    hessian
        Hessian at ``w`` (the last accepted iterate).
    iterations, n_hessians
        Newton iterations and Hessian evaluations.
    success, message
        SciPy's verdict.
    """

    w: torch.Tensor
    loss: float
    grad_norm: float
    hessian: torch.Tensor
    iterations: int
    n_hessians: int
    success: bool
    message: str


class _Cache:
    """Evaluates ``derivatives`` once per distinct point (SciPy asks for J, ∇J and H separately)."""

    def __init__(self, derivatives: Derivatives, like: torch.Tensor) -> None:
        self.derivatives, self.like = derivatives, like
        self.key: bytes | None = None
        self.value: tuple | None = None
        self.n_evaluations = 0

    def __call__(self, w: np.ndarray):
        key = w.tobytes()
        if key != self.key:
            wt = torch.as_tensor(w, dtype=self.like.dtype, device=self.like.device)
            J, dJ, H = self.derivatives(wt)
            self.key, self.value = key, (wt, J, dJ, H)
            self.n_evaluations += 1
        return self.value

    def fun(self, w):
        _, J, dJ, _ = self(w)
        return float(J), dJ.detach().cpu().numpy()

    def hess(self, w):
        H = self(w)[3]
        return (0.5 * (H + H.T)).detach().cpu().numpy()


def newton_trust_exact(derivatives: Derivatives, w0: torch.Tensor, *, gtol: float = 1e-4,
                       maxiter: int | None = None) -> NewtonResult:
    """Minimise with SciPy's ``trust-exact`` from ``w0`` until ``||∇J|| < gtol``.

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
    """
    if not gtol > 0:
        raise ValueError(f"gtol must be positive, got {gtol!r}")
    cache = _Cache(derivatives, w0)
    options = {"gtol": gtol}
    if maxiter is not None:
        options["maxiter"] = maxiter
    res = scipy.optimize.minimize(cache.fun, w0.detach().cpu().numpy(), jac=True, hess=cache.hess,
                                  method="trust-exact", options=options)
    wt, J, dJ, H = cache(res.x)
    return NewtonResult(w=wt, loss=float(J), grad_norm=float(torch.linalg.vector_norm(dJ)),
                        hessian=0.5 * (H + H.T), iterations=int(res.nit), n_hessians=cache.n_evaluations,
                        success=bool(res.success), message=str(res.message))
