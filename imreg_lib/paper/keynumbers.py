r"""The data page's key numbers: image statistics, the objective at the identity and at the known motion, and a
check of the derivatives the Newton methods use.

With the affine map :math:`y(w, x) = Ax + b` and the spline models :math:`\mathcal{T}_\theta` and
:math:`\mathcal{R}_\theta` of the pair at scale :math:`\theta`, the objective on the cell centres :math:`x_c` is

.. math::
    J(w;\theta) = \textstyle\prod_i h_i\, \big\|\mathcal{T}_\theta(y(w, x_c)) - \mathcal{R}_\theta(x_c)\big\|^2 .

Its structured (FAIR-style) gradient and Hessian (:meth:`~imreg_lib.ScaleObjective.derivatives`) are compared with
``torch.func.grad`` and ``torch.func.hessian`` at the identity, and checked by a Taylor test along
:math:`v = (-1, \dots, 1)`: the first- and second-order errors decay like :math:`h^2` and :math:`h^3`.
"""

from __future__ import annotations

import torch

from .. import _checks
from ..data import ImagePair
from ..derivatives import taylor_test
from ..objective import SSDObjective
from .results import DataResults

__all__ = ["key_numbers"]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def key_numbers(pair: ImagePair, theta: float = 1e-3, *,
                steps: tuple[float, ...] = tuple(10.0 ** -k for k in range(1, 7))) -> DataResults:
    r"""The key numbers of ``pair`` at scale ``theta`` (:class:`~imreg_lib.paper.results.DataResults`).

    Parameters
    ----------
    pair : ImagePair
        The images (their device and dtype are used).
    theta : float
        The scale :math:`\theta` of the spline models.
    steps : tuple of float
        The step sizes :math:`h` of the Taylor test.

    Returns
    -------
    DataResults
        Image statistics, :math:`J` and :math:`\|\nabla J\|` at the identity, the relative differences
        :math:`\|D - D_\mathrm{AD}\| / \|D_\mathrm{AD}\|` of the structured gradient and Hessian, the observed
        Taylor orders, and, for a pair with a known motion :math:`w^*`, :math:`w^*` and :math:`J(w^*;\theta)`.
        ``peak_memory_mb`` is left unset.
    """
    _checks.positive_number("theta", theta, allow_zero=True)
    grid = pair.grid
    objective = SSDObjective.from_pair(pair)
    scale = objective.at_scale(theta)
    w_id = objective.identity()
    J, dJ, H = scale.derivatives(w_id)
    J_ad = torch.func.grad(scale.loss)(w_id)
    H_ad = torch.func.hessian(scale.loss)(w_id)
    v = torch.linspace(-1.0, 1.0, w_id.numel(), dtype=w_id.dtype, device=w_id.device)
    taylor = taylor_test(scale.loss, w_id, v, dJ @ v, v @ H @ v, h=steps)
    known = pair.w_true is not None
    return DataResults(
        source=pair.source, m=tuple(grid.m), theta=theta, reference_mean=float(pair.reference.mean()),
        reference_max=float(pair.reference.max()), template_mean=float(pair.template.mean()), loss_identity=float(J),
        grad_norm_identity=float(dJ.norm()), gradient_rel_diff_ad=_rel(dJ, J_ad), hessian_rel_diff_ad=_rel(H, H_ad),
        taylor_order_gradient=taylor.order(1), taylor_order_hessian=taylor.order(2),
        w_true=tuple(pair.w_true.tolist()) if known else None,
        loss_truth=float(scale.loss(pair.w_true)) if known else None)
