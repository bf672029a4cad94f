"""The default data reproduce the paper's phenomenon (Fig. 2): at m = 32, single-scale Newton from the
identity at θ = 1e-3 stalls in a poor local minimum; the predictor-corrector reaches the truth."""
import pytest
import torch

import imreg_lib as il


@pytest.fixture(scope="module")
def runs(objective32):
    thetas = torch.logspace(3, -3, 30, dtype=torch.float64).tolist()
    return (il.single_scale(objective32, 1e-3, gtol=1e-7),
            il.predictor_corrector(objective32, thetas, gtol=1e-4))


def test_single_scale_stalls_and_predictor_corrector_succeeds(runs, objective32, hand32):
    single, pc = runs
    J0 = float(objective32.loss(objective32.identity(), 1e-3))
    assert pc.final_loss < 0.3 * J0 and pc.final_loss < 0.5 * single.final_loss
    assert single.final_loss > 0.1 * J0  # stalled far from the truth
    assert float((pc.w - hand32.w_true).abs()[:4].max()) < 0.02
    assert float((pc.w - hand32.w_true).abs()[4:].max()) < 0.2
    assert float((single.w - hand32.w_true).abs().max()) > 1.0
    assert len(pc.history) == 30 and pc.history[-1].theta == pytest.approx(1e-3)
    g0 = float(objective32.at_scale(1e-3).derivatives(objective32.identity(), "none")[1].norm())
    assert pc.history[-1].final_grad_norm < 1e-6 * g0
    assert all(r.n_hessians >= 1 and r.seconds >= 0 for r in pc.history)


@pytest.mark.parametrize("thetas, match", [([1.0], "at least 2"), ([1.0, 2.0], "decreasing"),
                                           ([1.0, 0.0], "> 0"), ([1.0, -1.0], "> 0")])
def test_bad_schedule(objective32, thetas, match):
    with pytest.raises(ValueError, match=match):
        il.predictor_corrector(objective32, thetas)


def test_bad_start(objective32):
    with pytest.raises(ValueError, match="w must"):
        il.single_scale(objective32, 1e-3, torch.zeros(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="gtol"):
        il.newton_trust_exact(objective32.at_scale(1.0).derivatives, objective32.identity(), gtol=0.0)
