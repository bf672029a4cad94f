r"""The neural-ODE transformation of the paper's Table 1: the flow of a small velocity network.

Model
-----
A velocity field :math:`v(z, t; w) = W_1 \tanh(W_0 [z; t] + b_0) + b_1` (one hidden layer of ``width``
units; input the physical coordinates and the time, output a velocity in :math:`\mathbb{R}^d`) moves every
point along :math:`\dot z = v(z, t; w)`, :math:`z(0) = x`, and the transformation is the state at
:math:`t = 1`: :math:`y(w, x) = z(1)`. In 2D with ``width=8`` there are
:math:`8 \cdot 3 + 8 + 2 \cdot 8 + 2 = 50` parameters, flattened in the order of the authors'
``VelocityNN(2, [3, 8])``: ``layer0.weight`` (``width`` × (d+1), row-major), ``layer0.bias``,
``layer1.weight`` (d × ``width``), ``layer1.bias``. Zero weights give :math:`v = 0`, the identity.

Time stepping
-------------
``steps`` fixed steps of :math:`\Delta t = 1/\text{steps}` of the **3/8-rule** Runge-Kutta method (the variant
of ``torchdiffeq.odeint(method="rk4")``; the paper: 9 steps on ``linspace(0, 1, 10)``):

.. math::
    k_1 &= v(x_n, t_n), \quad k_2 = v(x_n + \tfrac{\Delta t}{3} k_1,\, t_n + \tfrac{\Delta t}{3}), \quad
    k_3 = v(x_n + \Delta t(k_2 - \tfrac13 k_1),\, t_n + \tfrac{2\Delta t}{3}), \\
    k_4 &= v(x_n + \Delta t(k_1 - k_2 + k_3),\, t_n + \Delta t), \qquad
    x_{n+1} = x_n + \tfrac{\Delta t}{8}(k_1 + 3k_2 + 3k_3 + k_4).

:func:`neural_ode` is plain tensor arithmetic, so every ``torch.func`` transform applies.

Hand-coded derivatives (FAIR's way, checked against AD in the tests)
--------------------------------------------------------------------
Points move independently and the only nonlinear operation is the velocity evaluation at the
:math:`S = 4\,\text{steps}` stages :math:`(z_s, \tau_s)` (the RK combinations are linear). :meth:`NeuralODE.
linearize` integrates once and records :math:`z_s` and the activations :math:`a_s = \tanh(u_s)`; then

* **vjp** (:math:`\lambda^\top \partial y / \partial w` for a cotangent :math:`\lambda` of shape (N, d)): the
  discrete adjoint of the RK scheme, one backward sweep of (N, d) arrays; the adjoints :math:`\bar k_s` of the
  stage velocities give :math:`\bar u_s = (\bar k_s W_1) \odot \sigma'_s` and the parameter gradient
  :math:`\sum_{n,s}` of outer products (one contraction over points and stages at the end);
* **Jacobian** :math:`Q = \partial y / \partial w` (N, d, p): forward sensitivities :math:`D z_s = \partial z_s /
  \partial w` propagated through the stages, :math:`D k_s = \partial_z v\, D z_s + \partial_w v`, with the
  (N, d, d) state Jacobian :math:`\partial_z v = W_1 \operatorname{diag}(\sigma'_s) W_{0,x}` and the sparse
  direct term :math:`\partial_w v`;
* **curvature** :math:`\sum_n \lambda_n \cdot \partial^2_w y_n` (p × p, the transformation term of the exact
  registration Hessian): since the velocity evaluations are the only nonlinear nodes,

  .. math::
      \nabla^2_w (\lambda^\top y) = \sum_{\text{points}} \sum_s
      \begin{bmatrix} D z_s \\ I \end{bmatrix}^\top \big(\bar k_s \cdot \nabla^2_{(z, w)} v\big)
      \begin{bmatrix} D z_s \\ I \end{bmatrix},

  and :math:`\delta^2 (\bar k^\top v) = \bar a^\top(\sigma'' \odot \delta u^2) + 2 \bar k^\top \delta W_1
  (\sigma' \odot \delta u) + 2 \bar u^\top (\delta W_{0,x}\, \delta z)` with :math:`\bar a = W_1^\top \bar k`,
  :math:`\delta u = W_{0,x} \delta z + \delta W_0 [z; t] + \delta b_0`. The dominant part
  :math:`\sum D z_s^\top (W_{0,x}^\top \operatorname{diag}(\bar a \odot \sigma'') W_{0,x}) D z_s` uses the d × d
  middle matrix (not width × width); the terms with one direct derivative collapse, per stage, into one
  matrix product of (point × hidden-unit) multipliers with :math:`D z_s`, and the direct-direct terms are
  diagonal in the hidden unit. Forward sensitivities and these contractions run in one sweep (over blocks of
  points, each stage contracted while its sensitivities are in cache) that also returns :math:`Q`.

The cost of the curvature is about :math:`2 S N d\, p\,(p + (2d + 3)\,\text{width})` flops in dense matrix
products (0.8 GFlop for the paper's model at m = 32), against roughly :math:`p` Hessian-vector products,
each a few times the cost of the map, through ``vmap``-batched generic sweeps for ``torch.func.hessian``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar, Literal, NamedTuple

import torch
from torch.func import jacfwd

from . import _checks, _pointwise
from .device import DEFAULT_DTYPE

__all__ = ["NeuralODE", "NeuralODELinearization", "neural_ode", "neural_ode_velocity", "rk4_38"]

# Butcher tableau of the 3/8 rule: stage l uses x_n + dt * sum_i A[l][i] k_i at time t_n + l dt / 3; the step
# is x_n + dt * sum_i B[i] k_i.
_A = ((), (1.0 / 3.0,), (-1.0 / 3.0, 1.0), (1.0, -1.0, 1.0))
_B = (0.125, 0.375, 0.375, 0.125)


class _Block(NamedTuple):
    """Per-stage constants of a block of points (see :meth:`NeuralODELinearization._block`)."""

    a: torch.Tensor
    sp: torch.Tensor
    Jz: torch.Tensor
    zh: torch.Tensor


def _n_params(dim: int, width: int) -> int:
    return width * (dim + 1) + width + dim * width + dim


def _split(w: torch.Tensor, dim: int, width: int):
    """Views ``(W0x, W0t, b0, W1, b1)`` of the flat parameter vector (``layer0.weight = [W0x | W0t]``)."""
    n0 = width * (dim + 1)
    W0 = w[:n0].reshape(width, dim + 1)
    n1 = n0 + width
    return W0[:, :dim], W0[:, dim], w[n0:n1], w[n1:n1 + dim * width].reshape(dim, width), w[n1 + dim * width:]


def neural_ode_velocity(w: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor, width: int = 8) -> torch.Tensor:
    r"""The velocity :math:`v(x, t; w) = W_1 \tanh(W_0 [x; t] + b_0) + b_1` at points ``x`` of shape (N, d)."""
    W0x, W0t, b0, W1, b1 = _split(w, x.shape[-1], width)
    return torch.tanh(x @ W0x.T + (t * W0t + b0)) @ W1.T + b1


def rk4_38(f, x0: torch.Tensor, t0: float, t1: float, steps: int) -> torch.Tensor:
    r"""Integrate :math:`\dot x = f(t, x)` from ``t0`` to ``t1`` with ``steps`` fixed 3/8-rule RK4 steps.

    Returns the state at ``t1``. The method is fourth order (global error :math:`O(\Delta t^4)`) and exact
    for right-hand sides that are polynomials of degree at most 3 in ``t`` alone.
    """
    _checks.integer("steps", steps)
    dt = (t1 - t0) / steps
    third = 1.0 / 3.0
    x = x0
    for n in range(steps):
        t = t0 + n * dt
        k1 = f(t, x)
        k2 = f(t + third * dt, x + (third * dt) * k1)
        k3 = f(t + 2.0 * third * dt, x + dt * (k2 - third * k1))
        k4 = f(t + dt, x + dt * (k1 - k2 + k3))
        x = x + (0.125 * dt) * (k1 + 3.0 * (k2 + k3) + k4)
    return x


def _flow(w: torch.Tensor, x: torch.Tensor, width: int, steps: int, record: dict | None = None) -> torch.Tensor:
    W0x, W0t, b0, W1, b1 = _split(w, x.shape[-1], width)
    if record is not None:  # stage inputs, activations and times, written in place
        record.update(z=x.new_empty(4 * steps, *x.shape), a=x.new_empty(4 * steps, x.shape[0], width), t=[])

    def velocity(t: float, z: torch.Tensor) -> torch.Tensor:
        u = z @ W0x.T + (t * W0t + b0)
        if record is None:
            a = torch.tanh(u)
        else:
            s = len(record["t"])
            record["z"][s] = z
            a = torch.tanh(u, out=record["a"][s])
            record["t"].append(t)
        return a @ W1.T + b1

    return rk4_38(velocity, x, 0.0, 1.0, steps)


def neural_ode(w: torch.Tensor, x: torch.Tensor, width: int = 8, steps: int = 9) -> torch.Tensor:
    """Map points ``x`` (N, d) by the flow over t in [0, 1] of the velocity network with parameters ``w``.

    A pure function of ``(w, x)``; see the module docstring for the model and the parameter order.
    """
    return _flow(w, x, width, steps)


@dataclass(frozen=True)
class NeuralODE:
    """The neural-ODE transformation as a transformation block: it satisfies :class:`~imreg_lib.Transformation`
    (as :class:`~imreg_lib.Affine` does), with hand-coded derivatives in :meth:`linearize`.

    Parameters
    ----------
    dim
        Spatial dimension, 2 or 3.
    width
        Hidden units of the velocity network (8 in the paper: 50 parameters in 2D).
    steps
        Fixed 3/8-rule RK4 steps on [0, 1] (9 in the paper).
    """

    dim: int = 2
    width: int = 8
    steps: int = 9

    #: ``y`` is nonlinear in ``w``: the exact Hessian needs the second derivative of ``y``.
    is_linear: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim!r}")
        _checks.integer("width", self.width)
        _checks.integer("steps", self.steps)

    @property
    def n_params(self) -> int:
        """``width·(d+1) + width + d·width + d`` (50 for the paper's 2D network of width 8)."""
        return _n_params(self.dim, self.width)

    def identity(self, device: torch.device | str | None = None, dtype: torch.dtype = DEFAULT_DTYPE,
                 ) -> torch.Tensor:
        """Zero weights: the velocity vanishes and ``y(x) = x``."""
        return torch.zeros(self.n_params, dtype=dtype, device=device)

    def check(self, w: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``w`` is a floating-point vector of ``n_params`` entries."""
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != (self.n_params,) or not w.is_floating_point():
            shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise ValueError(f"w must be a floating-point tensor of shape ({self.n_params},) for a {self.dim}D "
                             f"neural ODE of width {self.width}, got {shape}")

    def __call__(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return neural_ode(w, x, self.width, self.steps)

    def linearize(self, w: torch.Tensor, x: torch.Tensor) -> NeuralODELinearization:
        """Integrate once, recording the stages, for the hand-coded derivatives (see the module docstring)."""
        if x.dim() != 2 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (N, {self.dim}), got {tuple(x.shape)}")
        rec: dict = {}
        with torch.no_grad():
            y = _flow(w, x, self.width, self.steps, rec)
        tau = torch.tensor(rec["t"], dtype=x.dtype, device=x.device)
        return NeuralODELinearization(self, w, y, rec["z"], rec["a"], tau)

    def jacobian(self, w: torch.Tensor, x: torch.Tensor, method: Literal["sensitivity", "ad"] = "sensitivity",
                 ) -> torch.Tensor:
        """``Q[n, k, p] = dy_k(x_n) / dw_p``, shape (N, d, n_params).

        ``"sensitivity"``: hand-coded forward sensitivities through the RK stages (fast, eager mode only);
        ``"ad"``: ``torch.func.jacfwd`` (all tangents batched; works under any transform).
        """
        if method == "ad":
            return jacfwd(self.__call__, argnums=0)(w, x)
        if method != "sensitivity":
            raise ValueError(f"method must be 'sensitivity' or 'ad', got {method!r}")
        return self.linearize(w, x).jacobian()


@dataclass(frozen=True, eq=False)
class NeuralODELinearization:
    """The recorded forward pass of a :class:`NeuralODE` at ``w`` and its hand-coded derivatives.

    A :class:`~imreg_lib.Linearization`: :meth:`vjp` (reverse sweep), :meth:`jacobian` (forward sensitivities),
    :meth:`jacobian_and_curvature` (both sweeps in one) and the point-wise products :meth:`contract` and
    :meth:`congruence` with the Jacobian, which reuse the Jacobian of the latest sweep (it is computed once).

    Arrays are stage-major: index ``s = 4 n + i`` is stage ``i`` of RK step ``n``. The derivatives are computed
    for blocks of at most :attr:`chunk` points at a time (points are independent), which keeps the work
    arrays in cache and the memory bounded for large images.

    Attributes
    ----------
    y
        The transformed points, shape (N, d).
    z, a, tau
        Stage inputs (S, N, d), hidden activations (S, N, width) and stage times (S,), ``S = 4 * steps``.
    """

    transformation: NeuralODE
    w: torch.Tensor
    y: torch.Tensor
    z: torch.Tensor
    a: torch.Tensor
    tau: torch.Tensor
    #: The Jacobian of the latest sweep (``"Q"``), reused by :meth:`jacobian`, :meth:`contract`, :meth:`congruence`.
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    #: Points per block.
    chunk: ClassVar[int] = 2048

    # ---- per-block constants ------------------------------------------------------------------------
    @cached_property
    def _weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W0x, W1)``: the spatial columns of the first layer and the second layer."""
        W0x, _, _, W1, _ = _split(self.w, self.transformation.dim, self.transformation.width)
        return W0x, W1

    def _blocks(self):
        N = self.y.shape[0]
        return [slice(start, min(start + self.chunk, N)) for start in range(0, N, self.chunk)]

    def _block(self, pts: slice) -> _Block:
        """tanh' (S, n, width), the state Jacobians dv/dz = W1 diag(tanh') W0x (S, n, d, d) and the first
        layer's inputs (z, t, 1) (S, n, d+2) of the points ``pts``."""
        W0x, W1 = self._weights
        width, d = W0x.shape
        a = self.a[:, pts]
        S, n, _ = a.shape
        sp = torch.addcmul(torch.ones((), dtype=a.dtype, device=a.device), a, a, value=-1.0)  # 1 - a²
        WK = (W1.T[:, :, None] * W0x[:, None, :]).reshape(width, d * d)  # [j, (k, l)] = W1[k, j] W0x[j, l]
        Jz = (sp.reshape(-1, width) @ WK).reshape(S, n, d, d)
        t = self.tau[:, None, None].expand(S, n, 1)
        zh = torch.cat([self.z[:, pts], t, torch.ones_like(t)], -1)
        return _Block(a, sp, Jz, zh)

    # ---- reverse mode -------------------------------------------------------------------------------
    def _adjoint(self, cotangent: torch.Tensor, Jz: torch.Tensor) -> torch.Tensor:
        """Adjoints ``kbar`` (S, n, d) of the stage velocities for the output cotangent (n, d) of a block."""
        steps, d = self.transformation.steps, self.transformation.dim
        dt = 1.0 / steps
        kbar = cotangent.new_empty(4 * steps, *cotangent.shape)
        xbar = cotangent
        for n in reversed(range(steps)):
            zbar: list = [None] * 4
            for i in (3, 2, 1, 0):
                s = 4 * n + i
                kb = torch.mul(xbar, dt * _B[i], out=kbar[s])
                for later in range(i + 1, 4):
                    kb.add_(zbar[later], alpha=dt * _A[later][i])
                zb = Jz[s, :, 0] * kb[:, :1]  # (dv/dz)^T kbar, summed explicitly (tiny reductions are slow)
                for k in range(1, d):
                    zb.addcmul_(Jz[s, :, k], kb[:, k:k + 1])
                zbar[i] = zb
            xbar = xbar + zbar[0] + zbar[1] + zbar[2] + zbar[3]
        return kbar

    def vjp(self, cotangent: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_n \lambda_n^\top \partial y_n / \partial w` for a cotangent ``λ`` of shape (N, d)."""
        if tuple(cotangent.shape) != tuple(self.y.shape):
            raise ValueError(f"cotangent must have shape {tuple(self.y.shape)}, got {tuple(cotangent.shape)}")
        W0x, W1 = self._weights
        width, d = W0x.shape
        gW0b0 = self.y.new_zeros(width, d + 2)
        gW1 = self.y.new_zeros(d, width)
        gb1 = self.y.new_zeros(d)
        for pts in self._blocks():
            blk = self._block(pts)
            kbar = self._adjoint(cotangent[pts], blk.Jz)
            ubar = (kbar @ W1) * blk.sp  # adjoints of the pre-activations
            gW0b0.addmm_(ubar.reshape(-1, width).T, blk.zh.reshape(-1, d + 2))  # [W0 | b0]
            gW1.addmm_(kbar.reshape(-1, d).T, blk.a.reshape(-1, width))
            gb1 += kbar.sum((0, 1))
        return torch.cat([gW0b0[:, :d + 1].reshape(-1), gW0b0[:, d + 1], gW1.reshape(-1), gb1])

    # ---- forward sensitivities (and the curvature term) --------------------------------------------
    # The sweep works in an internal parameter order in which the direct derivative dv/dw of every stage is
    # made of long contiguous blocks: [W0[:, 0], ..., W0[:, d-1], W0[:, d] (time), b0, W1[0, :], ..., b1],
    # each block indexed by the hidden unit j. Results are permuted back to the flat order at the end.
    @cached_property
    def _unorder(self) -> torch.Tensor:
        """``unorder[flat index] = internal index``."""
        d, width = self.transformation.dim, self.transformation.width
        dev = self.w.device
        j = torch.arange(width, device=dev)
        first = [j * (d + 1) + col for col in range(d + 1)] + [width * (d + 1) + j]  # W0 columns, then b0
        rest = torch.arange(width * (d + 2), self.transformation.n_params, device=dev)  # W1 (row-major), b1
        return torch.argsort(torch.cat(first + [rest]))

    def jacobian(self) -> torch.Tensor:
        """``Q = dy/dw`` of shape (N, d, p) by forward sensitivities through the RK stages (swept once)."""
        Q = self._memo.get("Q")
        return self._sweep(None)[0] if Q is None else Q

    def jacobian_and_curvature(self, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""``(Q, H_λ)`` with :math:`H_\lambda = \nabla^2_w \sum_n \lambda_n \cdot y_n` (p × p), one sweep."""
        if tuple(lam.shape) != tuple(self.y.shape):
            raise ValueError(f"lam must have shape {tuple(self.y.shape)}, got {tuple(lam.shape)}")
        return self._sweep(lam)

    def contract(self, g: torch.Tensor) -> torch.Tensor:
        r"""Rows :math:`g_n^\top Q_n` (N, p) for point-wise vectors ``g`` (N, d)."""
        return _pointwise.contract(g, self.jacobian())

    def congruence(self, M: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_n Q_n^\top M_n Q_n` (p × p) for point-wise forms ``M`` (N, d, d)."""
        return _pointwise.congruence(M, self.jacobian())

    def _stage_sensitivity(self, s: int, blk: _Block, Dz: torch.Tensor, const: torch.Tensor, out: torch.Tensor,
                           ) -> None:
        """``Dk_s = dv/dz Dz_s + dv/dw`` (n, d, p) for stage ``s`` of a block into ``out`` (internal order)."""
        d, width = self.transformation.dim, self.transformation.width
        nT = width * (d + 2)
        Jz = blk.Jz[s]
        torch.addcmul(const, Jz[:, :, 0, None], Dz[:, None, 0, :], out=out)  # const: the b1 block (identity)
        for l in range(1, d):
            out.addcmul_(Jz[:, :, l, None], Dz[:, None, l, :])
        G = self._weights[1] * blk.sp[s, :, None, :]  # dv_k/du_j = W1[k, j] tanh'(u_j), (n, d, width)
        out[:, :, :nT].unflatten(-1, (d + 2, width)).addcmul_(G[:, :, None, :], blk.zh[s, :, None, :, None])
        a = blk.a[s]
        for k in range(d):  # dv_k/dW1[k, j] = a_j
            out[:, k, nT + k * width:nT + (k + 1) * width].add_(a)

    def _sweep(self, lam: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        tr = self.transformation
        d, width, steps, p = tr.dim, tr.width, tr.steps, tr.n_params
        N = self.y.shape[0]
        dt = 1.0 / steps
        const = self.y.new_zeros(d, p)
        const[:, p - d:] = torch.eye(d, dtype=self.y.dtype, device=self.y.device)
        curv = lam is not None
        C = min(N, self.chunk)
        # work arrays, allocated once and reused (fresh large arrays cost page faults and cache misses)
        Q = self.y.new_empty(N, d, p)
        Dx_buf = self.y.new_empty(C, d, p)
        Dz_buf = self.y.new_empty(C, d, p)  # the current stage input's sensitivity
        Dk_buf = self.y.new_empty(4, C, d, p)
        if curv:
            W0x, W1 = self._weights
            WW = (W0x[:, :, None] * W0x[:, None, :]).reshape(width, d * d)
            H_main = self.y.new_zeros(p, p)
            M = self.y.new_zeros((2 * d + 3) * width, d * p)
            D = self.y.new_zeros((2 * d + 3) * width, d + 2)  # the same multipliers against (z, t, 1)
            GDz_buf = self.y.new_empty(C, d, p)
            h_buf = self.y.new_empty(C, 2 * d + 3, width)
        for pts in self._blocks():
            blk = self._block(pts)
            nb = pts.stop - pts.start
            if curv:
                kbar = self._adjoint(lam[pts], blk.Jz)
                ubar = (kbar @ W1) * blk.sp  # (S, n, width): adjoints of the pre-activations
                c = -2.0 * ubar * blk.a  # abar * tanh'' (tanh'' = -2 tanh tanh')
                Gm = (c.reshape(-1, width) @ WW).reshape(4 * steps, nb, d, d)  # W0x^T diag(c) W0x
                GDz, h = GDz_buf[:nb], h_buf[:nb]
            Dx, Dk = Dx_buf[:nb], Dk_buf[:, :nb]
            Dx.zero_()
            for n in range(steps):
                for i in range(4):
                    s = 4 * n + i
                    if i == 0:
                        Dz = Dx
                    else:
                        Dz = torch.add(Dx, Dk[0], alpha=dt * _A[i][0], out=Dz_buf[:nb])
                        for j in range(1, i):
                            Dz.add_(Dk[j], alpha=dt * _A[i][j])
                    self._stage_sensitivity(s, blk, Dz, const, Dk[i])
                    if curv:  # this stage's contributions, while Dz_s is in cache
                        torch.mul(Gm[s, :, :, 0, None], Dz[:, None, 0, :], out=GDz)
                        for l in range(1, d):
                            GDz.addcmul_(Gm[s, :, :, l, None], Dz[:, None, l, :])
                        H_main.addmm_(GDz.reshape(-1, p).T, Dz.reshape(-1, p))
                        # the multipliers of Dz_l in the cross terms, by hidden unit j:
                        # (i) (z, t, 1)_a c_j, (ii) kbar_k tanh'_j, (iii) ubar_j
                        torch.mul(blk.zh[s, :, :, None], c[s, :, None, :], out=h[:, :d + 2])
                        torch.mul(kbar[s, :, :, None], blk.sp[s, :, None, :], out=h[:, d + 2:2 * d + 2])
                        h[:, 2 * d + 2] = ubar[s]
                        hT = h.reshape(nb, -1).T
                        M.addmm_(hT, Dz.reshape(nb, d * p))
                        D.addmm_(hT, blk.zh[s])
                Dx.add_(Dk[0], alpha=0.125 * dt).add_(Dk[1], alpha=0.375 * dt)
                Dx.add_(Dk[2], alpha=0.375 * dt).add_(Dk[3], alpha=0.125 * dt)
            Q[pts] = Dx
        Q = Q[..., self._unorder]
        self._memo["Q"] = Q
        if not curv:
            return Q, None
        H = self._assemble(H_main, M, D)
        return Q, H[self._unorder][:, self._unorder]

    def _assemble(self, H_main: torch.Tensor, M: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
        """The curvature in internal order from the accumulated products (see the module docstring)."""
        tr = self.transformation
        d, width, p = tr.dim, tr.width, tr.n_params
        nT, nW1 = width * (d + 2), d * width
        W0x, _ = self._weights
        M = M.reshape(2 * d + 3, width, d, p)  # rows: [(z, t, 1) c | kbar tanh' | ubar] x hidden unit j
        rows = torch.einsum("jl,bjlq->bjq", W0x, M[:2 * d + 2])  # sum_l W0x_jl M[b, j, l, :]
        rows[:d] += M[2 * d + 2].transpose(0, 1)  # (iii): ubar_j Dz_l on the rows of W0[j, l]
        cross = H_main.new_zeros(p, p)
        cross[:nT + nW1] = rows.reshape(nT + nW1, p)  # (i) cross on the [W0 | b0] rows, (ii) on the W1 rows
        H = H_main + cross + cross.T
        # direct-direct terms, diagonal in the hidden unit j: E^T diag(c) E and (ii) on W1 x [W0 | b0];
        # D[(b, j), a'] = sum over points and stages of the cross-term multiplier (b, j) times (z, t, 1)_a'
        D = D.reshape(2 * d + 3, width, d + 2)
        eye = torch.eye(width, dtype=H.dtype, device=H.device)
        dd = D[:d + 2]  # [a, j, a']: sum c_j (z, t, 1)_a (z, t, 1)_a'
        H[:nT, :nT] += (dd[..., None] * eye[None, :, None, :]).reshape(nT, nT)
        wt = D[d + 2:2 * d + 2]  # [k, j, a]: sum kbar_k tanh'_j (z, t, 1)_a
        blk = (wt[..., None] * eye[None, :, None, :]).reshape(nW1, nT)
        H[nT:nT + nW1, :nT] += blk
        H[:nT, nT:nT + nW1] += blk.T
        return H
