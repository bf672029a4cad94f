"""Plotting helpers shared by the notebooks (the book's conventions): images upright in physical units
(``img.T`` with ``origin="lower"`` and the domain as extent), deformed grids, and a static-interactive
fallback for widgets (a JavaScript animation that needs no kernel).

Only matplotlib; nothing here computes anything the library does not already provide.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import torch

from .grid import Grid

__all__ = ["animation_html", "plot_performance", "plot_reconstructions", "plot_transformed_grid",
           "show_image", "strip_remote_stylesheets"]


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

    This is the static-interactive version of a widget: it works in the rendered book without a kernel, and
    without the network: matplotlib's link to a remote Font Awesome stylesheet is removed (the book's theme
    ships Font Awesome for the buttons' icons). The frame slider and the frame image get accessible names
    (matplotlib's have none).
    """
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation

    anim = FuncAnimation(fig, draw, frames=frames, interval=interval)
    html = strip_remote_stylesheets(anim.to_jshtml(default_mode="once"))
    html = html.replace('type="range" class="anim-slider"', 'type="range" class="anim-slider" aria-label="frame"')
    html = html.replace('<img id="_anim_img', '<img alt="the animation\'s current frame" id="_anim_img')
    plt.close(fig)
    return html


_REMOTE_STYLESHEET = re.compile(r"""<link\b[^>]*\bhref\s*=\s*["']?(?:https?:)?//[^>]*>\s*""", re.IGNORECASE)


def strip_remote_stylesheets(html: str) -> str:
    """``html`` without its ``<link ... href="http(s)://...">`` tags (stylesheets and the like from another host).

    Parameters
    ----------
    html
        An HTML fragment, e.g. matplotlib's ``to_jshtml()`` player, which links Font Awesome 4 from a CDN.

    Returns
    -------
    str
        The fragment with those tags (and the whitespace after them) removed; everything else unchanged.
    """
    return _REMOTE_STYLESHEET.sub("", html)


def plot_performance(axes, histories: Mapping[str, tuple[Sequence[float], Sequence[float]]], *,
                     loss_ylim: tuple[float, float] | None = None, grad_ylim: tuple[float, float] | None = None,
                     **line_kw) -> None:
    """The paper's performance panels: ``losses/losses[0]`` and ``grads/grads[0]`` against the
    recorded LM point 1..n on log-log axes, with grey dotted :math:`1/k^i` guides.

    ``histories`` maps a legend label to ``(losses, grad_norms)``; extra keywords go to every line.
    """
    import numpy as np

    line_kw = {"linewidth": 0.8, "marker": ".", **line_kw}
    n = max(len(losses) for losses, _ in histories.values())
    k = np.arange(n) + 1.0
    for ax, which, title, ylim in ((axes[0], 0, "Relative Loss", loss_ylim),
                                   (axes[1], 1, "Relative Gradient Norm", grad_ylim)):
        for i in range(10):
            ax.plot(k, 1.0 / k ** i, ":", color="grey", alpha=0.3, linewidth=0.8)
        for label, hist in histories.items():
            v = np.asarray(hist[which], dtype=float)
            ax.plot(np.arange(len(v)) + 1, v / v[0], label=label, **line_kw)
        ax.set_xscale("log")
        ax.set_yscale("log")
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_title(title)
        ax.set_xlabel("Optimization Iterations")
    axes[0].legend(fontsize="small")


def plot_reconstructions(images: Mapping[str, torch.Tensor], reference: torch.Tensor, grid: Grid, *,
                         title: str | None = None, clim: tuple[float, float] = (0.0, 250.0),
                         diff_clim: tuple[float, float] = (-50.0, 50.0), column_width: float = 3.0):
    """The paper's reconstruction figure: reconstructions on top, reconstruction − truth below,
    one column per entry of ``images``, shared colour bars. Returns the figure."""
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(column_width * n + 0.8, 4.6), squeeze=False)
    for j, (label, img) in enumerate(images.items()):
        top = show_image(axes[0, j], img, grid, label, cmap="Greys_r", vmin=clim[0], vmax=clim[1])
        bottom = show_image(axes[1, j], img.reshape(grid.m) - reference.reshape(grid.m), grid, cmap="Greys_r",
                            vmin=diff_clim[0], vmax=diff_clim[1])
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("Reconstruction")
    axes[1, 0].set_ylabel("Reconstruction - True")
    fig.colorbar(top, ax=list(axes[0]), fraction=0.03, pad=0.02)
    fig.colorbar(bottom, ax=list(axes[1]), fraction=0.03, pad=0.02)
    if title is not None:
        fig.suptitle(title)
    return fig
