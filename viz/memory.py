"""Memory figures: the KV cache measured at each step next to its formula, and weight storage by dtype."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from model.memory import human_bytes

from .style import ACCENT, HIGHLIGHT, MUTED, SECOND, SOFT, TEMPLATE, escape

FORMULA_NOTE = ("decoding step (positions cached = step); "
                "formula = 2 × layers × d_model × bytes × (positions + source tokens) × beams")


def _unit(max_bytes: float) -> tuple[str, float]:
    """Axis unit for a byte range: KiB below 1 MiB, MiB below 1 GiB, else GiB."""
    if max_bytes < 1024**2:
        return "KiB", 1024.0
    if max_bytes < 1024**3:
        return "MiB", 1024.0**2
    return "GiB", 1024.0**3


def kv_cache_chart(
    measured_self: Sequence[int],
    measured_cross: Sequence[int],
    formula_self: Sequence[int],
    formula_cross: Sequence[int],
    current_step: int | None = None,
    title: str = "KV cache after each step: measured vs formula",
    subtitle: str | None = None,
) -> go.Figure:
    """Stacked bars of the measured cache (self + cross, bytes, each (T,)) and the formula total as a line.

    Step t has t+1 decoder positions cached; the cross-attention part is constant per sentence.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in (measured_self, measured_cross, formula_self, formula_cross)]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("measured and formula series must have one value per step")
    m_self, m_cross, f_self, f_cross = arrays
    unit, scale = _unit(max(float((m_self + m_cross).max(initial=0)), float((f_self + f_cross).max(initial=0)), 1.0))
    steps = list(range(1, n + 1))

    def hover(name: str, values: np.ndarray) -> list[str]:
        return [f"{name}, step {s}: {human_bytes(v)} ({int(v):,} B)" for s, v in zip(steps, values)]

    fig = go.Figure()
    fig.add_trace(go.Bar(x=steps, y=m_cross / scale, name="measured: cross-attention", marker_color=SOFT,
                         text=hover("cross-attention cache", m_cross), hovertemplate="%{text}<extra></extra>",
                         textposition="none"))
    fig.add_trace(go.Bar(x=steps, y=m_self / scale, name="measured: self-attention", marker_color=ACCENT,
                         text=hover("self-attention cache", m_self), hovertemplate="%{text}<extra></extra>",
                         textposition="none"))
    total = f_self + f_cross
    fig.add_trace(go.Scatter(x=steps, y=total / scale, mode="lines+markers", name="formula",
                             line=dict(color=SECOND, width=2, dash="dash"), marker=dict(size=5, color=SECOND),
                             text=hover("formula total", total), hovertemplate="%{text}<extra></extra>"))
    if current_step is not None and 0 <= current_step < n:
        fig.add_vrect(x0=current_step + 0.5, x1=current_step + 1.5, fillcolor=HIGHLIGHT, opacity=0.18,
                      line_width=0, layer="below")
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text=escape(title), subtitle=dict(text=escape(subtitle or ""), font=dict(size=11, color=MUTED))),
        barmode="stack",
        bargap=0.15,
        xaxis=dict(title=dict(text=FORMULA_NOTE, font=dict(size=11, color=MUTED)),
                   dtick=1 if n <= 20 else None),
        yaxis=dict(title=dict(text=unit, font=dict(size=12, color=MUTED)), rangemode="tozero"),
        height=380,
        margin=dict(l=10, r=10, t=70 if subtitle else 50, b=10),
        legend=dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0.0),
    )
    return fig


def weights_chart(bytes_by_dtype: Mapping[str, int], current: str | None = None) -> go.Figure:
    """Bar per storage dtype (e.g. fp32/fp16/int8) of the same parameters; ``current`` is highlighted."""
    names = list(bytes_by_dtype)
    values = np.asarray([bytes_by_dtype[k] for k in names], dtype=np.float64)
    unit, scale = _unit(float(values.max(initial=1.0)))
    colors = [HIGHLIGHT if k == current else ACCENT for k in names]
    fig = go.Figure(
        go.Bar(
            x=[escape(k) for k in names], y=values / scale, marker_color=colors,
            text=[human_bytes(v) for v in values], textposition="outside", cliponaxis=False,
            hovertemplate="%{x}: %{text}<extra></extra>",
        )
    )
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text="Weights by storage type" + (f" (loaded as {escape(current)})" if current else "")),
        xaxis=dict(title=dict(text="bytes per parameter: fp32 4, fp16/bf16 2, int8 1",
                              font=dict(size=12, color=MUTED))),
        yaxis=dict(title=dict(text=unit, font=dict(size=12, color=MUTED)), rangemode="tozero",
                   range=[0, float(values.max(initial=1.0)) / scale * 1.18]),
        height=320,
        showlegend=False,
    )
    return fig
