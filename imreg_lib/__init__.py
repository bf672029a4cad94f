"""imreg_lib: affine image registration with automatic differentiation.

The library behind the executable companion of *Applications of Automatic Differentiation in Image
Registration* (Watson, Cherry, Lang, 2024). Data flow: grid -> spline image model -> transformation ->
distance -> objective -> optimizer -> multi-scale driver. All computation is float64 by default.
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
from .data import HAND_MOTION, ImagePair, hand_phantom, load_image, load_pair, synthetic_hand_pair
from .derivatives import TaylorResult, taylor_test
from .device import DEFAULT_DTYPE, resolve_device, resolve_dtype, synchronize
from .distances import ssd
from .grid import PAPER_OMEGA, Grid
from .multiscale import MultiscaleResult, ScaleRecord, check_schedule, predictor_corrector, single_scale
from .neural_ode import NeuralODE, NeuralODELinearization, neural_ode, neural_ode_velocity, rk4_38
from .objective import ScaleObjective, SSDObjective
from .optimizers import NewtonResult, newton_trust_exact
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
    "PAPER_FACTORS",
    "PAPER_OMEGA",
    "PAPER_TABLE1",
    "WINDOWS",
    "ADCosts",
    "Affine",
    "DerivativeComparison",
    "Grid",
    "ImagePair",
    "MultiscaleResult",
    "NeuralODE",
    "NeuralODELinearization",
    "NewtonResult",
    "SSDObjective",
    "ScaleObjective",
    "ScaleRecord",
    "ScalingPoint",
    "SplineImage",
    "TaylorResult",
    "Timing",
    "ad_cost_table",
    "affine",
    "affine_from_geometry",
    "check_schedule",
    "compare_derivatives",
    "hand_phantom",
    "load_image",
    "load_pair",
    "measure_ad_costs",
    "model_transformation",
    "near_identity",
    "neural_ode",
    "neural_ode_velocity",
    "newton_trust_exact",
    "paper_spline_coefficients",
    "predictor_corrector",
    "resolve_device",
    "resolve_dtype",
    "rk4_38",
    "scaling_point",
    "single_scale",
    "spline_basis_matrices",
    "spline_coefficients",
    "spline_derivatives",
    "spline_evaluate",
    "ssd",
    "synchronize",
    "synthetic_hand_pair",
    "synthetic_volume_pair",
    "table1_markdown",
    "taylor_test",
    "time_function",
]
