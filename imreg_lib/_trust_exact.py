r"""SciPy's ``trust-exact`` without its per-iteration machinery: the same algorithm, the same arithmetic.

``scipy.optimize.minimize(method="trust-exact")`` (SciPy 1.17) is the paper's corrector. On the book's problems its
own bookkeeping costs about a third of an evaluation of :math:`(J, \nabla J, H)` per iteration: a
``ScalarFunction`` with copies and memoisation around the user's callables, a new subproblem object per trial
point with its Gershgorin bounds and norms (also for points that are rejected), and checked wrappers
(``cho_solve``, ``solve_triangular``, ``norm``) around each LAPACK call of the subproblem. For a 6 × 6 or 12 × 12
Hessian that is most of the cost of the step.

:func:`minimize` is a line-by-line port of that method (``_minimize_trust_region`` with ``IterativeSubproblem``,
Moré and Sorensen's nearly exact subproblem solver with Cline, Moler, Stewart and Wilkinson's estimate of the
smallest singular value for the hard case), calling the *same* BLAS and LAPACK routines (``dpotrf``, ``dpotrs``,
``dtrtrs``, ``dnrm2``, ``dlange``) and NumPy operations in the same order, so that every iterate, radius and verdict
is bit-identical to SciPy's: a test runs both side by side and compares them exactly. What is gone is only work
that does not change a number: the copies, the wrappers' checks (finiteness is checked once per point), and the
subproblem's constants at a rejected trial point, which SciPy computes and never uses.

Options are SciPy's defaults (initial trust radius 1, maximal radius 1000, acceptance threshold
:math:`\eta = 0.15`, at most 25 subproblem iterations).

Because bit-identity needs SciPy's order of operations, this module follows the structure of SciPy's
``scipy/optimize/_trustregion.py`` and ``_trustregion_exact.py`` (SciPy 1.17; BSD 3-Clause licence, copyright
the SciPy Developers), rewritten here around one evaluation per point.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.linalg import get_blas_funcs, get_lapack_funcs

__all__ = ["TrustExactResult", "minimize"]

_X = np.zeros((1, 1))
_POTRF, _POTRS, _TRTRS = get_lapack_funcs(("potrf", "potrs", "trtrs"), (_X, _X))
_NRM2 = get_blas_funcs("nrm2", dtype=np.float64, ilp64="preferred")  # scipy.linalg.norm of a vector
_LANGE = get_lapack_funcs("lange", dtype=np.float64, ilp64="preferred")  # and its 1- and inf-norms
_EPS = float(np.finfo(float).eps)
_add, _abs = np.add.reduce, np.abs

#: SciPy's messages, by its ``warnflag``.
MESSAGES = ("Optimization terminated successfully.", "Maximum number of iterations has been exceeded.",
            "A bad approximation caused failure to predict improvement.",
            "A linalg error occurred, such as a non-psd Hessian.")

# SciPy's constants: trust region (``_minimize_trust_region``) and subproblem (``IterativeSubproblem``).
INITIAL_TRUST_RADIUS, MAX_TRUST_RADIUS, ETA = 1.0, 1000.0, 0.15
UPDATE_COEFF, SUBPROBLEM_MAXITER, K_EASY, K_HARD = 0.01, 25, 0.1, 0.2

Evaluate = Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class TrustExactResult:
    """``x``, SciPy's ``nit`` and ``status`` (``warnflag``: 0 success, 1 iteration limit, 2 no predicted decrease,
    3 a LAPACK failure), and its message."""

    x: np.ndarray
    nit: int
    status: int

    @property
    def success(self) -> bool:
        return self.status == 0

    @property
    def message(self) -> str:
        return MESSAGES[self.status]


def _norm(a: np.ndarray) -> float:
    """``scipy.linalg.norm(a)`` of a non-empty vector (BLAS ``nrm2``)."""
    return _NRM2(a)


def _norm_inf(a: np.ndarray) -> float:
    """``scipy.linalg.norm(a, np.inf)`` of a matrix: LAPACK ``lange`` on whichever layout is contiguous."""
    if np.isfortran(a):
        return _LANGE("i", a)
    if np.isfortran(a.T):
        return _LANGE("1", a.T)
    return np.linalg.norm(a, ord=np.inf)


def _solve_triangular(U: np.ndarray, b: np.ndarray, trans: int = 0) -> np.ndarray:
    """``scipy.linalg.solve_triangular(U, b, trans=trans)`` for an upper triangular ``U`` (LAPACK ``trtrs``)."""
    if U.flags.f_contiguous:
        x, info = _TRTRS(U, b, overwrite_b=False, lower=False, trans=trans, unitdiag=False)
    else:
        x, info = _TRTRS(U.T, b, overwrite_b=False, lower=True, trans=not trans, unitdiag=False)
    if info > 0:
        raise np.linalg.LinAlgError(f"singular matrix: resolution failed at diagonal {info - 1}")
    if info < 0:
        raise ValueError(f"illegal value in {-info}-th argument of internal trtrs")
    return x


def _smallest_singular_value(U: np.ndarray) -> tuple[float, np.ndarray]:
    """SciPy's ``estimate_smallest_singular_value`` of an upper triangular ``U``: ``(s_min, z_min)``."""
    n = U.shape[0]
    Ut = U.T
    p = np.zeros(n)
    w = np.empty(n)
    for k in range(n):
        wp = (1 - p[k]) / Ut[k, k]
        wm = (-1 - p[k]) / Ut[k, k]
        pp = p[k + 1:] + Ut[k + 1:, k] * wp
        pm = p[k + 1:] + Ut[k + 1:, k] * wm
        if abs(wp) + _add(_abs(pp)) >= abs(wm) + _add(_abs(pm)):  # 1-norms, as np.linalg.norm(., 1) sums them
            w[k] = wp
            p[k + 1:] = pp
        else:
            w[k] = wm
            p[k + 1:] = pm
    v = _solve_triangular(U, w)
    v_norm = _norm(v)
    return _norm(w) / v_norm, v / v_norm


@functools.lru_cache(maxsize=8)
def _eye(n: int) -> np.ndarray:
    eye = np.eye(n)
    eye.flags.writeable = False
    return eye


def _boundaries(z: np.ndarray, d: np.ndarray, radius: float) -> list[float]:
    """The two ``t`` with ``||z + t d|| = radius``, sorted (SciPy's ``get_boundaries_intersections``)."""
    a = np.dot(d, d)
    b = 2 * np.dot(z, d)
    c = np.dot(z, z) - radius**2
    sqrt_discriminant = math.sqrt(b * b - 4 * a * c)
    aux = b + math.copysign(sqrt_discriminant, b)
    return sorted([-aux / (2 * a), -2 * c / aux])


class _Model:
    """The quadratic model at one point and the state SciPy's ``IterativeSubproblem`` keeps between solves."""

    __slots__ = ("x", "fun", "jac", "hess", "_jac_mag", "ready", "lb", "ub", "hess_inf", "hess_fro",
                 "close_to_zero", "min_diag", "previous_tr_radius", "lambda_lb")

    def __init__(self, x: np.ndarray, fun: float, jac: np.ndarray, hess: np.ndarray) -> None:
        if not np.isfinite(hess).all():  # SciPy's checked norm of the Hessian, taken at every trial point
            raise ValueError("array must not contain infs or NaNs")
        self.x, self.fun, self.jac, self.hess = x, fun, jac, hess
        self._jac_mag = _norm(jac) if np.isfinite(jac).all() else None
        self.ready = False
        self.previous_tr_radius, self.lambda_lb = -1, None

    @property
    def jac_mag(self) -> float:
        """``||∇J||``; like SciPy's checked norm, an error for a gradient that is not finite (asked for only at the
        start and at accepted points)."""
        if self._jac_mag is None:
            raise ValueError("array must not contain infs or NaNs")
        return self._jac_mag

    def __call__(self, p: np.ndarray) -> float:
        return self.fun + np.dot(self.jac, p) + 0.5 * np.dot(p, np.dot(self.hess, p))

    def _prepare(self) -> None:  # SciPy computes these for every trial point; only a solve needs them
        H = self.hess
        diag = np.diag(H)
        diag_abs = np.abs(diag)
        row_sums = np.sum(np.abs(H), axis=1)
        # Python floats from here on (the same doubles as NumPy's scalars, with cheaper arithmetic)
        self.lb = float(np.min(diag + diag_abs - row_sums))
        self.ub = float(np.max(diag - diag_abs + row_sums))
        self.hess_inf = float(_norm_inf(H))
        self.hess_fro = float(np.linalg.norm(H, "fro"))
        self.min_diag = min(diag.tolist())
        self.close_to_zero = len(H) * _EPS * self.hess_inf
        self.ready = True

    def solve(self, tr_radius: float) -> tuple[np.ndarray, bool]:
        """SciPy's ``IterativeSubproblem.solve``: the step and whether it reaches the boundary."""
        if not self.ready:
            self._prepare()
        hess, jac, jac_mag = self.hess, self.jac, self.jac_mag
        lambda_ub = max(0, jac_mag / tr_radius + min(-self.lb, self.hess_fro, self.hess_inf))
        lambda_lb = max(0, -self.min_diag, jac_mag / tr_radius - min(self.ub, self.hess_fro, self.hess_inf))
        if tr_radius < self.previous_tr_radius:
            lambda_lb = max(self.lambda_lb, lambda_lb)
        if lambda_lb == 0:
            lambda_current = 0
        else:
            lambda_current = max(np.sqrt(lambda_lb * lambda_ub), lambda_lb + UPDATE_COEFF * (lambda_ub - lambda_lb))
        n = len(hess)
        eye = _eye(n)
        hits_boundary = True
        already_factorized = False
        niter = 0
        while niter < SUBPROBLEM_MAXITER:
            if already_factorized:
                already_factorized = False
            else:
                H = hess + lambda_current * eye
                U, info = _POTRF(H, lower=False, overwrite_a=False, clean=True)
            niter += 1
            if info == 0 and jac_mag > self.close_to_zero:
                p = _POTRS(U, -jac, lower=False, overwrite_b=False)[0]
                p_norm = _norm(p)
                if p_norm <= tr_radius and lambda_current == 0:
                    hits_boundary = False
                    break
                w = _solve_triangular(U, p, trans=1)
                w_norm = _norm(w)
                delta_lambda = (p_norm / w_norm) ** 2 * (p_norm - tr_radius) / tr_radius
                lambda_new = lambda_current + delta_lambda
                if p_norm < tr_radius:  # inside the boundary: the hard case
                    s_min, z_min = _smallest_singular_value(U)
                    ta, tb = _boundaries(p, z_min, tr_radius)
                    step_len = min([ta, tb], key=abs)
                    quadratic_term = np.dot(p, np.dot(H, p))
                    relative_error = (step_len**2 * s_min**2) / (quadratic_term + lambda_current * tr_radius**2)
                    if relative_error <= K_HARD:
                        p += step_len * z_min
                        break
                    lambda_ub = lambda_current
                    lambda_lb = max(lambda_lb, lambda_current - s_min**2)
                    H = hess + lambda_new * eye
                    c, info = _POTRF(H, lower=False, overwrite_a=False, clean=True)
                    if info == 0:
                        lambda_current = lambda_new
                        already_factorized = True
                    else:
                        lambda_lb = max(lambda_lb, lambda_new)
                        lambda_current = max(np.sqrt(np.abs(lambda_lb * lambda_ub)),
                                             lambda_lb + UPDATE_COEFF * (lambda_ub - lambda_lb))
                else:  # outside the boundary
                    relative_error = abs(p_norm - tr_radius) / tr_radius
                    if relative_error <= K_EASY:
                        break
                    lambda_lb = lambda_current
                    lambda_current = lambda_new
            elif info == 0 and jac_mag <= self.close_to_zero:
                if lambda_current == 0:
                    p = np.zeros(n)
                    hits_boundary = False
                    break
                s_min, z_min = _smallest_singular_value(U)
                step_len = tr_radius
                p = step_len * z_min
                if step_len**2 * s_min**2 <= K_HARD * lambda_current * tr_radius**2:
                    break
                lambda_ub = lambda_current
                lambda_lb = max(lambda_lb, lambda_current - s_min**2)
                lambda_current = max(np.sqrt(lambda_lb * lambda_ub), lambda_lb + UPDATE_COEFF * (lambda_ub - lambda_lb))
            else:  # the factorisation failed at the info-th leading submatrix
                k = info
                delta = np.sum(U[:k - 1, k - 1] ** 2) - H[k - 1, k - 1]
                v = np.zeros(n)
                v[k - 1] = 1
                if k != 1:
                    v[:k - 1] = _solve_triangular(U[:k - 1, :k - 1], -U[:k - 1, k - 1])
                v_norm = _norm(v)
                lambda_lb = max(lambda_lb, lambda_current + delta / v_norm**2)
                lambda_current = max(np.sqrt(np.abs(lambda_lb * lambda_ub)),
                                     lambda_lb + UPDATE_COEFF * (lambda_ub - lambda_lb))
        self.lambda_lb = lambda_lb
        self.previous_tr_radius = tr_radius
        return p, hits_boundary


def minimize(evaluate: Evaluate, x0: np.ndarray, *, gtol: float = 1e-4, maxiter: int | None = None,
             accepted: Callable[[], None] | None = None) -> TrustExactResult:
    r"""Minimise with SciPy's ``trust-exact`` from ``x0`` until :math:`\|\nabla J\| <` ``gtol``.

    Parameters
    ----------
    evaluate
        ``x -> (J, ∇J, H)`` as a float and NumPy arrays (``H`` symmetric); called once per distinct point, in the
        order in which SciPy calls its callables.
    x0
        The start (flattened).
    gtol
        Gradient-norm tolerance.
    maxiter
        Iteration limit (SciPy's default ``200 * len(x0)`` if ``None``).
    accepted
        Called without arguments whenever the point evaluated last becomes the iterate: after the first evaluation
        (at ``x0``) and after each accepted step. A caller that keeps the values of that evaluation has those of
        the result when the run ends, also on a rejected trial point.
    """
    x = np.asarray(x0, dtype=float).flatten()
    maxiter = len(x) * 200 if maxiter is None else maxiter
    trust_radius = INITIAL_TRUST_RADIUS
    m = _Model(x, *evaluate(x))
    if accepted is not None:
        accepted()
    k = warnflag = 0
    while m.jac_mag >= gtol:
        try:
            p, hits_boundary = m.solve(trust_radius)
        except np.linalg.LinAlgError:
            warnflag = 3
            break
        predicted_value = m(p)
        x_proposed = x + p
        m_proposed = _Model(x_proposed, *evaluate(x_proposed))
        actual_reduction = m.fun - m_proposed.fun
        predicted_reduction = m.fun - predicted_value
        if predicted_reduction <= 0:
            warnflag = 2
            break
        rho = actual_reduction / predicted_reduction
        if rho < 0.25:
            trust_radius *= 0.25
        elif rho > 0.75 and hits_boundary:
            trust_radius = min(2 * trust_radius, MAX_TRUST_RADIUS)
        if rho > ETA:
            x, m = x_proposed, m_proposed
            if accepted is not None:
                accepted()
        k += 1
        if m.jac_mag < gtol:
            warnflag = 0
            break
        if k >= maxiter:
            warnflag = 1
            break
    return TrustExactResult(x, k, warnflag)


# The structure of this module follows SciPy's, under SciPy's licence:
#
# Copyright (c) 2001-2002 Enthought, Inc. 2003, SciPy Developers.
# All rights reserved.
#
# Redistribution and use in source and binary forms, with or without
# modification, are permitted provided that the following conditions
# are met:
#
# 1. Redistributions of source code must retain the above copyright
#    notice, this list of conditions and the following disclaimer.
#
# 2. Redistributions in binary form must reproduce the above
#    copyright notice, this list of conditions and the following
#    disclaimer in the documentation and/or other materials provided
#    with the distribution.
#
# 3. Neither the name of the copyright holder nor the names of its
#    contributors may be used to endorse or promote products derived
#    from this software without specific prior written permission.
#
# THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS
# "AS IS" AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT
# LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR
# A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT
# OWNER OR CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL,
# SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT
# LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE,
# DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY
# THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT
# (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
# OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
