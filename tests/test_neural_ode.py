"""Neural-ODE transformation: the model and its parameter order, the 3/8-rule RK4 integrator, the hand-coded
derivatives (reverse sweep, forward sensitivities, second-order adjoint) against torch.func, Taylor tests,
and its use inside the SSD objective (structured exact Hessian = torch.func.hessian)."""
import math

import pytest
import torch
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vjp

import imreg_lib as il
from imreg_lib.neural_ode import NeuralODELinearization, neural_ode_velocity, rk4_38

F64 = torch.float64


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def _params(tr, gen, scale=0.3):
    return scale * torch.randn(tr.n_params, generator=gen, dtype=F64)


# ---- the model ------------------------------------------------------------------------------------------
def test_parameter_count_identity_and_validation(rng):
    assert il.NeuralODE().n_params == 50  # the paper's network: 8*3 + 8 + 2*8 + 2
    assert il.NeuralODE(width=16).n_params == 98
    assert il.NeuralODE(dim=3, width=4).n_params == 4 * 4 + 4 + 3 * 4 + 3
    tr = il.NeuralODE()
    assert not tr.is_linear
    x = 20 * torch.rand(30, 2, generator=rng, dtype=F64)
    w0 = tr.identity()
    assert w0.shape == (50,) and w0.dtype == F64
    assert torch.equal(tr(w0, x), x)  # zero velocity: exactly the identity
    torch.testing.assert_close(tr.jacobian(w0, x), tr.jacobian(w0, x, method="ad"))
    with pytest.raises(ValueError, match=r"shape \(50,\)"):
        tr.check(torch.zeros(6, dtype=F64))
    with pytest.raises(ValueError, match="floating-point"):
        tr.check(torch.zeros(50, dtype=torch.int64))
    with pytest.raises(ValueError, match="tensor"):
        tr.check([0.0] * 50)
    tr.check(w0)
    for kw, msg in [({"dim": 4}, "dim"), ({"width": 0}, "width"), ({"steps": 0}, "steps"),
                    ({"steps": True}, "steps"), ({"width": 2.5}, "width")]:
        with pytest.raises(ValueError, match=msg):
            il.NeuralODE(**kw)
    with pytest.raises(ValueError, match="method"):
        tr.jacobian(w0, x, method="fd")
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        tr.linearize(w0, x[:, :1])


def test_parameter_order_matches_torch_nn_layers(rng):
    """Flat order = VelocityNN(2, [3, 8]): layer0.weight (8x3, row-major), layer0.bias, layer1.weight, bias."""
    tr = il.NeuralODE()
    w = torch.randn(50, generator=rng, dtype=F64)
    lin0, lin1 = torch.nn.Linear(3, 8, dtype=F64), torch.nn.Linear(8, 2, dtype=F64)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(w, [lin0.weight, lin0.bias, lin1.weight, lin1.bias])
    x = 20 * torch.rand(40, 2, generator=rng, dtype=F64)
    t = 0.37

    def v_nn(tt, z):
        zt = torch.cat([z, torch.full_like(z[:, :1], tt)], 1)
        return lin1(torch.tanh(lin0(zt)))

    with torch.no_grad():
        torch.testing.assert_close(neural_ode_velocity(w, x, t), v_nn(t, x), rtol=1e-13, atol=1e-13)
        y_nn = rk4_38(v_nn, x, 0.0, 1.0, 9)
    torch.testing.assert_close(tr(w, x), y_nn, rtol=1e-13, atol=1e-12)


# ---- the integrator -------------------------------------------------------------------------------------
def test_rk4_38_against_known_solutions():
    x0 = torch.tensor([[1.0, -2.0]], dtype=F64)
    # linear ODE x' = -x + t: x(t) = t - 1 + (x0 + 1) e^{-t}; global error O(dt^4)
    exact = 1.0 - 1.0 + (x0 + 1.0) * math.exp(-1.0)
    errs = [float((rk4_38(lambda t, x: -x + t, x0, 0.0, 1.0, n) - exact).abs().max()) for n in (4, 8, 16)]
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(3.8 < o < 4.3 for o in orders), orders
    assert errs[-1] < 1e-7
    # exact for right-hand sides that are cubic polynomials in t: x(1) = x0 + 1/4 for x' = t^3
    y = rk4_38(lambda t, x: torch.full_like(x, t**3), x0, 0.0, 1.0, 3)
    torch.testing.assert_close(y, x0 + 0.25, rtol=0, atol=1e-15)
    # one step of x' = t^4 is the 3/8 quadrature rule (1, 3, 3, 1)/8 at t = 0, 1/3, 2/3, 1: 11/54,
    # which tells it from the classical RK4 (Simpson's rule: 5/24)
    y = rk4_38(lambda t, x: torch.full_like(x, t**4), torch.zeros(1, 1, dtype=F64), 0.0, 1.0, 1)
    assert float(y) == pytest.approx(11.0 / 54.0, rel=1e-14)
    with pytest.raises(ValueError, match="steps"):
        rk4_38(lambda t, x: x, x0, 0.0, 1.0, 0)


def test_paper_configuration_is_nine_steps():
    tr = il.NeuralODE()
    assert (tr.dim, tr.width, tr.steps) == (2, 8, 9)
    w = torch.zeros(50, dtype=F64)
    w[-2:] = torch.tensor([0.5, -0.25], dtype=F64)  # constant velocity b1: y = x + b1 exactly
    x = torch.tensor([[3.0, 4.0]], dtype=F64)
    torch.testing.assert_close(tr(w, x), x + w[-2:], rtol=0, atol=1e-14)
    lin = tr.linearize(w, x)
    assert lin.z.shape == (36, 1, 2) and lin.a.shape == (36, 1, 8) and lin.tau.shape == (36,)
    torch.testing.assert_close(lin.tau[:4], torch.tensor([0.0, 1 / 27, 2 / 27, 1 / 9], dtype=F64))


# ---- hand-coded derivatives = AD ------------------------------------------------------------------------
@pytest.mark.parametrize("dim,width,steps", [(2, 8, 9), (2, 3, 2), (3, 5, 3)])
def test_hand_coded_derivatives_equal_ad(dim, width, steps, rng):
    tr = il.NeuralODE(dim, width, steps)
    x = 6 * torch.rand(23, dim, generator=rng, dtype=F64)
    w = _params(tr, rng)
    lam = torch.randn(23, dim, generator=rng, dtype=F64)
    f = lambda v: tr(v, x)  # noqa: E731
    lin = tr.linearize(w, x)
    torch.testing.assert_close(lin.y, f(w), rtol=0, atol=0)
    assert _rel(lin.vjp(lam), vjp(f, w)[1](lam)[0]) < 1e-12
    Q_ad = jacfwd(f)(w)
    assert tr.jacobian(w, x).shape == (23, dim, tr.n_params)
    assert _rel(tr.jacobian(w, x), Q_ad) < 1e-12
    Q, H = lin.jacobian_and_curvature(lam)
    assert _rel(Q, Q_ad) < 1e-12
    assert _rel(H, hessian(lambda v: torch.sum(lam * f(v)))(w)) < 1e-11
    torch.testing.assert_close(H, H.T, rtol=0, atol=1e-12 * float(H.abs().max()))
    # the same in several blocks of points
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(NeuralODELinearization, "chunk", 5)
        Q5, H5 = lin.jacobian_and_curvature(lam)
        assert _rel(Q5, Q_ad) < 1e-12 and _rel(H5, H) < 1e-12
        assert _rel(lin.vjp(lam), vjp(f, w)[1](lam)[0]) < 1e-12
    with pytest.raises(ValueError, match="cotangent"):
        lin.vjp(lam[:3])
    with pytest.raises(ValueError, match="lam"):
        lin.jacobian_and_curvature(lam[:, :1])


def test_taylor_tests_of_the_map_and_of_its_curvature(rng):
    tr = il.NeuralODE()
    x = 20 * torch.rand(50, 2, generator=rng, dtype=F64)
    w = _params(tr, rng, 0.1)
    v = torch.randn(50, generator=rng, dtype=F64)
    h = tuple(10.0 ** -k for k in range(1, 7))
    # the map itself: first order from the hand-coded Jacobian, second from AD (jvp of jvp)
    Q = tr.jacobian(w, x)
    d2 = jvp(lambda u: jvp(lambda s: tr(s, x), (u,), (v,))[1], (w,), (v,))[1]
    res = il.taylor_test(lambda u: tr(u, x), w, v, Q @ v, d2, h=h)
    assert res.order(0) == pytest.approx(1.0, abs=0.1)
    assert res.order(1) > 1.9 and res.order(2) > 2.9
    # phi(w) = lam . y(w): gradient by the reverse sweep, Hessian by the second-order adjoint
    lam = torch.randn(50, 2, generator=rng, dtype=F64)
    lin = tr.linearize(w, x)
    _, H = lin.jacobian_and_curvature(lam)
    res = il.taylor_test(lambda u: torch.sum(lam * tr(u, x)), w, v, lin.vjp(lam) @ v, v @ H @ v, h=h)
    assert res.order(1) > 1.9 and res.order(2) > 2.9
    # a wrong curvature (half the true one) fails the test
    bad = il.taylor_test(lambda u: torch.sum(lam * tr(u, x)), w, v, lin.vjp(lam) @ v, 0.5 * (v @ H @ v), h=h)
    assert bad.order(2) < 2.5


def test_torch_func_transforms_of_the_map(rng):
    tr = il.NeuralODE(width=4, steps=3)
    x = 5 * torch.rand(7, 2, generator=rng, dtype=F64)
    w = _params(tr, rng)
    phi = lambda v: torch.sum(torch.sin(tr(v, x)))  # noqa: E731
    H = hessian(phi)(w)
    assert _rel(jacrev(grad(phi))(w), H) < 1e-12
    assert _rel(jacfwd(jacfwd(phi))(w), H) < 1e-12
    ws = torch.stack([w, 2 * w])
    ys = torch.func.vmap(lambda v: tr(v, x))(ws)
    torch.testing.assert_close(ys[1], tr(2 * w, x))


# ---- inside the SSD objective ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def node_objective():
    pair = il.synthetic_hand_pair(16, device="cpu")
    g = pair.grid
    return il.SSDObjective(il.SplineImage(pair.template, g), il.SplineImage(pair.reference, g), il.NeuralODE())


def test_structured_derivatives_of_the_neural_ode_objective(node_objective):
    scale = node_objective.at_scale(1e-2)
    w = 0.05 * torch.randn(50, generator=torch.Generator().manual_seed(5), dtype=F64)
    J, dJ, H = scale.derivatives(w)
    assert float(J) == pytest.approx(float(scale.loss(w)), rel=1e-13)
    assert _rel(dJ, grad(scale.loss)(w)) < 1e-10
    assert _rel(H, hessian(scale.loss)(w)) < 1e-10
    J1, dJ1, H1 = scale.derivatives(w, "none")  # reverse sweep only
    assert H1 is None and _rel(dJ1, dJ) < 1e-12 and float(J1) == pytest.approx(float(J), rel=1e-14)
    _, dJ2, Hgn = scale.derivatives(w, "gauss_newton")
    Jr = jacfwd(scale.residual)(w)
    assert _rel(Hgn, 2 * Jr.T @ Jr) < 1e-10 and _rel(dJ2, dJ) < 1e-12
    assert _rel(scale.forward_jacobian(w), scale.forward_jacobian(w, "ad")) < 1e-12
    torch.testing.assert_close(scale.forward_jacobian(w) * math.sqrt(node_objective.grid.cell_volume), Jr)
    with pytest.raises(ValueError, match="method"):
        scale.forward_jacobian(w, "fd")
    # Taylor test of J with the structured gradient and Hessian
    v = torch.randn(50, generator=torch.Generator().manual_seed(6), dtype=F64)
    res = il.taylor_test(scale.loss, w, v, dJ @ v, v @ H @ v, h=tuple(10.0 ** -k for k in range(1, 7)))
    assert res.order(1) > 1.9 and res.order(2) > 2.9
    # the predictor's right-hand side works with a nonlinear transformation too
    rhs = node_objective.theta_derivative_of_gradient(w, 1e-2)
    assert _rel(rhs, node_objective.theta_derivative_of_gradient(w, 1e-2, method="ad")) < 1e-10


def test_affine_forward_jacobian(objective32):
    scale = objective32.at_scale(1e-3)
    w = objective32.identity() + 0.01
    assert _rel(scale.forward_jacobian(w), scale.forward_jacobian(w, "ad")) < 1e-12
