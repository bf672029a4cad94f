r"""The settings of each page: frozen records, validated once when they are made.

A notebook builds its settings from its papermill parameters in its set-up cell, before any work starts, so that a
wrong value stops the page at once with a :class:`ValueError` naming the parameter and what it may be
(:mod:`imreg_lib._checks`); the page's results record stores them (:mod:`imreg_lib.paper.results`). The settings
of the comparison with SimpleITK live beside it (:class:`~imreg_lib.paper.peers.PeersSettings`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import _checks
from ..multiscale import theta_schedule
from ._schema import Record
from .preregistration import PREREGISTRATIONS

__all__ = ["ADCostsSettings", "DataSettings", "MultiscaleSettings", "SuperresolutionSettings"]

#: The timing protocols of Table 1: the authors' (spline coefficients recomputed per call) and the cached one.
PROTOCOLS: tuple[str, ...] = ("paper", "cached")
#: The super-resolution models: the authors' code (24 parameters, data residual) and the paper's eq. 7.
VARPRO_VARIANTS: tuple[str, ...] = ("as_coded", "paper")
#: The SciPy trust-region solvers of the Newton corrector.
NEWTON_METHODS: tuple[str, ...] = ("trust-exact", "trust-ncg")


@dataclass(frozen=True)
class DataSettings(Record):
    r"""The data page (``00_data``): the scale :math:`\theta \ge 0` at which the key numbers are computed."""

    theta: float

    def __post_init__(self) -> None:
        self._set("theta", _checks.positive_number("theta", self.theta, allow_zero=True))


@dataclass(frozen=True)
class ADCostsSettings(Record):
    """The Table 1 measurement (``01_ad_costs``).

    Fields: the page's parameters, as documented in its parameters cell and in ``params/paper.yaml``.
    """

    m: int
    theta: float
    n_runs: int
    #: Seconds of timing per function (at least 5 calls), or ``None``: ``n_runs`` calls.
    time_budget_s: float | None
    device: str
    source: str
    #: The protocols measured, among :data:`PROTOCOLS`.
    protocols: tuple[str, ...]

    def __post_init__(self) -> None:
        _checks.integer("m", self.m, 4)
        self._set("theta", _checks.positive_number("theta", self.theta, allow_zero=True))
        _checks.integer("n_runs", self.n_runs, 2)
        if self.time_budget_s is not None:
            self._set("time_budget_s", _checks.positive_number("time_budget_s", self.time_budget_s,
                                                                allowed="None or a positive finite number"))
        self._set("protocols", tuple(self.protocols))
        for p in self.protocols:
            _checks.one_of("protocols", p, PROTOCOLS)

    @classmethod
    def from_parameters(cls, *, m: int, theta: float, n_runs: int, time_budget_s: float | None, device: str,
                        source: str, protocol: str) -> ADCostsSettings:
        """The settings from the page's parameters, ``protocol`` being ``"paper"``, ``"cached"`` or ``"both"``."""
        _checks.one_of("protocol", protocol, (*PROTOCOLS, "both"))
        return cls(m, theta, n_runs, time_budget_s, device, source, PROTOCOLS if protocol == "both" else (protocol,))


@dataclass(frozen=True)
class MultiscaleSettings(Record):
    r"""The multi-scale page (``02_multiscale``; Figs 2-3).

    Fields: the page's parameters, as documented in its parameters cell and in ``params/paper.yaml``;
    :math:`\theta_{\max} > \theta_{\min} > 0`.
    """

    theta_max: float
    theta_min: float
    n_scales: int
    n_scales_prediction: int
    gtol: float
    gtol_single: float
    gtol_prediction: float
    gtol_gn: float
    gtol_gn_first: float
    newton_method: str
    scale_space_thetas: tuple[float, ...] = ()
    m_scale_space: int | None = None
    #: Pairs of Fig. 2's traditional and predictor-corrector runs timed one after the other (the page's runs and
    #: ``timing_repeats - 1`` more): whether the predictor pays in time is judged on their paired ratios.
    timing_repeats: int = 1

    def __post_init__(self) -> None:
        theta_schedule(self.theta_max, self.theta_min, self.n_scales)
        _checks.integer("n_scales_prediction", self.n_scales_prediction, 2)
        _checks.integer("timing_repeats", self.timing_repeats, 1)
        for name in ("gtol", "gtol_single", "gtol_prediction", "gtol_gn", "gtol_gn_first"):
            self._set(name, _checks.positive_number(name, getattr(self, name)))
        _checks.one_of("newton_method", self.newton_method, NEWTON_METHODS, words=True)
        self._set("scale_space_thetas", tuple(_checks.positive_number("scale_space_thetas", t)
                                               for t in self.scale_space_thetas))
        if self.m_scale_space is not None:
            _checks.integer("m_scale_space", self.m_scale_space, 4, allowed="an integer >= 4 (cells per dimension)")

    @property
    def thetas(self) -> tuple[float, ...]:
        r"""The Fig. 2 schedule, log-spaced from :math:`\theta_{\max}` down to :math:`\theta_{\min}`."""
        return theta_schedule(self.theta_max, self.theta_min, self.n_scales)

    @property
    def thetas_prediction(self) -> tuple[float, ...]:
        """The Fig. 3 schedule."""
        return theta_schedule(self.theta_max, self.theta_min, self.n_scales_prediction)


@dataclass(frozen=True)
class SuperresolutionSettings(Record):
    r"""The super-resolution page (``03_superresolution``; Figs 4-11).

    Fields: the page's parameters, as documented in its parameters cell and in ``params/paper.yaml``.
    """

    m: int
    #: The pooling factor, dividing ``m``.
    factor: int
    n_templates: int
    lam: float
    variant: str
    device: str
    cg_iters: int
    cg_iters_partial: int
    cg_tol: float
    #: Recorded LM points per run, at least 2 (a start and a step).
    gn_iters: int
    gtol: float
    preregistration: str
    fractions: tuple[float, ...] = (0.7, 0.9, 0.95, 1.0)
    cg_counts: tuple[int, ...] = (1, 5, 10, 25, 50, 100)
    taylor_cg_iters: int = 25
    #: Whether the runs that are not in the paper ran (the authors' start, eq. 7, continued partial CG).
    corrections: bool = True
    #: Members of each round-off ensemble, at least 1 (1: none).
    ensemble_members: int = 1

    def __post_init__(self) -> None:
        _checks.integer("m", self.m, 2)
        _checks.integer("factor", self.factor, 1)  # that it divides m: the problem's own check
        _checks.integer("n_templates", self.n_templates, 1)
        self._set("lam", _checks.positive_number("lam", self.lam, allow_zero=True))
        _checks.one_of("variant", self.variant, VARPRO_VARIANTS)
        for name, low in (("gn_iters", 2), ("cg_iters", 1), ("cg_iters_partial", 1), ("taylor_cg_iters", 1),
                          ("ensemble_members", 1)):
            _checks.integer(name, getattr(self, name), low)
        for name in ("cg_tol", "gtol"):
            self._set(name, _checks.positive_number(name, getattr(self, name), allow_zero=True))
        _checks.one_of("preregistration", self.preregistration, PREREGISTRATIONS)
        self._set("fractions", check_fractions(self.fractions))
        self._set("cg_counts", check_counts(self.cg_counts))
        _checks.one_of("corrections", self.corrections, (True, False))


def check_fractions(fractions) -> tuple[float, ...]:
    """``fractions`` as a non-empty tuple of floats in [0, 1], or a ``ValueError`` naming ``fractions``."""
    what = "a non-empty list of numbers in [0, 1]"
    return tuple(_checks.fraction("fractions", p, allowed=what) for p in _checks.sequence("fractions", fractions,
                                                                                          what))


def check_counts(cg_counts) -> tuple[int, ...]:
    """``cg_counts`` as a non-empty tuple of integers >= 1, or a ``ValueError`` naming ``cg_counts``."""
    what = "a non-empty list of integers >= 1"
    counts = _checks.sequence("cg_counts", cg_counts, what)
    return tuple(_checks.integer("cg_counts", n, 1, allowed=what) for n in counts)
