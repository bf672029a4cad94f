r"""The super-resolution operator :math:`A(w)` and its code paths (private; re-exported by :mod:`imreg_lib.superres`).

:class:`SROperator` is the matrix-free :math:`A(w)` of a :class:`~imreg_lib.SuperResolutionProblem` at one
:math:`w` (the model is in :mod:`imreg_lib.superres`). Applying it costs **one** coefficient transform
:math:`c = B_0^{-1} F B_1^{-\top}` (θ = 0: the spline prefilter is :math:`B^{-1}` per dimension) shared by all
templates, and one gather of the :math:`4 \times 4` neighbours of the :math:`q\,m^2` transformed points from a
precomputed :class:`~imreg_lib.spline.SplineWeights` (the cubic weights depend on :math:`w` only, so they are
built once per operator, not once per application). The transpose is exact and hand-written (scatter-add,
pooling transpose :math:`K^\top z = z \otimes 1_{k\times k}/k^2`, :math:`D^\top`, :math:`B^{-\top}`); the AD
adjoint (``torch.func.vjp``, as the authors do) is available for comparison. Everything is pure tensor code:
``jacfwd`` in :math:`w` goes through the weights, and ``vmap`` works over :math:`f`.

The fast implementations of :meth:`SROperator.normal` lower through ``torch.func`` levels with the helpers of
:mod:`imreg_lib._torch` (the only module that touches PyTorch internals); ``with imreg_lib._torch.fast_paths(False):``
routes everything to the generic path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from ._torch import (
    batched_tangent_rule,
    call_on_vmap_batch,
    fast_paths_enabled,
    primal,
    primal_if_unbatched,
    transform_stack,
    untraced,
)
from ._torch import scale as _scale  # methods have ``scale`` arguments
from .spline import SplineWeights, spline_weights

if TYPE_CHECKING:
    from .superres import SuperResolutionProblem

__all__ = ["CachesNotPickled", "SROperator"]


class CachesNotPickled:
    """Mixin for the frozen dataclasses that keep derived values in a ``_cache`` dict: a pickled (or deep-copied)
    object carries its data but an empty cache. The cache holds only values that are recomputed on demand, bit for
    bit (assembled operators, spline weights, reconstructions), and can be hundreds of MB; a copy sent to a worker
    process should not carry it."""

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": {}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

#: Transform stacks (outermost first) under which :meth:`SROperator.normal` uses its primitive (custom ``jvp``).
_PRIMITIVE_STACKS = (("jvp",), ("vmap", "jvp"))


def _forward_difference(f: torch.Tensor, axis: int) -> torch.Tensor:
    return torch.diff(f, dim=axis)


def _forward_difference_transpose(z: torch.Tensor, axis: int) -> torch.Tensor:
    r""":math:`D^\top z` for the forward difference along ``axis``: pad with one zero on each side and difference."""
    axis = axis % z.dim()
    pad_lo = [0, 0] * z.dim()
    pad_hi = [0, 0] * z.dim()
    # torch pad order: last dimension first
    pad_lo[2 * (z.dim() - 1 - axis)] = 1
    pad_hi[2 * (z.dim() - 1 - axis) + 1] = 1
    return torch.nn.functional.pad(z, pad_lo) - torch.nn.functional.pad(z, pad_hi)


@dataclass(frozen=True, eq=False)
class SROperator(CachesNotPickled):
    r""":math:`A(w)` at one ``w``: matrix-free, linear in :math:`f` (vectors of shape ``(m²,)``).

    The CG hot path, :meth:`normal` (:math:`A^\top A f` with the exact adjoint), has three implementations,
    chosen per call from the active ``torch.func`` transforms (the numbers agree to round-off; tests assert it):

    * **plain** (no differentiating transform; ``f`` may be ``vmap``-batched): sparse CSR products with the
      interpolation matrix.
    * **primitive** (exactly one forward-mode level, e.g. inside ``jacfwd``, with unbatched primals): one
      ``torch.autograd.Function`` whose forward is the plain path and whose ``jvp`` is the exact
      directional derivative

      .. math::
          \frac{d}{dt} A^\top A f = A^\top A \dot f + h^d C^\top\big[W^\top K^\top K (\dot W c)
          + \dot W^\top K^\top K W c\big], \quad \dot W c = \textstyle\sum_j (\partial_{x_j} W c)\,
          \dot y_j, \quad \dot W^\top u = \textstyle\sum_j (\partial_{x_j} W)^\top (u\, \dot y_j),

      with :math:`c = Cf` the coefficients and :math:`\partial_{x_j} W` the weights of the spline gradient
      (:func:`~imreg_lib.spline.spline_weights` with ``gradient=True``). Generic forward AD of the gather
      would carry the 16-neighbour weights with all tangents through every CG iteration (and pays a slow
      mixed dual/constant path in PyTorch); this rule works on the tangents of the points, :math:`\dot y`,
      and is about ten times faster inside ``jacfwd``. ``jacfwd`` still differentiates CG itself.
    * **generic** (everything else: reverse mode, nested transforms, batched primals, the AD adjoint, CUDA):
      pure tensor operations, differentiable to any order.

    The plain and primitive paths unwrap ``torch.func`` levels with the lowering ``torch.func`` uses for custom
    functions (:func:`~imreg_lib._torch.call_on_vmap_batch`, :func:`~imreg_lib._torch.batched_tangent_rule`,
    tested on the pinned PyTorch). ``with imreg_lib._torch.fast_paths(False):`` routes every call to the generic
    path (and :class:`~imreg_lib.spline.SplineWeights` to its gather), e.g. to compare the paths.

    Attributes
    ----------
    problem
        The problem.
    w
        Full parameters, shape ``(6q,)``.
    y
        Transformed points :math:`y_j(x_c)` of all templates, shape ``(q m², 2)``.
    sampler
        Interpolation weights at ``y`` (depend on ``w`` only; built once).
    """

    problem: SuperResolutionProblem
    w: torch.Tensor
    y: torch.Tensor
    sampler: SplineWeights
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def detach(self) -> SROperator:
        """The same operator with every dependence on ``w`` cut (a constant under AD transforms; its plain values
        when no ``vmap`` batches them, so that it can use the sparse path)."""
        s = self.sampler
        return SROperator(self.problem, primal_if_unbatched(self.w), primal_if_unbatched(self.y),
                          SplineWeights(s.index, primal_if_unbatched(s.weights), s.m))

    @property
    def _constant_sampler(self) -> SplineWeights:
        """Plain interpolation and gradient weights at the primal points (for the plain and primitive paths)."""
        if "sampler" not in self._cache:
            y = primal(self.y)
            with untraced():
                self._cache["sampler"] = spline_weights(y, self.problem.grid, gradient=True)
        return self._cache["sampler"]

    def _route(self, f: torch.Tensor) -> str:
        """``"plain"``, ``"primitive"`` or ``"generic"`` for :meth:`normal` at ``f`` (see the class docstring)."""
        if (not fast_paths_enabled() or f.requires_grad or self.y.requires_grad
                or self.problem.device.type != "cpu"):
            return "generic"
        kinds = transform_stack()
        y_plain = primal(self.y).dim() == self.y.dim()
        if all(k == "vmap" for k in kinds):
            return "plain" if y_plain else "generic"
        if kinds in _PRIMITIVE_STACKS and y_plain and primal(f).dim() == f.dim():
            return "primitive"
        return "generic"

    def _pool_pool_transpose(self, v: torch.Tensor, scale: float) -> torch.Tensor:
        r"""``scale`` times :math:`(I \otimes K)^\top (I \otimes K) v` for ``v`` of shape ``(q m², B)``."""
        pb = self.problem
        k, mt, q = pb.factor, pb.m // pb.factor, pb.n_templates
        V = v.reshape(q, mt, k, mt, k, -1)
        Z = sum(V[:, :, a, :, b] for a in range(k) for b in range(k))  # slices: much faster than mean(dim=...)
        Z = _scale(Z, scale / (k * k) ** 2)[:, :, None, :, None]
        return Z.expand(q, mt, k, mt, k, V.shape[-1]).reshape(v.shape)

    def _normal_batched(self, F: torch.Tensor | None, F_dot: torch.Tensor | None = None,
                        Y_dot: torch.Tensor | None = None) -> torch.Tensor:
        r"""Plain-tensor kernel of :meth:`normal` and of its directional derivative, with explicit batches.

        ``F`` of shape ``(B, m²)`` gives :math:`A^\top A F_b` (``F_dot``, ``Y_dot`` unused). Otherwise ``F``
        is the primal image ``(m²,)`` and the result is the tangent
        :math:`A^\top A \dot f_b + \partial_y(A^\top A f)\, \dot y_b` for ``F_dot`` ``(B, m²)`` and/or
        ``Y_dot`` ``(B, q m², 2)`` (see the class docstring). Sparse CSR products with the interpolation and
        gradient weights at the primal points; shape ``(B, m²)``.
        """
        pb = self.problem
        S = self._constant_sampler.sparse()
        P, m, hd = pb.prefilter, pb.m, pb.data_scale ** 2
        n = self.y.shape[0]

        def coefficients(X):  # (B, m²) -> padded coefficient columns (size, B)
            C = P @ X.reshape(-1, m, m) @ P.T
            return torch.nn.functional.pad(C, (3, 2, 3, 2)).reshape(C.shape[0], -1).T.contiguous()

        if F_dot is None and Y_dot is None:
            X = F
        else:
            X = F_dot
        B = (X if X is not None else Y_dot).shape[0]
        V = S["W"] @ coefficients(X) if X is not None else torch.zeros(n, B, dtype=pb.dtype, device=pb.device)
        if Y_dot is not None:
            c = coefficients(F[None])[:, 0]
            WGc = (S["WG"] @ c).reshape(-1, n)  # rows: W c, then the spline gradient ∂_j T at the points
            Yt = Y_dot.permute(2, 1, 0)  # (d, N, B)
            for j in range(Yt.shape[0]):  # (Ẇ c)_n = ∇T(y_n) · ẏ_n
                V = torch.addcmul(V, WGc[1 + j, :, None], Yt[j])
            z0 = self._pool_pool_transpose(WGc[0], hd)  # h^d KᵀK W c
            U = torch.cat([self._pool_pool_transpose(V, hd), (z0[None, :, None] * Yt).reshape(-1, B)])
            flat = S["WGT"] @ U  # Wᵀ (...) + Σ_j (∂_j W)ᵀ (z0 ẏ_j) in one product
        else:
            flat = S["WT"] @ self._pool_pool_transpose(V, hd)
        crop = flat.reshape(m + 5, m + 5, B)[3:3 + m, 3:3 + m].permute(2, 0, 1)
        out = (P.T @ crop @ P).reshape(B, m * m)
        return out if X is None else out + self.regularizer_normal(X, pb.reg_scale ** 2)

    # --- the blocks --------------------------------------------------------------------------------
    def coefficients(self, f: torch.Tensor) -> torch.Tensor:
        r"""Spline coefficients (θ = 0) :math:`c = B^{-1} F B^{-\top}` of ``f`` (shape ``(m²,)``) as ``(m, m)``,
        computed once per application and shared by all templates."""
        P = self.problem.prefilter
        return P @ f.reshape(self.problem.grid.m) @ P.T

    def coefficients_transpose(self, c: torch.Tensor) -> torch.Tensor:
        P = self.problem.prefilter
        return (P.T @ c @ P).reshape(-1)

    def pool(self, v: torch.Tensor) -> torch.Tensor:
        r"""Mean pooling :math:`(I \otimes K)`: ``(q m²,)`` to ``(q (m/k)²,)``."""
        pb = self.problem
        k, mt = pb.factor, pb.m // pb.factor
        return v.reshape(pb.n_templates, mt, k, mt, k).mean(dim=(2, 4)).reshape(-1)

    def pool_transpose(self, z: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        r"""``scale`` times :math:`(I \otimes K)^\top z = z \otimes 1_{k \times k} / k^2`."""
        pb = self.problem
        k, mt = pb.factor, pb.m // pb.factor
        Z = _scale(z, scale / (k * k)).reshape(pb.n_templates, mt, 1, mt, 1)
        return Z.expand(pb.n_templates, mt, k, mt, k).reshape(-1)

    def data_map(self, f: torch.Tensor) -> torch.Tensor:
        r""":math:`(I \otimes K) I(w) f`, shape ``(q (m/k)²,)`` (no scaling): the model of the data :math:`d`."""
        return self.pool(self.sampler.apply(self.coefficients(f)))

    def data_map_transpose(self, z: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """``scale`` times the transpose of :meth:`data_map`."""
        return self.coefficients_transpose(self.sampler.transpose(self.pool_transpose(z, scale)))

    def regularizer(self, f: torch.Tensor) -> torch.Tensor:
        r""":math:`L f = [\mathrm{vec}(D_x F)/h_0;\ \mathrm{vec}(D_y F)/h_1]`, shape ``(2 m (m-1),)``."""
        F = f.reshape(self.problem.grid.m)
        h = self.problem.grid.h
        return torch.cat([_scale(_forward_difference(F, 0), 1.0 / h[0]).reshape(-1),
                          _scale(_forward_difference(F, 1), 1.0 / h[1]).reshape(-1)])

    def regularizer_transpose(self, z: torch.Tensor) -> torch.Tensor:
        m, h = self.problem.m, self.problem.grid.h
        n0 = (m - 1) * m
        Zx, Zy = z[:n0].reshape(m - 1, m), z[n0:].reshape(m, m - 1)
        return (_scale(_forward_difference_transpose(Zx, 0), 1.0 / h[0])
                + _scale(_forward_difference_transpose(Zy, 1), 1.0 / h[1])).reshape(-1)

    def regularizer_normal(self, f: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        r"""``scale`` times :math:`L^\top L f = (D_x^\top D_x F)/h_0^2 + (D_y^\top D_y F)/h_1^2` (``f`` of shape
        ``(..., m²)``)."""
        m = self.problem.m
        F = f.reshape(*f.shape[:-1], m, m)
        h = self.problem.grid.h
        gx = _forward_difference_transpose(_forward_difference(F, -2), -2)
        gy = _forward_difference_transpose(_forward_difference(F, -1), -1)
        return (_scale(gx, scale / h[0] ** 2) + _scale(gy, scale / h[1] ** 2)).reshape(f.shape)

    # --- the stacked operator ---------------------------------------------------------------------
    def __call__(self, f: torch.Tensor) -> torch.Tensor:
        return self.apply(f)

    def apply(self, f: torch.Tensor) -> torch.Tensor:
        """:math:`A(w) f`, shape ``(n_rows,)``."""
        pb = self.problem
        return torch.cat([_scale(self.data_map(f), pb.data_scale), _scale(self.regularizer(f), pb.reg_scale)])

    def adjoint(self, y: torch.Tensor, method: str = "exact") -> torch.Tensor:
        r""":math:`A(w)^\top y`: ``"exact"`` (hand-written transpose) or ``"ad"`` (``torch.func.vjp`` of
        :meth:`apply`, the authors' way)."""
        pb = self.problem
        if method == "exact":
            n = pb.n_data
            return self.data_map_transpose(y[:n], pb.data_scale) + _scale(self.regularizer_transpose(y[n:]),
                                                                           pb.reg_scale)
        if method == "ad":
            zero = torch.zeros(pb.n_pixels, dtype=y.dtype, device=y.device)
            return torch.func.vjp(self.apply, zero)[1](y)[0]
        raise ValueError(f"adjoint must be 'exact' or 'ad', got {method!r}")

    def normal(self, f: torch.Tensor, adjoint: str = "exact") -> torch.Tensor:
        r""":math:`A^\top A f = h^d (KI)^\top (KI) f + \lambda^2 h^f L^\top L f` (fused for ``"exact"``; see
        the class docstring for the three implementations)."""
        if adjoint == "exact":
            route = self._route(f)
            if route == "plain":
                return call_on_vmap_batch(lambda X: self._normal_batched(X), f)
            if route == "primitive":
                return _NormalPrimitive.apply(f, self.y, self)
            pb = self.problem
            return (self.data_map_transpose(self.data_map(f), pb.data_scale ** 2)
                    + self.regularizer_normal(f, pb.reg_scale ** 2))
        return self.adjoint(self.apply(f), adjoint)

    def normal_rhs(self, adjoint: str = "exact") -> torch.Tensor:
        r""":math:`A^\top b = h^d (KI)^\top d` (the regulariser rows of :math:`b` vanish)."""
        pb = self.problem
        if adjoint == "exact":
            return self.data_map_transpose(pb.d, pb.data_scale ** 2)
        return self.adjoint(pb.b, adjoint)


def _tangent_rule(op: SROperator, f: torch.Tensor, f_dot: torch.Tensor | None,
                  y_dot: torch.Tensor | None) -> torch.Tensor:
    """The tangent of :meth:`SROperator.normal` inside the primitive's ``jvp``: the tangents ``f_dot`` (of the
    image) and ``y_dot`` (of the points) are lowered to plain ``(B, ...)`` tensors (``B`` the number of ``jacfwd``
    directions) and the sparse kernel computes all directions at once."""
    f_plain = primal(f)
    return batched_tangent_rule(lambda F_dot, Y_dot: op._normal_batched(f_plain, F_dot, Y_dot), (f_dot, y_dot))


class _NormalPrimitive(torch.autograd.Function):
    """``(f, y) -> A(w)ᵀA(w) f`` with a hand-written ``jvp`` (see :class:`SROperator`); forward mode only."""

    @staticmethod
    def vmap(info, in_dims, f, y, op):
        if in_dims[1] is not None:
            raise RuntimeError("the SR normal-operator primitive needs unbatched points (routed to the generic path)")
        return op._normal_batched(f.movedim(in_dims[0], 0)), 0

    @staticmethod
    def forward(f, y, op):
        return op._normal_batched(primal(f)[None])[0]

    @staticmethod
    def setup_context(ctx, inputs, output):
        f, _, op = inputs
        ctx.save_for_forward(f)
        ctx.op = op

    @staticmethod
    def jvp(ctx, f_dot, y_dot, _):
        (f,) = ctx.saved_tensors
        if f_dot is None and y_dot is None:
            return torch.zeros_like(f)
        return _tangent_rule(ctx.op, f, f_dot, y_dot)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("the SR normal-operator primitive is forward-mode only; reverse mode uses the generic path")
