r"""The registration objective (paper eq. 3):

.. math::
    J(w; \theta) = \prod_k h_k \,\big\| T_\theta(y(w, x_c)) - R_\theta(x_c) \big\|^2 \; [+\, S(w)],

with both images modelled as splines at the same scale :math:`\theta` (the reference is blurred the same way)
and an optional regularizer :math:`S`.

Two ways to get derivatives, which agree to round-off (tests assert it):

* **AD of the pure function.** :meth:`SSDObjective.loss` is a pure function of ``(w, theta)``; any
  ``torch.func`` transform applies (``grad``, ``hessian``, ``jacfwd`` in ``theta`` for the predictor, ...).
* **Structured** (FAIR's way, with AD for the transformation). With :math:`r = T(y) - R`,
  :math:`Q = \partial y / \partial w` and the spline's :math:`\nabla T`, :math:`\nabla^2 T` from one gather,

  .. math::
      \nabla J = 2h\, (\nabla T\, Q)^\top r, \qquad
      H = 2h \Big[(\nabla T Q)^\top (\nabla T Q) + \sum_i r_i\, Q_i^\top \nabla^2 T_i\, Q_i
      + \sum_i r_i \nabla T_i \cdot \partial^2_w y_i \Big],

  where the last term (zero for affine maps) is taken by AD of the transformation alone, or, for a
  transformation that offers ``linearize(w, x)`` (the neural ODE), by its hand-coded reverse sweep,
  forward sensitivities and second-order adjoint from one recorded forward pass; dropping the second-order
  terms gives the Gauss-Newton matrix. See :meth:`ScaleObjective.derivatives`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import torch
from torch.func import grad, hessian, jacfwd, vmap

from .device import untraced
from .distances import ssd
from .spline import SplineImage, spline_derivatives, spline_evaluate
from .transformations import Affine

__all__ = ["SSDObjective", "ScaleObjective"]

HessianKind = Literal["exact", "gauss_newton", "none"]


def _contract_points(dT: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """``sum_k dT[n, k] Q[n, k, p]`` (N, p) by broadcasting; a batched matrix product of N tiny matrices is
    several times slower on the CPU."""
    out = dT[:, 0, None] * Q[:, 0]
    for k in range(1, Q.shape[1]):
        out = out.addcmul_(dT[:, k, None], Q[:, k])
    return out


@dataclass(frozen=True, eq=False)
class SSDObjective:
    r"""The SSD registration objective :math:`J(w; \theta)` of a template/reference pair.

    Parameters
    ----------
    template, reference
        Spline image models; the reference's grid is the evaluation grid (its cell centres :math:`x_c`).
    transformation
        A transformation with ``__call__(w, x)``, ``jacobian(w, x)``, ``n_params``, ``is_linear``,
        ``identity()`` and ``check(w)`` (default: 2D affine); optionally ``linearize(w, x)`` returning an
        object with ``y``, ``vjp(λ)``, ``jacobian()`` and ``jacobian_and_curvature(λ)`` (hand-coded
        derivatives, used by :meth:`ScaleObjective.derivatives`), as :class:`~imreg_lib.NeuralODE` does.
    regularizer
        Optional ``S(w) -> scalar`` added to :math:`J`; must be a pure ``torch.func``-friendly function.
    """

    template: SplineImage
    reference: SplineImage
    transformation: Affine = field(default_factory=Affine)
    regularizer: Callable[[torch.Tensor], torch.Tensor] | None = None
    _scales: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
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

    @property
    def grid(self):
        return self.reference.grid

    @cached_property
    def x(self) -> torch.Tensor:
        """Cell centres of the reference grid, shape (N, d)."""
        return self.grid.cell_centers(self.reference.device, self.reference.dtype)

    def identity(self) -> torch.Tensor:
        return self.transformation.identity(self.reference.device, self.reference.dtype)

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

    def residual(self, w: torch.Tensor, theta: float | torch.Tensor) -> torch.Tensor:
        r"""``sqrt(prod h) * (T_θ(y(w, x_c)) - R_θ(x_c))``, so that ``||r||² = J`` (without regularizer)."""
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

    @cached_property
    def _affine_jacobian(self) -> torch.Tensor:
        with untraced():
            return self.problem.transformation.jacobian(self.problem.identity(), self.x)

    def _jacobian(self, w: torch.Tensor) -> torch.Tensor:
        tr = self.problem.transformation
        return self._affine_jacobian if tr.is_linear else tr.jacobian(w, self.x)

    @cached_property
    def _affine_factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For ``y = A x + b``: ``v = [x, 1]`` (N, d+1), ``v ⊗ v`` (N, (d+1)²) and the permutation from the
        ``(k, l)`` layout (``l < d``: ``A[k, l]``, ``l = d``: ``b[k]``) to the flat parameter order."""
        with untraced():
            x = self.x
            n, d = x.shape
            v = torch.cat([x, torch.ones_like(x[:, :1])], 1)
            vv = (v[:, :, None] * v[:, None, :]).reshape(n, -1)
            k = torch.arange(d, device=x.device)[:, None]
            l = torch.arange(d + 1, device=x.device)[None, :]
            flat = torch.where(l < d, k * d + l, d * d + k).reshape(-1)  # flat index of (k, l)
        return v, vv, torch.argsort(flat)

    def _affine_terms(self, dT: torch.Tensor, d2T: torch.Tensor | None, r: torch.Tensor,
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        r"""FAIR's affine structure: :math:`J_r[n, (k, l)] = \nabla T_{nk} v_{nl}` and
        :math:`\sum_n r_n Q_n^\top \nabla^2 T_n Q_n = \sum_n r_n \nabla^2 T_{n,kk'} v_{nl} v_{nl'}` (one
        matrix product with the cached :math:`v \otimes v`), returned in the flat parameter order."""
        v, vv, perm = self._affine_factors
        n, d = dT.shape
        Jr = (dT[:, :, None] * v[:, None, :]).reshape(n, -1)[:, perm]
        if d2T is None:
            return Jr, None
        S = ((r[:, None, None] * d2T).reshape(n, d * d).T @ vv).reshape(d, d, d + 1, d + 1)
        S = S.permute(0, 2, 1, 3).reshape(d * (d + 1), d * (d + 1))
        return Jr, S[perm][:, perm]

    @cached_property
    def _theta_tangents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(dc_T/dθ, dR_θ(x_c)/dθ)``: exact θ-derivatives of the template coefficients and reference values."""
        pb = self.problem
        with untraced():
            th = torch.tensor(self.theta, dtype=pb.reference.dtype, device=pb.reference.device)
            one = torch.ones_like(th)
            dc = torch.func.jvp(pb.template.coefficients, (th,), (one,))[1]
            dcR = torch.func.jvp(pb.reference.coefficients, (th,), (one,))[1]
            dR = spline_evaluate(dcR, self.x, pb.grid, window=pb.reference.window)
        return dc, dR

    def theta_derivative_of_gradient(self, w: torch.Tensor) -> torch.Tensor:
        r""":math:`\partial_\theta \nabla_w J = 2h\,[Q^\top(\nabla T_{\dot c}(y)\, r) + (\nabla T\, Q)^\top
        (T_{\dot c}(y) - \dot R)]`, with :math:`\dot c = dc/d\theta` (the spline is linear in its
        coefficients). The regularizer does not depend on θ."""
        pb = self.problem
        tr, tmpl, hv = pb.transformation, pb.template, pb.grid.cell_volume
        dc, dR = self._theta_tangents
        y = tr(w, self.x)
        both = torch.stack([self.template_coefficients, dc])  # one gather at y for c and dc/dθ
        (T, Tc), (dT, dTc) = vmap(lambda c: spline_derivatives(c, y, tmpl.grid, orders=(0, 1),
                                                               window=tmpl.window))(both)
        r = T - self.reference_values
        Q = self._jacobian(w)
        return (2.0 * hv) * (torch.einsum("nd,ndp->p", dTc * r[:, None], Q)
                             + torch.einsum("nd,ndp,n->p", dT, Q, Tc - dR))

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
        pb = self.problem
        tr, tmpl = pb.transformation, pb.template
        if hasattr(tr, "linearize"):
            lin = tr.linearize(w, self.x)
            y, Q = lin.y, lin.jacobian()
        else:
            y, Q = tr(w, self.x), None if isinstance(tr, Affine) else self._jacobian(w)
        dT = spline_evaluate(self.template_coefficients, y, tmpl.grid, order=1, window=tmpl.window)
        if Q is None:
            return self._affine_terms(dT, None, dT[:, 0])[0]
        return _contract_points(dT, Q)

    def residual(self, w: torch.Tensor) -> torch.Tensor:
        return math.sqrt(self.problem.grid.cell_volume) * (self.forward(w) - self.reference_values)

    def residual_jacobian(self, w: torch.Tensor) -> torch.Tensor:
        r"""Jacobian of :meth:`residual`, :math:`\sqrt{h}\,\nabla T(y)\, Q`, shape (N, p): the structured
        :meth:`forward_jacobian` scaled (the data term only: a regularizer is not part of the residual)."""
        return math.sqrt(self.problem.grid.cell_volume) * self.forward_jacobian(w)

    def loss(self, w: torch.Tensor) -> torch.Tensor:
        J = ssd(self.forward(w) - self.reference_values, self.problem.grid.cell_volume)
        reg = self.problem.regularizer
        return J if reg is None else J + reg(w)

    def derivatives(self, w: torch.Tensor, hessian_kind: HessianKind = "exact",
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        r"""``(J, ∇J, H)`` at ``w`` from one spline pass (see the module docstring for the formulas).

        Parameters
        ----------
        hessian_kind
            ``"exact"`` (second-order terms included), ``"gauss_newton"`` (:math:`2h\,(\nabla T Q)^\top
            (\nabla T Q)`) or ``"none"`` (``H`` is ``None``).
        """
        if hessian_kind not in ("exact", "gauss_newton", "none"):
            raise ValueError(f"hessian_kind must be 'exact', 'gauss_newton' or 'none', got {hessian_kind!r}")
        pb = self.problem
        tr, tmpl, hv = pb.transformation, pb.template, pb.grid.cell_volume
        # transformations with hand-coded derivatives (e.g. the neural ODE) record their forward pass once
        lin = tr.linearize(w, self.x) if hasattr(tr, "linearize") else None
        y = lin.y if lin is not None else tr(w, self.x)
        orders = (0, 1, 2) if hessian_kind == "exact" else (0, 1)
        T, dT, *d2T = spline_derivatives(self.template_coefficients, y, tmpl.grid, orders=orders,
                                         window=tmpl.window)
        r = T - self.reference_values
        J = hv * torch.dot(r, r)
        lam = (2.0 * hv) * r[:, None] * dT  # dJ/dy
        H = None
        if lin is not None and hessian_kind == "none":  # reverse mode: no transformation Jacobian needed
            dJ = lin.vjp(lam)
        elif isinstance(tr, Affine):  # the constant Jacobian in closed form
            Jr, S = self._affine_terms(dT, d2T[0] if hessian_kind == "exact" else None, r)
            dJ = (2.0 * hv) * (Jr.T @ r)
            if hessian_kind != "none":
                H = (2.0 * hv) * (Jr.T @ Jr)
            if S is not None:
                H = H + (2.0 * hv) * S
        else:
            H_tr = None
            if lin is None:
                Q = self._jacobian(w)
            elif hessian_kind == "exact":
                Q, H_tr = lin.jacobian_and_curvature(lam)  # sum_i lam_i . d²y_i/dw², hand-coded
            else:
                Q = lin.jacobian()
            Jr = _contract_points(dT, Q)  # residual Jacobian (without the sqrt(h) factor)
            dJ = (2.0 * hv) * (Jr.T @ r)
            if hessian_kind != "none":
                H = (2.0 * hv) * (Jr.T @ Jr)
            if hessian_kind == "exact":
                n, d, p = Q.shape
                d2TQ = d2T[0][:, :, 0, None] * Q[:, None, 0, :]  # (∇²T_i Q_i), shape (N, d, p)
                for e in range(1, d):
                    d2TQ = d2TQ + d2T[0][:, :, e, None] * Q[:, None, e, :]
                H = H + (2.0 * hv) * ((Q * r[:, None, None]).reshape(n * d, p).T @ d2TQ.reshape(n * d, p))
                if not tr.is_linear and H_tr is None:  # sum_i lam_i . d²y_i/dw², by AD of the transformation
                    lam_c = lam.detach()
                    H_tr = hessian(lambda v: torch.sum(lam_c * tr(v, self.x)))(w)
                if H_tr is not None:
                    H = H + H_tr
        reg = pb.regularizer
        if reg is not None:
            J = J + reg(w)
            dJ = dJ + grad(reg)(w)
            if H is not None:
                H = H + hessian(reg)(w)
        return J, dJ, H
