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


#: Fixtures that start a Jupyter kernel (papermill) or a Dask cluster: tests that use them are ``slow``.
_SLOW_FIXTURES = {"run_notebook", "tiny_notebook"}
#: Tests that start a Python interpreter (or pip) in a subprocess to import the library afresh.
_SLOW_TESTS = {"test_importing_the_library_does_not_load_the_paper_layer",
               "test_the_import_check_sees_torch_behind_the_library",
               "test_the_library_imports_and_measures_memory_without_the_posix_resource_module",
               "test_the_install_line_of_the_book_resolves_the_distribution_name",
               "test_a_misspelt_papermill_parameter_stops_the_run", "test_a_sweep_survives_a_lost_worker"}


def pytest_collection_modifyitems(config, items):
    """Mark as ``slow`` every test that starts a kernel, a Dask cluster, a browser or a fresh interpreter (``make
    unit`` leaves them out; ``make test`` runs them)."""
    for item in items:
        if _SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.originalname in _SLOW_TESTS \
                or "browser" in item.name or "chromium" in item.name:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def real_image_pngs(tmp_path_factory):
    """Real images that ship offline with matplotlib (pinned): its 256 × 256 MRI slice (``s1045.ima.gz``, raw
    little-endian 16-bit) and its photograph of Grace Hopper (in grey), written as 8-bit PNGs as a user would supply
    them; ``{"mri": path, "grace_hopper": path}``."""
    import numpy as np
    from matplotlib import cbook
    from PIL import Image

    out = tmp_path_factory.mktemp("real_images")
    with cbook.get_sample_data("s1045.ima.gz") as f:
        mri = np.frombuffer(f.read(), dtype="<u2").reshape(256, 256).astype(np.float64)
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        grace = np.asarray(Image.open(f).convert("L"))
    paths = {}
    for name, img in (("mri", (255 * mri / mri.max()).astype(np.uint8)), ("grace_hopper", grace)):
        Image.fromarray(img).save(out / f"{name}.png")
        paths[name] = os.fspath(out / f"{name}.png")
    return paths
