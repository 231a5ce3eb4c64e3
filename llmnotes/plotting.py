"""Figures for the docs: matplotlib in, inline SVG out.

Pages draw figures at build time in ``{.python exec="on" html="on"}`` fences and
``print(svg(fig))``. The docs build sets ``LLMNOTES_DOCS_BUILD=1`` (see ``tools/mkdocs_hooks.py``); outside the build, e.g. when ``pytest --markdown-docs`` runs the same
fence, ``svg`` still renders the figure (so a broken plot fails the test) but returns a one-line
summary instead of flooding the terminal with SVG.
"""

from __future__ import annotations

import io
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({"svg.fonttype": "none", "figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3})


def in_docs_build() -> bool:
    """True while ``mkdocs build``/``serve`` executes a page's code."""
    return os.environ.get("LLMNOTES_DOCS_BUILD") == "1"


def svg(fig: "matplotlib.figure.Figure", *, close: bool = True) -> str:
    """Render ``fig`` to an inline ``<svg>`` string for the page (a summary outside the build)."""
    buf = io.StringIO()
    # No date and a fixed id salt: the same figure gives the same bytes on every build, so a
    # rebuilt (or exec-cached) page is byte-identical to the one it replaces.
    with plt.rc_context({"svg.hashsalt": "llmnotes"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    if close:
        plt.close(fig)
    text = buf.getvalue()
    if not in_docs_build():
        return f"<figure: {len(fig.axes)} axes, {len(text)} bytes of SVG>"
    start = text.index("<svg")
    return f'<div class="llmnotes-figure">{text[start:]}</div>'
