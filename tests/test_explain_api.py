"""The explanation endpoints as the page and an API client call them: a finished translation sent back,
checked before the model sees it, answered from the models and then from the cache."""
from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client

from model.decoding import trace_translation
from model.explain.arrays import decode_f32
from ui import explain

TEXT = "le chat mange une pomme sur le canapé"


@pytest.fixture(scope="module")
def finished(app_context):
    """The default model's trace of TEXT and its generated ids as the page sends them ("12 7 3")."""
    ckpt = app_context.default.ckpt
    trace = trace_translation(ckpt.model, ckpt.tokenizer, TEXT)
    return trace, " ".join(str(s.token_id) for s in trace.steps)


@pytest.mark.parametrize("ids, reason", [
    ("", "at least one token id"),
    ("1 2 x", "whole numbers"),
    ("5 2 7", "is not a token the model can output"),  # 2 = <s>
    ("5 3 7", "can only end with"),
    ("99999", "is not a token the model can output"),
])
def test_bad_generated_ids_are_refused_with_a_reason(app_context, ids, reason):
    with pytest.raises(gr.Error, match=reason):
        explain.attribution(app_context, TEXT, ids, None)


@pytest.mark.parametrize("kind, layer, reason", [
    ("values", "1", "kind must be one of"), ("cross", "0", "layers 1–2"), ("encoder", "3", "layers 1–2"),
    ("cross", "two", "whole number"),
])
def test_bad_cell_requests_are_refused_with_a_reason(app_context, finished, kind, layer, reason):
    with pytest.raises(gr.Error, match=reason):
        explain.attention_cell(app_context, TEXT, finished[1], kind, layer, None)


def test_unknown_model_and_empty_text_are_refused(app_context, finished):
    with pytest.raises(gr.Error, match="no model called"):
        explain.layernorm(app_context, TEXT, finished[1], "nope")
    with pytest.raises(gr.Error):
        explain.layernorm(app_context, "   ", finished[1], None)


def test_cell_answer_matches_the_trace_and_comes_from_the_cache_the_second_time(app_context, finished):
    trace, ids = finished
    first = explain.attention_cell(app_context, TEXT, ids, "decoder", "2", None)  # the page's name for decoder_self
    assert first["request"] == {"model": app_context.default.name, "text": TEXT,
                                "generated": [s.token_id for s in trace.steps], "kind": "decoder_self", "layer": 2}
    weights = decode_f32(first["weights"])  # (H, T, T)
    steps = len(trace.steps)
    expected = np.zeros_like(weights)  # (H, T, T): step t's query sees <s> and t tokens, the rest is masked
    for t, s in enumerate(trace.steps):
        expected[:, t, : t + 1] = s.self_attn[1]  # (H, t+1)
    assert weights.shape[1:] == (steps, steps)
    np.testing.assert_allclose(weights, expected, atol=1e-5)
    runs = app_context.default.runs
    again = explain.attention_cell(app_context, TEXT, ids, "decoder_self", 2, None)
    assert again == first and app_context.default.runs == runs  # a cache hit runs nothing


def test_layernorm_answers_for_every_loaded_model_each_with_its_own_norm(app_context, finished):
    data = explain.layernorm(app_context, TEXT, finished[1], None)
    models = data["models"]
    assert [m["model"] for m in models] == app_context.names
    assert [m["norm"] for m in models] == ["post", "pre"]
    assert models[0]["generated"] == [s.token_id for s in finished[0].steps]
    other = app_context.models[1].ckpt
    assert models[1]["translation"] == trace_translation(other.model, other.tokenizer, TEXT).translation
    assert models[1]["target_pieces"][0] == "<s>" and len(models[1]["target_pieces"]) == len(models[1]["generated"]) + 1


def test_endpoints_are_public_api_calls(served_app, finished):
    client = Client(served_app.local_url, verbose=False)
    data = client.predict(TEXT, finished[1], "cross", "1", "", api_name="/attention_cell")
    assert data["request"]["kind"] == "cross" and decode_f32(data["q"]).shape[0] == 4  # (H, T, Dh), 4 heads
    share = client.predict(TEXT, finished[1], "", api_name="/attribution")["source_share"]
    assert len(share["integrated_gradients"]) == len(finished[0].steps)
