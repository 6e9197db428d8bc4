"""One look for every figure: a lean plotly template, colours, and helpers for piece-labelled axes.

Pieces come from user text, so every string that plotly renders (ticks, hover, titles) goes through
``html.escape`` first: plotly interprets a small tag set (``<b>``, ``<s>``, ``<a>``...), which would
strike through everything after the real ``<s>`` piece and let typed markup through.
"""
from __future__ import annotations

import html
from typing import Sequence

import plotly.graph_objects as go

FONT = "Inter, ui-sans-serif, system-ui, -apple-system, Segoe UI, Roboto, sans-serif"
INK = "#334155"  # slate-700: titles and tick labels
MUTED = "#64748b"  # slate-500: secondary text
GRID = "#e2e8f0"  # slate-200
ACCENT = "#4f46e5"  # indigo-600: the data
SOFT = "#a5b4fc"  # indigo-300: the data that is not selected
HIGHLIGHT = "#f59e0b"  # amber-500: the chosen token, the current step
SECOND = "#0d9488"  # teal-600: a second series (formula, cache off)
ZWSP = "\u200b"  # zero-width space

# white -> indigo: zero attention disappears into the background, strong weights stand out
ATTENTION_SCALE = [[0.0, "#f8fafc"], [0.1, "#e0e7ff"], [0.35, "#a5b4fc"], [0.65, "#6366f1"], [1.0, "#1e1b4b"]]
DIVERGING_SCALE = "RdBu_r"  # positional encodings live in [-1, 1]: blue negative, red positive

# A small hand-made template instead of "plotly_white": plotly embeds the whole template in every
# figure's JSON, and a figure is re-sent at each decoding step.
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


def tick_font_size(n: int) -> int:
    """Smaller ticks for longer sentences: 12 px up to 15 labels, down to 9 px from 40."""
    if n <= 15:
        return 12
    if n <= 25:
        return 11
    if n <= 40:
        return 10
    return 9


def unique_labels(pieces: Sequence[str]) -> list[str]:
    """Escaped pieces made unique by trailing zero-width spaces, for use as category coordinates.

    Plotly merges equal category labels and sentences repeat pieces (``'``, ``▁la``); an invisible
    suffix keeps every position apart while tick and hover labels still read as the piece itself.
    Labels rather than integer positions let the hover name the pieces without per-cell text,
    which would multiply the figure's size by the number of cells.
    """
    seen: dict[str, int] = {}
    out = []
    for piece in pieces:
        label = escape(piece)
        k = seen.get(label, 0)
        seen[label] = k + 1
        out.append(label + ZWSP * k)
    return out


def piece_label(label: str) -> str:
    """The piece a label from ``unique_labels`` shows (inverse of escape + suffix)."""
    return html.unescape(label.rstrip(ZWSP))


def piece_axis(labels: Sequence[str], title: str, angle: int | None = None, reverse: bool = False) -> dict:
    """A category axis over ``unique_labels`` output, in sentence order, every label shown."""
    n = len(labels)
    axis = dict(
        type="category",  # pieces such as "2" would otherwise turn the axis numeric
        categoryorder="array",
        categoryarray=list(labels),
        title=dict(text=title, font=dict(size=12, color=MUTED)),
        tickfont=dict(size=tick_font_size(n)),
        dtick=1,
        range=[n - 0.5, -0.5] if reverse else [-0.5, n - 0.5],
        showgrid=False,
        zeroline=False,
        automargin=True,
    )
    if angle is not None:
        axis["tickangle"] = angle
    return axis


def x_tick_angle(pieces: Sequence[str]) -> int:
    """Flat labels when they fit, slanted for medium sentences, vertical for long ones."""
    n, longest = len(pieces), max((len(p) for p in pieces), default=0)
    if n <= 8 and longest <= 8:
        return 0
    return -45 if n <= 20 else -90
