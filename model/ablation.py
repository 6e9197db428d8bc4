"""Switching attention heads off: masks built from (kind, layer, head) triples, and heads ranked by
how much the translation's log-probability drops without each one.

An ablated head's output is zeroed before the output projection (``HeadMask``); the modules are never
changed, so the same model serves ablated and normal runs side by side.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from .attention import KINDS, HeadMask
from .errors import InputError
from .transformer import EncoderOutput, Transformer

Head = tuple[str, int, int]  # (kind, layer, head), kind in KINDS


def layer_counts(model: Transformer) -> dict[str, int]:
    cfg = model.config
    return {"encoder": cfg.n_encoder_layers, "decoder_self": cfg.n_decoder_layers, "cross": cfg.n_decoder_layers}


def head_mask(model: Transformer, off: Iterable[Head]) -> HeadMask:
    """A mask that switches off the heads in ``off``; an empty ``off`` gives a mask of ones."""
    counts, h = layer_counts(model), model.config.n_heads
    device = next(model.parameters()).device
    masks = {kind: torch.ones(n, h, device=device) for kind, n in counts.items()}  # (L, H) each
    for kind, layer, head in off:
        if kind not in counts:
            raise InputError(f"attention kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not (0 <= layer < counts[kind] and 0 <= head < h):
            raise InputError(f"{kind} has layers 0..{counts[kind] - 1} and heads 0..{h - 1}; got layer {layer}, head {head}")
        masks[kind][layer, head] = 0.0
    return HeadMask(**masks)


@dataclass
class HeadRanking:
    baseline: float  # log p(target | source) with every head on
    drop: dict[str, np.ndarray]  # kind -> (layers, heads): baseline minus log p with that one head off

    def ranked(self) -> list[tuple[str, int, int, float]]:
        """(kind, layer, head, drop), largest drop (the head the translation needs most) first."""
        rows = [(k, l, h, float(d[l, h])) for k, d in self.drop.items() for l in range(d.shape[0]) for h in range(d.shape[1])]
        return sorted(rows, key=lambda r: -r[3])


def sequence_logprobs(
    model: Transformer,
    src: torch.Tensor,
    tgt: torch.Tensor,
    head_mask: HeadMask | None = None,
    enc: EncoderOutput | None = None,
) -> torch.Tensor:
    """Teacher-forced log p of ``tgt`` (B, T) (ids ending with eos, no bos) given ``src`` (B, S): (B,).

    ``enc``, when given, is ``src`` already encoded with the same ``head_mask`` (a finished generation's)."""
    bos = torch.full_like(tgt[:, :1], model.config.bos_id)
    if enc is None:
        enc = model.encode(src, head_mask=head_mask)
    logits = model.teacher_forced(torch.cat([bos, tgt[:, :-1]], dim=1), enc, head_mask)  # (B, T, V)
    logp = logits.float().log_softmax(-1)  # (B, T, V)
    return logp.gather(2, tgt[..., None])[..., 0].sum(1)  # (B,)


@torch.inference_mode()
def rank_heads(model: Transformer, src_ids: list[int], tgt_ids: list[int], batch_size: int = 32) -> HeadRanking:
    """Ablate every head alone (encoder self, decoder self, cross) and measure the drop in the
    teacher-forced log-probability of ``tgt_ids`` (the translation, eos appended if missing).

    All ablations run as batch rows of a few forward passes, each row with its own mask; row 0 of
    the first batch keeps every head and gives the baseline, so all numbers share one arithmetic.
    """
    cfg = model.config
    device = next(model.parameters()).device
    if not tgt_ids or tgt_ids[-1] != cfg.eos_id:
        tgt_ids = list(tgt_ids) + [cfg.eos_id]
    counts, h = layer_counts(model), cfg.n_heads
    heads = [(kind, l, i) for kind in KINDS for l in range(counts[kind]) for i in range(h)]
    rows = [None] + heads  # None: nothing ablated
    scores = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        masks = {kind: torch.ones(len(chunk), n, h, device=device) for kind, n in counts.items()}  # (b, L, H)
        for r, head in enumerate(chunk):
            if head is not None:
                masks[head[0]][r, head[1], head[2]] = 0.0
        src = torch.tensor([src_ids], device=device).expand(len(chunk), -1)  # (b, S)
        tgt = torch.tensor([tgt_ids], device=device).expand(len(chunk), -1)  # (b, T)
        scores.extend(sequence_logprobs(model, src, tgt, HeadMask(**masks)).tolist())
    baseline = scores[0]
    drop = {kind: np.zeros((n, h)) for kind, n in counts.items()}
    for (kind, l, i), s in zip(heads, scores[1:]):
        drop[kind][l, i] = baseline - s
    return HeadRanking(baseline, drop)
