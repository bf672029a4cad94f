r"""Coupled super-resolution (paper §4): the test problem and its matrix-free operators.

Model
-----
An unknown high-resolution image :math:`f \in \mathbb{R}^{n}` (``m × m`` cells on :math:`\Omega`) is seen through
:math:`q` affine motions and a :math:`k × k` mean pooling :math:`K` as low-resolution templates
:math:`d^{(j)} = K\, I_j(w)\, f \in \mathbb{R}^{(m/k)^2}`, where :math:`I_j(w) f` is the cubic spline of
:math:`f` (θ = 0, the paper's window) evaluated at :math:`y_j(x_c) = A_j x_c + b_j`. With the regulariser
:math:`L f = [\,D_x f / h_0;\ D_y f / h_1\,]` (forward differences divided by :math:`h`; the
consistent gradient; the paper writes a product with :math:`h`), the stacked least-squares system is

.. math::
    A(w) = \begin{bmatrix} \sqrt{h^d_0 h^d_1}\; (I \otimes K)\, I(w) \\ \lambda \sqrt{h^f_0 h^f_1}\; L
    \end{bmatrix}, \qquad
    b = \begin{bmatrix} \sqrt{h^d_0 h^d_1}\; d \\ 0 \end{bmatrix}, \qquad
    \min_f \|A(w) f - b\|^2 .

Implementation
--------------
:class:`SROperator` is :math:`A(w)` at one :math:`w`. Applying it costs **one** coefficient transform
:math:`c = B_0^{-1} F B_1^{-\top}` (θ = 0: the spline prefilter is :math:`B^{-1}` per dimension) shared by all
templates, and one gather of the :math:`4 \times 4` neighbours of the :math:`q\,m^2` transformed points from a
precomputed :class:`~imreg_lib.spline.SplineWeights` (the cubic weights depend on :math:`w` only, so they
are built once per operator, not once per application). The transpose is exact and hand-written
(scatter-add, pooling transpose :math:`K^\top z = z \otimes 1_{k\times k}/k^2`, :math:`D^\top`, :math:`B^{-\top}`);
the AD adjoint (``torch.func.vjp``, as the authors do) is available for comparison. Everything is pure tensor
code: ``jacfwd`` in :math:`w` goes through the weights, and ``vmap`` works over :math:`f`.

Data: template 0 is :math:`K R`, templates :math:`j \ge 1` are :math:`K I_j(w^*_j) R` with the
authors' ``getRandomAffine`` (:func:`random_affine`, seeds :math:`j + 1`); no noise. The CG start vector is the
moments spline (θ = 1e-2) of :math:`d^{(0)}` on the template grid evaluated at the fine cell centres.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch._C import _functorch

from .data import load_image, synthetic_hand_pair
from .device import DEFAULT_DTYPE, primal, primal_if_unbatched, resolve_device, untraced
from .grid import PAPER_OMEGA, Grid
from .spline import SplineImage, SplineWeights, spline_basis_matrices, spline_weights
from .transformations import Affine

__all__ = ["SROperator", "SuperResolutionProblem", "random_affine", "superresolution_problem"]

#: θ of the moments spline of template 0 that gives the CG start vector.
F_INIT_THETA = 1e-2

#: Route :meth:`SROperator.normal` to its sparse and custom-``jvp`` implementations where they apply.
USE_FAST_PATHS = True


def random_affine(seed: int, *, scale_range: tuple[float, float] = (0.95, 1.3),
                  rotation_range: tuple[float, float] = (0.0, 45.0),
                  translation_range: tuple[float, float] = (-0.15, 0.15),
                  center: Sequence[float] = (10.0, 12.5), dtype: torch.dtype = DEFAULT_DTYPE,
                  device: torch.device | str | None = None) -> torch.Tensor:
    r"""The authors' ``getRandomAffine``: affine parameters ``[A11, A12, A21, A22, b1, b2]``.

    With NumPy's legacy generator seeded by ``seed`` (the stream of ``np.random.seed(seed)``, without touching
    the global state): :math:`s_x, s_y \sim U(\text{scale\_range})`, :math:`\alpha \sim U(\text{rotation\_range})`
    degrees, then two translations drawn from ``translation_range`` **and not used** (as in the original).
    The map is a rotation with anisotropic scaling about ``center``,

    .. math::
        A = \begin{bmatrix} s_x\cos\alpha & -s_y\sin\alpha \\ s_x\sin\alpha & s_y\cos\alpha \end{bmatrix},
        \qquad b = c - A c,

    computed in float64 and rounded to **float32** (the original casts), then returned in ``dtype``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    for name, rng_ in (("scale_range", scale_range), ("rotation_range", rotation_range),
                       ("translation_range", translation_range)):
        if len(rng_) != 2 or not all(math.isfinite(v) for v in rng_) or not rng_[0] <= rng_[1]:
            raise ValueError(f"{name} must be a finite (low, high) pair with low <= high, got {rng_!r}")
    rng = np.random.RandomState(int(seed))
    sx, sy = rng.uniform(scale_range[0], scale_range[1], 2)
    angle = np.deg2rad(rng.uniform(rotation_range[0], rotation_range[1]))
    rng.uniform(translation_range[0], translation_range[1], 2)  # drawn but unused by the original
    A = np.array([[np.cos(angle) * sx, -np.sin(angle) * sy], [np.sin(angle) * sx, np.cos(angle) * sy]])
    c = np.asarray(center, dtype=np.float64)
    w = np.concatenate([A.reshape(-1), c - A @ c]).astype(np.float32)
    return torch.as_tensor(w.astype(np.float64), dtype=dtype, device=device)


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
class SuperResolutionProblem:
    r"""A super-resolution test problem: ground truth, data and the pieces of :math:`A(w)`, :math:`b`.

    Build it with :func:`superresolution_problem`. Parameters of all templates form one vector
    :math:`w \in \mathbb{R}^{6q}`, template 0 first, each ``[A11, A12, A21, A22, b1, b2]``.

    Attributes
    ----------
    reference
        The true high-resolution image :math:`R`, shape ``(m, m)`` (paper convention ``X[i, j]``).
    data
        Low-resolution templates :math:`d^{(j)}`, shape ``(q, m/k, m/k)``.
    w_true
        Generating parameters, shape ``(6q,)`` (template 0: identity).
    f_init
        CG start vector ``f0_interp``, shape ``(m*m,)``.
    grid, template_grid
        Fine grid (``m`` cells) and template grid (``m/k`` cells) on the same domain.
    factor
        Pooling factor :math:`k`.
    lam
        Regularisation weight :math:`\lambda \ge 0`.
    source
        Where the reference came from.
    """

    reference: torch.Tensor
    data: torch.Tensor
    w_true: torch.Tensor
    f_init: torch.Tensor
    grid: Grid
    template_grid: Grid
    factor: int
    lam: float
    source: str = "synthetic hand"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        m = self.grid.m
        if self.grid.dim != 2 or m[0] != m[1]:
            raise ValueError(f"grid must be a square 2D grid, got m={m}")
        _check_factor(m[0], self.factor)
        _check_lam(self.lam)
        mt = m[0] // self.factor
        if self.template_grid.m != (mt, mt) or self.template_grid.omega != self.grid.omega:
            raise ValueError(f"template_grid must have m/factor = {mt} cells on the same domain, got "
                             f"{self.template_grid}")
        if tuple(self.reference.shape) != m:
            raise ValueError(f"reference must have shape {m}, got {tuple(self.reference.shape)}")
        if self.data.dim() != 3 or tuple(self.data.shape[1:]) != (mt, mt) or self.data.shape[0] < 1:
            raise ValueError(f"data must have shape (n_templates, {mt}, {mt}), got {tuple(self.data.shape)}")
        if tuple(self.w_true.shape) != (6 * self.data.shape[0],):
            raise ValueError(f"w_true must have shape ({6 * self.data.shape[0]},), got {tuple(self.w_true.shape)}")
        if tuple(self.f_init.shape) != (m[0] * m[1],):
            raise ValueError(f"f_init must have shape ({m[0] * m[1]},), got {tuple(self.f_init.shape)}")

    # --- sizes and constants -------------------------------------------------------------------------
    @property
    def m(self) -> int:
        return self.grid.m[0]

    @property
    def n_templates(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_params(self) -> int:
        """All affine parameters, :math:`6q` (template 0 included)."""
        return 6 * self.n_templates

    @property
    def n_pixels(self) -> int:
        """Unknowns in :math:`f`: :math:`m^2`."""
        return self.m * self.m

    @property
    def n_data(self) -> int:
        """Data values: :math:`q (m/k)^2`."""
        return int(self.data.numel())

    @property
    def n_rows(self) -> int:
        """Rows of :math:`A(w)`: data plus the :math:`2 m (m - 1)` regulariser rows."""
        return self.n_data + 2 * self.m * (self.m - 1)

    @property
    def data_scale(self) -> float:
        r""":math:`\sqrt{h^d_0 h^d_1}`."""
        return math.sqrt(self.template_grid.cell_volume)

    @property
    def reg_scale(self) -> float:
        r""":math:`\lambda \sqrt{h^f_0 h^f_1}`."""
        return self.lam * math.sqrt(self.grid.cell_volume)

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    def identity(self) -> torch.Tensor:
        """The identity for every template, shape ``(6q,)``."""
        return Affine().identity(self.device, self.dtype).repeat(self.n_templates)

    def _constant(self, name: str, build):
        if name not in self._cache:
            with untraced():
                self._cache[name] = build()
        return self._cache[name]

    @property
    def x(self) -> torch.Tensor:
        """Fine-grid cell centres :math:`x_c`, shape ``(m², 2)``."""
        return self._constant("x", lambda: self.grid.cell_centers(self.device, self.dtype))

    @property
    def prefilter(self) -> torch.Tensor:
        r""":math:`B^{-1}` with :math:`B = \mathrm{tridiag}(1, 4, 1)` (``m × m``): the θ = 0 spline prefilter."""
        def build():
            B = spline_basis_matrices(self.m, torch.float64)[0]
            return torch.linalg.inv(B).to(device=self.device, dtype=self.dtype)
        return self._constant("prefilter", build)

    @property
    def d(self) -> torch.Tensor:
        """Stacked data :math:`d`, shape ``(q (m/k)^2,)``."""
        return self.data.reshape(-1)

    @property
    def b(self) -> torch.Tensor:
        """Right-hand side :math:`b = [\\sqrt{h^d} d; 0]`, shape ``(n_rows,)``."""
        def build():
            zeros = torch.zeros(self.n_rows - self.n_data, dtype=self.dtype, device=self.device)
            return torch.cat([self.data_scale * self.d, zeros])
        return self._constant("b", build)

    # --- operators ---------------------------------------------------------------------------------
    def check_parameters(self, w: torch.Tensor) -> None:
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != (self.n_params,):
            shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise ValueError(f"w must be a tensor of shape ({self.n_params},) (6 affine parameters per template, "
                             f"template 0 first), got {shape}")

    def transformed_points(self, w: torch.Tensor) -> torch.Tensor:
        r""":math:`y_j(x_c) = A_j x_c + b_j` for all templates, shape ``(q m², 2)`` (template 0 first)."""
        W = w.reshape(self.n_templates, 6)
        A = W[:, :4].reshape(-1, 2, 2)
        y = torch.einsum("nd,jkd->jnk", self.x, A) + W[:, None, 4:]
        return y.reshape(-1, 2)

    def operator(self, w: torch.Tensor) -> SROperator:
        """:math:`A(w)` at the full parameter vector ``w`` (shape ``(6q,)``)."""
        self.check_parameters(w)
        y = self.transformed_points(w)
        return SROperator(self, w, y, spline_weights(y, self.grid))


def _scale(x: torch.Tensor, s: float) -> torch.Tensor:
    """``s * x`` for a Python number ``s`` through ``aten.mul.Scalar``: under forward-mode transforms the
    ``Tensor * float`` overload goes through a wrapped-number zero-tangent path that costs ~20x more."""
    return torch.ops.aten.mul.Scalar(x, s)


@dataclass(frozen=True, eq=False)
class SROperator:
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

    The plain and primitive paths unwrap ``torch.func`` levels with the same private helpers ``torch.func`` uses
    for custom functions (``_unwrap_for_grad``, ``_unwrap_batched``, interpreter lowering); they are tested on
    the pinned PyTorch. Set ``imreg_lib.superres.USE_FAST_PATHS = False`` to route everything to the generic path.

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
        if not USE_FAST_PATHS or f.requires_grad or self.y.requires_grad or self.problem.device.type != "cpu":
            return "generic"
        kinds = [i.key() for i in _functorch.get_interpreter_stack() or []]
        T = _functorch.TransformType
        y_plain = primal(self.y).dim() == self.y.dim()
        if all(k == T.Vmap for k in kinds):
            return "plain" if y_plain else "generic"
        if kinds in ([T.Jvp], [T.Vmap, T.Jvp]) and y_plain and primal(f).dim() == f.dim():
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
                return _apply_batched(lambda X: self._normal_batched(X), f)
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


def _apply_batched(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply ``fn`` (a map of ``(B, n)`` to ``(B, n)``) to ``x`` of shape ``(..., n)``, plain or batched by
    ``vmap`` levels: each level is unwrapped so that ``fn`` sees the whole batch at once (sparse products have
    no per-sample overhead then), and the result is wrapped back."""
    stack = _functorch.get_interpreter_stack()
    if not stack:
        return fn(x.reshape(-1, x.shape[-1])).reshape(x.shape)
    from torch._functorch.pyfunctorch import retrieve_current_functorch_interpreter

    interpreter = retrieve_current_functorch_interpreter()  # a vmap level (the route checked it)
    level = interpreter.level()
    physical, bdim = _functorch._unwrap_batched(x, level)
    with interpreter.lower():
        out = _apply_batched(fn, physical if bdim is None else physical.movedim(bdim, 0))
    return out if bdim is None else _functorch._add_batch_dim(out, 0, level)


def _tangent_rule(op: SROperator, f: torch.Tensor, f_dot: torch.Tensor | None,
                  y_dot: torch.Tensor | None) -> torch.Tensor:
    """The tangent of ``normal`` inside the primitive's ``jvp``: the tangents arrive wrapped at the forward-mode
    level (and batched by ``jacfwd``'s ``vmap``); unwrap both levels, compute on plain ``(B, ...)`` tensors
    with sparse products, wrap back. This is the lowering ``torch.func`` itself applies to a custom function's
    ``forward``."""
    from torch._functorch.pyfunctorch import retrieve_current_functorch_interpreter

    T = _functorch.TransformType
    jvp_level = retrieve_current_functorch_interpreter()
    jl = jvp_level.level()
    tangents = [None if t is None else _functorch._unwrap_for_grad(t, jl) for t in (f_dot, y_dot)]
    f_plain = primal(f)
    with jvp_level.lower():
        inner = _functorch.peek_interpreter_stack()
        if inner is not None and inner.key() == T.Vmap:
            vmap_level = retrieve_current_functorch_interpreter()
            vl, size = vmap_level.level(), vmap_level.batch_size()
            phys = []
            for t in tangents:
                if t is None:
                    phys.append(None)
                    continue
                p, bdim = _functorch._unwrap_batched(t, vl)
                phys.append(p.expand(size, *p.shape) if bdim is None else p.movedim(bdim, 0))
            with vmap_level.lower():
                out = op._normal_batched(f_plain, *phys)
            out = _functorch._add_batch_dim(out, 0, vl)
        else:
            out = op._normal_batched(f_plain, *[None if t is None else t[None] for t in tangents])[0]
    return _functorch._wrap_for_grad(out, jl)


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


def _check_factor(m: int, factor) -> None:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    if m % factor != 0:
        raise ValueError(f"factor must divide m: m={m} is not a multiple of factor={factor}")
    if m // factor < 2:
        raise ValueError(f"factor is too large: m/factor = {m // factor} (the templates need at least 2 cells)")


def _check_lam(lam) -> None:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")


def superresolution_problem(m: int = 20, factor: int = 2, n_templates: int = 4, lam: float = 1e-2, *,
                            reference: torch.Tensor | None = None,
                            reference_path: str | os.PathLike | None = None,
                            omega: Sequence[float] = PAPER_OMEGA,
                            rotation_range: tuple[float, float] = (0.0, 45.0),
                            device: str | torch.device = "cpu",
                            dtype: torch.dtype = DEFAULT_DTYPE) -> SuperResolutionProblem:
    r"""Generate the authors' super-resolution test problem from any reference image.

    Parameters
    ----------
    m
        Fine resolution (``m × m`` cells).
    factor
        Pooling factor :math:`k`; must divide ``m`` (templates are ``m/k × m/k``).
    n_templates
        Number of templates :math:`q \ge 1`; template 0 is the unmoved one, template :math:`j \ge 1` uses
        :func:`random_affine` with seed :math:`j + 1` (seeds 2, 3, 4 for the paper's four templates).
    lam
        Regularisation weight :math:`\lambda \ge 0` (paper: 1e-2).
    reference, reference_path
        The true image: a tensor of shape ``(m, m)`` on the paper's convention, or an image file (loaded with
        :func:`~imreg_lib.data.load_image` at ``m`` cells); default: the project's synthetic hand at ``m``.
    omega
        Domain (the paper's (0, 20, 0, 25)); rotations are about its centre.
    rotation_range
        Rotation range of the random affines in degrees (the paper: (0, 45)).
    device, dtype
        Where and in which precision to build the problem.
    """
    if isinstance(m, bool) or not isinstance(m, int) or m < 4:
        raise ValueError(f"m must be an integer >= 4, got {m!r}")
    _check_factor(m, factor)
    if isinstance(n_templates, bool) or not isinstance(n_templates, int) or n_templates < 1:
        raise ValueError(f"n_templates must be an integer >= 1, got {n_templates!r}")
    _check_lam(lam)
    if reference is not None and reference_path is not None:
        raise ValueError("pass either reference or reference_path, not both")
    dev = resolve_device(device)
    grid = Grid(omega, m)
    if grid.dim != 2:
        raise ValueError(f"omega must describe a 2D domain, got {omega!r}")
    if reference_path is not None:
        R, source = load_image(reference_path, m, device=dev, dtype=dtype), os.path.basename(os.fspath(reference_path))
    elif reference is not None:
        if not isinstance(reference, torch.Tensor) or tuple(reference.shape) != (m, m):
            shape = tuple(reference.shape) if isinstance(reference, torch.Tensor) else type(reference).__name__
            raise ValueError(f"reference must be a tensor of shape ({m}, {m}), got {shape}")
        R, source = reference.to(device=dev, dtype=dtype), "user tensor"
    else:
        R, source = synthetic_hand_pair(m, omega, device=dev, dtype=dtype).reference, "synthetic hand"
    R = R.detach()
    tgrid = grid.with_m(m // factor)
    center = grid.center()
    ws = [Affine().identity(dev, dtype)]
    ws += [random_affine(j + 1, rotation_range=rotation_range, center=center, dtype=dtype, device=dev)
           for j in range(1, n_templates)]
    w_true = torch.cat(ws)
    mt = m // factor
    placeholder = torch.zeros(n_templates, mt, mt, dtype=dtype, device=dev)
    # the data are the model's prediction at the true parameters: d = (I ⊗ K) I(w*) R
    draft = SuperResolutionProblem(R, placeholder, w_true, R.reshape(-1), grid, tgrid, factor, float(lam), source)
    with torch.no_grad():
        data = draft.operator(w_true).data_map(R.reshape(-1)).reshape(n_templates, mt, mt)
        f_init = SplineImage(data[0], tgrid)(grid.cell_centers(dev, dtype), F_INIT_THETA)
    return SuperResolutionProblem(R, data, w_true, f_init, grid, tgrid, factor, float(lam), source)
