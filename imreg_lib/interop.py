r"""Images and affine maps to and from ITK (SimpleITK, ITK, ANTs, 3D Slicer).

Geometry
--------
An image of this library is a tensor ``X`` of shape ``m`` on a :class:`~imreg_lib.Grid` with ``X[i, j]`` the value
at the cell centre :math:`x = (\omega_0 + (i + \tfrac12) h_0,\ \omega_2 + (j + \tfrac12) h_1)`: the first index
runs along the first coordinate (``x``), the second along ``y`` (upright), and so on in 3D. ITK stores an image
with index :math:`(i, j[, k])`, the first index fastest, at the physical point ``origin + diag(spacing) index``
(identity direction). So the same picture is an ITK image with

* ``spacing = h`` and ``origin`` = the first cell centre :math:`\omega_{lo} + h / 2`;
* the index order reversed in memory: SimpleITK's ``GetImageFromArray`` reads a NumPy array as ``[k, j, i]``,
  so it receives ``X`` transposed.

Physical coordinates then agree exactly, and so do transformations: ITK's registration maps points of the
*fixed* image into the *moving* image, as :math:`y(x)` here maps reference points into the template
(:math:`T(y(x)) \approx R(x)`). ITK writes an affine map about a centre :math:`c`,

.. math::  y(x) = A (x - c) + c + t , \qquad\text{so}\qquad b = t + c - A c

for this library's :math:`y(x) = A x + b` (:func:`affine_to_itk`, :func:`affine_from_itk`).

The user's files
----------------
A pair read from PNG/JPEG files (:func:`imreg_lib.load_pair`) is resized to ``m`` cells, turned upright (ITK's
second index runs *down* the rows) and laid on a domain of its own; ITK reads the same files with unit spacing,
origin 0 and the first index along the columns. :func:`file_geometry` gives the affine map :math:`G` from the grid
to a file's physical points, and :func:`file_transform` the found map in the files' space,
:math:`G_T \circ y \circ G_R^{-1}`, which resamples the template *file* onto the reference *file* in ITK, SimpleITK,
ANTs or Slicer.

Transform files
---------------
:func:`write_itk_transform` writes ITK's text format (``.tfm``/``.txt``, "Insight Transform File V1.0") that ITK,
SimpleITK (``ReadTransform``), ANTs (``antsApplyTransforms``) and 3D Slicer read; :func:`read_itk_transform`
reads it back. Neither needs SimpleITK. Only :func:`to_sitk_image`, :func:`from_sitk_image`,
:func:`sitk_affine` and :func:`sitk_resample` import it (``pip install SimpleITK``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ._files import write_atomic
from .device import DEFAULT_DTYPE
from .grid import Grid
from .transformations import affine

__all__ = ["affine_from_itk", "affine_to_itk", "conjugate", "file_geometry", "file_mse", "file_transform",
           "from_sitk_image", "interior", "read_itk_transform", "sitk_affine", "sitk_resample", "to_sitk_image",
           "write_itk_transform"]

_HEADER = "#Insight Transform File V1.0"


def _sitk():
    try:
        import SimpleITK as sitk
    except ImportError:  # pragma: no cover - SimpleITK is pinned in the lock file
        raise ImportError("this function needs SimpleITK: pip install SimpleITK") from None
    return sitk


def _vector(w, name: str) -> np.ndarray:
    arr = np.asarray(w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else w, dtype=np.float64).reshape(-1)
    if arr.size not in (6, 12) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must hold 6 (2D) or 12 (3D) finite affine parameters [A row-major, b], got "
                         f"{arr.size} values")
    return arr


def _dim(n_params: int) -> int:
    return 2 if n_params == 6 else 3


def _center(center: Sequence[float] | None, dim: int) -> np.ndarray:
    c = np.zeros(dim) if center is None else np.asarray(center, dtype=np.float64).reshape(-1)
    if c.size != dim or not np.all(np.isfinite(c)):
        raise ValueError(f"center must hold {dim} finite coordinates, got {center!r}")
    return c


def affine_to_itk(w: torch.Tensor | Sequence[float], center: Sequence[float] | None = None,
                  ) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    r"""ITK's ``(matrix, translation, center)`` of the affine map :math:`y(x) = A x + b`.

    Parameters
    ----------
    w
        ``[A11, A12, A21, A22, b1, b2]`` (2D) or the 12 parameters of a 3D map.
    center
        ITK's centre of rotation :math:`c` (default: the origin); it changes the translation
        :math:`t = b - c + A c`, not the map.

    Returns
    -------
    tuple
        ``matrix`` (row-major, d² numbers), ``translation`` :math:`t` and ``center`` :math:`c`.
    """
    arr = _vector(w, "w")
    d = _dim(arr.size)
    A, b, c = arr[: d * d].reshape(d, d), arr[d * d:], _center(center, d)
    t = b - c + A @ c
    return tuple(A.reshape(-1).tolist()), tuple(t.tolist()), tuple(c.tolist())


def affine_from_itk(matrix: Sequence[float], translation: Sequence[float], center: Sequence[float] | None = None,
                    *, dtype: torch.dtype = DEFAULT_DTYPE) -> torch.Tensor:
    r"""This library's parameters ``w = [A, b]`` of ITK's :math:`y(x) = A (x - c) + c + t`: :math:`b = t + c - A c`."""
    t = np.asarray(translation, dtype=np.float64).reshape(-1)
    if t.size not in (2, 3):
        raise ValueError(f"translation must hold 2 or 3 numbers, got {len(t)}")
    d = t.size
    A = np.asarray(matrix, dtype=np.float64).reshape(-1)
    if A.size != d * d:
        raise ValueError(f"matrix must hold {d * d} numbers for a {d}D map, got {A.size}")
    A = A.reshape(d, d)
    c = _center(center, d)
    return torch.as_tensor(np.concatenate([A.reshape(-1), t + c - A @ c]), dtype=dtype)


def to_sitk_image(values: torch.Tensor, grid: Grid):
    """A SimpleITK image of ``values`` (shape ``grid.m``) with ITK's geometry of ``grid`` (see the module notes)."""
    sitk = _sitk()
    if not isinstance(values, torch.Tensor) or tuple(values.shape) != tuple(grid.m):
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"values must be a tensor of shape grid.m = {grid.m}, got {shape}")
    arr = values.detach().to("cpu", torch.float64).numpy()
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(tuple(reversed(range(arr.ndim))))))
    image.SetSpacing(tuple(float(h) for h in grid.h))
    image.SetOrigin(tuple(lo + 0.5 * h for lo, h in zip(grid.lower, grid.h, strict=True)))
    return image


def from_sitk_image(image, *, dtype: torch.dtype = DEFAULT_DTYPE) -> tuple[torch.Tensor, Grid]:
    """The tensor and grid of a SimpleITK image with identity direction (the inverse of :func:`to_sitk_image`)."""
    sitk = _sitk()
    d = image.GetDimension()
    if not np.allclose(np.asarray(image.GetDirection()).reshape(d, d), np.eye(d)):
        raise ValueError("image must have the identity direction (resample it onto an axis-aligned grid first)")
    arr = sitk.GetArrayFromImage(image).astype(np.float64)
    values = np.ascontiguousarray(arr.transpose(tuple(reversed(range(arr.ndim)))))
    h, origin = image.GetSpacing(), image.GetOrigin()
    omega = []
    for k in range(d):
        lo = origin[k] - 0.5 * h[k]
        omega += [lo, lo + values.shape[k] * h[k]]
    return torch.as_tensor(values, dtype=dtype), Grid(omega, values.shape)


def sitk_affine(w: torch.Tensor | Sequence[float], center: Sequence[float] | None = None):
    """A ``SimpleITK.AffineTransform`` equal to :math:`y(x) = A x + b` (centre ``center``, default the origin)."""
    sitk = _sitk()
    matrix, translation, c = affine_to_itk(w, center)
    tr = sitk.AffineTransform(len(translation))
    tr.SetCenter(c)
    tr.SetMatrix(matrix)
    tr.SetTranslation(translation)
    return tr


def sitk_resample(values: torch.Tensor, grid: Grid, transform, *, interpolator: str = "bspline",
                  default: float = 0.0) -> torch.Tensor:
    """Resample an image with SimpleITK through ``transform`` onto its own grid: ``values(y(x_c))``.

    Parameters
    ----------
    values, grid
        The (moving) image and its grid; the result lives on the same grid.
    transform
        A SimpleITK transform (e.g. read by ``SimpleITK.ReadTransform``) or this library's affine parameters ``w``.
    interpolator
        ``"bspline"`` (cubic B-spline, like this library's spline at θ = 0), ``"linear"`` or ``"nearest"``.
    default
        The value outside the image.

    Returns
    -------
    torch.Tensor
        Flat values at the cell centres, first index slowest (the order of ``grid.cell_centers()``).
    """
    sitk = _sitk()
    kinds = {"bspline": sitk.sitkBSpline, "linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}
    if interpolator not in kinds:
        raise ValueError(f"interpolator must be one of {tuple(kinds)}, got {interpolator!r}")
    if not isinstance(transform, sitk.Transform):
        transform = sitk_affine(transform, grid.center())
    image = to_sitk_image(values, grid)
    out = sitk.Resample(image, image, transform, kinds[interpolator], float(default), sitk.sitkFloat64)
    return from_sitk_image(out, dtype=values.dtype)[0].reshape(-1).to(values.device)


def interior(grid: Grid, w: torch.Tensor, margin_cells: float = 4.0) -> torch.Tensor:
    """Mask of the cell centres whose image under ``w`` lies at least ``margin_cells`` inside the domain.

    Two B-spline interpolators of the same data (this library's and ITK's) agree there; near the boundary they
    extend the image differently (zero outside here, mirrored coefficients in ITK).
    """
    y = affine(torch.as_tensor(w, dtype=torch.float64).cpu(), grid.cell_centers(dtype=torch.float64))
    margin = margin_cells * torch.tensor(grid.h, dtype=torch.float64)
    lo = torch.tensor(grid.lower, dtype=torch.float64) + margin
    hi = torch.tensor(grid.upper, dtype=torch.float64) - margin
    return ((y > lo) & (y < hi)).all(dim=1)


def conjugate(w: torch.Tensor | Sequence[float], reference: tuple[np.ndarray, np.ndarray],
              template: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
    r"""The map :math:`y(u) = Au + b` seen through :math:`G_R(u) = D_R u + e_R` and :math:`G_T(u) = D_T u + e_T`:
    :math:`G_T \circ y \circ G_R^{-1}`, i.e. :math:`A' = D_T A D_R^{-1}` and
    :math:`b' = D_T (b - A D_R^{-1} e_R) + e_T`. Returns ``[A' row-major, b']`` (float64)."""
    arr = _vector(w, "w")
    d = _dim(arr.size)
    A, b = arr[: d * d].reshape(d, d), arr[d * d:]
    DR, eR = (np.asarray(v, dtype=np.float64) for v in reference)
    DT, eT = (np.asarray(v, dtype=np.float64) for v in template)
    DRinv = np.linalg.inv(DR)
    return torch.from_numpy(np.concatenate([(DT @ A @ DRinv).reshape(-1), DT @ (b - A @ DRinv @ eR) + eT]))


def file_geometry(grid: Grid, placement) -> tuple[np.ndarray, np.ndarray]:
    r"""``(D, e)`` of the affine map :math:`G(u) = D u + e` from ``grid`` to the physical points of the file that
    :class:`~imreg_lib.data.FilePlacement` ``placement`` describes (as ITK reads PNG/JPEG).

    The grid's cell :math:`(i, j)` holds the file resized from ``(columns, rows)`` to ``grid.m`` pixels (resampling
    by pixel areas: output centre :math:`i + \tfrac12` sits at input :math:`(i + \tfrac12) \cdot columns / m_0`),
    upright (:math:`j` counted from the bottom row), then turned by ``placement.orientation``; so
    :math:`p_x = (u_x - \omega_0)\, columns / L_0 - \tfrac12` and
    :math:`p_y = rows - (u_y - \omega_2)\, rows / L_1 - \tfrac12` (:math:`L` the domain's lengths), after undoing
    the turn, in pixel indices; the header's spacing, direction and origin then give the physical point.
    """
    if grid.dim != 2:
        raise ValueError("file_geometry: image files are laid on 2D grids")
    cols, rows = placement.size
    w0, w1, w2, w3 = grid.omega
    lx, ly = w1 - w0, w3 - w2
    D = np.diag([cols / lx, -rows / ly])
    e = np.array([-w0 * cols / lx - 0.5, rows + w2 * rows / ly - 0.5])
    flip = {"upright": (1.0, 1.0), "rotate_180": (-1.0, -1.0), "mirror_x": (-1.0, 1.0)}[placement.orientation]
    F = np.diag(flip)  # the turn: u -> F u + f, about the domain's centre
    f = np.array([w0 + w1 if flip[0] < 0 else 0.0, w2 + w3 if flip[1] < 0 else 0.0])
    H, o = _header(placement)  # pixel index n -> physical point o + H n
    return H @ D @ F, H @ (D @ f + e) + o


def _header(placement) -> tuple[np.ndarray, np.ndarray]:
    """``(direction @ diag(spacing), origin)`` of a :class:`~imreg_lib.data.FilePlacement`."""
    direction = np.asarray(placement.direction, dtype=np.float64).reshape(2, 2)
    return direction @ np.diag(np.asarray(placement.spacing, dtype=np.float64)), np.asarray(placement.origin,
                                                                                              dtype=np.float64)


def file_transform(w: torch.Tensor | Sequence[float], pair) -> tuple[torch.Tensor, tuple[float, ...]]:
    """The map ``w`` found on ``pair`` (an :class:`~imreg_lib.ImagePair` read from files) in the files' physical
    space, and the reference file's centre (ITK's centre of rotation, for a readable translation)."""
    if pair.files is None:
        raise ValueError("file_transform: the pair was not read from files (pair.files is None)")
    ref, tmpl = (file_geometry(pair.grid, placement) for placement in pair.files)
    cols, rows = pair.files[0].size
    H, o = _header(pair.files[0])
    return conjugate(w, ref, tmpl), tuple(float(v) for v in H @ np.array([0.5 * (cols - 1), 0.5 * (rows - 1)]) + o)


def _number(v: float) -> str:
    return repr(float(v))  # shortest text that reads back to the same float64


def write_itk_transform(path: str | os.PathLike, w: torch.Tensor | Sequence[float],
                        center: Sequence[float] | None = None) -> Path:
    """Write :math:`y(x) = A x + b` as an ITK transform file (text, read by ITK, SimpleITK, ANTs and Slicer).

    The file maps points of the reference (ITK's fixed image) into the template (the moving image), so resampling
    the template with it gives the registered template. It is written to a temporary file and renamed.

    Parameters
    ----------
    path
        Target file, conventionally ``*.tfm`` or ``*.txt``.
    w
        The 6 (2D) or 12 (3D) affine parameters.
    center
        ITK's centre of rotation (default: the origin; e.g. ``grid.center()`` for a readable translation).
    """
    matrix, translation, c = affine_to_itk(w, center)
    d = len(translation)
    text = "\n".join([_HEADER, "#Transform 0", f"Transform: AffineTransform_double_{d}_{d}",
                      "Parameters: " + " ".join(_number(v) for v in matrix + translation),
                      "FixedParameters: " + " ".join(_number(v) for v in c), ""])
    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise FileNotFoundError(f"path: the folder {str(path.parent)!r} does not exist")
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def read_itk_transform(path: str | os.PathLike, *, dtype: torch.dtype = DEFAULT_DTYPE,
                       ) -> tuple[torch.Tensor, tuple[float, ...]]:
    """Read an affine ITK transform file (``AffineTransform`` or ``MatrixOffsetTransformBase``, 2D or 3D).

    Returns
    -------
    tuple
        ``(w, center)``: this library's parameters and the file's centre.

    Raises
    ------
    ValueError
        If the file is not an ITK text transform file holding exactly one affine transform.
    """
    path = Path(path)
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if not lines or lines[0] != _HEADER:
        raise ValueError(f"{str(path)!r} is not an ITK text transform file (first line {_HEADER!r})")
    fields = {}
    for ln in lines[1:]:
        if ln.startswith("#"):
            continue
        key, _, value = ln.partition(":")
        if key in fields:
            raise ValueError(f"{str(path)!r} holds more than one transform; only a single affine one is read")
        fields[key] = value.strip()
    kind = fields.get("Transform", "")
    if not (kind.startswith(("AffineTransform_double_", "MatrixOffsetTransformBase_double_"))):
        raise ValueError(f"{str(path)!r} holds a {kind or 'missing'} transform; only affine transforms are read")
    d = int(kind.rsplit("_", 1)[-1])
    params = [float(v) for v in fields.get("Parameters", "").split()]
    fixed = [float(v) for v in fields.get("FixedParameters", "").split()]
    if len(params) != d * d + d or len(fixed) != d or not all(map(math.isfinite, params + fixed)):
        raise ValueError(f"{str(path)!r}: a {d}D affine transform needs {d * d + d} parameters and {d} fixed "
                         f"parameters, got {len(params)} and {len(fixed)}")
    return affine_from_itk(params[: d * d], params[d * d:], fixed, dtype=dtype), tuple(fixed)


def file_mse(transform_path: str | os.PathLike, reference_path: str | os.PathLike, template_path: str | os.PathLike,
             margin: int = 4) -> tuple[float, float]:
    """Resample the template *file* onto the reference *file* with SimpleITK through an ITK transform file (in the
    files' physical space) and return the mean squared difference to the reference file without and with it, over
    the pixels at least ``margin`` pixels from the reference file's border (2D or 3D; a colour file by its first
    channel; a template of another size is compared through the identity)."""
    sitk = _sitk()

    def read(path):
        image = sitk.ReadImage(str(path), sitk.sitkFloat64)
        return image if image.GetNumberOfComponentsPerPixel() == 1 else sitk.VectorIndexSelectionCast(
            image, 0, sitk.sitkFloat64)

    R, T = read(reference_path), read(template_path)
    inner = tuple(slice(margin, -margin) for _ in range(R.GetDimension()))
    r = sitk.GetArrayFromImage(R)[inner]
    w = sitk.GetArrayFromImage(sitk.Resample(T, R, sitk.ReadTransform(str(transform_path)), sitk.sitkLinear, 0.0))
    t = T if T.GetSize() == R.GetSize() else sitk.Resample(T, R, sitk.Transform(), sitk.sitkLinear, 0.0)
    return float(np.mean((sitk.GetArrayFromImage(t)[inner] - r) ** 2)), float(np.mean((w[inner] - r) ** 2))
