import pytest
import torch

import imreg_lib as il


@pytest.fixture(scope="session")
def hand32():
    return il.synthetic_hand_pair(32, device="cpu")


@pytest.fixture(scope="session")
def objective32(hand32):
    g = hand32.grid
    return il.SSDObjective(il.SplineImage(hand32.template, g), il.SplineImage(hand32.reference, g))


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(1234)
