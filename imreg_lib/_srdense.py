r"""The super-resolution operator assembled as dense matrices at one motion (private module).

For small problems (a few thousand pixels) the matrix-free operator of :mod:`imreg_lib._sroperator` spends its
time dispatching tens of small tensor operations per product. Assembled once per motion :math:`w`, the same
operator is a handful of dense products:

.. math::
    G = (I \otimes K)\, W(w)\, C \in \mathbb{R}^{q n_t \times n}, \qquad
    M = A^\top A = h^d\, G^\top G + \lambda^2 h^f L^\top L, \qquad A^\top b = h^d\, G^\top d,

with :math:`C` the θ = 0 spline prefilter (:math:`c = B^{-1} F B^{-\top}`), :math:`W(w)` the interpolation at
the moved cell centres and :math:`K` the mean pooling (``n_t = (m/k)^2`` data per template, :math:`n = m^2`). The
motion of template :math:`j` moves only its block :math:`G_j`; along its parameter :math:`w_{j,a}` (``a`` over
``A11, A12, A21, A22, b1, b2``, :math:`y = Ax + b`)

.. math::
    \dot G_{j,a} = K\, \mathrm{diag}(\partial y_{d(a)} / \partial w_{j,a})\, (\partial_{d(a)} W_j)\, C,

(the spline gradient weights times :math:`x_0`, :math:`x_1` or 1), so that

.. math::
    \dot M_{j,a}\, p = h^d\big(\dot G_{j,a}^\top G_j p + G_j^\top \dot G_{j,a} p\big), \qquad
    \dot{(A^\top b)}_{j,a} = h^d\, \dot G_{j,a}^\top d_j .

:class:`AssembledNormal` holds :math:`M`, :math:`G_j` and :math:`\dot G_{j,a}` (built from the same spline weights
as the matrix-free operator, so both are the same linear map up to round-off; tests compare them, and the
derivatives with ``jacfwd`` of the generic path). With :func:`~imreg_lib.cg.conjugate_gradient_tangents` a CG
iteration with all parameter tangents is one matrix-vector and one matrix-matrix product with :math:`M` plus two
passes over :math:`\dot G`.

Memory: :math:`n^2 + q n_t n (1 + 6)` numbers (``m = 20``, four templates: 3.2 MB for :math:`M` and :math:`G`,
7.7 MB for :math:`\dot G`); :func:`dense_suitable` chooses this path up to :data:`DENSE_MAX_PIXELS` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ._torch import fast_paths_enabled, is_grad_traced, is_traced
from .spline import spline_weights

__all__ = ["DENSE_MAX_PIXELS", "AssembledNormal", "dense_suitable"]

#: Largest number of pixels :math:`n = m^2` for which the operator is assembled (``m = 48``: :math:`M` is 42 MB).
DENSE_MAX_PIXELS = 2304


def dense_suitable(problem, w: torch.Tensor, adjoint: str = "exact") -> bool:
    """Whether the assembled path serves ``problem`` at ``w``: fast paths on, the CPU, at most
    :data:`DENSE_MAX_PIXELS` pixels, the exact adjoint, and ``w`` a plain tensor (under a ``torch.func`` transform
    or autograd, the generic path differentiates)."""
    return (fast_paths_enabled() and adjoint == "exact" and problem.device.type == "cpu"
            and problem.n_pixels <= DENSE_MAX_PIXELS and not (is_traced(w) or is_grad_traced(w)
                                                                or w.requires_grad))


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` (batched as ``torch.matmul``) for plain CPU tensors, through NumPy's BLAS.

    Why: the book runs MKL (torch's BLAS) in its conditional-reproducibility mode ``MKL_CBWR=COMPATIBLE`` (SSE2
    kernels, the same numbers on Intel and AMD CPUs), where a float64 product of this path's sizes runs at 5-10
    GFLOP/s; NumPy's OpenBLAS, with its kernels pinned by ``OPENBLAS_CORETYPE`` (``tools/numerics.mk``), is just
    as reproducible and 2-3 times faster here. The arrays are shared, not copied."""
    return torch.from_numpy(np.matmul(a.numpy(), b.numpy()))


def _rows_to_image(U: torch.Tensor, P: torch.Tensor, m: int) -> torch.Tensor:
    r"""Rows over the padded coefficients (``(..., (m+5)²)``) as rows over the image: :math:`P^\top U P` per row
    (the padding holds zero coefficients), shape ``(..., m²)``."""
    lead = U.shape[:-1]
    crop = U.reshape(-1, m + 5, m + 5)[:, 3:3 + m, 3:3 + m]
    B = crop.shape[0]
    # two single products over the whole stack: (U P) row-stacked, then (Pᵀ (U P)) = ((U P)ᵀ P)ᵀ
    UP = _mm(crop.reshape(B * m, m), P).reshape(B, m, m)
    return _mm(UP.transpose(1, 2).reshape(B * m, m), P).reshape(B, m, m).transpose(1, 2).reshape(*lead, m * m)


@dataclass(frozen=True, eq=False)
class AssembledNormal:
    r""":math:`A(w)^\top A(w)` and its derivatives in :math:`w`, assembled at one (plain) motion.

    Attributes
    ----------
    M
        :math:`A^\top A`, shape ``(n, n)``.
    G
        Data blocks :math:`G_j`, shape ``(q, n_t, n)`` (no :math:`\sqrt{h^d}`).
    problem
        The :class:`~imreg_lib.superres.SuperResolutionProblem`.
    """

    M: torch.Tensor
    G: torch.Tensor
    problem: object = field(repr=False)
    _weights: tuple = field(repr=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)
    #: Recorded CG directions per blocked derivative product (:func:`~imreg_lib.cg.conjugate_gradient_tangents`).
    tangent_chunk: int = 64

    @property
    def hd(self) -> float:
        """:math:`h^d`, the template cell volume."""
        return self.problem.data_scale ** 2

    @property
    def data(self) -> torch.Tensor:
        """:math:`d`, shape ``(q, n_t)``."""
        return self.problem.data.reshape(self.G.shape[0], -1)

    @classmethod
    def build(cls, problem, w_full: torch.Tensor) -> AssembledNormal:
        """Assemble at the full parameters ``w_full`` (shape ``(6q,)``, plain); :attr:`G_dot` follows on first
        use, from the same spline weights."""
        pb = problem
        m, k, q = pb.m, pb.factor, pb.n_templates
        mt = m // k
        nt, size = mt * mt, (m + 5) ** 2
        y = pb.transformed_points(w_full)
        sw = spline_weights(y, pb.grid, gradient=True)
        # the pooled row of each point: template j, block (i // k, l // k) of its cell (i, l)
        i = torch.arange(m, device=pb.device) // k
        block = (i[:, None] * mt + i[None, :]).reshape(-1)
        rows = (torch.arange(q, device=pb.device)[:, None] * nt + block[None, :]).reshape(-1)  # (N,)
        flat = (rows[:, None] * size + sw.index).reshape(-1)
        KW = torch.zeros(q * nt * size, dtype=pb.dtype, device=pb.device)
        KW.index_add_(0, flat, (sw.weights / (k * k)).reshape(-1))
        P = pb.prefilter
        G = _rows_to_image(KW.reshape(q * nt, size), P, m)  # (q nt, n)
        M = pb.data_scale ** 2 * _mm(G.T, G) + _regularizer_normal(pb)
        return cls(M, G.reshape(q, nt, m * m), pb, (sw, rows))

    @property
    def G_dot(self) -> torch.Tensor:
        r""":math:`\dot G_{j,a}`, shape ``(q, n_t, 6, n)`` (built on first use)."""
        if "G_dot" not in self._cache:
            self._cache["G_dot"] = self._derivative_blocks(*self._weights)
        return self._cache["G_dot"]

    def _derivative_blocks(self, sw, rows) -> torch.Tensor:
        pb = self.problem
        m, k, q = pb.m, pb.factor, pb.n_templates
        nt, size, n_pts = (m // k) ** 2, (m + 5) ** 2, m * m
        x = pb.x  # (m², 2) cell centres: dy/dw for A11, A12, A21, A22, b1, b2
        one = torch.ones_like(x[:, 0])
        e = torch.stack([x[:, 0], x[:, 1], x[:, 0], x[:, 1], one, one], dim=1)  # (m², 6)
        dim = (0, 0, 1, 1, 0, 1)
        grad = sw.gradient.reshape(q, n_pts, -1, 2)  # (q, m², 16, 2)
        vals = torch.stack([e[None, :, a, None] * grad[..., dim[a]] for a in range(6)], dim=2)  # (q, m², 6, 16)
        local = rows.reshape(q, n_pts) - torch.arange(q, device=pb.device)[:, None] * nt  # block within template
        target = ((torch.arange(q, device=pb.device)[:, None] * nt + local)[:, :, None] * 6
                  + torch.arange(6, device=pb.device)[None, None, :])  # (q, m², 6): row of (j, block, a)
        flat = (target[..., None] * size + sw.index.reshape(q, n_pts, 1, -1)).reshape(-1)
        out = torch.zeros(q * nt * 6 * size, dtype=pb.dtype, device=pb.device)
        out.index_add_(0, flat, (vals / (k * k)).reshape(-1))
        return _rows_to_image(out.reshape(q * nt * 6, size), pb.prefilter, m).reshape(q, nt, 6, m * m)

    # --- products ------------------------------------------------------------------------------------
    def normal(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`Mv` for ``v`` of shape ``(n,)`` or ``(n, B)``."""
        return _mm(self.M, v)

    def rhs(self) -> torch.Tensor:
        r""":math:`A^\top b = h^d G^\top d`, shape ``(n,)``."""
        q, nt, n = self.G.shape
        return self.hd * (self.G.reshape(q * nt, n).T @ self.data.reshape(-1))

    def data_map(self, f: torch.Tensor) -> torch.Tensor:
        """:math:`Gf`, shape ``(q n_t,)`` (the model of the data)."""
        q, nt, n = self.G.shape
        return self.G.reshape(q * nt, n) @ f

    def normal_dot(self, V: torch.Tensor) -> torch.Tensor:
        r""":math:`[\dot M_{j,a} v_k]` for the columns :math:`v_k` of ``V`` (``(n, K)``), shape ``(K, n, 6q)``
        (parameter ``6j + a`` last)."""
        q, nt, _, n = self.G_dot.shape
        K = V.shape[1]
        GV = _mm(self.G.reshape(q * nt, n), V).reshape(q, nt, K)  # G_j v
        GdV = _mm(self.G_dot.reshape(q * nt * 6, n), V).reshape(q, nt, 6 * K)  # Ġ_{j,a} v
        first = _mm(self.G_dot.reshape(q, nt, 6 * n).transpose(1, 2), GV)  # (q, 6n, K): Ġᵀ G v
        second = _mm(self.G.transpose(1, 2), GdV)  # (q, n, 6K): Gᵀ Ġ v
        out = first.reshape(q, 6, n, K).permute(3, 2, 0, 1) + second.reshape(q, n, 6, K).permute(3, 1, 0, 2)
        return self.hd * out.reshape(K, n, 6 * q)

    def data_map_dot(self, f: torch.Tensor) -> torch.Tensor:
        r""":math:`\partial_w (G f)`: the block-diagonal :math:`[\dot G_{j,a} f]`, shape ``(q n_t, 6q)``."""
        q, nt, _, n = self.G_dot.shape
        return torch.block_diag(*(self.G_dot.reshape(q * nt * 6, n) @ f).reshape(q, nt, 6))

    def reg_map(self, f: torch.Tensor) -> torch.Tensor:
        r""":math:`\lambda \sqrt{h^f} L f` (the regulariser rows of eq. 7; ``(n,)`` or ``(n, B)``)."""
        pb = self.problem
        return pb._constant("dense_regularizer_scaled", lambda: pb.reg_scale * regularizer_matrix(pb)) @ f

    def solve(self, B: torch.Tensor) -> torch.Tensor:
        """:math:`M^{-1} B` for ``B`` of shape ``(n, T)`` (Cholesky of :math:`M`, factored on first use)."""
        if "cholesky" not in self._cache:
            self._cache["cholesky"] = torch.linalg.cholesky(self.M)
        return torch.cholesky_solve(B, self._cache["cholesky"])

    def rhs_dot(self) -> torch.Tensor:
        r""":math:`[\dot{(A^\top b)}_{j,a}] = h^d [\dot G_{j,a}^\top d_j]`, shape ``(n, 6q)``."""
        q, nt, _, n = self.G_dot.shape
        out = torch.bmm(self.data[:, None, :], self.G_dot.reshape(q, nt, 6 * n)).reshape(q, 6, n)
        return self.hd * out.permute(2, 0, 1).reshape(n, 6 * q)


def regularizer_matrix(pb) -> torch.Tensor:
    r""":math:`L`, the regulariser rows :math:`[D_x F / h_0;\ D_y F / h_1]` as a dense ``(2 m (m-1), n)`` matrix
    (no :math:`\lambda \sqrt{h^f}`; built once per problem)."""
    def build():
        m = pb.m
        n = m * m
        h = pb.grid.h
        eye = torch.eye(n, dtype=pb.dtype, device=pb.device).reshape(n, m, m)
        return torch.cat([(torch.diff(eye, dim=1) / h[0]).reshape(n, -1).T,
                          (torch.diff(eye, dim=2) / h[1]).reshape(n, -1).T])
    return pb._constant("dense_regularizer", build)


def _regularizer_normal(pb) -> torch.Tensor:
    r""":math:`\lambda^2 h^f L^\top L` as a dense ``(n, n)`` matrix (built once per problem)."""
    def build():
        L = regularizer_matrix(pb)
        return pb.reg_scale ** 2 * (L.T @ L)
    return pb._constant("dense_regularizer_normal", build)
