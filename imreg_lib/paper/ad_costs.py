r"""The cost of derivatives (paper §2.2, Table 1): loss, gradient, Hessian, forward map and its
Jacobian, timed for a transformation model under one of two protocols.

Protocols
---------
``"paper"`` (the authors' measurement)
    Everything is rebuilt in every timed call, as in the authors' scripts: the spline coefficients of the
    template (and, in the loss, of the reference) are solved by dense ``torch.linalg.solve`` of the
    per-dimension systems :math:`(B^\top B + \theta P) c = B^\top t` built from
    :func:`~imreg_lib.spline_basis_matrices`, and fresh random parameters :math:`w \sim N(0, I)` are drawn
    inside the call. Derivatives are generic ``torch.func`` AD of the pure functions :math:`(w, \theta)
    \mapsto J` and :math:`(w, \theta) \mapsto T(y(w))`: gradient ``grad``, Hessian ``jacrev(grad)``,
    Jacobian ``jacfwd``. (The authors' images were float32; here everything is float64.)
``"cached"`` (what a user of :mod:`imreg_lib` pays)
    Coefficients are built once per (image, θ) (:meth:`~imreg_lib.SSDObjective.at_scale`) and the parameters
    are a fixed realistic iterate near the identity. Loss and forward map are the library's; gradient and
    exact Hessian come from :meth:`~imreg_lib.ScaleObjective.derivatives` (the spline's analytic derivatives
    times the transformation's Jacobian, plus the transformation's own second-order term: FAIR's structure).
    The forward map's Jacobian is tried both as the structured :math:`\nabla T(y)\, Q` and as ``jacfwd`` (at
    most 3 s each); the faster one is then timed and reported, and named in ``routes``.

"Factor" is, as in the paper, mean time over mean loss time (gradient, Hessian) or over mean forward time
(Jacobian); the same ratios of medians are reported too (more robust to timing noise). Functions are timed
in the order loss, forward, gradient, Jacobian, Hessian: on a CPU, the large temporary arrays of a generic
AD Hessian leave the memory allocator in a state that slows the calls timed after it down.

Beside Table 1: :func:`derivative_checks` compares the hand-coded derivatives with ``torch.func`` and Taylor-tests
them, and :func:`scaling_study` times them against the number of parameters and the image size
(:class:`ScalingStudy`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.func import grad, hessian, jacfwd, jacrev

from .. import _checks
from ..data import ImagePair, load_pair, synthetic_hand_pair
from ..derivatives import taylor_test
from ..device import resolve_device
from ..grid import Grid
from ..neural_ode import NeuralODE
from ..objective import ScaleObjective, SSDObjective
from ..spline import spline_basis_matrices, spline_evaluate
from ..timing import Timing, time_function
from ..transformations import Affine
from ._schema import Record
from .recorded import PAPER_FACTORS, PAPER_TABLE1

__all__ = ["TABLE1_FUNCTIONS", "ADCosts", "DerivativeComparison", "ScalingPoint", "ScalingStudy", "ad_cost_table",
           "compare_derivatives", "check_derivatives", "derivative_check_failures", "derivative_checks",
           "measure_ad_costs", "model_transformation", "near_identity", "paper_spline_coefficients", "scaling_point",
           "scaling_study", "synthetic_volume_pair", "table1_markdown"]

#: The timed functions, in the order of Table 1.
TABLE1_FUNCTIONS = ("loss", "gradient", "hessian", "forward", "jacobian")
_MODELS = ("affine", "neural_ode")
_TRIAL_SECONDS = 3.0  # time limit per route when choosing the faster Jacobian route (cached protocol)
_PROTOCOLS = ("paper", "cached")


# ---- Building blocks -------------------------------------------------------------------------------------------------
def model_transformation(model: str, dim: int = 2):
    """The transformation of a Table 1 model: ``"affine"`` (6 parameters in 2D) or ``"neural_ode"`` (50)."""
    return Affine(dim) if _checks.one_of("model", model, _MODELS) == "affine" else NeuralODE(dim)


def near_identity(transformation, scale: float = 0.05, seed: int = 0, device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A realistic iterate: the identity plus ``scale`` times seeded N(0, 1) noise in every parameter.

    For the neural ODE this gives small nonzero weights (a gentle, nonlinear flow; at the identity itself
    the first layer's derivatives would vanish). Deterministic for a given ``seed``.
    """
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(transformation.n_params, generator=gen, dtype=torch.float64)
    return (transformation.identity(dtype=torch.float64) + scale * noise).to(device=device, dtype=dtype)


def paper_spline_coefficients(data: torch.Tensor, theta: float | torch.Tensor) -> torch.Tensor:
    r"""Spline coefficients the authors' way: for every dimension build :math:`B`, :math:`P`
    (:func:`~imreg_lib.spline_basis_matrices`) and solve :math:`(B^\top B + \theta P)\, c = B^\top t` along it
    with a dense ``torch.linalg.solve``. Equal to :func:`~imreg_lib.spline_coefficients` up to round-off;
    here to be timed, as the original does it inside every loss, gradient and Hessian evaluation."""
    C = data
    for axis, m in enumerate(data.shape):
        B, P = spline_basis_matrices(m, data.dtype)
        B, P = B.to(data.device), P.to(data.device)
        X = torch.movedim(C, axis, 0)
        shape = X.shape
        X = torch.linalg.solve(B.T @ B + theta * P, B.T @ X.reshape(m, -1)).reshape(shape)
        C = torch.movedim(X, 0, axis)
    return C


def _paper_functions(pair: ImagePair, transformation) -> tuple[Callable, Callable]:
    """The authors' ``forward(w, θ)`` and ``lossfn(w, θ)``, pure functions with the solves inside."""
    grid = pair.grid
    x = grid.cell_centers(pair.reference.device, pair.reference.dtype)
    hv = grid.cell_volume

    def forward(w: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return spline_evaluate(paper_spline_coefficients(pair.template, theta), transformation(w, x), grid)

    def loss(w: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        R = spline_evaluate(paper_spline_coefficients(pair.reference, theta), x, grid)
        return hv * torch.sum((forward(w, theta) - R) ** 2)

    return forward, loss


# ---- Table 1 ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ADCosts(Record):
    """Timings of the five Table 1 functions for one model under one protocol (milliseconds).

    ``<fn>_ms`` is the mean, ``<fn>_std`` the sample standard deviation, ``<fn>_median_ms`` the median and
    ``<fn>_n_runs`` the number of timed calls, for ``fn`` in :data:`TABLE1_FUNCTIONS`. ``routes`` names the
    implementation timed for each function; ``alternatives`` holds timings of routes that were measured
    but not reported (``{route: Timing.as_dict()}``). Its JSON adds the derived :attr:`factors`,
    :attr:`factors_median` and, for a Table 1 model, :attr:`paper`.
    """

    _json_extra = ("factors", "factors_median", "paper")

    protocol: str
    model: str
    n_params: int
    m: tuple[int, ...]
    theta: float
    device: str
    loss_ms: float
    loss_std: float
    loss_median_ms: float
    loss_n_runs: int
    gradient_ms: float
    gradient_std: float
    gradient_median_ms: float
    gradient_n_runs: int
    hessian_ms: float
    hessian_std: float
    hessian_median_ms: float
    hessian_n_runs: int
    forward_ms: float
    forward_std: float
    forward_median_ms: float
    forward_n_runs: int
    jacobian_ms: float
    jacobian_std: float
    jacobian_median_ms: float
    jacobian_n_runs: int
    routes: Mapping[str, Any] = field(default_factory=dict)
    alternatives: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_timings(cls, protocol: str, model: str, n_params: int, m: tuple[int, ...], theta: float,
                     device: str, timings: dict[str, Timing], routes: dict, alternatives: dict) -> ADCosts:
        stats = {f"{fn}_{stat}": getattr(timings[fn], attr) for fn in TABLE1_FUNCTIONS for stat, attr in
                 (("ms", "mean_ms"), ("std", "std_ms"), ("median_ms", "median_ms"), ("n_runs", "n_runs"))}
        return cls(protocol, model, n_params, tuple(m), float(theta), device, routes=dict(routes),
                   alternatives=dict(alternatives), **stats)

    def _ratios(self, stat: str) -> dict[str, float]:
        g = lambda fn: getattr(self, f"{fn}_{stat}")  # noqa: E731
        return {"gradient": g("gradient") / g("loss"), "hessian": g("hessian") / g("loss"),
                "jacobian": g("jacobian") / g("forward")}

    @property
    def factors(self) -> dict[str, float]:
        """Mean time / mean loss time (gradient, Hessian) and / mean forward time (Jacobian): the paper's."""
        return self._ratios("ms")

    @property
    def factors_median(self) -> dict[str, float]:
        """The same ratios of medians."""
        return self._ratios("median_ms")

    @property
    def paper(self) -> dict | None:
        """The paper's Table 1 numbers of this model (mean ms, standard deviation, factors), ``None`` for another
        model."""
        if self.model not in PAPER_TABLE1:
            return None
        return {"ms": {fn: PAPER_TABLE1[self.model][fn][0] for fn in TABLE1_FUNCTIONS},
                "std": {fn: PAPER_TABLE1[self.model][fn][1] for fn in TABLE1_FUNCTIONS},
                "factors": PAPER_FACTORS[self.model]}


def _check_run_settings(n_runs, warmup, max_seconds, theta) -> None:
    _checks.integer("n_runs", n_runs, 2)
    _checks.integer("warmup", warmup, 0)
    if max_seconds is not None:
        _checks.positive_number("max_seconds", max_seconds, finite=False, allowed="None or a positive number")
    _checks.positive_number("theta", theta, allow_zero=True)


def _check_dim(transformation, pair: ImagePair) -> None:
    if transformation.dim != pair.grid.dim:
        raise ValueError(f"the transformation is {transformation.dim}D but the images are {pair.grid.dim}D")


def measure_ad_costs(pair: ImagePair, model: str = "affine", protocol: str = "cached", *, theta: float = 1e-3,
                     n_runs: int = 100, warmup: int = 5, max_seconds: float | None = None, seed: int = 0,
                     transformation=None) -> ADCosts:
    """Time loss, gradient, Hessian, forward map and Jacobian of one model under one protocol (module notes).

    ``model`` is ``"affine"`` or ``"neural_ode"`` (the Table 1 models), or any label when ``transformation``
    overrides the model's transformation (e.g. a wider :class:`~imreg_lib.NeuralODE`). ``pair``'s device and dtype
    are used; ``theta`` is the scale of the spline model; ``n_runs``, ``warmup`` and ``max_seconds`` (an optional
    budget per function) go to :func:`~imreg_lib.time_function` for every function; ``seed`` seeds the random
    parameters (paper protocol) or the iterate near the identity (cached).
    """
    _checks.one_of("protocol", protocol, _PROTOCOLS)
    _check_run_settings(n_runs, warmup, max_seconds, theta)
    tr = transformation if transformation is not None else model_transformation(model, pair.grid.dim)
    _check_dim(tr, pair)
    dev, dtype = pair.reference.device, pair.reference.dtype
    timed = lambda fn: time_function(fn, n_runs, warmup, dev, max_seconds)  # noqa: E731
    if protocol == "paper":
        forward, loss = _paper_functions(pair, tr)
        th = torch.tensor(float(theta), dtype=torch.float64, device=dev)
        gen = torch.Generator(device=dev).manual_seed(seed)
        p = tr.n_params
        rand = lambda: torch.randn(p, generator=gen, dtype=dtype, device=dev)  # noqa: E731
        timings = {"loss": timed(lambda: loss(rand(), th)), "forward": timed(lambda: forward(rand(), th)),
                   "gradient": timed(lambda: grad(loss)(rand(), th)),
                   "jacobian": timed(lambda: jacfwd(forward)(rand(), th)),
                   "hessian": timed(lambda: jacrev(grad(loss))(rand(), th))}

        def autograd_gradient():
            w = rand().requires_grad_()
            return torch.autograd.grad(loss(w, th), w)[0]

        alternatives = {"gradient:torch.autograd": timed(autograd_gradient).as_dict()}
        routes = {"loss": "coefficient solves + loss", "gradient": "torch.func.grad",
                  "hessian": "torch.func.jacrev(grad)", "forward": "coefficient solve + forward map",
                  "jacobian": "torch.func.jacfwd"}
    else:
        scale = SSDObjective.from_pair(pair, tr).at_scale(float(theta))
        w = near_identity(tr, seed=seed, device=dev, dtype=dtype)
        timings = {"loss": timed(lambda: scale.loss(w)), "forward": timed(lambda: scale.forward(w)),
                   "gradient": timed(lambda: scale.derivatives(w, "none"))}
        # the Jacobian of the forward map: pick the faster route (route: forward_jacobian's mode) in a short trial
        # (at most _TRIAL_SECONDS each), then time the winner like every other function
        modes = {"structured": "structured", "jacfwd": "ad"}
        budget = _TRIAL_SECONDS if max_seconds is None else min(max_seconds, _TRIAL_SECONDS)
        trial = {k: time_function(lambda mode=mode: scale.forward_jacobian(w, mode), n_runs, min(warmup, 2), dev,
                                  budget) for k, mode in modes.items()}
        best, other = sorted(trial, key=lambda k: trial[k].median_ms)
        timings["jacobian"] = timed(lambda: scale.forward_jacobian(w, modes[best]))
        alternatives = {f"jacobian:{other}": trial[other].as_dict()}
        timings["hessian"] = timed(lambda: scale.derivatives(w, "exact"))
        hand = "analytic Q" if tr.is_linear else "hand-coded sensitivities"
        routes = {"loss": "cached coefficients", "gradient": "structured (value and gradient, one spline pass)",
                  "hessian": f"structured exact ({hand} for the transformation)", "forward": "cached coefficients",
                  "jacobian": "structured ∇T·Q" if best == "structured" else "torch.func.jacfwd"}
    return ADCosts.from_timings(protocol, model, tr.n_params, pair.grid.m, theta, str(dev), timings, routes,
                                alternatives)


def ad_cost_table(m: int = 32, theta: float = 1e-3, n_runs: int = 100, protocol: str = "both", *,
                  device: str | torch.device = "auto", reference_path: str | os.PathLike | None = None,
                  template_path: str | os.PathLike | None = None, template_orientation: str = "upright",
                  domain: str = "file", models: Sequence[str] = _MODELS, warmup: int = 5,
                  max_seconds: float | None = None, seed: int = 0) -> dict[str, dict[str, ADCosts]]:
    """Table 1: ``{protocol: {model: ADCosts}}`` (``protocol``: ``"paper"``, ``"cached"`` or ``"both"``) for
    :func:`~imreg_lib.synthetic_hand_pair` of ``m`` cells per dimension (>= 4), or the user's images
    ``reference_path`` and ``template_path`` (both or neither) laid on ``domain`` (:data:`~imreg_lib.data.DOMAINS`),
    the template turned by ``template_orientation`` (:data:`~imreg_lib.data.ORIENTATIONS`; the paper's Table 1
    scripts mirror it along x: ``"mirror_x"``). All inputs are validated before any work starts.
    """
    _checks.one_of("protocol", protocol, (*_PROTOCOLS, "both"), words=True)
    _checks.integer("m", m, 4)
    _check_run_settings(n_runs, warmup, max_seconds, theta)
    models = tuple(models) if not isinstance(models, str) else (models,)
    if not models or any(mod not in _MODELS for mod in models):
        raise ValueError(f"models must be a non-empty subset of {_MODELS}, got {models!r}")
    if (reference_path is None) != (template_path is None):
        raise ValueError("set both reference_path and template_path, or neither")
    _checks.integer("seed", seed, -(2**63), allowed="an integer")
    dev = resolve_device(device)
    pair = synthetic_hand_pair(m, device=dev) if reference_path is None else load_pair(
        reference_path, template_path, m, template_orientation=template_orientation, domain=domain, device=dev)
    protocols = _PROTOCOLS if protocol == "both" else (protocol,)
    return {prot: {mod: measure_ad_costs(pair, mod, prot, theta=theta, n_runs=n_runs, warmup=warmup,
                                         max_seconds=max_seconds, seed=seed) for mod in models}
            for prot in protocols}


_LABELS = {"loss": "Loss function", "gradient": "Gradient", "hessian": "Hessian", "forward": "Forward function",
           "jacobian": "Jacobian"}
_MODEL_LABELS = {"affine": "affine (6)", "neural_ode": "neural ODE (50)"}


def table1_markdown(costs: dict[str, ADCosts], paper: bool = True) -> str:
    """A Markdown table of one protocol's results ``{model: ADCosts}`` in the layout of Table 1, with the
    median, the number of timed runs, the factors (of means, as the paper; and of medians) and, if
    ``paper``, the paper's numbers beside them."""
    head = ["model", "function", "mean ± std (ms)", "median (ms)", "runs", "factor", "factor (medians)"]
    head += ["paper: mean ± std (ms)", "paper: factor"] if paper else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, c in costs.items():
        for fn in TABLE1_FUNCTIONS:
            mean, std, median, runs = (getattr(c, f"{fn}_{s}") for s in ("ms", "std", "median_ms", "n_runs"))
            cells = [_MODEL_LABELS.get(model, model), _LABELS[fn], f"{mean:.3f} ± {std:.3f}", f"{median:.3f}",
                     f"{runs}", *(f"{f[fn]:.1f}×" if fn in f else "1×" for f in (c.factors, c.factors_median))]
            if paper and model in PAPER_TABLE1:
                mu, sd = PAPER_TABLE1[model][fn]
                pf = PAPER_FACTORS[model].get(fn)
                cells += [f"{mu:.4g} ± {sd:.4g}", f"{pf:g}×" if pf is not None else "1×"]
            elif paper:
                cells += ["–", "–"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- Hand-coded (structured) derivatives against torch.func ----------------------------------------------------------
@dataclass(frozen=True)
class DerivativeComparison(Record):
    """Structured (FAIR-style) derivatives against generic ``torch.func`` AD at one point.

    ``rel_diff[k]`` is :math:`\\|D_\\text{structured} - D_\\text{AD}\\| / \\|D_\\text{AD}\\|` for
    ``k`` in ``("gradient", "gauss_newton", "hessian")``; ``structured_ms`` and ``ad_ms`` are median times.
    """

    model: str
    n_params: int
    rel_diff: Mapping[str, float]
    structured_ms: Mapping[str, float]
    ad_ms: Mapping[str, float]
    routes: Mapping[str, str]


def compare_derivatives(scale: ScaleObjective, w: torch.Tensor, model: str = "", *, n_runs: int = 20,
                        warmup: int = 2, max_seconds: float | None = None) -> DerivativeComparison:
    r"""Gradient, Gauss-Newton matrix and exact Hessian of :math:`J` at ``w``, both ways, with timings.

    Structured: :meth:`~imreg_lib.ScaleObjective.derivatives` with ``"none"``, ``"gauss_newton"`` and
    ``"exact"``. AD: ``torch.func.grad`` of the loss, :math:`2 J_r^\top J_r` with ``jacfwd`` of the
    residual, and ``torch.func.hessian`` of the loss.
    """
    _check_run_settings(n_runs, warmup, max_seconds, 0.0)
    scale.problem.transformation.check(w)
    dev = w.device

    def gn_ad():
        Jr = jacfwd(scale.residual)(w)
        return Jr.T @ Jr * 2.0

    structured = {"gradient": lambda: scale.derivatives(w, "none")[1],
                  "gauss_newton": lambda: scale.derivatives(w, "gauss_newton")[2],
                  "hessian": lambda: scale.derivatives(w, "exact")[2]}
    ad = {"gradient": lambda: grad(scale.loss)(w), "gauss_newton": gn_ad, "hessian": lambda: hessian(scale.loss)(w)}
    both = {k: (structured[k](), ad[k]()) for k in structured}
    rel = {k: float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)) for k, (a, b) in both.items()}
    timed = lambda fn: time_function(fn, n_runs, warmup, dev, max_seconds).median_ms  # noqa: E731
    routes = {"structured": "ScaleObjective.derivatives (spline derivatives x transformation Jacobian)",
              "ad": "torch.func.grad / 2 jacfwd(residual)^T jacfwd(residual) / torch.func.hessian"}
    return DerivativeComparison(model, scale.problem.transformation.n_params, rel,
                                {k: timed(f) for k, f in structured.items()}, {k: timed(f) for k, f in ad.items()},
                                routes)


def derivative_checks(pair: ImagePair, theta: float = 1e-3, models: Sequence[str] = _MODELS, *, n_runs: int = 10,
                      warmup: int = 2, max_seconds: float | None = None,
                      steps: Sequence[float] = tuple(10.0 ** -k for k in range(1, 7)),
                      ) -> tuple[dict[str, DerivativeComparison], dict[str, tuple[float, float]]]:
    r"""The hand-coded derivatives of each Table 1 model against ``torch.func``, and their Taylor test.

    For each model, at the iterate :func:`near_identity` of its transformation and scale ``theta`` of ``pair``:
    :func:`compare_derivatives` (gradient, Gauss-Newton matrix and exact Hessian both ways, with timings), then a
    Taylor test of :math:`J` along :math:`v = (-1, \dots, 1)` (``linspace``, one entry per parameter) with the
    hand-coded gradient and Hessian,

    .. math::
        E_1(h) = |J(w + hv) - J(w) - h\,\nabla J^\top v| = O(h^2), \qquad
        E_2(h) = |J(w + hv) - J(w) - h\,\nabla J^\top v - \tfrac{h^2}{2} v^\top H v| = O(h^3),

    whose orders, fitted over the steps above the round-off floor (:meth:`~imreg_lib.TaylorResult.fitted_order`),
    are about 2 and 3 for exact derivatives (and at most 1 and 2 for a wrong gradient or Hessian; see
    :func:`derivative_check_failures`). ``steps`` are the :math:`h`; ``n_runs``, ``warmup`` and ``max_seconds`` are
    the timing settings of :func:`compare_derivatives`.

    Returns
    -------
    comparisons : dict
        ``{model: DerivativeComparison}``.
    taylor : dict
        ``{model: (order of E_1, order of E_2)}``.
    """
    comparisons: dict[str, DerivativeComparison] = {}
    taylor: dict[str, tuple[float, float]] = {}
    dev = pair.reference.device
    for model in models:
        tr = model_transformation(model)
        scale = SSDObjective.from_pair(pair, tr).at_scale(theta)
        w = near_identity(tr, device=dev)
        comparisons[model] = compare_derivatives(scale, w, model, n_runs=n_runs, warmup=warmup,
                                                 max_seconds=max_seconds)
        _, dJ, H = scale.derivatives(w)
        v = torch.linspace(-1.0, 1.0, tr.n_params, dtype=w.dtype, device=dev)
        res = taylor_test(scale.loss, w, v, dJ @ v, v @ H @ v, h=tuple(steps))
        taylor[model] = (res.fitted_order(1), res.fitted_order(2))
    return comparisons, taylor


def derivative_check_failures(comparisons: Mapping[str, DerivativeComparison],
                              taylor: Mapping[str, tuple[float, float]], *, tol: float = 1e-10) -> list[str]:
    r"""What :func:`derivative_checks` found wrong, one sentence each (an empty list when all is well).

    Two rules, each with a reason:

    * every hand-coded derivative equals ``torch.func``'s to a relative ``tol`` (two implementations of the same
      formula differ by round-off only);
    * the Taylor error :math:`E_k` decays faster than :math:`h^{k + 1/2}`: with exact derivatives it decays like
      :math:`h^{k+1}` (2 for the gradient, 3 for the Hessian), with a wrong one like :math:`h^{k}` at best, so
      the midpoint separates the two whatever the image (the orders are fitted over the asymptotic steps,
      :meth:`~imreg_lib.TaylorResult.fitted_order`).
    """
    out = []
    for model, c in comparisons.items():
        for k, diff in c.rel_diff.items():
            if not diff <= tol:
                out.append(f"{model}: the hand-coded {k} differs from torch.func by {diff:.1e} (relative; at most "
                           f"{tol:g} allowed)")
    for model, orders in taylor.items():
        for k, (order, name) in enumerate(zip(orders, ("gradient", "Hessian"), strict=True), start=1):
            if not order > k + 0.5:
                out.append(f"{model}: the Taylor error with the {name} decays like h^{order:.2f}, not faster than "
                           f"h^{k + 0.5} (exact: h^{k + 1}; a wrong {name}: h^{k})")
    return out


def check_derivatives(comparisons: Mapping[str, DerivativeComparison], taylor: Mapping[str, tuple[float, float]],
                      *, tol: float = 1e-10) -> None:
    """Raise an ``AssertionError`` naming every failure of :func:`derivative_check_failures`."""
    failures = derivative_check_failures(comparisons, taylor, tol=tol)
    if failures:
        raise AssertionError("derivative check failed: " + "; ".join(failures))


# ---- Scaling with the number of parameters and the image size --------------------------------------------------------
def synthetic_volume_pair(m: int = 12, device: str | torch.device = "auto",
                          dtype: torch.dtype = torch.float64) -> ImagePair:
    """A small deterministic 3D pair for the 3D affine model (12 parameters): a smooth blob volume on
    :math:`(0, 20) \\times (0, 25) \\times (0, 15)` and the same volume shifted by (0.4, -0.3, 0.2)."""
    _checks.integer("m", m, 4)
    grid = Grid((0.0, 20.0, 0.0, 25.0, 0.0, 15.0), m)
    dev = resolve_device(device)
    x = grid.cell_centers(dtype=torch.float64)
    centers = torch.tensor([[7.0, 9.0, 6.0], [13.0, 15.0, 9.0], [10.0, 19.0, 7.0]], dtype=torch.float64)
    weights = torch.tensor([200.0, 150.0, 120.0], dtype=torch.float64)

    def volume(points):
        d2 = ((points[:, None, :] - centers[None]) ** 2).sum(-1)
        return (weights * torch.exp(-d2 / 8.0)).sum(-1).reshape(grid.m)

    shift = torch.tensor([0.4, -0.3, 0.2], dtype=torch.float64)
    as_t = lambda a: a.to(device=dev, dtype=dtype)  # noqa: E731
    return ImagePair(as_t(volume(x + shift)), as_t(volume(x)), grid, None, "synthetic volume")


@dataclass(frozen=True)
class ScalingPoint(Record):
    """Median times (ms) of one model at one size: cached loss and forward map, the structured Hessian and
    forward Jacobian, and (optionally) their generic ``torch.func`` counterparts ``jacrev(grad)`` and
    ``jacfwd`` of the cached functions."""

    model: str
    n_params: int
    m: tuple[int, ...]
    n_points: int
    loss_ms: float
    forward_ms: float
    hessian_ms: float
    jacobian_ms: float
    hessian_ad_ms: float | None
    jacobian_ad_ms: float | None


def scaling_point(pair: ImagePair, transformation, model: str = "", *, theta: float = 1e-3, n_runs: int = 5,
                  warmup: int = 1, max_seconds: float | None = None, ad: bool = True, seed: int = 0,
                  ) -> ScalingPoint:
    """Time the cached loss, forward map, structured exact Hessian and forward Jacobian (and, if ``ad``,
    ``jacrev(grad(loss))`` and ``jacfwd(forward)``) of ``transformation`` on ``pair``."""
    _check_run_settings(n_runs, warmup, max_seconds, theta)
    _check_dim(transformation, pair)
    scale = SSDObjective.from_pair(pair, transformation).at_scale(float(theta))
    dev = pair.reference.device
    w = near_identity(transformation, seed=seed, device=dev, dtype=pair.reference.dtype)
    timed = lambda fn: time_function(fn, n_runs, warmup, dev, max_seconds).median_ms  # noqa: E731
    return ScalingPoint(
        model, transformation.n_params, pair.grid.m, pair.grid.n_cells,
        loss_ms=timed(lambda: scale.loss(w)), forward_ms=timed(lambda: scale.forward(w)),
        hessian_ms=timed(lambda: scale.derivatives(w, "exact")),
        jacobian_ms=timed(lambda: scale.forward_jacobian(w)),
        hessian_ad_ms=timed(lambda: jacrev(grad(scale.loss))(w)) if ad else None,
        jacobian_ad_ms=timed(lambda: jacfwd(scale.forward)(w)) if ad else None)


@dataclass(frozen=True)
class ScalingStudy(Record):
    """How derivative costs grow (:func:`scaling_study`): points by the number of parameters, and by image size
    for the affine model and the neural ODE."""

    by_params: tuple[ScalingPoint, ...]
    by_size: tuple[ScalingPoint, ...]
    by_size_neural_ode: tuple[ScalingPoint, ...]

    @property
    def with_ad(self) -> tuple[ScalingPoint, ...]:
        """The points of :attr:`by_params` whose generic AD derivatives were timed."""
        return tuple(pt for pt in self.by_params if pt.hessian_ad_ms is not None)


def scaling_study(pair: ImagePair, *, theta: float = 1e-3, widths: Sequence[int] = (8, 16, 32),
                  sizes: Sequence[int] = (32, 64, 128, 256), node_sizes: Sequence[int] = (32, 64, 128),
                  n_runs: int = 3, max_seconds: float | None = None, ad_max_params: int = 60,
                  volume_m: int = 12) -> ScalingStudy:
    """Time the cached derivatives against the number of parameters and the image size (:func:`scaling_point`,
    medians; ``n_runs``, ``max_seconds``: its timing settings).

    By parameters: the 2D affine model of ``pair`` (6 parameters), the 3D one (12, on :func:`synthetic_volume_pair`
    of ``volume_m`` cells) and neural ODEs of hidden ``widths`` on ``pair`` (width :math:`w` has :math:`6w + 2`
    parameters in 2D: 50 for 8); generic AD derivatives only up to ``ad_max_params`` parameters (their memory grows
    like :math:`p^2`). By size: the synthetic hand of each of ``sizes`` cells (affine) and ``node_sizes`` (neural
    ODE, structured derivatives only). Every case runs on ``pair``'s device.
    """
    dev = pair.reference.device
    cases = [("affine 2D", Affine(2), pair), ("affine 3D", Affine(3), synthetic_volume_pair(volume_m, device=dev))]
    cases += [(f"neural ODE, width {wd}", NeuralODE(width=wd), pair) for wd in widths]
    by_params = [scaling_point(p, tr, name, theta=theta, n_runs=n_runs, max_seconds=max_seconds,
                               ad=tr.n_params <= ad_max_params) for name, tr, p in cases]
    by_size = [scaling_point(synthetic_hand_pair(mm, device=dev), Affine(), "affine", theta=theta, n_runs=n_runs,
                             max_seconds=max_seconds) for mm in sizes]
    by_size_node = [scaling_point(synthetic_hand_pair(mm, device=dev), NeuralODE(), "neural ODE", theta=theta,
                                  n_runs=n_runs, max_seconds=max_seconds, ad=False) for mm in node_sizes]
    return ScalingStudy(tuple(by_params), tuple(by_size), tuple(by_size_node))
