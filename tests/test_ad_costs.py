"""AD cost measurement (Table 1): input validation, the authors' dense coefficient solve, the functions each
protocol times, result records and the timing budget. No assertion here depends on how fast anything is."""
import json
import math
import time

import pytest
import torch
from torch.func import grad, jacfwd, jacrev

import imreg_lib as il
from imreg_lib import paper
from imreg_lib.paper.ad_costs import TABLE1_FUNCTIONS, _paper_functions

F64 = torch.float64


@pytest.fixture(scope="module")
def pair8():
    return il.synthetic_hand_pair(8, device="cpu")


def test_paper_spline_coefficients_equal_the_library_solve(rng):
    data = torch.rand(9, 7, generator=rng, dtype=F64)
    for theta in (0.0, 1e-3, 5.0):
        torch.testing.assert_close(paper.paper_spline_coefficients(data, theta), il.spline_coefficients(data, theta),
                                   rtol=1e-10, atol=1e-10)
    th = torch.tensor(0.3, dtype=F64)  # a tensor theta, as the authors pass it
    torch.testing.assert_close(paper.paper_spline_coefficients(data, th), il.spline_coefficients(data, 0.3))
    vol = torch.rand(4, 5, 6, generator=rng, dtype=F64)
    torch.testing.assert_close(paper.paper_spline_coefficients(vol, 0.1), il.spline_coefficients(vol, 0.1))


@pytest.mark.parametrize("model", ["affine", "neural_ode"])
def test_paper_functions_are_the_objective(pair8, model):
    """The paper protocol's pure functions equal the library's objective (same model, same θ)."""
    tr = paper.model_transformation(model)
    forward, loss = _paper_functions(pair8, tr)
    obj = il.SSDObjective(il.SplineImage(pair8.template, pair8.grid), il.SplineImage(pair8.reference, pair8.grid),
                          tr)
    w = paper.near_identity(tr, 0.1, seed=3)
    th = torch.tensor(1e-2, dtype=F64)
    assert float(loss(w, th)) == pytest.approx(float(obj.loss(w, 1e-2)), rel=1e-10)
    torch.testing.assert_close(forward(w, th), obj.at_scale(1e-2).forward(w), rtol=1e-10, atol=1e-10)
    # the derivatives it times are the objective's derivatives
    torch.testing.assert_close(grad(loss)(w, th), grad(obj.at_scale(1e-2).loss)(w), rtol=1e-8, atol=1e-8)
    H = jacrev(grad(loss))(w, th)
    assert H.shape == (tr.n_params, tr.n_params)
    assert jacfwd(forward)(w, th).shape == (64, tr.n_params)


def test_near_identity_and_models():
    assert paper.model_transformation("affine").n_params == 6
    assert paper.model_transformation("affine", dim=3).n_params == 12
    assert paper.model_transformation("neural_ode").n_params == 50
    with pytest.raises(ValueError, match="model"):
        paper.model_transformation("bspline")
    tr = il.Affine()
    w = paper.near_identity(tr, scale=0.05, seed=1)
    torch.testing.assert_close(w, paper.near_identity(tr, scale=0.05, seed=1))  # deterministic
    assert 0 < float((w - tr.identity()).abs().max()) < 0.25
    assert not torch.equal(w, paper.near_identity(tr, scale=0.05, seed=2))


@pytest.mark.parametrize("protocol", ["paper", "cached"])
def test_measure_ad_costs_record(pair8, protocol):
    res = paper.measure_ad_costs(pair8, "neural_ode", protocol, n_runs=2, warmup=0)
    assert (res.protocol, res.model, res.n_params, res.m) == (protocol, "neural_ode", 50, (8, 8))
    d = res.to_json()
    json.dumps(d)  # serialisable
    for fn in TABLE1_FUNCTIONS:
        for key in (f"{fn}_ms", f"{fn}_std", f"{fn}_median_ms"):
            assert math.isfinite(d[key]) and d[key] >= 0
        assert d[f"{fn}_n_runs"] == 2
        assert fn in res.routes
    f = res.factors
    assert f["gradient"] == pytest.approx(res.gradient_ms / res.loss_ms)
    assert f["hessian"] == pytest.approx(res.hessian_ms / res.loss_ms)
    assert f["jacobian"] == pytest.approx(res.jacobian_ms / res.forward_ms)
    assert res.factors_median["hessian"] == pytest.approx(res.hessian_median_ms / res.loss_median_ms)
    assert d["paper"]["factors"] == paper.PAPER_FACTORS["neural_ode"]
    if protocol == "cached":  # both Jacobian routes were timed; the other one is kept
        assert len(res.alternatives) == 1 and next(iter(res.alternatives)).startswith("jacobian:")
        assert res.routes["jacobian"] in ("structured ∇T·Q", "torch.func.jacfwd")
    else:
        assert res.routes["hessian"] == "torch.func.jacrev(grad)"


def test_ad_cost_table_validation_happens_first():
    bad = [({"protocol": "fast"}, "protocol"), ({"n_runs": 1}, "n_runs"), ({"n_runs": 2.5}, "n_runs"),
           ({"m": 3}, "m must"), ({"m": "32"}, "m must"), ({"theta": -1.0}, "theta"),
           ({"theta": float("nan")}, "theta"), ({"warmup": -1}, "warmup"), ({"max_seconds": 0}, "max_seconds"),
           ({"models": ("affine", "bspline")}, "models"), ({"models": ()}, "models"),
           ({"reference_path": "r.png"}, "both"), ({"device": "tpu"}, "device"), ({"seed": 1.5}, "seed")]
    for kw, msg in bad:
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=msg):
            paper.ad_cost_table(**kw)
        assert time.perf_counter() - t0 < 5.0  # rejected before images are built or anything is timed


def test_ad_cost_table_shape():
    table = paper.ad_cost_table(8, n_runs=2, warmup=0, protocol="cached", device="cpu", models=("affine",))
    assert list(table) == ["cached"] and list(table["cached"]) == ["affine"]
    both = paper.ad_cost_table(6, n_runs=2, warmup=0, protocol="both", device="cpu", models="affine")
    assert list(both) == ["paper", "cached"]
    with pytest.raises(ValueError, match="protocol"):
        paper.measure_ad_costs(il.synthetic_hand_pair(6, device="cpu"), "affine", "both")


def test_compare_derivatives_agreement(pair8):
    for model in ("affine", "neural_ode"):
        tr = paper.model_transformation(model)
        obj = il.SSDObjective(il.SplineImage(pair8.template, pair8.grid),
                              il.SplineImage(pair8.reference, pair8.grid), tr)
        cmp = paper.compare_derivatives(obj.at_scale(1e-3), paper.near_identity(tr), model, n_runs=2, warmup=0)
        assert set(cmp.rel_diff) == {"gradient", "gauss_newton", "hessian"}
        assert max(cmp.rel_diff.values()) < 1e-10
        assert set(cmp.structured_ms) == set(cmp.ad_ms) == set(cmp.rel_diff)
        json.dumps(cmp.to_json())
    with pytest.raises(ValueError, match="shape"):
        paper.compare_derivatives(obj.at_scale(1e-3), torch.zeros(3, dtype=F64), n_runs=2)


def test_scaling_point_and_volume_pair():
    vol = paper.synthetic_volume_pair(6, device="cpu")
    assert vol.grid.dim == 3 and vol.template.shape == (6, 6, 6)
    pt = paper.scaling_point(vol, il.Affine(3), "affine 3D", n_runs=2, warmup=0)
    assert (pt.n_params, pt.n_points, pt.m) == (12, 216, (6, 6, 6))
    assert pt.hessian_ad_ms is not None and pt.jacobian_ad_ms is not None
    pt = paper.scaling_point(il.synthetic_hand_pair(6, device="cpu"), il.NeuralODE(width=3), n_runs=2, warmup=0,
                          ad=False)
    assert pt.n_params == 20 and pt.hessian_ad_ms is None
    json.dumps(pt.to_json())
    with pytest.raises(ValueError, match="3D"):
        paper.scaling_point(vol, il.Affine(2), n_runs=2)
    with pytest.raises(ValueError, match="m must"):
        paper.synthetic_volume_pair(2)


def test_time_function_budget_and_validation():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.002)

    t = il.time_function(fn, n_runs=50, warmup=1, max_seconds=0.001)
    assert t.n_runs == il.timing.MIN_RUNS and len(calls) == 1 + il.timing.MIN_RUNS
    assert t.min_ms <= t.median_ms <= max(t.mean_ms, t.median_ms) and t.std_ms >= 0
    assert il.time_function(lambda: None, n_runs=3, warmup=0).n_runs == 3
    for kw, msg in [({"n_runs": 1}, "n_runs"), ({"warmup": -1}, "warmup"), ({"max_seconds": -1.0}, "max_seconds"),
                    ({"n_runs": True}, "n_runs")]:
        with pytest.raises(ValueError, match=msg):
            il.time_function(lambda: None, **kw)


@pytest.mark.parametrize("image", ["mri", "grace_hopper"])
@pytest.mark.parametrize("orientation", ["mirror_x", "rotate_180"])
def test_derivative_checks_pass_on_real_images(real_image_pngs, image, orientation):
    """The check of the Table 1 page on real images (the paper's pair is not in the repository; on it the old
    two-point order estimate gave 2.85 and stopped the page): every hand-coded derivative agrees with torch.func
    and the fitted Taylor orders are those of exact derivatives."""
    path = real_image_pngs[image]
    pair = il.load_pair(path, path, 32, template_orientation=orientation, device="cpu")
    comparisons, taylor = paper.derivative_checks(pair, 1e-3, n_runs=2, warmup=0, max_seconds=0.05)
    paper.check_derivatives(comparisons, taylor)
    for model, (first, second) in taylor.items():
        assert first == pytest.approx(2.0, abs=0.1) and second == pytest.approx(3.0, abs=0.15), (model, taylor)
