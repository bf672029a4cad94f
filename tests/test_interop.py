"""ITK geometry: images, affine maps and transform files agree with SimpleITK's resampler."""

import math

import numpy as np
import pytest
import torch

import imreg_lib as il
from imreg_lib import interop

sitk = pytest.importorskip("SimpleITK")

# A non-square grid with unequal spacing and an offset origin, so that a swapped axis, a wrong origin or spacing
# shows.
GRID = il.Grid((1.0, 21.0, -2.0, 23.0), (24, 30))
W = il.affine_from_geometry(18.0, (1.07, 0.94), (0.6, -0.4), GRID.center())


def smooth_picture(points: torch.Tensor) -> torch.Tensor:
    """An asymmetric smooth image (two Gaussians and a ramp)."""
    x, y = points[:, 0], points[:, 1]
    return (120 * torch.exp(-((x - 8) ** 2 + (y - 7) ** 2) / 18) + 80 * torch.exp(-((x - 14) ** 2 + (y - 15) ** 2) / 30)
            + 2.0 * x + 0.5 * y)


def template_values(grid=GRID) -> torch.Tensor:
    return smooth_picture(grid.cell_centers()).reshape(grid.m)


def interior(grid: il.Grid, w: torch.Tensor, margin_cells: float = 4.0) -> torch.Tensor:
    """Reference cells whose image under w is at least ``margin_cells`` from the template's boundary (the two
    interpolators treat boundaries differently)."""
    y = il.affine(w, grid.cell_centers())
    lo = torch.tensor(grid.lower) + margin_cells * torch.tensor(grid.h)
    hi = torch.tensor(grid.upper) - margin_cells * torch.tensor(grid.h)
    return ((y > lo) & (y < hi)).all(dim=1)


def ours_warped(T: torch.Tensor, grid: il.Grid, w: torch.Tensor) -> torch.Tensor:
    return il.SplineImage(T, grid)(il.affine(w, grid.cell_centers()))


def sitk_warped(T: torch.Tensor, grid: il.Grid, transform) -> torch.Tensor:
    moving = interop.to_sitk_image(T, grid)
    out = sitk.Resample(moving, moving, transform, sitk.sitkBSpline, 0.0, sitk.sitkFloat64)
    values, out_grid = interop.from_sitk_image(out)
    assert out_grid == grid
    return values.reshape(-1)


def test_image_geometry_round_trip():
    T = template_values()
    image = interop.to_sitk_image(T, GRID)
    assert image.GetSize() == GRID.m  # ITK's size is (n_x, n_y): first index along x
    assert image.GetSpacing() == pytest.approx(GRID.h)
    assert image.GetOrigin() == pytest.approx(tuple(GRID.cell_centers()[0].tolist()))  # origin at the first centre
    # the pixel at ITK index (i, j) is X[i, j], at the same physical point
    i, j = 5, 17
    assert image.GetPixel(i, j) == pytest.approx(float(T[i, j]))
    assert image.TransformIndexToPhysicalPoint((i, j)) == pytest.approx(
        tuple(GRID.cell_centers().reshape(*GRID.m, 2)[i, j].tolist()))
    back, grid = interop.from_sitk_image(image)
    assert grid == GRID and torch.equal(back, T)


def test_affine_parameters_round_trip_with_any_center():
    for center in (None, GRID.center(), (3.0, -1.0)):
        matrix, translation, c = interop.affine_to_itk(W, center)
        w = interop.affine_from_itk(matrix, translation, c)
        assert torch.allclose(w, W, rtol=0, atol=1e-13)
        tr = interop.sitk_affine(W, center)
        x = GRID.cell_centers()[[0, 100, 700]]
        assert torch.allclose(torch.tensor([tr.TransformPoint(tuple(p.tolist())) for p in x], dtype=torch.float64),
                              il.affine(W, x), atol=1e-12)


def test_sitk_resampler_agrees_with_our_transformation_and_spline():
    """SimpleITK maps fixed (reference) points into the moving image (template), like y(x): both warps agree."""
    T = template_values()
    ours = ours_warped(T, GRID, W)
    theirs = sitk_warped(T, GRID, interop.sitk_affine(W, GRID.center()))
    inside = interior(GRID, W)
    assert inside.sum() > 250
    scale = float(T.abs().max())
    err = float((ours - theirs)[inside].abs().max()) / scale
    assert err < 2e-3, err
    # both interpolate the picture: against its exact values at y(x)
    exact = smooth_picture(il.affine(W, GRID.cell_centers()))
    assert float((ours - exact)[inside].abs().max()) / scale < 2e-2


@pytest.mark.parametrize("mistake", ["inverse", "transposed", "no_center_shift", "origin_at_corner"])
def test_geometry_check_can_fail(mistake):
    """Each classic convention error makes the comparison above fail by far more than its tolerance."""
    T = template_values()
    ours = ours_warped(T, GRID, W)
    tr = interop.sitk_affine(W, GRID.center())
    moving = interop.to_sitk_image(T, GRID)
    if mistake == "inverse":
        tr = tr.GetInverse()
    elif mistake == "transposed":
        matrix = np.asarray(tr.GetMatrix()).reshape(2, 2).T
        tr.SetMatrix(tuple(matrix.reshape(-1)))
    elif mistake == "no_center_shift":  # b used as ITK's translation about the centre
        tr.SetTranslation(tuple(W[4:].tolist()))
    elif mistake == "origin_at_corner":
        moving.SetOrigin(GRID.lower)
    out = sitk.Resample(moving, interop.to_sitk_image(T, GRID), tr, sitk.sitkBSpline, 0.0, sitk.sitkFloat64)
    theirs = interop.from_sitk_image(out)[0].reshape(-1)
    inside = interior(GRID, W)
    assert float((ours - theirs)[inside].abs().max()) / float(T.abs().max()) > 2e-2


def test_3d_geometry():
    grid = il.Grid((0.0, 10.0, -1.0, 11.0, 2.0, 9.0), (20, 24, 16))
    x = grid.cell_centers()
    blob = 50 * torch.exp(-((x - torch.tensor([4.0, 6.0, 5.0])) ** 2).sum(1) / 10)
    T = (blob + x[:, 0] + 2 * x[:, 2]).reshape(grid.m)
    image = interop.to_sitk_image(T, grid)
    assert image.GetSize() == grid.m
    assert image.GetPixel(3, 7, 2) == pytest.approx(float(T[3, 7, 2]))
    a = math.radians(10.0)
    w = torch.tensor([math.cos(a), -math.sin(a), 0, math.sin(a), math.cos(a), 0, 0, 0, 1.02, 0.2, -0.1, 0.15],
                     dtype=torch.float64)
    theirs = sitk_warped(T, grid, interop.sitk_affine(w, grid.center()))
    ours = ours_warped(T, grid, w)
    inside = interior(grid, w, 4.0)
    assert inside.sum() > 20
    assert float((ours - theirs)[inside].abs().max()) / float(T.abs().max()) < 5e-3


def test_transform_file_is_read_by_simpleitk_and_resamples_like_ours(tmp_path):
    T = template_values()
    path = interop.write_itk_transform(tmp_path / "registration.tfm", W, GRID.center())
    assert path.read_text().startswith("#Insight Transform File V1.0")
    tr = sitk.ReadTransform(str(path))
    theirs = sitk_warped(T, GRID, tr)
    inside = interior(GRID, W)
    assert float((ours_warped(T, GRID, W) - theirs)[inside].abs().max()) / float(T.abs().max()) < 2e-3
    w, center = interop.read_itk_transform(path)
    assert torch.equal(w, interop.affine_from_itk(*interop.affine_to_itk(W, GRID.center())))
    assert center == pytest.approx(GRID.center())
    # a file SimpleITK writes reads back to the same map
    sitk.WriteTransform(interop.sitk_affine(W, (2.0, 3.0)), str(tmp_path / "sitk.tfm"))
    w2, c2 = interop.read_itk_transform(tmp_path / "sitk.tfm")
    assert torch.allclose(w2, W, atol=1e-12) and c2 == (2.0, 3.0)
    assert not list(tmp_path.glob("*.tmp"))


def test_transform_file_errors(tmp_path):
    with pytest.raises(ValueError, match="w must hold 6"):
        interop.write_itk_transform(tmp_path / "x.tfm", [1.0, 2.0])
    with pytest.raises(FileNotFoundError, match="path"):
        interop.write_itk_transform(tmp_path / "missing" / "x.tfm", W)
    (tmp_path / "bad.tfm").write_text("hello\n")
    with pytest.raises(ValueError, match="not an ITK text transform"):
        interop.read_itk_transform(tmp_path / "bad.tfm")
    sitk.WriteTransform(sitk.Euler2DTransform(), str(tmp_path / "euler.tfm"))
    with pytest.raises(ValueError, match="only affine"):
        interop.read_itk_transform(tmp_path / "euler.tfm")
    with pytest.raises(ValueError, match="values must be a tensor of shape"):
        interop.to_sitk_image(torch.zeros(3, 3), GRID)


@pytest.fixture(scope="module")
def user_pngs(tmp_path_factory):
    """A user's pair as PNG files: matplotlib's MRI slice, 96 × 80 pixels, and its copy turned 20° and shifted
    (ITK's physical space), also stored upside down (the paper's Figs 2-3 template convention)."""
    from PIL import Image

    from imreg_lib.data import sample_image

    folder = tmp_path_factory.mktemp("user_pngs")
    X = sample_image("mri").numpy()
    Image.fromarray(np.ascontiguousarray(X[:, ::-1].T).astype(np.uint8)).resize((96, 80)).save(folder / "R.png")
    R = sitk.ReadImage(str(folder / "R.png"), sitk.sitkFloat64)
    tr = sitk.AffineTransform(2)
    tr.SetCenter((47.5, 39.5))
    a = math.radians(20.0)
    tr.SetMatrix((math.cos(a), -math.sin(a), math.sin(a), math.cos(a)))
    tr.SetTranslation((3.0, -2.0))
    T = np.clip(np.rint(sitk.GetArrayFromImage(sitk.Resample(R, R, tr.GetInverse(), sitk.sitkBSpline, 0.0))), 0, 255)
    Image.fromarray(T.astype(np.uint8)).save(folder / "T.png")
    Image.fromarray(T[::-1, ::-1].astype(np.uint8)).save(folder / "T180.png")
    # the same pair with anisotropic pixels, turned 20° in physical space: SimpleITK stores the spacing in the PNGs
    # (sCAL), and ITK's tools read it back
    R.SetSpacing((1.6, 1.28))
    tr.SetCenter((47.5 * 1.6, 39.5 * 1.28))
    Ts = sitk.Resample(R, R, tr.GetInverse(), sitk.sitkBSpline, 0.0)
    for name, image in (("R_sp.png", R), ("T_sp.png", Ts)):
        sitk.WriteImage(sitk.Cast(sitk.Clamp(image, sitk.sitkFloat64, 0, 255), sitk.sitkUInt8), str(folder / name))
        assert sitk.ReadImage(str(folder / name)).GetSpacing() == (1.6, 1.28)
    return folder


def _file_mse(tfm, reference, template):
    R = sitk.ReadImage(str(reference), sitk.sitkFloat64)
    T = sitk.ReadImage(str(template), sitk.sitkFloat64)
    W = sitk.Resample(T, R, sitk.ReadTransform(str(tfm)), sitk.sitkLinear, 0.0)
    r, t, w = (sitk.GetArrayFromImage(x)[12:-12, 12:-12] for x in (R, T, W))
    return float(np.mean((t - r) ** 2)), float(np.mean((w - r) ** 2))


@pytest.mark.parametrize("reference, template, orientation, domain", [("R.png", "T.png", "upright", "file"),
                                                                      ("R.png", "T180.png", "rotate_180", "file"),
                                                                      ("R.png", "T.png", "upright", "paper"),
                                                                      ("R_sp.png", "T_sp.png", "upright", "file")])
def test_the_exported_transform_registers_the_users_files_in_simpleitk(user_pngs, tmp_path, reference, template,
                                                                       orientation, domain):
    from imreg_lib.globalreg import global_register

    pair = il.load_pair(user_pngs / reference, user_pngs / template, 48, template_orientation=orientation,
                        domain=domain)
    objective = il.SSDObjective(il.SplineImage(pair.template, pair.grid), il.SplineImage(pair.reference, pair.grid))
    w = global_register(objective).w
    w_file, center = interop.file_transform(w, pair)
    path = interop.write_itk_transform(tmp_path / "user.tfm", w_file, center)
    before, after = _file_mse(path, user_pngs / reference, user_pngs / template)
    assert after < 0.05 * before
    if domain == "file":  # the aspect ratio is kept (pixels' spacing included): a rotation by 20° on the grid too
        spacing = (1.0, 1.0) if reference == "R.png" else (1.6, 1.28)
        assert pair.grid.omega == pytest.approx((0.0, 20.0, 0.0, 20.0 * 80 * spacing[1] / (96 * spacing[0])))
        A = w[:4].reshape(2, 2)
        a = math.radians(-20.0)  # y down in the file, up on the grid: the turn changes sign
        turn = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
        assert torch.allclose(A, turn, atol=0.02)  # T180 turned back upright on loading: the same map


def test_file_transform_needs_a_pair_from_files():
    with pytest.raises(ValueError, match="pair.files is None"):
        interop.file_transform(torch.zeros(6), il.synthetic_hand_pair(8))
