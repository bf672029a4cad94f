r"""Register two image files from the command line: ``python -m imreg_lib register REFERENCE TEMPLATE --out T.tfm``.

Geometry of the files
---------------------
Every number that leaves this module is in the files' **physical space** as ITK reads them: a pixel with index
:math:`n` (ITK's order: the first index along the image's columns) sits at :math:`p = o + D\,(s \odot n)` with
origin :math:`o`, spacing :math:`s` and direction :math:`D` from the file's header (PNG and JPEG have none: unit
spacing, origin 0, identity direction, the first index along the columns, the second down the rows). Internally
each image lives on the axis-aligned grid :math:`u = o + s \odot n` (the file's own extent, so its aspect ratio is
kept), resampled to ``m`` cells per dimension by area averaging, and :math:`p = G(u) = D u + (o - D o)`.

The registration finds :math:`y(u) = A u + b` with :math:`T(y(u)) \approx R(u)`; the exported transform is
:math:`G_T \circ y \circ G_R^{-1}`, which maps physical points of the reference (ITK's fixed image) into the
template (the moving image), so ITK, SimpleITK (``Resample``), ANTs (``antsApplyTransforms``) and 3D Slicer
resample the template file onto the reference file with it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import _checks
from ._files import write_atomic
from .device import resolve_device
from .globalreg import global_register
from .grid import Grid
from .interop import conjugate, write_itk_transform
from .multiscale import predictor_corrector, single_scale, theta_schedule, traditional
from .objective import SSDObjective
from .spline import SplineImage
from .transformations import Affine, affine

__all__ = ["FileImage", "METHODS", "main", "physical_transform", "read_image_file", "register_files"]

#: The methods of ``--method``: the global driver (default) and the paper's three.
METHODS = ("global", "predictor_corrector", "traditional", "single_scale")
_PILLOW = (".png", ".jpg", ".jpeg")


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
    """

    values: torch.Tensor
    origin: tuple[float, ...]
    spacing: tuple[float, ...]
    direction: tuple[float, ...]
    path: str

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
    """Read a greyscale image file: PNG/JPEG with Pillow, anything else (NIfTI, MHA, NRRD, ...) with SimpleITK.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (the message names ``name`` and the absolute path tried).
    ValueError
        If the file cannot be read as an image, holds colour or vector pixels, or is not 2D or 3D.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name}: file not found: {path!r} (tried {os.path.abspath(path)!r})")
    if path.lower().endswith(_PILLOW):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                im.load()
                img = im
        except (UnidentifiedImageError, OSError) as err:
            raise _fail(f"{name}: could not read {path!r} as an image ({err})") from None
        if img.mode in ("RGB", "RGBA"):
            arr = np.asarray(img.convert("RGB"), dtype=np.int16)
            if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
                raise _fail(f"{name}: {path!r} is a colour image; convert it to greyscale first")
            img = img.convert("L")
        elif img.mode not in ("L", "I;16", "I", "F"):
            raise _fail(f"{name}: {path!r} has image mode {img.mode!r}; a greyscale image is required")
        A = np.asarray(img, dtype=np.float64)  # A[row, column]
        X = np.ascontiguousarray(A.T)  # ITK's index order: (column, row)
        return FileImage(torch.from_numpy(X), (0.0, 0.0), (1.0, 1.0), (1.0, 0.0, 0.0, 1.0), path)
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
    arr = sitk.GetArrayFromImage(img).astype(np.float64)  # [z, y, x]
    X = np.ascontiguousarray(arr.transpose(tuple(reversed(range(arr.ndim)))))
    return FileImage(torch.from_numpy(X), tuple(img.GetOrigin()), tuple(img.GetSpacing()),
                     tuple(img.GetDirection()), path)


def _resampled(image: FileImage, m: int | None) -> torch.Tensor:
    """The values averaged over ``m`` cells per dimension (area averaging; never upsampled)."""
    size = tuple(image.values.shape)
    target = tuple(min(k, m) for k in size) if m is not None else size
    if target == size:
        return image.values
    pool = torch.nn.functional.adaptive_avg_pool2d if image.dim == 2 else torch.nn.functional.adaptive_avg_pool3d
    return pool(image.values[None, None], target)[0, 0]


def physical_transform(w: torch.Tensor, reference: FileImage, template: FileImage) -> torch.Tensor:
    r"""The internal map :math:`y(u) = Au + b` as the physical map :math:`G_T \circ y \circ G_R^{-1}`
    (:func:`imreg_lib.interop.conjugate`). Returns the parameters ``[A' row-major, b']``."""
    return conjugate(w.detach().cpu().double(), reference.to_physical(), template.to_physical())


@dataclass(frozen=True)
class FileRegistration:
    """The outcome of :func:`register_files`: internal and physical parameters, losses, time."""

    w: torch.Tensor
    w_physical: torch.Tensor
    loss: float
    identity_loss: float
    seconds: float
    objective: SSDObjective


def register_files(reference: FileImage, template: FileImage, *, method: str = "global", m: int | None = 64,
                   theta_max: float = 1e3, theta_min: float = 1e-3, n_scales: int = 30, gtol: float = 1e-4,
                   device: str = "auto", progress=None) -> FileRegistration:
    """Register ``template`` to ``reference`` (both :class:`FileImage`) with ``method`` (:data:`METHODS`).

    ``progress(line)`` receives one line per scale. The global driver uses ``theta_min`` and ``gtol``; the others
    the schedule ``theta_max``, ``theta_min``, ``n_scales``.
    """
    _checks.one_of("method", method, METHODS)
    if reference.dim != template.dim:
        raise ValueError(f"reference and template must have the same dimension, got {reference.dim}D "
                         f"({reference.path}) and {template.dim}D ({template.path})")
    if m is not None:
        _checks.integer("m", m, 4)
    for name, img in (("reference", reference), ("template", template)):
        if min(img.values.shape) < 4:
            raise ValueError(f"{name}: {img.path!r} is {tuple(img.values.shape)} pixels; at least 4 per dimension")
    thetas = theta_schedule(theta_max, theta_min, n_scales)
    _checks.positive_number("gtol", gtol)
    dev = resolve_device(device)
    size = tuple(min(min(a, b), m) if m is not None else min(a, b)
                 for a, b in zip(reference.values.shape, template.values.shape, strict=True))
    R = _resampled(reference, max(size)).to(dev)
    T = _resampled(template, max(size)).to(dev)
    if R.shape != T.shape:  # different sizes: both to the smaller one per dimension
        pool = torch.nn.functional.adaptive_avg_pool2d if R.dim() == 2 else torch.nn.functional.adaptive_avg_pool3d
        R, T = (pool(v[None, None], size)[0, 0] for v in (R, T))
    objective = SSDObjective(SplineImage(T, Grid(template.omega, tuple(T.shape))),
                             SplineImage(R, Grid(reference.omega, tuple(R.shape))), Affine(reference.dim))
    report = progress or (lambda line: None)
    t0 = time.perf_counter()
    if method == "global":
        res = global_register(objective.with_overlap(), theta_min=theta_min, gtol=gtol, callback=lambda s: report(
            f"θ = {s.theta:9.3g}: J = {s.loss:.6g}, |∇J| = {s.grad_norm:.2e}, {s.iterations} Newton iterations"))
        w = res.w
    else:
        def each(r):
            report(f"θ = {r.theta:9.3g}: J = {r.final_loss:.6g}, |∇J| = {r.final_grad_norm:.2e}, "
                   f"{r.iterations} Newton iterations")
        if method == "single_scale":
            run = single_scale(objective, theta_min, gtol=gtol)
            each(run.history[-1])
        elif method == "traditional":
            run = traditional(objective, thetas, gtol=gtol, callback=each)
        else:
            run = predictor_corrector(objective, thetas, gtol=gtol, callback=each, record_start=False)
        w = run.w
    seconds = time.perf_counter() - t0
    loss = float(objective.loss(w, theta_min))
    identity = float(objective.loss(objective.identity(), theta_min))
    return FileRegistration(w, physical_transform(w, reference, template), loss, identity, seconds, objective)


def write_warped(path: str | os.PathLike, result: FileRegistration, reference: FileImage,
                 template: FileImage) -> Path:
    """Resample the template file onto the reference file's pixels through the found map (cubic spline of the
    template at full resolution, zero outside) and write it with the reference's geometry, atomically."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"--warped: the folder {str(path.parent)!r} does not exist")
    d = reference.dim
    ref_grid = Grid(reference.omega, tuple(reference.values.shape))
    spline = SplineImage(template.values.double(), Grid(template.omega, tuple(template.values.shape)))
    u = ref_grid.cell_centers(dtype=torch.float64)
    values = spline(affine(result.w.detach().cpu().double(), u)).reshape(ref_grid.m).numpy()

    def write(tmp: Path) -> None:
        if path.suffix.lower() in _PILLOW:
            from PIL import Image

            Image.fromarray(np.clip(np.rint(values.T), 0, 255).astype(np.uint8)).save(tmp, format=(
                "PNG" if path.suffix.lower() == ".png" else "JPEG"))
        else:
            import SimpleITK as sitk

            img = sitk.GetImageFromArray(values.transpose(tuple(reversed(range(d)))))
            img.SetOrigin(reference.origin)
            img.SetSpacing(reference.spacing)
            img.SetDirection(reference.direction)
            sitk.WriteImage(img, str(tmp))

    write_atomic(path, write, "".join(path.suffixes) or ".tmp")
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
    reg.add_argument("--warped", help="also write TEMPLATE resampled onto REFERENCE's pixels (PNG, or any format "
                     "SimpleITK writes)")
    reg.add_argument("--method", default="global", choices=METHODS, help="default: global (rotation search, then "
                     "exact Newton with continuation in θ)")
    reg.add_argument("--m", type=int, default=64, help="cells per dimension the images are averaged to "
                     "(default 64; never more than the files' pixels)")
    reg.add_argument("--theta-max", type=float, default=1e3, help="coarsest scale of the schedule (default 1e3)")
    reg.add_argument("--theta-min", type=float, default=1e-3, help="finest scale (default 1e-3)")
    reg.add_argument("--n-scales", type=int, default=30, help="scales of the schedule (default 30; the global "
                     "driver uses its own short one)")
    reg.add_argument("--gtol", type=float, default=1e-4, help="gradient tolerance at the finest scale")
    reg.add_argument("--device", default="auto", help="auto, cpu or cuda")
    reg.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (0 done, 2 bad input, with a one-line ``error:`` message)."""
    parser = _parser()
    args = parser.parse_args(argv)
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        out = Path(args.out)
        if not out.parent.is_dir():
            raise FileNotFoundError(f"--out: the folder {str(out.parent)!r} does not exist")
        if args.warped is not None and not Path(args.warped).parent.is_dir():
            raise FileNotFoundError(f"--warped: the folder {str(Path(args.warped).parent)!r} does not exist")
        theta_schedule(args.theta_max, args.theta_min, args.n_scales)
        _checks.integer("--m", args.m, 4)
        _checks.positive_number("--gtol", args.gtol)
        resolve_device(args.device)
        reference = read_image_file(args.reference, "REFERENCE")
        template = read_image_file(args.template, "TEMPLATE")
        result = register_files(reference, template, method=args.method, m=args.m, theta_max=args.theta_max,
                                theta_min=args.theta_min, n_scales=args.n_scales, gtol=args.gtol,
                                device=args.device, progress=progress)
        d = reference.dim
        center = tuple(float(v) for v in np.asarray(reference.to_physical()[0]) @ np.asarray(
            [0.5 * (lo + hi) for lo, hi in zip(reference.omega[0::2], reference.omega[1::2], strict=True)])
            + reference.to_physical()[1])
        write_itk_transform(out, result.w_physical, center)
        if args.warped is not None:
            write_warped(args.warped, result, reference, template)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ratio = result.loss / result.identity_loss if result.identity_loss > 0 else math.nan
    print(f"registered {template.path} to {reference.path} ({d}D, {args.method}): J / J(identity) = {ratio:.4g}, "
          f"{result.seconds:.2f} s; wrote {out}" + (f" and {args.warped}" if args.warped else ""))
    return 0
