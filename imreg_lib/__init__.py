"""imreg_lib: affine image registration with automatic differentiation.

The library behind the executable companion of *Applications of Automatic Differentiation in Image
Registration* (Watson, Cherry, Lang, 2024). Data flow: grid -> spline image model -> transformation ->
distance -> objective -> optimizer -> multi-scale driver; for super-resolution, grid -> spline -> SR problem and
operators -> conjugate gradient -> variable projection -> Levenberg-Marquardt. All computation is float64 by default.

The reproduction of the paper (its experiments, recorded numbers, the authors' defects as named wrappers, the
report of its claims) is the subpackage :mod:`imreg_lib.paper`, built on this library: ``from imreg_lib import
paper``. The library's own modules never import it.
"""

from .cg import CG_MODES, CGResult, cg_split, conjugate_gradient
from .data import (
    HAND_MOTION,
    ORIENTATIONS,
    ImagePair,
    hand_phantom,
    image_pair,
    load_image,
    load_pair,
    synthetic_hand_pair,
)
from .derivatives import TaylorResult, taylor_from_differences, taylor_test
from .device import DEFAULT_DTYPE, resolve_device, resolve_dtype, synchronize
from .distances import DistanceDerivatives, ssd, ssd_block
from .grid import PAPER_OMEGA, Grid
from .multiscale import (
    MultiscaleResult,
    ScaleRecord,
    check_schedule,
    predictor_corrector,
    single_scale,
    theta_schedule,
    traditional,
)
from .neural_ode import NeuralODE, NeuralODELinearization, neural_ode, neural_ode_velocity, rk4_38
from .objective import ScaleObjective, SSDObjective
from .optimizers import LMResult, NewtonResult, levenberg_marquardt, newton_trust_region
from .plotting import (
    animation_html,
    plot_performance,
    plot_reconstructions,
    plot_transformed_grid,
    show_image,
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
from .timing import Timing, describe_machine, machine_info, peak_rss_mb, rss_mb, time_function
from .transformations import (
    Affine,
    AffineLinearization,
    AutodiffLinearization,
    Linearization,
    Transformation,
    affine,
    affine_from_geometry,
    check_transformation,
)
from .varpro import (
    VARPRO_METHODS,
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
    "ORIENTATIONS",
    "PAPER_OMEGA",
    "VARPRO_METHODS",
    "WINDOWS",
    "Affine",
    "AffineLinearization",
    "AutodiffLinearization",
    "CGResult",
    "DistanceDerivatives",
    "Grid",
    "ImagePair",
    "LMResult",
    "Linearization",
    "MultiscaleResult",
    "NeuralODE",
    "NeuralODELinearization",
    "NewtonResult",
    "SROperator",
    "SSDObjective",
    "ScaleObjective",
    "ScaleRecord",
    "SplineImage",
    "SplineWeights",
    "SuperResolutionProblem",
    "TaylorResult",
    "Timing",
    "Transformation",
    "VarPro",
    "VarProRun",
    "affine",
    "affine_from_geometry",
    "animation_html",
    "cg_split",
    "check_schedule",
    "check_transformation",
    "conjugate_gradient",
    "describe_machine",
    "hand_phantom",
    "image_pair",
    "levenberg_marquardt",
    "load_image",
    "load_pair",
    "machine_info",
    "neural_ode",
    "neural_ode_velocity",
    "newton_trust_region",
    "peak_rss_mb",
    "plot_performance",
    "plot_reconstructions",
    "plot_transformed_grid",
    "predictor_corrector",
    "random_affine",
    "reconstruct",
    "relative_error",
    "resolve_device",
    "resolve_dtype",
    "rk4_38",
    "rss_mb",
    "show_image",
    "single_scale",
    "spline_basis_matrices",
    "spline_coefficients",
    "spline_derivatives",
    "spline_evaluate",
    "spline_weights",
    "ssd",
    "ssd_block",
    "superresolution_problem",
    "synchronize",
    "synthetic_hand_pair",
    "taylor_from_differences",
    "taylor_test",
    "theta_schedule",
    "time_function",
    "traditional",
    "varpro_levenberg_marquardt",
]
