"""The reproduction of the paper on top of the registration library: its experiments, recorded numbers, the
authors' defects as named wrappers, and comparisons with other tools.

The core modules of :mod:`imreg_lib` never import this package.
"""

from . import ad_costs, multiscale, numbers, plotting, preregistration, report, superres
from .ad_costs import (
    ADCosts,
    DerivativeComparison,
    ScalingPoint,
    ad_cost_table,
    compare_derivatives,
    measure_ad_costs,
    model_transformation,
    near_identity,
    paper_spline_coefficients,
    scaling_point,
    synthetic_volume_pair,
    table1_markdown,
)
from .multiscale import (
    MethodComparison,
    PredictionQuality,
    PredictorComparison,
    compare_methods,
    compare_predictors,
    prediction_quality,
)
from .numbers import FIG7_STEPS, PAPER_FACTORS, PAPER_SR, PAPER_TABLE1
from .plotting import plot_claims
from .preregistration import (
    PREREG_THETAS,
    PreregistrationResult,
    PreregistrationScale,
    prereg_objective,
    preregister,
)
from .report import write_results
from .superres import (
    ProjectionCost,
    check_counts,
    check_fractions,
    compare_projections,
    inexact_projections,
    memory_growth,
    partial_differentiation,
    percent_label,
    projection_costs,
    projection_taylor,
    reconstruction_path,
    run_summary,
    varpro_taylor,
)

__all__ = [
    "FIG7_STEPS",
    "PAPER_FACTORS",
    "PAPER_SR",
    "PAPER_TABLE1",
    "PREREG_THETAS",
    "ADCosts",
    "DerivativeComparison",
    "MethodComparison",
    "PredictionQuality",
    "PredictorComparison",
    "PreregistrationResult",
    "PreregistrationScale",
    "ProjectionCost",
    "ScalingPoint",
    "ad_cost_table",
    "ad_costs",
    "check_counts",
    "check_fractions",
    "compare_derivatives",
    "compare_methods",
    "compare_predictors",
    "compare_projections",
    "inexact_projections",
    "measure_ad_costs",
    "memory_growth",
    "model_transformation",
    "multiscale",
    "near_identity",
    "numbers",
    "paper_spline_coefficients",
    "partial_differentiation",
    "percent_label",
    "plot_claims",
    "plotting",
    "prediction_quality",
    "prereg_objective",
    "preregister",
    "preregistration",
    "projection_costs",
    "projection_taylor",
    "reconstruction_path",
    "report",
    "run_summary",
    "scaling_point",
    "superres",
    "synthetic_volume_pair",
    "table1_markdown",
    "varpro_taylor",
    "write_results",
]
