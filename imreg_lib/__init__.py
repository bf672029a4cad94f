"""imreg_lib: affine image registration with automatic differentiation.

The library behind the executable companion of *Applications of Automatic Differentiation in Image
Registration* (Watson, Cherry, Lang, 2024). Data flow: grid -> spline image model -> transformation ->
distance -> objective -> optimizer -> multi-scale driver; for super-resolution, grid -> spline -> SR problem and
operators -> conjugate gradient -> variable projection -> Levenberg-Marquardt. All computation is float64 by default.

This namespace is the curated API: the names a user of the library needs. Everything else stays in its module
(``imreg_lib.spline.spline_weights``, ``imreg_lib.neural_ode.rk4_38``, ...); modules whose names start with an
underscore are private. :mod:`imreg_lib.interop` exchanges images and affine maps with ITK and SimpleITK.

The reproduction of the paper (its experiments, recorded numbers, the authors' defects as named wrappers, the
report of its claims, the comparison with SimpleITK) is the subpackage :mod:`imreg_lib.paper`, built on this
library: ``from imreg_lib import paper``. The library's own modules never import it.
"""

from . import interop
from .cg import CGResult, conjugate_gradient
from .data import HAND_MOTION, ImagePair, image_pair, load_image, load_pair, synthetic_hand_pair
from .derivatives import TaylorResult, taylor_from_differences, taylor_test
from .device import DEFAULT_DTYPE, resolve_device
from .distances import DistanceDerivatives, ssd, ssd_block
from .grid import PAPER_OMEGA, Grid
from .multiscale import MultiscaleResult, ScaleRecord, predictor_corrector, single_scale, theta_schedule, traditional
from .neural_ode import NeuralODE
from .objective import ScaleObjective, SSDObjective
from .optimizers import LMResult, NewtonResult, levenberg_marquardt, newton_trust_region
from .plotting import animation_html, plot_performance, plot_reconstructions, plot_transformed_grid, show_image
from .spline import SplineImage, spline_coefficients, spline_derivatives, spline_evaluate
from .superres import SROperator, SuperResolutionProblem, superresolution_problem
from .timing import Timing, describe_machine, machine_info, peak_rss_mb, time_function
from .transformations import (
    Affine,
    AutodiffLinearization,
    Linearization,
    Transformation,
    affine,
    affine_from_geometry,
)
from .varpro import VarPro, VarProRun, reconstruct, relative_error, varpro_levenberg_marquardt

__version__ = "0.1.0"

# In the order of the data flow: grid, images, transformations, distance, objective, derivatives' checks,
# optimizers and drivers, super-resolution, then devices, timing and plotting.
__all__ = [
    # grid and images
    "PAPER_OMEGA",
    "Grid",
    "HAND_MOTION",
    "ImagePair",
    "image_pair",
    "load_image",
    "load_pair",
    "synthetic_hand_pair",
    "SplineImage",
    "spline_coefficients",
    "spline_derivatives",
    "spline_evaluate",
    # transformations
    "Transformation",
    "Linearization",
    "Affine",
    "AutodiffLinearization",
    "NeuralODE",
    "affine",
    "affine_from_geometry",
    # distance and objective
    "DistanceDerivatives",
    "ssd",
    "ssd_block",
    "SSDObjective",
    "ScaleObjective",
    # derivative checks
    "TaylorResult",
    "taylor_from_differences",
    "taylor_test",
    # optimizers and multi-scale drivers
    "LMResult",
    "NewtonResult",
    "levenberg_marquardt",
    "newton_trust_region",
    "MultiscaleResult",
    "ScaleRecord",
    "theta_schedule",
    "single_scale",
    "traditional",
    "predictor_corrector",
    # super-resolution
    "CGResult",
    "conjugate_gradient",
    "SROperator",
    "SuperResolutionProblem",
    "superresolution_problem",
    "VarPro",
    "VarProRun",
    "varpro_levenberg_marquardt",
    "reconstruct",
    "relative_error",
    # devices, timing, plotting, interoperability
    "DEFAULT_DTYPE",
    "resolve_device",
    "Timing",
    "time_function",
    "peak_rss_mb",
    "machine_info",
    "describe_machine",
    "show_image",
    "plot_transformed_grid",
    "plot_performance",
    "plot_reconstructions",
    "animation_html",
    "interop",
]
