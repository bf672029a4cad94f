r"""Register two image files from the command line: ``python -m imreg_lib register REFERENCE TEMPLATE --out T.tfm``.

Geometry of the files
---------------------
Every number that leaves this module is in the files' **physical space** as ITK reads them: a pixel with index
:math:`n` (ITK's order: the first index along the image's columns) sits at :math:`p = o + D\,(s \odot n)` with
origin :math:`o`, spacing :math:`s` and direction :math:`D` from the file's header (for PNG and JPEG what ITK takes
from theirs: a PNG's ``sCAL`` chunk, a JPEG's resolution, else unit spacing; origin 0, identity direction, the
first index along the columns, the second down the rows). Internally
each image lives on the axis-aligned grid :math:`u = o + s \odot n` (the file's own extent, so its aspect ratio is
kept), resampled to ``m`` cells per dimension by area averaging, and :math:`p = G(u) = D u + (o - D o)`.

The registration finds :math:`y(u) = A u + b` with :math:`T(y(u)) \approx R(u)`, starting from the physical
identity :math:`y_0 = G_T^{-1} \circ G_R` (ITK's identity transform), whose linear part also orients the global
driver's rotation search (files whose direction matrices differ by a reflection); the exported transform is
:math:`G_T \circ y \circ G_R^{-1}`, which maps physical points of the reference (ITK's fixed image) into the
template (the moving image), so ITK, SimpleITK (``Resample``), ANTs (``antsApplyTransforms``) and 3D Slicer
resample the template file onto the reference file with it.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import _checks
from ._files import itk_header, write_atomic_files
from .device import resolve_device
from .globalreg import THETA_SEARCH, global_register
from .grid import Grid
from .interop import conjugate, write_itk_transform
from .multiscale import predictor_corrector, single_scale, theta_schedule, traditional
from .objective import SSDObjective
from .spline import SplineImage
from .transformations import Affine, affine

__all__ = ["FileImage", "METHODS", "main", "physical_identity", "physical_transform", "read_image_file",
           "register_files", "slice_axis"]

#: The methods of ``--method``: the global driver (default) and the paper's three.
METHODS = ("global", "predictor_corrector", "traditional", "single_scale")
_PILLOW = (".png", ".jpg", ".jpeg")
#: Spreads of the two images (square roots of the traces of their second moments) that differ by more than this
#: fraction give the global driver a similarity start (:func:`_trusted_starts`).
SIMILAR_SPREAD = 0.1
#: The intensity range to which :func:`register_files` scales both images (by one factor, the reference's range
#: to this), so that ``gtol`` means the same on every intensity scale: an 8-bit image's, on which the default
#: was chosen.
INTENSITY_RANGE = 255.0
#: Problems of more cells than this (3D at ``--m`` above 32) give the global driver a coarse grid, half as fine per
#: dimension, for its scales above :data:`THETA_FINE` (``global_register``'s ``coarse_objective``).
COARSE_CELLS = 2**15
THETA_FINE = 0.05


@dataclass(frozen=True)
class FileImage:
    """An image file's values on ITK's index order and its physical geometry.

    Attributes
    ----------
    values
        Grey values, shape ``size`` (first index along ITK's first axis).
    origin, spacing, direction
        ITK's geometry: the pixel with index ``n`` is at ``origin + direction @ (spacing * n)``.
    path
        Where it was read from.
    dtype
        The NumPy name of the file's pixel type (``"uint8"``, ``"uint16"``, ``"float32"``, ...): what a warped copy
        is written as.
    """

    values: torch.Tensor
    origin: tuple[float, ...]
    spacing: tuple[float, ...]
    direction: tuple[float, ...]
    path: str
    dtype: str = "float64"

    @property
    def dim(self) -> int:
        return self.values.dim()

    @property
    def omega(self) -> tuple[float, ...]:
        """The internal axis-aligned domain: cell centres at ``origin + spacing * n``."""
        return tuple(v for o, s, n in zip(self.origin, self.spacing, self.values.shape, strict=True)
                     for v in (o - 0.5 * s, o + (n - 0.5) * s))

    def to_physical(self) -> tuple[np.ndarray, np.ndarray]:
        """``(D, e)`` of :math:`G(u) = D u + e`, from the internal grid to physical points."""
        D = np.asarray(self.direction, dtype=np.float64).reshape(self.dim, self.dim)
        o = np.asarray(self.origin, dtype=np.float64)
        return D, o - D @ o


def _fail(message: str) -> ValueError:
    return ValueError(message)


def read_image_file(path: str | os.PathLike, name: str = "image") -> FileImage:
    """Read a greyscale image file: PNG/JPEG with Pillow (their geometry as ITK reads it, :func:`itk_header`),
    anything else (NIfTI, MHA, NRRD, ...) with SimpleITK.

    A colour, palette or grey-and-alpha PNG/JPEG is read when its colour channels are equal (alpha ignored).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (the message names ``name`` and the absolute path tried).
    ValueError
        If ``path`` is a folder, the file cannot be read as an image, holds colour or vector pixels, is not 2D or
        3D, or holds values that are not finite.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise _fail(f"{name}: {path!r} is a folder; give an image file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name}: file not found: {path!r} (tried {os.path.abspath(path)!r})")
    if path.lower().endswith(_PILLOW):
        image = _read_pillow(path, name)
    else:
        image = _read_sitk(path, name)
    if not bool(torch.isfinite(image.values).all()):
        raise _fail(f"{name}: {path!r} holds values that are not finite (NaN or infinity); replace them first")
    return image


def _read_pillow(path: str, name: str) -> FileImage:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            img = im
    except (UnidentifiedImageError, OSError) as err:
        raise _fail(f"{name}: could not read {path!r} as an image ({err})") from None
    if img.mode == "1":
        img = img.convert("L")
    elif img.mode == "LA":
        img = img.getchannel("L")
    elif img.mode not in ("L", "I", "F") and not img.mode.startswith("I;16"):  # RGB(A), palette, CMYK, ...
        # greyscale only if R = G = B
        arr = np.asarray(img.convert("RGB"), dtype=np.int16)
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise _fail(f"{name}: {path!r} is a colour image; convert it to greyscale first")
        img = img.convert("RGB").convert("L")
    A = np.asarray(img)  # A[row, column]
    dtype = "uint16" if img.mode.startswith("I;16") else np.dtype(A.dtype).name
    X = np.ascontiguousarray(A.T.astype(np.float64))  # ITK's index order: (column, row)
    origin, spacing, direction = itk_header(path, 2)
    return FileImage(torch.from_numpy(X), origin, spacing, direction, path, dtype)


def _read_sitk(path: str, name: str) -> FileImage:
    try:
        import SimpleITK as sitk
    except ImportError:
        raise _fail(f"{name}: reading {path!r} needs SimpleITK (pip install SimpleITK); PNG and JPEG files do "
                    "not") from None
    try:
        img = sitk.ReadImage(path)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown error"
        raise _fail(f"{name}: could not read {path!r} as an image ({first})") from None
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise _fail(f"{name}: {path!r} has {img.GetNumberOfComponentsPerPixel()} components per pixel; a "
                    "greyscale (scalar) image is required")
    if img.GetDimension() not in (2, 3):
        raise _fail(f"{name}: {path!r} is {img.GetDimension()}D; 2D and 3D images are registered")
    raw = sitk.GetArrayFromImage(img)  # [z, y, x]
    X = np.ascontiguousarray(raw.astype(np.float64).transpose(tuple(reversed(range(raw.ndim)))))
    return FileImage(torch.from_numpy(X), tuple(img.GetOrigin()), tuple(img.GetSpacing()),
                     tuple(img.GetDirection()), path, str(raw.dtype))


def _on_cells(values: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """``values`` on ``size`` cells over the same extent: averaged over the cells along axes that have more (area
    averaging), then linearly interpolated along axes that have fewer."""
    dim = values.dim()
    down = tuple(min(n, s) for n, s in zip(values.shape, size, strict=True))
    if down != tuple(values.shape):
        pool = torch.nn.functional.adaptive_avg_pool2d if dim == 2 else torch.nn.functional.adaptive_avg_pool3d
        values = pool(values[None, None], down)[0, 0]
    if down != tuple(size):
        values = torch.nn.functional.interpolate(values[None, None], size=size, align_corners=False,
                                                 mode="bilinear" if dim == 2 else "trilinear")[0, 0]
    return values


def physical_identity(reference: FileImage, template: FileImage) -> torch.Tensor:
    r"""The internal map that is the identity in physical space, :math:`y_0 = G_T^{-1} \circ G_R`:
    :math:`A_0 = D_T^{-1} D_R`, :math:`b_0 = D_T^{-1}(e_R - e_T)`. Returns ``[A_0 row-major, b_0]`` (float64).
    Files with the same direction and origin give the identity."""
    DR, eR = reference.to_physical()
    DT, eT = template.to_physical()
    DTinv = np.linalg.inv(DT)
    return torch.from_numpy(np.concatenate([(DTinv @ DR).reshape(-1), DTinv @ (eR - eT)]))


def slice_axis(reference: FileImage, template: FileImage, names: tuple[str, str] = ("reference", "template"),
               ) -> int | None:
    """The axis along which two 3D files are both one pixel thick (2D images stored as 3D: a DICOM slice, a
    one-slice NIfTI), which :func:`register_files` registers in the plane of the slices; ``None`` where neither
    is one pixel thick.

    Raises
    ------
    ValueError
        If only one of them is one slice, they are one slice along different axes, one is a line (one pixel thick
        along two axes), or their slices lie in different planes (the physical identity mixes the slice axis with
        the others).
    """
    if reference.dim != 3 or template.dim != 3:
        return None
    flat = [tuple(k for k, n in enumerate(img.values.shape) if n == 1) for img in (reference, template)]
    if not flat[0] and not flat[1]:
        return None
    if len(flat[0]) != 1 or flat[0] != flat[1]:
        raise ValueError(f"{names[0]} is {tuple(reference.values.shape)} and {names[1]} "
                         f"{tuple(template.values.shape)} pixels: 3D files one pixel thick are registered in their "
                         "plane when both are one slice thick along the same axis")
    k = flat[0][0]
    A0 = physical_identity(reference, template)[:9].reshape(3, 3).numpy()
    off = np.concatenate([np.delete(A0[k], k), np.delete(A0[:, k], k)])
    if np.abs(off).max() > 1e-6:
        raise ValueError(f"{names[0]}'s and {names[1]}'s slices lie in different planes (their direction matrices "
                         "turn one slice's normal away from the other's); resample one into the other's plane first")
    return k


def _in_plane(image: FileImage, k: int) -> FileImage:
    """A one-slice 3D file as the 2D image of its slice, on its internal in-plane axes (the geometry that
    :func:`register_files` uses: values, origin and spacing of the other two axes; physical maps stay 3D)."""
    keep = [j for j in range(3) if j != k]
    return FileImage(image.values.squeeze(k), tuple(image.origin[j] for j in keep),
                     tuple(image.spacing[j] for j in keep), (1.0, 0.0, 0.0, 1.0), image.path, image.dtype)


def _embedded(w: torch.Tensor, reference: FileImage, template: FileImage, k: int) -> torch.Tensor:
    r"""The 3D internal map of a registration in the plane of one-slice files (:func:`slice_axis` ``k``): the
    in-plane map :math:`w` on the other axes, and along ``k`` the physical identity's direction with the shift that
    takes the reference's slice onto the template's (a one-slice template has nothing to sample off its slice)."""
    A0 = physical_identity(reference, template)[:9].reshape(3, 3)
    keep = [j for j in range(3) if j != k]
    A = torch.zeros(3, 3, dtype=torch.float64)
    b = torch.zeros(3, dtype=torch.float64)
    w = w.detach().cpu().double()
    A[np.ix_(keep, keep)] = w[:4].reshape(2, 2)
    b[keep] = w[4:]
    A[k, k] = A0[k, k]
    b[k] = template.origin[k] - A0[k, k] * reference.origin[k]
    return torch.cat([A.reshape(-1), b])


def _moments(image: SplineImage) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Centroid and second central moment (trace) of an image's values above its minimum, in its domain's units;
    ``None`` for a constant image."""
    mass = image.data.reshape(-1) - image.data.min()
    total = mass.sum()
    if not total > 0:
        return None
    x = image.grid.cell_centers(mass.device, mass.dtype)
    c = mass @ x / total
    return c, (mass @ ((x - c) ** 2).sum(dim=1)) / total


def _trusted_starts(objective: SSDObjective, w0: torch.Tensor) -> torch.Tensor:
    r"""The global driver's extra starts on files: the physical identity ``w0`` (:math:`y_0(u) = A_0 u + b_0`), and
    the similarity that takes the reference's centroid to the template's, scaled by the ratio :math:`s` of their
    spreads (square roots of the traces of the second moments), :math:`y(u) = c_T + s A_0 (u - c_R)`, where
    :math:`s` differs from 1 by more than :data:`SIMILAR_SPREAD`: a template of another size (a resized copy, other
    pixels) that no rotation start reaches. (Where the sizes agree the similarity adds a continuation, not a
    start that the others miss.)"""
    d = objective.grid.dim
    mr, mt = _moments(objective.reference), _moments(objective.template)
    if mr is None or mt is None or not mr[1] > 0:
        return w0[None]
    (c_r, var_r), (c_t, var_t) = mr, mt
    s = torch.sqrt(var_t / var_r)
    if abs(float(s) - 1.0) <= SIMILAR_SPREAD:
        return w0[None]
    A = s * w0[: d * d].reshape(d, d)
    return torch.stack([w0, torch.cat([A.reshape(-1), c_t - A @ c_r])])


def physical_transform(w: torch.Tensor, reference: FileImage, template: FileImage) -> torch.Tensor:
    r"""The internal map :math:`y(u) = Au + b` as the physical map :math:`G_T \circ y \circ G_R^{-1}`
    (:func:`imreg_lib.interop.conjugate`). Returns the parameters ``[A' row-major, b']``."""
    return conjugate(w.detach().cpu().double(), reference.to_physical(), template.to_physical())


@dataclass(frozen=True)
class FileRegistration:
    """The outcome of :func:`register_files`: internal and physical parameters, the losses at ``theta_min`` on the
    files' intensities, the time; ``objective`` works on both images' intensities times ``intensity_scale``. For
    one-slice 3D files (:func:`slice_axis`) ``w`` and ``objective`` are those of the slices' plane, ``w_physical``
    the files' 3D map."""

    w: torch.Tensor
    w_physical: torch.Tensor
    loss: float
    identity_loss: float
    seconds: float
    objective: SSDObjective
    intensity_scale: float = 1.0
    slice_axis: int | None = None


def register_files(reference: FileImage, template: FileImage, *, method: str = "global", m: int | None = 64,
                   theta_max: float = 1e3, theta_min: float = 1e-3, n_scales: int = 30, gtol: float = 1e-4,
                   device: str = "auto", progress=None, names: tuple[str, str] = ("reference", "template"),
                   ) -> FileRegistration:
    r"""Register ``template`` to ``reference`` (both :class:`FileImage`) with ``method`` (:data:`METHODS`), from the
    identity in the files' physical space (:func:`physical_identity`).

    ``progress(line)`` receives one line per scale. The global driver uses ``theta_min`` and ``gtol``; the others
    the schedule ``theta_max``, ``theta_min``, ``n_scales``. ``names`` are how messages call the two images.

    Both images are multiplied by one factor :math:`s`, the reference's intensity range to
    :data:`INTENSITY_RANGE`, before they are registered. The SSD is then :math:`s^2` times the files', and Newton's
    iterates do not depend on it (each step is invariant to the factor, up to round-off); what changes is the test
    :math:`\|\nabla J\| <` ``gtol``, which is thereby the same on every intensity scale: a file of values near
    1e-9 is registered as its 8-bit copy would be (with the absolute test, it stopped at the identity). The losses
    reported (progress, result) are the files'.
    """
    _checks.one_of("method", method, METHODS)
    if reference.dim != template.dim:
        raise ValueError(f"{names[0]} and {names[1]} must have the same dimension, got {reference.dim}D "
                         f"({reference.path}) and {template.dim}D ({template.path})")
    if m is not None:
        _checks.integer("m", m, 4)
    files = (reference, template)
    k = slice_axis(reference, template, names)
    if k is not None:  # 2D images stored as 3D: registered in their plane
        reference, template = _in_plane(reference, k), _in_plane(template, k)
    for name, img in zip(names, (reference, template), strict=True):
        if min(img.values.shape) < 4:
            raise ValueError(f"{name}: {img.path!r} is {tuple(img.values.shape)} pixels; at least 4 per dimension")
    thetas = theta_schedule(theta_max, theta_min, n_scales)
    _checks.positive_number("gtol", gtol)
    dev = resolve_device(device)
    # both images on the larger of their cell counts per dimension, at most m: the SSD is summed over the
    # reference's cells, which keep their size where the template has fewer (a crop, a smaller copy: it is
    # interpolated onto as many; with the smaller count the reference's cells grew and the result was 2.6 times
    # SimpleITK's residual on crops)
    size = tuple(min(max(a, b), m) if m is not None else max(a, b)
                 for a, b in zip(reference.values.shape, template.values.shape, strict=True))
    spread = float(reference.values.max() - reference.values.min())
    scale = INTENSITY_RANGE / spread if spread > 0 else 1.0
    R = _on_cells(reference.values.to(dev), size) * scale
    T = _on_cells(template.values.to(dev), size) * scale
    objective = SSDObjective(SplineImage(T, Grid(template.omega, tuple(T.shape))),
                             SplineImage(R, Grid(reference.omega, tuple(R.shape))), Affine(reference.dim))
    d = reference.dim
    w0 = physical_identity(*files)
    if k is not None:  # the in-plane part of the files' physical identity (slice_axis checked it has no other)
        keep = [j for j in range(3) if j != k]
        w0 = torch.cat([w0[:9].reshape(3, 3)[np.ix_(keep, keep)].reshape(-1), w0[9:][keep]])
    w0 = w0.to(device=R.device, dtype=R.dtype)
    report = progress or (lambda line: None)
    t0 = time.perf_counter()
    if method == "global":
        coarse = None
        if math.prod(R.shape) > COARSE_CELLS and theta_min <= THETA_FINE:  # the smooth scales on half the cells
            half = tuple(max(4, (n + 1) // 2) for n in R.shape)
            pool = torch.nn.functional.adaptive_avg_pool2d if d == 2 else torch.nn.functional.adaptive_avg_pool3d
            Rc, Tc = (pool(v[None, None], half)[0, 0] for v in (R, T))
            coarse = SSDObjective(SplineImage(Tc, Grid(template.omega, half)),
                                  SplineImage(Rc, Grid(reference.omega, half)), Affine(d)).with_overlap()
        res = global_register(objective.with_overlap(), theta_min=theta_min, gtol=gtol,
                              coarse_objective=coarse, theta_fine=THETA_FINE,
                              orientation=w0[: d * d].reshape(d, d), extra_starts=_trusted_starts(objective, w0),
                              select="final", score=lambda w: float(objective.loss(w, theta_min)),
                              callback=lambda s: report(
            ("" if s.path == 0 else f"start {s.path + 1}, ") + f"θ = {s.theta:9.3g}: J = {s.loss / scale**2:.6g}, "
            f"|∇J| = {s.grad_norm / scale**2:.2e}, {s.iterations} Newton iterations"))
        w = res.w
    else:
        def each(r):
            report(f"θ = {r.theta:9.3g}: J = {r.final_loss / scale**2:.6g}, |∇J| = {r.final_grad_norm / scale**2:.2e}, "
                   f"{r.iterations} Newton iterations")
        if method == "single_scale":
            run = single_scale(objective, theta_min, w0, gtol=gtol)
            each(run.history[-1])
        elif method == "traditional":
            run = traditional(objective, thetas, w0, gtol=gtol, callback=each)
        else:
            run = predictor_corrector(objective, thetas, w0, gtol=gtol, callback=each, record_start=False)
        w = run.w
    seconds = time.perf_counter() - t0
    loss = float(objective.loss(w, theta_min)) / scale**2
    identity = float(objective.loss(w0, theta_min)) / scale**2
    w_files = w if k is None else _embedded(w, *files, k)
    return FileRegistration(w, physical_transform(w_files, *files), loss, identity, seconds, objective, scale, k)


_TRANSFORM_SUFFIXES = (".tfm", ".txt")


def _writable_folder(option: str, path: Path) -> None:
    """``path`` can be created: its folder exists and takes a new file, and it is not itself a folder."""
    if path.is_dir():
        raise ValueError(f"{option}: {str(path)!r} is a folder; give a file name")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{option}: the folder {str(path.parent)!r} does not exist")
    try:
        fd, name = tempfile.mkstemp(prefix=".imreg-", dir=path.parent)
    except OSError as err:
        raise ValueError(f"{option}: cannot write in the folder {str(path.parent)!r} ({err.strerror})") from None
    os.close(fd)
    os.unlink(name)


def check_transform_path(path: str | os.PathLike, option: str = "--out") -> Path:
    """Refuse, before any work, a transform path that cannot be written: a name not ending in ``.tfm`` or
    ``.txt`` (ITK's text transform file: other endings such as ``.h5`` or ``.mat`` name binary formats that this
    command does not write), a folder, a missing or read-only folder."""
    path = Path(path)
    if path.suffix.lower() not in _TRANSFORM_SUFFIXES:
        raise ValueError(f"{option} must end in .tfm or .txt (an ITK text transform file), got {str(path)!r}")
    _writable_folder(option, path)
    return path


def _warped_dtype(template: FileImage) -> np.dtype:
    """The pixel type a warped copy of ``template`` is written in: the template file's (as SimpleITK's
    ``Resample``), with a boolean or half-precision file widened to one SimpleITK writes."""
    dtype = np.dtype(template.dtype)
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    if dtype.kind == "f" and dtype.itemsize < 4:
        return np.dtype(np.float32)
    return dtype


def check_warped_path(path: str | os.PathLike, template: FileImage, option: str = "--warped") -> Path:
    """Refuse, before any work, a warped-image path that cannot take the warped template: a folder, a missing or
    read-only folder, a PNG/JPEG for a 3D image or for pixels they do not hold (PNG: 8- or 16-bit unsigned
    integers, JPEG: 8-bit), or a format that SimpleITK cannot write for this dimension and pixel type (tried on a
    small image in the same folder)."""
    path = Path(path)
    _writable_folder(option, path)
    dtype, d, suffix = _warped_dtype(template), template.dim, path.suffix.lower()
    if suffix in _PILLOW:
        allowed = ("uint8", "uint16") if suffix == ".png" else ("uint8",)
        if d != 2:
            raise ValueError(f"{option}: {suffix} holds 2D images, but TEMPLATE is {d}D; use .nii.gz, .mha or .nrrd")
        if dtype.name not in allowed:
            raise ValueError(f"{option}: {suffix} holds {' or '.join(allowed)} pixels, but TEMPLATE's are "
                             f"{dtype.name}; use .tif, .mha, .nii.gz or .nrrd")
        return path
    try:
        import SimpleITK as sitk
    except ImportError:
        raise ValueError(f"{option}: writing {suffix or 'a file without an ending'} needs SimpleITK (pip install "
                         "SimpleITK); .png and .jpg do not") from None
    folder = tempfile.mkdtemp(prefix=".imreg-", dir=path.parent)  # the trial and any companion file it makes
    try:
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2,) * d, dtype=dtype)),
                        os.path.join(folder, "trial" + "".join(path.suffixes)))
    except RuntimeError as err:
        last = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown error"
        raise ValueError(f"{option}: SimpleITK cannot write a {d}D {dtype.name} image as {str(path)!r} "
                         f"({last.strip()})") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return path


def write_warped(path: str | os.PathLike, result: FileRegistration, reference: FileImage,
                 template: FileImage) -> Path:
    """Resample the template file onto the reference file's pixels through the found map (cubic spline of the
    template at full resolution, zero outside) and write it atomically in the template's pixel type (rounded and
    clipped for integers, as SimpleITK's ``Resample``), with the reference's geometry where the format holds one
    (PNG and JPEG hold no origin or direction: a PNG written by SimpleITK keeps the spacing)."""
    path = check_warped_path(path, template)
    d = reference.dim
    geometry = reference
    if result.slice_axis is not None:  # sampled in the slices' plane, written as one slice
        reference, template = _in_plane(reference, result.slice_axis), _in_plane(template, result.slice_axis)
    ref_grid = Grid(reference.omega, tuple(reference.values.shape))
    spline = SplineImage(template.values.double(), Grid(template.omega, tuple(template.values.shape)))
    u = ref_grid.cell_centers(dtype=torch.float64)
    values = spline(affine(result.w.detach().cpu().double(), u)).reshape(ref_grid.m).numpy()
    if result.slice_axis is not None:
        values = np.expand_dims(values, result.slice_axis)
    dtype = _warped_dtype(template)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    values = values.astype(dtype)

    def write(tmp: Path) -> None:
        try:
            import SimpleITK as sitk
        except ImportError:  # pragma: no cover - SimpleITK is pinned in the lock file; PNG/JPEG only
            from PIL import Image

            Image.fromarray(values.T).save(tmp, format="PNG" if path.suffix.lower() == ".png" else "JPEG")
            return
        img = sitk.GetImageFromArray(values.transpose(tuple(reversed(range(d)))))
        img.SetOrigin(geometry.origin)
        img.SetSpacing(geometry.spacing)
        img.SetDirection(geometry.direction)
        sitk.WriteImage(img, str(tmp))

    write_atomic_files(path, write)  # a header and its data file (.mhd and .raw) move together, under their names
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m imreg_lib", description="Affine image registration with exact "
                                     "Hessians and continuation in the scale θ.")
    sub = parser.add_subparsers(dest="command", required=True)
    reg = sub.add_parser("register", help="register TEMPLATE to REFERENCE and write an ITK transform file",
                         description="Find the affine map that takes REFERENCE's physical points into TEMPLATE "
                         "(ITK's fixed and moving image) and write it as an ITK transform file.")
    reg.add_argument("reference", metavar="REFERENCE",
                     help="the fixed image (PNG/JPEG, or NIfTI/MHA/... via SimpleITK)")
    reg.add_argument("template", metavar="TEMPLATE", help="the moving image, same dimension")
    reg.add_argument("--out", required=True, help="the ITK transform file to write (.tfm or .txt)")
    reg.add_argument("--warped", help="also write TEMPLATE resampled onto REFERENCE's pixels, in TEMPLATE's pixel "
                     "type (PNG: 8 or 16 bits, JPEG: 8 bits, or any format SimpleITK writes)")
    reg.add_argument("--method", default="global", choices=METHODS, help="default: global (rotation search, then "
                     "exact Newton with continuation in θ)")
    reg.add_argument("--m", type=int, default=64, help="cells per dimension the images are averaged to "
                     "(default 64; never more than the files' pixels)")
    reg.add_argument("--theta-max", type=float, default=1e3, help="coarsest scale of the schedule (default 1e3)")
    reg.add_argument("--theta-min", type=float, default=1e-3, help="finest scale (default 1e-3; below 10 for "
                     "the global driver)")
    reg.add_argument("--n-scales", type=int, default=30, help="scales of the schedule (default 30; the global "
                     "driver uses its own short one)")
    reg.add_argument("--gtol", type=float, default=1e-4,
                     help="gradient tolerance at the finest scale, on both images scaled by one factor so that the "
                     "reference's intensities span 255 (the same on any intensity scale)")
    reg.add_argument("--device", default="auto", help="auto, cpu or cuda")
    reg.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def _check_options(args: argparse.Namespace) -> None:
    """Every option, before any file is read; the messages name the options as typed."""
    check_transform_path(args.out)
    if args.warped is not None:
        _writable_folder("--warped", Path(args.warped))
    for flag, value in (("--theta-max", args.theta_max), ("--theta-min", args.theta_min)):
        _checks.positive_number(flag, value)
    if not args.theta_max > args.theta_min:
        raise ValueError(f"--theta-max must be larger than --theta-min (the schedule decreases), got --theta-max "
                         f"{args.theta_max!r} and --theta-min {args.theta_min!r}")
    _checks.integer("--n-scales", args.n_scales, 2)
    if args.method == "global" and not args.theta_min < THETA_SEARCH:
        raise ValueError(f"--theta-min must be below {THETA_SEARCH:g} with --method global (its rotation search "
                         f"runs at θ = {THETA_SEARCH:g}), got {args.theta_min!r}")
    _checks.integer("--m", args.m, 4)
    _checks.positive_number("--gtol", args.gtol)
    name = args.device.strip().lower()
    if (name == "cuda" or name.startswith("cuda:")) and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available on this machine (torch "
                         f"{torch.__version__}); use --device cpu or --device auto")
    try:
        resolve_device(args.device)
    except ValueError as err:
        raise ValueError(f"--device: {err}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (0 done, 2 bad input, with a one-line ``error:`` message; 130
    interrupted). Every option and both files are checked before the registration starts; the warped image (if
    asked for) is written before the transform, each atomically, so that a failed run leaves no transform."""
    parser = _parser()
    args = parser.parse_args(argv)
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    written = []
    try:
        _check_options(args)
        reference = read_image_file(args.reference, "REFERENCE")
        template = read_image_file(args.template, "TEMPLATE")
        if reference.dim != template.dim:
            raise ValueError(f"REFERENCE and TEMPLATE must have the same dimension, got {reference.dim}D "
                             f"({reference.path}) and {template.dim}D ({template.path})")
        if args.warped is not None:
            check_warped_path(args.warped, template)
        result = register_files(reference, template, method=args.method, m=args.m, theta_max=args.theta_max,
                                theta_min=args.theta_min, n_scales=args.n_scales, gtol=args.gtol,
                                device=args.device, progress=progress, names=("REFERENCE", "TEMPLATE"))
        d = reference.dim
        center = tuple(float(v) for v in np.asarray(reference.to_physical()[0]) @ np.asarray(
            [0.5 * (lo + hi) for lo, hi in zip(reference.omega[0::2], reference.omega[1::2], strict=True)])
            + reference.to_physical()[1])
        if args.warped is not None:
            write_warped(args.warped, result, reference, template)
            written.append(args.warped)
        write_itk_transform(args.out, result.w_physical, center)
    except (ValueError, OSError, RuntimeError) as err:  # OSError: FileNotFoundError, and a write that fails
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: " + (f"wrote {written[0]} but no transform" if written else "nothing was written"),
              file=sys.stderr)
        return 130
    wrote = f"wrote {args.out}" + (f" and {args.warped}" if args.warped else "")
    if result.identity_loss > 0:
        fit = f"J / J(identity) = {result.loss / result.identity_loss:.4g}"
    else:
        fit = "J = 0 at the identity already (the images agree, or hold no contrast)"
    kind = f"{d}D" if result.slice_axis is None else "2D slices of 3D files"
    print(f"registered {template.path} to {reference.path} ({kind}, {args.method}): {fit}, {result.seconds:.2f} s; "
          f"{wrote}")
    return 0
