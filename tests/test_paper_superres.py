"""The paper layer's super-resolution experiments (imreg_lib.paper.superres_runs): the VarPro variants built for
the test of each Jacobian against its own residual and for the cost table (the page's settings:
test_settings.py). The library's problem and operators are tested in test_superres.py."""
import pytest
import torch

from imreg_lib import paper


def test_own_residual_and_cost_methods(small_problem):
    problem = small_problem
    assert list(paper.own_residual_varpros(problem, [0.5, 1.0])) == ["Diff All", "No Diff",
                                                                    "Implicit (exact projection)"]
    assert "last 90% restarted" in paper.own_residual_varpros(problem, [0.7, 0.9, 1.0])  # the upper median
    single = paper.cost_varpros(problem, fractions=[1.0], cg_counts=[1, 10, 100])
    assert list(single) == ["diff_all", "no_diff", "implicit", "inexact"]
    assert [paper.cost_label(k, vp) for k, vp in single.items()] == [
        "Diff All (N = 500)", "No Diff (N = 500)", "Implicit", "inexact, 10 CG iterations"]
    w = problem.identity() + 0.01 * torch.ones(problem.n_params, dtype=torch.float64)
    assert paper.parameter_error(problem, w) == pytest.approx(float((w - problem.w_true).abs().max()))
