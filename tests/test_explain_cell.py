"""One attention cell opened up (model/explain/cell.py): the queries, keys and values it returns give back,
in numpy, the weights and head outputs it returns; those weights are the attention of the app's own
incremental (KV-cache) trace; bad requests are refused with a reason; an imported Marian model works too."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers  # requirements-dev.txt; test_marian.py needs it too
from conftest import tiny_pairs
from test_marian import write_opus_vocab

from model.load import load_model
from model.decoding import trace_translation
from model.errors import InputError, LimitError
from model.explain.arrays import decode_f32
from model.explain.cell import attention_layer

TEXT = "le chat mange une pomme sur le canapé"
TOL = 1e-5
CASES = [(kind, layer) for kind in ("encoder", "decoder_self", "cross") for layer in (0, 1)]


@pytest.fixture(scope="module")
def trace(tiny_model, tiny_tokenizer):
    return trace_translation(tiny_model, tiny_tokenizer, TEXT)


def generated(trace) -> list[int]:
    return [s.token_id for s in trace.steps]


def arrays(data: dict) -> dict[str, np.ndarray]:
    return {name: decode_f32(data[name]) for name in ("q", "k", "v", "weights", "head_out")}


def softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def recomputed(data: dict, scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The weights (H, Lq, Lk) and head outputs (H, Lq, Dh) that the payload's q, k, v give in numpy
    (scaled by the payload's 1/sqrt(Dh) unless ``scale`` says otherwise)."""
    a = {n: x.astype(np.float64) for n, x in arrays(data).items()}
    scores = a["q"] @ a["k"].transpose(0, 2, 1) * (data["scale"] if scale is None else scale)  # (H, Lq, Lk)
    if data["causal"]:
        scores = np.where(np.tril(np.ones(scores.shape[1:], bool)), scores, -np.inf)
    weights = softmax(scores)
    return weights, weights @ a["v"]


def trace_weights(trace, kind: str, layer: int) -> np.ndarray:
    """The trace's attention of ``layer`` as (H, Lq, Lk); decoder self-attention zero-padded past each step."""
    if kind == "encoder":
        return trace.encoder_attn[layer]
    if kind == "cross":
        return np.stack([s.cross_attn[layer] for s in trace.steps], 1)
    n = len(trace.steps)
    out = np.zeros((trace.steps[0].self_attn.shape[1], n, n), np.float32)
    for t, s in enumerate(trace.steps):
        out[:, t, : t + 1] = s.self_attn[layer]
    return out


@pytest.mark.parametrize("kind, layer", CASES)
def test_softmax_of_q_k_and_weighted_values_give_the_returned_numbers(tiny_model, trace, kind, layer):
    data = attention_layer(tiny_model, trace.source_ids, generated(trace), kind, layer)
    a = arrays(data)
    cfg = tiny_model.config
    S, T, H, Dh = len(trace.source_ids), len(trace.steps), cfg.n_heads, cfg.d_model // cfg.n_heads
    lq, lk = (S, S) if kind == "encoder" else (T, S) if kind == "cross" else (T, T)
    assert (data["kind"], data["layer"], data["heads"], data["d_head"]) == (kind, layer, H, Dh)
    assert (data["queries"], data["keys"], data["causal"]) == (lq, lk, kind == "decoder_self")
    assert data["scale"] == pytest.approx(Dh ** -0.5)
    assert a["q"].shape == a["head_out"].shape == (H, lq, Dh) and a["k"].shape == a["v"].shape == (H, lk, Dh)
    weights, head_out = recomputed(data)
    np.testing.assert_allclose(a["weights"], weights, atol=TOL, rtol=0)
    np.testing.assert_allclose(a["head_out"], head_out, atol=TOL, rtol=0)
    # the scale matters: without it the softmax is another distribution, so the check above can fail
    assert np.abs(recomputed(data, scale=1.0)[0] - a["weights"]).max() > 10 * TOL


@pytest.mark.parametrize("kind, layer", CASES)
def test_weights_are_the_attention_of_the_apps_incremental_trace(tiny_model, trace, kind, layer):
    data = attention_layer(tiny_model, trace.source_ids, generated(trace), kind, layer)
    np.testing.assert_allclose(decode_f32(data["weights"]), trace_weights(trace, kind, layer), atol=TOL, rtol=0)


def test_cross_attention_keys_and_values_are_the_encoder_memorys_projections(tiny_model, trace):
    data = attention_layer(tiny_model, trace.source_ids, generated(trace), "cross", 1)
    with torch.inference_mode():
        memory = tiny_model.encode(torch.tensor([trace.source_ids])).memory  # (1, S, D)
        k, v = tiny_model.decoder_layers[1].cross_attn.project_kv(memory)  # (1, H, S, Dh) each
    np.testing.assert_array_equal(decode_f32(data["k"]), k[0].numpy())
    np.testing.assert_array_equal(decode_f32(data["v"]), v[0].numpy())


def test_a_one_token_translation_has_one_query(tiny_model, trace):
    data = attention_layer(tiny_model, trace.source_ids, [tiny_model.config.eos_id], "decoder_self", 0)
    assert (data["queries"], data["keys"]) == (1, 1)
    np.testing.assert_allclose(decode_f32(data["weights"]), np.ones((tiny_model.config.n_heads, 1, 1)), atol=TOL)


def no_hooks(model) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("kind, layer, reason", [
    ("decoder", 0, "attention kind must be one of"),
    ("cross", 2, "layer must be a whole number from 0 to 1"),
    ("encoder", -1, "layer must be a whole number"),
    ("cross", True, "layer must be a whole number"),
    ("cross", "1", "layer must be a whole number"),
])
def test_a_bad_kind_or_layer_is_refused_with_a_reason(tiny_model, trace, kind, layer, reason):
    with pytest.raises(InputError, match=reason):
        attention_layer(tiny_model, trace.source_ids, generated(trace), kind, layer)


def test_bad_ids_are_refused_with_a_reason_and_leave_no_hook(tiny_model, trace):
    vocab = tiny_model.config.tgt_vocab_size
    with pytest.raises(InputError, match="at least one generated token"):
        attention_layer(tiny_model, trace.source_ids, [], "cross", 0)
    with pytest.raises(InputError, match="source has no ids"):
        attention_layer(tiny_model, [], generated(trace), "encoder", 0)
    with pytest.raises(InputError, match=f"generated id {vocab} is not an id"):
        attention_layer(tiny_model, trace.source_ids, [5, vocab], "cross", 0)
    with pytest.raises(InputError, match="source id -1 is not an id"):
        attention_layer(tiny_model, [-1, 3], generated(trace), "cross", 0)
    with pytest.raises(LimitError, match="exceed the 64 positions"):
        attention_layer(tiny_model, trace.source_ids, [5] * 65, "decoder_self", 0)
    assert no_hooks(tiny_model)


def test_hooks_are_removed_and_the_mode_restored(tiny_model, trace):
    tiny_model.train()
    try:
        data = attention_layer(tiny_model, trace.source_ids, generated(trace), "cross", 0)
        assert tiny_model.training  # the caller's mode is given back
    finally:
        tiny_model.eval()
    assert no_hooks(tiny_model)
    # dropout was off during the pass: the weights are still the eval trace's
    np.testing.assert_allclose(decode_f32(data["weights"]), trace_weights(trace, "cross", 0), atol=TOL, rtol=0)


def test_an_imported_marian_model_opens_its_cells(tmp_path, tiny_tokenizer):
    """OPUS-MT's shape (tests/test_marian.py): shared tied vocabulary, swish, decoding starts from pad."""
    n_vocab, _ = write_opus_vocab(tiny_tokenizer, tmp_path, separate=False)
    config = transformers.MarianConfig(
        vocab_size=n_vocab, decoder_vocab_size=n_vocab, share_encoder_decoder_embeddings=True, tie_word_embeddings=True,
        scale_embedding=True, activation_function="swish", d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=64, init_std=0.3, pad_token_id=n_vocab - 1, eos_token_id=0,
        decoder_start_token_id=n_vocab - 1, forced_eos_token_id=None)
    torch.manual_seed(0)
    transformers.MarianMTModel(config).eval().save_pretrained(str(tmp_path))
    ckpt = load_model(tmp_path)
    text = tiny_pairs(1, seed=7)[0][0]
    marian_trace = trace_translation(ckpt.model, ckpt.tokenizer, text, max_len=6)
    assert ckpt.config.bos_id == n_vocab - 1  # the decoder reads pad first, as OPUS-MT does
    for kind in ("cross", "decoder_self", "encoder"):
        data = attention_layer(ckpt.model, marian_trace.source_ids, generated(marian_trace), kind, 1)
        np.testing.assert_allclose(decode_f32(data["weights"]), trace_weights(marian_trace, kind, 1), atol=TOL, rtol=0)
        np.testing.assert_allclose(decode_f32(data["head_out"]), recomputed(data)[1], atol=TOL, rtol=0)
