"""One look for the plotly figures (training curves, positional encodings): a lean template and colours.

Strings that come from users or records go through ``escape`` before plotly renders them: plotly
interprets a small tag set (``<b>``, ``<s>``, ``<a>``...), which would let typed markup through.
"""
from __future__ import annotations

import html

import plotly.graph_objects as go

FONT = "Inter, ui-sans-serif, system-ui, -apple-system, Segoe UI, Roboto, sans-serif"
INK = "#334155"  # slate-700: titles and tick labels
MUTED = "#64748b"  # slate-500: secondary text
GRID = "#e2e8f0"  # slate-200
ACCENT = "#4f46e5"  # indigo-600: the data
HIGHLIGHT = "#f59e0b"  # amber-500: a third series
SECOND = "#0d9488"  # teal-600: a second series
DIVERGING_SCALE = "RdBu_r"  # positional encodings live in [-1, 1]: blue negative, red positive

# A small hand-made template instead of "plotly_white": plotly embeds the whole template in every
# figure's JSON, which the page receives with every figure.
TEMPLATE = go.layout.Template(
    layout=dict(
        font=dict(family=FONT, size=12, color=INK),
        title=dict(font=dict(size=14, color=INK), x=0.0, xanchor="left", xref="paper"),
        # opaque white, not transparent: dark ink stays readable when the page itself is in dark mode
        paper_bgcolor="white",
        plot_bgcolor="white",
        colorway=[ACCENT, SECOND, HIGHLIGHT, "#db2777", "#0284c7", "#65a30d"],
        hoverlabel=dict(font=dict(family=FONT, size=12), bgcolor="white", bordercolor=GRID),
        xaxis=dict(gridcolor=GRID, zerolinecolor=GRID, linecolor=GRID, tickcolor=GRID, automargin=True),
        yaxis=dict(gridcolor=GRID, zerolinecolor=GRID, linecolor=GRID, tickcolor=GRID, automargin=True),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1.0, font=dict(size=11)),
        margin=dict(l=10, r=10, t=50, b=10),
    )
)


def escape(text: str) -> str:
    """A piece or title made safe and literal for plotly's text renderer."""
    return html.escape(str(text), quote=True)
