r"""Coupled super-resolution (paper §4): the test problem and its matrix-free operators.

Model
-----
An unknown high-resolution image :math:`f \in \mathbb{R}^{n}` (``m × m`` cells on :math:`\Omega`) is seen through
:math:`q` affine motions and a :math:`k × k` mean pooling :math:`K` as low-resolution templates
:math:`d^{(j)} = K\, I_j(w)\, f \in \mathbb{R}^{(m/k)^2}`, where :math:`I_j(w) f` is the cubic spline of
:math:`f` (θ = 0, the paper's window) evaluated at :math:`y_j(x_c) = A_j x_c + b_j`. With the regulariser
:math:`L f = [\,D_x f / h_0;\ D_y f / h_1\,]` (forward differences divided by :math:`h`; the
consistent gradient; the paper writes a product with :math:`h`), the stacked least-squares system is

.. math::
    A(w) = \begin{bmatrix} \sqrt{h^d_0 h^d_1}\; (I \otimes K)\, I(w) \\ \lambda \sqrt{h^f_0 h^f_1}\; L
    \end{bmatrix}, \qquad
    b = \begin{bmatrix} \sqrt{h^d_0 h^d_1}\; d \\ 0 \end{bmatrix}, \qquad
    \min_f \|A(w) f - b\|^2 .

Operator
--------
:meth:`SuperResolutionProblem.operator` gives :class:`SROperator`, :math:`A(w)` at one :math:`w`: matrix-free,
with the exact hand-written transpose, the AD adjoint for comparison, and the fused normal operator
:math:`A^\top A` that CG applies. It is defined in the private module ``imreg_lib._sroperator`` (with its code
paths) and re-exported here and as ``imreg_lib.SROperator``.

Data: template 0 is :math:`K R`, templates :math:`j \ge 1` are :math:`K I_j(w^*_j) R` with the
authors' ``getRandomAffine`` (:func:`random_affine`, seeds :math:`j + 1`); no noise. The CG start vector is the
moments spline (θ = 1e-2) of :math:`d^{(0)}` on the template grid evaluated at the fine cell centres.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from . import _checks
from ._sroperator import CachesNotPickled, SROperator
from ._torch import untraced
from .data import load_image, synthetic_hand_pair
from .device import DEFAULT_DTYPE, resolve_device
from .grid import PAPER_OMEGA, Grid
from .spline import SplineImage, spline_basis_matrices, spline_weights
from .transformations import Affine

__all__ = ["SROperator", "SuperResolutionProblem", "random_affine", "superresolution_problem"]

#: θ of the moments spline of template 0 that gives the CG start vector.
F_INIT_THETA = 1e-2


def random_affine(seed: int, *, scale_range: tuple[float, float] = (0.95, 1.3),
                  rotation_range: tuple[float, float] = (0.0, 45.0),
                  translation_range: tuple[float, float] = (-0.15, 0.15),
                  center: Sequence[float] = (10.0, 12.5), dtype: torch.dtype = DEFAULT_DTYPE,
                  device: torch.device | str | None = None) -> torch.Tensor:
    r"""The authors' ``getRandomAffine``: affine parameters ``[A11, A12, A21, A22, b1, b2]``.

    With NumPy's legacy generator seeded by ``seed`` (the stream of ``np.random.seed(seed)``, without touching
    the global state): :math:`s_x, s_y \sim U(\text{scale\_range})`, :math:`\alpha \sim U(\text{rotation\_range})`
    degrees, then two translations drawn from ``translation_range`` **and not used** (as in the original).
    The map is a rotation with anisotropic scaling about ``center``,

    .. math::
        A = \begin{bmatrix} s_x\cos\alpha & -s_y\sin\alpha \\ s_x\sin\alpha & s_y\cos\alpha \end{bmatrix},
        \qquad b = c - A c,

    computed in float64 and rounded to **float32** (the original casts), then returned in ``dtype``.
    """
    seed = _checks.integer("seed", seed, 0, numpy=True)
    for name, rng_ in (("scale_range", scale_range), ("rotation_range", rotation_range),
                       ("translation_range", translation_range)):
        if len(rng_) != 2 or not all(math.isfinite(v) for v in rng_) or not rng_[0] <= rng_[1]:
            raise ValueError(f"{name} must be a finite (low, high) pair with low <= high, got {rng_!r}")
    rng = np.random.RandomState(seed)
    sx, sy = rng.uniform(scale_range[0], scale_range[1], 2)
    angle = np.deg2rad(rng.uniform(rotation_range[0], rotation_range[1]))
    rng.uniform(translation_range[0], translation_range[1], 2)  # drawn but unused by the original
    A = np.array([[np.cos(angle) * sx, -np.sin(angle) * sy], [np.sin(angle) * sx, np.cos(angle) * sy]])
    c = np.asarray(center, dtype=np.float64)
    w = np.concatenate([A.reshape(-1), c - A @ c]).astype(np.float32)
    return torch.as_tensor(w.astype(np.float64), dtype=dtype, device=device)


@dataclass(frozen=True, eq=False)
class SuperResolutionProblem(CachesNotPickled):
    r"""A super-resolution test problem: ground truth, data and the pieces of :math:`A(w)`, :math:`b`.

    Build it with :func:`superresolution_problem`. Parameters of all templates form one vector
    :math:`w \in \mathbb{R}^{6q}`, template 0 first, each ``[A11, A12, A21, A22, b1, b2]``.

    Attributes
    ----------
    reference
        The true high-resolution image :math:`R`, shape ``(m, m)`` (paper convention ``X[i, j]``).
    data
        Low-resolution templates :math:`d^{(j)}`, shape ``(q, m/k, m/k)``.
    w_true
        Generating parameters, shape ``(6q,)`` (template 0: identity).
    f_init
        CG start vector ``f0_interp``, shape ``(m*m,)``.
    grid, template_grid
        Fine grid (``m`` cells) and template grid (``m/k`` cells) on the same domain.
    factor
        Pooling factor :math:`k`.
    lam
        Regularisation weight :math:`\lambda \ge 0`.
    source
        Where the reference came from.
    """

    reference: torch.Tensor
    data: torch.Tensor
    w_true: torch.Tensor
    f_init: torch.Tensor
    grid: Grid
    template_grid: Grid
    factor: int
    lam: float
    source: str = "synthetic hand"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        m = self.grid.m
        if self.grid.dim != 2 or m[0] != m[1]:
            raise ValueError(f"grid must be a square 2D grid, got m={m}")
        _check_factor(m[0], self.factor)
        _checks.positive_number("lam", self.lam, allow_zero=True)
        mt = m[0] // self.factor
        if self.template_grid.m != (mt, mt) or self.template_grid.omega != self.grid.omega:
            raise ValueError(f"template_grid must have m/factor = {mt} cells on the same domain, got "
                             f"{self.template_grid}")
        if tuple(self.reference.shape) != m:
            raise ValueError(f"reference must have shape {m}, got {tuple(self.reference.shape)}")
        if self.data.dim() != 3 or tuple(self.data.shape[1:]) != (mt, mt) or self.data.shape[0] < 1:
            raise ValueError(f"data must have shape (n_templates, {mt}, {mt}), got {tuple(self.data.shape)}")
        if tuple(self.w_true.shape) != (6 * self.data.shape[0],):
            raise ValueError(f"w_true must have shape ({6 * self.data.shape[0]},), got {tuple(self.w_true.shape)}")
        if tuple(self.f_init.shape) != (m[0] * m[1],):
            raise ValueError(f"f_init must have shape ({m[0] * m[1]},), got {tuple(self.f_init.shape)}")

    # --- sizes and constants -------------------------------------------------------------------------
    @property
    def m(self) -> int:
        return self.grid.m[0]

    @property
    def n_templates(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_params(self) -> int:
        """All affine parameters, :math:`6q` (template 0 included)."""
        return 6 * self.n_templates

    @property
    def n_pixels(self) -> int:
        """Unknowns in :math:`f`: :math:`m^2`."""
        return self.m * self.m

    @property
    def n_data(self) -> int:
        """Data values: :math:`q (m/k)^2`."""
        return int(self.data.numel())

    @property
    def n_rows(self) -> int:
        """Rows of :math:`A(w)`: data plus the :math:`2 m (m - 1)` regulariser rows."""
        return self.n_data + 2 * self.m * (self.m - 1)

    @property
    def data_scale(self) -> float:
        r""":math:`\sqrt{h^d_0 h^d_1}`."""
        return math.sqrt(self.template_grid.cell_volume)

    @property
    def reg_scale(self) -> float:
        r""":math:`\lambda \sqrt{h^f_0 h^f_1}`."""
        return self.lam * math.sqrt(self.grid.cell_volume)

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    def identity(self) -> torch.Tensor:
        """The identity for every template, shape ``(6q,)``."""
        return Affine().identity(self.device, self.dtype).repeat(self.n_templates)

    def _constant(self, name: str, build):
        if name not in self._cache:
            with untraced():
                self._cache[name] = build()
        return self._cache[name]

    @property
    def x(self) -> torch.Tensor:
        """Fine-grid cell centres :math:`x_c`, shape ``(m², 2)``."""
        return self._constant("x", lambda: self.grid.cell_centers(self.device, self.dtype))

    @property
    def prefilter(self) -> torch.Tensor:
        r""":math:`B^{-1}` with :math:`B = \mathrm{tridiag}(1, 4, 1)` (``m × m``): the θ = 0 spline prefilter."""
        def build():
            B = spline_basis_matrices(self.m, torch.float64)[0]
            return torch.linalg.inv(B).to(device=self.device, dtype=self.dtype)
        return self._constant("prefilter", build)

    @property
    def d(self) -> torch.Tensor:
        """Stacked data :math:`d`, shape ``(q (m/k)^2,)``."""
        return self.data.reshape(-1)

    @property
    def b(self) -> torch.Tensor:
        """Right-hand side :math:`b = [\\sqrt{h^d} d; 0]`, shape ``(n_rows,)``."""
        def build():
            zeros = torch.zeros(self.n_rows - self.n_data, dtype=self.dtype, device=self.device)
            return torch.cat([self.data_scale * self.d, zeros])
        return self._constant("b", build)

    # --- operators ---------------------------------------------------------------------------------
    def check_parameters(self, w: torch.Tensor) -> None:
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != (self.n_params,):
            shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise ValueError(f"w must be a tensor of shape ({self.n_params},) (6 affine parameters per template, "
                             f"template 0 first), got {shape}")

    def transformed_points(self, w: torch.Tensor) -> torch.Tensor:
        r""":math:`y_j(x_c) = A_j x_c + b_j` for all templates, shape ``(q m², 2)`` (template 0 first)."""
        W = w.reshape(self.n_templates, 6)
        A = W[:, :4].reshape(-1, 2, 2)
        y = torch.einsum("nd,jkd->jnk", self.x, A) + W[:, None, 4:]
        return y.reshape(-1, 2)

    def operator(self, w: torch.Tensor) -> SROperator:
        """:math:`A(w)` at the full parameter vector ``w`` (shape ``(6q,)``)."""
        self.check_parameters(w)
        y = self.transformed_points(w)
        return SROperator(self, w, y, spline_weights(y, self.grid))


def _check_factor(m: int, factor) -> None:
    _checks.integer("factor", factor)
    if m % factor != 0:
        raise ValueError(f"factor must divide m: m={m} is not a multiple of factor={factor}")
    if m // factor < 2:
        raise ValueError(f"factor is too large: m/factor = {m // factor} (the templates need at least 2 cells)")


def superresolution_problem(m: int = 20, factor: int = 2, n_templates: int = 4, lam: float = 1e-2, *,
                            reference: torch.Tensor | None = None,
                            reference_path: str | os.PathLike | None = None,
                            omega: Sequence[float] = PAPER_OMEGA,
                            rotation_range: tuple[float, float] = (0.0, 45.0),
                            device: str | torch.device = "cpu",
                            dtype: torch.dtype = DEFAULT_DTYPE) -> SuperResolutionProblem:
    r"""Generate the authors' super-resolution test problem from any reference image.

    Parameters
    ----------
    m
        Fine resolution (``m × m`` cells).
    factor
        Pooling factor :math:`k`; must divide ``m`` (templates are ``m/k × m/k``).
    n_templates
        Number of templates :math:`q \ge 1`; template 0 is the unmoved one, template :math:`j \ge 1` uses
        :func:`random_affine` with seed :math:`j + 1` (seeds 2, 3, 4 for the paper's four templates).
    lam
        Regularisation weight :math:`\lambda \ge 0` (paper: 1e-2).
    reference, reference_path
        The true image: a tensor of shape ``(m, m)`` on the paper's convention, or an image file (loaded with
        :func:`~imreg_lib.data.load_image` at ``m`` cells); default: the project's synthetic hand at ``m``.
    omega
        Domain (the paper's (0, 20, 0, 25)); rotations are about its centre.
    rotation_range
        Rotation range of the random affines in degrees (the paper: (0, 45)).
    device, dtype
        Where and in which precision to build the problem.
    """
    _checks.integer("m", m, 4)
    _check_factor(m, factor)
    _checks.integer("n_templates", n_templates, 1, allowed="an integer >= 1")
    _checks.positive_number("lam", lam, allow_zero=True)
    if reference is not None and reference_path is not None:
        raise ValueError("pass either reference or reference_path, not both")
    dev = resolve_device(device)
    grid = Grid(omega, m)
    if grid.dim != 2:
        raise ValueError(f"omega must describe a 2D domain, got {omega!r}")
    if reference_path is not None:
        R, source = load_image(reference_path, m, device=dev, dtype=dtype), os.path.basename(os.fspath(reference_path))
    elif reference is not None:
        if not isinstance(reference, torch.Tensor) or tuple(reference.shape) != (m, m):
            shape = tuple(reference.shape) if isinstance(reference, torch.Tensor) else type(reference).__name__
            raise ValueError(f"reference must be a tensor of shape ({m}, {m}), got {shape}")
        R, source = reference.to(device=dev, dtype=dtype), "user tensor"
    else:
        R, source = synthetic_hand_pair(m, omega, device=dev, dtype=dtype).reference, "synthetic hand"
    R = R.detach()
    tgrid = grid.with_m(m // factor)
    center = grid.center()
    ws = [Affine().identity(dev, dtype)]
    ws += [random_affine(j + 1, rotation_range=rotation_range, center=center, dtype=dtype, device=dev)
           for j in range(1, n_templates)]
    w_true = torch.cat(ws)
    mt = m // factor
    placeholder = torch.zeros(n_templates, mt, mt, dtype=dtype, device=dev)
    # the data are the model's prediction at the true parameters: d = (I ⊗ K) I(w*) R
    draft = SuperResolutionProblem(R, placeholder, w_true, R.reshape(-1), grid, tgrid, factor, float(lam), source)
    with torch.no_grad():
        data = draft.operator(w_true).data_map(R.reshape(-1)).reshape(n_templates, mt, mt)
        f_init = SplineImage(data[0], tgrid)(grid.cell_centers(dev, dtype), F_INIT_THETA)
    return SuperResolutionProblem(R, data, w_true, f_init, grid, tgrid, factor, float(lam), source)
