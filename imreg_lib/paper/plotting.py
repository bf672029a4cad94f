"""Plotting of the reproduction report: every claim that is one number, ours against the paper's.

The plotting helpers of the section notebooks (images, grids, performance panels, animations) are
:mod:`imreg_lib.plotting`.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["plot_claims"]

_STATUS_STYLE = {"reproduced": ("tab:green", "o"), "differs": ("tab:red", "X"), "improved": ("tab:blue", "^"),
                 "not run": ("0.6", ".")}


def plot_claims(ax, claims: Sequence, *, band: tuple[float, float] | None = None, title: str | None = None,
                label: str = "") -> None:
    r"""Ours against the paper's number for every claim that is one number (``paper_value`` and ``ours_value``
    of :class:`~imreg_lib.paper.report.Claim`), on log-log axes, coloured by status, with the line "ours = paper's".

    Parameters
    ----------
    ax
        A matplotlib axes.
    claims
        :class:`~imreg_lib.paper.report.Claim` objects; those without both values, and those "beyond the paper"
        (another method than the paper's), are skipped.
    band
        ``(low, high)``: if given, the tolerance band :math:`[\text{low}\, v, \text{high}\, v]` around the line
        is shaded.
    title, label
        Axes title; the text of the axis labels after "paper" / "this book".
    """
    import matplotlib.ticker
    import numpy as np

    pts = [c for c in claims if c.paper_value is not None and c.ours_value is not None
           and c.status != "beyond the paper"]  # another method than the paper's: not a point on its scale
    if not pts:
        ax.set_axis_off()
        return
    values = [v for c in pts for v in (c.paper_value, c.ours_value)]
    lo, hi = min(values) / 1.5, max(values) * 1.5
    line = np.geomspace(lo, hi, 50)
    ax.plot(line, line, "-", color="0.4", linewidth=0.8, label="ours = paper's")
    if band is not None:
        ax.fill_between(line, band[0] * line, band[1] * line, color="0.85", linewidth=0, label="tolerance")
    for status, (color, marker) in _STATUS_STYLE.items():
        sel = [c for c in pts if c.status == status]
        if sel:
            ax.scatter([c.paper_value for c in sel], [c.ours_value for c in sel], color=color, marker=marker, s=45,
                       label=status, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(f"paper {label}".strip())
    ax.set_ylabel(f"this book {label}".strip())
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left")
