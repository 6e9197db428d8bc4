"""The figures show exactly the data they are given, labelled with the real pieces, and escape user text."""
from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
import pytest

import viz
from model.decoding import trace_translation
from model.positional import sinusoidal_encoding
from viz import trace as views
from viz.chips import pieces_html, stats_html
from viz.style import piece_label

PIECES = ["▁Le", "▁chat", "'", "▁la", "'", "</s>"]  # repeated pieces must stay apart
EVIL = ["<s>", "<script>alert(1)</script>", "<b>x</b>", "</s>"]


def labels(values) -> list[str]:
    return [piece_label(v) for v in values]


def random_attention(rng: np.random.Generator, *shape: int) -> np.ndarray:
    w = rng.random(shape).astype(np.float32)
    return w / w.sum(-1, keepdims=True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def trace(tiny_model, tiny_tokenizer):
    return trace_translation(tiny_model, tiny_tokenizer, "le chat mange une pomme sur le canapé", max_len=8)


# --- attention -------------------------------------------------------------------------------------------
def test_heatmap_labels_values_and_duplicates(rng):
    w = random_attention(rng, 4, len(PIECES))
    queries = PIECES[:4]
    fig = viz.attention_heatmap(w, queries, PIECES, "t")
    assert isinstance(fig, go.Figure)
    (trace,) = fig.data
    assert trace.type == "heatmap"
    np.testing.assert_allclose(np.asarray(trace.z), w)
    assert labels(trace.x) == PIECES and labels(trace.y) == queries
    assert len(set(trace.x)) == len(PIECES)  # the two "'" keys are distinct columns
    assert list(fig.layout.xaxis.categoryarray) == list(trace.x)
    assert fig.layout.xaxis.type == "category" and fig.layout.yaxis.type == "category"
    assert "→" in trace.hovertemplate and "%{z" in trace.hovertemplate


def test_heatmap_rejects_mismatched_labels(rng):
    with pytest.raises(ValueError):
        viz.attention_heatmap(random_attention(rng, 3, 3), ["a", "b"], ["a", "b", "c"], "t")


def test_heatmap_highlights_current_row(rng):
    fig = viz.attention_heatmap(random_attention(rng, 3, 5), ["a", "b", "c"], list("vwxyz"), "t", highlight_row=2)
    (shape,) = fig.layout.shapes
    assert (shape.y0, shape.y1) == (1.5, 2.5) and (shape.x0, shape.x1) == (-0.5, 4.5)


def test_grid_has_one_heatmap_per_head(rng):
    w = random_attention(rng, 4, len(PIECES), len(PIECES))
    fig = viz.attention_grid(w, PIECES, PIECES, "layer 1")
    assert len(fig.data) == 4 and all(t.type == "heatmap" for t in fig.data)
    for h, t in enumerate(fig.data):
        np.testing.assert_allclose(np.asarray(t.z), w[h])
        assert labels(t.x) == PIECES
        assert t.coloraxis == "coloraxis"  # one shared colour scale
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["head 1", "head 2", "head 3", "head 4"]


def test_decoder_self_matrix_is_lower_triangular(rng):
    steps = [random_attention(rng, 2, 3, t + 1) for t in range(4)]  # (L, H, t+1)
    m = viz.decoder_self_matrix(steps)
    assert m.shape == (2, 3, 4, 4)
    for t, w in enumerate(steps):
        np.testing.assert_allclose(m[:, :, t, : t + 1], w)
        assert np.isnan(m[:, :, t, t + 1 :]).all()
    with pytest.raises(ValueError):
        viz.decoder_self_matrix([random_attention(rng, 2, 3, 2)])


def test_cross_matrix_and_head_mean(rng):
    steps = [random_attention(rng, 2, 3, 5) for _ in range(4)]  # (L, H, S)
    m = viz.cross_matrix(steps)
    assert m.shape == (2, 3, 4, 5)
    np.testing.assert_allclose(m[1, 2, 3], steps[3][1, 2])
    np.testing.assert_allclose(viz.select_head(m[0], None), m[0].mean(0))
    np.testing.assert_allclose(viz.select_head(m[0], 1), m[0, 1])


def test_pieces_are_escaped_in_figures(rng):
    fig = viz.attention_heatmap(random_attention(rng, 4, 4), EVIL, EVIL, "<script>title</script>")
    t = fig.data[0]
    assert all("<" not in v and ">" not in v for v in list(t.x) + list(t.y))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in t.x[1]
    assert labels(t.x) == EVIL  # still reads as the pieces once plotly decodes the entities
    assert "<script>" not in fig.layout.title.text
    grid = viz.attention_grid(random_attention(rng, 2, 4, 4), EVIL, EVIL, "g")
    assert all("<script>" not in v for t in grid.data for v in t.x)


# --- probabilities ---------------------------------------------------------------------------------------
def test_topk_bar_values_and_highlight():
    pieces, probs = ["▁the", "▁a", "<script>", "▁an"], [0.5, 0.2, 0.1, 0.05]
    fig = viz.topk_bar(pieces, probs, chosen=1, title="step 1")
    (bar,) = fig.data
    assert bar.type == "bar" and bar.orientation == "h"
    np.testing.assert_allclose(np.asarray(bar.x, dtype=float), probs)
    assert labels(bar.y) == pieces and "&lt;script&gt;" in bar.y[2]
    colors = list(bar.marker.color)
    assert colors[1] != colors[0] and len(set(colors[:1] + colors[2:])) == 1


# --- positional encodings --------------------------------------------------------------------------------
def test_positional_figures_show_the_encodings():
    pe = sinusoidal_encoding(50, 16).numpy()
    heat = viz.encoding_heatmap(pe)
    np.testing.assert_allclose(np.asarray(heat.data[0].z), pe, atol=1e-6)
    curves = viz.encoding_curves(pe, [0, 1, 6])
    assert len(curves.data) == 3
    np.testing.assert_allclose(np.asarray(curves.data[2].y), pe[:, 6], atol=1e-6)
    sim = viz.similarity_heatmap(pe)
    np.testing.assert_allclose(np.asarray(sim.data[0].z), pe @ pe.T, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError):
        viz.encoding_curves(pe, [16])


def test_sentence_encodings_rows_are_the_pieces():
    pe = sinusoidal_encoding(64, 32).numpy()
    fig = viz.sentence_encodings(pe[: len(PIECES)], PIECES)
    np.testing.assert_allclose(np.asarray(fig.data[0].z), sinusoidal_encoding(len(PIECES), 32).numpy(), atol=1e-6)
    assert labels(fig.data[0].y) == PIECES


def test_default_dims_are_valid_pairs():
    for d in (16, 32, 256, 512):
        dims = viz.default_dims(d)
        assert 3 <= len(dims) <= 5 and all(0 <= x < d for x in dims) and dims == sorted(set(dims))


# --- latency and memory ----------------------------------------------------------------------------------
def test_latency_chart_overlays_runs():
    on = viz.LatencyRun("cache on", [1.0, 1.1, 1.2], encode_ms=0.5)
    off = viz.LatencyRun("cache off", [1.0, 2.0, 3.0], encode_ms=0.5)
    fig = viz.latency_chart([on, off], current_step=1)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert len(lines) == 2
    np.testing.assert_allclose(np.asarray(lines[1].y, dtype=float), off.step_ms)
    assert list(lines[0].x) == [1, 2, 3]
    assert "3.8 ms" in fig.layout.title.text  # total of the browsed run: 0.5 + 3.3


def test_kv_chart_and_weights_chart():
    fig = viz.kv_cache_chart([100, 200], [1000, 1000], [100, 200], [1000, 1000], current_step=0)
    bars = [t for t in fig.data if t.type == "bar"]
    line = [t for t in fig.data if t.type == "scatter"][0]
    assert len(bars) == 2
    np.testing.assert_allclose(np.asarray(line.y, dtype=float) * 1024, [1100, 1200])  # plotted in KiB
    w = viz.weights_chart({"fp32": 4000, "fp16": 2000, "int8": 1000}, current="fp32")
    assert list(w.data[0].x) == ["fp32", "fp16", "int8"]
    np.testing.assert_allclose(np.asarray(w.data[0].y, dtype=float) * 1024, [4000, 2000, 1000])


# --- figures of a real trace -----------------------------------------------------------------------------
def test_trace_views_follow_the_step(trace, tiny_model):
    n = len(trace.steps)
    assert n >= 2
    step = n - 2
    self_fig = views.decoder_attention_figure(trace, step, layer=1, head=None)
    assert labels(self_fig.data[0].y) == trace.target_pieces[: step + 1]
    expected = trace.steps[step].self_attn[1].mean(axis=0)  # layer 1, mean over heads: (step + 1,)
    np.testing.assert_allclose(np.asarray(self_fig.data[0].z)[step, : step + 1], expected, rtol=1e-5)
    cross_fig = views.cross_attention_figure(trace, step, layer=0, head=2)
    assert labels(cross_fig.data[0].x) == trace.source_pieces
    np.testing.assert_allclose(np.asarray(cross_fig.data[0].z)[step], trace.steps[step].cross_attn[0, 2], rtol=1e-6)
    assert cross_fig.layout.shapes[0].y0 == step - 0.5
    enc = views.attention_figure(trace, "encoder", step, layer=0, head="all")
    assert len(enc.data) == tiny_model.config.n_heads
    topk = views.topk_figure(trace, step)
    np.testing.assert_allclose(np.asarray(topk.data[0].x, dtype=float), [c.prob for c in trace.steps[step].top_k])


def test_kv_formula_matches_the_measured_cache(trace, tiny_model):
    f_self, f_cross = views.kv_formula(trace, tiny_model.config)
    assert f_self == [s.kv_self_bytes for s in trace.steps]
    assert f_cross == [s.kv_cross_bytes for s in trace.steps]


def test_html_fragments_escape_pieces():
    out = pieces_html(EVIL, "source", current=1)
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert out.count('<span class="rg-chip') == len(EVIL) and "rg-current" in out
    assert "<b>x" not in stats_html([("chosen token", "<b>x</b>")])
    assert html.escape("▁") in pieces_html(["▁the"], "t")


# --- the trace's JSON form and training curves --------------------------------------------------------------
def test_trace_json_round_trips_every_attention_array(trace, tiny_model):
    from viz.trace_json import check_trace_json, cross_attention, decode_array, decoder_self_attention, trace_to_json

    data = trace_to_json(trace, tiny_model.config)
    check_trace_json(data)
    np.testing.assert_allclose(decode_array(data["attention"]["encoder"]), trace.encoder_attn, atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(decode_array(data["attention"]["cross"]), cross_attention(trace), atol=0.5 / 255 + 1e-6)
    floats = trace_to_json(trace, arrays="float")
    np.testing.assert_allclose(decode_array(floats["attention"]["decoder"]), decoder_self_attention(trace), atol=1e-5)
    t = len(trace.steps)
    assert np.all(np.triu(decode_array(floats["attention"]["decoder"])[0, 0], k=1) == 0)  # nothing attends ahead
    assert len(data["kv_formula"]["self"]) == t and data["stopped"] == ("eos" if trace.steps[-1].piece == "</s>" else "max_len")
    for step in data["steps"]:
        assert step["entropy_bits"] >= 0 and 0 <= step["rest_prob"] <= 1
    import json
    assert len(json.dumps(data)) < len(json.dumps(floats))  # the quantised form is the compact one


def test_trace_json_check_catches_a_wrong_shape(trace):
    from viz.trace_json import check_trace_json, encode_array, trace_to_json

    data = trace_to_json(trace)
    data["attention"]["cross"] = encode_array(np.zeros((1, 1, 1, 1)))
    with pytest.raises(ValueError, match="cross attention has shape"):
        check_trace_json(data)


def test_training_curves_draw_bleu_and_loss_per_model():
    from viz.curves import has_curves, score_rows, training_curves

    a = {"dev_history": [{"minutes": 15, "bleu": 10.0}, {"minutes": 30, "bleu": 20.0}],
         "train_history": [{"minutes": 1, "loss": 6.0}, {"minutes": 30, "loss": 3.0}], "scores": {"t": {"bleu": 5.0}}}
    b = {"dev_history": [{"minutes": 15, "bleu": 12.0}, {"minutes": "bad", "bleu": 1}]}
    fig = training_curves({"post": a, "<pre>": b})
    names = [t.name for t in fig.data]
    assert names == ["post · dev BLEU", "post · train loss", "&lt;pre&gt; · dev BLEU"]
    assert list(fig.data[0].y) == [10.0, 20.0] and list(fig.data[2].x) == [15.0]  # the malformed point is skipped
    assert fig.layout.yaxis2.overlaying == "y"
    assert score_rows({"post": a, "pre": b}) == (["score", "post", "pre"], [["t", "BLEU 5.00", "–"]])
    assert has_curves([a]) and not has_curves([{}])
    copy = {"scores": {"name_copy": {"copied": 92.5, "entities": 400}}}
    assert score_rows({"m": copy})[1] == [["name_copy", "92.5 % of 400 names/numbers copied"]]
