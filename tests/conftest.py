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


@pytest.fixture
def run_notebook(tmp_path):
    """``run_notebook(path, **params)``: execute a notebook under papermill in ``tmp_path`` with ``params`` and a
    ``results_path`` there; returns its results JSON."""
    import json

    def run(notebook, **params):
        pm = pytest.importorskip("papermill")
        out = tmp_path / "results.json"
        pm.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"),
                            parameters={**params, "results_path": str(out)}, cwd=str(notebook.parent),
                            progress_bar=False, kernel_name="python3")
        return json.loads(out.read_text())

    return run


@pytest.fixture
def hand_pngs(tmp_path):
    """``hand_pngs(size)``: the synthetic hand pair written as greyscale PNGs ``r.png`` and ``t.png`` (upright,
    0-255) in ``tmp_path``, as a user would supply them; returns their paths as strings."""
    import os

    import numpy as np
    from PIL import Image

    def write(size):
        pair = il.synthetic_hand_pair(size, device="cpu")
        paths = []
        for name, img in (("r.png", pair.reference), ("t.png", pair.template)):
            Image.fromarray(np.clip(img.numpy().T[::-1], 0, 255).astype(np.uint8)).save(tmp_path / name)
            paths.append(os.fspath(tmp_path / name))
        return tuple(paths)

    return write
