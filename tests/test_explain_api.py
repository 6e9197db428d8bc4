"""The explanation endpoints as the page and an API client call them: a finished translation sent back,
checked before the model sees it, answered from the models and then from the cache."""
from __future__ import annotations

import gradio as gr
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
        explain.layernorm(app_context, TEXT, ids, None)


def test_unknown_model_and_empty_text_are_refused(app_context, finished):
    with pytest.raises(gr.Error, match="no model called"):
        explain.layernorm(app_context, TEXT, finished[1], "nope")
    with pytest.raises(gr.Error):
        explain.layernorm(app_context, "   ", finished[1], None)


def test_a_repeated_request_comes_from_the_cache(app_context, finished):
    first = explain.layernorm(app_context, TEXT, finished[1], None)
    runs = [m.runs for m in app_context.models]
    again = explain.layernorm(app_context, TEXT, finished[1], None)
    assert again == first and [m.runs for m in app_context.models] == runs  # a cache hit runs nothing


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
    data = client.predict(TEXT, finished[1], "", api_name="/layernorm")
    assert data["request"]["generated"] == [s.token_id for s in finished[0].steps]
    stats = decode_f32(data["models"][0]["stats"]["decoder"]["stats"])  # (T, L, K, stats)
    assert stats.shape[:3] == (len(finished[0].steps), 2, 3)
