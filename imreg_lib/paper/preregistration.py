r"""Pre-registration of the super-resolution templates: the Levenberg-Marquardt starting point.

Each template :math:`d^{(j)}` is registered to template 0 at the template resolution: with
:math:`T_\theta` the moments spline of :math:`d^{(0)}` on the template grid at scale :math:`\theta` and
:math:`x_T` the template cell centres,

.. math::
    S(w) = \sum_j \big\| T_\theta(y_j(x_T)) - d^{(j)} \big\|^2, \qquad
    J(w) = \sqrt{S(w)} \ (\text{``norm''}) \quad\text{or}\quad J(w) = S(w) \ (\text{``squared''}).

``solve_SuperResolution.ipynb`` (Figs 5-6) minimises the norm, ``test_percCG``/``test_InexactCG`` the square.
:math:`S` is separable over templates; value, gradient and the exact Hessian (block diagonal, 6×6 per template)
come from one spline pass at all points (:func:`~imreg_lib.spline.spline_derivatives`):

.. math::
    \nabla_j S = 2 J_j^\top r_j, \quad \nabla^2_j S = 2\big(J_j^\top J_j + \textstyle\sum_i r_{ji}\,
    Q_i^\top \nabla^2 T(y_{ji})\, Q_i\big), \quad J_j = \nabla T(y_j)\, Q,

and for the norm :math:`\nabla J = \nabla S / (2J)`, :math:`\nabla^2 J = \nabla^2 S/(2J) - \nabla S \nabla
S^\top / (4 J^3)`.

Two schedules over :math:`\theta \in` ``logspace(2, -3, 6)``:

* ``continuation=False`` (the authors' code): **every scale restarts from the identity**, with SciPy's
  ``newton-cg`` (which ignores ``gtol`` and stops on ``xtol`` or ``maxiter=50``), so only the last scale matters.
* ``continuation=True`` (the fix): each scale starts from the previous result (multi-scale continuation), solved
  with :func:`~imreg_lib.optimizers.newton_trust_region` (``trust-exact``). Trust-exact is used for the fix
  because it has a real gradient test (``gtol``), handles the indefinite Hessians that occur far from the
  solution (newton-cg truncates its inner CG there), and costs nothing extra for 24 parameters.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.optimize
import torch

from .. import _checks
from ..optimizers import _Cache, newton_trust_region
from ..spline import SplineImage, spline_derivatives
from ..superres import SuperResolutionProblem
from ..transformations import Affine
from ._jobs import run_jobs

__all__ = ["PREREGISTRATIONS", "PREREG_THETAS", "PreregistrationResult", "PreregistrationScale", "prereg_objective",
           "preregister", "preregistration_starts"]

PREREG_THETAS: tuple[float, ...] = (1e2, 1e1, 1.0, 1e-1, 1e-2, 1e-3)  #: The authors' scales, ``logspace(2, -3, 6)``.
#: The LM starts of the super-resolution page: the fix (warm-started continuation) and the authors' restarts.
PREREGISTRATIONS: tuple[str, ...] = ("continuation", "as_coded")

Loss = Literal["norm", "squared"]


def prereg_objective(problem: SuperResolutionProblem, theta: float, *, loss: Loss = "norm",
                     fix_first: bool = False, blur_data: bool = False):
    r"""``w -> (J, ∇J, ∇²J)`` of the pre-registration at scale ``theta`` (module docstring).

    Parameters
    ----------
    theta
        Scale :math:`\theta \ge 0` of the spline of template 0.
    loss
        ``"norm"`` or ``"squared"``.
    fix_first
        Template 0's parameters are not free (``variant="paper"``): ``w`` has :math:`6(q-1)` entries.
    blur_data
        Compare with the data at the same scale, :math:`D^{(j)}_\theta(x_T)` (the moments spline of
        :math:`d^{(j)}` evaluated at the template centres), instead of the raw :math:`d^{(j)}`. The authors
        compute these blurred templates but never use them (dead code), so at large θ their model
        is a blurred image fitted to sharp data.
    """
    _checks.one_of("loss", loss, ("norm", "squared"), words=True)
    _checks.positive_number("theta", theta, allow_zero=True)
    grid = problem.template_grid
    image = SplineImage(problem.data[0], grid)
    coef = image.coefficients(float(theta))
    xT = grid.cell_centers(problem.device, problem.dtype)
    identity = problem.identity()[:6]
    Q = Affine().jacobian(identity, xT)  # (n, 2, 6), the same for every template
    if blur_data:
        d = torch.stack([SplineImage(dj, grid).on_grid(float(theta)).reshape(-1) for dj in problem.data])
    else:
        d = problem.data.reshape(problem.n_templates, -1)
    q, n = problem.n_templates, xT.shape[0]

    def derivatives(w: torch.Tensor):
        W = (torch.cat([identity, w]) if fix_first else w).reshape(q, 6)
        y = torch.einsum("nd,jkd->jnk", xT, W[:, :4].reshape(q, 2, 2)) + W[:, None, 4:]
        T, dT, d2T = spline_derivatives(coef, y.reshape(-1, 2), grid, orders=(0, 1, 2))
        r = T.reshape(q, n) - d
        Jr = torch.einsum("jnd,ndp->jnp", dT.reshape(q, n, 2), Q)  # per-template residual Jacobians
        S = torch.sum(r * r)
        grad = 2.0 * torch.einsum("jnp,jn->jp", Jr, r)
        blocks = 2.0 * (torch.einsum("jnp,jnq->jpq", Jr, Jr)
                        + torch.einsum("jn,ndp,jnde,neq->jpq", r, Q, d2T.reshape(q, n, 2, 2), Q))
        H = torch.block_diag(*blocks)
        g = grad.reshape(-1)
        if fix_first:
            g, H = g[6:], H[6:, 6:]
        if loss == "squared":
            return S, g, H
        J = torch.sqrt(S)
        return J, g / (2.0 * J), H / (2.0 * J) - torch.outer(g, g) / (4.0 * J ** 3)

    return derivatives


@dataclass(frozen=True)
class PreregistrationScale:
    """One scale of :func:`preregister`: start, result, loss and gradient norm at the result, iterations."""

    theta: float
    w_start: torch.Tensor
    w: torch.Tensor
    loss: float
    grad_norm: float
    iterations: int
    seconds: float
    message: str


@dataclass(frozen=True)
class PreregistrationResult:
    """The pre-registration: final parameters (the last scale's) and the per-scale history."""

    w: torch.Tensor
    history: tuple[PreregistrationScale, ...]
    loss: str
    continuation: bool
    optimizer: str
    blur_data: bool

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.history)


def _newton_cg(derivatives, w0: torch.Tensor, maxiter: int, xtol: float):
    cache = _Cache(derivatives, w0)
    res = scipy.optimize.minimize(cache.fun, w0.detach().cpu().numpy(), jac=True, hess=cache.hess,
                                  method="Newton-CG", options={"maxiter": maxiter, "xtol": xtol})
    wt, J, dJ, _ = cache(np.asarray(res.x))
    return wt, float(J), float(torch.linalg.vector_norm(dJ)), int(res.nit), str(res.message)


def preregister(problem: SuperResolutionProblem, *, thetas: Sequence[float] = PREREG_THETAS, loss: Loss = "norm",
                continuation: bool = False, optimizer: Literal["newton-cg", "trust-exact"] | None = None,
                maxiter: int = 50, xtol: float = 1e-5, gtol: float = 1e-6,
                variant: str = "as_coded", blur_data: bool | None = None) -> PreregistrationResult:
    r"""Multi-scale pre-registration of the templates to template 0; its ``w`` is the variant's parameter vector
    (the LM start).

    Parameters
    ----------
    thetas
        Scales, largest first (default ``logspace(2, -3, 6)``).
    loss
        ``"norm"`` (Figs 5-6) or ``"squared"`` (Figs 7-11).
    continuation
        ``False``: every scale starts at the identity (the authors' code); ``True``: warm start from the
        previous scale (the fix).
    optimizer
        ``"newton-cg"`` (SciPy, ``maxiter`` and ``xtol`` as the authors: ``gtol`` is ignored) or
        ``"trust-exact"`` (:func:`~imreg_lib.optimizers.newton_trust_region` with ``gtol`` and ``maxiter``).
        Default: ``"newton-cg"`` without continuation, ``"trust-exact"`` with it.
    maxiter, xtol, gtol
        Per-scale limits (see ``optimizer``).
    variant
        ``"as_coded"`` (all :math:`6q` parameters) or ``"paper"`` (template 0 fixed, :math:`6(q-1)`).
    blur_data
        Blur the data at each scale like the model (:func:`prereg_objective`); default: with continuation
        (a scale-space continuation compares like with like), not without (the authors' code).
    """
    thetas = tuple(float(t) for t in thetas)
    if not thetas or not all(math.isfinite(t) and t >= 0 for t in thetas):
        raise ValueError(f"thetas must be a non-empty sequence of finite numbers >= 0, got {thetas}")
    _checks.one_of("loss", loss, ("norm", "squared"), words=True)
    optimizer = optimizer or ("trust-exact" if continuation else "newton-cg")
    _checks.one_of("optimizer", optimizer, ("newton-cg", "trust-exact"), words=True)
    _checks.one_of("variant", variant, ("as_coded", "paper"), words=True)
    _checks.integer("maxiter", maxiter, 1)
    for name, value in (("xtol", xtol), ("gtol", gtol)):
        _checks.positive_number(name, value)
    fix_first = variant == "paper"
    if fix_first and problem.n_templates < 2:
        raise ValueError("variant='paper' fixes template 0, so it needs n_templates >= 2")
    blur_data = continuation if blur_data is None else bool(blur_data)
    identity = problem.identity()[6:] if fix_first else problem.identity()
    w, history = identity, []
    for theta in thetas:
        start = w if continuation else identity
        derivatives = prereg_objective(problem, theta, loss=loss, fix_first=fix_first, blur_data=blur_data)
        t0 = time.perf_counter()
        if optimizer == "newton-cg":
            w, J, g, nit, msg = _newton_cg(derivatives, start, maxiter, xtol)
        else:
            res = newton_trust_region(derivatives, start, gtol=gtol, maxiter=maxiter, method="trust-exact")
            w, J, g, nit, msg = res.w, res.loss, res.grad_norm, res.iterations, res.message
        history.append(PreregistrationScale(theta, start, w, J, g, nit, time.perf_counter() - t0, msg))
    return PreregistrationResult(w, tuple(history), loss, continuation, optimizer, blur_data)


def preregistration_starts(problem: SuperResolutionProblem, *, variant: str = "as_coded",
                           ) -> dict[tuple[str, bool], PreregistrationResult]:
    """Both losses under both schedules: ``{(loss, continuation): PreregistrationResult}``, in the order
    ``("norm", True)``, ``("norm", False)``, ``("squared", True)``, ``("squared", False)``.

    Figs 5-6 start from the ``"norm"`` pre-registration, Figs 7-11 from the ``"squared"`` one (the authors'
    notebooks differ); ``continuation=True`` is the fix, ``False`` the authors' restarts (:func:`preregister`).
    """
    jobs = {(loss, cont): functools.partial(preregister, problem, loss=loss, continuation=cont, variant=variant)
            for loss in ("norm", "squared") for cont in (True, False)}
    return run_jobs(jobs, cpu=problem.device.type == "cpu")  # independent: side by side where workers are
