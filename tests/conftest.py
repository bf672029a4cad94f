import os

import pytest
import torch

import imreg_lib as il

#: Per-cell time limit of the notebook tests (seconds), as ``make``'s ``CELL_TIMEOUT``.
CELL_TIMEOUT = float(os.environ.get("CELL_TIMEOUT", "900"))


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
    ``results_path`` there, under the pipeline's numeric settings and per-cell time limit; returns its results
    JSON."""
    import json

    from tools import pipeline

    def run(notebook, **params):
        out = tmp_path / "results.json"
        pipeline.execute_notebook(notebook, tmp_path / "out.ipynb", params={**params, "results_path": str(out)},
                                  cell_timeout=CELL_TIMEOUT)
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
