"""The Transformer itself: shapes, masks, attention as data, positional encodings."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from conftest import tiny_config
from model.attention import HeadMask, MultiHeadAttention, causal_mask
from model.config import ModelConfig
from model.positional import sinusoidal_encoding
from model.transformer import Transformer


def make_model(seed: int = 0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(tiny_config(40, **overrides)).eval()


def random_batch(seed: int = 0, batch: int = 3, s: int = 7, t: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 40, (batch, s), generator=g)
    if batch > 1:
        src[1, s - 2 :] = 0  # padding on the second sentence
    tgt = torch.randint(4, 40, (batch, t), generator=g)
    tgt[:, 0] = 2
    return src, tgt


def test_forward_and_attention_shapes():
    model = make_model()
    src, tgt = random_batch()
    assert model(src, tgt).shape == (3, 5, 40)
    enc = model.encode(src, need_weights=True)
    assert enc.memory.shape == (3, 7, 32)
    assert [w.shape for w in enc.self_attn] == [(3, 4, 7, 7)] * 2
    cache = model.new_cache()
    for t in range(3):
        out = model.decode_step(tgt[:, t], enc, cache, need_weights=True)
        assert out.logits.shape == (3, 40)
        assert [w.shape for w in out.self_attn] == [(3, 4, t + 1)] * 2
        assert [w.shape for w in out.cross_attn] == [(3, 4, 7)] * 2
    assert cache.length == 3


def test_attention_rows_sum_to_one_and_padding_gets_zero_weight():
    model = make_model()
    src, tgt = random_batch()
    enc = model.encode(src, need_weights=True)
    for w in enc.self_attn:
        torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))
        assert torch.all(w[1, :, :, -2:] == 0)  # padded keys of sentence 1
        assert torch.all(w[0, :, :, -2:] > 0)  # sentence 0 has no padding there
    out = model.decode_step(tgt[:, 0], enc, model.new_cache(), need_weights=True)
    for w in out.self_attn + out.cross_attn:
        torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))
    for w in out.cross_attn:
        assert torch.all(w[1, :, -2:] == 0)


def test_padding_does_not_change_the_output():
    model = make_model()
    src, tgt = random_batch(batch=1)
    padded = torch.cat([src, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(src, tgt), model(padded, tgt), atol=1e-5, rtol=1e-5)


def test_causal_mask_hides_the_future():
    model = make_model()
    src, tgt = random_batch()
    changed = tgt.clone()
    changed[:, 3:] = (changed[:, 3:] + 7) % 36 + 4
    a, b = model(src, tgt), model(src, changed)
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_causal_mask_values():
    assert causal_mask(3, 3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert causal_mask(1, 4).tolist() == [[True, True, True, True]]  # the newest token sees everything


def test_fused_and_explicit_attention_agree():
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, 0.0).eval()
    x = torch.randn(2, 6, 32)
    k, v = attn.project_kv(x)
    mask = torch.ones(2, 1, 1, 6, dtype=torch.bool)
    mask[0, ..., 4:] = False
    for causal in (False, True):
        fused, none = attn(x, k, v, mask=mask, is_causal=causal)
        explicit, weights = attn(x, k, v, mask=mask, is_causal=causal, need_weights=True)
        assert none is None and weights.shape == (2, 4, 6, 6)
        torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)
    fused, _ = attn(x, k, v, is_causal=True)
    explicit, _ = attn(x, k, v, is_causal=True, need_weights=True)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)


def test_positional_encoding_matches_the_paper():
    pe = sinusoidal_encoding(100, 16)
    assert pe.shape == (100, 16)
    assert pe[0, 0::2].tolist() == [0.0] * 8 and pe[0, 1::2].tolist() == [1.0] * 8
    for pos, i in [(1, 0), (7, 3), (50, 5), (99, 7)]:
        angle = pos / 10000 ** (2 * i / 16)
        assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
        assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_embeddings_are_scaled_and_offset_by_position():
    model = make_model(dropout=0.0)
    ids = torch.tensor([[5, 6, 7]])
    x = model.embed_tokens(ids, model.tgt_embedding(), offset=2)
    expected = model.embed(ids) * math.sqrt(32) + model.pe[2:5]
    torch.testing.assert_close(x, expected)


def test_xavier_uniform_init_bounds():
    model = make_model()
    w = model.encoder_layers[0].ffn.linear1.weight  # (d_ff, d_model) = (64, 32)
    bound = math.sqrt(6 / (64 + 32))
    assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
    assert torch.all(model.encoder_layers[0].ffn.linear1.bias == 0)


def test_pre_norm_and_gelu_and_untied_variants_run():
    model = make_model(norm="pre", activation="gelu", tie_embeddings=False)
    src, tgt = random_batch()
    assert torch.isfinite(model(src, tgt)).all()
    assert "lm_head.weight" in model.state_dict() and "embed.weight" not in model.state_dict()


def test_config_rejects_inconsistent_values():
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="joint vocabulary"):
        ModelConfig(src_vocab_size=10, tgt_vocab_size=12, tie_embeddings=True)
    with pytest.raises(ValueError, match="norm"):
        ModelConfig(norm="middle")
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"d_model": 32, "colour": "red"})


def test_too_long_sequence_is_refused():
    model = make_model()
    with pytest.raises(ValueError, match="max_positions"):
        model.encode(torch.full((1, 65), 5))


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_one_decoder_forward_serves_the_cached_step_the_full_pass_and_training(norm):
    """Cached steps (the layer's gathered tensors) == the teacher-forced pass (the modules) at every
    position, with a head mask too; the cache holds keys and values only; weights changed between two
    decodings are what the next decoding reads; and training runs the same forward with gradients."""
    torch.manual_seed(7)
    model = Transformer(tiny_config(30, norm=norm)).eval()
    src = torch.randint(4, 30, (2, 6))
    tgt = torch.randint(4, 30, (2, 5))
    mask = HeadMask(decoder_self=torch.tensor([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0]]),
                    cross=torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]]))  # (layers, heads)

    def stepped(head_mask=None):
        with torch.inference_mode():
            enc = model.encode(src, head_mask=head_mask)
            cache = model.new_cache()
            rows = [model.decode_step(tgt[:, t], enc, cache, head_mask=head_mask).logits for t in range(tgt.size(1))]
        assert {f.name for f in dataclasses.fields(cache.layers[0])} == {"k_buf", "v_buf", "filled", "cross_k", "cross_v"}
        return torch.stack(rows, 1)  # (B, T, V)

    for head_mask in (None, mask):
        with torch.inference_mode():
            full = model(src, tgt, head_mask=head_mask)  # (B, T, V)
        assert torch.allclose(stepped(head_mask), full, atol=1e-5)
    before = stepped()
    with torch.no_grad():
        for layer in model.decoder_layers:  # in place, as an optimiser step or load_state_dict writes
            layer.ffn.linear2.weight.mul_(-1.0)
            layer.self_attn.q_proj.bias.add_(0.5)
    after = stepped()
    with torch.inference_mode():
        assert torch.allclose(after, model(src, tgt), atol=1e-5) and not torch.allclose(after, before, atol=1e-3)
    model.train()
    model(src, tgt).sum().backward()  # gradients reach every decoder weight through the same forward
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder_layers.parameters())
