"""imreg_lib: affine image registration with automatic differentiation.

The library behind the executable companion of *Applications of Automatic Differentiation in Image
Registration* (Watson, Cherry, Lang, 2024). Data flow: grid -> spline image model -> transformation ->
distance -> objective -> optimizer -> multi-scale driver; for super-resolution, grid -> spline -> SR problem and
operators -> conjugate gradient -> variable projection -> Levenberg-Marquardt. All computation is float64 by default.
"""

from .ad_costs import (
    PAPER_FACTORS,
    PAPER_TABLE1,
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
from .cg import CG_MODES, CGResult, cg_split, conjugate_gradient
from .data import HAND_MOTION, ImagePair, hand_phantom, load_image, load_pair, synthetic_hand_pair
from .derivatives import TaylorResult, taylor_test
from .device import DEFAULT_DTYPE, resolve_device, resolve_dtype, synchronize
from .distances import ssd
from .grid import PAPER_OMEGA, Grid
from .multiscale import (
    MethodComparison,
    MultiscaleResult,
    PredictionQuality,
    PredictorComparison,
    ScaleRecord,
    check_schedule,
    compare_methods,
    compare_predictors,
    prediction_quality,
    predictor_corrector,
    single_scale,
    theta_schedule,
    traditional,
)
from .neural_ode import NeuralODE, NeuralODELinearization, neural_ode, neural_ode_velocity, rk4_38
from .objective import ScaleObjective, SSDObjective
from .optimizers import LMResult, NewtonResult, levenberg_marquardt, newton_trust_region
from .plotting import animation_html, plot_transformed_grid, show_image
from .preregistration import (
    PREREG_THETAS,
    PreregistrationResult,
    PreregistrationScale,
    prereg_objective,
    preregister,
)
from .spline import (
    WINDOWS,
    SplineImage,
    SplineWeights,
    spline_basis_matrices,
    spline_coefficients,
    spline_derivatives,
    spline_evaluate,
    spline_weights,
)
from .superres import SROperator, SuperResolutionProblem, random_affine, superresolution_problem
from .timing import Timing, peak_rss_mb, rss_mb, time_function
from .transformations import Affine, affine, affine_from_geometry
from .varpro import (
    VARPRO_METHODS,
    VARPRO_VARIANTS,
    VarPro,
    VarProRun,
    reconstruct,
    relative_error,
    varpro_levenberg_marquardt,
)

__version__ = "0.1.0"

__all__ = [
    "CG_MODES",
    "DEFAULT_DTYPE",
    "HAND_MOTION",
    "PAPER_FACTORS",
    "PAPER_OMEGA",
    "PAPER_TABLE1",
    "PREREG_THETAS",
    "VARPRO_METHODS",
    "VARPRO_VARIANTS",
    "WINDOWS",
    "ADCosts",
    "Affine",
    "CGResult",
    "DerivativeComparison",
    "Grid",
    "ImagePair",
    "LMResult",
    "MethodComparison",
    "MultiscaleResult",
    "NeuralODE",
    "NeuralODELinearization",
    "NewtonResult",
    "PredictionQuality",
    "PredictorComparison",
    "PreregistrationResult",
    "PreregistrationScale",
    "SROperator",
    "SSDObjective",
    "ScaleObjective",
    "ScaleRecord",
    "ScalingPoint",
    "SplineImage",
    "SplineWeights",
    "SuperResolutionProblem",
    "TaylorResult",
    "Timing",
    "VarPro",
    "VarProRun",
    "ad_cost_table",
    "affine",
    "affine_from_geometry",
    "animation_html",
    "cg_split",
    "check_schedule",
    "compare_derivatives",
    "compare_methods",
    "compare_predictors",
    "conjugate_gradient",
    "hand_phantom",
    "levenberg_marquardt",
    "load_image",
    "load_pair",
    "measure_ad_costs",
    "model_transformation",
    "near_identity",
    "neural_ode",
    "neural_ode_velocity",
    "newton_trust_region",
    "paper_spline_coefficients",
    "peak_rss_mb",
    "plot_transformed_grid",
    "prediction_quality",
    "predictor_corrector",
    "prereg_objective",
    "preregister",
    "random_affine",
    "reconstruct",
    "relative_error",
    "resolve_device",
    "resolve_dtype",
    "rk4_38",
    "rss_mb",
    "scaling_point",
    "show_image",
    "single_scale",
    "spline_basis_matrices",
    "spline_coefficients",
    "spline_derivatives",
    "spline_evaluate",
    "spline_weights",
    "ssd",
    "superresolution_problem",
    "synchronize",
    "synthetic_hand_pair",
    "synthetic_volume_pair",
    "table1_markdown",
    "taylor_test",
    "theta_schedule",
    "time_function",
    "traditional",
    "varpro_levenberg_marquardt",
]
