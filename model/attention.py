"""Scaled dot-product multi-head attention with separate q/k/v/out projections.

Masks are boolean and broadcastable to (batch, heads, q_len, k_len); ``True`` means "may attend".
When attention weights are not requested the fused ``scaled_dot_product_attention`` kernel runs;
the explicit softmax path exists only to hand the weights out as data.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, H, L, Dh)"""
        b, l, _ = x.shape
        return x.view(b, l, self.n_heads, self.d_head).transpose(1, 2)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of ``x`` (B, L, D), each (B, H, L, Dh): what a KV cache stores."""
        return self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x))

    def forward(
        self,
        query: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query`` (B, Lq, D) over projected keys/values ``k``, ``v`` (B, H, Lk, Dh).

        Returns the output (B, Lq, D) and, if ``need_weights``, the per-head weights (B, H, Lq, Lk).
        ``is_causal`` applies the lower-triangular mask aligned to the end of the key sequence.
        """
        q = self.split_heads(self.q_proj(query))  # (B, H, Lq, Dh)
        p_drop = self.dropout if self.training else 0.0
        # Teacher-forced decoder self-attention: let the fused kernel build the causal mask itself.
        fused_causal = is_causal and mask is None and not need_weights and q.size(2) == k.size(2)
        if is_causal and not fused_causal:
            causal = causal_mask(q.size(2), k.size(2), q.device)  # (Lq, Lk)
            mask = causal if mask is None else (mask & causal)
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.d_head)  # (B, H, Lq, Lk)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.float().softmax(dim=-1).to(q.dtype)  # (B, H, Lq, Lk)
            out = F.dropout(weights, p_drop, self.training) @ v  # (B, H, Lq, Dh)
        else:
            weights = None
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=p_drop, is_causal=fused_causal
            )  # (B, H, Lq, Dh)
        b, h, lq, dh = out.shape
        out = out.transpose(1, 2).reshape(b, lq, h * dh)  # (B, Lq, D)
        return self.out_proj(out), weights


def causal_mask(q_len: int, k_len: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean (q_len, k_len) mask; query i (the last q_len of k_len positions) sees keys <= its position."""
    offset = k_len - q_len
    q_pos = torch.arange(q_len, device=device).unsqueeze(1) + offset  # (Lq, 1)
    k_pos = torch.arange(k_len, device=device).unsqueeze(0)  # (1, Lk)
    return k_pos <= q_pos
