r"""The paper's methods beside the tool practitioners use: SimpleITK's affine registration on the same images.

Every registration, ours or SimpleITK's, is scored by **our** objective :math:`J(w; \theta_{\min})` and, where the
motion is known, by the motion error

.. math::  e(w) = \max_n \big\| \mathrm{diag}(h)^{-1} \big(y(w, x_n) - y(w^*, x_n)\big) \big\|_2 ,

the largest distance, in cells, between where the found and the true motion put a cell centre :math:`x_n`. A
registration *recovers* the motion when :math:`e < 0.5` cells (:data:`SUCCESS_CELLS`): every point lands within
half a cell of its true position.

SimpleITK is used as its users do: ``MeanSquares`` (the SSD), full regular sampling (deterministic), linear
interpolation, a multi-resolution pyramid (shrink factors and Gaussian smoothing sigmas in cells), regular step
gradient descent or L-BFGS-B with physical-shift scales, and ``CenteredTransformInitializer`` (geometric
centres). For large rotations its users first search the rotation exhaustively (an ``Euler2DTransform``
scanned over the full circle) and start the affine pyramid there.

Scale and smoothing
-------------------
The spline model smooths the data at scale :math:`\theta` with the transfer function (per dimension, frequency
:math:`\omega` in radians per cell)

.. math::
    H_\theta(\omega) = \frac{\hat B(\omega)^2}{\hat B(\omega)^2 + \theta \hat P(\omega)}, \qquad
    \hat B = 4 + 2\cos\omega,\quad \hat P = 96 - 108\cos\omega + 12\cos 3\omega ,

so :math:`H_\theta \approx 1 / (1 + \theta\omega^4)` at low frequencies (:math:`\hat P/\hat B^2 = \omega^4 +
O(\omega^6)`). A Gaussian of standard deviation :math:`\sigma` cells has :math:`e^{-\sigma^2\omega^2/2}`. Matching
the frequency where each halves the signal gives :func:`sigma_for_theta`; roughly
:math:`\sigma \approx \sqrt{2\ln 2}\,\theta^{1/4}`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..data import SAMPLE_IMAGES, ImagePair, moved_pair, sample_image, synthetic_hand_pair
from ..globalreg import global_register, newton_exact
from ..grid import Grid
from ..interop import affine_from_itk, to_sitk_image
from ..multiscale import predictor_corrector, single_scale, theta_schedule, traditional
from ..objective import SSDObjective
from ..spline import SplineImage
from ..transformations import Affine, affine

__all__ = ["CAPTURE_ANGLES", "FROM_TRUTH", "IMAGE_METHODS", "METHODS_2D", "METHODS_3D", "PeerRun", "SUCCESS_CELLS",
           "SimpleITKSettings", "VOLUME_MOTION", "capture_range", "capture_range_3d", "capture_table",
           "capture_verdict", "check_parameters", "comparison_options", "file_registration_check", "motion_error",
           "options_json", "pair_objective", "peer_comparison", "register", "results_record", "runs_table",
           "sample_image_capture", "sigma_for_theta", "simpleitk_register", "synthetic_volume_motion_pair",
           "theta_for_sigma"]

#: Motion error (cells) below which a registration recovers the motion.
SUCCESS_CELLS = 0.5
#: The rotations of the capture-range experiment, in degrees (with the default scaling and shift of the hand).
CAPTURE_ANGLES: tuple[float, ...] = tuple(float(a) for a in np.linspace(0.0, 180.0, 13))
#: The methods compared in 2D: SimpleITK's pyramid, SimpleITK after an exhaustive rotation search, and ours.
METHODS_2D = ("simpleitk", "simpleitk_search", "single_scale", "traditional", "predictor_corrector", "global")
#: The methods compared in 3D (no rotation search for SimpleITK: a scan over three angles is what its users avoid).
METHODS_3D = ("simpleitk", "single_scale", "traditional", "predictor_corrector", "global")
#: Not a method: Newton at θ_min started *at the true motion*. Where it ends more than :data:`SUCCESS_CELLS` from
#: the truth, the SSD objective's own minimum is off, and no method that minimises it can recover the motion.
FROM_TRUTH = "newton_from_truth"
_OURS = ("single_scale", "traditional", "predictor_corrector", "global")

_LN2 = math.log(2.0)


def _transfer(theta: float, omega: float) -> float:
    b = 4.0 + 2.0 * math.cos(omega)
    p = 96.0 - 108.0 * math.cos(omega) + 12.0 * math.cos(3.0 * omega)
    return b * b / (b * b + theta * p)


def sigma_for_theta(theta: float) -> float:
    r"""The Gaussian smoothing sigma (in cells) that halves the same frequency as the spline at scale ``theta``.

    Solves :math:`H_\theta(\omega_c) = 1/2` by bisection and returns :math:`\sigma = \sqrt{2\ln 2} / \omega_c`;
    0 where no frequency up to Nyquist (:math:`\omega = \pi`) is halved (:math:`\theta` below about 0.01: the
    spline hardly smooths).
    """
    if not (isinstance(theta, (int, float)) and not isinstance(theta, bool) and math.isfinite(theta) and theta >= 0):
        raise ValueError(f"theta must be a finite number >= 0, got {theta!r}")
    if theta == 0 or _transfer(theta, math.pi) > 0.5:
        return 0.0
    lo, hi = 1e-12, math.pi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _transfer(theta, mid) > 0.5:
            lo = mid
        else:
            hi = mid
    return math.sqrt(2.0 * _LN2) / (0.5 * (lo + hi))


def theta_for_sigma(sigma: float) -> float:
    """The inverse of :func:`sigma_for_theta`: the spline scale that smooths like a Gaussian of ``sigma`` cells."""
    if not (isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if sigma == 0:
        return 0.0
    lo, hi = 0.0, 1.0
    while sigma_for_theta(hi) < sigma:
        hi *= 10.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if sigma_for_theta(mid) < sigma:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class SimpleITKSettings:
    """How SimpleITK registers: what its users would choose for an affine SSD registration.

    Attributes
    ----------
    shrink_factors, smoothing_sigmas
        The pyramid, coarsest level first; sigmas in cells (voxels), 0 = no smoothing.
    optimizer
        ``"regular_step"`` (regular step gradient descent) or ``"lbfgsb"``.
    learning_rate, min_step, iterations, gradient_tolerance
        Optimizer settings (per pyramid level for ``iterations``).
    rotation_search_steps
        ``None``: start from the geometric centres (identity). ``n``: first scan the rotation of an
        ``Euler2DTransform`` over the full circle in ``2 n + 1`` steps of ``180° / n`` (translation fixed), at
        ``search_shrink`` / ``search_sigma``, and start the affine pyramid at the best angle (2D only).
    threads
        ITK threads (1: the same result on every run).
    """

    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas: tuple[float, ...] = (2.0, 1.0, 0.0)
    optimizer: str = "regular_step"
    learning_rate: float = 1.0
    min_step: float = 1e-4
    iterations: int = 500
    gradient_tolerance: float = 1e-8
    rotation_search_steps: int | None = None
    search_shrink: int = 2
    search_sigma: float = 2.0
    threads: int = 1

    def __post_init__(self) -> None:
        shrink, sigmas = tuple(self.shrink_factors), tuple(self.smoothing_sigmas)
        if not shrink or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shrink):
            raise ValueError("shrink_factors must be a non-empty sequence of integers >= 1, got "
                             f"{self.shrink_factors!r}")
        if len(sigmas) != len(shrink) or not all(isinstance(s, (int, float)) and s >= 0 for s in sigmas):
            raise ValueError(f"smoothing_sigmas must hold one number >= 0 per pyramid level ({len(shrink)}), got "
                             f"{self.smoothing_sigmas!r}")
        object.__setattr__(self, "shrink_factors", shrink)
        object.__setattr__(self, "smoothing_sigmas", tuple(float(s) for s in sigmas))
        if self.optimizer not in ("regular_step", "lbfgsb"):
            raise ValueError(f"optimizer must be 'regular_step' or 'lbfgsb', got {self.optimizer!r}")
        for name in ("learning_rate", "min_step", "gradient_tolerance"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        for name in ("iterations", "threads", "search_shrink"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        n = self.rotation_search_steps
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"rotation_search_steps must be None or an integer >= 1, got {n!r}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PeerRun:
    """One registration scored by our objective.

    Attributes
    ----------
    method
        One of :data:`METHODS_2D` / :data:`METHODS_3D`.
    w
        Found parameters (this library's convention ``[A row-major, b]``).
    final_loss
        :math:`J(w; \\theta_{\\min})` of our objective.
    param_error
        Motion error in cells (module notes); ``None`` without a known motion.
    success
        ``param_error < SUCCESS_CELLS``; ``None`` without a known motion.
    seconds
        Wall time of the registration (SimpleITK: search and pyramid; ours: the driver after the objective is built).
    iterations
        Optimizer iterations (summed over levels or scales).
    stop
        Why it stopped (SimpleITK's stop condition of the last level; ours: the number of scales).
    """

    method: str
    w: tuple[float, ...]
    final_loss: float
    param_error: float | None
    success: bool | None
    seconds: float
    iterations: int
    stop: str
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def w_tensor(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The found parameters as a tensor."""
        return torch.tensor(self.w, dtype=dtype, device=device)


def motion_error(w: torch.Tensor, w_true: torch.Tensor | None, grid: Grid) -> float | None:
    """The largest distance in cells between ``y(w, x_n)`` and ``y(w_true, x_n)`` over the cell centres ``x_n``."""
    if w_true is None:
        return None
    x = grid.cell_centers(dtype=torch.float64)
    w, w_true = (torch.as_tensor(v, dtype=torch.float64).cpu() for v in (w, w_true))
    d = (affine(w, x) - affine(w_true, x)) / torch.tensor(grid.h, dtype=torch.float64)
    return float(torch.linalg.vector_norm(d, dim=1).max())


def pair_objective(pair: ImagePair) -> SSDObjective:
    """Our SSD objective of ``pair`` with the affine model of its dimension (the score of every method)."""
    return SSDObjective(SplineImage(pair.template, pair.grid), SplineImage(pair.reference, pair.grid),
                        Affine(pair.grid.dim))


def _score(method: str, w: torch.Tensor, pair: ImagePair, objective: SSDObjective, theta_min: float, seconds: float,
           iterations: int, stop: str, extra: dict | None = None) -> PeerRun:
    w = torch.as_tensor(w, dtype=objective.reference.dtype, device=objective.reference.device)
    err = motion_error(w, pair.w_true, pair.grid)
    return PeerRun(method, tuple(float(v) for v in w.cpu()), float(objective.loss(w, theta_min)), err,
                   None if err is None else err < SUCCESS_CELLS, seconds, int(iterations), stop, extra or {})


def _sitk_method(settings: SimpleITKSettings):
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMeanSquares()
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetNumberOfThreads(settings.threads)
    return reg


def _rotation_search(fixed, moving, settings: SimpleITKSettings):
    """Scan the rotation about the geometric centre; returns the best ``Euler2DTransform`` and the metric calls."""
    import SimpleITK as sitk

    n = settings.rotation_search_steps
    init = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler2DTransform(),
                                             sitk.CenteredTransformInitializerFilter.GEOMETRY)
    reg = _sitk_method(settings)
    reg.SetOptimizerAsExhaustive(numberOfSteps=[n, 0, 0], stepLength=math.pi / n)
    reg.SetOptimizerScales([1.0, 1.0, 1.0])
    reg.SetShrinkFactorsPerLevel([settings.search_shrink])
    reg.SetSmoothingSigmasPerLevel([settings.search_sigma])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(init, inPlace=True)
    reg.Execute(fixed, moving)
    return init, 2 * n + 1


def simpleitk_register(pair: ImagePair, settings: SimpleITKSettings | None = None, *, theta_min: float = 1e-3,
                       objective: SSDObjective | None = None, method: str | None = None) -> PeerRun:
    """Register ``pair`` with SimpleITK (reference = fixed image, template = moving image) and score it.

    Parameters
    ----------
    pair
        The images on their grid (2D or 3D).
    settings
        The SimpleITK set-up (default: :class:`SimpleITKSettings`).
    theta_min
        The scale of our objective that scores the result.
    objective
        Our objective of ``pair`` (built if ``None``; pass it to reuse its caches).
    method
        The name recorded (default ``"simpleitk"``, or ``"simpleitk_search"`` with a rotation search).
    """
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK's warnings would go to the terminal, not the caller
    settings = SimpleITKSettings() if settings is None else settings
    dim = pair.grid.dim
    if settings.rotation_search_steps is not None and dim != 2:
        raise ValueError("settings.rotation_search_steps: the rotation search is 2D only; set it to None in 3D")
    objective = pair_objective(pair) if objective is None else objective
    fixed, moving = to_sitk_image(pair.reference, pair.grid), to_sitk_image(pair.template, pair.grid)
    t0 = time.perf_counter()
    extra, iterations = {}, 0
    if settings.rotation_search_steps is None:
        initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(dim),
                                                    sitk.CenteredTransformInitializerFilter.GEOMETRY)
    else:
        euler, calls = _rotation_search(fixed, moving, settings)
        initial = sitk.AffineTransform(2)
        initial.SetCenter(euler.GetCenter())
        initial.SetMatrix(euler.GetMatrix())
        initial.SetTranslation(euler.GetTranslation())
        extra = {"search_angle_deg": math.degrees(euler.GetAngle()), "search_evaluations": calls}
    reg = _sitk_method(settings)
    if settings.optimizer == "regular_step":
        reg.SetOptimizerAsRegularStepGradientDescent(learningRate=settings.learning_rate, minStep=settings.min_step,
                                                     numberOfIterations=settings.iterations,
                                                     gradientMagnitudeTolerance=settings.gradient_tolerance)
        reg.SetOptimizerScalesFromPhysicalShift()
    else:  # L-BFGS-B ignores optimizer scales
        reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=settings.gradient_tolerance,
                                 numberOfIterations=settings.iterations)
    reg.SetShrinkFactorsPerLevel(list(settings.shrink_factors))
    reg.SetSmoothingSigmasPerLevel(list(settings.smoothing_sigmas))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(initial, inPlace=False)
    counter = {"n": 0}
    reg.AddCommand(sitk.sitkIterationEvent, lambda: counter.__setitem__("n", counter["n"] + 1))
    result = reg.Execute(fixed, moving)
    seconds = time.perf_counter() - t0
    iterations = counter["n"]
    tr = result.GetNthTransform(0) if isinstance(result, sitk.CompositeTransform) else result
    tr = sitk.AffineTransform(tr)
    w = affine_from_itk(tr.GetMatrix(), tr.GetTranslation(), tr.GetCenter())
    name = method or ("simpleitk" if settings.rotation_search_steps is None else "simpleitk_search")
    return _score(name, w, pair, objective, theta_min, seconds, iterations,
                  reg.GetOptimizerStopConditionDescription(), extra)


def register(pair: ImagePair, method: str, *, theta_max: float = 1e3, theta_min: float = 1e-3, n_scales: int = 30,
             gtol: float = 1e-4, gtol_single: float = 1e-7, objective: SSDObjective | None = None,
             settings: SimpleITKSettings | None = None) -> PeerRun:
    """Register ``pair`` from the identity with one method of :data:`METHODS_2D` / :data:`METHODS_3D`.

    Ours use Newton's method with exact Hessians (trust-exact): ``single_scale`` at ``theta_min`` (tolerance
    ``gtol_single``), ``traditional`` and ``predictor_corrector`` over ``n_scales`` log-spaced scales from
    ``theta_max`` to ``theta_min`` (tolerance ``gtol``), as in the multi-scale section. ``simpleitk`` and
    ``simpleitk_search`` use ``settings`` (the search with 18 steps of 10° unless ``settings`` sets one). ``global``
    is :func:`imreg_lib.globalreg.global_register` (rotation search at a coarse θ, then exact Newton down to
    ``theta_min``, tolerance ``gtol`` there). :data:`FROM_TRUTH` is Newton at ``theta_min`` from the known motion
    (tolerance ``gtol``, well above the gradient's round-off floor): where the objective's own minimum lies.
    """
    methods = METHODS_2D if pair.grid.dim == 2 else METHODS_3D
    if method == FROM_TRUTH:
        if pair.w_true is None:
            raise ValueError(f"method {FROM_TRUTH!r} needs a pair with a known motion (w_true)")
        objective = pair_objective(pair) if objective is None else objective
        t0 = time.perf_counter()
        res = newton_exact(objective.at_scale(theta_min).derivatives, pair.w_true, gtol=gtol)
        return _score(method, res.w, pair, objective, theta_min, time.perf_counter() - t0, res.iterations,
                      "Newton (exact, trust region) from the true motion", {"n_hessians": res.n_evaluations})
    if method not in methods:
        raise ValueError(f"method must be one of {methods} for a {pair.grid.dim}D pair, got {method!r}")
    thetas = theta_schedule(theta_max, theta_min, n_scales)
    objective = pair_objective(pair) if objective is None else objective
    if method.startswith("simpleitk"):
        settings = SimpleITKSettings() if settings is None else settings
        if method == "simpleitk_search" and settings.rotation_search_steps is None:
            settings = SimpleITKSettings(**{**settings.as_dict(), "rotation_search_steps": 18})
        if method == "simpleitk" and settings.rotation_search_steps is not None:
            settings = SimpleITKSettings(**{**settings.as_dict(), "rotation_search_steps": None})
        return simpleitk_register(pair, settings, theta_min=theta_min, objective=objective, method=method)
    t0 = time.perf_counter()
    if method == "global":
        found = global_register(objective, theta_min=theta_min, gtol=gtol)
        seconds = time.perf_counter() - t0
        d = pair.grid.dim
        start = found.start[: d * d].reshape(d, d).cpu()
        return _score(method, found.w, pair, objective, theta_min, seconds, found.iterations,
                      f"search, then Newton (exact, trust region) over {len(found.scales)} scales",
                      {"final_grad_norm": found.scales[-1].grad_norm, "n_hessians": found.n_evaluations,
                       "search_angle_deg": math.degrees(math.atan2(float(start[1, 0]), float(start[0, 0])))})
    if method == "single_scale":
        run = single_scale(objective, theta_min, gtol=gtol_single)
    elif method == "traditional":
        run = traditional(objective, thetas, gtol=gtol)
    else:
        run = predictor_corrector(objective, thetas, gtol=gtol)
    seconds = time.perf_counter() - t0
    last = run.history[-1]
    return _score(method, run.w, pair, objective, theta_min, seconds, run.iterations,
                  f"Newton (trust-exact) over {len(run.history)} scale(s)",
                  {"final_grad_norm": last.final_grad_norm, "n_hessians": run.n_hessians})


def peer_comparison(pair: ImagePair, methods: Sequence[str] | None = None, *, objective: SSDObjective | None = None,
                    **options) -> dict[str, PeerRun]:
    """Every method on one pair (:func:`register` options), sharing one objective (built if ``None``)."""
    methods = tuple(METHODS_2D if pair.grid.dim == 2 else METHODS_3D) if methods is None else tuple(methods)
    objective = pair_objective(pair) if objective is None else objective
    return {m: register(pair, m, objective=objective, **options) for m in methods}


def capture_range(angles: Sequence[float] = CAPTURE_ANGLES, m: int = 32, methods: Sequence[str] = METHODS_2D, *,
                  image: torch.Tensor | None = None, omega: Sequence[float] | None = None, source: str = "image",
                  from_truth: bool = True, device: str | torch.device = "auto", **options) -> dict[str, list[PeerRun]]:
    """Which methods recover a known motion when its rotation is each of ``angles`` (degrees).

    Without ``image``: the synthetic hand, moved by its default scaling and shift and each rotation. With
    ``image`` (values on ``Grid(omega, image.shape)``, e.g. a file at its own size): that image and its copy moved
    by the same maps (:func:`imreg_lib.data.moved_pair`). With ``from_truth`` the runs of :data:`FROM_TRUTH` are
    added (where the objective's own minimum lies). Returns ``{method: [run per angle]}``.
    """
    angles = _check_angles("angles", angles)
    bad = [m_ for m_ in methods if m_ not in METHODS_2D]
    if bad:
        raise ValueError(f"methods must be among {METHODS_2D}, got {bad}")
    if image is not None and omega is None:
        raise ValueError("omega: give the domain of image (x0, x1, y0, y1)")
    names = tuple(methods) + ((FROM_TRUTH,) if from_truth else ())
    runs: dict[str, list[PeerRun]] = {m_: [] for m_ in names}
    for angle in angles:
        motion = {"angle_deg": float(angle)}
        pair = (synthetic_hand_pair(m, motion=motion, device=device) if image is None else
                moved_pair(image, omega, m, motion=motion, source=source, device=device))
        objective = pair_objective(pair)
        for name, run in peer_comparison(pair, methods, objective=objective, **options).items():
            runs[name].append(run)
        if from_truth:
            runs[FROM_TRUTH].append(register(pair, FROM_TRUTH, objective=objective, **options))
    return runs


#: The methods of the capture sweep on the extra real images: the predictor-corrector is left out there (it
#: follows the traditional method's basins, at about twice its time per registration).
IMAGE_METHODS = ("simpleitk", "simpleitk_search", "single_scale", "traditional", "global")


def sample_image_capture(name: str, angles: Sequence[float] = CAPTURE_ANGLES, m: int = 32,
                         methods: Sequence[str] = IMAGE_METHODS, *, device: str | torch.device = "auto",
                         **options) -> tuple[str, dict[str, list[PeerRun]]]:
    """:func:`capture_range` on a real image of :data:`imreg_lib.data.SAMPLE_IMAGES` (offline, from matplotlib), on a
    domain 20 wide that keeps the image's aspect ratio; returns ``(source, runs)``."""
    image = sample_image(name, device="cpu")
    omega = (0.0, 20.0, 0.0, 20.0 * image.shape[1] / image.shape[0])
    source = {"mri": "MRI slice (matplotlib's s1045)", "grace_hopper": "photograph (matplotlib's Grace Hopper)"}[name]
    return source, capture_range(angles, m, methods, image=image, omega=omega, source=source, device=device,
                                 **options)


def capture_range_3d(rotations: Sequence[Sequence[float]], m: int = 16,
                     methods: Sequence[str] = ("simpleitk", "global"), *, from_truth: bool = True,
                     device: str | torch.device = "auto", **options) -> dict[str, list[PeerRun]]:
    """:func:`capture_range` for the synthetic volume: one pair per ``(about z, about x)`` rotation (degrees) with
    the volume's default scaling and shift. Returns ``{method: [run per rotation]}``."""
    rotations = [_check_angles("rotations", r, 2) for r in rotations]
    bad = [m_ for m_ in methods if m_ not in METHODS_3D]
    if bad:
        raise ValueError(f"methods must be among {METHODS_3D}, got {bad}")
    names = tuple(methods) + ((FROM_TRUTH,) if from_truth else ())
    runs: dict[str, list[PeerRun]] = {m_: [] for m_ in names}
    for rot in rotations:
        pair = synthetic_volume_motion_pair(m, motion={"angles_deg": rot}, device=device)
        objective = pair_objective(pair)
        for name, run in peer_comparison(pair, methods, objective=objective, **options).items():
            runs[name].append(run)
        if from_truth:
            runs[FROM_TRUTH].append(register(pair, FROM_TRUTH, objective=objective, **options))
    return runs


def file_registration_check(transform_path, pair: ImagePair, margin: int = 4) -> tuple[float, float]:
    """Resample the template *file* onto the reference *file* with SimpleITK through an exported transform (in the
    files' physical space) and return the mean squared difference to the reference file without and with it, over
    the pixels at least ``margin`` pixels (of the reference file) from its border."""
    import SimpleITK as sitk

    if pair.files is None:
        raise ValueError("file_registration_check: the pair was not read from files")
    ref, tmpl = pair.files
    R = sitk.ReadImage(ref.path, sitk.sitkFloat64)
    T = sitk.ReadImage(tmpl.path, sitk.sitkFloat64)
    if R.GetNumberOfComponentsPerPixel() != 1:
        R = sitk.VectorIndexSelectionCast(R, 0, sitk.sitkFloat64)
    if T.GetNumberOfComponentsPerPixel() != 1:
        T = sitk.VectorIndexSelectionCast(T, 0, sitk.sitkFloat64)
    W = sitk.Resample(T, R, sitk.ReadTransform(str(transform_path)), sitk.sitkLinear, 0.0)
    inner = (slice(margin, -margin), slice(margin, -margin))
    r, w = sitk.GetArrayFromImage(R)[inner], sitk.GetArrayFromImage(W)[inner]
    if T.GetSize() == R.GetSize():
        t = sitk.GetArrayFromImage(T)[inner]
    else:  # another size: compare the template resampled through the identity
        t = sitk.GetArrayFromImage(sitk.Resample(T, R, sitk.Transform(), sitk.sitkLinear, 0.0))[inner]
    return float(np.mean((t - r) ** 2)), float(np.mean((w - r) ** 2))


def _check_angles(name: str, angles, length: int | None = None) -> tuple[float, ...]:
    try:
        values = tuple(angles)
    except TypeError:
        values = ()
    ok = bool(values) and all(isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a)
                              for a in values)
    if not ok or (length is not None and len(values) != length):
        what = f"{length} finite numbers" if length else "a non-empty list of finite numbers"
        raise ValueError(f"{name} must be {what} (degrees), got {angles!r}")
    return tuple(float(a) for a in values)


def _check_cells(name: str, m, low: int) -> None:
    if isinstance(m, bool) or not isinstance(m, int) or m < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {m!r}")


def check_parameters(*, capture_angles: Sequence[float], capture_m: int, m_3d: int, angles_3d: Sequence[float],
                     capture_images: Sequence[str] = (), rotations_3d: Sequence[Sequence[float]] = ()) -> None:
    """Check the comparison's parameters before any work starts (errors name the parameter)."""
    _check_angles("capture_angles", capture_angles)
    _check_angles("angles_3d", angles_3d, 2)
    if isinstance(capture_images, str) or not all(name in SAMPLE_IMAGES for name in capture_images):
        raise ValueError(f"capture_images must be a list of names among {list(SAMPLE_IMAGES)} (or []), got "
                         f"{capture_images!r}")
    if isinstance(rotations_3d, str):
        raise ValueError(f"rotations_3d must be a list of [about z, about x] pairs in degrees, got {rotations_3d!r}")
    for r in rotations_3d:
        _check_angles("rotations_3d (each entry)", r, 2)
    _check_cells("capture_m", capture_m, 8)
    _check_cells("m_3d", m_3d, 6)


def comparison_options(*, theta_max: float, theta_min: float, n_scales: int, gtol: float, gtol_single: float,
                       shrink_factors: Sequence[int], smoothing_sigmas: Sequence[float], sitk_optimizer: str,
                       rotation_search_steps: int | None, capture_angles: Sequence[float], capture_m: int, m_3d: int,
                       angles_3d: Sequence[float], capture_images: Sequence[str] = (),
                       rotations_3d: Sequence[Sequence[float]] = ()) -> dict:
    """Check every parameter of the comparison before any work starts and return the options of :func:`register`
    (``theta_max, theta_min, n_scales, gtol, gtol_single, settings``). Errors name the parameter."""
    theta_schedule(theta_max, theta_min, n_scales)
    for name, value in (("gtol", gtol), ("gtol_single", gtol_single)):
        if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    check_parameters(capture_angles=capture_angles, capture_m=capture_m, m_3d=m_3d, angles_3d=angles_3d,
                     capture_images=capture_images, rotations_3d=rotations_3d)
    try:
        shrink, sigmas = tuple(shrink_factors), tuple(smoothing_sigmas)
    except TypeError:
        raise ValueError("shrink_factors and smoothing_sigmas must be lists (one entry per pyramid level)") from None
    settings = SimpleITKSettings(shrink, sigmas, sitk_optimizer, rotation_search_steps=rotation_search_steps)
    return {"theta_max": theta_max, "theta_min": theta_min, "n_scales": n_scales, "gtol": gtol,
            "gtol_single": gtol_single, "settings": settings}


def options_json(options: dict) -> dict:
    """:func:`comparison_options` as JSON-ready values (the SimpleITK settings as a dict)."""
    return {k: (v.as_dict() if isinstance(v, SimpleITKSettings) else v) for k, v in options.items()}


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


def _volume_phantom(points: torch.Tensor) -> torch.Tensor:
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
    from ..device import resolve_device

    grid = Grid(_VOLUME_OMEGA, m)
    if min(grid.m) < 4:
        raise ValueError(f"m must be at least 4 cells per dimension, got {m!r}")
    if isinstance(supersample, bool) or not isinstance(supersample, int) or supersample < 1:
        raise ValueError(f"supersample must be an integer >= 1, got {supersample!r}")
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

    reference = sample(_volume_phantom(x))
    template = sample(_volume_phantom(affine(inv, x)))
    dev = resolve_device(device)
    return ImagePair(template.to(dev, dtype), reference.to(dev, dtype), grid, w_true.to(dev, dtype),
                     "synthetic volume (known 3D affine motion)")


# ---- results and verdicts ----------------------------------------------------------------------------------

_FIELDS = ("final_loss", "param_error", "seconds", "iterations", "success")


def _record(run: PeerRun, full: bool = True) -> dict:
    rec = {k: getattr(run, k) for k in _FIELDS}
    if full:
        rec.update(w=list(run.w), stop=run.stop, **run.extra)
    return rec


def results_record(runs: dict[str, PeerRun], capture: dict[str, list[PeerRun]] | None, angles: Sequence[float],
                   runs_3d: dict[str, PeerRun] | None, *, capture_images: dict[str, dict] | None = None,
                   capture_3d: dict[str, list[PeerRun]] | None = None,
                   rotations_3d: Sequence[Sequence[float]] = (), **extra) -> dict:
    """The results JSON of the comparison: ``peers.<method>``, ``capture.angles``, ``capture.<method>`` (one record
    per angle, on the data set's own image), ``capture_images.<image>.<method>`` (the same sweep on other images,
    with their ``source``), ``peers_3d.<method>`` and ``capture_3d.<method>`` (one record per 3D rotation of
    ``rotations_3d``), each record with ``final_loss, param_error, seconds, iterations, success``; then ``extra``
    (data, settings, ...)."""
    out: dict = {"peers": {k: _record(r) for k, r in runs.items()}}
    if capture is not None:
        out["capture"] = {"angles": [float(a) for a in angles],
                          **{k: [_record(r, full=False) for r in rs] for k, rs in capture.items()}}
    if capture_images:
        out["capture_images"] = {
            name: {"angles": [float(a) for a in angles], "source": entry["source"],
                   **{k: [_record(r, full=False) for r in rs] for k, rs in entry["runs"].items()}}
            for name, entry in capture_images.items()}
    if runs_3d is not None:
        out["peers_3d"] = {k: _record(r) for k, r in runs_3d.items()}
    if capture_3d is not None:
        out["capture_3d"] = {"rotations": [[float(a) for a in r] for r in rotations_3d],
                             **{k: [_record(r, full=False) for r in rs] for k, rs in capture_3d.items()}}
    return out | extra


def _angles_text(angles: Sequence[float]) -> str:
    return ", ".join(f"{a:g}°" for a in angles) if angles else "none"


def capture_verdict(capture: dict[str, list[PeerRun]], angles: Sequence[float], *,
                    ours: str = "predictor_corrector", peer: str = "simpleitk") -> dict[str, str]:
    """Computed sentences on the capture range: how many angles each method recovers, where ``peer`` does better
    and where it does worse than ``ours``, and the median time per registration.

    Returns a dict with keys ``counts``, ``better``, ``worse``, ``search``, ``truth`` (where the objective's own
    minimum is off, from the :data:`FROM_TRUTH` runs), ``global`` and ``time`` (those present in ``capture``).
    """
    angles = [float(a) for a in angles]
    ok = {k: [bool(r.success) for r in rs] for k, rs in capture.items()}
    n = len(angles)
    counts = "; ".join(f"{k.replace('_', ' ')} {sum(v)} of {n}" for k, v in ok.items())
    out = {"counts": f"Recovered motions: {counts}."}
    if ours in ok and peer in ok:
        better = [a for a, p, o in zip(angles, ok[peer], ok[ours], strict=True) if p and not o]
        worse = [a for a, p, o in zip(angles, ok[peer], ok[ours], strict=True) if o and not p]
        out["better"] = (f"SimpleITK from the identity recovers the motion where the {ours.replace('_', '-')} does "
                         f"not at {_angles_text(better)}.")
        out["worse"] = (f"The {ours.replace('_', '-')} recovers it where SimpleITK from the identity does not at "
                        f"{_angles_text(worse)}.")
    if "simpleitk_search" in ok:
        miss = [a for a, s in zip(angles, ok["simpleitk_search"], strict=True) if not s]
        out["search"] = ("With the exhaustive rotation search first, SimpleITK recovers the motion at every angle."
                         if not miss else f"With the exhaustive rotation search first, SimpleITK misses "
                         f"{_angles_text(miss)}.")
    if FROM_TRUTH in ok:
        off = [(a, r.param_error) for a, r in zip(angles, capture[FROM_TRUTH], strict=True) if not r.success]
        out["truth"] = (f"Newton started at the true motion stays within {SUCCESS_CELLS:g} cells of it at every angle: "
                        "the objective's own minimum is the motion everywhere." if not off else
                        f"Newton started at the true motion drifts {min(e for _, e in off):.1f}–"
                        f"{max(e for _, e in off):.1f} cells away at {_angles_text([a for a, _ in off])}: there the "
                        "objective's own minimum is not the motion (part of the moved image leaves the field of view), "
                        "so no method that minimises it can recover those motions.")
    if "global" in ok:
        possible = ok.get(FROM_TRUTH, [True] * n)
        missed = [a for a, g, p in zip(angles, ok["global"], possible, strict=True) if p and not g]
        beyond = [a for a, g, p in zip(angles, ok["global"], possible, strict=True) if g and not p]
        out["global"] = (f"The global driver recovers {sum(ok['global'])} of {n}: "
                         + ("every angle where the objective's minimum is the motion" if not missed else
                            f"it misses {_angles_text(missed)}, where the objective's minimum is the motion")
                         + (f", and also {_angles_text(beyond)}" if beyond else "") + ".")
    med = {k: float(np.median([r.seconds for r in rs])) for k, rs in capture.items() if k != FROM_TRUTH}
    out["time"] = "Median time per registration: " + "; ".join(
        f"{k.replace('_', ' ')} {v:.2f} s" for k, v in med.items()) + "."
    if "global" in med and "simpleitk_search" in med:
        ratio = med["global"] / med["simpleitk_search"]
        out["time"] += (f" The global driver takes {ratio:.2f} times SimpleITK's time with its search "
                        f"({'at or below' if ratio <= 1 else 'above'} it).")
    return out


def capture_table(capture: dict[str, list[PeerRun]], angles: Sequence[float]) -> str:
    """Markdown: one row per angle, one column per method; the motion error in cells and ✓ where the motion was
    recovered, ✗ where not (the error of a failed run is left out: where a failed optimizer stops is not
    reproducible to the digit across machines; the results JSON has it)."""
    head = "| angle | " + " | ".join(k.replace("_", " ") for k in capture) + " |"
    rows = [head, "|---:|" + "---:|" * len(capture)]
    for i, a in enumerate(angles):
        cells = [_error_cell(rs[i]) for rs in capture.values()]
        rows.append(f"| {a:g}° | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _error_cell(run: PeerRun) -> str:
    if run.param_error is None:
        return "—"
    return f"{run.param_error:.2f} ✓" if run.success else "✗"


def runs_table(runs: dict[str, PeerRun], initial_loss: float, *, details: bool = False) -> str:
    """Markdown table of one comparison: the loss relative to the identity's and the motion error (both for
    recovered motions, or without a known motion; a failed run shows ✗), and whether the motion was recovered.

    ``details=True`` shows every number, and iterations, the stop condition and the time (which vary between
    machines).
    """
    cols = ["method", "J / J(identity)", "motion error (cells)", "recovered"]
    if details:
        cols += ["iterations", "stop", "time (s)"]
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for k, r in runs.items():
        shown = details or r.success is not False
        loss = f"{r.final_loss / initial_loss:.3g}" if shown else "✗"
        err = ("—" if r.param_error is None else f"{r.param_error:.2f}") if shown else "✗"
        ok = "—" if r.success is None else ("yes" if r.success else "no")
        cells = [k.replace("_", " "), loss, err, ok]
        if details:
            cells += [str(r.iterations), r.stop, f"{r.seconds:.2f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
