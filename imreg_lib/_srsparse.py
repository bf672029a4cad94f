r"""The super-resolution operator assembled as sparse matrices at one motion (private module).

The dense assembly of :mod:`imreg_lib._srdense` stores :math:`A^\top A` with :math:`n^2` numbers: 42 MB at
``m = 48``, 2.1 GB at the authors' ``m = 128``. Between the two, the operator is assembled **in coefficient
space**, where it is sparse. With the θ = 0 spline prefilter :math:`C = P \otimes P` (:math:`P = B^{-1}`,
:math:`B = \mathrm{tridiag}(1, 4, 1)`, so :math:`C` is symmetric and :math:`C^{-1} = E = B \otimes B` is
banded),

.. math::
    G = \hat G\, C, \qquad \hat G = (I \otimes K)\, W(w) \in \mathbb{R}^{q n_t \times n}, \qquad
    M = A^\top A = C\, \big(h^d\, \hat G^\top \hat G\big)\, C + \lambda^2 h^f L^\top L,

where :math:`\hat G` holds the interpolation weights of the spline at the moved cell centres (16 per point, the
coefficients outside the image are zero) pooled over :math:`k \times k` blocks: about :math:`(k + 3)^2`
non-zeros per row. A product :math:`MV` is then two sparse products with :math:`\hat G`, two applications of
:math:`C` (dense :math:`m \times m` products along each image axis) and one sparse product with :math:`L^\top L`;
the derivative blocks :math:`\dot{\hat G}_{j,a}` (the spline gradient weights times :math:`x_0`, :math:`x_1` or 1,
as in :mod:`imreg_lib._srdense`) are sparse in the same pattern. CG runs on the same :math:`M` in image space, so
its iterates, and their derivatives, are those of the dense and the matrix-free paths (up to round-off).

The exact solves of ``"implicit"`` use

.. math::  M^{-1} = E\, N^{-1} E, \qquad N = h^d\, \hat G^\top \hat G + E\, \lambda^2 h^f L^\top L\, E,

with :math:`N` sparse and banded in the row-major pixel order (bandwidth about :math:`(s + 4)\, m` for motions
that move a pixel by :math:`s` cells): one banded Cholesky factorisation per motion (LAPACK ``pbtrf``).

Memory at ``m = 128``, ``k = 4``, 16 templates: :math:`\hat G` 0.8 M non-zeros, :math:`\dot{\hat G}` 4.6 M, the
factor of :math:`N` 150 MB; the tangent blocks :math:`(n, 6q)` of CG 12.6 MB each.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import torch

from ._srdense import DENSE_MAX_PIXELS, AssembledNormal, dense_suitable
from ._torch import fast_paths_enabled, is_grad_traced, is_traced
from .spline import spline_basis_matrices, spline_weights

__all__ = ["SPARSE_MAX_PIXELS", "SparseNormal", "assemble", "assembled_suitable"]

#: Largest number of pixels for which the sparse assembly is used (``m = 256``); above it, the matrix-free path.
SPARSE_MAX_PIXELS = 65536


def assembled_suitable(problem, w: torch.Tensor, adjoint: str = "exact") -> bool:
    """Whether an assembled operator (dense or sparse) serves ``problem`` at ``w``: fast paths on, the CPU, at most
    :data:`SPARSE_MAX_PIXELS` pixels, the exact adjoint, and ``w`` a plain tensor."""
    return (fast_paths_enabled() and adjoint == "exact" and problem.device.type == "cpu"
            and problem.n_pixels <= SPARSE_MAX_PIXELS and not (is_traced(w) or is_grad_traced(w)
                                                                or w.requires_grad))


#: Dense assembled operators kept per problem (by motion): checks and runs that start from the same motion share
#: one. Two: an LM run needs only its current point (the residual and then the Jacobian there), and every kept
#: operator (10 MB at the paper's size) shows in the run's resident memory: with eight kept, the first run of a
#: process grew by 80 MB over its first eight points, which read as a growing memory per LM iteration.
_DENSE_KEPT = 2


def assemble(problem, w_full: torch.Tensor) -> AssembledNormal | SparseNormal:
    """The assembled operator at the plain full parameters ``w_full``: dense up to
    :data:`~imreg_lib._srdense.DENSE_MAX_PIXELS` pixels (the last :data:`_DENSE_KEPT` of a problem are kept and
    returned again for the same motion: the same values, nothing recomputed), sparse above."""
    if not (problem.n_pixels <= DENSE_MAX_PIXELS and dense_suitable(problem, w_full)):
        return SparseNormal.build(problem, w_full)
    kept = problem._constant("assembled_operators", OrderedDict)
    key = w_full.detach().numpy().tobytes()
    if key in kept:
        kept.move_to_end(key)
        return kept[key]
    kept[key] = D = AssembledNormal.build(problem, w_full)
    while len(kept) > _DENSE_KEPT:
        kept.popitem(last=False)
    return D


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _point_matrix(pb, sw, values: np.ndarray) -> sp.csr_matrix:
    r"""The per-point spline matrix with ``values`` (``(q m², 16)``: weights or gradient weights) in the pattern of
    ``sw``: CSR ``(q m², n)`` over the image's coefficients (the padding's entries dropped)."""
    m = pb.m
    r, s = np.divmod(_np(sw.index), m + 5)  # padded coefficient (r, s); the image's are 3..m+2
    inside = (r >= 3) & (r < m + 3) & (s >= 3) & (s < m + 3)
    cols = np.where(inside, (r - 3) * m + (s - 3), 0)
    N, k = cols.shape
    out = sp.csr_matrix((np.where(inside, values, 0.0).reshape(-1), cols.reshape(-1), np.arange(N + 1) * k),
                        shape=(N, m * m))
    out.eliminate_zeros()
    return out


def _pooling(pb) -> sp.csr_matrix:
    r""":math:`I \otimes K`: the mean over each template's :math:`k \times k` blocks, CSR ``(q n_t, q m²)``."""
    def build():
        m, k, q = pb.m, pb.factor, pb.n_templates
        mt = m // k
        i = np.arange(m) // k
        block = (i[:, None] * mt + i[None, :]).reshape(-1)
        rows = (np.arange(q)[:, None] * mt * mt + block[None, :]).reshape(-1)
        return sp.csr_matrix((np.full(q * m * m, 1.0 / (k * k)), (rows, np.arange(q * m * m))),
                             shape=(q * mt * mt, q * m * m))
    return pb._constant("sparse_pooling", build)


#: Columns from which a sparse product goes through PyTorch (fewer: SciPy, whose single-vector product is faster).
_TORCH_MIN_COLUMNS = 8


class _Sparse:
    """A CSR matrix (SciPy, for building) whose products with dense NumPy blocks run through PyTorch's sparse
    kernels (MKL on the CPU wheels: 2-3 times faster than SciPy's, and threaded)."""

    __slots__ = ("csr", "_t")

    def __init__(self, csr: sp.spmatrix):
        self.csr = sp.csr_matrix(csr)
        self.csr.sum_duplicates()
        self._t = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.csr.shape

    def __matmul__(self, X: np.ndarray) -> np.ndarray:
        if X.ndim == 1 or X.shape[1] < _TORCH_MIN_COLUMNS:  # SciPy's kernel: no per-call set-up
            return self.csr @ X
        if self._t is None:
            A = self.csr
            self._t = torch.sparse_csr_tensor(torch.from_numpy(A.indptr.astype(np.int64)),
                                              torch.from_numpy(A.indices.astype(np.int64)),
                                              torch.from_numpy(A.data), size=A.shape, check_invariants=False)
        return (self._t @ torch.from_numpy(np.ascontiguousarray(X))).numpy()


#: Widths (columns times ``m``) from which the prefilter runs as tridiagonal solves rather than dense products.
_SOLVE_WIDTH = 4096


def _prefilter(X: np.ndarray, P: np.ndarray, m: int) -> np.ndarray:
    r""":math:`(P \otimes P) X` for ``X`` of shape ``(m², K)``: along each image axis, a dense product with
    :math:`P = B^{-1}` for few columns, and for many a vectorised solve with :math:`B = \mathrm{tridiag}(1, 4, 1)`
    (:math:`O(m)` per column instead of :math:`O(m^2)`)."""
    K = X.shape[1]
    if m * K < _SOLVE_WIDTH:
        Y = (P @ X.reshape(m, m * K)).reshape(m, m, K).transpose(0, 2, 1)  # along the first axis; then (i, k, l)
        Y = np.ascontiguousarray(Y).reshape(m * K, m) @ P.T  # along the second
        return np.ascontiguousarray(Y.reshape(m, K, m).transpose(0, 2, 1)).reshape(m * m, K)
    Y = X.reshape(m, m, K).copy()
    _solve_b(Y, lambda i: Y[i])  # along the first image axis
    _solve_b(Y, lambda i: Y[:, i])  # along the second
    return Y.reshape(m * m, K)


def _solve_b(Y: np.ndarray, row) -> None:
    """Solve :math:`B x = y` in place along one axis of ``Y`` (``row(i)``: the view of index ``i``), by the
    :math:`LDL^\top` factors of :math:`B = \\mathrm{tridiag}(1, 4, 1)`."""
    m = Y.shape[0]
    d = np.empty(m)
    d[0] = 4.0
    for i in range(1, m):
        d[i] = 4.0 - 1.0 / d[i - 1]
    tmp = np.empty_like(row(0))
    for i in range(1, m):  # L y = f (unit lower, sub-diagonal 1/d[i-1])
        np.multiply(row(i - 1), 1.0 / d[i - 1], out=tmp)
        row(i)[...] -= tmp
    for i in range(m):
        row(i)[...] /= d[i]
    for i in range(m - 2, -1, -1):  # Lᵀ x = y / d
        np.multiply(row(i + 1), 1.0 / d[i], out=tmp)
        row(i)[...] -= tmp


@dataclass(frozen=True, eq=False)
class _Constants:
    """Per-problem constants: :math:`P`, the regulariser rows :math:`\\lambda\\sqrt{h^f} L`, :math:`\\lambda^2
    h^f L^\\top L`, and :math:`E = B \\otimes B` (sparse)."""

    P: np.ndarray
    L: _Sparse
    R: _Sparse
    E: sp.csr_matrix

    @classmethod
    def of(cls, pb) -> _Constants:
        def build():
            m = pb.m
            P = _np(pb.prefilter).copy()
            h = pb.grid.h
            D = sp.diags([-np.ones(m - 1), np.ones(m - 1)], [0, 1], shape=(m - 1, m))
            eye = sp.identity(m)
            L = pb.reg_scale * sp.vstack([sp.kron(D, eye) / h[0], sp.kron(eye, D) / h[1]]).tocsr()
            B = sp.csr_matrix(_np(spline_basis_matrices(m, torch.float64)[0]))
            return cls(P, _Sparse(L), _Sparse(L.T @ L), sp.kron(B, B).tocsr())
        return pb._constant("sparse_constants", build)


@dataclass(frozen=True, eq=False)
class SparseNormal:
    r""":math:`A(w)^\top A(w)` and its derivatives in :math:`w`, assembled sparse at one (plain) motion.

    The same products as :class:`~imreg_lib._srdense.AssembledNormal` (tests compare them); :math:`M` itself is
    never formed.

    Attributes
    ----------
    G
        :math:`\hat G`, the pooled interpolation in coefficient space, CSR ``(q n_t, n)``.
    problem
        The :class:`~imreg_lib.superres.SuperResolutionProblem`.
    tangent_chunk
        Recorded CG directions per blocked derivative product (a block holds ``chunk`` × n × 6q numbers).
    """

    G: _Sparse
    problem: object = field(repr=False)
    _weights: tuple = field(repr=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)
    tangent_chunk: int = 8

    @property
    def hd(self) -> float:
        """:math:`h^d`, the template cell volume."""
        return self.problem.data_scale ** 2

    @property
    def _c(self) -> _Constants:
        return _Constants.of(self.problem)

    @classmethod
    def build(cls, problem, w_full: torch.Tensor) -> SparseNormal:
        """Assemble :math:`\\hat G` at the full parameters ``w_full`` (shape ``(6q,)``, plain); the derivative blocks
        and the factor of :math:`N` follow on first use."""
        pb = problem
        sw = spline_weights(pb.transformed_points(w_full.detach()), pb.grid, gradient=True)
        W, pool = _point_matrix(pb, sw, _np(sw.weights)), _pooling(pb)
        return cls(_Sparse(pool @ W), pb, (sw, pool))

    # --- pieces built on first use ---------------------------------------------------------------------------
    def _lazy(self, name: str, build):
        if name not in self._cache:
            self._cache[name] = build()
        return self._cache[name]

    @property
    def GT(self) -> _Sparse:
        """:math:`\\hat G^\\top`."""
        return self._lazy("GT", lambda: _Sparse(self.G.csr.T))

    @property
    def G_dot(self) -> tuple[_Sparse, ...]:
        r""":math:`[\dot{\hat G}_{\cdot,a}]_{a=0..5}`: six CSR ``(q n_t, n)``, row ``j n_t + \text{block}`` holding
        :math:`\dot{\hat G}_{j,a}` (``a`` over ``A11, A12, A21, A22, b1, b2``)."""
        def build():
            sw, pool = self._weights
            pb = self.problem
            grad = _np(sw.gradient)  # (q m², 16, 2)
            x = np.tile(_np(pb.x), (pb.n_templates, 1))  # dy/dw_a: x0, x1 or 1, per point
            Wd = [_point_matrix(pb, sw, grad[..., d]) for d in (0, 1)]
            out = []
            for d, e in ((0, 0), (0, 1), (1, 0), (1, 1), (0, None), (1, None)):  # a = 0..5
                Wa = Wd[d] if e is None else sp.diags(x[:, e]) @ Wd[d]
                out.append(_Sparse(pool @ Wa))
            return tuple(out)
        return self._lazy("G_dot", build)

    @property
    def _first(self) -> _Sparse:
        r""":math:`[\dot{\hat G}_{j,a}^\top]` arranged so that its product with :math:`u` (``(q n_t, K)``, rows
        ``j n_t + \text{block}``) is every :math:`\dot{\hat G}_{j,a}^\top u_j` at once: CSR ``(n 6q, q n_t)``, row
        ``6q c + 6j + a``."""
        def build():
            q, n = self.problem.n_templates, self.G.shape[1]
            nt = self.G.shape[0] // q
            parts = [G.csr.tocoo() for G in self.G_dot]
            rows = np.concatenate([6 * q * G.col + 6 * (G.row // nt) + a for a, G in enumerate(parts)])
            cols = np.concatenate([G.row for G in parts])
            vals = np.concatenate([G.data for G in parts])
            return _Sparse(sp.csr_matrix((vals, (rows, cols)), shape=(6 * q * n, q * nt)))
        return self._lazy("first", build)

    @property
    def _second(self) -> _Sparse:
        r""":math:`[\hat G_j^\top]` arranged so that its product with :math:`[\dot{\hat G}_{j,a} c]` (``(q n_t, 6K)``)
        is every :math:`\hat G_j^\top \dot{\hat G}_{j,a} c`: CSR ``(n q, q n_t)``, row ``q c + j``."""
        def build():
            G = self.G.csr.tocoo()
            q = self.problem.n_templates
            return _Sparse(sp.csr_matrix((G.data, (q * G.col + G.row // (G.shape[0] // q), G.row)),
                                         shape=(q * G.shape[1], G.shape[0])))
        return self._lazy("second", build)

    # --- the prefilter -------------------------------------------------------------------------------------------
    def _prefilter(self, X: np.ndarray) -> np.ndarray:
        """:math:`C X` for ``X`` of shape ``(n, K)`` (a new array)."""
        return _prefilter(X, self._c.P, self.problem.m)

    # --- products ------------------------------------------------------------------------------------------------
    def normal(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`Mv` for ``v`` of shape ``(n,)`` or ``(n, B)``."""
        V = _np(v).reshape(v.shape[0], -1)
        c = self._prefilter(V)
        out = self.hd * self._prefilter(self.GT @ (self.G @ c)) + self._c.R @ V
        return torch.from_numpy(out.reshape(v.shape))

    def rhs(self) -> torch.Tensor:
        r""":math:`A^\top b = h^d\, C \hat G^\top d`, shape ``(n,)``."""
        d = _np(self.problem.data).reshape(-1, 1)
        return torch.from_numpy(self.hd * self._prefilter(self.GT @ d)[:, 0])

    def data_map(self, f: torch.Tensor) -> torch.Tensor:
        """:math:`\\hat G C f`, shape ``(q n_t,)`` or ``(q n_t, B)`` (the model of the data)."""
        F = _np(f).reshape(f.shape[0], -1)
        out = self.G @ self._prefilter(F)
        return torch.from_numpy(out.reshape(self.G.shape[0], *f.shape[1:]))

    def reg_map(self, f: torch.Tensor) -> torch.Tensor:
        r""":math:`\lambda \sqrt{h^f} L f` (the regulariser rows of eq. 7; ``(n,)`` or ``(n, B)``)."""
        return torch.from_numpy(self._c.L @ _np(f))

    def normal_dot(self, V: torch.Tensor) -> torch.Tensor:
        r""":math:`[\dot M_{j,a} v_k]` for the columns :math:`v_k` of ``V`` (``(n, K)``), shape ``(K, n, 6q)``:
        :math:`h^d C [\dot{\hat G}_{j,a}^\top \hat G_j + \hat G_j^\top \dot{\hat G}_{j,a}] C v_k`."""
        n, K = V.shape
        T = 6 * self.problem.n_templates
        c = self._prefilter(_np(V))
        out = self._first @ (self.G @ c)  # (n 6q, K): Ġ_{j,a}ᵀ Ĝ_j c
        Gd_c = np.stack([G @ c for G in self.G_dot], axis=1).reshape(self.G.shape[0], 6 * K)  # (j, block) x (a, k)
        out += (self._second @ Gd_c).reshape(out.shape)  # (n q, 6K) is (n 6q, K): Ĝ_jᵀ Ġ_{j,a} c
        out = self._prefilter(out.reshape(n, T * K))
        out *= self.hd
        return torch.from_numpy(out.reshape(n, T, K)).permute(2, 0, 1).contiguous()

    def data_map_dot(self, f: torch.Tensor) -> torch.Tensor:
        r""":math:`\partial_w (\hat G C f)`: the block-diagonal :math:`[\dot{\hat G}_{j,a} C f]`, shape
        ``(q n_t, 6q)``."""
        q = self.problem.n_templates
        nt = self.G.shape[0] // q
        c = self._prefilter(_np(f).reshape(-1, 1))
        vals = np.concatenate([G @ c for G in self.G_dot], axis=1).reshape(q, nt, 6)
        out = np.zeros((q, nt, q, 6))
        out[np.arange(q), :, np.arange(q), :] = vals
        return torch.from_numpy(out.reshape(q * nt, 6 * q))

    def rhs_dot(self) -> torch.Tensor:
        r""":math:`[\dot{(A^\top b)}_{j,a}] = h^d C [\dot{\hat G}_{j,a}^\top d_j]`, shape ``(n, 6q)``."""
        n, T = self.G.shape[1], 6 * self.problem.n_templates
        d = _np(self.problem.data).reshape(-1)
        return torch.from_numpy(self.hd * self._prefilter((self._first @ d).reshape(n, T)))

    # --- exact solves ----------------------------------------------------------------------------------------
    def _factor(self) -> tuple[np.ndarray, bool]:
        r"""Banded Cholesky factor of :math:`N = h^d \hat G^\top \hat G + E R E` (upper form, LAPACK layout)."""
        def build():
            cst = self._c
            N = (self.hd * (self.G.csr.T @ self.G.csr) + cst.E @ cst.R.csr @ cst.E).tocoo()
            upper = N.col >= N.row
            r, c, v = N.row[upper], N.col[upper], N.data[upper]
            bw = int((c - r).max())
            ab = np.zeros((bw + 1, N.shape[0]))
            ab[bw + r - c, c] = v
            return scipy.linalg.cholesky_banded(ab, overwrite_ab=True, check_finite=False), False
        return self._lazy("factor", build)

    def solve(self, B: torch.Tensor) -> torch.Tensor:
        r""":math:`M^{-1} B = E N^{-1} E B` for ``B`` of shape ``(n, T)``."""
        E = self._c.E
        Y = scipy.linalg.cho_solve_banded(self._factor(), E @ _np(B), check_finite=False)
        return torch.from_numpy(np.asarray(E @ Y))
