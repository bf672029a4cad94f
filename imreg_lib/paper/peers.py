r"""The paper's methods beside the tool practitioners use: SimpleITK's affine registration on the same images.

Every registration, ours or SimpleITK's, is scored by **our** objective :math:`J(w; \theta_{\min})` and, where the
motion is known, by the motion error

.. math::  e(w) = \max_n \big\| \mathrm{diag}(h)^{-1} \big(y(w, x_n) - y(w^*, x_n)\big) \big\|_2 ,

the largest distance, in cells, between where the found and the true motion put a cell centre :math:`x_n`. A
registration *recovers* the motion when :math:`e < 0.5` cells (:data:`SUCCESS_CELLS`): every point lands within
half a cell of its true position.

SimpleITK is used as its users do: ``MeanSquares`` (the mean squared difference over the points that land inside
the moving image; our ``overlap=True``), full regular sampling (deterministic), linear
interpolation, a multi-resolution pyramid (shrink factors and Gaussian smoothing sigmas in cells), regular step
gradient descent or L-BFGS-B with physical-shift scales, and ``CenteredTransformInitializer`` (geometric
centres). For large rotations its users first search the rotation exhaustively (an ``Euler2DTransform``
scanned over the full circle) and start the affine pyramid there.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import _checks
from ..data import SAMPLE_IMAGES, ImagePair, moved_pair, sample_image, synthetic_hand_pair, synthetic_volume_motion_pair
from ..globalreg import global_register, newton_exact
from ..grid import Grid
from ..interop import affine_from_itk, to_sitk_image
from ..multiscale import predictor_corrector, single_scale, theta_schedule, traditional
from ..objective import SSDObjective
from ..transformations import affine
from ._schema import INLINE, Record

__all__ = ["CAPTURE_ANGLES", "FROM_TRUTH", "IMAGE_METHODS", "METHODS_2D", "METHODS_3D", "SITK_OPTIMIZERS",
           "SUCCESS_CELLS", "CaptureSweep", "CaptureSweep3D", "PeerResult", "PeerRun", "PeerScore",
           "PeersResults", "PeersSettings", "RegisterOptions", "SimpleITKSettings", "capture_range", "capture_range_3d",
           "capture_table", "capture_verdict", "motion_error",
           "peer_comparison", "register", "runs_table", "sample_image_capture", "simpleitk_register",
           ]

#: Motion error (cells) below which a registration recovers the motion.
SUCCESS_CELLS = 0.5
#: The rotations of the capture-range experiment, in degrees (with the default scaling and shift of the hand).
CAPTURE_ANGLES: tuple[float, ...] = tuple(float(a) for a in np.linspace(0.0, 180.0, 13))
#: The methods compared in 2D: SimpleITK's pyramid, SimpleITK after an exhaustive rotation search, and ours.
METHODS_2D = ("simpleitk", "simpleitk_search", "single_scale", "traditional", "predictor_corrector", "global")
#: The methods compared in 3D (no rotation search for SimpleITK: a scan over three angles is what its users avoid).
METHODS_3D = ("simpleitk", "single_scale", "traditional", "predictor_corrector", "global")
#: Not a method: Newton at θ_min started *at the true motion*. Where it ends more than :data:`SUCCESS_CELLS` from
#: the truth, the SSD objective's own minimum is off, and no method that minimises the SSD can recover the motion.
FROM_TRUTH = "newton_from_truth"
#: The optimizers of SimpleITK's affine pyramid (:class:`SimpleITKSettings`).
SITK_OPTIMIZERS = ("regular_step", "lbfgsb")

def _angles(name: str, angles: object, length: int | None = None) -> tuple[float, ...]:
    """A non-empty list of angles in degrees (``length`` of them if given), each a finite number."""
    what = f"{length} finite numbers (degrees)" if length else "a non-empty list of finite numbers (degrees)"
    return tuple(_checks.number(f"{name}[{i}]", a, "a finite number (degrees)")
                 for i, a in enumerate(_checks.sequence(name, angles, what, length)))


@dataclass(frozen=True)
class SimpleITKSettings(Record):
    """How SimpleITK registers: what its users would choose for an affine SSD registration; a value that is not
    allowed raises ``ValueError`` naming the field."""

    #: The pyramid, coarsest level first; sigmas in cells (voxels), 0 = no smoothing.
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas: tuple[float, ...] = (2.0, 1.0, 0.0)
    #: One of :data:`SITK_OPTIMIZERS`: regular step gradient descent or L-BFGS-B, and its settings (``iterations``
    #: per pyramid level).
    optimizer: str = "regular_step"
    learning_rate: float = 1.0
    min_step: float = 1e-4
    iterations: int = 500
    gradient_tolerance: float = 1e-8
    #: ``None``: start from the geometric centres (identity). ``n``: first scan the rotation of an ``Euler2DTransform``
    #: over the full circle in ``2 n + 1`` steps of ``180° / n`` (translation fixed), at ``search_shrink`` /
    #: ``search_sigma``, and start the affine pyramid at the best angle (2D only).
    rotation_search_steps: int | None = None
    search_shrink: int = 2
    search_sigma: float = 2.0
    #: Threads of the registration itself (1: the same result on every run). The pyramid's filters follow ITK's
    #: global default instead, which moves the result too: ``tools/numerics.mk`` pins it for the book's runs.
    threads: int = 1

    def __post_init__(self) -> None:
        shrink = _checks.sequence("shrink_factors", self.shrink_factors, "a non-empty sequence of integers >= 1")
        self._set("shrink_factors", tuple(_checks.integer(f"shrink_factors[{i}]", s) for i, s in enumerate(shrink)))
        sigmas = _checks.sequence("smoothing_sigmas", self.smoothing_sigmas,
                                  f"one number >= 0 per pyramid level ({len(shrink)})", len(shrink))
        self._set("smoothing_sigmas", tuple(_checks.positive_number(f"smoothing_sigmas[{i}]", s, allow_zero=True)
                                             for i, s in enumerate(sigmas)))
        _checks.one_of("optimizer", self.optimizer, SITK_OPTIMIZERS, words=True)
        for name in ("learning_rate", "min_step", "gradient_tolerance"):
            self._set(name, _checks.positive_number(name, getattr(self, name)))
        self._set("search_sigma", _checks.positive_number("search_sigma", self.search_sigma, allow_zero=True))
        for name in ("iterations", "threads", "search_shrink"):
            _checks.integer(name, getattr(self, name))
        if self.rotation_search_steps is not None:
            _checks.integer("rotation_search_steps", self.rotation_search_steps, allowed="None or a positive integer")


@dataclass(frozen=True)
class RegisterOptions(Record):
    r"""The options of :func:`register` that the comparison passes to every method (``settings`` in the results);
    a value that is not allowed raises ``ValueError`` naming the field."""

    #: Our schedule: ``n_scales`` log-spaced scales from ``theta_max`` down to ``theta_min`` (the score's scale).
    theta_max: float
    theta_min: float
    n_scales: int
    #: Newton's tolerance per scale (and for the global driver and :data:`FROM_TRUTH`), and single scale's.
    gtol: float
    gtol_single: float
    #: SimpleITK's set-up.
    settings: SimpleITKSettings

    def __post_init__(self) -> None:
        for name in ("theta_max", "theta_min", "gtol", "gtol_single"):
            self._set(name, _checks.positive_number(name, getattr(self, name)))
        theta_schedule(self.theta_max, self.theta_min, self.n_scales)

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`register` (and of :func:`peer_comparison`, :func:`capture_range`, ...)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True, kw_only=True)
class PeersSettings(Record):
    r"""Every parameter of the comparison (``05_peers``), checked once when made, before any work starts (a value
    that is not allowed raises ``ValueError`` naming the parameter); the fields are the page's parameters, as its
    parameters cell documents them.

    Examples
    --------
    >>> s = PeersSettings(theta_max=1e3, theta_min=1e-3, n_scales=30, gtol=1e-4, gtol_single=1e-7,
    ...                   shrink_factors=[4, 2, 1], smoothing_sigmas=[2.0, 1.0, 0.0], sitk_optimizer="regular_step",
    ...                   rotation_search_steps=18, capture_angles=[0, 90], capture_m=32, m_3d=16, angles_3d=[90, 30])
    >>> s.capture_angles, s.options.kwargs["n_scales"], s.simpleitk.shrink_factors
    ((0.0, 90.0), 30, (4, 2, 1))
    """

    theta_max: float
    theta_min: float
    n_scales: int
    gtol: float
    gtol_single: float
    shrink_factors: tuple[int, ...]
    smoothing_sigmas: tuple[float, ...]
    sitk_optimizer: str
    rotation_search_steps: int | None
    capture_angles: tuple[float, ...]
    capture_m: int
    m_3d: int
    angles_3d: tuple[float, float]
    capture_images: tuple[str, ...] = ()
    rotations_3d: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        _checks.one_of("sitk_optimizer", self.sitk_optimizer, SITK_OPTIMIZERS, words=True)
        options = self.options  # checks the schedule, the tolerances and SimpleITK's set-up
        for name in ("theta_max", "theta_min", "gtol", "gtol_single"):
            self._set(name, getattr(options, name))
        self._set("shrink_factors", options.settings.shrink_factors)
        self._set("smoothing_sigmas", options.settings.smoothing_sigmas)
        self._set("capture_angles", _angles("capture_angles", self.capture_angles))
        _checks.integer("capture_m", self.capture_m, 8)
        _checks.integer("m_3d", self.m_3d, 6)
        self._set("angles_3d", _angles("angles_3d", self.angles_3d, 2))
        names = _checks.sequence("capture_images", self.capture_images,
                                 f"a list of names among {list(SAMPLE_IMAGES)} (or [])", empty=True)
        self._set("capture_images", tuple(_checks.one_of(f"capture_images[{i}]", n, SAMPLE_IMAGES, words=True)
                                           for i, n in enumerate(names)))
        rotations = _checks.sequence("rotations_3d", self.rotations_3d, "a list of [about z, about x] pairs in degrees",
                                     empty=True)
        self._set("rotations_3d", tuple(_angles(f"rotations_3d[{i}]", r, 2) for i, r in enumerate(rotations)))

    @property
    def simpleitk(self) -> SimpleITKSettings:
        """SimpleITK's set-up: the pyramid, the optimizer and the rotation search (other fields at their defaults)."""
        return SimpleITKSettings(self.shrink_factors, self.smoothing_sigmas, self.sitk_optimizer,
                                 rotation_search_steps=self.rotation_search_steps)

    @property
    def options(self) -> RegisterOptions:
        """The options of :func:`register` (``options.kwargs``), as the results store them."""
        return RegisterOptions(self.theta_max, self.theta_min, self.n_scales, self.gtol, self.gtol_single,
                               self.simpleitk)


@dataclass(frozen=True)
class PeerRun(Record):
    """One registration scored by our objective."""

    #: One of :data:`METHODS_2D` / :data:`METHODS_3D`.
    method: str
    #: Found parameters (this library's convention ``[A row-major, b]``).
    w: tuple[float, ...]
    #: :math:`J(w; \\theta_{\\min})` of our objective.
    final_loss: float
    #: Motion error in cells (module notes) and whether it is below :data:`SUCCESS_CELLS`; ``None`` without a known
    #: motion.
    param_error: float | None
    success: bool | None
    #: Wall time of the registration (SimpleITK: search and pyramid; ours: the driver after the objective is built).
    seconds: float
    #: Optimizer iterations (summed over levels or scales).
    iterations: int
    #: Why it stopped (SimpleITK's stop condition of the last level; ours: the number of scales).
    stop: str
    #: What else the method reports (``search_angle_deg``, ``n_hessians``, ...), written beside the fields.
    extra: Mapping[str, Any] = field(default_factory=dict, metadata=INLINE)

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


def _score(method: str, w: torch.Tensor, pair: ImagePair, objective: SSDObjective, theta_min: float, seconds: float,
           iterations: int, stop: str, extra: dict | None = None) -> PeerRun:
    w = torch.as_tensor(w, dtype=objective.reference.dtype, device=objective.reference.device)
    err = motion_error(w, pair.w_true, pair.grid)
    return PeerRun(method, tuple(float(v) for v in w.cpu()), float(objective.loss(w, theta_min)), err,
                   None if err is None else err < SUCCESS_CELLS, seconds, int(iterations), stop, extra or {})


def _sitk_method(settings: SimpleITKSettings, shrink: Sequence[int], sigmas: Sequence[float]):
    """SimpleITK's registration method as its users set it up (module notes), pyramid sigmas in cells."""
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMeanSquares()
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetNumberOfThreads(settings.threads)
    reg.SetShrinkFactorsPerLevel(list(shrink))
    reg.SetSmoothingSigmasPerLevel(list(sigmas))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return reg


def simpleitk_register(pair: ImagePair, settings: SimpleITKSettings | None = None, *, theta_min: float = 1e-3,
                       objective: SSDObjective | None = None, method: str | None = None) -> PeerRun:
    """Register ``pair`` (2D or 3D) with SimpleITK (reference = fixed image, template = moving image) and score it
    by our objective at ``theta_min`` (``objective``: built if ``None``; pass it to reuse its caches).

    ``settings`` defaults to :class:`SimpleITKSettings`; ``method`` is the name recorded (default ``"simpleitk"``,
    or ``"simpleitk_search"`` with a rotation search).
    """
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK's warnings would go to the terminal, not the caller
    settings = SimpleITKSettings() if settings is None else settings
    dim, n = pair.grid.dim, settings.rotation_search_steps
    if n is not None and dim != 2:
        raise ValueError("settings.rotation_search_steps: the rotation search is 2D only; set it to None in 3D")
    objective = SSDObjective.from_pair(pair) if objective is None else objective
    fixed, moving = to_sitk_image(pair.reference, pair.grid), to_sitk_image(pair.template, pair.grid)
    geometry = sitk.CenteredTransformInitializerFilter.GEOMETRY
    t0 = time.perf_counter()
    extra = {}
    if n is None:
        initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(dim), geometry)
    else:  # scan the rotation about the geometric centre, translation fixed, and start the pyramid at the best angle
        euler = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler2DTransform(), geometry)
        search = _sitk_method(settings, [settings.search_shrink], [settings.search_sigma])
        search.SetOptimizerAsExhaustive(numberOfSteps=[n, 0, 0], stepLength=math.pi / n)
        search.SetOptimizerScales([1.0, 1.0, 1.0])
        search.SetInitialTransform(euler, inPlace=True)
        search.Execute(fixed, moving)
        initial = sitk.AffineTransform(euler.GetMatrix(), euler.GetTranslation(), euler.GetCenter())
        extra = {"search_angle_deg": math.degrees(euler.GetAngle()), "search_evaluations": 2 * n + 1}
    reg = _sitk_method(settings, settings.shrink_factors, settings.smoothing_sigmas)
    if settings.optimizer == "regular_step":
        reg.SetOptimizerAsRegularStepGradientDescent(learningRate=settings.learning_rate, minStep=settings.min_step,
                                                     numberOfIterations=settings.iterations,
                                                     gradientMagnitudeTolerance=settings.gradient_tolerance)
        reg.SetOptimizerScalesFromPhysicalShift()
    else:  # L-BFGS-B ignores optimizer scales
        reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=settings.gradient_tolerance,
                                 numberOfIterations=settings.iterations)
    reg.SetInitialTransform(initial, inPlace=False)
    ticks = []
    reg.AddCommand(sitk.sitkIterationEvent, lambda: ticks.append(None))
    result = reg.Execute(fixed, moving)
    seconds = time.perf_counter() - t0
    tr = sitk.AffineTransform(result.GetNthTransform(0) if isinstance(result, sitk.CompositeTransform) else result)
    w = affine_from_itk(tr.GetMatrix(), tr.GetTranslation(), tr.GetCenter())
    name = method or ("simpleitk" if n is None else "simpleitk_search")
    return _score(name, w, pair, objective, theta_min, seconds, len(ticks), reg.GetOptimizerStopConditionDescription(),
                  extra)


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
    (tolerance ``gtol``, well above the gradient's round-off floor): where the SSD's own minimum lies. ``global``
    minimises the mean squares over the overlap (:meth:`imreg_lib.SSDObjective.with_overlap`, SimpleITK's metric).
    """
    methods = METHODS_2D if pair.grid.dim == 2 else METHODS_3D
    if method == FROM_TRUTH:
        if pair.w_true is None:
            raise ValueError(f"method {FROM_TRUTH!r} needs a pair with a known motion (w_true)")
    elif method not in methods:
        raise ValueError(f"method must be one of {methods} for a {pair.grid.dim}D pair, got {method!r}")
    else:
        thetas = theta_schedule(theta_max, theta_min, n_scales)
    objective = SSDObjective.from_pair(pair) if objective is None else objective
    if method.startswith("simpleitk"):
        settings = SimpleITKSettings() if settings is None else settings
        steps = (settings.rotation_search_steps or 18) if method == "simpleitk_search" else None
        return simpleitk_register(pair, dataclasses.replace(settings, rotation_search_steps=steps),
                                  theta_min=theta_min, objective=objective, method=method)
    if method in ("traditional", "predictor_corrector"):
        for theta in thetas:  # the scales, before the clock: a method run after another on the same objective
            objective.at_scale(theta)  # would otherwise find them built (page 05 shares one objective)
    t0 = time.perf_counter()
    if method == FROM_TRUTH:
        run = newton_exact(objective.at_scale(theta_min).derivatives, pair.w_true, gtol=gtol)
    elif method == "global":
        run = global_register(objective.with_overlap(), theta_min=theta_min, gtol=gtol)
    elif method == "single_scale":
        run = single_scale(objective, theta_min, gtol=gtol_single)
    else:
        run = (traditional(objective, thetas, gtol=gtol) if method == "traditional"
               else predictor_corrector(objective, thetas, gtol=gtol, record_start=False))
    seconds = time.perf_counter() - t0
    if method == FROM_TRUTH:
        stop, extra = "Newton (exact, trust region) from the true motion", {"n_hessians": run.n_evaluations}
    elif method == "global":
        d = pair.grid.dim
        start = run.start[: d * d].reshape(d, d).cpu()
        stop = f"search, then Newton (exact, trust region) over {len(run.scales)} scales"
        extra = {"final_grad_norm": run.scales[-1].grad_norm, "n_hessians": run.n_evaluations,
                 "search_angle_deg": math.degrees(math.atan2(float(start[1, 0]), float(start[0, 0])))}
    else:
        stop = f"Newton (trust-exact) over {len(run.history)} scale(s)"
        extra = {"final_grad_norm": run.history[-1].final_grad_norm, "n_hessians": run.n_hessians}
    return _score(method, run.w, pair, objective, theta_min, seconds, run.iterations, stop, extra)


def peer_comparison(pair: ImagePair, methods: Sequence[str] | None = None, *, objective: SSDObjective | None = None,
                    **options) -> dict[str, PeerRun]:
    """Every method on one pair (:func:`register` options), sharing one objective (built if ``None``)."""
    methods = tuple(METHODS_2D if pair.grid.dim == 2 else METHODS_3D) if methods is None else tuple(methods)
    objective = SSDObjective.from_pair(pair) if objective is None else objective
    return {m: register(pair, m, objective=objective, **options) for m in methods}


def _sweep(pairs, methods: Sequence[str], allowed: Sequence[str], from_truth: bool, options: dict,
           ) -> dict[str, list[PeerRun]]:
    """Every method of ``methods`` (among ``allowed``) on each pair of the iterable ``pairs``, plus
    :data:`FROM_TRUTH` with ``from_truth``: ``{method: [run per pair]}``."""
    bad = [m_ for m_ in methods if m_ not in allowed]
    if bad:
        raise ValueError(f"methods must be among {allowed}, got {bad}")
    runs: dict[str, list[PeerRun]] = {m_: [] for m_ in tuple(methods) + ((FROM_TRUTH,) if from_truth else ())}
    for pair in pairs:
        objective = SSDObjective.from_pair(pair)
        for name, run in peer_comparison(pair, methods, objective=objective, **options).items():
            runs[name].append(run)
        if from_truth:
            runs[FROM_TRUTH].append(register(pair, FROM_TRUTH, objective=objective, **options))
    return runs


def capture_range(angles: Sequence[float] = CAPTURE_ANGLES, m: int = 32, methods: Sequence[str] = METHODS_2D, *,
                  image: torch.Tensor | None = None, omega: Sequence[float] | None = None, source: str = "image",
                  from_truth: bool = True, device: str | torch.device = "auto", **options) -> dict[str, list[PeerRun]]:
    """Which methods recover a known motion when its rotation is each of ``angles`` (degrees).

    Without ``image``: the synthetic hand, moved by its default scaling and shift and each rotation. With
    ``image`` (values on ``Grid(omega, image.shape)``, e.g. a file at its own size): that image and its copy moved
    by the same maps (:func:`imreg_lib.data.moved_pair`). With ``from_truth`` the runs of :data:`FROM_TRUTH` are
    added (where the SSD's own minimum lies). Returns ``{method: [run per angle]}``.
    """
    angles = _angles("angles", angles)
    if image is not None and omega is None:
        raise ValueError("omega: give the domain of image (x0, x1, y0, y1)")
    pairs = (synthetic_hand_pair(m, motion={"angle_deg": a}, device=device) if image is None else
             moved_pair(image, omega, m, motion={"angle_deg": a}, source=source, device=device) for a in angles)
    return _sweep(pairs, methods, METHODS_2D, from_truth, options)


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
    return source, capture_range(angles, m, methods, image=image, omega=omega, source=source, device=device, **options)


def capture_range_3d(rotations: Sequence[Sequence[float]], m: int = 16,
                     methods: Sequence[str] = ("simpleitk", "global"), *, from_truth: bool = True,
                     device: str | torch.device = "auto", **options) -> dict[str, list[PeerRun]]:
    """:func:`capture_range` for the synthetic volume: one pair per ``(about z, about x)`` rotation (degrees) with
    the volume's default scaling and shift. Returns ``{method: [run per rotation]}``."""
    rotations = [_angles(f"rotations[{i}]", r, 2) for i, r in enumerate(rotations)]
    pairs = (synthetic_volume_motion_pair(m, motion={"angles_deg": r}, device=device) for r in rotations)
    return _sweep(pairs, methods, METHODS_3D, from_truth, options)


# ---- results and verdicts ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PeerScore(Record):
    """How one registration scored: one angle's entry of a capture sweep (:class:`CaptureSweep`); the fields are
    :class:`PeerRun`'s (``param_error`` and ``success`` written as ``null`` without a known motion)."""

    final_loss: float
    param_error: float | None
    seconds: float
    iterations: int
    success: bool | None

    @classmethod
    def from_run(cls, run: PeerRun) -> PeerScore:
        """The score of ``run``."""
        return cls(run.final_loss, run.param_error, run.seconds, run.iterations, run.success)


@dataclass(frozen=True)
class PeerResult(PeerScore):
    """A registration of a compared pair as the results hold it (``peers.<method>``, ``peers_3d.<method>``): its
    :class:`PeerScore`, and :class:`PeerRun`'s found parameters, stop condition and ``extra`` (written beside the
    fields: ``peers.simpleitk_search.search_angle_deg``)."""

    w: tuple[float, ...]
    stop: str
    extra: Mapping[str, Any] = field(default_factory=dict, metadata=INLINE)

    @classmethod
    def from_run(cls, run: PeerRun) -> PeerResult:
        """The result of ``run`` (all but its method, which keys it)."""
        return cls(run.final_loss, run.param_error, run.seconds, run.iterations, run.success, tuple(run.w), run.stop,
                   dict(run.extra))


def _one_per(what: str, n: int, runs: Mapping[str, Sequence[PeerScore]]) -> None:
    for method, scores in runs.items():
        if len(scores) != n:
            raise ValueError(f"runs[{method!r}] must hold one score per {what} ({n}), got {len(scores)}")


def _scores(runs: Mapping[str, Sequence[PeerRun]]) -> dict[str, tuple[PeerScore, ...]]:
    return {k: tuple(PeerScore.from_run(r) for r in rs) for k, rs in runs.items()}


@dataclass(frozen=True)
class CaptureSweep(Record):
    """A capture-range sweep (``capture``, ``capture_images.<image>``): one :class:`PeerScore` per rotation."""

    #: The rotations in degrees.
    angles: tuple[float, ...]
    #: What the image is (the sweeps of ``capture_images``; ``None`` and left out otherwise).
    source: str | None = field(default=None, kw_only=True)
    #: ``{method: (score per angle)}``, written at the sweep's own level (``capture.<method>``).
    runs: Mapping[str, tuple[PeerScore, ...]] = field(default_factory=dict, metadata=INLINE)

    def __post_init__(self) -> None:
        _one_per("angle", len(self.angles), self.runs)

    @classmethod
    def from_runs(cls, angles: Sequence[float], runs: Mapping[str, Sequence[PeerRun]],
                  source: str | None = None) -> CaptureSweep:
        """The sweep of :func:`capture_range`'s ``runs`` over ``angles``."""
        return cls(tuple(float(a) for a in angles), _scores(runs), source=source)


@dataclass(frozen=True)
class CaptureSweep3D(Record):
    """The 3D capture sweep (``capture_3d``): one :class:`PeerScore` per rotation of the volume, ``(about z, about
    x)`` in degrees (``runs`` written at the sweep's own level: ``capture_3d.<method>``)."""

    rotations: tuple[tuple[float, ...], ...]
    runs: Mapping[str, tuple[PeerScore, ...]] = field(default_factory=dict, metadata=INLINE)

    def __post_init__(self) -> None:
        _one_per("rotation", len(self.rotations), self.runs)

    @classmethod
    def from_runs(cls, rotations: Sequence[Sequence[float]], runs: Mapping[str, Sequence[PeerRun]]) -> CaptureSweep3D:
        """The sweep of :func:`capture_range_3d`'s ``runs`` over ``rotations``."""
        return cls(tuple(tuple(float(a) for a in r) for r in rotations), _scores(runs))


@dataclass(frozen=True)
class PeersResults(Record):
    """The results JSON of the comparison (``05_peers``). Fields that are ``None`` are left out of the JSON, except
    ``export_agreement`` and ``export_file_mse`` (always written: one of them is ``null`` in every run)."""

    #: ``{method: result}`` on the page's pair; the sweep on the data set's own image (``capture.angles``,
    #: ``capture.<method>``) and on the real images of :data:`imreg_lib.data.SAMPLE_IMAGES`; the same in 3D.
    peers: Mapping[str, PeerResult]
    capture: CaptureSweep | None = None
    capture_images: Mapping[str, CaptureSweep] | None = None
    peers_3d: Mapping[str, PeerResult] | None = None
    capture_3d: CaptureSweep3D | None = None
    #: What the pairs and the sweep's image are, and :math:`J(\\mathrm{identity}; \\theta_{\\min})` of each pair.
    data: str | None = None
    data_3d: str | None = None
    identity_loss: float | None = None
    capture_source: str | None = None
    identity_loss_3d: float | None = None
    #: The largest difference between SimpleITK's and our resampling through the exported transform, relative to the
    #: template's maximum (the synthetic hand; ``None`` for the user's files).
    export_agreement: float | None = field(kw_only=True)
    #: The mean squared difference of the reference file to the template file resampled without and with the
    #: exported transform (the user's files; ``None`` for the synthetic hand).
    export_file_mse: tuple[float, float] | None = field(kw_only=True)
    #: The page's parameters of the same names, and the options every method ran with.
    m: int | None = None
    capture_m: int | None = None
    m_3d: int | None = None
    angles_3d: tuple[float, ...] | None = None
    settings: RegisterOptions | None = None
    peak_memory_mb: float | None = None
    machine: Mapping[str, Any] | None = None

    @classmethod
    def from_runs(cls, runs: Mapping[str, PeerRun], capture: Mapping[str, Sequence[PeerRun]] | None,
                  angles: Sequence[float], runs_3d: Mapping[str, PeerRun] | None, *,
                  capture_images: Mapping[str, Mapping[str, Any]] | None = None,
                  capture_3d: Mapping[str, Sequence[PeerRun]] | None = None,
                  rotations_3d: Sequence[Sequence[float]] = (),
                  export_agreement: float | None = None, export_file_mse: Sequence[float] | None = None,
                  angles_3d: Sequence[float] | None = None, machine: Mapping[str, Any] | None = None,
                  **fields: Any) -> PeersResults:
        """The results of the page's runs: ``runs`` / ``runs_3d`` of :func:`peer_comparison` (``None``: no 3D pair),
        ``capture`` of :func:`capture_range` over ``angles`` (``None``: no sweep), ``capture_images`` as
        ``{image: {"source": str, "runs": {method: [run per angle]}}}`` over the same ``angles``, ``capture_3d`` of
        :func:`capture_range_3d` over ``rotations_3d``; ``fields``: the other fields, by name."""
        return cls(
            peers={k: PeerResult.from_run(r) for k, r in runs.items()},
            capture=None if capture is None else CaptureSweep.from_runs(angles, capture),
            capture_images={name: CaptureSweep.from_runs(angles, entry["runs"], entry["source"])
                            for name, entry in capture_images.items()} if capture_images else None,
            peers_3d=None if runs_3d is None else {k: PeerResult.from_run(r) for k, r in runs_3d.items()},
            capture_3d=None if capture_3d is None else CaptureSweep3D.from_runs(rotations_3d, capture_3d),
            export_agreement=export_agreement,
            export_file_mse=None if export_file_mse is None else tuple(export_file_mse),
            angles_3d=None if angles_3d is None else tuple(float(a) for a in angles_3d),
            machine=None if machine is None else dict(machine), **fields)


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
        out["search"] = "With the exhaustive rotation search first, SimpleITK " + (
            f"misses {_angles_text(miss)}." if miss else "recovers the motion at every angle.")
    if FROM_TRUTH in ok:
        off = [(a, r.param_error) for a, r in zip(angles, capture[FROM_TRUTH], strict=True) if not r.success]
        out["truth"] = (f"Newton on the SSD started at the true motion stays within {SUCCESS_CELLS:g} cells of it at "
                        "every angle: the SSD's own minimum is the motion everywhere." if not off else
                        f"Newton on the SSD started at the true motion drifts {min(e for _, e in off):.1f}–"
                        f"{max(e for _, e in off):.1f} cells away at {_angles_text([a for a, _ in off])}: there the "
                        "SSD's own minimum is not the motion (part of the moved image leaves the field of view), "
                        "so no method that minimises the SSD can recover those motions.")
    if "global" in ok:
        possible = ok.get(FROM_TRUTH, [True] * n)
        missed = [a for a, g in zip(angles, ok["global"], strict=True) if not g]
        beyond = [a for a, g, p in zip(angles, ok["global"], possible, strict=True) if g and not p]
        text = f"The global driver, on the mean squares over the overlap, recovers {sum(ok['global'])} of {n}"
        text += f"; it misses {_angles_text(missed)}" if missed else ": every angle"
        if beyond:
            text += f"; it recovers {_angles_text(beyond)}" if missed else f", {_angles_text(beyond)} among them"
            text += ", where the SSD's minimum is not the motion"
        out["global"] = text + "."
    med = {k: float(np.median([r.seconds for r in rs])) for k, rs in capture.items() if k != FROM_TRUTH}
    out["time"] = "Median time per registration: " + "; ".join(
        f"{k.replace('_', ' ')} {v:.2f} s" for k, v in med.items()) + "."
    if "global" in med and "simpleitk_search" in med:
        ratio = med["global"] / med["simpleitk_search"]
        out["time"] += (f" The global driver takes {ratio:.2f} times SimpleITK's time with its search "
                        f"({'at or below' if ratio <= 1 else 'above'} it).")
    return out


def _markdown(head: Sequence[str], rows: Iterable[Sequence[str]], rule: str = "---") -> str:
    """A Markdown table: the header, a ``rule`` (the alignment) per column, then one line per row of cells."""
    return "\n".join(["| " + " | ".join(head) + " |", "|" + f"{rule}|" * len(head)]
                     + ["| " + " | ".join(cells) + " |" for cells in rows])


def capture_table(capture: dict[str, list[PeerRun]], angles: Sequence[float]) -> str:
    """Markdown: one row per angle, one column per method; the motion error in cells and ✓ where the motion was
    recovered, ✗ where not (the error of a failed run is left out: where a failed optimizer stops is not
    reproducible to the digit across machines; the results JSON has it)."""
    return _markdown(["angle", *(k.replace("_", " ") for k in capture)],
                     ([f"{a:g}°", *(_error_cell(rs[i]) for rs in capture.values())] for i, a in enumerate(angles)),
                     "---:")


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
    rows = []
    for k, r in runs.items():
        shown = details or r.success is not False
        rows.append([k.replace("_", " "), f"{r.final_loss / initial_loss:.3g}" if shown else "✗",
                     ("—" if r.param_error is None else f"{r.param_error:.2f}") if shown else "✗",
                     "—" if r.success is None else ("yes" if r.success else "no"),
                     *([str(r.iterations), r.stop, f"{r.seconds:.2f}"] if details else [])])
    return _markdown(["method", "J / J(identity)", "motion error (cells)", "recovered",
                      *(["iterations", "stop", "time (s)"] if details else [])], rows)
