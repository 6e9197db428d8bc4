"""Micro-batching: ``trace_batch`` gives each sentence the trace it would get alone, and the app's
batcher decodes concurrent requests together while each caller gets its own result."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from model.decoding import trace_batch, trace_translation
from model.quantize import quantize_int8

TEXTS = ["Le chat mange.", "Il fait très beau demain sur la plage.", "Un chien dort.",
         "Nous allons à la maison, le chat mange une pomme sur le canapé."]


def assert_same_trace(got, want) -> None:
    assert [s.token_id for s in got.steps] == [s.token_id for s in want.steps]
    assert got.translation == want.translation and got.source_pieces == want.source_pieces
    np.testing.assert_allclose(got.encoder_attn, want.encoder_attn, atol=1e-5)
    assert got.score == pytest.approx(want.score, abs=1e-4)
    for a, b in zip(got.steps, want.steps):
        assert a.prob == pytest.approx(b.prob, abs=1e-5) and a.entropy == pytest.approx(b.entropy, abs=1e-5)
        assert a.self_attn.shape == b.self_attn.shape and a.cross_attn.shape == b.cross_attn.shape
        np.testing.assert_allclose(a.self_attn, b.self_attn, atol=1e-5)
        np.testing.assert_allclose(a.cross_attn, b.cross_attn, atol=1e-5)
        assert [c.token_id for c in a.top_k] == [c.token_id for c in b.top_k]
        np.testing.assert_allclose([c.prob for c in a.top_k], [c.prob for c in b.top_k], atol=1e-5)
        assert (a.kv_self_bytes, a.kv_cross_bytes) == (b.kv_self_bytes, b.kv_cross_bytes)


@pytest.mark.parametrize("max_len,use_cache", [(None, True), (5, True), (None, False)])
def test_trace_batch_equals_one_sentence_at_a_time(tiny_model, tiny_tokenizer, max_len, use_cache):
    torch.manual_seed(0)
    traces = trace_batch(tiny_model, tiny_tokenizer, TEXTS, max_len=max_len, use_cache=use_cache)
    assert [t.batch_size for t in traces] == [len(TEXTS)] * len(TEXTS)
    lengths = {len(t.source_ids) for t in traces}
    assert len(lengths) > 1  # the batch really was padded
    for text, got in zip(TEXTS, traces):
        assert_same_trace(got, trace_translation(tiny_model, tiny_tokenizer, text, max_len=max_len,
                                                 use_cache=use_cache))


def test_padding_gets_no_attention(tiny_model, tiny_tokenizer):
    short, long = trace_batch(tiny_model, tiny_tokenizer, [TEXTS[2], TEXTS[3]])
    n = len(short.source_ids)
    assert n < len(long.source_ids)
    assert all(s.cross_attn.shape[-1] == n for s in short.steps) and short.encoder_attn.shape[-2:] == (n, n)
    assert all(float(np.abs(s.cross_attn.sum(-1) - 1.0).max()) < 1e-5 for s in short.steps)  # all mass on real pieces
    assert float(np.abs(short.encoder_attn.sum(-1) - 1.0).max()) < 1e-5
    assert trace_batch(tiny_model, tiny_tokenizer, []) == []


def test_int8_is_exact_only_alone(tiny_model, tiny_tokenizer):
    """Dynamic int8 scales activations over the whole batch, so the app never batches int8 requests."""
    q = quantize_int8(tiny_model)
    assert_same_trace(trace_batch(q, tiny_tokenizer, [TEXTS[0]])[0], trace_translation(q, tiny_tokenizer, TEXTS[0]))


# --- the app's micro-batcher --------------------------------------------------------------------------------
def wait_until(check, seconds: float = 20.0) -> None:
    end = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_batcher_gives_each_request_its_own_result_or_error():
    from ui.context import InFlight
    from ui.batcher import Batcher

    gate = InFlight(limit=1)
    batcher = Batcher(gate, lambda: 8)
    calls: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        calls.append(list(items))
        if 13 in items:
            raise ValueError(f"unlucky {items}")
        return [i * 10 for i in items]

    results: dict[int, object] = {}

    def request(i: int) -> None:
        try:
            results[i] = batcher.submit(None if i == 7 else "same", i, run)
        except ValueError as exc:
            results[i] = str(exc)

    with gate:  # the model is busy: requests pile up
        threads = [threading.Thread(target=request, args=(i,)) for i in (1, 2, 13, 4, 5, 7)]
        for t in threads:
            t.start()
        wait_until(lambda: len(batcher.pending) == 6)
    for t in threads:
        t.join(20)
    assert results == {1: 10, 2: 20, 13: "unlucky [13]", 4: 40, 5: 50, 7: 70}
    batched = [sorted(c) for c in calls if len(c) > 1]
    assert batched == [[1, 2, 4, 5, 13]]  # one batch of the compatible requests; each alone after it failed
    assert sorted(len(c) for c in calls) == [1] * 6 + [5] and gate.now == 0 and gate.peak == 1


def test_concurrent_api_calls_are_decoded_together_and_each_gets_its_own(served_app, app_context, tiny_checkpoint):
    from gradio_client import Client

    from model.checkpoint import load_checkpoint
    from ui import inputs

    texts = ["Un chat dort sur la plage.", "Nous allons demain.", "Le chien mange une pomme très vite.",
             "Il fait beau.", "La maison est sur la plage, le chat dort."]
    ckpt = load_checkpoint(tiny_checkpoint)
    clients = [Client(served_app.local_url, verbose=False) for _ in texts]
    out: dict[int, tuple] = {}

    def call(i: int) -> None:
        out[i] = clients[i].predict(texts[i], inputs.GREEDY, 1, 1.0, 0, True, "tiny", "fp32", api_name="/translate")

    gate = app_context.in_flight
    with gate, gate:  # both model slots busy: the five requests wait together
        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
        for t in threads:
            t.start()
        wait_until(lambda: len(app_context.batcher.pending) == len(texts))
    for t in threads:
        t.join(60)
    for i, text in enumerate(texts):
        translation, trace = out[i]
        alone = trace_translation(ckpt.model, ckpt.tokenizer, text)
        assert trace["source_text"] == text and translation == alone.translation == trace["translation"]
        assert [s["token_id"] for s in trace["steps"]] == [s.token_id for s in alone.steps]
        assert [s["prob"] for s in trace["steps"]] == pytest.approx([s.prob for s in alone.steps], abs=1e-5)
        assert trace["batch_size"] == len(texts)


def test_a_whole_machine_call_holds_every_slot_and_every_core_on_the_runners_thread(app_context):
    """whole_machine (attribution, one training step): no other model call runs beside it, torch uses a
    thread per core inside it, on the runner's thread (app.py: the main thread) when there is one; the
    calling thread's setting is back after it, and an exception reaches the caller."""
    import os

    from ui.context import MainThreadRunner, whole_machine

    gate, lm = app_context.in_flight, app_context.default
    seen: dict = {}

    def job() -> str:
        seen.update(now=gate.now, free=gate.free(), threads=torch.get_num_threads(), thread=threading.current_thread(),
                    inference=torch.is_inference_mode_enabled())
        return "done"

    before, runs = torch.get_num_threads(), lm.runs
    torch.set_num_threads(1)  # as app.py sets it on a 2-core host (one thread per concurrent call)
    try:
        assert whole_machine(app_context, lm, job, grad=True) == "done"  # no runner: on this thread
        assert seen == dict(now=gate.limit, free=False, threads=os.cpu_count() or 1, thread=threading.current_thread(),
                            inference=False)
        assert gate.now == 0 and torch.get_num_threads() == 1 and lm.runs == runs + 1

        app_context.runner, stop = MainThreadRunner(), threading.Event()  # this thread serves, another one asks
        out: dict = {}

        def request() -> None:
            out["result"] = whole_machine(app_context, lm, job)
            try:
                whole_machine(app_context, lm, lambda: 1 / 0)
            except ZeroDivisionError as exc:
                out["error"] = exc
            stop.set()

        asker = threading.Thread(target=request)
        asker.start()
        app_context.runner.serve(stop, poll_s=0.01)
        asker.join(10)
        assert out["result"] == "done" and isinstance(out["error"], ZeroDivisionError)
        assert seen["thread"] is threading.current_thread() and seen["now"] == gate.limit
        assert seen["inference"]  # grad=False: no autograd on the runner's thread, where the job ran
        assert gate.now == 0 and torch.get_num_threads() == 1
    finally:
        app_context.runner = None
        torch.set_num_threads(before)
