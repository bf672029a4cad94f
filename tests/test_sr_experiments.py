"""The super-resolution experiment drivers (paper §4): validation before work, the Fig 7 Jacobian test and the
test of each Jacobian against its own residual (asserted orders), run bookkeeping, costs and reconstructions."""
import math

import pytest
import torch

import imreg_lib as il
from imreg_lib import paper


@pytest.fixture(scope="module")
def pb():
    return il.superresolution_problem(8, 2, 2)


@pytest.fixture(scope="module")
def w0(pb):
    g = torch.Generator().manual_seed(1)
    return pb.w_true + 0.02 * torch.randn(pb.n_params, generator=g, dtype=torch.float64)


def test_taylor_from_differences_matches_taylor_test():
    f = lambda x: torch.stack([x[0] ** 3, torch.sin(x[1])])  # noqa: E731
    x, v = torch.tensor([0.7, 0.2], dtype=torch.float64), torch.tensor([0.3, -0.5], dtype=torch.float64)
    df_v = torch.stack([3 * x[0] ** 2 * v[0], torch.cos(x[1]) * v[1]])
    h = (1e-1, 1e-2, 1e-3)
    a = il.taylor_test(f, x, v, df_v, h=h)
    b = il.taylor_from_differences(h, [f(x + s * v) - f(x) for s in h], df_v, noise=a.noise)
    assert a == b and a.noise == pytest.approx(10 * 2.0 ** -52 * float(torch.linalg.vector_norm(f(x))))
    assert a.slope(1, 1e-3) == pytest.approx(2.0, abs=0.05)
    assert math.isnan(a.slope(1, 1.0))  # no step in range
    with pytest.raises(ValueError, match="one entry per step"):
        il.taylor_from_differences(h, [f(x)], df_v)


@pytest.mark.parametrize("fractions", [[1.5], [-0.1], [], [True], ["0.9"]])
def test_bad_fractions(pb, w0, fractions):
    with pytest.raises(ValueError, match=r"fractions must be .* in \[0, 1\]"):
        paper.partial_differentiation(pb, w0, fractions)


@pytest.mark.parametrize("counts", [[-1], [0], [2.5], []])
def test_bad_counts(pb, w0, counts):
    with pytest.raises(ValueError, match="cg_counts must be .* integers >= 1"):
        paper.inexact_projections(pb, w0, counts)


def test_bad_settings_fail_before_any_solve(pb, w0, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("solved before validating")

    monkeypatch.setattr(paper.superres_runs, "varpro_levenberg_marquardt", boom)
    with pytest.raises(ValueError, match="gn_iters"):
        paper.compare_projections(pb, w0, gn_iters=0)
    with pytest.raises(ValueError, match="method must be one of"):
        paper.compare_projections(pb, w0, methods=("diff_all", "bogus"))
    with pytest.raises(ValueError, match="variant must be one of"):
        paper.compare_projections(pb, w0, variant="eq7")
    with pytest.raises(ValueError, match="w must have shape|shape"):
        paper.inexact_projections(pb, w0[:-1], [5])
    with pytest.raises(ValueError, match="h must be"):
        paper.projection_taylor(pb, w0, [1.0], h=[1.0])


def test_each_jacobian_against_its_own_residual(pb, w0):
    vps = {"diff_all": paper.AsCodedVarPro(pb, cg_iters=10, tol=0.0),
           "no_diff": paper.AsCodedVarPro(pb, method="no_diff", cg_iters=10, tol=0.0),
           "implicit": paper.AsCodedVarPro(pb, method="implicit")}
    res = paper.varpro_taylor(vps, w0, h=(1e-1, 1e-2, 1e-3, 1e-4))
    assert res["diff_all"].slope(1, 1e-4, 1e-2) > 1.8
    assert res["implicit"].slope(1, 1e-4, 1e-2) > 1.8
    assert res["no_diff"].slope(1, 1e-4, 1e-2) < 1.2


def test_fig7_protocol(pb, w0):
    res = paper.projection_taylor(pb, w0, [1.0, 0.5, 0.0], cg_iters=40, tol=0.0, h=(1.0, 1e-2, 1e-4))
    assert set(res) == {"100%", "50%", "0%", "50% continued", "implicit"}
    e = {k: v.errors[1] for k, v in res.items()}
    # the reference function is the 100 % one: its error decays fastest; No Diff is first order
    assert e["100%"][-1] < 1e-2 * e["0%"][-1]
    assert res["0%"].slope(1, 1e-4, 1e-2) == pytest.approx(1.0, abs=0.1)
    assert all(len(v.h) == 3 for v in res.values())
    assert len(paper.FIG7_STEPS) == 10 and paper.FIG7_STEPS[0] == 1e5 and paper.FIG7_STEPS[-1] == pytest.approx(1e-15)


def test_runs_summaries_and_reconstructions(pb, w0):
    runs = paper.inexact_projections(pb, w0, [2, 20], gn_iters=4)
    assert list(runs) == [2, 20]
    for run in runs.values():
        s = paper.VarProSummary.from_run(run)
        assert len(s.losses) == len(s.grad_norms) == len(s.rss_mb) <= 4
        assert 0 < s.rel_error < 2 and s.losses[-1] <= s.losses[0]
        assert max(s.cg_iterations) <= 20 and len(s.w) == pb.n_params
    path = paper.reconstruction_path(runs[20], pb, paper.AsCodedVarPro(pb))
    assert path.shape == (len(runs[20].lm.points), 8, 8)
    k = next(i for i, w in enumerate(runs[20].lm.points) if torch.equal(w, runs[20].lm.w))  # the end point
    assert torch.allclose(paper.reconstruction_path(runs[20], pb, paper.AsCodedVarPro(pb), [k])[0],
                          runs[20].reconstruction)
    partial = paper.partial_differentiation(pb, w0, [1.0], cg_iters=20, gn_iters=3)
    assert partial[1.0].method == "last_restarted"


def test_projection_costs(pb, w0):
    costs = paper.projection_costs({"diff_all": paper.AsCodedVarPro(pb, cg_iters=20),
                                    "no_diff": paper.AsCodedVarPro(pb, method="no_diff", cg_iters=20)},
                                   w0, n_runs=2, warmup=0)
    for c in costs.values():
        assert c.residual_ms > 0 and c.jacobian_ms > 0 and c.cg_iterations <= 20
        assert c.to_json()["factor"] == pytest.approx(c.jacobian_ms / c.residual_ms)


def test_percent_label():
    assert [paper.percent_label(p) for p in (0.0, 0.7, 0.95, 1.0)] == ["0%", "70%", "95%", "100%"]


def test_memory_growth():
    assert paper.memory_growth([100.0, 110.0, 110.0, 121.0]) == pytest.approx(0.1)
    assert paper.memory_growth([100.0, 110.0, 90.0]) == pytest.approx(90 / 110 - 1)
    assert paper.memory_growth([100.0, 200.0]) == 0.0

