"""The app served for real on a free port, driven through gradio_client like any API user would,
plus its handlers called directly (they are plain functions over an explicit context)."""
from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from tests

from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from conftest import raw_queue_call  # noqa: E402
from model.checkpoint import load_checkpoint  # noqa: E402
from model.decoding import MAX_SOURCE_CHARS, InputError, trace_translation  # noqa: E402
from model.limits import MAX_REQUEST_CHARS  # noqa: E402
from ui import handlers, inputs, server  # noqa: E402
from ui.texts import model_tables_html  # noqa: E402
from model.trace_json import check_trace_json, decode_array  # noqa: E402

EXAMPLE = "Je mange une pomme."
GREEDY = dict(decoding=inputs.GREEDY, beam_size=4, length_penalty=1.0, max_len=0, use_cache=True, model="tiny")


@pytest.fixture(scope="module")
def client(served_app) -> Client:
    return Client(served_app.local_url, verbose=False)


def translate(client: Client, text, **overrides):
    return client.predict(text=text, **{**GREEDY, **overrides}, api_name="/translate")


def test_translate_returns_translation_and_trace(client, tiny_checkpoint):
    translation, trace = translate(client, EXAMPLE)
    ckpt = load_checkpoint(tiny_checkpoint)
    expected = trace_translation(ckpt.model, ckpt.tokenizer, EXAMPLE)  # greedy is deterministic
    assert translation == expected.translation == trace["translation"]
    check_trace_json(trace)
    assert [s["piece"] for s in trace["steps"]] == [s.piece for s in expected.steps]
    assert [s["step"] for s in trace["steps"]] == list(range(len(expected.steps)))  # 0-based, like the library
    cross = decode_array(trace["attention"]["cross"])
    assert abs(float(cross[0, 0, 0].sum()) - 1.0) < 0.05  # a row of attention sums to one (after quantising)
    for step in trace["steps"]:
        assert 0.0 < step["prob"] <= 1.0 and step["latency_ms"] > 0 and len(step["top_k"]) == 10
        assert abs(sum(c["prob"] for c in step["top_k"]) + step["rest_prob"] - 1.0) < 1e-3
    assert trace["model"] == "tiny" and trace["warm"] is True  # warmed at start-up


def test_second_model_is_served(client):
    _, a = translate(client, EXAMPLE)
    _, b = translate(client, EXAMPLE, model="tiny-pre")
    assert b["model"] == "tiny-pre" and a["steps"] != b["steps"]


def test_beam_and_cache_off_runs(client):
    _, beam = translate(client, EXAMPLE, decoding=inputs.BEAM, beam_size=3, max_len=6)
    assert beam["beam_size"] == 3 and 1 <= len(beam["steps"]) <= 6
    _, off = translate(client, EXAMPLE, use_cache=False, max_len=5)
    assert off["use_cache"] is False and off["stopped"] in ("eos", "max_len")
    assert all(s["kv_self_bytes"] == 0 and s["kv_cross_bytes"] == 0 for s in off["steps"])


def test_max_len_stop_is_reported(client):
    _, trace = translate(client, "le chat mange une pomme sur le canapé", max_len=2)
    assert len(trace["steps"]) == 2 and trace["stopped"] == "max_len"


# tiny test model: 64 positions, so ~70 short words are too many tokens while staying under the char cap
TOO_MANY_TOKENS = " ".join(["le chat mange une pomme sur le canapé"] * 9)

BAD_INPUTS = [
    ("", {}, "empty"),
    ("   \n\t ", {}, "empty"),
    ("a" * (MAX_REQUEST_CHARS + 1), {}, f"limit is {MAX_REQUEST_CHARS}"),
    (EXAMPLE, dict(decoding=inputs.BEAM, beam_size=4, use_cache=False), "KV cache"),
    (EXAMPLE, dict(decoding=inputs.BEAM, beam_size=9), "between 1 and 8"),
    (EXAMPLE, dict(decoding=inputs.BEAM, beam_size="four"), "beam size must be a number"),
    (EXAMPLE, dict(max_len="lots"), "maximum length must be a number"),
    (EXAMPLE, dict(max_len=999), "between 0 and 63"),
    (EXAMPLE, dict(length_penalty="nan"), "finite number"),
    (EXAMPLE, dict(decoding="sampling"), "not in the list of choices"),
    (EXAMPLE, dict(model="../../etc/passwd"), "not in the list of choices"),
    (EXAMPLE, dict(use_cache="yes"), "true or false"),
]


@pytest.mark.parametrize("text,settings,reason", BAD_INPUTS, ids=[
    "empty", "whitespace", "too-long", "beam-without-cache", "beam-too-wide",
    "beam-not-number", "max-not-number", "max-too-big", "penalty-nan", "mode", "unknown-model", "cache-not-bool"])
def test_bad_input_is_a_readable_error_and_the_app_keeps_serving(client, text, settings, reason):
    assert len(TOO_MANY_TOKENS) < MAX_SOURCE_CHARS
    with pytest.raises(AppError, match=reason) as info:
        translate(client, text, **settings)
    assert "Traceback" not in str(info.value)
    translation, trace = translate(client, EXAMPLE)
    assert trace["steps"] and translation == trace["translation"]


def test_text_longer_than_the_model_reads_is_translated_in_pieces(client, app_context):
    """Too many tokens (under the character cap) or too many characters: cut like a CLI line, nothing dropped."""
    from model.limits import split_to_fit

    tokenizer, positions = app_context.default.ckpt.tokenizer, app_context.default.ckpt.config.max_positions
    long_text = " ".join(["Le chat mange une pomme.", "Il fait très beau.", "Nous allons à la plage."] * 70)
    assert len(TOO_MANY_TOKENS) < MAX_SOURCE_CHARS < len(long_text) < MAX_REQUEST_CHARS
    for text in (TOO_MANY_TOKENS, long_text):
        english, trace = translate(client, text)
        pieces = split_to_fit(tokenizer, text, positions)
        assert len(pieces) > 1 and [p["source"] for p in trace["pieces"]] == pieces
        assert " ".join(pieces) == " ".join(text.split())  # every word kept, in order
        assert english == " ".join(p["translation"] for p in trace["pieces"])
        assert trace["input_text"] == text and trace["source_text"] == pieces[0]


def raw_predict(base: str, data: list) -> dict:
    """One /translate call through the queue with hand-written JSON (ASCII escapes, as any client may send)."""
    return raw_queue_call(base, "translate", data)


def test_lone_surrogate_is_refused_with_text(served_app):
    # 7 values, as clients from before the weights input send: the missing weights default to fp32
    output = raw_predict(served_app.local_url, ["le chat \ud800 mange", "Greedy", 4, 1.0, 0, True, "tiny"])
    assert "lone UTF-16 surrogate" in output["error"]


def test_extra_data_item_is_refused_with_text(served_app):
    c = Client(served_app.local_url, verbose=False)
    with pytest.raises(AppError, match="takes 8 values, got 9"):
        c.predict(EXAMPLE, inputs.GREEDY, 4, 1.0, 0, True, "tiny", "fp32", "extra", api_name="/translate")


def test_unknown_input_is_translated_with_a_visible_warning(client):
    _, trace = translate(client, "😀😀😀")
    assert trace["warnings"] and "unknown" in trace["warnings"][0]
    _, ok = translate(client, EXAMPLE)
    assert ok["warnings"] == []
    # the command line's rule, counted in characters: 4 of the 6 are unknown here ...
    _, mostly = translate(client, "你好世界 le")
    assert mostly["warnings"] and mostly["warnings"][0].startswith("67% of the characters are unknown")
    # ... and one emoji is 1 character of 7, though its 4 byte pieces are most of the sentence's pieces
    _, one = translate(client, "le chat 😀")
    assert one["warnings"] == []


def test_page_plumbing_is_not_public(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert "/translate" in endpoints
    private = {"/translate_example", "/open_url", "/start_up", "/header_for", "/compare_models", "/compare_cache",
               "/figures", "/lambda"}
    assert not private & set(endpoints)


# --- the server itself --------------------------------------------------------------------------------------
def fetch(url: str, data: bytes | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_side_doors_are_closed_and_pages_carry_security_headers(served_app):
    base = served_app.local_url
    status, headers, _ = fetch(base)
    assert status == 200 and headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    body = json.dumps({"data": [EXAMPLE, "Greedy", 4, 1, 0, True, "tiny"]}).encode()
    for path in ("gradio_api/run/translate", "gradio_api/upload", "monitoring", "monitoring/summary"):
        assert fetch(base + path, body)[0] == 404, path
    assert fetch(base + "gradio_api/queue/join", b"x" * (server.MAX_BODY_BYTES + 1))[0] == 413
    _, _, config = fetch(base + "config")
    assert b"/tmp" not in config and b"/work" not in config and str(os.getcwd()).encode() not in config


def test_short_load_has_no_errors_and_respects_the_concurrency_bound(served_app, app_context, monkeypatch):
    """5 clients x 5 requests, mixed sentences and settings, all through the queue.

    The bound counts model calls: greedy requests that wait together are decoded as one micro-batch
    (``ui.batcher``), which is one call, so at most ``ctx.concurrency`` of them run at once however many
    requests each batch holds. Measured apart from the gate, on the model itself (every call encodes
    once): a handler that bypassed the gate would run more encoders at once than the bound."""
    sentences = ["le chat dort", "il fait très beau", "nous allons à la plage demain", "un chien mange une pomme",
                 "la maison sur le canapé"]
    model, lock, live = app_context.default.ckpt.model, threading.Lock(), {"now": 0, "peak": 0, "calls": 0}
    encode = model.encode

    def counted(*args, **kwargs):
        with lock:
            live["now"] += 1
            live["calls"] += 1
            live["peak"] = max(live["peak"], live["now"])
        try:
            time.sleep(0.02)  # widen each call: overlapping calls, if any ran unbounded, would show
            return encode(*args, **kwargs)
        finally:
            with lock:
                live["now"] -= 1

    monkeypatch.setattr(model, "encode", counted)
    app_context.in_flight.peak = 0
    errors: list[Exception] = []

    def client_run(i: int) -> None:
        c = Client(served_app.local_url, verbose=False)
        for j in range(5):
            try:
                settings = dict(decoding=inputs.BEAM, beam_size=2) if (i + j) % 3 == 0 else {}
                out = translate(c, sentences[(i + j) % 5] + " " * i, **settings)
                assert out[1]["steps"]
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    with ThreadPoolExecutor(5) as pool:
        list(pool.map(client_run, range(5)))
    assert errors == []
    assert live["calls"] >= 1 and 1 <= live["peak"] <= app_context.concurrency
    assert app_context.in_flight.peak >= live["peak"]  # every call the model saw was counted by the gate


# --- pieces without a server ----------------------------------------------------------------------------------
def test_parse_settings():
    s = inputs.parse_settings(inputs.BEAM, 4.0, 1.2, 30, True, max_positions=64)
    assert (s.beam_size, s.length_penalty, s.max_len, s.use_cache) == (4, 1.2, 30, True)
    assert inputs.parse_settings(inputs.GREEDY, 8, 1.0, 0, False, 64).beam_size == 1  # greedy ignores the slider
    assert inputs.parse_settings(inputs.GREEDY, 1, 1.0, 0, True, 64).max_len is None  # 0 means automatic
    for bad in [(inputs.BEAM, 0, 1.0, 0, True), (inputs.GREEDY, 1, -1.0, 0, True), (inputs.GREEDY, 1, 1.0, 64, True),
                (inputs.BEAM, "x", 1.0, 0, True), ("sampling", 1, 1.0, 0, True), (inputs.GREEDY, 1, float("nan"), 0, True)]:
        with pytest.raises(InputError):
            inputs.parse_settings(*bad, max_positions=64)


def test_handlers_without_a_server(app_context):
    import gradio as gr

    text, translation, trace = handlers.translate_example(app_context, 1, inputs.GREEDY, 1, 1.0, 0, True, "tiny")
    assert text == "Je mange une pomme." and trace["translation"] == translation
    for bad in (99, -1, 1.5, "2", None):
        with pytest.raises(gr.Error, match="example"):
            handlers.example_text(bad)
    values = handlers.url_settings(app_context, "#s=le%20chat&beam=3&lp=0.5&max=7&cache=1&model=tiny-pre&step=2")
    assert values == ["le chat", inputs.BEAM, 3, 0.5, 7, True, "tiny-pre", inputs.FP32]
    with pytest.raises(gr.Error, match="not a finite number"):
        handlers.url_settings(app_context, "s=x&lp=nan")
    runs = handlers.compare_models(app_context, "le chat", inputs.GREEDY, 1, 1.0, 0, True)
    assert [r["model"] for r in runs] == ["tiny", "tiny-pre"]


def test_trace_cache_is_bounded_and_the_server_keeps_no_sessions(app_context):
    from ui.context import TraceCache

    cache = TraceCache(size=3)
    for i in range(10):
        cache.put((i,), {"i": i})
    assert len(cache) == 3 and cache.get((9,)) == {"i": 9} and cache.get((0,)) is None


def test_model_tables_compare_models_and_escape(app_context):
    lm = app_context.models[1]
    record = {**lm.ckpt.training, "note": "<script>x</script>", "scores": {"test_bleu": {"bleu": 12.5}}}
    marked = dataclasses.replace(lm, ckpt=dataclasses.replace(lm.ckpt, training=record))
    out = model_tables_html([app_context.models[0], marked])
    assert "&lt;script&gt;" in out and "<script>" not in out
    assert "tiny-pre" in out and "BLEU 12.50" in out and "/tmp" not in out


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


def test_default_checkpoints_put_the_shipped_model_first():
    from model.checkpoint import DEFAULT_CHECKPOINT

    paths = app.default_checkpoints()
    assert paths[0] == str(DEFAULT_CHECKPOINT) and DEFAULT_CHECKPOINT.exists() and len(set(paths)) == len(paths) >= 2


def test_weights_note_states_what_was_measured_on_this_machine(served_app, app_context):
    note = handlers.weights_note(app_context)
    ms = app_context.warm_ms[app_context.default.name]
    assert "usually faster" not in note and f"fp32 {ms['fp32']:.1f} ms, int8 {ms['int8']:.1f} ms" in note
    radio = next(c for c in served_app.config["components"] if c.get("props", {}).get("elem_id") == "rg-weights")
    assert radio["props"]["info"] == note


def test_best_aligning_head_comes_from_the_checkpoint_record(app_context, monkeypatch):
    lm = app_context.default
    assert handlers.best_head(lm) is None  # the tiny checkpoint was never scored
    record = {"head_f1": [[0.1, 0.2, 0.3, 0.4], [0.5, 0.9, 0.2, 0.1]], "aligner": "eflomal", "scored_pairs": 500}
    monkeypatch.setitem(lm.ckpt.training, "head_alignment", record)
    assert handlers.best_head(lm) == {"layer": 1, "head": 1, "f1": 0.9, "aligner": "eflomal", "pairs": 500}
    monkeypatch.setitem(lm.ckpt.training, "head_alignment", {**record, "head_f1": [[0.5] * 3]})  # another model's shape
    assert handlers.best_head(lm) is None


def test_every_server_event_goes_through_the_queue(served_app):
    """ui/server.py closes /gradio_api/run/*, where Gradio posts a queue=False event: such an event would 404."""
    deps = served_app.config["dependencies"]
    unqueued = [(d["id"], d.get("api_name")) for d in deps if d["backend_fn"] and d["queue"] is False]
    assert unqueued == [] and any(not d["backend_fn"] for d in deps)  # browser-only events (js) are fine
