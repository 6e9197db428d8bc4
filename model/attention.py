"""Scaled dot-product multi-head attention with separate q/k/v/out projections, and head ablation masks.

Masks are boolean (``True`` means "may attend") or additive float biases (0 or -inf), broadcastable to
(batch, heads, q_len, k_len). The output always comes from the fused ``scaled_dot_product_attention``
kernel outside training; when attention weights are requested they are computed next to it from the
same queries and keys, so asking for weights never changes the output (the app's instrumented path
computes exactly what the plain path computes).

At inference (grad disabled) self-attention projects q, k and v with one matrix product: a fused
weight built lazily from the three ``nn.Linear`` and rebuilt whenever one of them changes (load,
training step, ``.to()``), so the state-dict keys stay ``q_proj/k_proj/v_proj``. Row for row this is
the same product, bit for bit; ``reference_path()`` switches the fused product off to prove it.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .layout import column_major, is_column_major

KINDS = ("encoder", "decoder_self", "cross")
_FUSED = True  # module switch for the inference-only fused q/k/v projection


@contextlib.contextmanager
def reference_path() -> Iterator[None]:
    """Run attention with three separate q/k/v products (the unoptimised reference) inside the block."""
    global _FUSED
    before, _FUSED = _FUSED, False
    try:
        yield
    finally:
        _FUSED = before


def fusing() -> bool:
    """Whether the fused q/k/v product may run now (off inside ``reference_path()``)."""
    return _FUSED


@dataclass(frozen=True)
class HeadMask:
    """Which attention heads run: 1 keeps a head, 0 zeroes its output before the output projection.

    Each field is (layers, heads) for one kind of attention, or (B, layers, heads) to give every batch
    row its own mask (how ``model.ablation.rank_heads`` ablates all heads in one batched pass); None
    keeps every head of that kind. A mask is data handed down the forward pass, never a module change.
    """

    encoder: torch.Tensor | None = None
    decoder_self: torch.Tensor | None = None
    cross: torch.Tensor | None = None

    def layer(self, kind: str, index: int) -> torch.Tensor | None:
        """The (H,) or (B, H) mask of layer ``index`` of ``kind`` (one of ``KINDS``), or None."""
        mask = getattr(self, kind)
        return None if mask is None else mask[..., index, :]


def layer_mask(head_mask: HeadMask | None, kind: str, index: int) -> torch.Tensor | None:
    return None if head_mask is None else head_mask.layer(kind, index)


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self._fused: tuple[tuple, torch.Tensor, torch.Tensor] | None = None  # (key, weight, bias) cache

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, H, L, Dh)"""
        b, l, _ = x.shape
        return x.view(b, l, self.n_heads, self.d_head).transpose(1, 2)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of ``x`` (B, L, D), each (B, H, L, Dh): what a KV cache stores."""
        return self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x))

    def fused_qkv(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The (3D, D) weight and (3D,) bias of q, k, v stacked, or None where fusing does not apply."""
        linears = (self.q_proj, self.k_proj, self.v_proj)
        if not _FUSED or torch.is_grad_enabled() or any(type(p) is not nn.Linear for p in linears):
            return None  # training needs the separate parameters' gradients; quantised layers differ
        params = [t for p in linears for t in (p.weight, p.bias)]
        # data_ptr changes on .to()/load into new tensors, _version on in-place updates (optimiser, copy_);
        # weights created under inference_mode have no version counter (and cannot be updated outside it).
        key = tuple((t.data_ptr(), -1 if t.is_inference() else t._version, t.dtype) for t in params)
        if self._fused is None or self._fused[0] != key:
            weight = torch.cat([p.weight for p in linears]).detach()  # (3D, D)
            if is_column_major(linears[0].weight):  # keep the layout of the weights it replaces (model/layout.py)
                weight = column_major(weight)
            bias = torch.cat([p.bias for p in linears]).detach()  # (3D,)
            self._fused = (key, weight, bias)
        return self._fused[1], self._fused[2]

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values of ``x`` (B, L, D), each (B, H, L, Dh)."""
        fused = self.fused_qkv()
        if fused is None:
            return (self.split_heads(self.q_proj(x)), *self.project_kv(x))
        q, k, v = F.linear(x, *fused).chunk(3, dim=-1)  # each (B, L, D)
        return self.split_heads(q), self.split_heads(k), self.split_heads(v)

    def forward(
        self,
        query: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
        head_mask: torch.Tensor | None = None,
        q: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query`` (B, Lq, D) over projected keys/values ``k``, ``v`` (B, H, Lk, Dh).

        Returns the output (B, Lq, D) and, if ``need_weights``, the per-head weights (B, H, Lq, Lk).
        ``is_causal`` applies the lower-triangular mask aligned to the end of the key sequence.
        ``head_mask`` (H,) or (B, H) scales each head's output (0 ablates it) before ``out_proj``.
        ``q`` (B, H, Lq, Dh) are precomputed queries (from ``project_qkv``); else ``query`` is projected.
        """
        if q is None:
            q = self.split_heads(self.q_proj(query))  # (B, H, Lq, Dh)
        out, weights = attend(q, k, v, mask, is_causal, need_weights, head_mask, self.dropout if self.training else 0.0)
        return self.out_proj(out), weights


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
           is_causal: bool = False, need_weights: bool = False, head_mask: torch.Tensor | None = None,
           p_drop: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The heads' attention, before the output projection: q (B, H, Lq, Dh) over k, v (B, H, Lk, Dh).

    Returns the heads side by side (B, Lq, H * Dh) and, with ``need_weights``, the weights (B, H, Lq, Lk)
    computed next to the fused kernel. ``is_causal``, ``mask`` and ``head_mask`` as in
    ``MultiHeadAttention.forward``; ``p_drop`` is attention dropout (training only). Both the module and
    the decoder's cached step (``DecoderLayer.forward``) attend through here.
    """
    fused_causal = False
    if is_causal:
        if mask is None and q.size(2) == k.size(2):
            fused_causal = True  # teacher-forced self-attention: the kernel builds the causal mask itself
        else:
            causal = causal_mask(q.size(2), k.size(2), q.device)  # (Lq, Lk)
            mask = causal if mask is None else combine(mask, causal)
    weights = None
    if need_weights:
        seen = causal_mask(q.size(2), k.size(2), q.device) if fused_causal else mask  # (Lq, Lk), for the weights only
        weights = attention_weights(q, k, seen)  # (B, H, Lq, Lk)
    if need_weights and p_drop > 0:
        out = F.dropout(weights, p_drop, True) @ v  # (B, H, Lq, Dh): training with weights out
    else:
        out = F.scaled_dot_product_attention(q, k, v, mask, p_drop, fused_causal)  # (B, H, Lq, Dh)
    b, h, lq, dh = out.shape
    if head_mask is not None:
        out = out * head_mask.to(out.dtype).view(-1, h, 1, 1)  # (B, H, Lq, Dh)
    return out.transpose(1, 2).reshape(b, lq, h * dh), weights  # (B, Lq, D)


def attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax weights (B, H, Lq, Lk) of queries q (B, H, Lq, Dh) over keys k (B, H, Lk, Dh), computed
    next to the fused kernel (which does not return them); ``mask`` is boolean or an additive bias."""
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, H, Lq, Lk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    if scores.dtype == torch.float32:
        return scores.softmax(dim=-1)  # (B, H, Lq, Lk); what the line below computes, minus two calls
    return scores.float().softmax(dim=-1).to(q.dtype)  # (B, H, Lq, Lk)


def combine(mask: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
    """A key mask (bool or additive float) restricted by a boolean causal mask, in the key mask's form."""
    if mask.dtype == torch.bool:
        return mask & causal
    return mask.masked_fill(~causal, float("-inf"))


def key_bias(src_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, S) bool -> additive (B, 1, 1, S) bias of 0 / -inf, or None when nothing is padded.

    Built once per sentence so that attention does not convert a boolean mask at every step.
    """
    if bool(src_mask.all()):
        return None
    bias = torch.zeros(src_mask.shape, dtype=dtype, device=src_mask.device)
    return bias.masked_fill(~src_mask, float("-inf"))[:, None, None, :]


def causal_mask(q_len: int, k_len: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean (q_len, k_len) mask; query i (the last q_len of k_len positions) sees keys <= its position."""
    offset = k_len - q_len
    q_pos = torch.arange(q_len, device=device).unsqueeze(1) + offset  # (Lq, 1)
    k_pos = torch.arange(k_len, device=device).unsqueeze(0)  # (1, Lk)
    return k_pos <= q_pos
