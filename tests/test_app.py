"""The app served for real on a free port, driven through gradio_client like any API user would."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from tests

from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from model.checkpoint import load_checkpoint  # noqa: E402
from model.decoding import MAX_SOURCE_CHARS, InputError, trace_translation  # noqa: E402

EXAMPLE = "Je mange une pomme."
GREEDY = dict(decoding=app.GREEDY, beam_size=4, length_penalty=1.0, max_len=0, use_cache=True)


@pytest.fixture(scope="module")
def client(served_app) -> Client:
    return Client(served_app.local_url, verbose=False)


def translate(client: Client, text: str, **overrides):
    return client.predict(text=text, **{**GREEDY, **overrides}, api_name="/translate")


def test_translate_returns_translation_and_step_records(client, tiny_checkpoint):
    translation, record, pieces_html = translate(client, EXAMPLE)
    ckpt = load_checkpoint(tiny_checkpoint)
    expected = trace_translation(ckpt.model, ckpt.tokenizer, EXAMPLE)  # greedy is deterministic
    assert translation == expected.translation == record["translation"]
    assert [s["piece"] for s in record["steps"]] == [s.piece for s in expected.steps]
    assert record["source_pieces"] == expected.source_pieces
    for i, step in enumerate(record["steps"]):
        assert step["step"] == i + 1
        assert 0.0 < step["prob"] <= 1.0 and step["latency_ms"] > 0
        assert step["kv_self_bytes"] > 0 and step["kv_cross_bytes"] > 0
        assert len(step["top_k"]) == 10
    assert "rg-chip" in pieces_html


def test_beam_and_cache_off_runs(client):
    _, beam, _ = translate(client, EXAMPLE, decoding=app.BEAM, beam_size=3, max_len=6)
    assert beam["beam_size"] == 3 and 1 <= len(beam["steps"]) <= 7
    _, off, _ = translate(client, EXAMPLE, use_cache=False, max_len=5)
    assert off["use_cache"] is False
    assert all(s["kv_self_bytes"] == 0 and s["kv_cross_bytes"] == 0 for s in off["steps"])


# tiny test model: 64 positions, so ~70 short words are too many tokens while staying under the char cap
TOO_MANY_TOKENS = " ".join(["le chat mange une pomme sur le canapé"] * 9)

BAD_INPUTS = [
    ("", {}, "empty"),
    ("   \n\t ", {}, "empty"),
    ("a" * (MAX_SOURCE_CHARS + 1), {}, f"limit is {MAX_SOURCE_CHARS}"),
    (TOO_MANY_TOKENS, {}, "tokens long"),
    (EXAMPLE, dict(decoding=app.BEAM, beam_size=4, use_cache=False), "KV cache"),
    # out-of-range controls are refused by Gradio's own component checks, before our function runs
    (EXAMPLE, dict(decoding=app.BEAM, beam_size=9), "greater than maximum value 8"),
    (EXAMPLE, dict(max_len=999), "greater than maximum value"),
    (EXAMPLE, dict(decoding="sampling"), "not in the list of choices"),
]


@pytest.mark.parametrize("text,settings,reason", BAD_INPUTS, ids=[
    "empty", "whitespace", "too-long", "too-many-tokens", "beam-without-cache", "beam-too-wide", "max-len", "mode"])
def test_bad_input_is_a_readable_error_and_the_app_keeps_serving(client, text, settings, reason):
    assert len(TOO_MANY_TOKENS) < MAX_SOURCE_CHARS
    with pytest.raises(AppError, match=reason) as info:
        translate(client, text, **settings)
    assert "Traceback" not in str(info.value)
    translation, record, _ = translate(client, EXAMPLE)
    assert record["steps"] and translation == record["translation"]


def test_only_translate_is_public(client):
    assert list(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ["/translate"]


# --- pieces without a server -------------------------------------------------------------------------------
def test_parse_settings():
    s = app.parse_settings(app.BEAM, 4.0, 1.2, 30, True, max_positions=64)
    assert (s.beam_size, s.length_penalty, s.max_len, s.use_cache) == (4, 1.2, 30, True)
    assert app.parse_settings(app.GREEDY, 8, 1.0, 0, False, 64).beam_size == 1  # greedy ignores the slider
    assert app.parse_settings(app.GREEDY, 1, 1.0, 0, True, 64).max_len is None  # 0 means automatic
    for bad in [(app.BEAM, 0, 1.0, 0, True), (app.GREEDY, 1, -1.0, 0, True), (app.GREEDY, 1, 1.0, 64, True),
                (app.BEAM, "x", 1.0, 0, True), ("sampling", 1, 1.0, 0, True)]:
        with pytest.raises(InputError):
            app.parse_settings(*bad, max_positions=64)


def test_parse_head_and_layer():
    assert app.parse_head(app.MEAN, 4) is None
    assert app.parse_head(app.GRID, 4) == "all"
    assert app.parse_head("head 3", 4) == 2
    with pytest.raises(ValueError):
        app.parse_head("head 5", 4)
    assert app.parse_layer("2", 4) == 1 and app.parse_layer(9, 4) == 3


def test_model_facts_are_escaped(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    ckpt.training = {**ckpt.training, "note": "<script>x</script>", "scores": {"test_bleu": 12.5}}
    out = app.model_facts_html(ckpt)
    assert "&lt;script&gt;" in out and "<script>" not in out
    assert "test_bleu" in out and "12.5" in out
    assert "MODEL_CARD.md" in app.model_card(ckpt)  # none next to the test checkpoint


def test_main_explains_a_missing_checkpoint(tmp_path, capsys):
    missing = tmp_path / "nope.safetensors"
    assert app.main(["--checkpoint", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "train.py" in err and "Traceback" not in err


def test_main_explains_a_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert app.main(["--checkpoint", str(bad)]) == 2
    assert "cannot start" in capsys.readouterr().err
