"""The kernel-free animation player of the book needs no network; the paper layer's figures, widgets and players
(imreg_lib.paper.figures) build from the small runs of conftest.py."""

import re

import matplotlib.pyplot as plt
import pytest

from imreg_lib.plotting import animation_html, strip_remote_stylesheets


def test_player_html_has_no_remote_url():
    fig, ax = plt.subplots(figsize=(1.0, 1.0), dpi=20)
    (line,) = ax.plot([0.0, 1.0], [0.0, 1.0])
    html = animation_html(fig, lambda k: line.set_ydata([0.0, float(k)]), 3)
    assert re.search(r"https?://", html) is None
    assert "anim-buttons" in html and "data:image/png;base64," in html  # still the player, frames inline
    assert re.search(r'<input[^>]*type="range"[^>]*aria-label="frame"', html)  # the slider has a name
    assert re.search(r'<img alt="[^"]+" id="_anim_img', html)  # and the frame an alternative text
    assert not plt.fignum_exists(fig.number)


def test_strip_remote_stylesheets_keeps_local_links():
    html = ('<link rel="stylesheet"\nhref="https://cdn.example.org/fa.css">\n<p>x</p>'
            '<link rel="stylesheet" href="local.css"><LINK HREF=\'//cdn.example.org/b.css\'>')
    assert strip_remote_stylesheets(html) == '<p>x</p><link rel="stylesheet" href="local.css">'


# ---- the figures, widgets and players build from the same runs --------------------------------------------------

def test_figures_widgets_and_players(multiscale, superres, ad_costs, pair12):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from imreg_lib.paper import figures as plotting

    objective, fig2, fig3 = multiscale.objective, multiscale.fig2, multiscale.fig3
    problem, theta_min = superres.problem, fig2.predictor_corrector.thetas[-1]
    figures = [plotting.plot_scaling(ad_costs.scaling, 8), plotting.plot_scale_space(pair12, [1e2, 1.0, 1e-3]),
               plotting.plot_fig2(objective, fig2, pair12.grid, theta_min), plotting.plot_predictor_work(fig2),
               plotting.plot_fig3(fig3.exact, fig3.gauss_newton, "Fig. 3"),
               plotting.plot_prediction_variants(fig3, multiscale.prediction.thetas),
               plotting.plot_fig5(superres.runs), plotting.plot_fig8(superres.partial, superres.continued, [0.5, 1.0]),
               plotting.plot_fig10(superres.inexact, [2, 5]), plotting.plot_memory(superres.all_runs),
               plotting.plot_fig7(superres.taylor), plotting.plot_own_taylor(superres.taylor_own, 5)]
    assert [len(f.axes) for f in figures[:2]] == [2, 3] and len(figures[2].axes) == 9 + 3  # three colour bars
    assert figures[2]._suptitle.get_text() == "Fig. 2: predictor-corrector (middle) vs single scale (bottom)"
    for f in figures:
        plt.close(f)
    players = [plotting.scale_space_player(objective, pair12.grid, theta_min, frames=2),
               plotting.predictor_corrector_player(objective, fig2.predictor_corrector, pair12.grid),
               plotting.lm_player(superres.runs, problem), plotting.inexact_player(superres.inexact,
                                                                                 problem.reference, problem.grid)]
    assert all("data:image/png;base64," in html for html in players)
    pytest.importorskip("ipywidgets")
    widgets = [plotting.scale_space_explorer(objective, pair12.grid, theta_min),
               plotting.affine_explorer(objective, fig2, pair12, theta_min),
               plotting.varpro_explorer(superres.runs, superres.inexact, problem, n_points=3)]
    assert [type(w).__name__ for w in widgets] == ["interactive", "VBox", "VBox"]
    plt.close("all")
