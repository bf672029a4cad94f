import pytest
import torch

import imreg_lib as il
from imreg_lib.device import resolve_dtype


def test_paper_grid_conventions():
    g = il.Grid(il.PAPER_OMEGA, 4)
    assert g.h == (5.0, 6.25) and g.cell_volume == pytest.approx(31.25) and g.dim == 2
    xc = g.cell_centers()
    assert xc.shape == (16, 2) and xc.dtype == torch.float64
    torch.testing.assert_close(xc[0], torch.tensor([2.5, 3.125], dtype=torch.float64))
    torch.testing.assert_close(xc[1], torch.tensor([2.5, 9.375], dtype=torch.float64))  # first index slowest
    nodes = g.nodes()
    assert nodes.shape == (25, 2)
    torch.testing.assert_close(nodes[-1], torch.tensor([20.0, 25.0], dtype=torch.float64))


def test_3d_grid():
    g = il.Grid((0, 1, 0, 2, 0, 3), (2, 3, 4))
    assert g.dim == 3 and g.cell_centers().shape == (24, 3) and g.nodes().shape == (60, 3)


@pytest.mark.parametrize("omega, m, match", [
    ((0, 1, 0), 4, "omega"), ((0, 1, 1, 0), 4, "lo < hi"), ((0, 1, 0, 1), 0, "m must"),
    ((0, 1, 0, 1), (3,), "m must"), ((0, 1, 0, 1), 2.5, "m must"), ((0, float("inf"), 0, 1), 2, "finite"),
])
def test_grid_bad_input(omega, m, match):
    with pytest.raises(ValueError, match=match):
        il.Grid(omega, m)


def test_device_resolution():
    assert il.resolve_device("cpu") == torch.device("cpu")
    assert il.resolve_device("auto").type in ("cpu", "cuda")
    assert il.resolve_device(None).type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        il.resolve_device("gpu")
    with pytest.raises(ValueError, match="device"):
        il.resolve_device(3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        il.resolve_device("cuda")


def test_dtype():
    assert resolve_dtype() is torch.float64 and resolve_dtype("float32") is torch.float32
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype(torch.int64)
