"""Sinusoidal positional encodings: the matrix, single dimensions as waves, position similarity, a sentence.

Every function takes the encoding matrix itself, pe (P, D) with PE[pos, 2i] = sin(pos / 10000^(2i/D))
and PE[pos, 2i+1] = cos(...), so the figures show exactly what the model adds to its embeddings.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from .style import DIVERGING_SCALE, MUTED, TEMPLATE

_AXIS_TITLE = dict(font=dict(size=12, color=MUTED))


def _colorbar(title: str) -> dict:
    return dict(title=dict(text=title, side="right", font=dict(size=11, color=MUTED)),
                thickness=10, len=0.9, outlinewidth=0, tickfont=dict(size=10))


def encoding_heatmap(pe: np.ndarray) -> go.Figure:
    """pe (P, D) as a positions x dimensions heatmap in [-1, 1]."""
    pe = np.asarray(pe, dtype=np.float32)
    n_pos, d_model = pe.shape
    fig = go.Figure(
        go.Heatmap(
            z=pe, x=list(range(d_model)), y=list(range(n_pos)), colorscale=DIVERGING_SCALE, zmin=-1.0, zmax=1.0,
            hovertemplate="position %{y}, dimension %{x}: %{z:.3f}<extra></extra>", colorbar=_colorbar("value"),
        )
    )
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text=f"Sinusoidal encodings: {n_pos} positions × {d_model} dimensions"),
        xaxis=dict(title=dict(text="dimension (even: sin, odd: cos; frequency falls to the right)", **_AXIS_TITLE),
                   showgrid=False),
        yaxis=dict(title=dict(text="position", **_AXIS_TITLE), autorange="reversed", showgrid=False),
        height=460,
    )
    return fig


def encoding_curves(pe: np.ndarray, dims: Sequence[int]) -> go.Figure:
    """Chosen dimensions of pe (P, D) as curves over position: fast waves first, slow ones later."""
    pe = np.asarray(pe, dtype=np.float32)
    n_pos, d_model = pe.shape
    dims = [int(d) for d in dims]
    bad = [d for d in dims if not 0 <= d < d_model]
    if bad:
        raise ValueError(f"dimensions {bad} are outside 0..{d_model - 1}")
    fig = go.Figure()
    positions = np.arange(n_pos)
    for d in dims:
        kind = "sin" if d % 2 == 0 else "cos"
        period = 2 * np.pi * 10000 ** ((d - d % 2) / d_model)
        fig.add_trace(
            go.Scatter(
                x=positions, y=pe[:, d], mode="lines", line=dict(width=2),
                name=f"dim {d} ({kind}, period {period:,.0f})",
                hovertemplate=f"dim {d}<br>position %{{x}}: %{{y:.3f}}<extra></extra>",
            )
        )
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text="Individual dimensions over position"),
        xaxis=dict(title=dict(text="position", **_AXIS_TITLE)),
        yaxis=dict(title=dict(text="encoding value", **_AXIS_TITLE), range=[-1.1, 1.1]),
        legend=dict(orientation="v", yanchor="top", y=1.0, xanchor="left", x=1.02),
        height=380,
    )
    return fig


def similarity_heatmap(pe: np.ndarray) -> go.Figure:
    """Dot products pe @ pe.T (P, P): nearby positions are similar, and similarity depends on distance only."""
    pe = np.asarray(pe, dtype=np.float32)
    sim = pe @ pe.T  # (P, P)
    n_pos = sim.shape[0]
    fig = go.Figure(
        go.Heatmap(
            z=sim, x=list(range(n_pos)), y=list(range(n_pos)), colorscale="Viridis",
            hovertemplate="positions %{y} · %{x}: %{z:.2f}<extra></extra>", colorbar=_colorbar("dot product"),
        )
    )
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text="Position–position similarity (dot product of encodings)"),
        xaxis=dict(title=dict(text="position", **_AXIS_TITLE), showgrid=False),
        yaxis=dict(title=dict(text="position", **_AXIS_TITLE), autorange="reversed", showgrid=False),
        height=460,
    )
    return fig


def default_dims(d_model: int) -> list[int]:
    """A few dimensions from fast to slow waves: a sin/cos pair at d/16, then sin at d/8, d/4 and d/2."""
    first = d_model // 16 - (d_model // 16) % 2
    picks = {first, first + 1} | {d - d % 2 for d in (d_model // 8, d_model // 4, d_model // 2)}
    return sorted(d for d in picks if d < d_model)
