"""Plotting helpers shared by the notebooks (spec §1.8 conventions): images upright in physical units
(``img.T`` with ``origin="lower"`` and the domain as extent), deformed grids, and a static-interactive
fallback for widgets (a JavaScript animation that needs no kernel).

Only matplotlib; nothing here computes anything the library does not already provide.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .grid import Grid

__all__ = ["animation_html", "plot_transformed_grid", "show_image"]


def show_image(ax, values: torch.Tensor, grid: Grid, title: str | None = None, *, colorbar: bool = False,
               cmap: str = "gray", **imshow_kw):
    """Show cell values (shape ``(N,)`` or ``grid.m``) upright on the domain; returns the image artist."""
    img = values.detach().reshape(grid.m).cpu().numpy().T
    im = ax.imshow(img, origin="lower", extent=grid.extent, cmap=cmap, **imshow_kw)
    if title is not None:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return im


def plot_transformed_grid(ax, w: torch.Tensor, transformation, grid: Grid, *, spacing: int = 4,
                          color: str = "tab:red", **line_kw) -> None:
    """Draw the nodal grid mapped by ``y(w, ·)``, every ``spacing``-th line (the authors' ``plot_grid_2d``)."""
    nodes = grid.nodes(w.device, w.dtype)
    y = transformation(w, nodes).detach().cpu().numpy().reshape(grid.m[0] + 1, grid.m[1] + 1, 2)
    line_kw = {"linewidth": 0.8, "alpha": 0.8, **line_kw}
    for i in range(0, grid.m[0] + 1, spacing):
        ax.plot(y[i, :, 0], y[i, :, 1], color=color, **line_kw)
    for j in range(0, grid.m[1] + 1, spacing):
        ax.plot(y[:, j, 0], y[:, j, 1], color=color, **line_kw)


def animation_html(fig, draw: Callable[[int], None], frames: int | Sequence[int], *, interval: int = 400) -> str:
    """A self-contained HTML/JavaScript player of ``draw(k)`` over ``frames`` (closes ``fig``).

    This is the static-interactive version of a widget: it works in the rendered book without a kernel.
    """
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation

    anim = FuncAnimation(fig, draw, frames=frames, interval=interval)
    html = anim.to_jshtml(default_mode="once")
    plt.close(fig)
    return html
