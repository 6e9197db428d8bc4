"""The residual stream around every sub-layer and LayerNorm of one translation: what LayerNorm does.

One teacher-forced pass (``encode``, then ``run_decoder`` on tgt_in = [bos] + generated[:-1], no cache)
is watched by forward hooks on the real modules: each ``Sublayer``'s ``norm`` (an ``nn.LayerNorm``),
the ``MultiHeadAttention`` and ``FeedForward`` modules, and the stacks' final ``encoder_norm`` /
``decoder_norm`` (an ``nn.Identity`` in a post-LN model). ``Sublayer`` orders them as

- post-LN (Vaswani et al. 2017): x -> y = sublayer(x) -> LN(x + y), the stream after is the LN output;
- pre-LN: x -> y = sublayer(LN(x)) -> x + y, the stream after is the un-normalised sum.

So for post-LN the stream before a sub-layer is the attention's query / the feed-forward's input, the
sum is the LN's input; for pre-LN the stream before is the LN's input and the stream after is the
input of the next LayerNorm (the next sub-layer's, or the stack's final norm). Nothing is recomputed:
every number is a norm or a moment of a tensor a hook saw.

Returned layout (JSON-ready; arrays through ``arrays.encode_f32``)::

    {"norm": "post" | "pre", "d_model": D,
     "stat_names": STAT_NAMES, "final_stat_names": FINAL_STAT_NAMES,
     "encoder": STACK, "decoder": STACK}
    STACK = {"positions": P, "layers": L, "sublayers": [names, K of them],
             "stats": (P, L, K, len(STAT_NAMES)),   # per position, layer, sub-layer, stat
             "embedding": (P,),                     # ||embeddings * sqrt(D) + positions||
             "final": (P, len(FINAL_STAT_NAMES)),   # around encoder_norm / decoder_norm
             "output": (P,),                        # ||the stack's output|| (memory / decoder states)
             "gain_rms": (L, K),                    # sqrt(mean(weight^2)) of each sub-layer's LayerNorm
             "final_gain_rms": float | None}        # the same for the final norm (pre-LN only)

The encoder has P = S source positions and K = 2 sub-layers (self-attention, feed-forward); the decoder
P = T decoder positions (position t reads tgt_in[t] and predicts generated[t]) and K = 3 (self-attention,
cross-attention, feed-forward). Norms are L2 over the D features; ``ln_in_mean`` / ``ln_in_std`` are the
mean and the standard deviation (biased, what LayerNorm divides by before adding eps) of the LayerNorm's
input over the features: what that LayerNorm removes.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..transformer import Transformer
from .arrays import encode_f32

STAT_NAMES = (
    "residual_in",  # ||x||: the stream entering the sub-layer
    "sublayer_out",  # ||y||: the sub-layer's output, before the residual addition
    "residual_sum",  # ||x + y||
    "residual_out",  # the stream leaving the sub-layer: ||LN(x + y)|| post-LN, ||x + y|| pre-LN
    "ln_out",  # ||LN output||: LN(x + y) post-LN, LN(x) (the sub-layer's input) pre-LN
    "ln_in_mean",  # mean over features of the LN input (x + y post-LN, x pre-LN)
    "ln_in_std",  # its standard deviation over features (biased)
    "ratio",  # ||y|| / ||x||: the sub-layer's contribution relative to the residual
)
FINAL_STAT_NAMES = ("in", "ln_in_mean", "ln_in_std", "out")
ENCODER_SUBLAYERS = ("self-attention", "feed-forward")
DECODER_SUBLAYERS = ("self-attention", "cross-attention", "feed-forward")


def _check_ids(model: Transformer, src_ids: list[int], generated: list[int]) -> None:
    cfg = model.config
    if not src_ids or not generated:
        raise InputError("residual_stats needs at least one source id and one generated id")
    for name, ids, vocab in (("source", src_ids, cfg.src_vocab_size), ("generated", generated, cfg.tgt_vocab_size)):
        bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < vocab]
        if bad:
            raise InputError(f"{name} id {bad[0]!r} is not an id of this model's vocabulary (0..{vocab - 1})")
    for name, n in (("source", len(src_ids)), ("generated", len(generated))):
        if n > cfg.max_positions:
            raise InputError(f"{n} {name} ids exceed max_positions={cfg.max_positions}")


class _Recorder:
    """Forward hooks that keep (input, output) of each watched module, by name; removed in ``close``."""

    def __init__(self) -> None:
        self.seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.handles: list[Any] = []

    def watch(self, name: str, module: nn.Module) -> None:
        def hook(_module: nn.Module, args: tuple, output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output  # attention returns (y, weights)
            self.seen.setdefault(name, []).append((args[0].detach(), out.detach()))  # each (1, P, D)

        self.handles.append(module.register_forward_hook(hook))

    def get(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(input, output) of the one call of ``name``, each (P, D)."""
        calls = self.seen.get(name, [])
        if len(calls) != 1:
            raise RuntimeError(f"expected one call of {name} in the teacher-forced pass, saw {len(calls)}")
        x, y = calls[0]
        return x[0].float(), y[0].float()

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased std over features of x (P, D), each (P,): what LayerNorm subtracts and divides by."""
    mean = x.mean(-1)  # (P,)
    return mean, x.var(-1, correction=0).sqrt()


def _rms(weight: torch.Tensor) -> float:
    return float(weight.detach().float().pow(2).mean().sqrt())


def _stack(rec: _Recorder, prefix: str, layers: nn.ModuleList, final: nn.Module, names: tuple[str, ...],
           pre: bool) -> dict[str, Any]:
    """The STACK dict of the module docstring, from the hooks of one stack's modules."""
    rows = []  # per layer: (P, K, len(STAT_NAMES))
    for i in range(len(layers)):
        per_sub = []
        for k in range(len(names)):
            ln_in, ln_out = rec.get(f"{prefix}{i}.{k}.norm")  # (P, D) each
            _, y = rec.get(f"{prefix}{i}.{k}.sublayer")  # (P, D)
            if pre:
                x = ln_in
                if k + 1 < len(names):
                    nxt = f"{prefix}{i}.{k + 1}.norm"
                else:
                    nxt = f"{prefix}{i + 1}.0.norm" if i + 1 < len(layers) else f"{prefix}final"
                summed = after = rec.get(nxt)[0]  # pre-LN adds without normalising: the next norm reads x + y
            else:
                x = rec.get(f"{prefix}{i}.{k}.sublayer")[0]  # the query / the feed-forward's input
                summed, after = ln_in, ln_out
            mean, std = _moments(ln_in)
            nx, ny = x.norm(dim=-1), y.norm(dim=-1)  # (P,) each
            per_sub.append(torch.stack([nx, ny, summed.norm(dim=-1), after.norm(dim=-1), ln_out.norm(dim=-1),
                                        mean, std, ny / nx.clamp_min(1e-30)], -1))  # (P, len(STAT_NAMES))
        rows.append(torch.stack(per_sub, 1))  # (P, K, len(STAT_NAMES))
    stats = torch.stack(rows, 1)  # (P, L, K, len(STAT_NAMES))
    f_in, f_out = rec.get(f"{prefix}final")  # (P, D) each
    f_mean, f_std = _moments(f_in)
    around = torch.stack([f_in.norm(dim=-1), f_mean, f_std, f_out.norm(dim=-1)], -1)  # (P, 4)
    first = rec.get(f"{prefix}0.0.norm" if pre else f"{prefix}0.0.sublayer")[0]  # (P, D): embeddings + positions
    norms = [[_rms(getattr(layer, block).norm.weight) for block in _blocks(len(names))] for layer in layers]
    return {"positions": int(stats.size(0)), "layers": len(layers), "sublayers": list(names),
            "stats": encode_f32(stats), "embedding": encode_f32(first.norm(dim=-1)), "final": encode_f32(around),
            "output": encode_f32(f_out.norm(dim=-1)), "gain_rms": encode_f32(torch.tensor(norms)),
            "final_gain_rms": _rms(final.weight) if isinstance(final, nn.LayerNorm) else None}


def _blocks(k: int) -> tuple[str, ...]:
    return ("attn_block", "ffn_block") if k == 2 else ("self_block", "cross_block", "ffn_block")


def _watch_all(rec: _Recorder, model: Transformer) -> None:
    for i, layer in enumerate(model.encoder_layers):
        for k, (block, sub) in enumerate(((layer.attn_block, layer.self_attn), (layer.ffn_block, layer.ffn))):
            rec.watch(f"enc{i}.{k}.norm", block.norm)
            rec.watch(f"enc{i}.{k}.sublayer", sub)
    for i, layer in enumerate(model.decoder_layers):
        pairs = ((layer.self_block, layer.self_attn), (layer.cross_block, layer.cross_attn), (layer.ffn_block, layer.ffn))
        for k, (block, sub) in enumerate(pairs):
            rec.watch(f"dec{i}.{k}.norm", block.norm)
            rec.watch(f"dec{i}.{k}.sublayer", sub)
    rec.watch("encfinal", model.encoder_norm)
    rec.watch("decfinal", model.decoder_norm)


def residual_stats(model: Transformer, src_ids: list[int], generated: list[int]) -> dict[str, Any]:
    """Norms of the residual stream before and after every sub-layer and LayerNorm, per position.

    ``src_ids``: the source ids (ending in eos); ``generated``: the T generated ids (eos included if it
    was generated). Layout in the module docstring. Raises ``InputError`` on ids the model cannot read.
    """
    _check_ids(model, src_ids, generated)
    cfg = model.config
    device = next(model.parameters()).device
    src = torch.tensor([src_ids], device=device)  # (1, S)
    tgt_in = torch.tensor([[cfg.bos_id] + list(generated[:-1])], device=device)  # (1, T)
    rec = _Recorder()
    was_training = model.training
    try:
        _watch_all(rec, model)
        model.eval()  # dropout off: the stream the app's translation went through
        with torch.inference_mode():
            enc = model.encode(src)
            model.run_decoder(tgt_in, enc)
        pre = cfg.norm == "pre"
        return {"norm": cfg.norm, "d_model": cfg.d_model, "stat_names": list(STAT_NAMES),
                "final_stat_names": list(FINAL_STAT_NAMES),
                "encoder": _stack(rec, "enc", model.encoder_layers, model.encoder_norm, ENCODER_SUBLAYERS, pre),
                "decoder": _stack(rec, "dec", model.decoder_layers, model.decoder_norm, DECODER_SUBLAYERS, pre)}
    finally:
        rec.close()
        model.train(was_training)
