"""Attention maps: one head (or the mean over heads) as a heatmap, or all heads of a layer as a grid.

Rows are queries, columns keys; both axes are labelled with the real pieces. The decoder's maps are
rebuilt from per-step records: the query at step t attends over the t+1 decoder inputs so far, so
stacking the steps gives a lower-triangular matrix (future positions are NaN and drawn blank).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import ATTENTION_SCALE, HIGHLIGHT, MUTED, TEMPLATE, escape, piece_axis, unique_labels, x_tick_angle


# --- assembling matrices from step records ---------------------------------------------------------------
def decoder_self_matrix(step_weights: Sequence[np.ndarray]) -> np.ndarray:
    """Per-step self-attention [(L, H, 1), (L, H, 2), ..., (L, H, T)] -> (L, H, T, T), NaN above the diagonal."""
    if not step_weights:
        raise ValueError("no decoding steps to build a self-attention matrix from")
    layers, heads = step_weights[0].shape[:2]
    n = len(step_weights)
    out = np.full((layers, heads, n, n), np.nan, dtype=np.float32)
    for t, w in enumerate(step_weights):
        if w.shape[-1] != t + 1:
            raise ValueError(f"step {t} attends over {w.shape[-1]} positions, expected {t + 1}")
        out[:, :, t, : t + 1] = w
    return out


def cross_matrix(step_weights: Sequence[np.ndarray]) -> np.ndarray:
    """Per-step cross-attention [(L, H, S)] * T -> (L, H, T, S)."""
    if not step_weights:
        raise ValueError("no decoding steps to build a cross-attention matrix from")
    return np.stack(step_weights, axis=2).astype(np.float32)


def select_head(weights: np.ndarray, head: int | None) -> np.ndarray:
    """(H, Q, K) -> (Q, K): one head, or the mean over heads when ``head`` is None."""
    if head is None:
        return weights.mean(axis=0)  # NaN (masked) cells are NaN in every head, so they stay NaN
    return weights[head]


# --- figures ------------------------------------------------------------------------------------------
HOVER = "<b>%{y}</b> → <b>%{x}</b>: %{z:.3f}<extra></extra>"  # query piece → key piece: weight


def _check_shape(weights: np.ndarray, query_pieces: Sequence[str], key_pieces: Sequence[str]) -> None:
    if weights.shape[-2:] != (len(query_pieces), len(key_pieces)):
        raise ValueError(
            f"attention of shape {weights.shape} does not match {len(query_pieces)} query and "
            f"{len(key_pieces)} key pieces"
        )


def _zmax(weights: np.ndarray) -> float:
    top = float(np.nanmax(weights)) if np.isfinite(weights).any() else 1.0
    return max(top, 1e-6)


def _highlight_row(fig: go.Figure, query: int, n_keys: int, **subplot) -> None:
    fig.add_shape(
        type="rect", x0=-0.5, x1=n_keys - 0.5, y0=query - 0.5, y1=query + 0.5,
        line=dict(color=HIGHLIGHT, width=2.5), fillcolor="rgba(0,0,0,0)", layer="above", **subplot,
    )


def attention_heatmap(
    weights: np.ndarray,
    query_pieces: Sequence[str],
    key_pieces: Sequence[str],
    title: str,
    query_title: str = "query",
    key_title: str = "key",
    highlight_row: int | None = None,
) -> go.Figure:
    """One (Q, K) attention map as a heatmap; rows are queries (top to bottom), columns keys.

    ``highlight_row`` outlines one query row (the current decoding step).
    """
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim != 2:
        raise ValueError(f"expected a (queries, keys) matrix, got shape {weights.shape}")
    _check_shape(weights, query_pieces, key_pieces)
    n_q, n_k = weights.shape
    q_labels, k_labels = unique_labels(query_pieces), unique_labels(key_pieces)
    fig = go.Figure(
        go.Heatmap(
            z=weights,
            x=k_labels,
            y=q_labels,
            hovertemplate=HOVER,
            hoverongaps=False,
            colorscale=ATTENTION_SCALE,
            zmin=0.0,
            zmax=_zmax(weights),
            xgap=1,
            ygap=1,
            colorbar=dict(title=dict(text="weight", side="right", font=dict(size=11, color=MUTED)),
                          thickness=10, len=0.9, outlinewidth=0, tickfont=dict(size=10)),
        )
    )
    x_axis = piece_axis(k_labels, key_title, angle=x_tick_angle(key_pieces))
    y_axis = piece_axis(q_labels, query_title, reverse=True)  # first query on top, as text is read
    cell = min(30.0, max(16.0, 520.0 / max(n_q, 1)))
    bottom = 40 + 7 * max((len(p) for p in key_pieces), default=1) if x_axis.get("tickangle") else 60
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text=escape(title)),
        xaxis=x_axis,
        yaxis=y_axis,
        height=int(max(260, 70 + bottom + n_q * cell)),
        margin=dict(l=10, r=10, t=50, b=10),
    )
    if highlight_row is not None:
        _highlight_row(fig, highlight_row, n_k)
    return fig


def attention_grid(
    weights: np.ndarray,
    query_pieces: Sequence[str],
    key_pieces: Sequence[str],
    title: str,
    highlight_row: int | None = None,
    max_cols: int = 4,
) -> go.Figure:
    """All heads of one layer, (H, Q, K), as small-multiple heatmaps on one shared colour scale.

    Tick labels are drawn on the outer edges for short sentences only; the hover always names the pieces.
    """
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim != 3:
        raise ValueError(f"expected a (heads, queries, keys) array, got shape {weights.shape}")
    _check_shape(weights, query_pieces, key_pieces)
    n_heads, n_q, n_k = weights.shape
    cols = min(max_cols, n_heads)
    rows = math.ceil(n_heads / cols)
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=[f"head {h + 1}" for h in range(n_heads)],
        horizontal_spacing=0.03 if n_k > 24 else 0.06, vertical_spacing=0.08 if rows > 1 else 0.0,
    )
    labelled = max(n_q, n_k) <= 24
    q_labels, k_labels = unique_labels(query_pieces), unique_labels(key_pieces)
    for h in range(n_heads):
        r, c = h // cols + 1, h % cols + 1
        fig.add_trace(
            go.Heatmap(
                z=weights[h],
                x=k_labels,
                y=q_labels,
                hovertemplate=f"head {h + 1}<br>" + HOVER,
                hoverongaps=False,
                coloraxis="coloraxis",
                xgap=0.5 if labelled else 0,
                ygap=0.5 if labelled else 0,
            ),
            row=r, col=c,
        )
        x_axis = piece_axis(k_labels, "", angle=-90 if n_k > 8 else -45)
        y_axis = piece_axis(q_labels, "", reverse=True)
        for axis in (x_axis, y_axis):
            axis["tickfont"] = dict(size=8)
        x_axis["showticklabels"] = labelled and r == rows
        y_axis["showticklabels"] = labelled and c == 1
        fig.update_xaxes(x_axis, row=r, col=c)
        fig.update_yaxes(y_axis, row=r, col=c)
        if highlight_row is not None:
            _highlight_row(fig, highlight_row, n_k, row=r, col=c)
    for annotation in fig.layout.annotations:  # the subplot titles
        annotation.font = dict(size=11, color=MUTED)
    panel = 150 if n_q <= 6 else 230
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text=escape(title)),
        coloraxis=dict(colorscale=ATTENTION_SCALE, cmin=0.0, cmax=_zmax(weights),
                       colorbar=dict(title=dict(text="weight", side="right", font=dict(size=11, color=MUTED)),
                                     thickness=10, len=0.9, outlinewidth=0, tickfont=dict(size=10))),
        height=int(rows * panel + (rows - 1) * 30 + (150 if labelled else 90)),
        margin=dict(l=10, r=10, t=70, b=10),
    )
    return fig
