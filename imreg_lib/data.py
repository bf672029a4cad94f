r"""Image data: the project's synthetic hand pair and a loader for the user's own images.

Synthetic pair
--------------
The paper registers two hand radiographs (FAIR's "hands", which this project cannot ship). The default data
are a phantom drawn by :func:`hand_phantom`: a forearm with radius and ulna, carpal bones, a palm with five
metacarpals, four fingers with three phalanges each and a thumb with two, in soft tissue, on a black
background, on the paper's 0-255 scale and domain :math:`(0, 20) \times (0, 25)`. It is a continuous
function of position, averaged over ``supersample²`` points per cell, so any resolution ``m`` samples the
same picture.

The template is the reference seen through a known affine motion :math:`y^*` (a rotation near 180° with
some anisotropic scaling and a shift, as in the paper's Fig. 2 where the template is rotated by 180°) and a
mild intensity change: :math:`T(x) = g(R(y^{*-1}(x)))`, so that :math:`T(y^*(x)) = g(R(x))` and :math:`w^*`
(the parameters of :math:`y^*`) is the ground truth of the registration.

Image files
-----------
:func:`load_image` reads a greyscale PNG/JPEG with Pillow, optionally resizes it (bicubic, Pillow's default
for greyscale, as the authors did) and returns float64 values 0-255 on the paper's convention
``X[i, j] = A[m-1-j, i]`` (i along x, j along y from bottom to top), so the picture is upright.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from . import _checks
from ._files import itk_header
from .device import DEFAULT_DTYPE, resolve_device
from .grid import PAPER_OMEGA, Grid
from .transformations import affine, affine_from_geometry

__all__ = [
    "DOMAINS",
    "FilePlacement",
    "HAND_MOTION",
    "file_domain",
    "ImagePair",
    "hand_phantom",
    "image_pair",
    "load_image",
    "load_pair",
    "moved_pair",
    "SAMPLE_IMAGES",
    "sample_image",
    "ORIENTATIONS",
    "synthetic_hand_pair",
    "synthetic_volume_motion_pair",
    "VOLUME_MOTION",
    "volume_phantom",
]

#: How a loaded image may be turned after the upright convention: as it is, rotated by 180° (the template of the
#: paper's Figs 2-3), or mirrored along x (the template of the paper's Table 1 scripts).
ORIENTATIONS = ("upright", "rotate_180", "mirror_x")

#: Where a user's image files are laid: ``"file"`` keeps their aspect ratio (a domain 20 wide and as high as the
#: image's shape says); ``"paper"`` is the paper's ``(0, 20) × (0, 25)`` whatever the shape (as the authors did).
DOMAINS = ("file", "paper")

#: The known motion of the default template: (angle in degrees, (scale_x, scale_y), shift) about the centre.
HAND_MOTION = {"angle_deg": 172.0, "scale": (1.06, 0.94), "shift": (0.35, -0.5)}

_SOFT, _BONE = 52.0, 150.0  # grey levels of soft tissue and of the extra brightness of bone
_EDGE = 0.12  # edge width (physical units) of the smooth occupancy


# (start, end, radius) capsules in physical coordinates of the (0, 20) x (0, 25) domain
def _finger(base, tip, radius, n_bones, gap=0.62, bone_radius=None):
    """Soft-tissue capsule and ``n_bones`` phalanges separated by joint gaps along base -> tip."""
    bx, by = base
    tx, ty = tip
    length = math.hypot(tx - bx, ty - by)
    ux, uy = (tx - bx) / length, (ty - by) / length
    fractions = {2: (0.55, 0.45), 3: (0.43, 0.32, 0.25)}[n_bones]
    bones, s = [], 0.1
    usable = length - 0.55 - gap * n_bones
    for f in fractions:
        a = s + 0.5 * gap
        b = a + f * usable
        bones.append(((bx + a * ux, by + a * uy), (bx + b * ux, by + b * uy), bone_radius or 0.42 * radius))
        s = b + 0.5 * gap
    return (base, tip, radius), bones


def _hand_geometry():
    soft = [((10.0, -3.0), (10.0, 6.5), 3.1),  # forearm
            ((8.3, 8.6), (12.0, 9.0), 2.5),  # palm
            ((7.7, 11.0), (12.9, 11.3), 1.9),  # knuckles
            ((9.9, 6.6), (10.3, 6.6), 2.9)]  # wrist / heel of the hand
    bones = [((8.6, -2.0), (8.9, 5.4), 0.78),  # radius
             ((11.5, -2.0), (11.3, 5.5), 0.62)]  # ulna
    for cx, cy, r in [(8.4, 6.7, 0.55), (9.6, 6.5, 0.55), (10.8, 6.6, 0.5), (11.9, 6.9, 0.45),
                      (8.9, 7.8, 0.5), (10.1, 7.8, 0.55), (11.2, 7.9, 0.5), (12.3, 8.1, 0.45)]:
        bones.append(((cx, cy), (cx, cy), r))  # carpals
    fingers = [  # (metacarpal start, finger base, tip, radius)
        ((8.3, 8.6), (7.0, 12.6), (5.6, 20.3), 0.86),  # index
        ((9.6, 8.7), (9.2, 13.1), (8.9, 22.3), 0.9),  # middle
        ((10.9, 8.8), (11.3, 12.9), (12.0, 21.4), 0.86),  # ring
        ((12.1, 8.9), (13.2, 12.2), (14.8, 18.6), 0.76),  # little
    ]
    for start, base, tip, radius in fingers:
        s, bs = _finger(base, tip, radius, 3)
        soft.append(s)
        bones.extend(bs)
        bones.append((start, (base[0] + 0.05 * (start[0] - base[0]), base[1] - 0.35), 0.34))  # metacarpal
    # thumb: from the radial side of the wrist, pointing up and out
    s, bs = _finger((6.9, 8.4), (3.2, 14.3), 1.0, 2)
    soft.append(s)
    soft.append(((8.0, 7.2), (6.7, 8.9), 1.35))  # thenar
    bones.extend(bs)
    bones.append(((8.6, 7.2), (7.1, 8.6), 0.4))  # first metacarpal
    return soft, bones


_SOFT_CAPSULES, _BONE_CAPSULES = _hand_geometry()


def _occupancy(px: np.ndarray, py: np.ndarray, capsules) -> np.ndarray:
    """Smooth union (max) of capsule indicators, edge width ``_EDGE``."""
    occ = np.zeros_like(px)
    for (ax, ay), (bx, by), r in capsules:
        dx, dy = bx - ax, by - ay
        L2 = dx * dx + dy * dy
        s = np.zeros_like(px) if L2 == 0 else np.clip(((px - ax) * dx + (py - ay) * dy) / L2, 0.0, 1.0)
        dist = np.hypot(px - ax - s * dx, py - ay - s * dy) - r
        occ = np.maximum(occ, 0.5 * (1.0 - np.tanh(dist / _EDGE)))
    return occ


def hand_phantom(points: np.ndarray | torch.Tensor) -> np.ndarray:
    """Grey values (0-255) of the hand phantom at physical points (N, 2) in the paper's domain."""
    p = np.asarray(points.detach().cpu() if isinstance(points, torch.Tensor) else points, dtype=np.float64)
    px, py = p[:, 0], p[:, 1]
    soft = _occupancy(px, py, _SOFT_CAPSULES)
    bone = _occupancy(px, py, _BONE_CAPSULES)
    # bone is brighter at its cortical rim; soft tissue is a little thicker towards the palm centre
    thickness = 1.0 + 0.15 * np.exp(-((px - 10.0) ** 2 + (py - 10.0) ** 2) / 18.0)
    return np.clip(_SOFT * soft * thickness + _BONE * bone * (0.85 + 0.3 * (1.0 - bone)), 0.0, 255.0)


def _sample(grid: Grid, fn, supersample: int) -> np.ndarray:
    """Cell averages of ``fn`` over ``supersample²`` sub-points per cell, shape ``grid.m``."""
    fine = Grid(grid.omega, tuple(k * supersample for k in grid.m))
    vals = fn(fine.cell_centers(dtype=torch.float64).numpy()).reshape(fine.m)
    m0, m1 = grid.m
    return vals.reshape(m0, supersample, m1, supersample).mean(axis=(1, 3))


@dataclass(frozen=True)
class ImagePair:
    """A template/reference pair on a common grid, with the ground truth if it is known.

    Attributes
    ----------
    template, reference
        Float tensors of shape ``grid.m`` on the paper's ``X[i, j]`` convention.
    grid
        The common grid.
    w_true
        Parameters with ``T(y(w_true, x)) ≈ R(x)`` (``None`` for user images).
    source
        ``"synthetic hand"`` or the file names.
    files
        For images read from files: ``(reference, template)`` :class:`FilePlacement`, how each file's pixels lie on
        :attr:`grid` (:func:`imreg_lib.interop.file_transform` turns a result into the files' physical space).
    """

    template: torch.Tensor
    reference: torch.Tensor
    grid: Grid
    w_true: torch.Tensor | None
    source: str
    files: tuple[FilePlacement, FilePlacement] | None = None


@dataclass(frozen=True)
class FilePlacement:
    """How an image file was laid on a grid: its path, its size in pixels ``(columns, rows)``, the turn of
    :data:`ORIENTATIONS` applied after loading, and the geometry ITK reads from the file's header (the pixel with
    index ``n``, first along the columns, second down the rows, sits at ``origin + direction @ (spacing * n)``; a
    PNG without ``sCAL`` or a JPEG without a resolution: unit spacing, origin 0);
    :func:`imreg_lib.interop.file_geometry` maps the grid there."""

    path: str
    size: tuple[int, int]
    orientation: str = "upright"
    origin: tuple[float, float] = (0.0, 0.0)
    spacing: tuple[float, float] = (1.0, 1.0)
    direction: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 1.0)


def synthetic_hand_pair(m: int | Sequence[int] = 32, omega: Sequence[float] = PAPER_OMEGA, *,
                        supersample: int = 4, motion: dict | None = None, device: str | torch.device = "auto",
                        dtype: torch.dtype = DEFAULT_DTYPE) -> ImagePair:
    """The default data: the hand phantom (reference) and its moved copy (template), deterministic.

    Parameters
    ----------
    m
        Cells per dimension (>= 4).
    omega
        Domain; the phantom is drawn in the paper's domain.
    supersample
        Sub-samples per cell and dimension (anti-aliasing), >= 1.
    motion
        Overrides of :data:`HAND_MOTION` (``angle_deg``, ``scale``, ``shift``).
    device, dtype
        Where and in which precision to return the tensors.
    """
    grid = Grid(omega, m)
    if grid.dim != 2 or min(grid.m) < 4:
        raise ValueError(f"m must describe a 2D grid with at least 4 cells per dimension, got m={m!r}")
    if not isinstance(supersample, int) or supersample < 1:
        raise ValueError(f"supersample must be a positive integer, got {supersample!r}")
    motion = {**HAND_MOTION, **(motion or {})}
    unknown = set(motion) - set(HAND_MOTION)
    if unknown:
        raise ValueError(f"motion has unknown keys {sorted(unknown)}; allowed: {sorted(HAND_MOTION)}")
    dev = resolve_device(device)
    w_true = affine_from_geometry(center=grid.center(), dtype=torch.float64, **motion)
    A = w_true[:4].reshape(2, 2)
    inv = torch.cat([torch.linalg.inv(A).reshape(-1), -torch.linalg.solve(A, w_true[4:])])

    def moved(points: np.ndarray) -> np.ndarray:
        z = affine(inv, torch.from_numpy(points)).numpy()
        v = hand_phantom(z)
        return 255.0 * 0.93 * (v / 255.0) ** 0.92  # mild exposure difference

    reference = _sample(grid, hand_phantom, supersample)
    template = _sample(grid, moved, supersample)
    as_t = lambda a: torch.as_tensor(a, dtype=dtype).to(dev)  # noqa: E731
    return ImagePair(as_t(template), as_t(reference), grid, w_true.to(device=dev, dtype=dtype), "synthetic hand")


#: Real images that ship offline with matplotlib's sample data: its 256 × 256 MRI slice and its photograph.
SAMPLE_IMAGES = ("mri", "grace_hopper")


def sample_image(name: str, *, device: str | torch.device = "auto", dtype: torch.dtype = DEFAULT_DTYPE,
                 ) -> torch.Tensor:
    """A real greyscale image from matplotlib's sample data (offline), upright, on the 0-255 scale.

    ``"mri"``: the 256 × 256 MRI slice ``s1045.ima.gz`` (raw little-endian 16-bit, scaled to 0-255);
    ``"grace_hopper"``: the photograph ``grace_hopper.jpg`` in grey. Returned on the paper's convention
    ``X[i, j]`` (i along x, j along y from the bottom), as :func:`load_image` returns files.
    """
    from matplotlib import cbook

    _checks.one_of("name", name, SAMPLE_IMAGES)
    if name == "mri":
        with cbook.get_sample_data("s1045.ima.gz") as f:
            A = np.frombuffer(f.read(), dtype="<u2").reshape(256, 256).astype(np.float64)
        A = 255.0 * A / A.max()
    else:
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            A = np.asarray(Image.open(f).convert("L"), dtype=np.float64)
    X = np.ascontiguousarray(A[::-1, :].T)
    return torch.as_tensor(X, dtype=dtype).to(resolve_device(device))


def moved_pair(image: torch.Tensor, omega: Sequence[float], m: int | Sequence[int] = 32, *,
               motion: dict | None = None, supersample: int = 4, source: str = "image",
               device: str | torch.device = "auto", dtype: torch.dtype = DEFAULT_DTYPE) -> ImagePair:
    r"""A pair with a known motion made from any 2D image: the image is the reference, its moved copy the template.

    The image (values at the cell centres of ``Grid(omega, image.shape)``, e.g. a file loaded at its own size) is
    interpolated by its cubic spline (SciPy's ``map_coordinates``, which uses no BLAS, so the pair is the same to
    the bit under every numeric setting; zero outside the domain); both images of the pair are cell
    averages over ``supersample²`` sub-points per cell of an ``m``-cell grid on the same domain:
    :math:`R(x) = I(x)` and :math:`T(x) = I(y^{*-1}(x))`, so that :math:`T(y^*(x)) = R(x)` wherever
    :math:`y^*(x)` stays in the domain, with :math:`y^*` the affine map of ``motion`` about the domain's centre
    (:data:`HAND_MOTION`'s keys; default: the hand's motion).

    Parameters
    ----------
    image
        2D tensor of grey values.
    omega
        Its domain ``(x0, x1, y0, y1)``.
    m
        Cells per dimension of the pair (>= 4).
    motion
        Overrides of :data:`HAND_MOTION` (``angle_deg``, ``scale``, ``shift``).
    supersample
        Sub-points per cell and dimension (anti-aliasing), >= 1.
    source
        The name recorded in :attr:`ImagePair.source`.
    """
    import scipy.ndimage

    if not isinstance(image, torch.Tensor) or image.dim() != 2 or min(image.shape) < 4:
        raise ValueError(f"image must be a 2D tensor with at least 4 pixels per dimension, got "
                         f"{tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}")
    grid = Grid(omega, m)
    if grid.dim != 2 or min(grid.m) < 4:
        raise ValueError(f"m must describe a 2D grid with at least 4 cells per dimension, got m={m!r}")
    _checks.integer("supersample", supersample, 1)
    motion = {**HAND_MOTION, **(motion or {})}
    unknown = set(motion) - set(HAND_MOTION)
    if unknown:
        raise ValueError(f"motion has unknown keys {sorted(unknown)}; allowed: {sorted(HAND_MOTION)}")
    dev = resolve_device(device)
    w_true = affine_from_geometry(center=grid.center(), dtype=torch.float64, **motion)
    A = w_true[:4].reshape(2, 2)
    inv = torch.cat([torch.linalg.inv(A).reshape(-1), -torch.linalg.solve(A, w_true[4:])])
    source_grid = Grid(omega, tuple(image.shape))
    values = image.detach().to(device="cpu", dtype=torch.float64).numpy()
    lower, h = np.asarray(source_grid.lower), np.asarray(source_grid.h)
    coefficients = scipy.ndimage.spline_filter(values, order=3, mode="grid-constant")

    def picture(points: np.ndarray) -> np.ndarray:  # the cubic spline of the image, zero outside its domain
        index = ((points - lower) / h - 0.5).T
        return scipy.ndimage.map_coordinates(coefficients, index, order=3, mode="grid-constant", prefilter=False)

    reference = _sample(grid, picture, supersample)
    template = _sample(grid, lambda p: picture(affine(inv, torch.from_numpy(p)).numpy()), supersample)
    as_t = lambda a: torch.as_tensor(a, dtype=dtype).to(dev)  # noqa: E731
    return ImagePair(as_t(template), as_t(reference), grid, w_true.to(device=dev, dtype=dtype), source)


def load_image(path: str | os.PathLike, m: int | Sequence[int] | None = None, *, orientation: str = "upright",
               device: str | torch.device = "auto", dtype: torch.dtype = DEFAULT_DTYPE) -> torch.Tensor:
    """Load a greyscale image file as a tensor on the paper's convention (upright, 0-255).

    Parameters
    ----------
    path
        PNG or JPEG (anything Pillow reads) holding a greyscale image (RGB files whose three channels are
        equal are accepted).
    m
        Resize to ``m`` cells (an int for a square, or ``(m_x, m_y)``) with bicubic resampling, as the
        paper does; ``None`` keeps the file's size.
    orientation
        One of :data:`ORIENTATIONS`: ``"upright"`` (the default), ``"rotate_180"``
        (:math:`X'[i, j] = X[m_x-1-i, m_y-1-j]`) or ``"mirror_x"`` (:math:`X'[i, j] = X[m_x-1-i, j]`).

    Returns
    -------
    torch.Tensor
        Shape ``(m_x, m_y)`` with ``X[i, j] = A[m_y - 1 - j, i]`` for the pixel array ``A[row, column]``, then
        turned as ``orientation`` says.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not an image Pillow can read, is in colour, or ``m`` is invalid.
    """
    from PIL import Image, UnidentifiedImageError

    if m is not None:
        allowed = "None, an integer >= 4 or a pair of integers >= 4 (cells per dimension)"
        if not isinstance(m, (int, tuple, list)):
            raise ValueError(f"m must be {allowed}, got {m!r}")
        size = _checks.integer_tuple("m", m, 2, 4, allowed=allowed)
    _checks.one_of("orientation", orientation, ORIENTATIONS)
    path = os.fspath(path)
    if not os.path.isfile(path):
        hint = "" if os.path.isabs(path) else (
            f" (a relative path is read from the working directory, {os.getcwd()!r}; notebooks run in notebooks/, "
            f"so a file in the repository's root is '../{path}' there, or give an absolute path)")
        raise FileNotFoundError(f"image file not found: {path!r}, tried {os.path.abspath(path)!r}{hint}")
    try:
        with Image.open(path) as im:
            im.load()
            img = im
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"could not read {path!r} as an image ({err})") from None
    if img.mode in ("RGB", "RGBA"):
        arr = np.asarray(img.convert("RGB"), dtype=np.int16)
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise ValueError(f"{path!r} is a colour image ({img.mode}); convert it to greyscale first, e.g. "
                             "Image.open(p).convert('L').save(q)")
        img = img.convert("L")
    elif img.mode not in ("L", "I;16", "I", "F"):
        raise ValueError(f"{path!r} has image mode {img.mode!r}; a greyscale image (mode 'L') is required")
    if m is not None:
        img = img.resize(size)  # Pillow's default for greyscale: bicubic, as in the paper
    A = np.asarray(img, dtype=np.float64)  # A[row, column], row 0 at the top
    X = A[::-1, :].T  # X[i, j] = A[rows-1-j, i]
    if orientation == "rotate_180":
        X = X[::-1, ::-1]
    elif orientation == "mirror_x":
        X = X[::-1, :]
    X = np.ascontiguousarray(X)
    return torch.as_tensor(X, dtype=dtype).to(resolve_device(device))


def _file_size(path: str | os.PathLike) -> tuple[int, int]:
    from PIL import Image

    with Image.open(os.fspath(path)) as im:
        return tuple(im.size)


def file_domain(path: str | os.PathLike, width: float = 20.0) -> tuple[float, float, float, float]:
    """The domain ``(0, width, 0, width * rows s_y / (columns s_x))`` that keeps an image file's aspect ratio, with
    the pixel spacing ``(s_x, s_y)`` that ITK reads from its header (unit spacing without one)."""
    cols, rows = _file_size(path)
    _, (sx, sy), _ = itk_header(path, 2)
    return (0.0, float(width), 0.0, float(width) * (rows * sy) / (cols * sx))


def load_pair(reference_path: str | os.PathLike, template_path: str | os.PathLike,
              m: int | Sequence[int] | None = None, omega: Sequence[float] | None = None, *,
              template_orientation: str = "upright", domain: str = "file", device: str | torch.device = "auto",
              dtype: torch.dtype = DEFAULT_DTYPE) -> ImagePair:
    """Load a user's reference and template files as an :class:`ImagePair` (no ground truth).

    ``template_orientation`` turns the template after loading (:data:`ORIENTATIONS`); the paper's Figs 2-3 use
    ``"rotate_180"`` with its hand pair. The grid's domain is ``omega`` if given, else by ``domain``
    (:data:`DOMAINS`): ``"file"`` keeps the reference file's aspect ratio, ``"paper"`` is the paper's.

    Raises
    ------
    ValueError
        If the two images do not have the same size after resizing.
    """
    _checks.one_of("template_orientation", template_orientation, ORIENTATIONS)
    _checks.one_of("domain", domain, DOMAINS)
    R = load_image(reference_path, m, device=device, dtype=dtype)
    T = load_image(template_path, m, orientation=template_orientation, device=device, dtype=dtype)
    if omega is None:
        omega = PAPER_OMEGA if domain == "paper" else file_domain(reference_path)
    if R.shape != T.shape:
        raise ValueError(f"reference_path and template_path have different sizes {tuple(R.shape)} and "
                         f"{tuple(T.shape)}; pass m to resize both")
    names = f"{os.path.basename(os.fspath(reference_path))} / {os.path.basename(os.fspath(template_path))}"
    if template_orientation != "upright":
        names += f" ({template_orientation.replace('_', ' ')})"
    files = (FilePlacement(os.fspath(reference_path), _file_size(reference_path), "upright",
                           *itk_header(reference_path, 2)),
             FilePlacement(os.fspath(template_path), _file_size(template_path), template_orientation,
                           *itk_header(template_path, 2)))
    return ImagePair(T, R, Grid(omega, tuple(R.shape)), None, names, files)


def image_pair(m: int | Sequence[int] = 32, reference_path: str | os.PathLike | None = None,
               template_path: str | os.PathLike | None = None, *, template_orientation: str = "upright",
               domain: str = "file", device: str | torch.device = "auto",
               dtype: torch.dtype = DEFAULT_DTYPE) -> ImagePair:
    """The pair a notebook registers: the synthetic hand, or the user's two files resized to ``m`` cells.

    Parameters
    ----------
    m
        Cells per dimension.
    reference_path, template_path
        Both ``None`` (the synthetic hand of :func:`synthetic_hand_pair`, with its known motion) or both paths
        (:func:`load_pair`; no ground truth).
    template_orientation
        How the template file is turned after loading (:data:`ORIENTATIONS`); only ``"upright"`` applies to the
        synthetic hand, whose template is already moved.
    domain
        Where files are laid (:data:`DOMAINS`): ``"file"`` keeps their aspect ratio, ``"paper"`` is the paper's
        20 × 25 domain; the synthetic hand is always on the paper's.

    Raises
    ------
    ValueError
        If only one path is given or ``template_orientation`` is not allowed, before any file is read.
    """
    _checks.one_of("template_orientation", template_orientation, ORIENTATIONS)
    _checks.one_of("domain", domain, DOMAINS)
    if (reference_path is None) != (template_path is None):
        raise ValueError("set both reference_path and template_path, or neither")
    if reference_path is None:
        if template_orientation != "upright":
            raise ValueError(f"template_orientation={template_orientation!r} turns a template file; the synthetic "
                             "hand (no reference_path / template_path) takes only 'upright'")
        return synthetic_hand_pair(m, device=device, dtype=dtype)
    return load_pair(reference_path, template_path, m, template_orientation=template_orientation, domain=domain,
                     device=device, dtype=dtype)


#: The known motion of the 3D pair: rotations about z and x (degrees), scaling and shift about the centre.
VOLUME_MOTION = {"angles_deg": (35.0, 15.0), "scale": (1.05, 0.95, 1.0), "shift": (0.4, -0.5, 0.3)}
_VOLUME_OMEGA = (0.0, 20.0, 0.0, 25.0, 0.0, 15.0)


def _volume_affine(center: Sequence[float], angles_deg: Sequence[float], scale: Sequence[float],
                   shift: Sequence[float]) -> torch.Tensor:
    az, ax = (math.radians(a) for a in angles_deg)
    Rz = torch.tensor([[math.cos(az), -math.sin(az), 0.0], [math.sin(az), math.cos(az), 0.0], [0.0, 0.0, 1.0]],
                      dtype=torch.float64)
    Rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(ax), -math.sin(ax)], [0.0, math.sin(ax), math.cos(ax)]],
                      dtype=torch.float64)
    A = Rz @ Rx @ torch.diag(torch.tensor(scale, dtype=torch.float64))
    c = torch.tensor(center, dtype=torch.float64)
    return torch.cat([A.reshape(-1), c - A @ c + torch.tensor(shift, dtype=torch.float64)])


def volume_phantom(points: torch.Tensor) -> torch.Tensor:
    """An asymmetric 3D phantom on (0, 20) x (0, 25) x (0, 15): an ellipsoidal body, a bright rod and three blobs
    of different sizes (so every rotation is identifiable), 0-255 scale, smooth edges."""
    c = torch.tensor([10.0, 12.5, 7.5], dtype=torch.float64)
    q = (points - c) / torch.tensor([6.0, 8.5, 4.5], dtype=torch.float64)
    body = torch.sigmoid((1.0 - torch.linalg.vector_norm(q, dim=1)) / 0.06)
    blobs = torch.tensor([[7.0, 8.0, 6.0, 2.2, 120.0], [13.5, 16.0, 9.0, 1.6, 150.0], [9.5, 18.5, 5.5, 1.1, 100.0]],
                         dtype=torch.float64)
    v = 60.0 * body
    for x0, y0, z0, r, a in blobs:
        d2 = ((points - torch.stack([x0, y0, z0])) ** 2).sum(-1)
        v = v + a * torch.exp(-d2 / (2.0 * r * r))
    # a rod from (6, 5, 7) to (14, 10, 8): distance to the segment
    p0, p1 = torch.tensor([6.0, 5.0, 7.0], dtype=torch.float64), torch.tensor([14.0, 10.0, 8.0], dtype=torch.float64)
    u = p1 - p0
    s = (((points - p0) @ u) / (u @ u)).clamp(0.0, 1.0)
    dist = torch.linalg.vector_norm(points - (p0 + s[:, None] * u), dim=1)
    return v + 80.0 * torch.sigmoid((0.9 - dist) / 0.15)


def synthetic_volume_motion_pair(m: int | Sequence[int] = 16, *, motion: dict | None = None, supersample: int = 2,
                                 device: str | torch.device = "auto", dtype: torch.dtype = torch.float64,
                                 ) -> ImagePair:
    r"""A 3D pair with a known 12-parameter affine motion :math:`y^*` (:data:`VOLUME_MOTION`, overridable).

    The reference is the phantom :math:`g` averaged over ``supersample³`` points per cell; the template is
    :math:`T = g \circ y^{*-1}` sampled the same way, so :math:`T(y^*(x)) = R(x)` and ``w_true`` is the truth.
    """
    grid = Grid(_VOLUME_OMEGA, _checks.integer_tuple("m", m, 3, 4, allowed="at least 4 cells per dimension (an "
                                                            "integer, or 3 integers)"))
    _checks.integer("supersample", supersample)
    motion = {**VOLUME_MOTION, **(motion or {})}
    unknown = set(motion) - set(VOLUME_MOTION)
    if unknown:
        raise ValueError(f"motion has unknown keys {sorted(unknown)}; allowed: {sorted(VOLUME_MOTION)}")
    w_true = _volume_affine(grid.center(), **motion)
    A = w_true[:9].reshape(3, 3)
    inv = torch.cat([torch.linalg.inv(A).reshape(-1), -torch.linalg.solve(A, w_true[9:])])
    fine = Grid(_VOLUME_OMEGA, tuple(k * supersample for k in grid.m))
    x = fine.cell_centers(dtype=torch.float64)

    def sample(values: torch.Tensor) -> torch.Tensor:
        v = values.reshape(*[k for mk in grid.m for k in (mk, supersample)])
        return v.mean(dim=(1, 3, 5))

    reference = sample(volume_phantom(x))
    template = sample(volume_phantom(affine(inv, x)))
    dev = resolve_device(device)
    return ImagePair(template.to(dev, dtype), reference.to(dev, dtype), grid, w_true.to(dev, dtype),
                     "synthetic volume (known 3D affine motion)")
