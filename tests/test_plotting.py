"""The kernel-free animation player of the book needs no network."""

import re

import matplotlib.pyplot as plt

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
