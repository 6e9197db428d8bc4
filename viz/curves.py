"""Training curves of one or more checkpoints on one chart: dev BLEU (and loss, when recorded) over time.

A checkpoint's training record (``training/loop.py``) keeps ``dev_history``: one dict per dev
evaluation with ``step``, ``minutes``, ``bleu``, ``chrf``. Records that also keep a training-loss
series (``train_history`` or ``loss_history``: dicts with ``step``/``minutes`` and ``loss``) get it drawn
on a second axis. Nothing else is assumed, so older and newer records both draw.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import plotly.graph_objects as go

from .style import ACCENT, MUTED, SECOND, TEMPLATE, escape

RUN_COLORS = [ACCENT, SECOND, "#db2777", "#0284c7"]  # one colour per model

LOSS_KEYS = ("train_history", "loss_history")


def curve_points(record: Mapping[str, Any], series: str, value: str) -> tuple[list[float], list[float]]:
    """(minutes, values) of one series of a record; points without both numbers are skipped."""
    xs, ys = [], []
    for point in record.get(series) or []:
        if not isinstance(point, Mapping):
            continue
        x, y = point.get("minutes"), point.get(value)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)):
            xs.append(float(x))
            ys.append(float(y))
    return xs, ys


def loss_points(record: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    for key in LOSS_KEYS:
        xs, ys = curve_points(record, key, "loss")
        if xs:
            return xs, ys
    return [], []


def training_curves(records: Mapping[str, Mapping[str, Any]], title: str = "Training curves") -> go.Figure:
    """Dev BLEU (solid, left axis) and training loss (dotted, right axis) against wall-clock minutes.

    records: model name -> that checkpoint's training record. One colour per model.
    """
    fig = go.Figure()
    any_loss = False
    for i, (name, record) in enumerate(records.items()):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        xs, ys = curve_points(record, "dev_history", "bleu")
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=escape(f"{name} · dev BLEU"),
                                 line=dict(color=color, width=2.5), marker=dict(size=6, color=color),
                                 hovertemplate=f"{escape(name)}<br>%{{x:.0f}} min: BLEU %{{y:.2f}}<extra></extra>"))
        lx, ly = loss_points(record)
        if lx:
            any_loss = True
            fig.add_trace(go.Scatter(x=lx, y=ly, mode="lines", name=escape(f"{name} · train loss"), yaxis="y2",
                                     line=dict(color=color, width=1.5, dash="dot"),
                                     hovertemplate=f"{escape(name)}<br>%{{x:.0f}} min: loss %{{y:.3f}}<extra></extra>"))
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text=escape(title)),
        xaxis=dict(title=dict(text="training time (minutes)", font=dict(size=12, color=MUTED)), rangemode="tozero"),
        yaxis=dict(title=dict(text="dev BLEU", font=dict(size=12, color=MUTED)), rangemode="tozero"),
        height=380,
        margin=dict(l=10, r=10, t=80, b=10),
        showlegend=True,
    )
    if any_loss:
        fig.update_layout(yaxis2=dict(title=dict(text="training loss", font=dict(size=12, color=MUTED)),
                                      overlaying="y", side="right", rangemode="tozero", showgrid=False))
    return fig


def score_rows(records: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """A scores table: one row per score name, one BLEU / chrF column per model ("–" where absent)."""
    names = list(records)
    score_names: list[str] = []
    for record in records.values():
        for key in (record.get("scores") or {}):
            if key not in score_names:
                score_names.append(key)
    rows = []
    for key in score_names:
        row = [key]
        for name in names:
            s = (records[name].get("scores") or {}).get(key)
            row.append(_score(s))
        rows.append(row)
    return ["score", *names], rows


def _score(s: Any) -> str:
    if isinstance(s, Mapping) and isinstance(s.get("copied"), (int, float)):  # training.name_copy
        return f"{s['copied']:.1f} % of {s.get('entities', '?')} names/numbers copied"
    if not isinstance(s, Mapping) or not isinstance(s.get("bleu"), (int, float)):
        return "–"
    chrf = f" · chrF {s['chrf']:.2f}" if isinstance(s.get("chrf"), (int, float)) else ""
    return f"BLEU {s['bleu']:.2f}{chrf}"


def has_curves(records: Sequence[Mapping[str, Any]]) -> bool:
    return any(curve_points(r, "dev_history", "bleu")[0] or loss_points(r)[0] for r in records)
