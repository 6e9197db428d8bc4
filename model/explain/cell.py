"""One attention layer opened up: the queries, keys, values, weights and head outputs it really used.

One teacher-forced pass (``encode``, then ``run_decoder`` on tgt_in = [bos] + generated[:-1], no cache,
``need_weights=True``) runs under ``torch.inference_mode`` with hooks on the chosen layer's
``MultiHeadAttention``: a forward pre-hook reads its arguments (the keys and values it was handed and,
for self-attention, the queries ``project_qkv`` made), a forward hook its returned weights, and a
pre-hook on its ``out_proj`` the head outputs just before they are mixed. Cross-attention is not handed
its queries: the hook computes them as ``MultiHeadAttention.forward`` does, ``split_heads(q_proj(query))``,
the same ops on the same tensor. An encoder layer needs no decoder run.

Returned layout (JSON-ready; arrays through ``arrays.encode_f32``)::

    {"kind": "encoder" | "decoder_self" | "cross", "layer": l, "heads": H, "d_head": Dh,
     "scale": 1 / sqrt(Dh), "queries": Lq, "keys": Lk, "causal": bool,
     "q": (H, Lq, Dh), "k": (H, Lk, Dh), "v": (H, Lk, Dh),
     "weights": (H, Lq, Lk),      # softmax(q . k^T * scale) as the model returned it
     "head_out": (H, Lq, Dh)}     # each head's output, the input of out_proj split back into heads

Queries are source positions for ``encoder`` (Lq = Lk = S), decoder positions for the others (position
t reads tgt_in[t] and predicts generated[t]); keys are source positions (``encoder``, ``cross``) or
decoder positions (``decoder_self``, Lk = T). ``decoder_self`` is causal: query t sees keys 0..t, its
weights are 0 beyond (the mask is implied, not sent). The payload grows as H * (Lq + Lk) * Dh + H * Lq * Lk,
bounded by the model's positions, which the ids are checked against.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..attention import KINDS, MultiHeadAttention
from ..errors import InputError, LimitError
from ..transformer import Transformer
from .arrays import encode_f32


def _check(model: Transformer, src_ids: list[int], generated: list[int], kind: Any, layer: Any) -> int:
    """The layer index if the request can run, else ``InputError`` with the reason."""
    cfg = model.config
    if kind not in KINDS:
        raise InputError(f"attention kind must be one of {', '.join(KINDS)}, got {kind!r}")
    n_layers = cfg.n_encoder_layers if kind == "encoder" else cfg.n_decoder_layers
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_layers:
        raise InputError(f"layer must be a whole number from 0 to {n_layers - 1} for {kind} attention, got {layer!r}")
    if not src_ids:
        raise InputError("the source has no ids: translate a sentence first")
    if not generated:
        raise InputError("no generated ids: the cell of a translation needs at least one generated token")
    for name, ids, vocab in (("source", src_ids, cfg.src_vocab_size), ("generated", generated, cfg.tgt_vocab_size)):
        bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < vocab]
        if bad:
            raise InputError(f"{name} id {bad[0]!r} is not an id of this model's vocabulary (0..{vocab - 1})")
        if len(ids) > cfg.max_positions:
            raise LimitError(f"{len(ids)} {name} ids exceed the {cfg.max_positions} positions this model reads")
    return layer


def _module(model: Transformer, kind: str, layer: int) -> MultiHeadAttention:
    if kind == "encoder":
        return model.encoder_layers[layer].self_attn
    block = model.decoder_layers[layer]
    return block.self_attn if kind == "decoder_self" else block.cross_attn


class _Watch:
    """Hooks on one ``MultiHeadAttention`` and its ``out_proj``: what its single call used and returned."""

    def __init__(self, attn: MultiHeadAttention) -> None:
        self.attn = attn
        self.calls: list[dict[str, torch.Tensor]] = []
        self.handles = [
            attn.register_forward_pre_hook(self._inputs, with_kwargs=True),
            attn.register_forward_hook(self._outputs),
            attn.out_proj.register_forward_pre_hook(self._heads),
        ]

    def _inputs(self, module: MultiHeadAttention, args: tuple, kwargs: dict) -> None:
        names = ("query", "k", "v", "mask", "is_causal", "need_weights", "head_mask", "q")
        given = dict(zip(names, args)) | kwargs
        q = given.get("q")
        if q is None:  # cross-attention projects its queries inside forward: the same op on the same tensor
            q = module.split_heads(module.q_proj(given["query"]))  # (1, H, Lq, Dh)
        self.calls.append({"q": q, "k": given["k"], "v": given["v"]})

    def _outputs(self, _module: nn.Module, _args: tuple, output: tuple) -> None:
        self.calls[-1]["weights"] = output[1]  # (1, H, Lq, Lk)

    def _heads(self, _module: nn.Module, args: tuple) -> None:
        self.calls[-1]["head_out"] = args[0]  # (1, Lq, H * Dh): the heads side by side, before mixing

    def result(self) -> dict[str, torch.Tensor]:
        if len(self.calls) != 1:
            raise RuntimeError(f"expected one call of the attention layer in the teacher-forced pass, saw {len(self.calls)}")
        return self.calls[0]

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def attention_layer(model: Transformer, src_ids: list[int], generated: list[int], kind: str, layer: int) -> dict[str, Any]:
    """Queries, keys, values, weights and head outputs of one attention layer on a finished translation.

    ``src_ids``: the source ids (ending in eos); ``generated``: the T generated ids (eos included if it was
    generated); ``kind``: one of ``model.attention.KINDS``; ``layer``: 0-based. Layout in the module
    docstring. Raises ``InputError`` (``LimitError`` for too many ids) when the request cannot run.
    """
    layer = _check(model, src_ids, generated, kind, layer)
    cfg = model.config
    device = next(model.parameters()).device
    src = torch.tensor([src_ids], device=device)  # (1, S)
    tgt_in = torch.tensor([[cfg.bos_id] + list(generated[:-1])], device=device)  # (1, T)
    attn = _module(model, kind, layer)
    watch = _Watch(attn)
    was_training = model.training
    try:
        model.eval()  # dropout off: the attention the app's translation went through
        with torch.inference_mode():
            enc = model.encode(src, need_weights=kind == "encoder")
            if kind != "encoder":
                model.run_decoder(tgt_in, enc, need_weights=True)
        seen = watch.result()
    finally:
        watch.close()
        model.train(was_training)
    h, dh = attn.n_heads, attn.d_head
    q, k, v, weights = (seen[name][0] for name in ("q", "k", "v", "weights"))  # (H, L, Dh) / (H, Lq, Lk)
    lq = q.size(1)
    head_out = seen["head_out"][0].reshape(lq, h, dh).transpose(0, 1)  # (H, Lq, Dh)
    return {
        "kind": kind, "layer": layer, "heads": h, "d_head": dh, "scale": 1.0 / math.sqrt(dh),
        "queries": lq, "keys": int(k.size(1)), "causal": kind == "decoder_self",
        "q": encode_f32(q), "k": encode_f32(k), "v": encode_f32(v),
        "weights": encode_f32(weights), "head_out": encode_f32(head_out),
    }
