"""Figures of one decoding ``Trace`` at a chosen step: what the app shows, built from the records only.

Nothing here runs the model; moving through the steps of a translation just re-slices the trace.
Steps are 0-based; ``head`` is a head index, None for the mean over heads, or "all" for the grid.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import plotly.graph_objects as go

from model.memory import human_bytes, kv_cross_bytes_formula, kv_self_bytes_formula

from .attention import attention_grid, attention_heatmap, cross_matrix, decoder_self_matrix, select_head
from .chips import pieces_html, stats_html
from .latency import LatencyRun, latency_chart
from .memory import kv_cache_chart
from .positional import sentence_encodings
from .probabilities import topk_bar

if TYPE_CHECKING:
    from model.config import ModelConfig
    from model.decoding import Trace

Head = int | None | Literal["all"]
AttentionKind = Literal["encoder", "decoder", "cross"]
BYTES_PER_VALUE = {"float32": 4, "float16": 2, "bfloat16": 2}


def clamp_step(trace: "Trace", step: int) -> int:
    return max(0, min(int(step), len(trace.steps) - 1))


def _head_name(head: Head) -> str:
    return "all heads" if head == "all" else "mean over heads" if head is None else f"head {head + 1}"


def _attention(weights: np.ndarray, queries: Sequence[str], keys: Sequence[str], title: str, head: Head,
               query_title: str, key_title: str, highlight_row: int | None) -> go.Figure:
    """weights (H, Q, K) of one layer -> the grid, one head, or the head mean."""
    if head == "all":
        return attention_grid(weights, queries, keys, title, highlight_row=highlight_row)
    return attention_heatmap(select_head(weights, head), queries, keys, title, query_title=query_title,
                             key_title=key_title, highlight_row=highlight_row)


def encoder_attention_figure(trace: "Trace", layer: int, head: Head) -> go.Figure:
    """Encoder self-attention of one layer, source x source."""
    title = f"Encoder self-attention · layer {layer + 1} · {_head_name(head)}"
    return _attention(trace.encoder_attn[layer], trace.source_pieces, trace.source_pieces, title, head,
                      "source piece (query)", "source piece (key)", None)


def decoder_attention_figure(trace: "Trace", step: int, layer: int, head: Head) -> go.Figure:
    """Decoder self-attention of one layer over the decoder inputs so far, up to ``step`` (highlighted)."""
    step = clamp_step(trace, step)
    weights = decoder_self_matrix([s.self_attn[layer : layer + 1] for s in trace.steps[: step + 1]])[0]  # (H, T, T)
    inputs = trace.target_pieces[: step + 1]
    title = f"Decoder self-attention · layer {layer + 1} · {_head_name(head)} · steps 1–{step + 1}"
    return _attention(weights, inputs, inputs, title, head, "decoder input (query)", "decoder input (key)", step)


def cross_attention_figure(trace: "Trace", step: int, layer: int, head: Head) -> go.Figure:
    """Cross-attention of one layer: each generated token (rows, up to ``step``) over the source pieces."""
    step = clamp_step(trace, step)
    weights = cross_matrix([s.cross_attn[layer : layer + 1] for s in trace.steps[: step + 1]])[0]  # (H, T, S)
    generated = [s.piece for s in trace.steps[: step + 1]]
    title = f"Cross-attention · layer {layer + 1} · {_head_name(head)} · steps 1–{step + 1}"
    return _attention(weights, generated, trace.source_pieces, title, head, "generated token", "source piece", step)


def attention_figure(trace: "Trace", kind: AttentionKind, step: int, layer: int, head: Head) -> go.Figure:
    if kind == "encoder":
        return encoder_attention_figure(trace, layer, head)
    if kind == "decoder":
        return decoder_attention_figure(trace, step, layer, head)
    if kind == "cross":
        return cross_attention_figure(trace, step, layer, head)
    raise ValueError(f"unknown attention kind {kind!r}")


def topk_figure(trace: "Trace", step: int) -> go.Figure:
    """The top-k candidates of ``step``, the token actually emitted highlighted (beam may pick a non-top one)."""
    rec = trace.steps[clamp_step(trace, step)]
    ids = [c.token_id for c in rec.top_k]
    chosen = ids.index(rec.token_id) if rec.token_id in ids else None
    title = f"Step {rec.step + 1}: next-token probabilities (top {len(ids)})"
    return topk_bar([c.piece for c in rec.top_k], [c.prob for c in rec.top_k], chosen, title)


def bytes_per_value(trace: "Trace") -> int:
    return BYTES_PER_VALUE.get(trace.dtype, 4)


def kv_formula(trace: "Trace", config: "ModelConfig") -> tuple[list[int], list[int]]:
    """Formula self/cross cache bytes after each step (T,): step t caches t+1 positions, for every beam."""
    b, beams, src = bytes_per_value(trace), trace.beam_size, len(trace.source_ids)
    f_self = [kv_self_bytes_formula(config, t + 1, b, beams) for t in range(len(trace.steps))]
    f_cross = [kv_cross_bytes_formula(config, src, b, beams)] * len(trace.steps)
    return f_self, f_cross


def kv_figure(trace: "Trace", config: "ModelConfig", step: int | None = None) -> go.Figure:
    f_self, f_cross = kv_formula(trace, config)
    beams = f", all {trace.beam_size} beams" if trace.beam_size > 1 else ""
    if trace.use_cache:
        title = "KV cache after each step: measured vs formula"
        subtitle = f"{trace.dtype}, {bytes_per_value(trace)} bytes per value{beams}"
    else:
        title = "KV cache off: nothing is stored"
        subtitle = "every step recomputes the whole prefix; the line shows what a cache would hold"
    return kv_cache_chart([s.kv_self_bytes for s in trace.steps], [s.kv_cross_bytes for s in trace.steps],
                          f_self, f_cross, current_step=step, title=title, subtitle=subtitle)


def run_label(trace: "Trace") -> str:
    search = "greedy" if trace.beam_size == 1 else f"beam {trace.beam_size}"
    return f"{search}, cache {'on' if trace.use_cache else 'off'}"


def latency_run(trace: "Trace") -> LatencyRun:
    return LatencyRun(run_label(trace), [s.latency_ms for s in trace.steps], trace.encode_ms)


def latency_figure(trace: "Trace", others: Sequence[LatencyRun] = (), step: int | None = None) -> go.Figure:
    """This trace's per-step latency, with earlier runs of the same sentence overlaid."""
    return latency_chart([latency_run(trace), *others], current_step=step)


def sentence_pe_figure(trace: "Trace", pe: np.ndarray) -> go.Figure:
    """The positional encodings added to the source pieces: pe (P, D) sliced to the sentence length."""
    return sentence_encodings(pe[: len(trace.source_pieces)], trace.source_pieces)


def step_html(trace: "Trace", step: int) -> str:
    """Facts of one step as cards, then the generated pieces with this step's token highlighted."""
    step = clamp_step(trace, step)
    rec = trace.steps[step]
    kv = (f"{human_bytes(rec.kv_self_bytes)} self + {human_bytes(rec.kv_cross_bytes)} cross"
          if trace.use_cache else "off (prefix recomputed)")
    stats = stats_html([
        ("step", f"{step + 1} / {len(trace.steps)}"),
        ("chosen token", rec.piece),
        ("probability", f"{rec.prob:.1%}"),
        ("step latency", f"{rec.latency_ms:.2f} ms"),
        ("KV cache", kv),
    ])
    generated = [s.piece for s in trace.steps]
    return stats + pieces_html(generated, "generated so far", current=step, done=step)


def translation_html(trace: "Trace") -> str:
    """Source and generated pieces as chips."""
    return (pieces_html(trace.source_pieces, "source pieces")
            + pieces_html([s.piece for s in trace.steps], "generated pieces"))
