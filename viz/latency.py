"""Wall time of each decoding step, for one run or several overlaid (KV cache on vs off)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import plotly.graph_objects as go

from .style import ACCENT, HIGHLIGHT, MUTED, SECOND, TEMPLATE, escape

RUN_COLORS = [ACCENT, SECOND, "#db2777", "#0284c7"]


@dataclass
class LatencyRun:
    """One translation's timings: the encoder pass and each decoder step, in milliseconds."""

    label: str
    step_ms: list[float] = field(default_factory=list)  # (T,)
    encode_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.encode_ms + sum(self.step_ms)


def latency_chart(runs: Sequence[LatencyRun], current_step: int | None = None) -> go.Figure:
    """Per-step latency (ms) of ``runs``; the first run is the one being browsed and sets the title.

    ``current_step`` (0-based) draws a marker on the first run at that step.
    """
    if not runs:
        raise ValueError("no run to draw")
    main = runs[0]
    fig = go.Figure()
    for i, run in enumerate(runs):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        fig.add_trace(
            go.Scatter(
                x=list(range(1, len(run.step_ms) + 1)),
                y=[float(v) for v in run.step_ms],
                mode="lines+markers",
                line=dict(color=color, width=2.5 if i == 0 else 2, shape="linear", dash="solid" if i == 0 else "dot"),
                marker=dict(size=6 if len(run.step_ms) <= 60 else 3, color=color),
                name=escape(f"{run.label} · {run.total_ms:.1f} ms total"),
                hovertemplate=f"{escape(run.label)}<br>step %{{x}}: %{{y:.2f}} ms<extra></extra>",
            )
        )
    if current_step is not None and 0 <= current_step < len(main.step_ms):
        fig.add_trace(
            go.Scatter(
                x=[current_step + 1], y=[float(main.step_ms[current_step])], mode="markers",
                marker=dict(size=14, color="rgba(0,0,0,0)", line=dict(color=HIGHLIGHT, width=3)),
                name="current step", hovertemplate="current step %{x}: %{y:.2f} ms<extra></extra>",
            )
        )
    n = len(main.step_ms)
    per_step = sum(main.step_ms) / n if n else 0.0
    title = (
        f"Latency per decoding step — total {main.total_ms:.1f} ms "
        f"(encoder {main.encode_ms:.1f} ms + {n} steps × {per_step:.2f} ms)"
    )
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text=escape(title)),
        xaxis=dict(title=dict(text="decoding step (generated token)", font=dict(size=12, color=MUTED)),
                   rangemode="tozero", dtick=1 if n <= 20 else None),
        yaxis=dict(title=dict(text="milliseconds", font=dict(size=12, color=MUTED)), rangemode="tozero"),
        height=360,
        showlegend=True,
        margin=dict(l=10, r=10, t=80, b=10),
        hovermode="closest",
    )
    return fig
