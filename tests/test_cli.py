"""``python -m imreg_lib register``: on files it writes itself (a real MRI slice as PNG, non-square; a 3D volume as
MHA with spacing, origin and direction), the exported transform registers the files *as SimpleITK reads them*."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from imreg_lib import cli, interop
from imreg_lib.data import sample_image

sitk = pytest.importorskip("SimpleITK")
Image = pytest.importorskip("PIL.Image")


def _moved(fixed, matrix, translation, center):
    """The template T with T(y(x)) = R(x) for the ITK map y: R resampled through y's inverse."""
    tr = sitk.AffineTransform(fixed.GetDimension())
    tr.SetCenter(center)
    tr.SetMatrix(matrix)
    tr.SetTranslation(translation)
    return sitk.Resample(fixed, fixed, tr.GetInverse(), sitk.sitkBSpline, 0.0), tr


def _mse_through(tfm, reference, template, margin):
    R = sitk.ReadImage(str(reference), sitk.sitkFloat64)
    T = sitk.ReadImage(str(template), sitk.sitkFloat64)
    W = sitk.Resample(T, R, sitk.ReadTransform(str(tfm)), sitk.sitkLinear, 0.0)
    r, t, w = (sitk.GetArrayFromImage(x) for x in (R, T, W))
    inner = tuple(slice(margin, -margin) for _ in r.shape)
    return float(np.mean((t - r)[inner] ** 2)), float(np.mean((w - r)[inner] ** 2))


@pytest.fixture(scope="module")
def png_pair(tmp_path_factory):
    """matplotlib's MRI slice, 96 wide and 80 high (not square), and its copy turned 20° and shifted, as PNGs."""
    folder = tmp_path_factory.mktemp("png")
    X = sample_image("mri").numpy()
    Image.fromarray(np.ascontiguousarray(X[:, ::-1].T).astype(np.uint8)).resize((96, 80)).save(folder / "R.png")
    R = sitk.ReadImage(str(folder / "R.png"), sitk.sitkFloat64)
    a = math.radians(20.0)
    T, _ = _moved(R, (math.cos(a), -math.sin(a), math.sin(a), math.cos(a)), (3.0, -2.0), (47.5, 39.5))
    Image.fromarray(np.clip(np.rint(sitk.GetArrayFromImage(T)), 0, 255).astype(np.uint8)).save(folder / "T.png")
    return folder


def test_the_transform_registers_the_png_files_in_simpleitk(png_pair, capsys):
    out, warped = png_pair / "out.tfm", png_pair / "W.png"
    assert cli.main(["register", str(png_pair / "R.png"), str(png_pair / "T.png"), "--out", str(out), "--warped",
                     str(warped)]) == 0
    captured = capsys.readouterr()
    assert "J / J(identity)" in captured.out and "wrote" in captured.out
    assert "θ =" in captured.err  # progress per scale
    before, after = _mse_through(out, png_pair / "R.png", png_pair / "T.png", 12)
    assert interop.file_mse(out, png_pair / "R.png", png_pair / "T.png", 12) == pytest.approx((before, after))
    assert after < 0.03 * before
    # the aspect ratio is kept: the found map is the rotation by 20° (no shear) and the shift, in pixels
    tr = sitk.AffineTransform(sitk.ReadTransform(str(out)))
    A = np.asarray(tr.GetMatrix()).reshape(2, 2)
    a = math.radians(20.0)
    assert np.allclose(A, [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], atol=0.02)
    assert np.allclose(np.asarray(tr.GetTranslation()) + np.asarray(tr.GetCenter()) - A @ np.asarray(tr.GetCenter()),
                       np.asarray((3.0, -2.0)) + np.asarray((47.5, 39.5)) - A @ np.asarray((47.5, 39.5)), atol=0.5)
    # the warped template is the reference's size and close to it; nothing half-written is left behind
    W = np.asarray(Image.open(warped), dtype=np.float64)
    R = np.asarray(Image.open(png_pair / "R.png"), dtype=np.float64)
    assert W.shape == R.shape and np.mean((W - R)[12:-12, 12:-12] ** 2) < 0.03 * before
    assert not [p for p in os.listdir(png_pair) if p.startswith(".")]


def test_the_transform_registers_3d_files_with_their_geometry(tmp_path):
    # a volume with anisotropic spacing, an offset origin and a flipped direction, as an MHA file
    from imreg_lib.data import volume_phantom

    n = (20, 22, 18)
    grid_points = torch.stack(torch.meshgrid(*[torch.linspace(0, 1, k, dtype=torch.float64) for k in n],
                                             indexing="ij"), -1).reshape(-1, 3) * torch.tensor([20.0, 25.0, 15.0])
    X = volume_phantom(grid_points).reshape(n).numpy()
    R = sitk.GetImageFromArray(X.transpose(2, 1, 0))
    R.SetSpacing((1.5, 1.2, 2.0))
    R.SetOrigin((-10.0, 4.0, 7.5))
    R.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    center = R.TransformContinuousIndexToPhysicalPoint([(k - 1) / 2 for k in n])
    a = math.radians(25.0)
    T, _ = _moved(R, (math.cos(a), -math.sin(a), 0.0, math.sin(a), math.cos(a), 0.0, 0.0, 0.0, 1.0),
                  (1.0, -1.5, 0.5), center)
    sitk.WriteImage(R, str(tmp_path / "R.mha"))
    sitk.WriteImage(T, str(tmp_path / "T.mha"))
    out = tmp_path / "out.tfm"
    assert cli.main(["register", str(tmp_path / "R.mha"), str(tmp_path / "T.mha"), "--out", str(out),
                     "--m", "20", "--quiet", "--warped", str(tmp_path / "W.nii.gz")]) == 0
    before, after = _mse_through(out, tmp_path / "R.mha", tmp_path / "T.mha", 3)
    assert interop.file_mse(out, tmp_path / "R.mha", tmp_path / "T.mha", 3) == pytest.approx((before, after))
    assert after < 0.1 * before
    W = sitk.ReadImage(str(tmp_path / "W.nii.gz"))
    assert W.GetSize() == R.GetSize() and np.allclose(W.GetSpacing(), R.GetSpacing())


@pytest.mark.parametrize("args, message", [
    (["missing.png", "T.png"], "REFERENCE: file not found: 'missing.png'"),
    (["R.png", "notimage.png"], "TEMPLATE: could not read"),
    (["R.png", "T.png", "--m", "2"], "--m must be"),
    (["R.png", "T.png", "--theta-min", "-1"], "theta_min"),
    (["R.png", "T.png", "--gtol", "0"], "--gtol"),
    (["R.png", "T.png", "--out", "nowhere/out.tfm"], "--out: the folder 'nowhere' does not exist"),
    (["R.png", "V.mha"], "same dimension"),
])
def test_bad_input_is_one_line_naming_what_is_wrong(png_pair, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(png_pair)
    (png_pair / "notimage.png").write_text("not an image")
    if not (png_pair / "V.mha").exists():
        sitk.WriteImage(sitk.Image([6, 6, 6], sitk.sitkFloat32), str(png_pair / "V.mha"))
    full = ["register"] + args[:2] + (["--out", str(tmp_path / "x.tfm")] if "--out" not in args else []) + args[2:]
    assert cli.main(full) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], err
    assert not (tmp_path / "x.tfm").exists()


def test_a_bad_method_is_refused_by_the_parser(png_pair, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["register", "R.png", "T.png", "--out", "x.tfm", "--method", "newton"])
    assert stop.value.code == 2 and "invalid choice: 'newton'" in capsys.readouterr().err


@pytest.mark.slow  # a fresh interpreter
def test_python_dash_m_runs_the_command_line(png_pair, tmp_path):
    out = tmp_path / "out.tfm"
    done = subprocess.run([sys.executable, "-m", "imreg_lib", "register", str(png_pair / "R.png"),
                           str(png_pair / "T.png"), "--out", str(out), "--method", "traditional", "--n-scales",
                           "8"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("registered ")
    assert done.stderr.count("θ =") == 8
    before, after = _mse_through(out, png_pair / "R.png", png_pair / "T.png", 12)
    assert after < 0.03 * before
