"""imreg_lib: affine image registration with automatic differentiation.

The library behind the executable companion of *Applications of Automatic Differentiation in Image
Registration* (Watson, Cherry, Lang, 2024). Data flow: grid -> spline image model -> transformation ->
distance -> objective -> optimizer -> multi-scale driver. All computation is float64 by default.
"""

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
from .objective import ScaleObjective, SSDObjective
from .optimizers import LMResult, NewtonResult, levenberg_marquardt, newton_trust_region
from .plotting import animation_html, plot_transformed_grid, show_image
from .spline import (
    WINDOWS,
    SplineImage,
    spline_basis_matrices,
    spline_coefficients,
    spline_derivatives,
    spline_evaluate,
)
from .timing import Timing, time_function
from .transformations import Affine, affine, affine_from_geometry

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_DTYPE",
    "HAND_MOTION",
    "PAPER_OMEGA",
    "WINDOWS",
    "Affine",
    "Grid",
    "ImagePair",
    "LMResult",
    "MethodComparison",
    "MultiscaleResult",
    "NewtonResult",
    "PredictionQuality",
    "PredictorComparison",
    "SSDObjective",
    "ScaleObjective",
    "ScaleRecord",
    "SplineImage",
    "TaylorResult",
    "Timing",
    "affine",
    "affine_from_geometry",
    "animation_html",
    "check_schedule",
    "compare_methods",
    "compare_predictors",
    "hand_phantom",
    "load_image",
    "load_pair",
    "levenberg_marquardt",
    "newton_trust_region",
    "plot_transformed_grid",
    "prediction_quality",
    "predictor_corrector",
    "resolve_device",
    "resolve_dtype",
    "show_image",
    "single_scale",
    "spline_basis_matrices",
    "spline_coefficients",
    "spline_derivatives",
    "spline_evaluate",
    "ssd",
    "synchronize",
    "synthetic_hand_pair",
    "theta_schedule",
    "taylor_test",
    "time_function",
    "traditional",
]
