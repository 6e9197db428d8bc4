"""Decoding: the KV cache gives exactly what recomputation gives; beam 1 is greedy; traces are complete."""
from __future__ import annotations

import pytest
import torch

from conftest import tiny_config
from model.cache import KVCache
from model.decoding import (
    InputError,
    greedy_batch,
    trace_translation,
    translate_batch,
)
from model.generation import Beam, Forced, generate
from model.memory import kv_cross_bytes_formula, kv_self_bytes_formula
from model.transformer import Transformer


def model_and_source(seed: int = 0):
    torch.manual_seed(seed)
    model = Transformer(tiny_config(40)).eval()
    src = torch.randint(4, 40, (3, 6), generator=torch.Generator().manual_seed(seed))
    src[2, 4:] = 0
    return model, src


@torch.no_grad()
def test_cached_decoding_equals_uncached_at_every_step():
    model, src = model_and_source()
    enc = model.encode(src)
    cache = model.new_cache(capacity=3)  # small, so the preallocated buffers grow twice on the way
    prefix = torch.full((3, 1), model.config.bos_id)
    for _ in range(12):
        cached = model.decode_step(prefix[:, -1], enc, cache, need_weights=True)
        full = model.decode_prefix(prefix, enc, need_weights=True)
        torch.testing.assert_close(cached.logits, full.logits, atol=1e-5, rtol=0)
        for a, b in zip(cached.self_attn + cached.cross_attn, full.self_attn + full.cross_attn):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        nxt = cached.logits.argmax(-1)
        assert torch.equal(nxt, full.logits.argmax(-1))
        prefix = torch.cat([prefix, nxt[:, None]], dim=1)
    assert cache.length == 12 and cache.layers[0].k_buf.size(2) == 12


@torch.no_grad()
def test_greedy_trace_with_and_without_cache_agree(tiny_model, tiny_tokenizer):
    text = "Le chat mange une pomme sur le canapé."
    a = trace_translation(tiny_model, tiny_tokenizer, text, max_len=15, use_cache=True)
    b = trace_translation(tiny_model, tiny_tokenizer, text, max_len=15, use_cache=False)
    assert [s.token_id for s in a.steps] == [s.token_id for s in b.steps]
    for sa, sb in zip(a.steps, b.steps):
        assert sa.prob == pytest.approx(sb.prob, abs=1e-5)
        assert abs(sa.cross_attn - sb.cross_attn).max() < 1e-5
        assert abs(sa.self_attn - sb.self_attn).max() < 1e-5
    assert a.steps[-1].kv_self_bytes > 0 and b.steps[-1].kv_self_bytes == 0


@torch.no_grad()
def test_beam_size_one_is_greedy():
    model, src = model_and_source(seed=3)
    greedy = greedy_batch(model, src, max_len=10)
    beam = [h.tokens for h in generate(model, src, Beam(1), 10).hypotheses]
    assert beam == greedy


@torch.no_grad()
def test_beam_search_finds_a_hypothesis_at_least_as_likely_as_greedy():
    torch.manual_seed(2)
    model = Transformer(tiny_config(40)).eval()
    src = torch.randint(4, 40, (4, 6), generator=torch.Generator().manual_seed(5))
    max_len = 8

    def logprob(row: int, tokens: list[int]) -> float:
        """Sum of log p over the tokens, plus eos when the hypothesis ended before max_len."""
        ids = [model.config.bos_id] + tokens + ([model.config.eos_id] if len(tokens) < max_len else [])
        logits = model(src[row : row + 1], torch.tensor([ids[:-1]]))  # (1, T, V)
        logp = logits.log_softmax(-1)[0, torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
        return float(logp.sum())

    greedy = greedy_batch(model, src, max_len)
    beams = generate(model, src, Beam(4, length_penalty=0.0), max_len).hypotheses
    assert [r.tokens for r in beams] != greedy  # the search does explore: it differs somewhere
    for row in range(4):
        assert logprob(row, beams[row].tokens) >= logprob(row, greedy[row]) - 1e-4
        assert beams[row].norm_score == pytest.approx(logprob(row, beams[row].tokens), abs=1e-3)


@torch.inference_mode()  # as generate() runs: the cache's buffers need no autograd record
def test_cache_bytes_match_the_formula_and_reorder_by_beam():
    model, src = model_and_source()
    enc = model.encode(src)
    cache = model.new_cache()
    tok = torch.full((3,), model.config.bos_id)
    for _ in range(4):
        model.decode_step(tok, enc, cache)
    assert cache.self_nbytes() == kv_self_bytes_formula(model.config, 4, 4) * 3
    assert cache.cross_nbytes() == kv_cross_bytes_formula(model.config, 6, 4) * 3
    before = cache.layers[1].self_k.clone()
    cache.reorder(torch.tensor([2, 2, 0]))
    assert torch.equal(cache.layers[1].self_k[0], before[2])
    assert torch.equal(cache.layers[1].self_k[2], before[0])
    capacity = cache.layers[1].k_buf.size(2)
    cache.reorder(torch.tensor([2, 1]))  # fewer rows (finished sentences dropped): filled positions kept
    assert torch.equal(cache.layers[1].self_k, before[[0, 2]]) and cache.layers[1].k_buf.size(2) == capacity
    assert cache.self_nbytes() == kv_self_bytes_formula(model.config, 4, 4) * 2
    empty = KVCache.empty(2)
    assert empty.nbytes() == 0 and not empty.has_cross


def test_batched_translation_equals_one_by_one(tiny_model, tiny_tokenizer):
    texts = ["Le chat dort.", "", "Nous allons à la plage demain avec un chien.", "Il fait beau."]
    batched = translate_batch(tiny_model, tiny_tokenizer, texts, max_len=12, batch_size=3)
    single = [translate_batch(tiny_model, tiny_tokenizer, [t], max_len=12)[0] for t in texts]
    assert batched == single
    assert batched[1] == ""


def test_trace_is_complete(tiny_model, tiny_tokenizer):
    trace = trace_translation(tiny_model, tiny_tokenizer, "Le chat mange.", max_len=6, top_k=5)
    cfg = tiny_model.config
    s = len(trace.source_ids)
    assert trace.source_pieces[-1] == "</s>" and len(trace.source_pieces) == s
    assert trace.encoder_attn.shape == (cfg.n_encoder_layers, cfg.n_heads, s, s)
    assert len(trace.target_pieces) == len(trace.steps) + 1
    for step in trace.steps:
        assert step.self_attn.shape == (cfg.n_decoder_layers, cfg.n_heads, step.step + 1)
        assert step.cross_attn.shape == (cfg.n_decoder_layers, cfg.n_heads, s)
        assert len(step.top_k) == 5 and step.top_k[0].prob >= step.top_k[-1].prob
        assert step.prob == pytest.approx(step.top_k[0].prob)  # greedy picks the top candidate
        assert step.latency_ms > 0
        assert step.kv_self_bytes == kv_self_bytes_formula(cfg, step.step + 1, 4)
        assert step.kv_cross_bytes == kv_cross_bytes_formula(cfg, s, 4)


def test_beam_trace_reports_all_beams_memory(tiny_model, tiny_tokenizer):
    trace = trace_translation(tiny_model, tiny_tokenizer, "Le chat mange.", max_len=6, beam_size=3)
    s = len(trace.source_ids)
    assert trace.steps[0].kv_cross_bytes == kv_cross_bytes_formula(tiny_model.config, s, 4, beams=3)
    with pytest.raises(InputError, match="cache"):
        trace_translation(tiny_model, tiny_tokenizer, "Le chat.", beam_size=3, use_cache=False)


@pytest.mark.parametrize(
    "text, message",
    [("", "empty"), ("   \n ", "empty"), ("a" * 1001, "1001 characters"), ("chat " * 200, "tokens long")],
)
def test_bad_input_gets_a_reason(tiny_model, tiny_tokenizer, text, message):
    with pytest.raises(InputError, match=message):
        trace_translation(tiny_model, tiny_tokenizer, text)


def test_forced_steps_replay_the_given_tokens(tiny_model, tiny_tokenizer):
    eos = tiny_model.config.eos_id
    gen = generate(tiny_model, torch.tensor([[10, 11, 12, 3]]), Forced([20, 21, eos]), 10, top_k=3, record=True)
    assert [p.token_id for p in gen.hypotheses[0].path] == [20, 21, eos]
    assert [p.forced for p in gen.hypotheses[0].path] == [True] * 3 and [s.forced for s in gen.steps] == [True] * 3


def test_a_text_longer_than_the_model_reads_is_translated_in_pieces_not_cut(tiny_model, tiny_tokenizer):
    """max_positions 64: three sentences of ~25 pieces each do not fit at once. Each is translated, as
    the CLI does it, and nothing after the 63rd piece is dropped."""
    from model.limits import fits, split_to_fit

    sentences = ["Le chat mange une pomme sur le canapé avec le chien de la maison ce matin."] * 3
    sentences[1] = "Nous allons à la plage demain avec un chien et un chat qui dorment sur le sable."
    text = " ".join(sentences)
    assert not fits(tiny_tokenizer, text, tiny_model.config.max_positions)
    parts = split_to_fit(tiny_tokenizer, text, tiny_model.config.max_positions)
    assert parts == sentences  # cut at the sentence ends
    (whole,) = translate_batch(tiny_model, tiny_tokenizer, [text], max_len=12)
    assert whole == " ".join(translate_batch(tiny_model, tiny_tokenizer, sentences, max_len=12))
