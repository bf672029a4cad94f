r"""The registration objective (paper eq. 3):

.. math::
    J(w; \theta) = \prod_k h_k \,\big\| T_\theta(y(w, x_c)) - R_\theta(x_c) \big\|^2 \; [+\, S(w)],

with both images modelled as splines at the same scale :math:`\theta` (the reference is blurred the same way)
and an optional regularizer :math:`S`.

Two ways to get derivatives, which agree to round-off (tests assert it):

* **AD of the pure function.** :meth:`SSDObjective.loss` is a pure function of ``(w, theta)``; any
  ``torch.func`` transform applies (``grad``, ``hessian``, ``jacfwd`` in ``theta`` for the predictor, ...).
* **Structured** (FAIR's way: plug-in blocks composed by the chain rule). Three blocks meet at the points
  :math:`y_n = y(w, x_n)`: the image model gives :math:`T(y_n)`, :math:`\nabla T(y_n)`, :math:`\nabla^2 T(y_n)`
  (one spline gather); the distance block (:func:`~imreg_lib.distances.ssd_block`) gives
  :math:`D(r)`, :math:`\partial D / \partial r` and :math:`\partial^2 D / \partial r^2 = c\, I` for the residual
  :math:`r = T(y) - R`; the transformation's linearization (:meth:`~imreg_lib.Transformation.linearize`) gives the
  products with its Jacobian :math:`Q_n = \partial y_n / \partial w` and its curvature. With
  :math:`\lambda_n = (\partial D / \partial r_n) \nabla T(y_n) = \partial J / \partial y_n` and the residual
  Jacobian :math:`J_r = [\nabla T(y_n)^\top Q_n]_n`,

  .. math::
      \nabla J = J_r^\top \frac{\partial D}{\partial r} = \sum_n Q_n^\top \lambda_n, \qquad
      H = c\, J_r^\top J_r + \sum_n Q_n^\top \Big(\frac{\partial D}{\partial r_n} \nabla^2 T(y_n)\Big) Q_n
      + \sum_{n, k} \lambda_{nk}\, \partial^2_w y_k(x_n),

  where the last term (zero for a transformation linear in :math:`w`) is the linearization's curvature (hand-coded
  for the neural ODE, by AD for :class:`~imreg_lib.AutodiffLinearization`); dropping the second-order terms gives
  the Gauss-Newton matrix. See :meth:`ScaleObjective.derivatives`. Only the interface of
  :class:`~imreg_lib.Transformation` is used, never the transformation's type.

With ``overlap=True`` the distance is the mean squares over the overlap (SimpleITK's metric,
:func:`~imreg_lib.distances.overlap_ssd`): each point weighted by a smooth indicator :math:`m(y_n)` of the
template's domain (:func:`~imreg_lib.distances.overlap_block`), so that a motion which moves part of the image out
of view can still be the minimiser. Its exact derivatives compose the same blocks with the weight's
(:meth:`ScaleObjective.derivatives`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import torch
from torch.func import grad, hessian, jacfwd

from . import _checks
from ._torch import is_traced, untraced
from .distances import OVERLAP_RAMP_CELLS, overlap_block, overlap_ssd, overlap_ssd_block, ssd, ssd_block
from .spline import (
    SplineImage,
    _derivatives_at,
    _pad,
    _padded_gradients_at,
    _Points,
    _points,
    spline_derivatives,
    spline_evaluate,
)
from .transformations import Affine, Linearization, Transformation, check_transformation

__all__ = ["SSDObjective", "ScaleObjective"]

HessianKind = Literal["exact", "gauss_newton", "none"]


@dataclass(frozen=True, eq=False)
class SSDObjective:
    r"""The SSD registration objective :math:`J(w; \theta)` of a template/reference pair.

    Parameters
    ----------
    template, reference
        Spline image models; the reference's grid is the evaluation grid (its cell centres :math:`x_c`).
    transformation
        Any object satisfying :class:`~imreg_lib.Transformation` (default: 2D affine); its ``linearize(w, x)``
        supplies the derivatives of :meth:`ScaleObjective.derivatives`. :class:`~imreg_lib.Affine` and
        :class:`~imreg_lib.NeuralODE` are two; a missing member raises ``TypeError``.
    regularizer
        Optional ``S(w) -> scalar`` added to :math:`J`; must be a pure ``torch.func``-friendly function.
    overlap
        Use the mean squares over the overlap (:func:`~imreg_lib.distances.overlap_ssd`, the points weighted by a
        smooth indicator of the template's domain with a ramp of
        :data:`~imreg_lib.distances.OVERLAP_RAMP_CELLS` cells) instead of the SSD. Its value and exact
        derivatives are available (:meth:`loss`, :meth:`ScaleObjective.derivatives`), not the residual (it is not
        a least-squares objective) nor the structured θ-derivative of the predictor.
    """

    template: SplineImage
    reference: SplineImage
    transformation: Transformation = field(default_factory=Affine)
    regularizer: Callable[[torch.Tensor], torch.Tensor] | None = None
    overlap: bool = False
    _scales: dict = field(default_factory=dict, repr=False, compare=False)
    _tangents: dict = field(default_factory=dict, repr=False, compare=False)
    #: What :meth:`ScaleObjective.derivatives` with a Hessian computed at a point, ``(scale, w, version, ∂D/∂r,
    #: ∇T, points)`` with the points located on the template's grid and weighed, at two points at most, whatever
    #: the number of scales: ``"last"``, the last point it saw, and ``"kept"``, a corrector's iterate
    #: (:meth:`ScaleObjective.keep`). The predictor's right-hand side at a corrector's result reuses them.
    _seen: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_transformation(self.transformation)
        if self.template.grid.dim != self.reference.grid.dim:
            raise ValueError(f"template and reference must have the same dimension, got "
                             f"{self.template.grid.dim} and {self.reference.grid.dim}")
        if self.template.grid.m != self.reference.grid.m:
            raise ValueError(f"template and reference must have the same size m, got {self.template.grid.m} "
                             f"and {self.reference.grid.m}")
        if self.transformation.dim != self.reference.grid.dim:
            raise ValueError(f"transformation is {self.transformation.dim}D but the images are "
                             f"{self.reference.grid.dim}D")
        if self.template.device != self.reference.device or self.template.dtype != self.reference.dtype:
            raise ValueError("template and reference must share device and dtype")
        _checks.boolean("overlap", self.overlap)

    @classmethod
    def from_pair(cls, pair, transformation: Transformation | None = None, **fields) -> SSDObjective:
        """The objective of an image pair (:class:`~imreg_lib.ImagePair`: its template, reference and grid), with
        the affine model of the pair's dimension unless ``transformation`` is given; ``fields``: the others."""
        return cls(SplineImage(pair.template, pair.grid), SplineImage(pair.reference, pair.grid),
                   Affine(pair.grid.dim) if transformation is None else transformation, **fields)

    def with_overlap(self, overlap: bool = True) -> SSDObjective:
        """This objective with the mean squares over the overlap (or the SSD); the images and the transformation
        are shared, so are their spline coefficients, not the per-scale caches."""
        return SSDObjective(self.template, self.reference, self.transformation, self.regularizer,
                            overlap=_checks.boolean("overlap", overlap))

    def _no_overlap(self, what: str) -> None:
        if self.overlap:
            raise ValueError(f"{what} is not available with overlap=True (the mean squares over the overlap is not "
                             f"a least-squares objective); use loss / ScaleObjective.derivatives, or overlap=False")

    def overlap_weights(self, y: torch.Tensor, orders: int = 0) -> list[torch.Tensor]:
        """The overlap weight :math:`m(y)` of the template's domain at points ``y`` and its first ``orders``
        derivatives (:func:`~imreg_lib.distances.overlap_block`)."""
        g = self.template.grid
        return overlap_block(y, g.omega, tuple(OVERLAP_RAMP_CELLS * h for h in g.h), orders)

    @property
    def grid(self):
        return self.reference.grid

    @cached_property
    def x(self) -> torch.Tensor:
        """Cell centres of the reference grid, shape (N, d)."""
        return self.grid.cell_centers(self.reference.device, self.reference.dtype)

    def identity(self) -> torch.Tensor:
        return self.transformation.identity(self.reference.device, self.reference.dtype)

    @cached_property
    def _fixed_linearization(self) -> Linearization:
        """For a transformation linear in ``w`` (``is_linear``): its linearization at the identity, valid at every
        ``w`` but for ``y`` (the Jacobian is constant, the curvature zero), made once per grid."""
        with untraced():
            return self.transformation.linearize(self.identity(), self.x)

    def at_scale(self, theta: float) -> ScaleObjective:
        """The objective at a fixed scale, with coefficients and :math:`R_\\theta(x_c)` computed once."""
        if isinstance(theta, torch.Tensor):
            theta = float(theta)
        key = float(theta)
        if key not in self._scales:
            if len(self._scales) >= 128:
                self._scales.clear()
            with untraced():
                coef = self.template.coefficients(key)
                ref = spline_evaluate(self.reference.coefficients(key), self.x, self.grid,
                                      window=self.reference.window)
            self._scales[key] = ScaleObjective(self, key, coef, ref)
        return self._scales[key]

    def theta_tangents(self, thetas: Sequence[float]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        r""":math:`(dc_T/d\theta, dR_\theta(x_c)/d\theta)` at each of ``thetas``: the exact θ-derivatives of the
        template's coefficients and of the reference's values at the cell centres (flattened), which the predictor
        needs at every scale it leaves. Those not cached yet are computed together, in closed form
        (:meth:`~imreg_lib.SplineImage.theta_derivatives`, in batches of at most :math:`2^{20}` values per image),
        and cached; a driver that knows its schedule asks for all of them once."""
        return [self._tangent(float(t))[:2] for t in self._cache_tangents(thetas)]

    def _cache_tangents(self, thetas: Sequence[float]) -> list[float]:
        """Compute and cache the tangents of those ``thetas`` not cached yet (:meth:`theta_tangents`), each as
        ``(dc_T/dθ, dR_θ(x_c)/dθ, dc_T/dθ padded and flattened)``: the predictor gathers the padded form (one pad
        for the batch, none per step). Returns ``thetas`` as floats."""
        thetas = [float(t) for t in thetas]
        missing = list(dict.fromkeys(t for t in thetas if t not in self._tangents))
        batch = max(1, 2**20 // math.prod(self.grid.m))
        for i in range(0, len(missing), batch):
            part = missing[i:i + batch]
            dc = self.template.theta_derivatives(part)
            dR = self.reference.theta_derivatives(part, at="centres").reshape(len(part), -1)
            padded = _pad(dc, self.grid.dim).reshape(len(part), -1)
            if len(self._tangents) + len(part) > 256:
                self._tangents.clear()
            self._tangents.update({t: (dc[k], dR[k], padded[k]) for k, t in enumerate(part)})
        return thetas

    def _tangent(self, theta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The cached tangents of one scale (:meth:`_cache_tangents`), computed if missing."""
        tangent = self._tangents.get(theta)
        if tangent is None:
            self._cache_tangents((theta,))
            tangent = self._tangents[theta]
        return tangent

    def residual(self, w: torch.Tensor, theta: float | torch.Tensor) -> torch.Tensor:
        r"""``sqrt(prod h) * (T_θ(y(w, x_c)) - R_θ(x_c))``, so that ``||r||² = J`` (without regularizer)."""
        self._no_overlap("residual")
        if not isinstance(theta, torch.Tensor):
            return self.at_scale(theta).residual(w)
        y = self.transformation(w, self.x)
        T = spline_evaluate(self.template.coefficients(theta), y, self.template.grid, window=self.template.window)
        R = spline_evaluate(self.reference.coefficients(theta), self.x, self.grid, window=self.reference.window)
        return math.sqrt(self.grid.cell_volume) * (T - R)

    def loss(self, w: torch.Tensor, theta: float | torch.Tensor) -> torch.Tensor:
        """:math:`J(w; θ)`, a pure function of ``(w, theta)``; pass ``theta`` as a tensor to differentiate in it."""
        if not isinstance(theta, torch.Tensor):
            return self.at_scale(theta).loss(w)
        if self.overlap:
            y = self.transformation(w, self.x)
            T = spline_evaluate(self.template.coefficients(theta), y, self.template.grid, window=self.template.window)
            R = spline_evaluate(self.reference.coefficients(theta), self.x, self.grid, window=self.reference.window)
            J = overlap_ssd(T - R, self.overlap_weights(y)[0], self.x.shape[0] * self.grid.cell_volume)
        else:
            r = self.residual(w, theta)
            J = torch.sum(r * r)
        return J if self.regularizer is None else J + self.regularizer(w)

    def theta_derivative_of_gradient(self, w: torch.Tensor, theta: float,
                                     method: Literal["structured", "ad"] = "structured") -> torch.Tensor:
        r""":math:`\partial_\theta \nabla_w J(w; \theta)` at fixed ``w`` (the predictor's right-hand side).

        ``"structured"`` uses the exact :math:`dc/d\theta` cached per scale (:meth:`ScaleObjective.
        theta_derivative_of_gradient`); ``"ad"`` differentiates :meth:`loss` by ``jacfwd`` over ``grad``
        through the coefficient computation (the authors' route).
        """
        if method == "structured":
            self._no_overlap("the structured θ-derivative")
            return self.at_scale(theta).theta_derivative_of_gradient(w)
        if method != "ad":
            raise ValueError(f"method must be 'structured' or 'ad', got {method!r}")
        th = torch.tensor(float(theta), dtype=w.dtype, device=w.device)
        return jacfwd(lambda t: grad(self.loss)(w, t))(th)


@dataclass(frozen=True, eq=False)
class ScaleObjective:
    r""":math:`J(\cdot; \theta)` at one fixed scale; cheap to evaluate repeatedly (no coefficient solves)."""

    problem: SSDObjective
    theta: float
    template_coefficients: torch.Tensor
    reference_values: torch.Tensor  # R_θ(x_c), shape (N,)

    @property
    def x(self) -> torch.Tensor:
        return self.problem.x

    def _linearize(self, w: torch.Tensor) -> tuple[torch.Tensor, Linearization]:
        """``(y(w, x_c), linearization at w)``; a transformation linear in ``w`` reuses one linearization per grid."""
        pb = self.problem
        if pb.transformation.is_linear:
            return pb.transformation(w, self.x), pb._fixed_linearization
        lin = pb.transformation.linearize(w, self.x)
        return lin.y, lin

    @property
    def _theta_tangents(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(dc_T/dθ, dR_θ(x_c)/dθ, dc_T/dθ padded)`` (:meth:`SSDObjective.theta_tangents`), from the problem's
        cache (which a driver fills for its whole schedule at once)."""
        return self.problem._tangent(self.theta)

    def keep(self, w: torch.Tensor) -> None:
        """Keep what :meth:`derivatives` computed at ``w``, if it was the last point it saw, for the predictor's
        right-hand side there, while a corrector evaluates trial points (the ``on_accept`` of
        :func:`~imreg_lib.newton_trust_region`). One such point is kept per problem; a later one replaces it."""
        seen = self.problem._seen
        last = seen.get("last")
        if last is not None and last[0] is self and last[1] is w and last[2] == w._version:
            seen["kept"] = last

    def _at(self, w: torch.Tensor) -> tuple[Linearization, torch.Tensor, torch.Tensor, _Points]:
        """``(linearization, ∂D/∂r, ∇T, points)`` at ``w``: those :meth:`derivatives` computed if it last saw this
        very tensor, unchanged, or kept it (a corrector's iterate), else computed here."""
        pb = self.problem
        for entry in pb._seen.values():
            if entry[0] is self and entry[1] is w and entry[2] == w._version:
                lin = pb._fixed_linearization if pb.transformation.is_linear else pb.transformation.linearize(w, self.x)
                return lin, *entry[3:]
        y, lin = self._linearize(w)
        tmpl = pb.template
        points = _points(y, tmpl.grid, tmpl.window, 1)
        T, dT = _derivatives_at(self.template_coefficients, points, (0, 1))
        return lin, ssd_block(T - self.reference_values, pb.grid.cell_volume)[1], dT, points

    def theta_derivative_of_gradient(self, w: torch.Tensor) -> torch.Tensor:
        r""":math:`\partial_\theta \nabla_w J` at fixed ``w`` (the predictor's right-hand side), one vjp of the
        transformation.

        With :math:`\dot c = dc/d\theta` (the spline is linear in its coefficients), :math:`\dot r = T_{\dot c}(y) -
        \dot R` and the distance's Hessian :math:`c\, I` in :math:`r`,

        .. math::
            \partial_\theta \nabla_w J = \sum_n Q_n^\top \dot\lambda_n, \qquad
            \dot\lambda_n = \frac{\partial D}{\partial r_n} \nabla T_{\dot c}(y_n) + c\, \dot r_n \nabla T(y_n).

        The regularizer does not depend on θ. At the tensor :meth:`derivatives` last saw with a Hessian (a
        corrector's accepted iterate) its points, :math:`T` and :math:`\nabla T` are reused, so that a predictor step
        costs one gather of :math:`\dot c` and the closed-form tangents of the scale.
        """
        pb = self.problem
        pb._no_overlap("the structured θ-derivative")
        _, dR, padded = self._theta_tangents
        lin, dD, dT, points = self._at(w)
        (Tc,), (dTc,) = _padded_gradients_at(padded, 1, points)
        d2D = 2.0 * pb.grid.cell_volume  # ssd_block's second derivative
        return lin.vjp(torch.addcmul(dD[:, None] * dTc, (Tc - dR)[:, None], dT, value=d2D))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """The transformed template :math:`T_\\theta(y(w, x_c))`, shape (N,)."""
        tmpl = self.problem.template
        return spline_evaluate(self.template_coefficients, self.problem.transformation(w, self.x), tmpl.grid,
                               window=tmpl.window)

    def forward_jacobian(self, w: torch.Tensor, method: Literal["structured", "ad"] = "structured",
                         ) -> torch.Tensor:
        r"""Jacobian of :meth:`forward`, :math:`\partial T_\theta(y(w, x_c)) / \partial w`, shape (N, p).

        ``"structured"``: the spline gradient times the transformation Jacobian, :math:`\nabla T(y)\, Q`
        (FAIR's ``dT * dy``); ``"ad"``: ``torch.func.jacfwd`` of :meth:`forward`.
        """
        if method == "ad":
            return jacfwd(self.forward)(w)
        if method != "structured":
            raise ValueError(f"method must be 'structured' or 'ad', got {method!r}")
        tmpl = self.problem.template
        y, lin = self._linearize(w)
        dT = spline_evaluate(self.template_coefficients, y, tmpl.grid, order=1, window=tmpl.window)
        return lin.contract(dT)

    def residual(self, w: torch.Tensor) -> torch.Tensor:
        self.problem._no_overlap("residual")
        return math.sqrt(self.problem.grid.cell_volume) * (self.forward(w) - self.reference_values)

    def residual_jacobian(self, w: torch.Tensor) -> torch.Tensor:
        r"""Jacobian of :meth:`residual`, :math:`\sqrt{h}\,\nabla T(y)\, Q`, shape (N, p): the structured
        :meth:`forward_jacobian` scaled (the data term only: a regularizer is not part of the residual)."""
        self.problem._no_overlap("residual_jacobian")
        return math.sqrt(self.problem.grid.cell_volume) * self.forward_jacobian(w)

    def loss(self, w: torch.Tensor) -> torch.Tensor:
        pb = self.problem
        if pb.overlap:
            y = pb.transformation(w, self.x)
            tmpl = pb.template
            T = spline_evaluate(self.template_coefficients, y, tmpl.grid, window=tmpl.window)
            J = overlap_ssd(T - self.reference_values, pb.overlap_weights(y)[0], self.x.shape[0] * pb.grid.cell_volume)
        else:
            J = ssd(self.forward(w) - self.reference_values, pb.grid.cell_volume)
        reg = self.problem.regularizer
        return J if reg is None else J + reg(w)

    def derivatives(self, w: torch.Tensor, hessian_kind: HessianKind = "exact",
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        r"""``(J, ∇J, H)`` at ``w`` from one spline pass, composing the image model, the distance block and the
        transformation's linearization (see the module docstring for the formulas).

        Parameters
        ----------
        w
            Parameters, shape (p,).
        hessian_kind
            ``"exact"`` (second-order terms included), ``"gauss_newton"`` (:math:`c\, J_r^\top J_r`, with
            :math:`c = 2h` for the SSD) or ``"none"`` (``H`` is ``None``; the gradient by the transformation's vjp,
            without its Jacobian).

        Returns
        -------
        tuple
            ``J`` (scalar), ``∇J`` (p,) and ``H`` (p × p, or ``None``), the regularizer included.
        """
        _checks.one_of("hessian_kind", hessian_kind, ("exact", "gauss_newton", "none"), words=True)
        pb = self.problem
        if pb.overlap:
            return self._overlap_derivatives(w, hessian_kind)
        tmpl = pb.template
        exact = hessian_kind == "exact"
        y, lin = self._linearize(w)  # the transformation block
        orders = (0, 1, 2) if exact else (0, 1)
        points = _points(y, tmpl.grid, tmpl.window, orders[-1])  # the image model at y
        T, dT, *d2T = _derivatives_at(self.template_coefficients, points, orders)
        J, dD, d2D = ssd_block(T - self.reference_values, pb.grid.cell_volume)  # the distance block
        if hessian_kind != "none" and not is_traced(w):  # a corrector's iterate (not a diagnostic's value)
            pb._seen["last"] = (self, w, w._version, dD, dT, points)
        lam = dD[:, None] * dT  # dJ/dy
        if hessian_kind == "none":  # reverse mode: no transformation Jacobian needed
            dJ, H = lin.vjp(lam), None
        else:
            curvature = None
            if exact and not pb.transformation.is_linear:  # sum_n lam_n . d²y_n/dw², with Q in the same pass
                curvature = lin.jacobian_and_curvature(lam)[1]
            Jr = lin.contract(dT)  # residual Jacobian dr/dw (N, p)
            dJ = Jr.T @ dD
            H = d2D * (Jr.T @ Jr)
            if exact:
                H = H + lin.congruence(dD[:, None, None] * d2T[0])  # sum_n Q_n^T (dD_n ∇²T_n) Q_n
                if curvature is not None:
                    H = H + curvature
        reg = pb.regularizer
        if reg is not None:
            J = J + reg(w)
            dJ = dJ + grad(reg)(w)
            if H is not None:
                H = H + hessian(reg)(w)
        return J, dJ, H

    def _overlap_derivatives(self, w: torch.Tensor, hessian_kind: HessianKind,
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        r""":meth:`derivatives` of the mean squares over the overlap.

        With :math:`a_n = Q_n^\top \nabla T(y_n)` and :math:`b_n = Q_n^\top \nabla m(y_n)` (the residual's and the
        weight's gradients in :math:`w`) and the block's :math:`D_{r,n}`, :math:`D_{m,n}`
        (:func:`~imreg_lib.distances.overlap_ssd_block`),

        .. math::
            \nabla J = \sum_n (D_{r,n} a_n + D_{m,n} b_n), \qquad
            H = \sum_n Q_n^\top (D_{r,n} \nabla^2 T_n + D_{m,n} \nabla^2 m_n) Q_n
              + \frac{2V}{M} \sum_n \big(m_n a_n a_n^\top + r_n (a_n b_n^\top + b_n a_n^\top)\big)
              - \frac{\nabla J \nabla M^\top + \nabla M \nabla J^\top}{M}
              + \sum_{n,k} \lambda_{nk} \partial^2_w y_k(x_n),

        :math:`\lambda_n = D_{r,n} \nabla T(y_n) + D_{m,n} \nabla m(y_n)`; ``"gauss_newton"`` keeps
        :math:`\frac{2V}{M} \sum_n m_n a_n a_n^\top`. Without overlap (:math:`M = 0`) the value is
        :math:`+\infty` and the derivatives zero (a trust-region step there is rejected).
        """
        pb = self.problem
        tmpl = pb.template
        exact = hessian_kind == "exact"
        volume = self.x.shape[0] * pb.grid.cell_volume
        y, lin = self._linearize(w)
        T, dT, *d2T = spline_derivatives(self.template_coefficients, y, tmpl.grid,
                                         orders=(0, 1, 2) if exact else (0, 1), window=tmpl.window)
        m, dm, *d2m = pb.overlap_weights(y, 2 if exact else 1)
        r = T - self.reference_values
        J, Dr, Dm, M = overlap_ssd_block(r, m, volume)
        p = w.shape[-1]
        if not (float(M) > 0):
            zero = torch.zeros(p, dtype=w.dtype, device=w.device)
            return J, zero, None if hessian_kind == "none" else torch.zeros(p, p, dtype=w.dtype, device=w.device)
        lam = Dr[:, None] * dT + Dm[:, None] * dm  # dJ/dy
        if hessian_kind == "none":
            dJ, H = lin.vjp(lam), None
        else:
            curvature = None
            if exact and not pb.transformation.is_linear:
                curvature = lin.jacobian_and_curvature(lam)[1]
            a, b = lin.contract(dT), lin.contract(dm)  # (N, p)
            dJ = a.T @ Dr + b.T @ Dm
            H = (2.0 * volume / M) * (a.T @ (m[:, None] * a))
            if exact:
                cross = a.T @ (r[:, None] * b)
                dM = b.sum(dim=0)
                side = torch.outer(dJ, dM)
                H = (H + (2.0 * volume / M) * (cross + cross.T) - (side + side.T) / M
                     + lin.congruence(Dr[:, None, None] * d2T[0] + Dm[:, None, None] * d2m[0]))
                if curvature is not None:
                    H = H + curvature
        reg = pb.regularizer
        if reg is not None:
            J = J + reg(w)
            dJ = dJ + grad(reg)(w)
            if H is not None:
                H = H + hessian(reg)(w)
        return J, dJ, H
