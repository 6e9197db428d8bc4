"""The trace's JSON form round-trips, and the plotly figures show exactly the data they are given and escape user text."""
from __future__ import annotations

import json

import numpy as np
import pytest

from model.decoding import trace_translation
from model.positional import sinusoidal_encoding
from viz.curves import has_curves, score_rows, training_curves
from viz.positional import default_dims, encoding_curves, encoding_heatmap, similarity_heatmap
from model.trace_json import (check_trace_json, cross_attention, decode_array, decoder_self_attention, encode_array,
                            trace_to_json)


@pytest.fixture(scope="module")
def trace(tiny_model, tiny_tokenizer):
    return trace_translation(tiny_model, tiny_tokenizer, "le chat mange une pomme sur le canapé", max_len=8)


def test_positional_figures_show_the_encodings():
    pe = sinusoidal_encoding(50, 16).numpy()
    heat = encoding_heatmap(pe)
    np.testing.assert_allclose(np.asarray(heat.data[0].z), pe, atol=1e-6)
    curves = encoding_curves(pe, [0, 1, 6])
    assert len(curves.data) == 3
    np.testing.assert_allclose(np.asarray(curves.data[2].y), pe[:, 6], atol=1e-6)
    sim = similarity_heatmap(pe)
    np.testing.assert_allclose(np.asarray(sim.data[0].z), pe @ pe.T, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError):
        encoding_curves(pe, [16])


def test_default_dims_are_valid_pairs():
    for d in (16, 32, 256, 512):
        dims = default_dims(d)
        assert 3 <= len(dims) <= 5 and all(0 <= x < d for x in dims) and dims == sorted(set(dims))


def test_trace_json_round_trips_every_attention_array(trace, tiny_model):
    data = trace_to_json(trace, tiny_model.config)
    check_trace_json(data)
    np.testing.assert_allclose(decode_array(data["attention"]["encoder"]), trace.encoder_attn, atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(decode_array(data["attention"]["cross"]), cross_attention(trace), atol=0.5 / 255 + 1e-6)
    floats = trace_to_json(trace, arrays="float")
    np.testing.assert_allclose(decode_array(floats["attention"]["decoder"]), decoder_self_attention(trace), atol=1e-5)
    t = len(trace.steps)
    assert np.all(np.triu(decode_array(floats["attention"]["decoder"])[0, 0], k=1) == 0)  # nothing attends ahead
    # the formula's bytes after each step equal the cache the decoder measured
    assert data["kv_formula"]["self"] == [s.kv_self_bytes for s in trace.steps]
    assert data["kv_formula"]["cross"] == [s.kv_cross_bytes for s in trace.steps]
    assert len(data["kv_formula"]["self"]) == t and data["stopped"] == ("eos" if trace.steps[-1].piece == "</s>" else "max_len")
    for step in data["steps"]:
        assert step["entropy_bits"] >= 0 and 0 <= step["rest_prob"] <= 1
    assert len(json.dumps(data)) < len(json.dumps(floats))  # the quantised form is the compact one


def test_trace_json_check_catches_a_wrong_shape(trace):
    data = trace_to_json(trace)
    data["attention"]["cross"] = encode_array(np.zeros((1, 1, 1, 1)))
    with pytest.raises(ValueError, match="cross attention has shape"):
        check_trace_json(data)


def test_training_curves_draw_bleu_and_loss_per_model():
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
