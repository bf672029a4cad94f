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
