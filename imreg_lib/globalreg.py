r"""Global affine registration: a rotation search at a coarse scale, then continuation in θ with exact Newton.

The multi-scale drivers of :mod:`imreg_lib.multiscale` start at the identity, so a pair whose motion lies outside
the basin that continuation in θ follows (a rotation near 90° on some images) is lost. This driver adds a cheap
global start, built from the same two tools:

1. **Search.** At a coarse scale :math:`\theta_s` the objective :math:`J(\cdot; \theta_s)` sees only the coarse
   shape of the images: its basins are few and wide. The driver evaluates :math:`J(w_k; \theta_s)` at ``n_angles``
   rotations :math:`w_k` about the centre of the reference's domain (2D: angles :math:`2\pi k / K`; 3D: rotations
   about :math:`z` combined with tilts about :math:`x` and :math:`y`), all in one batched evaluation, and keeps the
   ``keep`` lowest (default: the lowest alone).
2. **Refine.** Exact-Hessian trust-region Newton (:func:`newton_exact`) at :math:`\theta_s` from each kept start;
   the lowest minimum wins. A Newton step at a coarse scale costs as much as at a fine one, but few are needed.
3. **Continue.** Newton at each scale of a short log-spaced schedule from :math:`\theta_s` down to
   :math:`\theta_{\min}`, warm-started at the previous minimiser (the traditional method of the paper's §3, on a
   shorter schedule), with a loose tolerance on the way and the tight one at :math:`\theta_{\min}`.

The driver minimises whatever objective it is given. On the SSD (the paper's objective) a motion that moves part of
the image out of the template's view is not the minimiser: those points are compared with the template's zero
extension. On the mean squares over the overlap (``SSDObjective(..., overlap=True)``, SimpleITK's metric, with exact
derivatives) it is; the search then ranks its starts on the same overlap-weighted mean. The book's comparison page
and the command line use the overlap.

:func:`newton_exact` is the paper's trust-region Newton (SciPy's ``trust-exact`` algorithm: the subproblem solved
exactly through the eigen-decomposition of the small Hessian) written against torch tensors, so that one
iteration costs one evaluation of :math:`(J, \nabla J, H)` and no conversion beyond the :math:`p \times p`
matrix; the trust radius is carried from one scale to the next.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from . import _checks
from .objective import SSDObjective
from .spline import spline_evaluate
from .transformations import Affine, affine

__all__ = ["GlobalResult", "GlobalScale", "NewtonExactResult", "THETA_SEARCH", "global_register", "newton_exact",
           "rotation_starts"]

#: The default coarse scale of the search and the refinement (:func:`global_register`'s ``theta_search``).
THETA_SEARCH = 10.0

#: Cell centres (at most, about) on which the search ranks its starts: at the search's coarse scale every 2nd
#: centre per axis of a 32 × 32 image ranks the starts of the book's 2D and 3D capture sweeps as all of them do.
SEARCH_POINTS = 256

#: Below this many times :math:`\epsilon |J|` a predicted decrease is not resolved by the computed :math:`J`
#: (:func:`newton_exact` then lets the gradient norm decide). At the last Newton steps on a 64 × 56 × 48 volume,
#: where 0.01-4 :math:`\epsilon |J|` was predicted, the computed decreases scattered by up to 23 :math:`\epsilon |J|`,
#: of either sign.
RESOLVED_DECREASE = 1e3
_EPS = float(np.finfo(np.float64).eps)

Derivatives = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class NewtonExactResult:
    """Outcome of :func:`newton_exact`.

    Attributes
    ----------
    w, loss, grad_norm
        The final point, :math:`J` and :math:`\\|\\nabla J\\|` there.
    iterations, n_evaluations
        Trust-region iterations (accepted or not) and evaluations of ``(J, ∇J, H)`` (one per iteration, plus the
        start).
    radius
        The trust radius at the end (to start the next scale with).
    converged
        Whether :math:`\\|\\nabla J\\| <` ``gtol`` was reached (rather than ``max_iter`` or a vanishing radius).
    """

    w: torch.Tensor
    loss: float
    grad_norm: float
    iterations: int
    n_evaluations: int
    radius: float
    converged: bool


def _trust_step(g: np.ndarray, H: np.ndarray, radius: float) -> np.ndarray:
    r"""The exact minimiser of :math:`g^\top p + \tfrac12 p^\top H p` over :math:`\|p\| \le \Delta`.

    With :math:`H = V \Lambda V^\top` and :math:`\tilde g = V^\top g`, the solution is
    :math:`p(\mu) = -V (\Lambda + \mu I)^{-1} \tilde g` with :math:`\mu = 0` when :math:`H` is positive definite and
    the Newton step fits, else the :math:`\mu > \max(0, -\lambda_{\min})` with :math:`\|p(\mu)\| = \Delta`, found by
    Newton's method on :math:`1/\|p(\mu)\| - 1/\Delta` (Moré and Sorensen); in the hard case (:math:`\tilde g` has
    no component along the lowest eigenvector) the step is completed along that eigenvector to the boundary.
    """
    lam, V = np.linalg.eigh(0.5 * (H + H.T))
    gt = V.T @ g
    scale = max(abs(lam[-1]), 1e-300)
    if lam[0] > 1e-12 * scale:
        p = -gt / lam
        if np.linalg.norm(p) <= radius:
            return V @ p
    lo = max(0.0, -lam[0])
    if abs(gt[0]) <= 1e-12 * np.linalg.norm(gt) and lam[0] <= 0:  # hard case
        rest = -gt[1:] / np.maximum(lam[1:] - lam[0], 1e-300)
        nr2 = float(rest @ rest)
        if nr2 < radius * radius:
            return V @ np.concatenate([[math.sqrt(radius * radius - nr2)], rest])
    mu = lo + 1e-10 * scale  # left of the root: Newton on the concave 1/||p(mu)|| rises to it monotonically
    if not mu > lo:  # a negative eigenvalue far larger than the largest positive one: step off by its own size
        mu = lo + 1e-10 * max(lo, scale)
    for _ in range(60):
        d = lam + mu
        q = gt / d
        nq = float(np.linalg.norm(q))
        phi = 1.0 / nq - 1.0 / radius
        if abs(phi) * radius < 1e-8:
            break
        dphi = float(q @ (q / d)) / nq**3  # d(1/||q||)/dmu
        step = phi / dphi
        mu_new = mu - step
        if mu_new > lo:
            mu = mu_new
        elif 0.5 * (mu + lo) > lo:
            mu = 0.5 * (mu + lo)
        else:  # mu is next to lo in floating point: a step further would divide by zero
            break
    return -V @ (gt / (lam + mu))


def newton_exact(derivatives: Derivatives, w0: torch.Tensor, *, gtol: float = 1e-4, max_iter: int = 200,
                 radius: float | None = None, first: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                 ) -> NewtonExactResult:
    r"""Trust-region Newton with the exact Hessian (SciPy's ``trust-exact`` algorithm) on torch tensors.

    Each iteration solves the trust-region subproblem exactly (:func:`_trust_step`), evaluates
    :math:`(J, \nabla J, H)` at the trial point once, and accepts it when the actual decrease is at least 15 % of
    the predicted one (:math:`\rho > 0.15`); the radius shrinks by 4 when :math:`\rho < 1/4` and doubles when
    :math:`\rho > 3/4` at the boundary (Nocedal and Wright, Algorithm 4.1).

    Near the minimum the predicted decrease can fall below the round-off of :math:`J` itself (a sum over every
    cell), where the computed :math:`\rho` is noise and a good Newton step is rejected again and again while the
    radius shrinks. Where the predicted decrease is below ``RESOLVED_DECREASE`` :math:`\cdot \epsilon\,|J|`, a step
    that :math:`\rho` rejects is accepted (as with :math:`\rho = 1`) when it lowers :math:`\|\nabla J\|`.

    Parameters
    ----------
    derivatives
        ``w -> (J, ∇J, H)`` (e.g. :meth:`imreg_lib.ScaleObjective.derivatives`).
    w0
        The start.
    gtol
        Stop when :math:`\|\nabla J\| <` ``gtol``.
    max_iter
        Iteration limit.
    radius
        The initial trust radius (default: the norm of the first Newton step, at least 1).
    first
        ``(J, ∇J, H)`` at ``w0`` if the caller has them (saves one evaluation).
    """
    _checks.positive_number("gtol", gtol)
    _checks.integer("max_iter", max_iter, 1)
    w = w0
    J, g, H = derivatives(w) if first is None else first
    n_eval = 1 if first is None else 0
    Jf, gn, Hn = float(J), g.detach().cpu().numpy(), H.detach().cpu().numpy()
    if radius is None:
        try:
            radius = max(1.0, float(np.linalg.norm(np.linalg.solve(Hn, gn))))
        except np.linalg.LinAlgError:
            radius = 1.0
    it, converged = 0, False
    while it < max_iter:
        gnorm = float(np.linalg.norm(gn))
        if gnorm < gtol:
            converged = True
            break
        p = _trust_step(gn, Hn, radius)
        pn = float(np.linalg.norm(p))
        predicted = -(float(gn @ p) + 0.5 * float(p @ Hn @ p))
        it += 1
        if not (predicted > 0) or pn < 1e-15 * (1.0 + float(torch.linalg.vector_norm(w))):
            break  # no decrease left to predict: round-off level
        wt = w + torch.as_tensor(p, dtype=w.dtype, device=w.device)
        Jt, gt, Ht = derivatives(wt)
        n_eval += 1
        rho = (Jf - float(Jt)) / predicted
        if (rho <= 0.15 and predicted < RESOLVED_DECREASE * _EPS * abs(Jf)
                and float(torch.linalg.vector_norm(gt)) < gnorm):
            rho = 1.0  # J cannot tell this decrease from its round-off: the gradient decides
        if rho < 0.25:
            radius = 0.25 * pn
        elif rho > 0.75 and pn >= 0.99 * radius:
            radius = 2.0 * radius
        if rho > 0.15:
            w, Jf, gn, Hn = wt, float(Jt), gt.detach().cpu().numpy(), Ht.detach().cpu().numpy()
        if radius < 1e-12 * (1.0 + float(torch.linalg.vector_norm(w))):
            break  # no step predicts the change: the objective is not smooth here (a point left the spline window)
    return NewtonExactResult(w, Jf, float(np.linalg.norm(gn)), it, n_eval, float(radius), converged)


def _rotation(dim: int, angles: Sequence[float]) -> torch.Tensor:
    if dim == 2:
        (a,) = angles
        return torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
    az, ax, ay = angles
    Rz = torch.tensor([[math.cos(az), -math.sin(az), 0.0], [math.sin(az), math.cos(az), 0.0], [0.0, 0.0, 1.0]],
                      dtype=torch.float64)
    Rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(ax), -math.sin(ax)], [0.0, math.sin(ax), math.cos(ax)]],
                      dtype=torch.float64)
    Ry = torch.tensor([[math.cos(ay), 0.0, math.sin(ay)], [0.0, 1.0, 0.0], [-math.sin(ay), 0.0, math.cos(ay)]],
                      dtype=torch.float64)
    return Rz @ Rx @ Ry


def _orientation(orientation: torch.Tensor | None, dim: int) -> torch.Tensor | None:
    if orientation is None:
        return None
    O = torch.as_tensor(orientation, dtype=torch.float64).cpu()
    if O.shape != (dim, dim) or not bool(torch.isfinite(O).all()) or abs(float(torch.linalg.det(O))) < 1e-12:
        raise ValueError(f"orientation must be an invertible {dim} x {dim} matrix, got {orientation!r}")
    return O


def rotation_starts(objective: SSDObjective, n_angles: int = 12, tilts_deg: Sequence[float] = (30.0,),
                    orientation: torch.Tensor | None = None) -> torch.Tensor:
    r"""Affine parameters of rotations that take the centre :math:`c_R` of the reference's domain to the centre
    :math:`c_T` of the template's, :math:`y(x) = O R(x - c_R) + c_T`, one per row (:math:`c_R = c_T` when both
    images share a domain).

    2D: the ``n_angles`` angles :math:`2\pi k / K`. 3D: the ``n_angles`` rotations about :math:`z`, each alone and
    combined with a tilt of :math:`\pm` each of ``tilts_deg`` about :math:`x` and about :math:`y`. ``orientation``
    is :math:`O` (default the identity): the template's axes seen from the reference's where the two differ by
    what no rotation reaches (image files whose direction matrices differ by a reflection).
    """
    _checks.integer("n_angles", n_angles, 1)
    dim = objective.grid.dim
    O = _orientation(orientation, dim)
    c = torch.tensor(objective.grid.center(), dtype=torch.float64)
    c_t = torch.tensor(objective.template.grid.center(), dtype=torch.float64)
    turns = [2.0 * math.pi * k / n_angles for k in range(n_angles)]
    if dim == 2:
        rotations = [(a,) for a in turns]
    else:
        tilts = [(0.0, 0.0)]
        for t in tilts_deg:
            r = math.radians(float(t))
            tilts += [(r, 0.0), (-r, 0.0), (0.0, r), (0.0, -r)]
        rotations = [(a, tx, ty) for a in turns for tx, ty in tilts]
    rows = []
    for angles in rotations:
        R = _rotation(dim, angles) if O is None else O @ _rotation(dim, angles)
        rows.append(torch.cat([R.reshape(-1), c_t - R @ c]))
    ref = objective.reference
    return torch.stack(rows).to(device=ref.device, dtype=ref.dtype)


@dataclass(frozen=True)
class GlobalScale:
    """One scale of :func:`global_register`'s continuation: θ, Newton iterations and evaluations, the result, and
    which continuation it belongs to (0 the first; more than one with ``select="final"``)."""

    theta: float
    iterations: int
    n_evaluations: int
    loss: float
    grad_norm: float
    path: int = 0


@dataclass(frozen=True)
class GlobalResult:
    r"""Outcome of :func:`global_register`.

    Attributes
    ----------
    w, final_loss
        The found parameters and :math:`J(w; \theta_{\min})`.
    start
        The winning start: a row of :func:`rotation_starts`, or of ``extra_starts``.
    search_losses
        The search's :math:`J(w_k; \theta_s)` (on a subset of the cell centres, up to a common factor) at every
        start, in the order of :func:`rotation_starts`.
    refined_losses
        The minimum at :math:`\theta_s` reached from each kept start and each extra start (best first).
    scales
        The continuation, coarse to fine (the refinement at :math:`\theta_s` first).
    n_evaluations, iterations
        Evaluations of :math:`(J, \nabla J, H)` and Newton iterations, refinement and continuation together (the
        search's batched loss evaluation not counted).
    seconds
        Wall time.
    """

    w: torch.Tensor
    final_loss: float
    start: torch.Tensor
    search_losses: tuple[float, ...]
    refined_losses: tuple[float, ...]
    scales: tuple[GlobalScale, ...]
    n_evaluations: int
    iterations: int
    seconds: float


def _same_motion(wa: torch.Tensor, wb: torch.Tensor, grid) -> bool:
    """Whether two affine maps move every corner of ``grid``'s domain to within one cell of each other."""
    corners = torch.tensor(list(itertools.product(*zip(grid.omega[0::2], grid.omega[1::2], strict=True))),
                           dtype=wa.dtype, device=wa.device)
    gap = (affine(wa, corners) - affine(wb, corners)).abs().max()
    return bool(gap < max(grid.h))


def _search_losses(objective: SSDObjective, theta: float, W: torch.Tensor, points: int | None = None) -> torch.Tensor:
    r""":math:`J(w_k; \theta)` up to a common factor for every row :math:`w_k` of ``W``, on a regular subset of at
    most about ``points`` cell centres (every :math:`s`-th per dimension): at a coarse scale the images are smooth,
    so the subset ranks the starts as the full grid does, at a fraction of the cost (3D). One batched spline
    evaluation for all starts."""
    scale = objective.at_scale(theta)
    grid = objective.grid
    points = SEARCH_POINTS if points is None else points
    stride = max(1, math.ceil((math.prod(grid.m) / points) ** (1.0 / grid.dim)))
    index = tuple(slice(None, None, stride) for _ in grid.m)
    x = objective.x.reshape(grid.m + (grid.dim,))[index].reshape(-1, grid.dim)
    R = scale.reference_values.reshape(grid.m)[index].reshape(-1)
    d = grid.dim
    A, b = W[:, : d * d].reshape(-1, d, d), W[:, d * d:]
    y = torch.einsum("kij,nj->kni", A, x) + b[:, None, :]
    tmpl = objective.template
    T = spline_evaluate(scale.template_coefficients, y.reshape(-1, d), tmpl.grid, window=tmpl.window)
    r = T.reshape(W.shape[0], -1) - R
    if not objective.overlap:
        return torch.sum(r * r, dim=1)
    m = objective.overlap_weights(y.reshape(-1, d))[0].reshape(W.shape[0], -1)
    M = torch.sum(m, dim=1)
    return torch.where(M > 0, torch.sum(m * r * r, dim=1) / torch.where(M > 0, M, 1.0), math.inf)


def global_register(objective: SSDObjective, *, theta_search: float = THETA_SEARCH, theta_min: float = 1e-3,
                    n_scales: int = 5, n_angles: int = 12, tilts_deg: Sequence[float] = (30.0,), keep: int = 1,
                    gtol: float = 1e-4, gtol_path: float = 0.3, max_iter: int = 100,
                    orientation: torch.Tensor | None = None, extra_starts: torch.Tensor | None = None,
                    select: str = "refined", score: Callable[[torch.Tensor], float] | None = None,
                    coarse_objective: SSDObjective | None = None, theta_fine: float = 0.05,
                    callback: Callable[[GlobalScale], None] | None = None) -> GlobalResult:
    r"""Register globally: rotation search at ``theta_search``, exact Newton from the best starts, then
    continuation down to ``theta_min`` (see the module notes).

    Parameters
    ----------
    objective
        An affine objective (2D or 3D): the SSD, or the mean squares over the overlap (``overlap=True``).
    theta_search
        The coarse scale of the search and the refinement.
    theta_min
        The finest scale (where the result is scored).
    n_scales
        Scales of the continuation from ``theta_search`` to ``theta_min`` (log-spaced, both included; >= 2).
    n_angles, tilts_deg
        The starts of :func:`rotation_starts`.
    keep
        How many of the best starts are refined (>= 1).
    gtol, gtol_path
        Gradient tolerance at ``theta_min``, and relative to the gradient at each start on the way (refinement and
        intermediate scales: a coarse minimiser needs only to be in the right basin).
    max_iter
        Newton iterations per scale.
    orientation
        The starts' :math:`O` (:func:`rotation_starts`; default the identity).
    extra_starts
        Starts refined besides the search's best, whatever their search loss, one per row (or one vector): priors
        the caller trusts (the command line passes the identity in the files' physical space, where ITK's
        registrations start, and a similarity from the images' moments).
    select
        ``"refined"``: the lowest minimum at ``theta_search`` is continued alone. ``"final"``: every distinct
        minimum at ``theta_search`` (refined points more than a cell apart somewhere in the domain) is continued,
        and the lowest ``score`` wins; dearer where the starts disagree, safer where a coarse scale ranks
        them wrongly (a template of another size).
    score
        How ``select="final"`` ranks the continuations' results ``w`` (lower is better); default
        :math:`J(w; \theta_{\min})` of ``objective``. On the overlap a result that leaves almost no overlap can
        score near zero; the command line ranks by the SSD with the template's zero extension instead.
    coarse_objective, theta_fine
        Optionally the same problem on a coarser grid of the same domain (the images averaged over larger cells),
        used for the search, the refinement and every scale above ``theta_fine``, where the images are smooth;
        ``objective`` takes the scales at or below ``theta_fine`` (>= ``theta_min``). Large 3D images: each coarse
        Newton iteration costs a fraction of a fine one. Default: ``objective`` at every scale.
    callback
        Called with each scale's :class:`GlobalScale` when it is done (progress reports).
    """
    t0 = time.perf_counter()
    if not isinstance(objective.transformation, Affine):
        raise ValueError(f"objective.transformation must be imreg_lib.Affine for the rotation search, got "
                         f"{type(objective.transformation).__name__}")
    for name, v in (("theta_search", theta_search), ("theta_min", theta_min), ("gtol", gtol),
                    ("gtol_path", gtol_path)):
        _checks.positive_number(name, v)
    if not theta_search > theta_min:
        raise ValueError(f"theta_search must be larger than theta_min, got theta_search={theta_search!r}, "
                         f"theta_min={theta_min!r}")
    _checks.integer("n_scales", n_scales, 2)
    _checks.integer("keep", keep, 1)
    _checks.integer("max_iter", max_iter, 1)
    _checks.one_of("select", select, ("refined", "final"))
    if score is not None and not callable(score):
        raise ValueError(f"score must be None or a function of w, got {score!r}")
    if coarse_objective is not None:
        _checks.positive_number("theta_fine", theta_fine)
        if not theta_fine >= theta_min:
            raise ValueError(f"theta_fine must be at least theta_min (the finest scale uses objective), got "
                             f"theta_fine={theta_fine!r}, theta_min={theta_min!r}")
        if (coarse_objective.grid.omega != objective.grid.omega or coarse_objective.overlap != objective.overlap
                or type(coarse_objective.transformation) is not type(objective.transformation)):
            raise ValueError("coarse_objective must be objective's problem on another grid of the same domain "
                             f"(omega {objective.grid.omega}), with the same transformation and overlap setting")

    def at(theta: float) -> SSDObjective:  # the objective of one scale
        return objective if coarse_objective is None or theta <= theta_fine else coarse_objective

    extra = [] if extra_starts is None else list(torch.atleast_2d(torch.as_tensor(extra_starts)))
    for w in extra:
        objective.transformation.check(w)
    starts = rotation_starts(objective, n_angles, tilts_deg, orientation)
    losses = _search_losses(at(theta_search), theta_search, starts)
    candidates = [starts[k] for k in torch.argsort(losses)[:keep].tolist()]
    candidates += [w.to(device=starts.device, dtype=starts.dtype) for w in extra]
    searched = at(theta_search).at_scale(theta_search)
    n_eval, iters, runs = 0, 0, []
    for start in candidates:
        first = searched.derivatives(start, "exact")
        tol = max(gtol, gtol_path * float(torch.linalg.vector_norm(first[1])))
        res = newton_exact(searched.derivatives, start, gtol=tol, max_iter=max_iter, first=first)
        n_eval, iters = n_eval + res.n_evaluations + 1, iters + res.iterations
        runs.append((res.loss, start, res))
    runs.sort(key=lambda r: r[0])  # stable: among equal minima the first start wins
    refined_losses = [r[0] for r in runs]
    if select == "refined":
        runs = runs[:1]
    thetas = torch.logspace(math.log10(theta_search), math.log10(theta_min), n_scales, dtype=torch.float64).tolist()
    # the continuations advance together, one scale at a time; one that comes within a cell of another with a lower
    # loss at the same scale has joined it and stops (select="final": start with one per distinct coarse minimum)
    paths = []
    for path, (_, start, res) in enumerate(runs):
        paths.append({"start": start, "w": res.w, "radius": res.radius, "scales": [GlobalScale(
            float(theta_search), res.iterations, res.n_evaluations, res.loss, res.grad_norm, path)]})
    for n, theta in enumerate(thetas):
        if n > 0:
            scale = at(theta).at_scale(theta)
            for p in paths:
                first = scale.derivatives(p["w"], "exact")
                last = n == len(thetas) - 1
                tol = gtol if last else max(gtol, gtol_path * float(torch.linalg.vector_norm(first[1])))
                res = newton_exact(scale.derivatives, p["w"], gtol=tol, max_iter=max_iter, radius=p["radius"],
                                   first=first)
                n_eval, iters = n_eval + res.n_evaluations + 1, iters + res.iterations
                p["w"], p["radius"] = res.w, max(res.radius, 1e-3)
                p["scales"].append(GlobalScale(float(theta), res.iterations, res.n_evaluations + 1, res.loss,
                                               res.grad_norm, p["scales"][0].path))
        kept = []
        for p in sorted(paths, key=lambda p: p["scales"][-1].loss):
            if not any(_same_motion(p["w"], q["w"], at(theta).grid) for q in kept):
                kept.append(p)
        paths = sorted(kept, key=lambda p: p["scales"][0].path)
        if callback is not None:
            for p in paths:
                callback(p["scales"][-1])
    best = None
    for p in paths:
        value = p["scales"][-1].loss if score is None else float(score(p["w"]))
        if best is None or value < best[0]:
            best = (value, p["start"], p["w"], p["scales"])
    _, start_best, w, scales = best
    return GlobalResult(w, scales[-1].loss, start_best, tuple(float(v) for v in losses), tuple(refined_losses),
                        tuple(scales), n_eval, iters, time.perf_counter() - t0)
