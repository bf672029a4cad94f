r"""The authors' defects, rebuilt on purpose from the library's correct blocks, under names that say so.

The library (:mod:`imreg_lib`) computes the correct thing; the paper's numbers come from the authors' scripts,
which in places compute something else. To reproduce those numbers, each deviation is a named wrapper here that
builds the defective variant out of the library's building blocks (a hook of the driver, a subclass): what the
authors' script does and why it is wrong is said in its docstring, and nothing in the library knows about it.

* :func:`gauss_newton_hessian_as_coded`, :func:`predictor_corrector_as_coded`: the Gauss-Newton predictor of
  Fig. 3 with half the Hessian, hence a step twice too long;
* :class:`AsCodedVarPro`: the variable-projection residual of Figs 5-11 on the data misfit alone, with the
  reference template's motion free.

Defects that live in the experiments themselves (the pre-registration's restarts from the identity, the Fig. 3
metric at the previous scale) are options of :func:`~imreg_lib.paper.preregistration.preregister` and
:func:`~imreg_lib.paper.multiscale.prediction_quality`; :data:`~imreg_lib.paper.report.DEFECTS` lists every defect
and how the book handles it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..multiscale import MultiscaleResult, predictor_corrector
from ..objective import SSDObjective
from ..superres import SROperator
from ..varpro import VarPro

__all__ = ["AsCodedVarPro", "gauss_newton_hessian_as_coded", "predictor_corrector_as_coded"]


# ---- Fig. 3: the Gauss-Newton predictor ---------------------------------------------------------------------

def gauss_newton_hessian_as_coded(hessian: torch.Tensor) -> torch.Tensor:
    r"""The matrix the authors' Gauss-Newton predictor solves with: half the library's Gauss-Newton Hessian.

    What the script does: the objective is :math:`J = \|r\|^2` and the right-hand side of the predictor is
    :math:`\partial_\theta \nabla_w J`, but the matrix it solves with is :math:`J_r^\top J_r`, the Gauss-Newton
    approximation of the Hessian of :math:`\tfrac12 \|r\|^2`.

    Why it is wrong: the Gauss-Newton approximation of :math:`\nabla^2_w J` is :math:`2 J_r^\top J_r` (what the
    library's ``hessian="gauss_newton"`` passes to the predictor), so the script's Euler step
    :math:`-(J_r^\top J_r)^{-1} \partial_\theta \nabla_w J` is twice the step of the ODE :math:`dw^*/d\theta`.

    Parameters
    ----------
    hessian : torch.Tensor
        The library's Gauss-Newton Hessian :math:`2 J_r^\top J_r` at the accepted iterate.

    Returns
    -------
    torch.Tensor
        :math:`J_r^\top J_r` (halving is exact in floating point: bit for bit the script's matrix).
    """
    return 0.5 * hessian


def predictor_corrector_as_coded(objective: SSDObjective, thetas: Sequence[float], w0: torch.Tensor | None = None,
                                 **options) -> MultiscaleResult:
    r"""The authors' Gauss-Newton predictor-corrector of Fig. 3: Levenberg-Marquardt corrector, predictor step twice
    too long.

    :func:`~imreg_lib.multiscale.predictor_corrector` with ``hessian="gauss_newton"`` and the predictor's matrix
    replaced by :func:`gauss_newton_hessian_as_coded` (its docstring says what the script does and why it is
    wrong). The corrector is the library's; only the prediction differs.

    Parameters
    ----------
    objective, thetas, w0
        As in :func:`~imreg_lib.multiscale.predictor_corrector`.
    **options
        The other options of :func:`~imreg_lib.multiscale.predictor_corrector` (``gtol``, ``first_gtol``,
        ``max_iter``, ...), except ``hessian`` and ``predictor_hessian``, which this wrapper sets.
    """
    fixed = sorted({"hessian", "predictor_hessian"} & set(options))
    if fixed:
        raise ValueError(f"predictor_corrector_as_coded sets {', '.join(fixed)} itself")
    return predictor_corrector(objective, thetas, w0, hessian="gauss_newton",
                               predictor_hessian=gauss_newton_hessian_as_coded, **options)


# ---- Figs 5-11: the variable-projection residual ------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class AsCodedVarPro(VarPro):
    r"""The authors' variable-projection residual: all :math:`6q` parameters free and the data misfit only.

    What the script does: it optimises the motion of every template, template 0 included (24 parameters at the
    paper's size instead of 18), and hands Gauss-Newton the unscaled data misfit
    :math:`r(w) = (I \otimes K) I(w) f_0(w) - d`, while the projection :math:`f_0(w)` minimises the full
    least-squares objective :math:`\|A(w) f - b\|^2` (cell-volume weights and the :math:`\lambda L` rows).

    Why it is wrong: moving every template and the image together leaves the data unchanged, so with template 0
    free the motion is not determined (the paper's text fixes it); and the residual is not the one whose norm
    the projection minimises, so :math:`\|r\|^2` is not the least-squares objective with the image eliminated
    (eq. 7): Gauss-Newton reduces one function of :math:`w` while the projection eliminates the image from
    another. The paper's numbers come from this variant, so it is the default of the §4 experiments
    (:mod:`imreg_lib.paper.superres`); :class:`~imreg_lib.varpro.VarPro` is eq. (7).

    Built from the library's blocks: the parametrisation and the residual hooks of
    :class:`~imreg_lib.varpro.VarPro` are replaced; the projection, every Jacobian method and the drivers are the
    library's. Parameters as in :class:`~imreg_lib.varpro.VarPro`.
    """

    variant: ClassVar[str] = "as_coded"

    @property
    def n_params(self) -> int:
        """All :math:`6q` parameters (template 0 too)."""
        return self.problem.n_params

    def full_parameters(self, w: torch.Tensor) -> torch.Tensor:
        """``w`` itself: every template's parameters are free."""
        self.check_parameters(w)
        return w

    def reduced_parameters(self, w_full: torch.Tensor) -> torch.Tensor:
        """``w_full`` itself."""
        self.problem.check_parameters(w_full)
        return w_full

    def residual_map(self, op: SROperator) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
        r"""The data misfit, unscaled: :math:`M = (I \otimes K) I(w)` (``op.data_map``) and :math:`c = d`."""
        return op.data_map, self.problem.d

    def dense_residual(self, D):
        """The data misfit on the assembled operator (see :meth:`~imreg_lib.varpro.VarPro.dense_residual`):
        :math:`G f - d` and its partial derivative, the block-diagonal :math:`[\\dot G_{j,a} f]`."""
        if type(self).residual_map is not AsCodedVarPro.residual_map:
            return None
        return D.data_map, D.data_map_dot, self.problem.d
