"""The numbers the paper and the authors' runs record, to print beside ours: reference values, never results of
this code."""

from __future__ import annotations

__all__ = ["FIG7_STEPS", "PAPER_FACTORS", "PAPER_SR", "PAPER_TABLE1"]

#: The paper's Table 1 (reference values, not results of this code): (mean, std) in ms on the authors'
#: (unknown, CPU-only) machine, m = 32, float32 images.
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "affine": {"loss": (2.171, 0.259), "gradient": (5.422, 0.409), "hessian": (12.44, 1.798),
               "forward": (1.054, 0.076), "jacobian": (11.59, 1.518)},
    "neural_ode": {"loss": (5.012, 2.168), "gradient": (13.65, 1.018), "hessian": (120.0, 8.737),
                   "forward": (3.204, 0.149), "jacobian": (54.31, 3.240)},
}
#: The paper's factors (gradient and Hessian over the loss, Jacobian over the forward map), as printed.
PAPER_FACTORS: dict[str, dict[str, float]] = {
    "affine": {"gradient": 2.5, "hessian": 5.7, "jacobian": 11.0},
    "neural_ode": {"gradient": 2.7, "hessian": 24.0, "jacobian": 17.0},
}

#: The step sizes of the authors' Jacobian test (Fig 7): ``logspace(5, -15, 10)``.
FIG7_STEPS: tuple[float, ...] = tuple(float(10.0 ** (5 - 20 * k / 9)) for k in range(10))

#: Numbers recorded in the authors' super-resolution runs ("read" = read off the figure).
PAPER_SR: dict = {
    "diff_all": {"rel_error": 0.1070,
                 "residual_norms": [3.1410, 0.69426, 0.43870, 0.29379, 0.21883, 0.18505, 0.16783, 0.16350, 0.16350,
                                    0.16350]},
    "no_diff": {"rel_error": 0.2561,
                "residual_norms": [3.1410, 2.8485, 2.5925, 2.3706, 2.1798, 2.0169, 1.8784, 1.7611, 1.6618, 1.5775]},
    "partial": {  # N = 200, restarted; final relative errors read from Fig 8
        0.7: {"rel_error_read": 0.37, "residual_norms_first_last": [3.1214, 3.1214]},
        0.9: {"rel_error_read": 0.12, "residual_norms_first_last": [3.1222, 0.22033]},
        0.95: {"rel_error_read": 0.117, "residual_norms_first_last": [3.1214, 0.20637]},
        1.0: {"rel_error_read": 0.105, "residual_norms_first_last": [3.1208, 0.16259]},
    },
    "inexact": {  # final relative error and relative loss after 10 LM points, read from Fig 10
        1: {"rel_error_read": 0.23, "rel_loss_read": 0.95},
        5: {"rel_error_read": 0.124, "rel_loss_read": 0.45},
        10: {"rel_error_read": 0.115, "rel_loss_read": 0.15},
        25: {"rel_error_read": 0.110, "rel_loss_read": 1.3e-2},
        50: {"rel_error_read": 0.111, "rel_loss_read": 2.0e-3},
        100: {"rel_error_read": 0.103, "rel_loss_read": 2.6e-3},
    },
    "jacobian_over_residual": (6.0, 10.0),
}
