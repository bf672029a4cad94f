import math

import pytest
import torch
from torch.func import jacfwd

import imreg_lib as il


@pytest.mark.parametrize("dim", [2, 3])
def test_affine_identity_and_jacobian(dim, rng):
    tr = il.Affine(dim)
    assert tr.n_params == dim * dim + dim
    x = torch.randn(5, dim, generator=rng, dtype=torch.float64)
    torch.testing.assert_close(tr(tr.identity(), x), x)
    w = torch.randn(tr.n_params, generator=rng, dtype=torch.float64)
    Q = tr.jacobian(w, x)
    torch.testing.assert_close(Q, jacfwd(tr, argnums=0)(w, x))


def test_affine_parameter_order():
    w = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], dtype=torch.float64)  # [A11, A12, A21, A22, b1, b2]
    y = il.affine(w, torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(y, torch.tensor([[6.0, 9.0]], dtype=torch.float64))


def test_affine_from_geometry():
    w = il.affine_from_geometry(90.0, 1.0, (0, 0), center=(10.0, 12.5))
    y = il.affine(w, torch.tensor([[11.0, 12.5]], dtype=torch.float64))
    torch.testing.assert_close(y, torch.tensor([[10.0, 13.5]], dtype=torch.float64))
    w = il.affine_from_geometry(0.0, (2.0, 0.5), (1.0, -1.0))
    torch.testing.assert_close(w, torch.tensor([2.0, 0, 0, 0.5, 1.0, -1.0], dtype=torch.float64))
    assert math.isclose(float(torch.linalg.det(w[:4].reshape(2, 2))), 1.0)


def test_affine_bad_input():
    with pytest.raises(ValueError, match="dim"):
        il.Affine(4)
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        il.Affine(2).check(torch.zeros(5, dtype=torch.float64))
