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
    T = sitk.Resample(T, R, sitk.Transform(), sitk.sitkLinear, 0.0)  # T on R's pixels as it lies, without the map
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
    (["R.png", "T.png", "--theta-min", "-1"], "--theta-min must be a positive"),
    (["R.png", "T.png", "--theta-min", "100"], "--theta-min must be below 10 with --method global"),
    (["R.png", "T.png", "--n-scales", "1"], "--n-scales must be"),
    (["R.png", "T.png", "--theta-max", "1e-4"], "--theta-max must be larger than --theta-min"),
    (["R.png", "T.png", "--gtol", "0"], "--gtol"),
    (["R.png", "T.png", "--out", "nowhere/out.tfm"], "--out: the folder 'nowhere' does not exist"),
    (["R.png", "V.mha"], "same dimension"),
    ([".", "T.png"], "REFERENCE: '.' is a folder"),
    (["R.png", "nan.mha"], "TEMPLATE: 'nan.mha' holds values that are not finite"),
    (["R.png", "T.png", "--out", "x.h5"], "--out must end in .tfm or .txt"),
    (["R.png", "T.png", "--out", "folder.tfm"], "--out: 'folder.tfm' is a folder"),
    (["R.png", "T.png", "--warped", "nowhere/w.png"], "--warped: the folder 'nowhere' does not exist"),
    (["R.png", "T.png", "--warped", "w.xyz"], "--warped: SimpleITK cannot write a 2D uint8 image as 'w.xyz'"),
    (["V.mha", "V.mha", "--warped", "w.png"], "--warped: .png holds 2D images, but TEMPLATE is 3D"),
    (["R.png", "F.mha", "--warped", "w.png"], "--warped: .png holds uint8 or uint16 pixels, but TEMPLATE's are "
                                              "float32"),
    (["R.png", "T.png", "--device", "nonsense"], "--device: device must be one of"),
])
def test_bad_input_is_one_line_naming_what_is_wrong(png_pair, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(png_pair)
    (png_pair / "notimage.png").write_text("not an image")
    (png_pair / "folder.tfm").mkdir(exist_ok=True)
    if not (png_pair / "V.mha").exists():
        sitk.WriteImage(sitk.Image([6, 6, 6], sitk.sitkFloat32), str(png_pair / "V.mha"))
        sitk.WriteImage(sitk.Image([8, 8], sitk.sitkFloat32) + 1.0, str(png_pair / "F.mha"))
        nan = np.ones((8, 8), dtype=np.float32)
        nan[3, 4] = np.nan
        sitk.WriteImage(sitk.GetImageFromArray(nan), str(png_pair / "nan.mha"))

    def no_work(*args, **kwargs):
        raise AssertionError("bad input must be refused before the registration starts")

    monkeypatch.setattr(cli, "register_files", no_work)
    full = ["register"] + args[:2] + (["--out", str(tmp_path / "x.tfm")] if "--out" not in args else []) + args[2:]
    assert cli.main(full) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "x.tfm").exists()
    assert not [p for p in os.listdir(png_pair) if p.startswith(".")]  # no temporary file left behind


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_names_the_option(png_pair, tmp_path, capsys):
    assert cli.main(["register", str(png_pair / "R.png"), str(png_pair / "T.png"), "--out", str(tmp_path / "x.tfm"),
                     "--device", "cuda"]) == 2
    assert "error: --device cuda: CUDA is not available" in capsys.readouterr().err


def test_an_interrupted_run_writes_nothing(png_pair, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "register_files", interrupted)
    out, warped = tmp_path / "x.tfm", tmp_path / "w.png"
    assert cli.main(["register", str(png_pair / "R.png"), str(png_pair / "T.png"), "--out", str(out), "--warped",
                     str(warped)]) == 130
    assert capsys.readouterr().err.strip() == "interrupted: nothing was written"
    assert os.listdir(tmp_path) == []


def _png_with_header(image, path):
    """Write ``image`` as an 8-bit PNG with SimpleITK, which stores its spacing (``sCAL``)."""
    sitk.WriteImage(sitk.Cast(sitk.Clamp(image, sitk.sitkFloat64, 0, 255), sitk.sitkUInt8), str(path))


@pytest.mark.parametrize("case", ["png spacing", "jpeg resolution", "template resized", "reflected direction",
                                  "16-bit"])
def test_the_transform_registers_files_as_itk_reads_them(png_pair, tmp_path, case):
    """Pairs whose geometry differs from the plain PNG pair: anisotropic pixels stored in the PNGs (sCAL), a JPEG's
    72 dpi (a spacing of 0.353 mm), a template with fewer pixels than the reference (physically smaller), a
    reference whose direction is a reflection of the template's, and 16-bit PNGs; each is registered through the
    command line and checked by SimpleITK on the files."""
    R0 = sitk.ReadImage(str(png_pair / "R.png"), sitk.sitkFloat64)
    a = math.radians(20.0)
    turn = (math.cos(a), -math.sin(a), math.sin(a), math.cos(a))
    ext = ".png"
    if case == "png spacing":
        R0.SetSpacing((1.6, 1.28))
        T0, _ = _moved(R0, turn, (3.0, -2.0), (47.5 * 1.6, 39.5 * 1.28))
        _png_with_header(R0, tmp_path / "R.png")
        _png_with_header(T0, tmp_path / "T.png")
    elif case == "jpeg resolution":
        ext = ".jpg"
        T0, _ = _moved(R0, turn, (3.0, -2.0), (47.5, 39.5))
        for name, image in (("R", R0), ("T", T0)):
            values = np.clip(np.rint(sitk.GetArrayFromImage(image)), 0, 255).astype(np.uint8)
            Image.fromarray(values).save(tmp_path / f"{name}.jpg", quality=95, dpi=(72, 72))
        assert sitk.ReadImage(str(tmp_path / "R.jpg")).GetSpacing() == pytest.approx((25.4 / 72, 25.4 / 72))
    elif case == "template resized":
        _png_with_header(R0, tmp_path / "R.png")
        Image.open(png_pair / "T.png").resize((60, 66), Image.BILINEAR).save(tmp_path / "T.png")
    elif case == "reflected direction":  # R's rows run up (direction diag(1, -1)), T's down, in one physical space
        ext = ".mha"
        R0.SetDirection((1.0, 0.0, 0.0, -1.0))
        R0.SetOrigin((0.0, 79.0))
        T0, _ = _moved(R0, turn, (3.0, -2.0), (47.5, 39.5))
        T1 = sitk.Resample(T0, sitk.Image(T0.GetSize(), sitk.sitkFloat64), sitk.Transform(), sitk.sitkLinear, 0.0)
        sitk.WriteImage(R0, str(tmp_path / "R.mha"))
        sitk.WriteImage(T1, str(tmp_path / "T.mha"))  # identity direction, origin 0: T resampled there
    else:
        T0, _ = _moved(R0, turn, (3.0, -2.0), (47.5, 39.5))
        for name, image in (("R", R0), ("T", T0)):
            values = np.clip(np.rint(250.0 * sitk.GetArrayFromImage(image)), 0, 65535).astype(np.uint16)
            Image.fromarray(values).save(tmp_path / f"{name}.png")
    ref, tmpl, out = tmp_path / f"R{ext}", tmp_path / f"T{ext}", tmp_path / "out.tfm"
    warped = tmp_path / ("W.png" if case == "16-bit" else "W.mha")
    assert cli.main(["register", str(ref), str(tmpl), "--out", str(out), "--quiet", "--warped", str(warped)]) == 0
    before, after = _mse_through(out, ref, tmpl, 12)
    assert after < 0.05 * before, (before, after)
    # the warped file is SimpleITK's resampling of the template file, in the template's pixel type
    W = sitk.ReadImage(str(warped))
    mine = sitk.GetArrayFromImage(W).astype(np.float64)
    theirs = sitk.GetArrayFromImage(sitk.Resample(sitk.ReadImage(str(tmpl), sitk.sitkFloat64),
                                                  sitk.ReadImage(str(ref)), sitk.ReadTransform(str(out)),
                                                  sitk.sitkBSpline, 0.0))
    inner = (slice(12, -12), slice(12, -12))
    assert np.mean(np.abs(mine - theirs)[inner]) < 0.02 * np.mean(np.abs(theirs[inner]))
    assert W.GetPixelID() == sitk.ReadImage(str(tmpl)).GetPixelID()


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


@pytest.mark.parametrize("mode", ["LA", "RGBA", "P", "1"])
def test_greyscale_pngs_in_other_modes_are_read_as_their_grey_values(png_pair, tmp_path, mode):
    grey = Image.open(png_pair / "R.png")
    if mode == "1":
        grey = grey.point(lambda v: 255 if v > 100 else 0)
    grey.convert(mode).save(tmp_path / "X.png")
    assert Image.open(tmp_path / "X.png").mode == mode
    read = cli.read_image_file(tmp_path / "X.png", "REFERENCE")
    assert torch.equal(read.values, torch.from_numpy(np.asarray(grey, dtype=np.float64).T))
    assert read.dtype == "uint8"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "C.png")
    with pytest.raises(ValueError, match="REFERENCE: .* is a colour image"):
        cli.read_image_file(tmp_path / "C.png", "REFERENCE")


@pytest.mark.parametrize("name", ["W.mhd", "W.hdr", "W.tif", "W" * 236 + ".nii.gz"])
def test_the_warped_image_is_written_whole_in_any_format_with_nothing_left_over(png_pair, tmp_path, name):
    # MetaImage (.mhd) and Analyze (.hdr) write a header and a data file: both arrive under their own names; a name
    # near the file system's limit works; no temporary file or folder is left behind
    out, warped = tmp_path / ("T" * 240 + ".tfm"), tmp_path / name
    assert cli.main(["register", str(png_pair / "R.png"), str(png_pair / "T.png"), "--out", str(out), "--warped",
                     str(warped), "--m", "16", "--quiet"]) == 0
    W = sitk.ReadImage(str(warped))
    assert W.GetSize() == (96, 80) and W.GetPixelID() == sitk.sitkUInt8
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
    if name == "W.mhd":
        assert "ElementDataFile = W.raw" in warped.read_text()
        assert sorted(os.listdir(tmp_path)) == sorted([out.name, "W.mhd", "W.raw"])


def test_an_interrupt_after_the_warped_image_says_what_was_written(png_pair, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "write_itk_transform", interrupted)
    out, warped = tmp_path / "x.tfm", tmp_path / "w.png"
    assert cli.main(["register", str(png_pair / "R.png"), str(png_pair / "T.png"), "--out", str(out), "--warped",
                     str(warped), "--m", "16", "--quiet"]) == 130
    assert capsys.readouterr().err.strip() == f"interrupted: wrote {warped} but no transform"
    assert os.listdir(tmp_path) == ["w.png"]


@pytest.mark.parametrize("method", ["global", "traditional"])
def test_the_result_does_not_depend_on_the_intensity_scale(png_pair, tmp_path, method):
    # the same pair as float files at 1e-9, 1 and 1e6 times its 8-bit values: one transform (Newton's iterates do
    # not depend on the scale; with an absolute test on |∇J| the 1e-9 copy stopped at the identity)
    params = {}
    for scale in (1.0, 1e-9, 1e6):
        files = []
        for name in ("R", "T"):
            image = sitk.ReadImage(str(png_pair / f"{name}.png"), sitk.sitkFloat64) * scale
            files.append(tmp_path / f"{name}{scale:g}.mha")
            sitk.WriteImage(image, str(files[-1]))
        out = tmp_path / f"{scale:g}.tfm"
        assert cli.main(["register", *map(str, files), "--out", str(out), "--method", method, "--quiet"]) == 0
        before, after = _mse_through(out, *files, 12)
        assert after < 0.03 * before
        params[scale] = np.asarray(sitk.AffineTransform(sitk.ReadTransform(str(out))).GetParameters())
    # round-off only: over scales 1e-9 to 1e9 the parameters spread by at most 1.5e-9 (traditional) and 8.4e-10
    # (global) from the 8-bit values' (measured on this pair); the absolute test's 1e-9 copy was off by 0.3
    for scale in (1e-9, 1e6):
        assert np.allclose(params[scale], params[1.0], rtol=0, atol=5e-9)


def _one_slice(png, path, z, direction, flip=False):
    """A PNG as a one-slice 3D NIfTI (a 2D image stored as 3D, as a DICOM slice is read) at slice position ``z``;
    ``flip`` stores the rows in reverse with the origin at the other end, so that the image lies where the unflipped
    one does under a direction whose second axis is reversed."""
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(png), sitk.sitkFloat32))[None]
    if flip:
        a = np.ascontiguousarray(a[:, ::-1])
    image = sitk.GetImageFromArray(a)
    image.SetSpacing((0.9, 0.9, 5.0))
    image.SetOrigin((-40.0, 30.0 + (0.9 * (a.shape[1] - 1) if flip else 0.0), z))
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize("case", ["same slice", "other slice position", "reversed axes"])
def test_one_slice_3d_files_are_registered_in_their_plane(png_pair, tmp_path, case):
    # a DICOM slice or a one-slice NIfTI is 3D to ITK: registered in the plane, written as a 3D transform and a
    # one-slice warped image (these were refused: "at least 4 pixels per dimension")
    eye = (1, 0, 0, 0, 1, 0, 0, 0, 1)
    z, direction, flip = {"same slice": (12.0, eye, False), "other slice position": (17.5, eye, False),
                          "reversed axes": (3.0, (1, 0, 0, 0, -1, 0, 0, 0, -1), True)}[case]
    ref = _one_slice(png_pair / "R.png", tmp_path / "R.nii.gz", 12.0, eye)
    tmpl = _one_slice(png_pair / "T.png", tmp_path / "T.nii.gz", z, direction, flip)
    out, warped = tmp_path / "out.tfm", tmp_path / "W.nii.gz"
    assert cli.main(["register", str(ref), str(tmpl), "--out", str(out), "--warped", str(warped), "--quiet"]) == 0
    R = sitk.ReadImage(str(ref), sitk.sitkFloat64)
    T = sitk.ReadImage(str(tmpl), sitk.sitkFloat64)
    r = sitk.GetArrayFromImage(R)[0, 12:-12, 12:-12]
    t = sitk.GetArrayFromImage(sitk.ReadImage(str(png_pair / "T.png"), sitk.sitkFloat64))[12:-12, 12:-12]
    before = float(np.mean((t - r) ** 2))
    transform = sitk.ReadTransform(str(out))
    assert transform.GetDimension() == 3
    w = sitk.GetArrayFromImage(sitk.Resample(T, R, transform, sitk.sitkLinear, 0.0))[0, 12:-12, 12:-12]
    assert np.mean((w - r) ** 2) < 0.03 * before
    W = sitk.ReadImage(str(warped), sitk.sitkFloat64)
    assert W.GetSize() == R.GetSize() and W.GetOrigin() == R.GetOrigin() and W.GetSpacing() == R.GetSpacing()
    assert np.mean((sitk.GetArrayFromImage(W)[0, 12:-12, 12:-12] - r) ** 2) < 0.03 * before


@pytest.mark.parametrize("case, message", [
    ("volume", "both are one slice thick along the same axis"),
    ("other plane", "slices lie in different planes"),
])
def test_one_slice_files_that_cannot_be_registered_in_a_plane_are_refused(png_pair, tmp_path, capsys, case, message):
    eye = (1, 0, 0, 0, 1, 0, 0, 0, 1)
    ref = _one_slice(png_pair / "R.png", tmp_path / "R.nii.gz", 12.0, eye)
    if case == "volume":
        tmpl = tmp_path / "T.nii.gz"
        sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).random((6, 80, 96))), str(tmpl))
    else:  # the template's slice is sagittal: its normal is the reference's first axis
        tmpl = _one_slice(png_pair / "T.png", tmp_path / "T.nii.gz", 12.0, (0, 0, 1, 0, 1, 0, -1, 0, 0))
    assert cli.main(["register", str(ref), str(tmpl), "--out", str(tmp_path / "o.tfm")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o.tfm").exists()


def test_a_large_volume_takes_the_smooth_scales_on_half_the_cells(tmp_path, monkeypatch):
    # 36³ cells (more than cli.COARSE_CELLS): the global driver gets an 18³ objective for its scales above
    # cli.THETA_FINE, and the map found registers the files
    from imreg_lib.data import volume_phantom

    n = (36, 36, 36)
    grid_points = torch.stack(torch.meshgrid(*[torch.linspace(0, 1, k, dtype=torch.float64) for k in n],
                                             indexing="ij"), -1).reshape(-1, 3) * torch.tensor([20.0, 25.0, 15.0])
    R = sitk.GetImageFromArray(volume_phantom(grid_points).reshape(n).numpy().transpose(2, 1, 0))
    R.SetSpacing((0.6, 0.7, 0.45))
    center = R.TransformContinuousIndexToPhysicalPoint([(k - 1) / 2 for k in n])
    a = math.radians(130.0)
    T, _ = _moved(R, (math.cos(a), -math.sin(a), 0.0, math.sin(a), math.cos(a), 0.0, 0.0, 0.0, 1.0),
                  (0.5, -0.8, 0.3), center)
    sitk.WriteImage(R, str(tmp_path / "R.mha"))
    sitk.WriteImage(T, str(tmp_path / "T.mha"))
    seen = {}
    driver = cli.global_register

    def spy(objective, **options):
        seen.update(options)
        return driver(objective, **options)

    monkeypatch.setattr(cli, "global_register", spy)
    out = tmp_path / "out.tfm"
    assert cli.main(["register", str(tmp_path / "R.mha"), str(tmp_path / "T.mha"), "--out", str(out), "--quiet"]) == 0
    assert seen["coarse_objective"].grid.m == (18, 18, 18) and seen["theta_fine"] == cli.THETA_FINE
    before, after = _mse_through(out, tmp_path / "R.mha", tmp_path / "T.mha", 4)
    assert after < 0.03 * before


def test_a_cropped_template_is_registered_on_the_references_own_cells(png_pair, tmp_path):
    # the template a 48 × 40 crop of the moved 96 × 80 image, at its place (origin): the SSD is summed over the
    # reference's cells (averaged to --m = 64 per dimension; the template interpolated onto as many), and the
    # residual is SimpleITK's within 4 % (measured 1.036; with both on the crop's 48 × 40 cells it was 1.26)
    from imreg_lib.paper.peers import SimpleITKSettings, _sitk_method

    R = sitk.ReadImage(str(png_pair / "R.png"), sitk.sitkFloat64)
    T = sitk.ReadImage(str(png_pair / "T.png"), sitk.sitkFloat64)[20:68, 20:60]
    sitk.WriteImage(R, str(tmp_path / "R.mha"))
    sitk.WriteImage(T, str(tmp_path / "T.mha"))
    reference, template = cli.read_image_file(tmp_path / "R.mha"), cli.read_image_file(tmp_path / "T.mha")
    assert cli.register_files(reference, template).objective.grid.m == (64, 64)  # --m, not the crop's 48 × 40
    out = tmp_path / "out.tfm"
    assert cli.main(["register", str(tmp_path / "R.mha"), str(tmp_path / "T.mha"), "--out", str(out), "--quiet"]) == 0

    def residual(transform):
        W = sitk.Resample(T, R, transform, sitk.sitkLinear, 0.0)
        inside = sitk.GetArrayFromImage(sitk.Resample(T * 0 + 1, R, transform, sitk.sitkNearestNeighbor, 0.0)) > 0
        return float(np.mean((sitk.GetArrayFromImage(W) - sitk.GetArrayFromImage(R))[inside] ** 2))

    settings = SimpleITKSettings()
    reg = _sitk_method(settings, settings.shrink_factors, settings.smoothing_sigmas)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=settings.learning_rate, minStep=settings.min_step,
                                                 numberOfIterations=settings.iterations,
                                                 gradientMagnitudeTolerance=settings.gradient_tolerance)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetInitialTransform(sitk.CenteredTransformInitializer(R, T, sitk.AffineTransform(2),
                                                              sitk.CenteredTransformInitializerFilter.GEOMETRY))
    theirs = residual(reg.Execute(R, T))
    ours = residual(sitk.ReadTransform(str(out)))
    assert ours < 1.1 * theirs
