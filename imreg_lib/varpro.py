r"""Variable projection for coupled super-resolution (paper §4.2-4.3).

The image is eliminated by the projection :math:`f_0(w) = \arg\min_f \|A(w) f - b\|^2`, the solution of the
normal equations :math:`A^\top A f = A^\top b` (computed by CG from ``f_init``), and Gauss-Newton (Levenberg-
Marquardt) runs on the reduced residual.

Residual and parameters
-----------------------
Template 0 is the reference frame: it is fixed to the identity, and the :math:`6(q-1)` parameters of the other
templates are free (moving every template and the image together changes nothing, so with template 0 free the
motion would not be determined). The residual is eq. (7), the one whose squared norm the projection minimises,

.. math::  r(w) = A(w) f_0(w) - b

(with the :math:`\sqrt{h}` weights and the :math:`\lambda L` rows), so that :math:`\|r(w)\|^2` is the
least-squares objective with the image eliminated and its Jacobian is the derivative of that objective's residual.
Both are hooks of :class:`VarPro`: a subclass may free other parameters (:attr:`~VarPro.n_params`,
:meth:`~VarPro.full_parameters`, :meth:`~VarPro.reduced_parameters`) or fit another affine residual
:math:`r(w, f) = M(w) f - c` (:meth:`~VarPro.residual_map`); every Jacobian method follows.

Jacobian (``method``)
---------------------
With :math:`\dot{}` the derivative along a parameter direction,
:math:`\dot r = \partial_w r\,\dot w + (\partial r / \partial f)\, \dot f_0` (paper eq. 8).

* ``"diff_all"``, ``"no_diff"``, ``"last_restarted"``, ``"last_continued"``: forward-mode AD (``jacfwd``)
  through CG with the corresponding :func:`~imreg_lib.cg.conjugate_gradient` mode (``"no_diff"`` keeps only
  :math:`\partial_w r`; the ``last_*`` modes trace the last ``fraction`` of ``cg_iters`` iterations). A small
  ``cg_iters`` with ``"diff_all"`` is the inexact projection of Figs 10-11.
* ``"implicit"``: the exact derivative of the exact projection. Differentiating
  :math:`A^\top A f_0 = A^\top b` gives (implicit-function theorem)

  .. math::
      \frac{\partial f_0}{\partial w} = (A^\top A)^{-1} \Big[\partial_w (A^\top b) - \partial_w (A^\top A)\,
      f_0\Big] = (A^\top A)^{-1} \partial_w\Big[A(w)^\top \big(b - A(w) f_0\big)\Big]_{f_0 \text{ fixed}},

  whose right-hand sides (one per parameter) come from one ``jacfwd`` at fixed :math:`f_0`; the :math:`6q`
  systems are solved by **one** batched CG (``vmap`` over the right-hand sides; the CG masks converged
  columns, see :mod:`imreg_lib.cg`). Then :math:`J = \partial_w r + (\partial r/\partial f)\,
  \partial f_0/\partial w`. The projection itself is solved to a tight relative tolerance (``implicit_rtol``)
  so that the derivative belongs to the residual that is reported.

Nothing is kept between evaluations but plain tensors: forward mode builds no graph, and the drivers hold
only the parameters, the residual and the projection of the current point, so memory stays flat over
Gauss-Newton iterations.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch.func import jacfwd, vmap

from . import _checks
from ._sroperator import CachesNotPickled
from ._srsparse import assemble, assembled_suitable
from ._torch import is_traced
from .cg import CGResult, conjugate_gradient, conjugate_gradient_tangents
from .optimizers import LMResult, levenberg_marquardt
from .superres import SROperator, SuperResolutionProblem
from .timing import rss_mb

__all__ = ["VARPRO_METHODS", "VarPro", "VarProRun", "reconstruct", "relative_error", "varpro_levenberg_marquardt"]

#: Jacobian methods of :class:`VarPro`.
VARPRO_METHODS = ("diff_all", "no_diff", "last_restarted", "last_continued", "implicit")

_CG_MODE = {"diff_all": "all", "no_diff": "none", "last_restarted": "last_restarted",
            "last_continued": "last_continued"}


@dataclass(frozen=True, eq=False)
class VarPro(CachesNotPickled):
    r"""The variable-projection residual and its Jacobians for a :class:`SuperResolutionProblem`.

    Parameters
    ----------
    problem
        The super-resolution problem.
    method
        Jacobian method, one of :data:`VARPRO_METHODS` (module docstring).
    cg_iters
        CG iteration budget :math:`N` of each projection (paper: 500 for Figs 5-6, 200 for Figs 7-9, 1-100 for
        Figs 10-11). Not used by ``"implicit"``.
    tol
        Absolute CG tolerance on :math:`\|A^\top b - A^\top A f\|` (paper: 1e-3).
    fraction
        Traced fraction :math:`p` for the ``last_*`` methods.
    adjoint
        ``"exact"`` (hand-written transpose) or ``"ad"`` (``torch.func.vjp``, the authors' way) inside CG.
    implicit_rtol, implicit_max_iter
        Relative tolerance and iteration limit of the projection and of the batched derivative solve of
        ``"implicit"`` (default limit: 10 times the number of pixels).

    Attributes
    ----------
    variant
        The name of the residual and parametrisation, recorded in :class:`VarProRun`: ``"paper"`` (eq. 7, template
        0 fixed; module docstring). A subclass that changes them names its own.
    """

    variant: ClassVar[str] = "paper"

    problem: SuperResolutionProblem
    method: str = "diff_all"
    cg_iters: int = 500
    tol: float = 1e-3
    fraction: float = 1.0
    adjoint: str = "exact"
    implicit_rtol: float = 1e-10
    implicit_max_iter: int | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.problem, SuperResolutionProblem):
            raise ValueError(f"problem must be a SuperResolutionProblem, got {type(self.problem).__name__}")
        _checks.one_of("method", self.method, VARPRO_METHODS)
        if self.n_params < 1:
            raise ValueError(f"{type(self).__name__} fixes template 0 to the identity, so it needs n_templates >= 2")
        _checks.integer("cg_iters", self.cg_iters, 0, allowed="an integer >= 0")
        _checks.positive_number("tol", self.tol, allow_zero=True)
        _checks.fraction("fraction", self.fraction)
        _checks.one_of("adjoint", self.adjoint, ("exact", "ad"), words=True)
        _checks.positive_number("implicit_rtol", self.implicit_rtol, allow_zero=True)
        if self.implicit_max_iter is not None:
            _checks.integer("implicit_max_iter", self.implicit_max_iter, 1, allowed="an integer >= 1")

    # --- parameters --------------------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        """The number of free parameters, :math:`6(q-1)` (template 0 is fixed)."""
        return self.problem.n_params - 6

    def check_parameters(self, w: torch.Tensor) -> None:
        """``ValueError`` unless ``w`` is a tensor of shape ``(n_params,)``."""
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != (self.n_params,):
            shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise ValueError(f"w must be a tensor of shape ({self.n_params},) for {type(self).__name__} "
                             f"(variant {self.variant!r}), got {shape}")

    def full_parameters(self, w: torch.Tensor) -> torch.Tensor:
        """All :math:`6q` parameters from the free ones ``w``: the identity for template 0 first."""
        self.check_parameters(w)
        return torch.cat([self.problem.identity()[:6].to(w.dtype), w])

    def reduced_parameters(self, w_full: torch.Tensor) -> torch.Tensor:
        """The free parameters from all :math:`6q` (drops template 0)."""
        self.problem.check_parameters(w_full)
        return w_full[6:]

    def identity(self) -> torch.Tensor:
        return self.reduced_parameters(self.problem.identity())

    # --- projection and residual ------------------------------------------------------------------
    @property
    def _implicit_max_iter(self) -> int:
        return self.implicit_max_iter or 10 * self.problem.n_pixels

    def projection(self, w: torch.Tensor) -> CGResult:
        r""":math:`f_0(w)` by CG on the normal equations from ``f_init``, traced as ``method`` says.

        Small problems on the CPU at a plain ``w`` (:func:`~imreg_lib._srdense.dense_suitable`) run CG on the
        assembled :math:`A^\top A` (the same iterations on the same linear map, rounded differently); under a
        ``torch.func`` transform, or with ``fast_paths(False)``, the matrix-free operator is traced."""
        if assembled_suitable(self.problem, w, self.adjoint):
            D = self._assembled(w)
            if self.method == "implicit":
                return conjugate_gradient(D.normal, D.rhs(), self.problem.f_init, max_iter=self._implicit_max_iter,
                                          tol=0.0, rtol=self.implicit_rtol, differentiate="none")
            return conjugate_gradient(D.normal, D.rhs(), self.problem.f_init, max_iter=self.cg_iters, tol=self.tol,
                                      differentiate=_CG_MODE[self.method], fraction=self.fraction)
        op = self.problem.operator(self.full_parameters(w))
        const = op.detach()
        normal = lambda v: op.normal(v, self.adjoint)  # noqa: E731
        constant_normal = lambda v: const.normal(v, self.adjoint)  # noqa: E731
        f_init = self.problem.f_init
        if self.method == "implicit":
            return conjugate_gradient(constant_normal, const.normal_rhs(self.adjoint), f_init,
                                      max_iter=self._implicit_max_iter, tol=0.0, rtol=self.implicit_rtol,
                                      differentiate="none")
        rhs = (const if self.method == "no_diff" else op).normal_rhs(self.adjoint)
        return conjugate_gradient(normal, rhs, f_init, max_iter=self.cg_iters, tol=self.tol,
                                  differentiate=_CG_MODE[self.method], fraction=self.fraction,
                                  constant_operator=constant_normal)

    def _assembled(self, w: torch.Tensor):
        """The assembled operator at ``w`` (the last one is kept: LM asks for the residual and the Jacobian at the
        same point)."""
        key = w.detach().cpu().numpy().tobytes()
        hit = self._cache.get("assembled")
        if hit is None or hit[0] != key:
            hit = (key, assemble(self.problem, self.full_parameters(w.detach())))
            self._cache["assembled"] = hit
        return hit[1]

    def dense_residual(self, D):
        r"""The residual map on the assembled operator ``D``: ``(apply, partial, c)`` with
        :math:`r(w, f) = \text{apply}(f) - c` (``apply`` also on blocks ``(n, B)``) and
        :math:`\text{partial}(f) = \partial_w r(w, f)` (``(n_residuals, 6q)``), or ``None`` for a subclass that
        changed :meth:`residual_map` without giving its own (the generic path then differentiates).
        Eq. (7): :math:`[\sqrt{h^d}(G f - d);\ \lambda\sqrt{h^f} L f]`."""
        if type(self).residual_map is not VarPro.residual_map:
            return None
        pb = self.problem
        s = pb.data_scale
        zeros = torch.zeros(pb.n_rows - pb.n_data, pb.n_params, dtype=pb.dtype, device=pb.device)
        return (lambda F: torch.cat([s * D.data_map(F), D.reg_map(F)]),
                lambda f: torch.cat([s * D.data_map_dot(f), zeros]), pb.b)

    def _assembled_residual(self, w: torch.Tensor):
        """:meth:`dense_residual` on the operator assembled at ``w``, or ``None`` where no assembled operator serves."""
        return self.dense_residual(self._assembled(w)) if assembled_suitable(self.problem, w, self.adjoint) else None

    def _parameter_map(self, w: torch.Tensor, V: torch.Tensor | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        r"""Derivatives along all :math:`6q` parameters (last dimension) to derivatives along the free ones, or along
        the directions ``V`` (``(n_params, k)``) of the free ones: the chain rule with
        :math:`S = \partial w_\text{full} / \partial w` (``jacfwd`` of :meth:`full_parameters`), as a column
        selection where :math:`S` is one (both variants here)."""
        S = jacfwd(self.full_parameters)(w.detach())
        if V is not None:
            SV = S @ V
            return lambda X: X @ SV
        cols = S.argmax(dim=0)
        if torch.equal(S, torch.eye(S.shape[0], dtype=S.dtype, device=S.device)[:, cols]):
            if torch.equal(cols, torch.arange(S.shape[0], device=S.device)):
                return lambda X: X
            return lambda X: X.index_select(-1, cols)
        return lambda X: X @ S

    def _projection_tangents(self, w: torch.Tensor, V: torch.Tensor | None = None):
        r""":math:`f_0(w)` and :math:`\partial f_0 / \partial w` (``(n, n_params)``, or along the directions ``V``)
        on the assembled operator, the tangents carried through CG as forward-mode AD does
        (:func:`~imreg_lib.cg.conjugate_gradient_tangents`)."""
        D = self._assembled(w)
        S = self._parameter_map(w, V)
        return conjugate_gradient_tangents(D.normal, lambda X: S(D.normal_dot(X)), D.rhs(), S(D.rhs_dot()),
                                           self.problem.f_init, max_iter=self.cg_iters, tol=self.tol,
                                           differentiate=_CG_MODE[self.method], fraction=self.fraction,
                                           chunk=D.tangent_chunk)

    def _chain(self, w: torch.Tensor, f0: torch.Tensor, f0_dot: torch.Tensor,
               V: torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`J = \partial_w r(w, f_0) + (\partial r / \partial f)\, \dot f_0` for a plain ``f0`` and its
        derivative ``f0_dot`` (``(n, n_params)``)."""
        dense = self._assembled_residual(w)
        if dense is not None:
            apply, partial, _ = dense
            return self._parameter_map(w, V)(partial(f0)) + apply(f0_dot)
        Jw = jacfwd(lambda wv: self.residual_at(wv, f0))(w)
        Jw = Jw if V is None else Jw @ V
        const = self.problem.operator(self.full_parameters(w.detach())).detach()
        return Jw + vmap(self.residual_map(const)[0], in_dims=1, out_dims=1)(f0_dot)

    def residual_map(self, op: SROperator) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
        r"""The residual as an affine map of the image, :math:`r(w, f) = M(w) f - c`: ``(M, c)`` for the operator
        ``op`` of :math:`A(w)`. Eq. (7): :math:`M = A(w)` (``op.apply``) and :math:`c = b`."""
        return op.apply, self.problem.b

    def residual_at(self, w: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        r""":math:`r(w, f) = M(w) f - c` for a given image ``f`` (:meth:`residual_map`; on the assembled operator
        where :meth:`dense_residual` gives it and both are plain)."""
        if assembled_suitable(self.problem, w, self.adjoint) and not (is_traced(f) or f.requires_grad):
            dense = self.dense_residual(self._assembled(w))
            if dense is not None:
                return dense[0](f) - dense[2]
        M, c = self.residual_map(self.problem.operator(self.full_parameters(w)))
        return M(f) - c

    def residual(self, w: torch.Tensor) -> torch.Tensor:
        r"""The reduced residual :math:`r(w) = r(w, f_0(w))`."""
        return self.residual_at(w, self.projection(w).x)

    # --- Jacobians -------------------------------------------------------------------------------
    def jacobian(self, w: torch.Tensor, projection: torch.Tensor | None = None) -> torch.Tensor:
        r"""Jacobian of :meth:`residual` at ``w`` by ``method``, shape ``(n_residuals, n_params)``.

        ``projection``: :math:`f_0(w)` from an earlier :meth:`projection` at the same ``w``. ``"implicit"`` and
        ``"no_diff"`` (for which :math:`f_0` is a constant) then skip re-solving it; the other methods
        differentiate the projection, so they recompute it traced.
        """
        if self.method == "implicit":
            f0 = (self.projection(w).x if projection is None else projection).detach()
            return self.implicit_jacobian(w, f0)
        if self.method == "no_diff":  # f0 is a constant: the partial derivative in w alone
            f0 = (self.projection(w).x if projection is None else projection).detach()
            dense = self._assembled_residual(w)
            if dense is not None:
                return self._parameter_map(w)(dense[1](f0))
            return jacfwd(lambda wv: self.residual_at(wv, f0))(w)
        if assembled_suitable(self.problem, w, self.adjoint):
            t = self._projection_tangents(w)
            return self._chain(w, t.result.x, t.x_dot)
        return jacfwd(self.residual)(w)

    def implicit_jacobian(self, w: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        r"""Exact :math:`dr/dw` at an (accurate) projection ``f0`` by the implicit-function theorem.

        ``jacfwd`` of :math:`w \mapsto (A^\top(b - A f_0),\ r(w, f_0))` at fixed :math:`f_0` gives the right-hand
        sides :math:`G` and :math:`\partial_w r`; one ``vmap``-batched CG solves :math:`A^\top A X = G`
        (all columns at once); then :math:`J = \partial_w r + (\partial r/\partial f) X`.
        """
        adj = self.adjoint
        if assembled_suitable(self.problem, w, adj):
            D = self._assembled(w)
            S = self._parameter_map(w)
            G = S(D.rhs_dot() - D.normal_dot(f0[:, None])[0])  # ∂_w [Aᵀ(b - A f0)] at fixed f0
            X = D.solve(G)  # df0/dw: the assembled M factored once (dense or banded Cholesky)
            return self._chain(w, f0, X)

        def partials(wv):
            op = self.problem.operator(self.full_parameters(wv))
            return op.normal_rhs(adj) - op.normal(f0, adj), self.residual_at(wv, f0)

        G, Jw = jacfwd(partials)(w)  # (n_pixels, p), (n_res, p)
        const = self.problem.operator(self.full_parameters(w.detach())).detach()
        zero = torch.zeros_like(f0)

        def solve(g):
            return conjugate_gradient(lambda v: const.normal(v, adj), g, zero, max_iter=self._implicit_max_iter,
                                      tol=0.0, rtol=self.implicit_rtol, differentiate="none").x

        X = vmap(solve, in_dims=1, out_dims=1)(G)  # df0/dw, (n_pixels, p): one batched CG
        dr_df = vmap(self.residual_map(const)[0], in_dims=1, out_dims=1)(X)  # (dr/df) X
        return Jw + dr_df

    def residual_and_jacobian(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r, J)`` at ``w`` from one traced projection (``jacfwd`` with ``has_aux``) or, for ``"implicit"``,
        one projection shared by both."""
        dense = assembled_suitable(self.problem, w, self.adjoint)
        if self.method == "implicit" or (self.method == "no_diff" and dense):
            f0 = self.projection(w).x
            return self.residual_at(w, f0), self.jacobian(w, f0)
        if dense:
            t = self._projection_tangents(w)
            return self.residual_at(w, t.result.x), self._chain(w, t.result.x, t.x_dot)

        def with_aux(wv):
            r = self.residual(wv)
            return r, r

        J, r = jacfwd(with_aux, has_aux=True)(w)
        return r, J

    def jvp(self, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r""":math:`J(w)\, v`, the Jacobian of ``method`` along one direction ``v`` (shape ``(n_params,)``): one tangent
        through CG (forward mode) instead of ``n_params``; equal to ``jacobian(w) @ v`` up to round-off."""
        self.check_parameters(v)
        V = v.detach()[:, None]
        if not assembled_suitable(self.problem, w, self.adjoint):
            if self.method in ("implicit", "no_diff"):
                return self.jacobian(w) @ v
            return torch.func.jvp(self.residual, (w,), (v,))[1]
        if self.method in ("implicit", "no_diff"):  # cheap on the assembled operator: one projection, no tangents
            return self.jacobian(w, self.projection(w).x) @ v
        t = self._projection_tangents(w, V)
        return self._chain(w, t.result.x, t.x_dot, V)[:, 0]


#: Reconstructions kept per problem (by motion, iterations and tolerance).
_RECONSTRUCTIONS_KEPT = 32


def reconstruct(problem: SuperResolutionProblem, w_full: torch.Tensor, *, max_iter: int = 5000,
                tol: float = 1e-12, adjoint: str = "exact") -> CGResult:
    r"""Final image: untraced CG on :math:`A(w)^\top A(w) f = A(w)^\top b` from ``f_init``,
    5000 iterations, absolute tolerance 1e-12, at all :math:`6q` parameters ``w_full``."""
    w_full = w_full.detach()
    if assembled_suitable(problem, w_full, adjoint):
        # the same solve at the same motion is returned again (the page reconstructs at the true motion and
        # along LM paths more than once): results of a few MB, kept per problem
        kept = problem._constant("reconstructions", OrderedDict)
        key = (w_full.numpy().tobytes(), max_iter, tol)
        if key not in kept:
            D = assemble(problem, w_full)
            kept[key] = conjugate_gradient(D.normal, D.rhs(), problem.f_init, max_iter=max_iter, tol=tol,
                                           differentiate="none")
            while len(kept) > _RECONSTRUCTIONS_KEPT:
                kept.popitem(last=False)
        kept.move_to_end(key)
        return kept[key]
    op = problem.operator(w_full).detach()
    return conjugate_gradient(lambda v: op.normal(v, adjoint), op.normal_rhs(adjoint), problem.f_init,
                              max_iter=max_iter, tol=tol, differentiate="none")


def relative_error(f: torch.Tensor, reference: torch.Tensor) -> float:
    r""":math:`\|f - R\|_F / \|R\|_F` (``f`` flat or shaped like ``reference``)."""
    R = reference.reshape(-1)
    return float(torch.linalg.vector_norm(f.reshape(-1) - R) / torch.linalg.vector_norm(R))


@dataclass(frozen=True)
class VarProRun:
    """A variable-projection Levenberg-Marquardt run and its final reconstruction.

    Attributes
    ----------
    method, variant
        As in :class:`VarPro` (``variant``: the name of its residual and parametrisation).
    lm
        The optimiser's result (history with the semantics of the authors' ``lsq_lma``).
    w_full
        Final parameters of all templates.
    cg_iterations
        CG iterations of each residual's projection (one entry per recorded point).
    rss_mb
        Resident memory (MB) at the end of each recorded point's evaluations (residual, and Jacobian where
        the step was accepted), read after returning freed heap memory to the system
        (:func:`~imreg_lib.timing.rss_mb` with ``trim=True``).
    residual_seconds, jacobian_seconds
        Wall time in residual and Jacobian evaluations (with ``eager_jacobian``, the joint evaluations count as
        Jacobian time).
    seconds
        Wall time of the whole run (reconstruction included).
    reconstruction
        :math:`\\hat f` from :func:`reconstruct` at ``w_full`` (shape ``(m, m)``), or ``None``.
    rel_error
        :math:`\\|\\hat f - R\\|_F / \\|R\\|_F`, or ``None``.
    """

    method: str
    variant: str
    lm: LMResult
    w_full: torch.Tensor
    cg_iterations: tuple[int, ...]
    rss_mb: tuple[float, ...]
    residual_seconds: float
    jacobian_seconds: float
    seconds: float
    reconstruction: torch.Tensor | None
    rel_error: float | None

    @property
    def losses(self) -> tuple[float, ...]:
        return self.lm.losses

    @property
    def grad_norms(self) -> tuple[float, ...]:
        return self.lm.grad_norms

    @property
    def residual_norms(self) -> tuple[float, ...]:
        r""":math:`\\|r\\|` per recorded point (what the authors' verbose LM prints)."""
        return tuple(math.sqrt(v) for v in self.lm.losses)


def varpro_levenberg_marquardt(varpro: VarPro, w0: torch.Tensor | None = None, *, max_iter: int = 10,
                               gtol: float = 1e-5, ptol: float = 1e-50, ftol: float = 1e-20, tau: float = 1e-3,
                               eager_jacobian: bool = False, final_solve: bool = True, final_max_iter: int = 5000,
                               final_tol: float = 1e-12,
                               callback: Callable[[int], object] | None = None) -> VarProRun:
    r"""Levenberg-Marquardt on the reduced residual (``max_iter=10``, ``gtol=1e-5``).

    Uses :func:`~imreg_lib.optimizers.levenberg_marquardt` (residual once per distinct point, Jacobian once per
    accepted point). The projection of the latest residual is kept (one plain tensor) and handed to the
    ``"implicit"`` and ``"no_diff"`` Jacobians at the same point, so these methods solve each projection once.
    The AD methods differentiate the projection, so their Jacobian re-runs CG traced; with
    ``eager_jacobian=True`` the residual is instead taken from that traced run (``jacfwd`` with ``has_aux``) at
    every trial point: one CG run per point instead of two at accepted points, a wasted Jacobian at rejected
    ones, and the residual and Jacobian of exactly the same CG sequence.

    Parameters
    ----------
    varpro
        Residual and Jacobian method.
    w0
        Start (the free parameters of ``varpro``), e.g. from a pre-registration of the templates; default:
        identity.
    max_iter, gtol, ptol, ftol, tau
        As in :func:`~imreg_lib.optimizers.levenberg_marquardt` (``max_iter`` counts recorded points).
    eager_jacobian
        Compute the AD Jacobian together with each residual (ignored for ``"implicit"`` and ``"no_diff"``).
    final_solve, final_max_iter, final_tol
        Compute the final reconstruction and its relative error.
    callback
        Called with the number of recorded points so far after each one's residual (e.g. a progress bar).
    """
    w0 = varpro.identity() if w0 is None else w0.detach()
    varpro.full_parameters(w0)  # validates the shape
    last: dict = {}
    cg_iters: list[int] = []
    rss: list[float] = []
    clock = {"residual": 0.0, "jacobian": 0.0}

    eager = eager_jacobian and varpro.method not in ("implicit", "no_diff")

    def traced(wv):
        proj = varpro.projection(wv)
        cg_iters.append(proj.iterations)
        r = varpro.residual_at(wv, proj.x)
        return r, r

    def residual(w):
        t0 = time.perf_counter()
        last.clear()
        if eager:
            J, r = jacfwd(traced, has_aux=True)(w)
            last.update(key=w.detach().cpu().numpy().tobytes(), J=J.detach())
            clock["jacobian"] += time.perf_counter() - t0
        else:
            proj = varpro.projection(w)
            r = varpro.residual_at(w, proj.x)
            last.update(key=w.detach().cpu().numpy().tobytes(), f0=proj.x.detach())
            cg_iters.append(proj.iterations)
            clock["residual"] += time.perf_counter() - t0
        rss.append(rss_mb(trim=True))
        if callback is not None:
            callback(len(rss))
        return r.detach()

    def jacobian(w):
        t0 = time.perf_counter()
        same = last.get("key") == w.detach().cpu().numpy().tobytes()
        if same and "J" in last:
            J = last["J"]
        else:
            J = varpro.jacobian(w, last.get("f0") if same else None).detach()
        clock["jacobian"] += time.perf_counter() - t0
        rss[-1] = max(rss[-1], rss_mb(trim=True))
        return J

    t0 = time.perf_counter()
    lm = levenberg_marquardt(residual, jacobian, w0, max_iter=max_iter, gtol=gtol, ptol=ptol, ftol=ftol, tau=tau)
    last.clear()
    w_full = varpro.full_parameters(lm.w).detach()
    f_hat = err = None
    if final_solve:
        f_hat = reconstruct(varpro.problem, w_full, max_iter=final_max_iter, tol=final_tol,
                            adjoint=varpro.adjoint).x.reshape(varpro.problem.grid.m)
        err = relative_error(f_hat, varpro.problem.reference)
    return VarProRun(varpro.method, varpro.variant, lm, w_full, tuple(cg_iters), tuple(rss), clock["residual"],
                     clock["jacobian"], time.perf_counter() - t0, f_hat, err)
