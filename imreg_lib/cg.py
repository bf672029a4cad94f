r"""Conjugate gradient for symmetric positive definite systems, with a switch for which iterations AD sees.

The iteration (the authors' notebook CG): from :math:`x_0`, :math:`r = b - Mx_0`, :math:`p = r`,

.. math::
    \alpha = \frac{r^\top r}{p^\top M p}, \quad x \mathrel{+}= \alpha p, \quad r \mathrel{-}= \alpha M p,
    \quad \text{stop if } \|r\| < \text{tol}, \quad p = r + \frac{r_{new}^\top r_{new}}{r^\top r} p,

with an **absolute** tolerance (1e-3 in the paper, on the normal-equation residual :math:`\|A^\top b - A^\top A
x\|`), optionally relaxed by a relative one (``rtol``: stop when :math:`\|r\| < \max(\text{tol},
\text{rtol}\,\|b\|)`), and breakdown detection: :math:`p^\top M p \le 0` or a non-finite value stops the run
with ``breakdown=True`` and the last good iterate.

Which iterations are differentiated (``differentiate``)
-------------------------------------------------------
* ``"all"``: every operation is traced (the paper's "Diff All"; forward mode through ``jacfwd``).
* ``"none"``: the solve runs on the constant operator and right-hand side; the result carries no derivative
  (Chung, Haber & Nagy's "No Diff").
* ``"last_restarted"`` (the authors' "lastdiff(p)", Figs 7-9): ``int(N(1-p))`` untraced iterations from
  :math:`x_0`, then a **fresh** traced CG (new residual, :math:`p = r`) from that result for ``int(N p)``
  iterations. Python's ``int`` truncation is kept: N = 200, p = 0.9 gives 19 + 180 = 199 iterations. Each part
  has its own early break. The restart makes this a different Krylov sequence from N plain iterations.
* ``"last_continued"``: **one** CG run of N iterations whose first ``N - int(N p)`` iterations are untraced;
  the state :math:`(x, r, p, r^\top r)` then continues with its values but without derivative history
  (N = 200, p = 0.9: 20 untraced + 180 traced, the same iterates as ``"all"``).

"Untraced" means the constant operator (``constant_operator``, e.g. :meth:`SROperator.detach`; without it the
traced operator is used and each iterate detached, which is correct but slower) and a detached state: under
``torch.func`` transforms ``detach`` drops tangents while ``torch.no_grad`` does not stop forward mode, so the
authors' ``no_grad`` is written as ``detach`` here. Where no ``vmap`` batches the primal, the untraced
iterations run on the plain primal values outside every transform (:func:`~imreg_lib._torch.primal`), which
is the same arithmetic without the wrapper overhead and lets the operator use its sparse fast path.

Early break under ``jacfwd`` / ``vmap``
---------------------------------------
The test :math:`\|r\| < \text{tol}` is taken on **primal values**: :func:`imreg_lib._torch.primal` peels every
``torch.func`` wrapper off :math:`r^\top r` (tangents never influence the decision, as in the original where
``jacfwd`` traces the primal branch). Inside ``jacfwd`` the primal is not batched, so the loop breaks where the
plain solve does (the same arithmetic; only if the operator is implemented differently under the transform can
round-off, which CG amplifies over hundreds of iterations, shift the count by an iteration).

Under a ``vmap`` whose members have *different* primal values (e.g. many right-hand sides at once, as the
implicit Jacobian does), Python cannot break per member; the loop then runs masked: a member that has converged
(or broken down) is frozen with ``torch.where`` (its step length is 0 and its state is kept), and the loop
stops when every member is frozen. Each member therefore returns what its own unbatched solve returns (up to
the round-off of batched arithmetic). The scalar statistics of
:class:`CGResult` are then over the batch (loop count, all converged, any breakdown, largest residual).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import _checks
from ._torch import is_traced, primal, primal_if_unbatched

__all__ = ["CG_MODES", "CGResult", "CGTangents", "cg_split", "conjugate_gradient", "conjugate_gradient_tangents"]

#: Values of ``differentiate``.
CG_MODES = ("all", "none", "last_restarted", "last_continued")

LinearMap = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class CGResult:
    """Outcome of :func:`conjugate_gradient`.

    Attributes
    ----------
    x
        The solution (traced as ``differentiate`` says).
    iterations
        CG iterations performed (both parts of a restarted run; under a batching ``vmap``: loop iterations).
    differentiated
        How many of them were traced.
    converged
        Whether the tolerance was met (in the last part of a restarted run).
    breakdown
        Whether :math:`p^\\top M p \\le 0` or a non-finite value stopped the run.
    residual_norm
        Final :math:`\\|r\\|` of the recurrence (primal value).
    """

    x: torch.Tensor
    iterations: int
    differentiated: int
    converged: bool
    breakdown: bool
    residual_norm: float


def cg_split(max_iter: int, fraction: float, differentiate: str) -> tuple[int, int]:
    """``(untraced, traced)`` iteration counts of a ``differentiate`` mode (see the module docstring).

    >>> cg_split(200, 0.9, "last_restarted")
    (19, 180)
    >>> cg_split(200, 0.9, "last_continued")
    (20, 180)
    """
    _check(max_iter, fraction, differentiate)
    if differentiate == "all":
        return 0, max_iter
    if differentiate == "none":
        return max_iter, 0
    traced = int(max_iter * fraction)
    if differentiate == "last_restarted":
        return int(max_iter * (1.0 - fraction)), traced
    return max_iter - traced, traced


def _check(max_iter, fraction, differentiate) -> None:
    _checks.integer("max_iter", max_iter, 0)
    _checks.fraction("fraction", fraction)
    _checks.one_of("differentiate", differentiate, CG_MODES)


@dataclass
class _State:
    x: torch.Tensor
    r: torch.Tensor
    p: torch.Tensor
    rs: torch.Tensor
    threshold: torch.Tensor | float
    iterations: int = 0
    converged: bool = False
    breakdown: bool = False
    # masked (batched) runs only: per-member flags, tensors under the caller's vmap
    active: torch.Tensor | None = None
    conv: torch.Tensor | None = None
    broke: torch.Tensor | None = None

    def detach(self) -> _State:
        """The state without derivative history (its plain values when no ``vmap`` batches it)."""
        det = lambda t: primal_if_unbatched(t) if isinstance(t, torch.Tensor) else t  # noqa: E731
        return _State(det(self.x), det(self.r), det(self.p), det(self.rs), det(self.threshold), self.iterations,
                      self.converged, self.breakdown, self.active, self.conv, self.broke)


def _start(op: LinearMap, rhs: torch.Tensor, x0: torch.Tensor, tol: float, rtol: float) -> _State:
    r = rhs - op(x0)
    rs = torch.dot(r, r)
    threshold = float(tol) if rtol == 0 else torch.clamp(rtol * torch.linalg.vector_norm(rhs), min=tol)
    return _State(x0, r, r, rs, threshold)


def _below(rs: torch.Tensor, threshold) -> torch.Tensor:
    """``sqrt(rs) < threshold`` as a tensor (comparisons carry no tangent; under ``vmap`` they stay batched)."""
    return torch.sqrt(rs) < threshold


def _iterate(op: LinearMap, s: _State, n_iter: int, detach: bool, record: list | None = None) -> _State:
    """Up to ``n_iter`` CG iterations from state ``s`` (unbatched fast path, or masked when batched).

    ``record`` (unbatched plain runs only): each completed iteration appends ``(p, Mp, pᵀMp, rᵀr, r_new,
    r_newᵀr_new)``, what :func:`conjugate_gradient_tangents` needs to carry tangents through it."""
    thr = None
    if detach and not any(is_traced(t) or t.requires_grad for t in (s.x, s.r, s.p, s.rs)):
        detach = False  # plain tensors: nothing to cut (and no new state per iteration)
    for _ in range(n_iter):
        if s.active is not None and not bool(primal(s.active).any()):
            break
        Ap = op(s.p)
        pAp = torch.dot(s.p, Ap)
        pAp_value = primal(pAp)
        if s.active is None and pAp_value.dim() > 0:  # a vmap batches the primal: switch to masking
            true = torch.ones_like(pAp, dtype=torch.bool)
            s.active, s.conv, s.broke = true, ~true, ~true
        if s.active is None:  # ------------------------------------------------------- unbatched
            curvature = float(pAp_value)
            if not (math.isfinite(curvature) and curvature > 0.0):
                s.breakdown = True
                s.converged = s.converged or float(primal(s.rs)) == 0.0
                break
            alpha = s.rs / pAp
            x, r = s.x + alpha * s.p, s.r - alpha * Ap
            rs_new = torch.dot(r, r)
            rs_value = float(primal(rs_new))
            if not math.isfinite(rs_value):
                s.breakdown = True
                break
            if record is not None:
                record.append((s.p, Ap, pAp, s.rs, r, rs_new))
            s.x, s.r, s.iterations = x, r, s.iterations + 1
            if thr is None:
                thr = s.threshold if isinstance(s.threshold, float) else float(primal(s.threshold))
            if math.sqrt(rs_value) < thr:
                s.rs, s.converged = rs_new, True
                if detach:
                    s = s.detach()
                break
            s.p = r + (rs_new / s.rs) * s.p
            s.rs = rs_new
        else:  # ----------------------------------------------------------------------- masked
            bad = s.active & ~(torch.isfinite(pAp) & (pAp > 0))
            step = s.active & ~bad
            alpha = torch.where(step, s.rs / torch.where(step, pAp, torch.ones_like(pAp)), torch.zeros_like(pAp))
            x, r = s.x + alpha * s.p, s.r - alpha * Ap
            rs_new = torch.dot(r, r)
            bad = bad | (step & ~torch.isfinite(rs_new))
            step = step & torch.isfinite(rs_new)
            conv = step & _below(rs_new, s.threshold)
            s.x, s.r = torch.where(step, x, s.x), torch.where(step, r, s.r)
            cont = step & ~conv
            beta = rs_new / torch.where(step, s.rs, torch.ones_like(s.rs))
            s.p = torch.where(cont, s.r + beta * s.p, s.p)
            s.rs = torch.where(step, rs_new, s.rs)
            s.conv, s.broke, s.active = s.conv | conv, s.broke | bad, cont
            s.iterations += 1
            s.converged = bool(primal(s.conv).all())
            s.breakdown = bool(primal(s.broke).any())
        if detach:
            s = s.detach()
    return s


def _const(x: torch.Tensor) -> torch.Tensor:
    return primal_if_unbatched(x)


def conjugate_gradient(operator: LinearMap, rhs: torch.Tensor, x0: torch.Tensor, *, max_iter: int,
                       tol: float = 1e-3, rtol: float = 0.0, differentiate: str = "all", fraction: float = 1.0,
                       constant_operator: LinearMap | None = None) -> CGResult:
    r"""Solve :math:`Mx = b` for SPD :math:`M` (``operator``) by CG, tracing the iterations ``differentiate`` says.

    Parameters
    ----------
    operator
        :math:`v \mapsto Mv` on vectors of the shape of ``rhs``.
    rhs, x0
        Right-hand side :math:`b` and start vector.
    max_iter
        Iteration budget :math:`N \ge 0` (a fixed count gives an inexact projection).
    tol, rtol
        Stop when :math:`\|r\| < \max(\text{tol}, \text{rtol}\,\|b\|)` (tested after each update, on primal
        values). ``tol=0, rtol=0`` runs exactly ``max_iter`` iterations unless CG breaks down.
    differentiate
        ``"all"``, ``"none"``, ``"last_restarted"`` or ``"last_continued"`` (module docstring).
    fraction
        :math:`p \in [0, 1]`, the traced fraction for the ``"last_*"`` modes.
    constant_operator
        The same map with no dependence on traced inputs, for the untraced iterations.
    """
    _check(max_iter, fraction, differentiate)
    _checks.positive_number("tol", tol, allow_zero=True)
    _checks.positive_number("rtol", rtol, allow_zero=True)
    if not isinstance(rhs, torch.Tensor) or rhs.dim() != 1 or not isinstance(x0, torch.Tensor) or x0.shape != rhs.shape:
        raise ValueError("rhs and x0 must be 1-D tensors of the same shape")
    const_op = constant_operator if constant_operator is not None else operator
    untraced, traced = cg_split(max_iter, fraction, differentiate)
    done = 0
    if differentiate == "all":
        s = _iterate(operator, _start(operator, rhs, x0, tol, rtol), traced, detach=False)
        done = s.iterations
    elif differentiate == "none":
        s = _iterate(const_op, _start(const_op, _const(rhs), _const(x0), tol, rtol).detach(), untraced, True)
    elif differentiate == "last_restarted":
        s = _iterate(const_op, _start(const_op, _const(rhs), _const(x0), tol, rtol).detach(), untraced, True)
        first = s.iterations
        s = _iterate(operator, _start(operator, rhs, s.x, tol, rtol), traced, detach=False)
        done, s.iterations = s.iterations, first + s.iterations
    elif untraced == 0:  # last_continued with nothing untraced: exactly "all"
        s = _iterate(operator, _start(operator, rhs, x0, tol, rtol), traced, detach=False)
        done = s.iterations
    else:  # last_continued: one sequence, the state detached before the traced tail
        s = _iterate(const_op, _start(const_op, _const(rhs), _const(x0), tol, rtol).detach(), untraced, True)
        if s.active is not None or not (s.converged or s.breakdown):  # masked: frozen members stay frozen
            first = s.iterations
            s = _iterate(operator, s, traced, detach=False)
            done = s.iterations - first
    residual = float(torch.sqrt(primal(s.rs)).max())
    return CGResult(s.x, s.iterations, done, s.converged, s.breakdown, residual)



@dataclass(frozen=True)
class CGTangents:
    """Outcome of :func:`conjugate_gradient_tangents`: the solve and the derivative of its result.

    Attributes
    ----------
    result
        The run, as :func:`conjugate_gradient` on the same plain inputs reports it.
    x_dot
        :math:`\\dot x`, shape ``(n, T)``: the derivative of ``result.x`` along each of the ``T`` directions.
    """

    result: CGResult
    x_dot: torch.Tensor


BlockDerivative = Callable[[torch.Tensor], torch.Tensor]


def conjugate_gradient_tangents(operator: LinearMap, operator_dot: BlockDerivative, rhs: torch.Tensor,
                                rhs_dot: torch.Tensor, x0: torch.Tensor, *, max_iter: int, tol: float = 1e-3,
                                rtol: float = 0.0, differentiate: str = "all", fraction: float = 1.0,
                                chunk: int = 64) -> CGTangents:
    r""":func:`conjugate_gradient` on plain tensors and the forward-mode derivative of its result along ``T``
    directions at once, carried by hand.

    For :math:`M(w) x = b(w)` with derivatives :math:`\dot M_t`, :math:`\dot b_t` along directions
    :math:`t = 1..T`, each traced iteration :math:`k` updates the tangents by the product rule
    (:math:`\rho = r^\top r`, :math:`\beta = \rho_{k+1}/\rho_k`):

    .. math::
        \dot{(Mp)} = M \dot p + \dot M p_k,\quad
        \dot\alpha = \frac{\dot\rho - \alpha\, (\dot p^\top M p_k + p_k^\top \dot{(Mp)})}{p_k^\top M p_k},\quad
        \dot x \mathrel{+}= \dot\alpha\, p_k + \alpha \dot p,\quad
        \dot r \mathrel{-}= \dot\alpha\, M p_k + \alpha\, \dot{(Mp)},

    .. math::
        \dot\rho_{k+1} = 2 r_{k+1}^\top \dot r,\quad
        \dot\beta = \frac{\dot\rho_{k+1} - \beta \dot\rho}{\rho_k},\quad
        \dot p = \dot r + \dot\beta\, p_k + \beta \dot p,

    which is what ``jacfwd`` through :func:`conjugate_gradient` computes (a test compares both). A fresh traced
    start at a constant :math:`x_s` has :math:`\dot r = \dot b - \dot M x_s`; the traced tail of
    ``"last_continued"`` starts with zero tangents.

    Two passes: the plain solve runs first (the same operations as :func:`conjugate_gradient`, so the iterates,
    the early break and the iteration counts are the plain solve's) and records its directions :math:`p_k`;
    the tangents then follow the recorded run, with :math:`\dot M p_k` computed for ``chunk`` directions at a
    time (one blocked product instead of one per iteration). No ``torch.func`` wrapper sits in the loop.

    Parameters
    ----------
    operator
        :math:`V \mapsto MV` for plain tensors of shape ``(n,)`` and ``(n, B)``.
    operator_dot
        :math:`[p_1 \dots p_K] \mapsto [\dot M_t p_k]`: ``(n, K)`` to ``(K, n, T)``.
    rhs, rhs_dot
        :math:`b` ``(n,)`` and :math:`[\dot b_1, \dots, \dot b_T]` ``(n, T)``.
    x0
        Start vector (a constant).
    max_iter, tol, rtol, differentiate, fraction
        As in :func:`conjugate_gradient` (``"none"`` gives zero tangents).
    chunk
        Directions per blocked :math:`\dot M` product.
    """
    _check(max_iter, fraction, differentiate)
    _checks.positive_number("tol", tol, allow_zero=True)
    _checks.positive_number("rtol", rtol, allow_zero=True)
    _checks.integer("chunk", chunk, 1)
    if rhs.dim() != 1 or x0.shape != rhs.shape or rhs_dot.dim() != 2 or rhs_dot.shape[0] != rhs.shape[0]:
        raise ValueError("rhs and x0 must be 1-D tensors of the same shape (n,), rhs_dot of shape (n, T)")
    untraced, traced = cg_split(max_iter, fraction, differentiate)
    zeros = torch.zeros_like(rhs_dot)
    record: list = []
    x_s = None  # the constant start of a fresh traced part
    if differentiate == "all" or (differentiate == "last_continued" and untraced == 0):
        x_s = x0
        s = _iterate(operator, _start(operator, rhs, x0, tol, rtol), traced, False, record)
    else:
        s = _iterate(operator, _start(operator, rhs, x0, tol, rtol).detach(), untraced, True)
        if differentiate == "last_restarted":
            first, x_s = s.iterations, s.x
            s = _iterate(operator, _start(operator, rhs, s.x, tol, rtol), traced, False, record)
            s.iterations += first
        elif differentiate == "last_continued" and not (s.converged or s.breakdown):
            s = _iterate(operator, s, traced, False, record)
    result = CGResult(s.x, s.iterations, len(record), s.converged, s.breakdown, float(torch.sqrt(s.rs)))
    if not record:
        return CGTangents(result, zeros)
    X = zeros.clone()
    if x_s is not None:  # r' = b' - M' x_s, p' = r' (the recorded p_0 is r_0)
        R = rhs_dot - operator_dot(x_s[:, None])[0]
        P, RS = R.clone(), 2.0 * (R.T @ record[0][0])
    else:
        R, P, RS = zeros.clone(), zeros.clone(), rhs.new_zeros(rhs_dot.shape[1])
    last = len(record) - 1
    for c0 in range(0, len(record), chunk):
        block = record[c0:c0 + chunk]
        M_dot_p = operator_dot(torch.stack([rec[0] for rec in block], dim=1))  # (K, n, T)
        for i, (p, Ap, pAp, rs, r_new, rs_new) in enumerate(block):
            Ap_dot = M_dot_p[i].add_(operator(P))
            alpha = float(rs / pAp)  # the primal's alpha
            alpha_dot = (RS - alpha * (P.T @ Ap + Ap_dot.T @ p)) / pAp
            X.add_(P, alpha=alpha).addr_(p, alpha_dot)
            R.sub_(Ap_dot, alpha=alpha).addr_(Ap, alpha_dot, alpha=-1.0)
            if c0 + i == last:
                break
            RS_new = 2.0 * (R.T @ r_new)
            beta = float(rs_new / rs)
            P.mul_(beta).add_(R).addr_(p, (RS_new - beta * RS) / rs)
            RS = RS_new
    return CGTangents(result, X)
