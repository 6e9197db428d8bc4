"""model.explain.residual: the residual stream around every sub-layer and LayerNorm, post-LN vs pre-LN.

The hooks' numbers are checked against measurements that do not go through them: the model's own
layer outputs (``run_decoder(states=[])``, ``encode().memory``) and a walk through the same modules
written here in ``Sublayer``'s documented order, where the residual identity is explicit.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from model.errors import InputError
from model.explain.arrays import decode_f32
from model.explain.residual import STAT_NAMES, residual_stats
from model.transformer import Transformer
from conftest import tiny_config

ROOT = Path(__file__).resolve().parent.parent
SRC = [7, 12, 30, 41, 9, 2]  # ends in eos (id 2)
GEN = [15, 22, 8, 50, 2]
COL = {name: i for i, name in enumerate(STAT_NAMES)}


def make(norm: str, affine: bool = True, seed: int = 0) -> Transformer:
    """A tiny seeded model; ``affine`` gives every LayerNorm a random gain and bias (not the 1, 0 of init)."""
    torch.manual_seed(seed)
    model = Transformer(tiny_config(96, norm=norm)).eval()
    if affine:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.LayerNorm):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.1)
    return model


def stats(data: dict, stack: str) -> np.ndarray:
    return decode_f32(data[stack]["stats"])  # (P, L, K, stats)


def walk(x: torch.Tensor, blocks: list, subs: list, pre: bool) -> tuple[list[dict], torch.Tensor]:
    """Run sub-layers by hand in Sublayer's order; per sub-layer, the stats recomputed from explicit x, y."""
    rows = []
    for block, fn in zip(blocks, subs):
        h = block.norm(x) if pre else x  # (P, D)
        y = fn(h)  # (P, D)
        s = x + y  # the residual addition
        ln_in = x if pre else s
        out = s if pre else block.norm(s)
        rows.append({"residual_in": x.norm(dim=-1), "sublayer_out": y.norm(dim=-1), "residual_sum": s.norm(dim=-1),
                     "residual_out": out.norm(dim=-1), "ln_out": block.norm(ln_in).norm(dim=-1),
                     "ln_in_mean": torch.mean(ln_in, -1), "ln_in_std": torch.std(ln_in, -1, correction=0),
                     "ratio": y.norm(dim=-1) / x.norm(dim=-1)})
        x = out
    return rows, x


def reference(model: Transformer) -> tuple[list[dict], list[dict], torch.Tensor]:
    """The walk over both stacks for SRC/GEN: encoder rows, decoder rows, the memory (S, D)."""
    pre = model.config.norm == "pre"
    src = torch.tensor([SRC])  # (1, S)
    tgt = torch.tensor([[model.config.bos_id] + GEN[:-1]])  # (1, T)
    with torch.inference_mode():
        x = model.embed_tokens(src, model.src_embedding())  # (1, S, D)
        enc_rows = []
        for layer in model.encoder_layers:
            subs = [lambda h, a=layer.self_attn: a(h, *a.project_qkv(h)[1:])[0], layer.ffn]
            rows, x = walk(x, [layer.attn_block, layer.ffn_block], subs, pre)
            enc_rows += rows
        memory = model.encoder_norm(x)  # (1, S, D)
        x = model.embed_tokens(tgt, model.tgt_embedding())  # (1, T, D)
        dec_rows = []
        for layer in model.decoder_layers:
            subs = [lambda h, a=layer.self_attn: a(h, *a.project_qkv(h)[1:], is_causal=True)[0],
                    lambda h, a=layer.cross_attn: a(h, *a.project_kv(memory))[0], layer.ffn]
            rows, x = walk(x, [layer.self_block, layer.cross_block, layer.ffn_block], subs, pre)
            dec_rows += rows
    return enc_rows, dec_rows, memory[0]


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_layer_outputs_match_the_models_own_states(norm):
    model = make(norm)
    data = residual_stats(model, SRC, GEN)
    assert data["norm"] == norm and json.loads(json.dumps(data)) == data  # JSON-ready
    dec, enc = stats(data, "decoder"), stats(data, "encoder")
    assert dec.shape == (len(GEN), 2, 3, len(STAT_NAMES)) and enc.shape == (len(SRC), 2, 2, len(STAT_NAMES))
    with torch.inference_mode():
        memory = model.encode(torch.tensor([SRC]))
        states: list[torch.Tensor] = []
        final = model.run_decoder(torch.tensor([[model.config.bos_id] + GEN[:-1]]), memory, states=states)[0]
        emb = model.embed_tokens(torch.tensor([SRC]), model.src_embedding())  # (1, S, D)
    for i, s in enumerate(states):  # each layer's output: the stream leaving its feed-forward sub-layer
        np.testing.assert_allclose(dec[:, i, 2, COL["residual_out"]], s[0].norm(dim=-1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(decode_f32(data["decoder"]["output"]), final[0].norm(dim=-1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(decode_f32(data["encoder"]["output"]), memory.memory[0].norm(dim=-1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(decode_f32(data["encoder"]["embedding"]), emb[0].norm(dim=-1).numpy(), rtol=1e-5)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_every_stat_equals_the_hand_walk_with_its_residual_identity(norm):
    model = make(norm)
    data = residual_stats(model, SRC, GEN)
    enc_rows, dec_rows, memory = reference(model)
    for stack, rows in (("encoder", enc_rows), ("decoder", dec_rows)):
        got = stats(data, stack)
        p, layers, k, _ = got.shape
        flat = got.transpose(1, 2, 0, 3).reshape(layers * k, p, len(STAT_NAMES))  # depth order, positions
        for depth, row in enumerate(rows):
            for name, col in COL.items():
                np.testing.assert_allclose(flat[depth, :, col], row[name][0].numpy(), rtol=1e-5, atol=1e-5,
                                           err_msg=f"{stack} sub-layer {depth} {name}")
    with torch.inference_mode():
        np.testing.assert_allclose(decode_f32(data["encoder"]["output"]), memory.norm(dim=-1).numpy(), rtol=1e-5)


def test_post_ln_normalises_each_sum_and_pre_ln_adds_without():
    post = residual_stats(make("post", affine=False), SRC, GEN)
    pre = residual_stats(make("pre", affine=False), SRC, GEN)
    d = post["d_model"]
    for stack in ("encoder", "decoder"):
        s = stats(post, stack)
        # with gain 1 and bias 0, LN's output is the normalised input itself: mean 0 and std 1 give sqrt(d)
        eps = 1e-5
        expected = math.sqrt(d) * s[..., COL["ln_in_std"]] / np.sqrt(s[..., COL["ln_in_std"]] ** 2 + eps)
        np.testing.assert_allclose(s[..., COL["ln_out"]], expected, rtol=1e-5)
        np.testing.assert_allclose(s[..., COL["residual_out"]], math.sqrt(d), rtol=1e-3)  # the stream stays at sqrt(d)
        np.testing.assert_allclose(s[..., COL["residual_sum"]] ** 2,  # ||x+y||^2 = d (mean^2 + var) of the LN input
                                   d * (s[..., COL["ln_in_mean"]] ** 2 + s[..., COL["ln_in_std"]] ** 2), rtol=1e-4)
        q = stats(pre, stack)
        np.testing.assert_allclose(q[..., COL["residual_out"]], q[..., COL["residual_sum"]])  # no norm on the stream
        np.testing.assert_allclose(q[..., COL["ln_in_std"]] ** 2 * d + q[..., COL["ln_in_mean"]] ** 2 * d,
                                   q[..., COL["residual_in"]] ** 2, rtol=1e-4)  # pre-LN normalises the stream entering
    # the same sentence, two shapes: post-LN flat at sqrt(d), pre-LN growing with depth (measured 6.9 -> 13.1)
    q = stats(pre, "decoder")[:, :, :, COL["residual_out"]].mean(0).reshape(-1)  # (L*K,) in depth order
    first = decode_f32(pre["decoder"]["embedding"]).mean()
    assert q[-1] > 1.5 * first and np.all(np.diff(q)[:-1] > 0)


def test_final_norm_and_gains_are_reported_for_pre_ln_only():
    pre = residual_stats(make("pre"), SRC, GEN)
    post = residual_stats(make("post"), SRC, GEN)
    model = make("pre")
    assert pre["encoder"]["final_gain_rms"] == pytest.approx(float(model.encoder_norm.weight.detach().pow(2).mean().sqrt()))
    assert post["encoder"]["final_gain_rms"] is None and post["decoder"]["final_gain_rms"] is None
    fin = decode_f32(post["decoder"]["final"])  # (T, 4): an Identity in post-LN: in == out
    np.testing.assert_array_equal(fin[:, 0], fin[:, 3])
    gains = decode_f32(pre["decoder"]["gain_rms"])  # (L, K)
    assert gains.shape == (2, 3)
    assert gains[1, 2] == pytest.approx(float(model.decoder_layers[1].ffn_block.norm.weight.detach().pow(2).mean().sqrt()))


def test_hooks_are_removed_and_bad_ids_refused():
    model = make("post")
    model.train()
    residual_stats(model, SRC, GEN)
    assert model.training  # its mode is given back
    assert all(not m._forward_hooks for m in model.modules())
    for src, gen, why in (([], GEN, "at least one"), (SRC, [], "at least one"), (SRC, [15, 96], "96"),
                          ([-1, 2], GEN, "-1"), (SRC, [1.5], "1.5"), (SRC, [3] * 65, "max_positions")):
        with pytest.raises(InputError, match=why):
            residual_stats(model, src, gen)
    assert all(not m._forward_hooks for m in model.modules())


def test_shipped_checkpoints_post_stays_at_sqrt_d_gain_pre_grows_and_its_sublayers_matter_less():
    """Measured on "Le chat dort sur le canapé." (numbers in the asserts' comments): post-LN's stream leaves
    every sub-layer at 0.50-1.29 x sqrt(d) x that LayerNorm's rms gain; pre-LN's grows 4.0x (encoder) and
    8.4x (decoder) from the embeddings, and the mean ||y||/||x|| of its last layer is about half its first's."""
    from model.checkpoint import load_checkpoint
    from model.decoding import trace_translation

    measured = {}
    for name in ("postln", "preln"):
        ckpt = load_checkpoint(ROOT / "checkpoints" / f"regard-fr-en-{name}.safetensors")
        trace = trace_translation(ckpt.model, ckpt.tokenizer, "Le chat dort sur le canapé.")
        measured[name] = residual_stats(ckpt.model, trace.source_ids, [s.token_id for s in trace.steps])
    assert measured["postln"]["norm"] == "post" and measured["preln"]["norm"] == "pre"
    for stack in ("encoder", "decoder"):
        post, pre = measured["postln"], measured["preln"]
        s, q = stats(post, stack), stats(pre, stack)
        rel_post = s[..., COL["residual_out"]] / (math.sqrt(post["d_model"]) * decode_f32(post[stack]["gain_rms"]))
        assert 0.35 < rel_post.min() and rel_post.max() < 1.6  # measured 0.50 / 0.67 and 1.29 / 1.14
        rel_pre = q[..., COL["residual_out"]] / (math.sqrt(pre["d_model"]) * decode_f32(pre[stack]["gain_rms"]))
        assert rel_pre.max() > 5.0  # measured 11.5 / 14.6: no LayerNorm holds the pre-LN stream
        growth = {name: stats(d, stack)[:, -1, -1, COL["residual_out"]].mean() / decode_f32(d[stack]["embedding"]).mean()
                  for name, d in measured.items()}
        assert growth["postln"] < 1.5 and growth["preln"] > 3.0  # measured 0.47 / 1.26 and 4.0 / 8.4
        stream = q[..., COL["residual_out"]].mean(0).reshape(-1)  # (L*K,) pre-LN, depth order
        assert np.all(np.diff(stream) > 0)
        ratio = q[..., COL["ratio"]].mean((0, 2))  # (L,) mean ||y||/||x|| per layer
        assert ratio[-1] < 0.75 * ratio[0]  # measured 0.48x / 0.54x
