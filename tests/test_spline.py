"""Spline image model: definition (the paper's eq. 2), exactness, smoothing, derivatives under every transform."""
import itertools
import math

import numpy as np
import pytest
import torch
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vmap

import imreg_lib as il
from imreg_lib import spline
from imreg_lib._torch import is_traced
from imreg_lib.spline import spline_basis_matrices

OMEGA3 = (0.0, 4.0, 0.0, 5.0, 0.0, 6.0)


def _reference_coefficients(data, theta):
    """The authors' route: dense solves of (BᵀB + θP) c = Bᵀt along every dimension."""
    C = data
    for axis, m in enumerate(data.shape):
        B, P = spline_basis_matrices(m)
        M = B.T @ B + theta * P
        C = torch.movedim(torch.tensordot(torch.linalg.solve(M, B.T), C, dims=([1], [axis])), 0, axis)
    return C


def test_basis_matrices():
    B, P = spline_basis_matrices(6)
    assert B[0, :3].tolist() == [4, 1, 0]
    assert P[0, :5].tolist() == [96, -54, 0, 6, 0]
    torch.testing.assert_close(P, P.T)
    assert torch.linalg.eigvalsh(P).min() > -1e-9  # positive semi-definite


@pytest.mark.parametrize("shape", [(7, 9), (4, 5, 6)])
@pytest.mark.parametrize("theta", [0.0, 1e-3, 1.0, 1e3])
def test_coefficients_match_direct_solves(shape, theta, rng):
    data = torch.rand(shape, generator=rng, dtype=torch.float64) * 255
    torch.testing.assert_close(il.spline_coefficients(data, theta), _reference_coefficients(data, theta),
                               rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("omega, m", [(il.PAPER_OMEGA, (8, 11)), (OMEGA3, (5, 6, 7))])
def test_interpolation_reproduces_data_at_cell_centres(omega, m, rng):
    g = il.Grid(omega, m)
    data = torch.rand(m, generator=rng, dtype=torch.float64) * 255
    torch.testing.assert_close(il.SplineImage(data, g).on_grid(0.0), data, rtol=0, atol=1e-10)


@pytest.mark.parametrize("omega, m, margin", [(il.PAPER_OMEGA, 32, 9), (OMEGA3, 20, 7)])
def test_constants_and_linear_functions_in_the_interior(omega, m, margin, rng):
    """Away from the boundary (whose effect decays like (2 - sqrt 3)^k with the distance k in cells)."""
    g = il.Grid(omega, m)
    xc = g.cell_centers()
    slope = torch.arange(1, g.dim + 1, dtype=torch.float64)
    lin = (3.0 + xc @ slope).reshape(g.m)
    img = il.SplineImage(lin, g)
    lo, hi = torch.tensor(g.lower), torch.tensor(g.upper)
    h = torch.tensor(g.h)
    x = lo + margin * h + (hi - lo - 2 * margin * h) * torch.rand(50, g.dim, generator=rng, dtype=torch.float64)
    # interior: far from the boundary where the zero padding of the coefficients is felt
    torch.testing.assert_close(img(x), 3.0 + x @ slope, rtol=1e-3, atol=0)
    const = il.SplineImage(torch.full(g.m, 7.0, dtype=torch.float64), g)
    torch.testing.assert_close(const(x), torch.full((50,), 7.0, dtype=torch.float64), rtol=1e-3, atol=0)
    torch.testing.assert_close(img(x, order=1), slope.expand(50, -1), rtol=0, atol=2e-2)


def test_large_theta_smooths(hand32):
    img = il.SplineImage(hand32.reference, hand32.grid)

    def roughness(u):
        return float((u[1:] - u[:-1]).abs().sum() + (u[:, 1:] - u[:, :-1]).abs().sum())

    r = [roughness(img.on_grid(t)) for t in (1e-3, 1e1, 1e3)]
    assert r[0] > r[1] > r[2]
    assert r[2] < 0.2 * r[0]


def test_window_zero_outside():
    g = il.Grid(il.PAPER_OMEGA, 8)
    img = il.SplineImage(torch.ones(8, 8, dtype=torch.float64) * 10, g)
    h0 = g.h[0]
    # xi = x / h - 0.5: xi = -1.5 is inside the paper window (-2, m) but outside FAIR's (-1, m)
    x = torch.tensor([[-1.0 * h0, 12.0], [(8 + 0.7) * h0, 12.0], [-5.0, 12.0]], dtype=torch.float64)
    paper = img(x)
    fair = il.SplineImage(img.data, g, window="fair")(x)
    assert paper[0] > 0 and fair[0] == 0 and paper[2] == 0 and paper[1] == 0
    assert (img(x, order=1)[2] == 0).all()
    with pytest.raises(ValueError, match="window"):
        il.SplineImage(img.data, g, window="symmetric")


@pytest.fixture(scope="module", params=["2d", "3d"])
def model(request):
    gen = torch.Generator().manual_seed(7)
    if request.param == "2d":
        g = il.Grid(il.PAPER_OMEGA, (9, 10))
    else:
        g = il.Grid(OMEGA3, (5, 6, 7))
    img = il.SplineImage(torch.rand(g.m, generator=gen, dtype=torch.float64) * 255, g)
    x = g.cell_centers()[::7][:12] + 0.37 * torch.tensor(g.h)
    return img, x


def test_taylor_test_with_respect_to_points(model, rng):
    img, x = model
    f = lambda z: img(z, 1e-2)  # noqa: E731
    v = torch.randn(x.shape, generator=rng, dtype=torch.float64)
    d1 = (img(x, 1e-2, order=1) * v).sum(-1)
    d2 = torch.einsum("ni,nij,nj->n", v, img(x, 1e-2, order=2), v)
    res = il.taylor_test(f, x, v, d1, d2, h=tuple(10.0 ** -k for k in range(1, 6)))
    assert res.order(1) > 1.9 and res.order(2) > 2.9


def test_taylor_test_with_respect_to_theta(model):
    img, x = model
    th = torch.tensor(0.3, dtype=torch.float64)
    f = lambda t: img(x, t)  # noqa: E731
    d1 = jacfwd(f)(th)
    d2 = jacfwd(jacfwd(f))(th)
    res = il.taylor_test(f, th, torch.tensor(1.0, dtype=torch.float64), d1, d2,
                         h=tuple(0.1 * 2.0 ** -k for k in range(6)))
    assert res.order(1) > 1.9 and res.order(2) > 2.8
    # and the exact derivative of the coefficients, dc/dθ = -M⁻¹ P c (per dimension), agrees with AD
    dc = jvp(img.coefficients, (th,), (torch.ones_like(th),))[1]
    eps = 1e-6
    fd = (img.coefficients(0.3 + eps) - img.coefficients(0.3 - eps)) / (2 * eps)
    torch.testing.assert_close(dc, fd, rtol=1e-6, atol=1e-6)


def test_all_ad_transforms_agree(model):
    img, x = model
    n, d = x.shape
    f = lambda z: img(z, 1e-3).sum()  # noqa: E731
    expected_g = img(x, 1e-3, order=1)
    expected_h = img(x, 1e-3, order=2)
    for gfun in (grad(f), jacrev(f), jacfwd(f)):
        torch.testing.assert_close(gfun(x), expected_g, rtol=1e-12, atol=1e-10)
    for hfun in (hessian(f), jacrev(jacrev(f)), jacfwd(jacfwd(f)), jacrev(jacfwd(f)), jacfwd(jacrev(f))):
        Hfull = hfun(x)  # (n, d, n, d); points are independent
        torch.testing.assert_close(torch.einsum("iaib->iab", Hfull), expected_h, rtol=1e-12, atol=1e-9)
        assert torch.einsum("iajb->ij", Hfull.abs()).fill_diagonal_(0).max() == 0
    # vmap over points and jvp
    v = torch.ones_like(x)
    torch.testing.assert_close(jvp(lambda z: img(z, 1e-3), (x,), (v,))[1], expected_g.sum(-1))
    per_point = vmap(lambda p: img(p[None], 1e-3)[0])(x)
    torch.testing.assert_close(per_point, img(x, 1e-3))
    # fused orders from one gather
    T, dT, d2T = il.spline_derivatives(img.coefficients(1e-3), x, img.grid)
    torch.testing.assert_close(dT, expected_g) and torch.testing.assert_close(d2T, expected_h)
    torch.testing.assert_close(T, img(x, 1e-3))


def test_linear_in_data_and_vmap_over_images(model, rng):
    img, x = model
    g = img.grid
    c1 = torch.randn(g.m, generator=rng, dtype=torch.float64)
    c2 = torch.randn(g.m, generator=rng, dtype=torch.float64)
    e = lambda c: il.spline_evaluate(c, x, g)  # noqa: E731
    torch.testing.assert_close(e(2 * c1 - 3 * c2), 2 * e(c1) - 3 * e(c2))
    torch.testing.assert_close(vmap(e)(torch.stack([c1, c2])), torch.stack([e(c1), e(c2)]))
    # adjoint identity and forward-mode AD of the adjoint in the points (the SR operator needs both)
    u = torch.randn(x.shape[0], generator=rng, dtype=torch.float64)
    adj = lambda z: torch.func.vjp(lambda c: il.spline_evaluate(c, z, g), c1)[1](u)[0]  # noqa: E731
    torch.testing.assert_close((adj(x) * c2).sum(), (u * e(c2)).sum())
    torch.testing.assert_close(jacfwd(adj)(x), jacrev(adj)(x), rtol=1e-10, atol=1e-9)


def test_caches_hold_plain_tensors(hand32):
    img = il.SplineImage(hand32.reference, hand32.grid)
    x = hand32.grid.cell_centers()[:10]
    hessian(lambda z: img(z, 0.5).sum())(x)  # fills the cache inside a transform
    c = img.coefficients(0.5)
    assert not is_traced(c)
    assert img.coefficients(0.5) is c  # cached once per (image, θ)
    img(x, 0.5)  # usable outside the transform


@pytest.mark.parametrize("theta, match", [(-1.0, "theta"), (float("nan"), "theta"), ("1", "theta"),
                                          (torch.ones(2), "scalar")])
def test_bad_theta(theta, match, hand32):
    img = il.SplineImage(hand32.reference, hand32.grid)
    with pytest.raises(ValueError, match=match):
        img.coefficients(theta)


def test_bad_shapes(hand32):
    g = hand32.grid
    with pytest.raises(ValueError, match="grid.m"):
        il.SplineImage(torch.zeros(5, 5, dtype=torch.float64), g)
    with pytest.raises(ValueError, match="floating"):
        il.SplineImage(torch.zeros(g.m, dtype=torch.int64), g)
    img = il.SplineImage(hand32.reference, g)
    with pytest.raises(ValueError, match="x must have shape"):
        img(torch.zeros(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="order"):
        img(torch.zeros(4, 2, dtype=torch.float64), order=-1)


F64 = torch.float64


@pytest.mark.parametrize("window", ["paper", "fair"])
@pytest.mark.parametrize("omega, m", [((0, 20, 0, 25), (8, 10)), ((0, 4, 0, 5, 0, 6), (5, 6, 7))])
def test_stacked_values_and_gradients_match_one_spline_at_a_time(omega, m, window, rng):
    grid = il.Grid(omega, m)
    x = grid.cell_centers("cpu", F64)
    x = x + 0.9 * torch.as_tensor(grid.h, dtype=F64) * torch.randn(x.shape, dtype=F64, generator=rng)  # some outside
    c = torch.randn((3, *m), dtype=F64, generator=rng)
    values, gradients = il.spline.spline_gradients(c, x, grid, window=window)
    assert values.shape == (3, x.shape[0]) and gradients.shape == (3, *x.shape)
    for s in range(3):
        T, dT = il.spline_derivatives(c[s], x, grid, orders=(0, 1), window=window)
        torch.testing.assert_close(values[s], T, rtol=0, atol=1e-13 * float(T.abs().max()))
        torch.testing.assert_close(gradients[s], dT, rtol=0, atol=1e-13 * float(dT.abs().max()))
    with pytest.raises(ValueError, match="coefficients"):
        il.spline.spline_gradients(c[0], x, grid)


@pytest.mark.parametrize("omega, m", [((0, 20, 0, 25), (8, 10)), ((0, 4, 0, 5, 0, 6), (5, 6, 7))])
def test_contraction_in_blocks_of_points_is_the_one_pass_and_the_explicit_sum(omega, m, monkeypatch, rng):
    """The neighbours' contraction runs over blocks of points on the CPU (a 3D image's points would not stay in
    cache): every block size gives the same bits as one pass, and both are the explicit sum over the 4^d
    neighbours of the coefficient times the product of the per-axis weights (here of orders 0..2)."""
    grid = il.Grid(omega, m)
    d = grid.dim
    x = grid.cell_centers("cpu", F64)
    x = x + 0.9 * torch.as_tensor(grid.h, dtype=F64) * torch.randn(x.shape, dtype=F64, generator=rng)
    c = torch.randn(m, dtype=F64, generator=rng)
    points = spline._points(x, grid, "paper", 2)
    G = spline._pad(c, d).reshape(-1)[points.index]
    whole = spline._contract(G, points.weights)
    for numbers in (4**d * 3 * 7, 4**d * 3 * 64 + 5):  # 7 points a block; 64 and a remainder
        monkeypatch.setattr(spline, "_BLOCK_NUMBERS", numbers)
        assert torch.equal(spline._contract(G, points.weights), whole)
    W = points.weights  # (d, K, 4, N)
    for orders in itertools.product(range(3), repeat=d):
        row = sum(p * 3 ** (d - 1 - j) for j, p in enumerate(orders))
        explicit = sum(G[sum(a * 4 ** (d - 1 - j) for j, a in enumerate(nb))]
                       * math.prod(W[j, orders[j], nb[j]] for j in range(d))
                       for nb in itertools.product(range(4), repeat=d))
        torch.testing.assert_close(whole[row], explicit, rtol=0, atol=1e-13 * float(explicit.abs().max()))


def test_closed_form_theta_derivative_of_the_values_at_cell_centres(hand32):
    image = il.SplineImage(hand32.reference, hand32.grid)
    for theta in (1e-3, 1.0, 1e3):
        closed = image.values_theta_derivative(theta)
        t = torch.tensor(theta, dtype=F64)
        ad = jvp(lambda s: image.on_grid(s), (t,), (torch.ones_like(t),))[1]
        assert closed.shape == image.grid.m
        assert float((closed - ad).abs().max()) <= 1e-12 * float(ad.abs().max())


@pytest.mark.parametrize("omega, m", [((0, 20, 0, 25), (8, 10)), ((0, 4, 0, 5, 0, 6), (5, 6, 7))])
def test_theta_derivatives_of_several_scales_at_once_equal_the_derivative_at_each(omega, m, rng):
    grid = il.Grid(omega, m)
    image = il.SplineImage(torch.randn(m, dtype=F64, generator=rng), grid)
    thetas = (1e-3, 0.5, 2.0, 1e3)
    for at in ("coefficients", "centres"):
        batch = image.theta_derivatives(thetas, at=at)
        assert batch.shape == (len(thetas), *m)
        for k, theta in enumerate(thetas):
            t = torch.tensor(theta, dtype=F64)
            f = image.coefficients if at == "coefficients" else image.on_grid
            ad = jvp(f, (t,), (torch.ones_like(t),))[1]
            assert float((batch[k] - ad).abs().max()) <= 1e-12 * float(ad.abs().max())
    one = image.coefficients_theta_derivative(0.5)
    torch.testing.assert_close(one, image.theta_derivatives(thetas)[1], rtol=0, atol=1e-13 * float(one.abs().max()))
    with pytest.raises(ValueError, match="at must be"):
        image.theta_derivatives(thetas, at="points")
    with pytest.raises(ValueError, match="theta"):
        image.theta_derivatives((1.0, -1.0))


def test_sigma_for_theta_halves_the_same_frequency():
    for theta in (0.1, 1.0, 10.0, 1e3):
        sigma = spline.sigma_for_theta(theta)
        omega = math.sqrt(2 * math.log(2)) / sigma
        assert spline.transfer(theta, omega) == pytest.approx(0.5, abs=1e-9)  # the spline halves it ...
        assert math.exp(-0.5 * (sigma * omega) ** 2) == pytest.approx(0.5)  # ... and so does the Gaussian
        assert spline.theta_for_sigma(sigma) == pytest.approx(theta, rel=1e-9)
    # the low-frequency limit H = 1 / (1 + theta omega^4): sigma ~ sqrt(2 ln 2) theta^(1/4) for large theta
    assert spline.sigma_for_theta(1e6) == pytest.approx(math.sqrt(2 * math.log(2)) * 1e6 ** 0.25, rel=1e-3)
    assert spline.sigma_for_theta(0.0) == 0.0 and spline.sigma_for_theta(1e-3) == 0.0  # nothing below Nyquist halved
    s = [spline.sigma_for_theta(t) for t in np.logspace(-1, 4, 12)]
    assert all(a < b for a, b in zip(s, s[1:], strict=False))


def test_spline_transfer_function_is_the_one_the_relation_uses():
    """Smoothing a cosine with the spline model at scale theta multiplies it by H_theta(omega) (interior cells)."""
    m, omega, theta = 160, 0.6, 3.0
    grid = il.Grid((0.0, float(m), 0.0, 8.0), (m, 8))
    x = torch.arange(m, dtype=torch.float64)
    data = torch.cos(omega * x)[:, None].expand(m, 8).contiguous()
    # along y the image is constant, which the 8-cell spline keeps only up to its boundary rows: divide it out
    along_y = il.SplineImage(torch.ones(m, 8, dtype=torch.float64), grid).on_grid(theta)[m // 2, 4]
    smoothed = il.SplineImage(data, grid).on_grid(theta)[:, 4] / along_y
    mid = slice(m // 2 - 20, m // 2 + 20)
    gain = float((smoothed[mid] @ data[mid, 4]) / (data[mid, 4] @ data[mid, 4]))
    assert gain == pytest.approx(spline.transfer(theta, omega), rel=1e-3)
    assert abs(gain - spline.transfer(2 * theta, omega)) > 1e-2  # the check can fail


def test_sigma_and_theta_check_their_inputs():
    with pytest.raises(ValueError, match="theta must be"):
        spline.sigma_for_theta(-1.0)
    with pytest.raises(ValueError, match="sigma must be"):
        spline.theta_for_sigma(float("nan"))
    with pytest.raises(ValueError, match="theta must be a finite number >= 0, got True"):
        spline.sigma_for_theta(True)
