"""Super-resolution problem generation (the authors' test problem of §4) and the matrix-free operators A(w), Aᵀ, AᵀA."""
import numpy as np
import pytest
import torch
from torch.func import jacfwd, vmap

import imreg_lib as il
from imreg_lib.spline import SplineImage
from imreg_lib.superres import random_affine

# Reference constants of the authors' getRandomAffine (float32-rounded; seeds 2, 3, 4)
SPEC_AFFINES = {
    2: (1.00143933, -0.401294857, 0.461348027, 0.871083081, 5.00179195, -3.00201869),
    3: (1.11308146, -0.271305561, 0.258832008, 1.16672277, 2.26050448, -4.67235518),
    4: (0.930413961, -0.789683044, 0.891324997, 0.824314475, 10.5668983, -6.71718121),
}


@pytest.fixture(scope="module")
def small():
    return il.superresolution_problem(8, 2, 3)


@pytest.fixture(scope="module")
def paper():
    return il.superresolution_problem()


@pytest.mark.parametrize("seed", sorted(SPEC_AFFINES))
def test_random_affine_reproduces_the_spec(seed):
    w = random_affine(seed).numpy()
    np.testing.assert_allclose(w, SPEC_AFFINES[seed], rtol=5e-9)  # the spec prints 9 significant digits
    assert np.array_equal(w.astype(np.float32).astype(np.float64), w)  # float32-rounded, as the original
    assert np.array_equal(np.float32(SPEC_AFFINES[seed]), w.astype(np.float32))  # the same float32 numbers


def test_random_affine_is_the_authors_global_stream_without_touching_it():
    # the authors' recipe, literally, on NumPy's global legacy generator
    np.random.seed(5)  # noqa: NPY002
    sx, sy = np.random.uniform(0.95, 1.3, 2)  # noqa: NPY002
    a = np.deg2rad(np.random.uniform(0, 45))  # noqa: NPY002
    A = np.array([[np.cos(a) * sx, -np.sin(a) * sy], [np.sin(a) * sx, np.cos(a) * sy]])
    c = np.array([10.0, 12.5])
    ref = np.concatenate([A.reshape(-1), c - A @ c]).astype(np.float32)
    assert np.array_equal(random_affine(5).numpy(), ref.astype(np.float64))
    np.random.seed(123)  # noqa: NPY002
    expected = np.random.uniform()  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    random_affine(2)
    assert np.random.uniform() == expected  # noqa: NPY002


def test_problem_at_paper_settings(paper):
    assert (paper.m, paper.factor, paper.n_templates, paper.lam) == (20, 2, 4, 1e-2)
    assert paper.data.shape == (4, 10, 10) and paper.n_params == 24 and paper.n_rows == 400 + 760
    assert paper.template_grid.h == (2.0, 2.5) and paper.data_scale == pytest.approx(5 ** 0.5)
    assert paper.reg_scale == pytest.approx(1e-2 * 1.25 ** 0.5)
    torch.testing.assert_close(paper.w_true[:6], il.Affine().identity())
    for j, seed in enumerate(sorted(SPEC_AFFINES), start=1):
        np.testing.assert_allclose(paper.w_true[6 * j:6 * j + 6].numpy(), SPEC_AFFINES[seed], rtol=5e-9)
    # template 0 is K R (the θ = 0 spline interpolates at the cell centres)
    R = paper.reference
    torch.testing.assert_close(paper.data[0], R.reshape(10, 2, 10, 2).mean(dim=(1, 3)), rtol=0, atol=1e-10)
    torch.testing.assert_close(paper.reference, il.synthetic_hand_pair(20, device="cpu").reference)


def test_f_init_is_the_moments_spline_of_template_0(paper):
    ref = SplineImage(paper.data[0], paper.template_grid)(paper.grid.cell_centers(), 1e-2)
    torch.testing.assert_close(paper.f_init, ref, rtol=0, atol=1e-12)


def test_more_templates_continue_the_seeds():
    pb = il.superresolution_problem(8, 2, 6)
    for j in range(1, 6):
        torch.testing.assert_close(pb.w_true[6 * j:6 * j + 6], random_affine(j + 1, center=(10.0, 12.5)))


def test_reference_from_a_file(tmp_path):
    from PIL import Image

    arr = (np.arange(16 * 16).reshape(16, 16) % 251).astype(np.uint8)
    path = tmp_path / "ref.png"
    Image.fromarray(arr, mode="L").save(path)
    pb = il.superresolution_problem(12, 3, 2, reference_path=path)
    torch.testing.assert_close(pb.reference, il.load_image(path, 12, device="cpu"))
    assert pb.source == "ref.png" and pb.data.shape == (2, 4, 4)


@pytest.mark.parametrize("kw, match", [
    ({"m": 20, "factor": 3}, "factor must divide m"),
    ({"factor": 0}, "factor"),
    ({"factor": True}, "factor"),
    ({"m": 8, "factor": 8}, "factor is too large"),
    ({"lam": -1.0}, "lam"),
    ({"lam": float("nan")}, "lam"),
    ({"n_templates": 0}, "n_templates"),
    ({"m": 3}, "m must be"),
    ({"reference": torch.zeros(5, 5)}, "reference must"),
])
def test_bad_problem_inputs(kw, match):
    with pytest.raises(ValueError, match=match):
        il.superresolution_problem(**kw)


def test_bad_parameters_for_the_operator(small):
    with pytest.raises(ValueError, match="w must be a tensor of shape"):
        small.operator(torch.zeros(6, dtype=torch.float64))


def _point(pb, seed=0, scale=0.02):
    g = torch.Generator().manual_seed(seed)
    return pb.w_true + scale * torch.randn(pb.n_params, generator=g, dtype=torch.float64)


def test_adjoint_identity_exact_and_by_ad(paper):
    op = paper.operator(_point(paper))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(paper.n_pixels, generator=g, dtype=torch.float64)
    y = torch.randn(paper.n_rows, generator=g, dtype=torch.float64)
    Ax_y = torch.dot(op.apply(x), y)
    for method in ("exact", "ad"):
        assert abs(float(Ax_y - torch.dot(x, op.adjoint(y, method)))) <= 1e-12 * abs(float(Ax_y))
    torch.testing.assert_close(op.adjoint(y, "exact"), op.adjoint(y, "ad"), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(op.normal(x), op.adjoint(op.apply(x), "ad"), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(op.normal_rhs(), op.adjoint(paper.b, "ad"), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(op.normal(x), op.normal(x, "ad"), rtol=1e-12, atol=1e-10)


def test_operator_is_linear_and_its_blocks_are_as_specified(small):
    op = small.operator(_point(small))
    g = torch.Generator().manual_seed(2)
    x, z = torch.randn(2, small.n_pixels, generator=g, dtype=torch.float64)
    torch.testing.assert_close(op.apply(2.0 * x - 3.0 * z), 2.0 * op.apply(x) - 3.0 * op.apply(z))
    F = x.reshape(8, 8)
    h = small.grid.h
    Lx = torch.cat([((F[1:] - F[:-1]) / h[0]).reshape(-1), ((F[:, 1:] - F[:, :-1]) / h[1]).reshape(-1)])
    torch.testing.assert_close(op.regularizer(x), Lx)
    # data block: mean pooling of the spline of x at y_j(x_c)
    c = il.spline_coefficients(F, 0.0)
    vals = il.spline_evaluate(c, small.transformed_points(op.w), small.grid)
    torch.testing.assert_close(op.data_map(x), vals.reshape(3, 4, 2, 4, 2).mean(dim=(2, 4)).reshape(-1),
                               rtol=0, atol=1e-12)


def test_coefficients_are_computed_once_per_application(paper, monkeypatch):
    op = paper.operator(_point(paper))
    calls = []
    original = il.SROperator.coefficients
    monkeypatch.setattr(il.SROperator, "coefficients", lambda self, f: calls.append(1) or original(self, f))
    op.data_map(paper.f_init)
    op.apply(paper.f_init)
    assert len(calls) == 2  # one per application, shared by the 4 templates


def test_normal_paths_agree_under_transforms(paper):
    """plain (CSR), primitive (custom jvp inside jacfwd) and generic (pure tensor ops) give the same numbers."""
    w = _point(paper, 3)
    f = paper.f_init
    op = paper.operator(w)
    assert op._route(f) == "plain"

    def routed(wv):
        o = paper.operator(wv)
        routes.append(o._route(f * wv[0]))
        return o.normal(f * wv[0])

    routes = []
    J = jacfwd(routed)(w)
    Jg = jacfwd(lambda wv: paper.operator(wv).normal(f * wv[0], "ad"))(w)
    assert routes == ["primitive"]
    torch.testing.assert_close(J, Jg, rtol=1e-11, atol=1e-9)
    # reverse mode takes the generic path and agrees with forward mode
    Jr = torch.func.jacrev(lambda wv: paper.operator(wv).normal(f * wv[0]))(w)
    torch.testing.assert_close(Jr, Jg, rtol=1e-11, atol=1e-9)
    # vmap over images: the whole batch in one sparse product
    X = torch.randn(5, paper.n_pixels, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(vmap(op.normal)(X), torch.stack([op.normal(x, "ad") for x in X]), rtol=1e-12,
                               atol=1e-10)
    # vmap over parameters (batched primal) falls back to the generic path
    Ws = torch.stack([w, _point(paper, 5)])
    out = vmap(lambda wv: paper.operator(wv).normal(f))(Ws)
    torch.testing.assert_close(out[1], paper.operator(Ws[1]).normal(f), rtol=1e-12, atol=1e-10)
