r"""The multi-scale experiments of the paper (§3, Figs 2-3) on top of the drivers of :mod:`imreg_lib.multiscale`.

Fig. 2 is :func:`compare_methods`, Fig. 3 :func:`compare_predictors` (each predictor measured by
:func:`prediction_quality`); the page's settings are :class:`~imreg_lib.paper.settings.MultiscaleSettings`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from .. import _checks
from ..multiscale import (
    MultiscaleResult,
    _check_options,
    _loss_and_grad_norm,
    check_schedule,
    predictor_corrector,
    single_scale,
    traditional,
)
from ..objective import SSDObjective
from ..optimizers import TrustMethod
from .defects import predictor_corrector_as_coded

__all__ = ["MethodComparison", "PredictionQuality", "PredictorComparison",
           "compare_methods", "compare_predictors", "prediction_quality"]


@dataclass(frozen=True)
class PredictionQuality:
    r"""How much the predictor improves on the warm start, per scale (paper Fig. 3).

    ``rel_loss_diff = (loss_reference - loss_predicted) / loss_reference`` and likewise for the gradient
    norm: positive means the prediction helped. The first scale has no prediction (NaN).
    """

    thetas: tuple[float, ...]
    loss_reference: tuple[float, ...]
    loss_predicted: tuple[float, ...]
    grad_reference: tuple[float, ...]
    grad_predicted: tuple[float, ...]

    @property
    def rel_loss_diff(self) -> tuple[float, ...]:
        return tuple((a - b) / a for a, b in zip(self.loss_reference, self.loss_predicted, strict=True))

    @property
    def rel_grad_diff(self) -> tuple[float, ...]:
        return tuple((a - b) / a for a, b in zip(self.grad_reference, self.grad_predicted, strict=True))


def prediction_quality(objective: SSDObjective, result: MultiscaleResult, *, as_coded: bool = False,
                       ) -> PredictionQuality:
    r"""The Fig. 3 metric of a predictor-corrector run.

    Consistent (default): reference = warm start :math:`w^*_{n}` and prediction, both at :math:`\theta_{n+1}`.
    ``as_coded=True`` reproduces the authors' Gauss-Newton bookkeeping: the reference loss and gradient norm
    at :math:`(w^*_n, \theta_n)`, where the corrector has just converged (so the reference gradient is tiny),
    and the predicted gradient norm at :math:`(w_{pred}, \theta_n)`; only the predicted loss is at
    :math:`\theta_{n+1}`.
    """
    hist = result.history
    if len(hist) < 2 or any(r.w_predicted is None for r in hist[1:]):
        raise ValueError("result must come from predictor_corrector with predict=True and at least 2 scales")
    # (loss_reference, loss_predicted, grad_reference, grad_predicted) per scale; none at the first
    rows = [(math.nan,) * 4]
    for prev, rec in zip(hist, hist[1:], strict=False):
        if as_coded:  # w_start is prev.w, evaluated at prev.theta
            rows.append((prev.final_loss, rec.predicted_loss, prev.final_grad_norm,
                         _loss_and_grad_norm(objective, rec.w_predicted, prev.theta)[1]))
        else:
            rows.append((rec.start_loss, rec.predicted_loss, rec.start_grad_norm, rec.predicted_grad_norm))
    return PredictionQuality(result.thetas, *zip(*rows, strict=True))


@dataclass(frozen=True)
class MethodComparison:
    """Single scale vs traditional multi-scale vs predictor-corrector on one problem (paper Fig. 2).

    ``timing`` holds the seconds ``(traditional, predictor-corrector)`` of pairs of runs made one after the other:
    first the two runs here, then any repeats (:func:`compare_methods`' ``timing_repeats``).
    """

    initial_loss: float
    single_scale: MultiscaleResult
    traditional: MultiscaleResult
    predictor_corrector: MultiscaleResult
    timing: tuple[tuple[float, float], ...] = ()

    @property
    def paired_ratio(self) -> float:
        """The median over the pairs of ``timing`` of the predictor-corrector's time over the traditional
        method's (one pair: the ratio of the runs here)."""
        pairs = self.timing or ((self.traditional.seconds, self.predictor_corrector.seconds),)
        return statistics.median(p / t for t, p in pairs)


def compare_methods(objective: SSDObjective, thetas: Sequence[float], *, gtol: float = 1e-4,
                    gtol_single: float = 1e-7, newton_method: TrustMethod = "trust-exact",
                    timing_repeats: int = 1) -> MethodComparison:
    """Run the three methods of Fig. 2 from the identity; the single-scale run is at ``thetas[-1]``.

    Everything is validated before the first minimisation starts, and the schedule's scales are built before the
    first method is timed: the methods share the objective, so that otherwise the first multi-scale method would pay
    for building the scales that the second finds ready.

    Parameters
    ----------
    timing_repeats
        Pairs of traditional and predictor-corrector runs to time (at least 1, the runs returned). Each further
        pair runs, one method after the other, on a copy of ``objective`` without its per-scale caches, its
        scales built first as for the first pair: a single pair's ratio moves by several per cent from run to run.
    """
    thetas = check_schedule(thetas)
    _check_options(gtol, "exact", newton_method)
    _check_options(gtol_single, "exact", newton_method)
    _checks.integer("timing_repeats", timing_repeats, 1)
    for theta in thetas:
        objective.at_scale(theta)
    initial = float(objective.loss(objective.identity(), thetas[-1]))
    single = single_scale(objective, thetas[-1], gtol=gtol_single, newton_method=newton_method)
    trad = traditional(objective, thetas, gtol=gtol, newton_method=newton_method)
    pc = predictor_corrector(objective, thetas, gtol=gtol, newton_method=newton_method)
    timing = [(trad.seconds, pc.seconds)]
    for _ in range(timing_repeats - 1):
        copy = objective.with_overlap(objective.overlap)  # the same images and splines, no per-scale caches
        for theta in thetas:
            copy.at_scale(theta)
        timing.append((traditional(copy, thetas, gtol=gtol, newton_method=newton_method).seconds,
                       predictor_corrector(copy, thetas, gtol=gtol, newton_method=newton_method,
                                           record_start=False).seconds))
    return MethodComparison(initial_loss=initial, single_scale=single, traditional=trad, predictor_corrector=pc,
                            timing=tuple(timing))


@dataclass(frozen=True)
class PredictorComparison:
    r"""Exact vs Gauss-Newton Hessian in the predictor (paper Fig. 3)."""

    #: Newton corrector, exact-Hessian predictor (the authors' Newton metric is already consistent).
    exact: PredictionQuality
    #: Levenberg-Marquardt corrector, consistent predictor :math:`-(2J_r^\top J_r)^{-1}\partial_\theta\nabla J`,
    #: metric at :math:`\theta_{n+1}`: the corrected comparison.
    gauss_newton: PredictionQuality
    #: The authors' Gauss-Newton branch: predictor step twice too long and their metric (reference and predicted
    #: gradient at :math:`\theta_n`).
    gauss_newton_as_coded: PredictionQuality
    #: The authors' run (step twice too long) measured with the consistent metric: separates the two defects.
    gauss_newton_double_step: PredictionQuality
    #: The underlying predictor-corrector runs, keyed ``"exact"``, ``"gauss_newton"``, ``"gauss_newton_as_coded"``.
    runs: dict


def compare_predictors(objective: SSDObjective, thetas: Sequence[float], *, gtol_newton: float = 1e-8,
                       gtol_gn: float = 1e-5, gtol_gn_first: float = 1e-4,
                       newton_method: TrustMethod = "trust-exact") -> PredictorComparison:
    """Run the Fig. 3 experiment: the predictor-corrector with an exact and with a Gauss-Newton Hessian
    (consistent, and as coded: :func:`~imreg_lib.paper.defects.predictor_corrector_as_coded`), from the identity,
    and measure each predictor per scale."""
    thetas = check_schedule(thetas)
    for g in (gtol_newton, gtol_gn, gtol_gn_first):
        _check_options(g, "exact", newton_method)
    runs = {
        "exact": predictor_corrector(objective, thetas, gtol=gtol_newton, newton_method=newton_method),
        "gauss_newton": predictor_corrector(objective, thetas, gtol=gtol_gn, first_gtol=gtol_gn_first,
                                            hessian="gauss_newton"),
        "gauss_newton_as_coded": predictor_corrector_as_coded(objective, thetas, gtol=gtol_gn,
                                                              first_gtol=gtol_gn_first),
    }
    return PredictorComparison(
        exact=prediction_quality(objective, runs["exact"]),
        gauss_newton=prediction_quality(objective, runs["gauss_newton"]),
        gauss_newton_as_coded=prediction_quality(objective, runs["gauss_newton_as_coded"], as_coded=True),
        gauss_newton_double_step=prediction_quality(objective, runs["gauss_newton_as_coded"]),
        runs=runs,
    )
