"""Plug-in blocks: the Transformation and Linearization protocols, the SSD distance block, and the objective
composing them for any transformation that satisfies the protocol (a user-defined rigid map here), with no
dispatch on the transformation's type."""
import pytest
import torch
from torch.func import grad, hessian, jacfwd

import imreg_lib as il
from imreg_lib.neural_ode import neural_ode
from imreg_lib.transformations import AffineLinearization, check_transformation

F64 = torch.float64
H_STEPS = tuple(10.0 ** -k for k in range(0, 6))


def _rel(a, b):
    return float((a - b).norm() / b.norm())


# ---- a user-defined transformation: the 2D rigid map, written against the protocol only -------------------
def _rotation(phi: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(phi), torch.sin(phi)
    return torch.stack([torch.stack([c, -s]), torch.stack([s, c])])


class RigidLinearization:
    """Hand-coded derivatives of y = R(phi) x + t, w = [phi, t1, t2]."""

    def __init__(self, w: torch.Tensor, x: torch.Tensor) -> None:
        self.x = x
        R = _rotation(w[0])
        self.y = x @ R.T + w[1:]
        self._Rx = x @ R.T  # R x; dR/dphi x = J R x with J the rotation by 90 degrees, d²R/dphi² x = -R x
        self._Q = None

    def jacobian(self) -> torch.Tensor:
        if self._Q is None:
            n = self.x.shape[0]
            dphi = torch.stack([-self._Rx[:, 1], self._Rx[:, 0]], 1)
            self._Q = torch.cat([dphi[:, :, None], torch.eye(2, dtype=F64).expand(n, 2, 2)], -1)
        return self._Q

    def vjp(self, cotangent: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nk,nkp->p", cotangent, self.jacobian())

    def jacobian_and_curvature(self, cotangent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        C = torch.zeros(3, 3, dtype=F64)
        C[0, 0] = -torch.sum(cotangent * self._Rx)
        return self.jacobian(), C

    def contract(self, g: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nk,nkp->np", g, self.jacobian())

    def congruence(self, M: torch.Tensor) -> torch.Tensor:
        Q = self.jacobian()
        return torch.einsum("nkp,nkl,nlq->pq", Q, M, Q)


class Rigid2D:
    """The 2D rigid transformation (rotation angle and shift) with hand-coded derivatives."""

    dim = 2
    n_params = 3
    is_linear = False

    def identity(self, device=None, dtype=F64) -> torch.Tensor:
        return torch.zeros(3, dtype=dtype, device=device)

    def check(self, w: torch.Tensor) -> None:
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != (3,):
            raise ValueError("w must have shape (3,)")

    def __call__(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x @ _rotation(w[0]).T + w[1:]

    def jacobian(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.linearize(w, x).jacobian()

    def linearize(self, w: torch.Tensor, x: torch.Tensor) -> RigidLinearization:
        return RigidLinearization(w, x)


class RigidByAD(Rigid2D):
    """The same map, derivatives by automatic differentiation."""

    def linearize(self, w, x):
        return il.AutodiffLinearization(self, w, x)


class Shift2D:
    """A transformation linear in w (a translation, 2 parameters), derivatives by AD."""

    dim = 2
    n_params = 2
    is_linear = True

    def identity(self, device=None, dtype=F64):
        return torch.zeros(2, dtype=dtype, device=device)

    def check(self, w):
        pass

    def __call__(self, w, x):
        return x + w

    def jacobian(self, w, x):
        return torch.eye(2, dtype=x.dtype).expand(x.shape[0], 2, 2)

    def linearize(self, w, x):
        return il.AutodiffLinearization(self, w, x)


# ---- the protocols ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("tr", [il.Affine(2), il.Affine(3), il.NeuralODE(), il.NeuralODE(dim=3, width=4),
                                Rigid2D(), RigidByAD(), Shift2D()], ids=lambda t: type(t).__name__)
def test_transformations_satisfy_the_protocol(tr, rng):
    assert isinstance(tr, il.Transformation)
    check_transformation(tr)
    x = 3 * torch.rand(7, tr.dim, generator=rng, dtype=F64)
    w = tr.identity() + 0.1 * torch.randn(tr.n_params, generator=rng, dtype=F64)
    tr.check(w)
    lin = tr.linearize(w, x)
    assert isinstance(lin, il.Linearization)
    torch.testing.assert_close(lin.y, tr(w, x), rtol=1e-14, atol=1e-14)
    Q = lin.jacobian()
    assert Q.shape == (7, tr.dim, tr.n_params)
    torch.testing.assert_close(Q, jacfwd(tr, argnums=0)(w, x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tr.jacobian(w, x), Q, rtol=1e-12, atol=1e-12)
    # the products with Q against their definitions
    lam = torch.randn(7, tr.dim, generator=rng, dtype=F64)
    M = torch.randn(7, tr.dim, tr.dim, generator=rng, dtype=F64)
    torch.testing.assert_close(lin.vjp(lam), torch.einsum("nk,nkp->p", lam, Q))
    torch.testing.assert_close(lin.contract(lam), torch.einsum("nk,nkp->np", lam, Q))
    torch.testing.assert_close(lin.congruence(M), torch.einsum("nkp,nkl,nlq->pq", Q, M, Q))
    Q2, C = lin.jacobian_and_curvature(lam)
    torch.testing.assert_close(Q2, Q)
    torch.testing.assert_close(C, hessian(lambda v: torch.sum(lam * tr(v, x)))(w), rtol=1e-10, atol=1e-10)
    if tr.is_linear:
        assert torch.count_nonzero(C) == 0


def test_the_affine_linearization_is_the_transformation_of_the_protocol():
    x = torch.rand(4, 2, dtype=F64)
    lin = il.Affine(2).linearize(il.Affine(2).identity(), x)
    assert isinstance(lin, AffineLinearization)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        il.Affine(2).linearize(il.Affine(2).identity(), x[:, :1])
    with pytest.raises(ValueError, match="cotangent"):
        lin.vjp(x[:3])


@pytest.mark.parametrize("dim", [2, 3])
def test_taylor_test_of_the_affine_linearization(dim, rng):
    """phi(w) = sum_n f(y(w, x_n)) for a smooth field f: gradient vjp(∇f), Hessian congruence(∇²f) + curvature."""
    tr = il.Affine(dim)
    x = 2 * torch.rand(30, dim, generator=rng, dtype=F64)
    w = tr.identity() + 0.1 * torch.randn(tr.n_params, generator=rng, dtype=F64)
    a = torch.randn(dim, generator=rng, dtype=F64)

    def f(y):
        return torch.sin(y @ a)

    phi = lambda v: torch.sum(f(tr(v, x)))  # noqa: E731
    lin = tr.linearize(w, x)
    s = lin.y @ a
    g = torch.cos(s)[:, None] * a  # ∇f(y_n)
    Hf = -torch.sin(s)[:, None, None] * (a[:, None] * a[None, :])  # ∇²f(y_n)
    Q, C = lin.jacobian_and_curvature(g)
    dphi = lin.vjp(g)
    H = lin.congruence(Hf) + C
    v = torch.randn(tr.n_params, generator=rng, dtype=F64)
    res = il.taylor_test(phi, w, v, dphi @ v, v @ H @ v, h=H_STEPS)
    assert res.order(0) == pytest.approx(1.0, abs=0.1)
    assert res.order(1) > 1.9 and res.order(2) > 2.9
    # the map itself: first order from the Jacobian and exact (y is linear in w)
    res_y = il.taylor_test(lambda u: tr(u, x), w, v, torch.einsum("nkp,p->nk", Q, v), h=H_STEPS)
    assert max(res_y.errors[1]) < 1e-12 * res_y.errors[0][0]
    # the residual Jacobian of a field: contract(∇f) = d f(y(w, x_n)) / dw
    torch.testing.assert_close(lin.contract(g), jacfwd(lambda u: f(tr(u, x)))(w))
    # a wrong vjp fails the test
    bad = il.taylor_test(phi, w, v, 1.01 * (dphi @ v), h=H_STEPS)
    assert bad.order(1) < 1.5


# ---- the distance block ----------------------------------------------------------------------------------
def test_ssd_block(rng):
    r = torch.randn(50, generator=rng, dtype=F64)
    h = 0.37
    D, dD, d2D = il.ssd_block(r, h)
    blk = il.ssd_block(r, h)
    assert isinstance(blk, il.DistanceDerivatives) and blk.value is not None
    assert torch.equal(D, il.ssd(r, h))
    assert float(D) == pytest.approx(h * float(r @ r), rel=1e-14)
    torch.testing.assert_close(dD, grad(lambda s: il.ssd(s, h))(r))
    torch.testing.assert_close(d2D * torch.eye(50, dtype=F64), hessian(lambda s: il.ssd(s, h))(r))
    v = torch.randn(50, generator=rng, dtype=F64)
    res = il.taylor_test(lambda s: il.ssd(s, h), r, v, dD @ v, d2D * (v @ v), h=H_STEPS)
    assert res.order(0) == pytest.approx(1.0, abs=0.1) and res.order(1) == pytest.approx(2.0, abs=0.1)
    assert max(res.errors[2]) < 1e-12 * res.errors[0][0]  # D is quadratic: the second-order model is exact
    bad = il.taylor_test(lambda s: il.ssd(s, h), r, v, dD @ v, 0.5 * d2D * (v @ v), h=H_STEPS)
    assert bad.order(2) < 2.5
    # images are blocks too: any shape
    R = torch.randn(4, 5, generator=rng, dtype=F64)
    D2, dD2, _ = il.ssd_block(R, h)
    assert dD2.shape == R.shape and torch.equal(D2, il.ssd(R, h))


# ---- mean squares over the overlap: the weight block and the distance block ------------------------------
@pytest.mark.parametrize("dim", [2, 3])
def test_overlap_weight_block(dim, rng):
    from imreg_lib.distances import overlap_block

    omega, ramp = (0.0, 20.0, 0.0, 25.0, 0.0, 15.0)[: 2 * dim], (1.0, 1.5, 0.7)[:dim]
    y = torch.rand(400, dim, generator=rng, dtype=F64) * torch.tensor([24.0, 29.0, 19.0][:dim], dtype=F64) - 2.0
    m, dm, d2m = overlap_block(y, omega, ramp)
    one = lambda z: overlap_block(z[None], omega, ramp, 0)[0][0]  # noqa: E731
    torch.testing.assert_close(dm, torch.vmap(jacfwd(one))(y), atol=1e-13, rtol=1e-12)
    torch.testing.assert_close(d2m, torch.vmap(hessian(one))(y), atol=1e-12, rtol=1e-12)
    inside = torch.all((y > torch.tensor(omega[0::2], dtype=F64) + torch.tensor(ramp, dtype=F64))
                       & (y < torch.tensor(omega[1::2], dtype=F64) - torch.tensor(ramp, dtype=F64)), dim=1)
    outside = torch.any((y < torch.tensor(omega[0::2], dtype=F64)) | (y > torch.tensor(omega[1::2], dtype=F64)), 1)
    assert torch.all(m[inside] == 1) and torch.all(m[outside] == 0) and torch.all(dm[outside] == 0)
    # Taylor test at a point on the ramp of every dimension
    z = torch.tensor([0.4, 24.3, 0.2][:dim], dtype=F64)
    _, g, H = (t[0] for t in overlap_block(z[None], omega, ramp))
    v = torch.tensor([0.3, -0.2, 0.25][:dim], dtype=F64)
    steps = tuple(10.0 ** -k for k in range(1, 5))
    res = il.taylor_test(one, z, v, g @ v, v @ H @ v, h=steps)
    assert res.order(1) == pytest.approx(2.0, abs=0.1) and res.order(2) == pytest.approx(3.0, abs=0.15)
    assert il.taylor_test(one, z, v, g @ v, 0.9 * (v @ H @ v), h=steps).order(2) < 2.5


def test_overlap_distance_block(rng):
    from imreg_lib.distances import overlap_ssd, overlap_ssd_block

    r = torch.randn(60, generator=rng, dtype=F64)
    m = torch.rand(60, generator=rng, dtype=F64)
    m[:10] = 0.0
    V = 7.5
    D, Dr, Dm, M = overlap_ssd_block(r, m, V)
    assert float(D) == pytest.approx(V * float(m @ r**2) / float(m.sum()), rel=1e-14)
    gr, gm = grad(overlap_ssd, argnums=(0, 1))(r, m, V)
    torch.testing.assert_close(Dr, gr)
    torch.testing.assert_close(Dm, gm)
    assert float(M) == pytest.approx(float(m.sum()))
    # with every weight 1 it is the SSD (V = N h); without overlap it is +inf
    assert float(overlap_ssd(r, torch.ones_like(r), 60 * 0.37)) == pytest.approx(float(il.ssd(r, 0.37)), rel=1e-14)
    assert overlap_ssd(r, torch.zeros_like(r), V) == float("inf")
    # the structured second derivatives of the docstring, against AD
    Hrr, Hrm = hessian(overlap_ssd, argnums=(0, 1))(r, m, V)[0]
    Hmm = hessian(overlap_ssd, argnums=1)(r, m, V)
    torch.testing.assert_close(Hrr, torch.diag(2 * V * m / M))
    torch.testing.assert_close(Hrm, 2 * V * (torch.diag(r) - torch.outer(r * m, torch.ones_like(m)) / M) / M)
    torch.testing.assert_close(Hmm, -(Dm[:, None] + Dm[None, :]) / M)


@pytest.mark.parametrize("tr", [il.Affine(2), Rigid2D()], ids=lambda t: type(t).__name__)
def test_overlap_objective_derivatives(hand32, tr):
    g = hand32.grid
    obj = il.SSDObjective(il.SplineImage(hand32.template, g), il.SplineImage(hand32.reference, g), tr, overlap=True)
    # a motion that moves part of the points over the template's border and out of it
    w = (torch.tensor([0.96, -0.28, 0.28, 0.96, 4.0, -2.5], dtype=F64) if tr.n_params == 6 else
         torch.tensor([0.3, 4.0, -2.5], dtype=F64))
    m = obj.overlap_weights(tr(w, obj.x))[0]
    assert float(m.min()) == 0.0 and 0 < float(((m > 0) & (m < 1)).sum())
    for theta in (1e-2, 1.0):
        scale = obj.at_scale(theta)
        J, dJ, H = scale.derivatives(w)
        assert float(J) == pytest.approx(float(scale.loss(w)), rel=1e-13)
        assert float(J) == pytest.approx(float(obj.loss(w, torch.tensor(theta, dtype=F64))), rel=1e-12)
        assert _rel(dJ, grad(scale.loss)(w)) < 1e-11 and _rel(H, hessian(scale.loss)(w)) < 1e-10
        J0, dJ0, H0 = scale.derivatives(w, "none")
        assert H0 is None and _rel(dJ0, dJ) < 1e-12
        _, _, Hgn = scale.derivatives(w, "gauss_newton")
        assert torch.allclose(Hgn, Hgn.T) and float(torch.linalg.eigvalsh(Hgn).min()) > -1e-9 * float(Hgn.norm())
    v = torch.tensor([0.01, -0.02, 0.015, 0.01, 0.3, 0.2], dtype=F64)[-tr.n_params:]
    res = il.taylor_test(scale.loss, w, v, dJ @ v, v @ H @ v, h=H_STEPS)
    assert res.order(1) > 1.9 and res.order(2) > 2.9
    assert il.taylor_test(scale.loss, w, v, dJ @ v, 1.02 * (v @ H @ v), h=H_STEPS).order(2) < 2.5
    # what a least-squares or predictor method would need is refused, naming why
    for call in (lambda: scale.residual(w), lambda: obj.residual(w, 1.0), lambda: scale.theta_derivative_of_gradient(w),
                 lambda: obj.theta_derivative_of_gradient(w, 1.0)):
        with pytest.raises(ValueError, match="overlap=True"):
            call()
    with pytest.raises(ValueError, match="overlap must be True or False"):
        il.SSDObjective(obj.template, obj.reference, tr, overlap=1)


def test_overlap_objective_takes_the_motion_that_leaves_the_field_of_view():
    """The hand turned 90°: the SSD's minimum is not the motion (part of the moved hand leaves the 20 × 25 domain),
    the mean squares over the overlap's is."""
    from imreg_lib.globalreg import newton_exact

    pair = il.synthetic_hand_pair(32, motion={"angle_deg": 90.0})
    obj = il.SSDObjective(il.SplineImage(pair.template, pair.grid), il.SplineImage(pair.reference, pair.grid))
    errors = {}
    for name, o in (("ssd", obj), ("overlap", obj.with_overlap())):
        res = newton_exact(o.at_scale(1e-3).derivatives, pair.w_true, gtol=1e-4)
        x = obj.x
        errors[name] = float(((il.affine(res.w, x) - il.affine(pair.w_true, x)) / torch.tensor(pair.grid.h)).norm(
            dim=1).max())
    assert errors["overlap"] < 0.5 < errors["ssd"]
    assert obj.with_overlap().template is obj.template and not obj.with_overlap(False).overlap


# ---- the objective composes the blocks for any transformation ------------------------------------------
@pytest.mark.parametrize("tr", [Rigid2D(), RigidByAD(), Shift2D()], ids=lambda t: type(t).__name__)
def test_a_user_defined_transformation_in_the_objective(hand32, tr):
    g = hand32.grid
    obj = il.SSDObjective(il.SplineImage(hand32.template, g), il.SplineImage(hand32.reference, g), tr)
    scale = obj.at_scale(1e-2)
    w = {3: torch.tensor([0.03, 0.2, -0.15], dtype=F64), 2: torch.tensor([0.2, -0.15], dtype=F64)}[tr.n_params]
    J, dJ, H = scale.derivatives(w)
    assert H.shape == (tr.n_params, tr.n_params)
    assert float(J) == pytest.approx(float(scale.loss(w)), rel=1e-13)
    assert _rel(dJ, grad(scale.loss)(w)) < 1e-10
    assert _rel(H, hessian(scale.loss)(w)) < 1e-10
    _, dJ_gn, Hgn = scale.derivatives(w, "gauss_newton")
    Jr = jacfwd(scale.residual)(w)
    assert _rel(Hgn, 2 * Jr.T @ Jr) < 1e-10 and _rel(dJ_gn, dJ) < 1e-12
    J0, dJ0, H0 = scale.derivatives(w, "none")
    assert H0 is None and _rel(dJ0, dJ) < 1e-12 and float(J0) == float(J)
    torch.testing.assert_close(scale.residual_jacobian(w), Jr)
    assert _rel(scale.forward_jacobian(w), scale.forward_jacobian(w, "ad")) < 1e-12
    v = torch.tensor([0.01, 0.3, 0.2], dtype=F64)[-tr.n_params:]
    res = il.taylor_test(scale.loss, w, v, dJ @ v, v @ H @ v, h=H_STEPS)
    assert res.order(0) == pytest.approx(1.0, abs=0.1)
    assert res.order(1) > 1.9 and res.order(2) > 2.9
    rhs = obj.theta_derivative_of_gradient(w, 1e-2)
    assert _rel(rhs, obj.theta_derivative_of_gradient(w, 1e-2, method="ad")) < 1e-10
    # with a regularizer
    reg_obj = il.SSDObjective(obj.template, obj.reference, tr, regularizer=lambda u: 2.0 * torch.sum(u ** 2))
    Jg, dJg, Hg = reg_obj.at_scale(1e-2).derivatives(w)
    torch.testing.assert_close(dJg - dJ, 4.0 * w)
    torch.testing.assert_close(Hg - H, 4.0 * torch.eye(tr.n_params, dtype=F64))


def test_hand_coded_and_ad_linearizations_give_the_same_objective_derivatives(hand32):
    g = hand32.grid
    T, R = il.SplineImage(hand32.template, g), il.SplineImage(hand32.reference, g)
    w = torch.tensor([-0.02, 0.1, 0.25], dtype=F64)
    hand = il.SSDObjective(T, R, Rigid2D()).at_scale(0.1)
    ad = il.SSDObjective(T, R, RigidByAD()).at_scale(0.1)
    for kind in ("exact", "gauss_newton", "none"):
        for a, b in zip(hand.derivatives(w, kind), ad.derivatives(w, kind), strict=True):
            if a is None:
                assert b is None
            else:
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-9)


class _NoLinearize:
    dim = 2
    n_params = 2
    is_linear = True

    def identity(self, device=None, dtype=F64):
        return torch.zeros(2, dtype=dtype, device=device)

    def check(self, w):
        pass

    def __call__(self, w, x):
        return x + w

    def jacobian(self, w, x):
        return torch.eye(2, dtype=x.dtype).expand(x.shape[0], 2, 2)


def test_a_transformation_without_the_interface_is_refused(hand32):
    g = hand32.grid
    T, R = il.SplineImage(hand32.template, g), il.SplineImage(hand32.reference, g)
    bad = _NoLinearize()
    assert not isinstance(bad, il.Transformation)
    with pytest.raises(TypeError, match=r"transformation must satisfy the Transformation protocol.*lacks linearize"):
        il.SSDObjective(T, R, bad)
    with pytest.raises(TypeError, match="transformation.*lacks dim, n_params, is_linear.*linearize"):
        il.SSDObjective(T, R, lambda w, x: x)
    with pytest.raises(TypeError, match="^warp must"):
        check_transformation(bad, "warp")


def test_a_linear_transformation_is_linearized_once_per_grid(objective32):
    """Affine (is_linear): one linearization serves every w and every scale; only y is recomputed. A nonlinear
    transformation is linearized at every w."""
    s1, s2 = objective32.at_scale(1e-3), objective32.at_scale(1.0)
    w1 = objective32.identity() + 0.01
    w2 = objective32.identity() - 0.02
    assert s1._linearize(w1)[1] is s2._linearize(w2)[1]
    torch.testing.assert_close(s1._linearize(w2)[0], il.affine(w2, objective32.x), rtol=0, atol=0)
    node = il.SSDObjective(objective32.template, objective32.reference, il.NeuralODE()).at_scale(1e-3)
    w = 0.05 * torch.ones(50, dtype=F64)
    (y1, lin1), (y2, lin2) = node._linearize(w), node._linearize(2 * w)
    assert lin1 is not lin2 and not torch.equal(y1, y2)
    torch.testing.assert_close(y2, neural_ode(2 * w, node.x), rtol=0, atol=0)
