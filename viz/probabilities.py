"""The decoder's top-k next-token candidates at one step, as a horizontal bar chart."""
from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go

from .style import HIGHLIGHT, MUTED, SOFT, TEMPLATE, escape, piece_axis, unique_labels


def _percent(p: float) -> str:
    """Enough digits to tell small probabilities apart: 42.0%, 3.1%, 0.27%."""
    return f"{p:.1%}" if p >= 0.01 else f"{p:.2%}"


def topk_bar(pieces: Sequence[str], probs: Sequence[float], chosen: int | None, title: str) -> go.Figure:
    """Bars for k candidates, most likely on top; ``chosen`` (an index into ``pieces``) is highlighted.

    pieces, probs: (k,), in the order given (normally descending probability).
    """
    if len(pieces) != len(probs):
        raise ValueError(f"{len(pieces)} pieces but {len(probs)} probabilities")
    k = len(pieces)
    probs = [float(p) for p in probs]
    colors = [HIGHLIGHT if i == chosen else SOFT for i in range(k)]
    labels = unique_labels(pieces)
    top = max(probs, default=1.0)
    fig = go.Figure(
        go.Bar(
            x=probs,
            y=labels,
            orientation="h",
            marker=dict(color=colors, line=dict(width=0)),
            text=[_percent(p) for p in probs],
            textposition="outside",
            cliponaxis=False,
            textfont=dict(size=11, color=MUTED),
            hovertemplate="<b>%{y}</b>: p = %{x:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text=escape(title)),
        xaxis=dict(title=dict(text="probability", font=dict(size=12, color=MUTED)),
                   tickformat=".0%" if top >= 0.1 else ".1%" if top >= 0.01 else ".2%",
                   range=[0, min(1.0, top * 1.18) if top > 0 else 1.0], showgrid=True),
        yaxis={**piece_axis(labels, "", reverse=True), "tickfont": dict(size=12)},
        bargap=0.25,
        height=int(110 + 26 * max(k, 1)),
        showlegend=False,
    )
    return fig
