import math

import pytest
import torch

import imreg_lib as il


def test_orders_of_a_known_function():
    x = torch.tensor([0.3, -0.2], dtype=torch.float64)
    v = torch.tensor([1.0, 2.0], dtype=torch.float64)
    f = lambda z: torch.sin(z).sum()  # noqa: E731
    res = il.taylor_test(f, x, v, (torch.cos(x) * v).sum(), (-torch.sin(x) * v * v).sum())
    assert res.order(0) == pytest.approx(1.0, abs=0.05)
    assert res.order(1) == pytest.approx(2.0, abs=0.05)
    assert res.order(2) == pytest.approx(3.0, abs=0.1)
    bad = il.taylor_test(f, x, v, 2.0 * (torch.cos(x) * v).sum())
    assert bad.order(1) == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError, match="shape"):
        il.taylor_test(f, x, v[:1], v[:1])


def test_fitted_order_uses_the_asymptotic_steps_above_round_off():
    """The fit ignores the round-off plateau and the pre-asymptotic largest steps; a wrong derivative stays first
    order; neighbour ratios (``order``) would be thrown by one noisy step."""
    h = tuple(10.0 ** -k for k in range(0, 9))
    # E_1 = h^2 until a round-off plateau of 1e-13, with a bump at h = 1 (pre-asymptotic)
    e1 = tuple(max(5.0 if s == 1.0 else s * s, 1e-13) for s in h)
    t = il.TaylorResult(h, (tuple(h), e1), ((), ()), noise=1e-12)
    assert t.fitted_order(1) == pytest.approx(2.0, abs=1e-12)
    wrong = il.TaylorResult(h, (tuple(h), tuple(max(0.1 * s, 1e-13) for s in h)), ((), ()), noise=1e-12)
    assert wrong.fitted_order(1) == pytest.approx(1.0, abs=1e-12)
    # without a known floor, 1e-11 of E_0 at the largest step; fewer than two usable steps: NaN
    assert il.TaylorResult(h, (tuple(h), e1), ((), ())).fitted_order(1) == pytest.approx(2.0, abs=1e-12)
    assert math.isnan(il.TaylorResult(h, (tuple(h), (1e-20,) * len(h)), ((), ()), noise=1e-12).fitted_order(1))


def test_taylor_test_records_its_round_off_floor():
    f = lambda x: (x ** 3).sum() + 1e6  # noqa: E731
    x = torch.tensor([0.5, 1.5], dtype=torch.float64)
    v = torch.tensor([1.0, -1.0], dtype=torch.float64)
    res = il.taylor_test(f, x, v, (3 * x ** 2 * v).sum(), h=tuple(10.0 ** -k for k in range(0, 10)))
    assert res.noise == pytest.approx(10 * 2.0 ** -52 * float(f(x)))
    assert res.fitted_order(1) == pytest.approx(2.0, abs=0.05)  # the plateau below 2e-9 is left out
