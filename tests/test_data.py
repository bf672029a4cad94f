"""Synthetic hand pair and the image loader."""
import numpy as np
import pytest
import torch
from PIL import Image

import imreg_lib as il


def test_synthetic_pair_is_deterministic_and_on_the_paper_scale(hand32):
    again = il.synthetic_hand_pair(32, device="cpu")
    assert torch.equal(again.reference, hand32.reference) and torch.equal(again.template, hand32.template)
    for img in (hand32.reference, hand32.template):
        assert img.shape == (32, 32) and img.dtype == torch.float64
        assert 0.0 <= float(img.min()) and float(img.max()) <= 255.0
    # black background, bright bones, soft tissue in between
    R = hand32.reference
    assert float(R[0, -1]) < 1.0 and float(R.max()) > 150.0 and 20.0 < float(R.mean()) < 60.0
    assert hand32.w_true.shape == (6,)


def test_any_resolution_samples_the_same_picture():
    a = il.synthetic_hand_pair(16, device="cpu").reference
    b = il.synthetic_hand_pair(64, device="cpu").reference
    b_pooled = b.reshape(16, 4, 16, 4).mean(dim=(1, 3))
    assert float((a - b_pooled).abs().mean()) < 0.05 * float(a.mean())


def test_ground_truth_registers_the_pair(objective32, hand32):
    J_id = float(objective32.loss(objective32.identity(), 1e-3))
    J_true = float(objective32.loss(hand32.w_true, 1e-3))
    assert J_true < 0.02 * J_id  # what is left is the exposure change and sampling
    A = hand32.w_true[:4].reshape(2, 2)
    angle = float(torch.rad2deg(torch.atan2(A[1, 0], A[0, 0])))
    assert 150.0 < abs(angle) <= 180.0  # a rotation near 180 degrees, as in the paper


def test_synthetic_bad_input():
    with pytest.raises(ValueError, match="m"):
        il.synthetic_hand_pair(2, device="cpu")
    with pytest.raises(ValueError, match="supersample"):
        il.synthetic_hand_pair(8, supersample=0, device="cpu")
    with pytest.raises(ValueError, match="motion"):
        il.synthetic_hand_pair(8, motion={"angle": 3}, device="cpu")


def _write(path, array, mode="L"):
    Image.fromarray(array.astype(np.uint8), mode=None).convert(mode).save(path)


def test_load_image_is_upright_in_paper_convention(tmp_path):
    A = np.zeros((6, 4), dtype=np.uint8)  # 6 rows (y), 4 columns (x)
    A[0, 0] = 200  # top-left pixel
    A[5, 3] = 100  # bottom-right pixel
    _write(tmp_path / "a.png", A)
    X = il.load_image(tmp_path / "a.png", device="cpu")
    assert X.shape == (4, 6) and X.dtype == torch.float64
    assert float(X[0, 5]) == 200.0  # top-left: smallest x, largest y
    assert float(X[3, 0]) == 100.0  # bottom-right: largest x, smallest y
    torch.testing.assert_close(X, torch.as_tensor(A[::-1, :].T.copy(), dtype=torch.float64))


def test_load_image_resize_is_bicubic(tmp_path):
    A = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)
    _write(tmp_path / "b.png", A)
    X = il.load_image(tmp_path / "b.png", 20, device="cpu")
    expected = np.asarray(Image.fromarray(A).resize((20, 20), Image.Resampling.BICUBIC), dtype=np.float64)
    torch.testing.assert_close(X, torch.as_tensor(expected[::-1, :].T.copy()))
    rgb_grey = np.stack([A, A, A], axis=-1)
    Image.fromarray(rgb_grey, "RGB").save(tmp_path / "grey_rgb.png")
    assert il.load_image(tmp_path / "grey_rgb.png", device="cpu").shape == (64, 64)


def test_load_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found") as err:
        il.load_image(tmp_path / "missing.png")
    assert "working directory" not in str(err.value)  # an absolute path: the message names it, nothing more
    # a relative path: the message says which file was tried and from which directory
    with pytest.raises(FileNotFoundError, match="tried .*my_reference.png.*working directory.*'../my_reference.png'"):
        il.load_image("my_reference.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="could not read"):
        il.load_image(tmp_path / "junk.png")
    colour = np.zeros((8, 8, 3), dtype=np.uint8)
    colour[..., 0] = 255
    Image.fromarray(colour, "RGB").save(tmp_path / "red.png")
    with pytest.raises(ValueError, match="colour"):
        il.load_image(tmp_path / "red.png")
    _write(tmp_path / "ok.png", np.zeros((8, 8)))
    for bad in (0, -3, 2.5, (8,), "32", True):
        with pytest.raises(ValueError, match="m must"):
            il.load_image(tmp_path / "ok.png", bad)


def test_load_pair(tmp_path):
    _write(tmp_path / "r.png", np.zeros((8, 8)))
    _write(tmp_path / "t.png", np.ones((10, 10)))
    with pytest.raises(ValueError, match="different sizes"):
        il.load_pair(tmp_path / "r.png", tmp_path / "t.png")
    pair = il.load_pair(tmp_path / "r.png", tmp_path / "t.png", 8, device="cpu")
    # a square file keeps its aspect ratio: a square domain 20 wide (the paper's 20 x 25 only when asked)
    assert pair.grid.m == (8, 8) and pair.w_true is None and pair.grid.omega == (0.0, 20.0, 0.0, 20.0)
    assert [f.size for f in pair.files] == [(8, 8), (10, 10)]
    paper = il.load_pair(tmp_path / "r.png", tmp_path / "t.png", 8, domain="paper", device="cpu")
    assert paper.grid.omega == il.PAPER_OMEGA
    _write(tmp_path / "wide.png", np.zeros((10, 30)))  # 30 wide, 10 high
    wide = il.load_pair(tmp_path / "wide.png", tmp_path / "wide.png", (12, 4), device="cpu")
    assert wide.grid.omega == pytest.approx((0.0, 20.0, 0.0, 20.0 / 3))
    with pytest.raises(ValueError, match="domain"):
        il.load_pair(tmp_path / "r.png", tmp_path / "t.png", 8, domain="square")
    with pytest.raises(ValueError, match="domain"):
        il.image_pair(8, tmp_path / "r.png", tmp_path / "t.png", domain="square")


def test_template_orientations_turn_the_loaded_file(tmp_path):
    A = np.arange(24, dtype=np.uint8).reshape(6, 4) * 10
    _write(tmp_path / "a.png", A)
    up = il.load_image(tmp_path / "a.png", device="cpu")
    torch.testing.assert_close(il.load_image(tmp_path / "a.png", orientation="rotate_180", device="cpu"),
                               torch.flip(up, dims=(0, 1)))
    torch.testing.assert_close(il.load_image(tmp_path / "a.png", orientation="mirror_x", device="cpu"),
                               torch.flip(up, dims=(0,)))
    with pytest.raises(ValueError, match="orientation must be one of"):
        il.load_image(tmp_path / "a.png", orientation="upside")
    _write(tmp_path / "b.png", A)
    pair = il.load_pair(tmp_path / "a.png", tmp_path / "b.png", template_orientation="rotate_180", device="cpu")
    torch.testing.assert_close(pair.template, torch.flip(pair.reference, dims=(0, 1)))
    assert pair.source == "a.png / b.png (rotate 180)"


def test_image_pair_is_the_synthetic_hand_or_the_two_files(tmp_path):
    synthetic = il.image_pair(8, device="cpu")
    assert synthetic.source == "synthetic hand" and synthetic.w_true is not None
    with pytest.raises(ValueError, match="set both reference_path and template_path, or neither"):
        il.image_pair(8, tmp_path / "r.png")
    with pytest.raises(ValueError, match="the synthetic hand .* takes only 'upright'"):
        il.image_pair(8, template_orientation="rotate_180")
    with pytest.raises(ValueError, match="template_orientation must be one of"):
        il.image_pair(8, tmp_path / "r.png", tmp_path / "t.png", template_orientation="flip")  # before reading
    _write(tmp_path / "r.png", np.zeros((8, 8)))
    _write(tmp_path / "t.png", np.ones((8, 8)))
    files = il.image_pair(8, tmp_path / "r.png", tmp_path / "t.png", template_orientation="mirror_x", device="cpu")
    assert files.w_true is None and files.source == "r.png / t.png (mirror x)"


def test_volume_pair_has_its_known_motion():
    pair = il.data.synthetic_volume_motion_pair(12)
    assert pair.grid.dim == 3 and pair.w_true.shape == (12,)
    objective = il.SSDObjective(il.SplineImage(pair.template, pair.grid), il.SplineImage(pair.reference, pair.grid),
                                il.Affine(3))
    J_true, J_id = float(objective.loss(pair.w_true, 1e-3)), float(objective.loss(objective.identity(), 1e-3))
    assert J_true < 0.02 * J_id  # T(y*(x)) is R(x) up to sampling
    wrong = pair.w_true.clone()
    wrong[9] += 1.0
    assert float(objective.loss(wrong, 1e-3)) > 3 * J_true
    with pytest.raises(ValueError, match="motion has unknown keys"):
        il.data.synthetic_volume_motion_pair(8, motion={"angle": 3})
