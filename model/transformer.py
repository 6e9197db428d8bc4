"""Encoder-decoder Transformer (Vaswani et al. 2017) with explicit, cache-driven incremental decoding.

Nothing is stored on the modules between calls: attention weights come back as return values and the
decoder's keys/values live in a ``KVCache`` that the caller owns.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiHeadAttention
from .cache import KVCache
from .config import ModelConfig
from .dropout import FastDropout
from .positional import sinusoidal_encoding


@dataclass
class EncoderOutput:
    memory: torch.Tensor  # (B, S, D)
    src_mask: torch.Tensor  # (B, S) bool, True at real tokens
    self_attn: list[torch.Tensor] | None  # per layer (B, H, S, S), when asked for


@dataclass
class StepOutput:
    logits: torch.Tensor  # (B, V) scores for the next token, before softmax
    self_attn: list[torch.Tensor] | None  # per layer (B, H, T): the new token over the T tokens so far
    cross_attn: list[torch.Tensor] | None  # per layer (B, H, S): the new token over the source


class FeedForward(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.linear1 = nn.Linear(config.d_model, config.d_ff)
        self.linear2 = nn.Linear(config.d_ff, config.d_model)
        self.activation = F.relu if config.activation == "relu" else F.gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.activation(self.linear1(x)))  # (B, L, D)


class Sublayer(nn.Module):
    """Residual connection around one sub-layer, with LayerNorm after (post) or before (pre) it."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.pre = config.norm == "pre"
        self.norm = nn.LayerNorm(config.d_model)
        self.dropout = FastDropout(config.dropout)

    def input(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) if self.pre else x

    def output(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(y)
        return x if self.pre else self.norm(x)


class EncoderLayer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(config.d_model, config.n_heads, config.attention_dropout)
        self.ffn = FeedForward(config)
        self.attn_block = Sublayer(config)
        self.ffn_block = Sublayer(config)

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, S, D), key_mask (B, 1, 1, S) -> (B, S, D) and weights (B, H, S, S) or None."""
        h = self.attn_block.input(x)
        k, v = self.self_attn.project_kv(h)
        y, weights = self.self_attn(h, k, v, mask=key_mask, need_weights=need_weights)
        x = self.attn_block.output(x, y)
        x = self.ffn_block.output(x, self.ffn(self.ffn_block.input(x)))
        return x, weights


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(config.d_model, config.n_heads, config.attention_dropout)
        self.cross_attn = MultiHeadAttention(config.d_model, config.n_heads, config.attention_dropout)
        self.ffn = FeedForward(config)
        self.self_block = Sublayer(config)
        self.cross_block = Sublayer(config)
        self.ffn_block = Sublayer(config)

    def forward(
        self,
        x: torch.Tensor,
        cross_kv: tuple[torch.Tensor, torch.Tensor],
        key_mask: torch.Tensor,
        cache: KVCache | None = None,
        layer_index: int = 0,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """x (B, T, D); cross_kv each (B, H, S, Dh); key_mask (B, 1, 1, S).

        Without a cache, x is the whole target prefix and a causal mask applies. With one, x is the
        single newest position (T = 1): its keys/values are appended and it attends over all of them.
        Returns (B, T, D), self weights (B, H, T, T_total) and cross weights (B, H, T, S) or Nones.
        """
        h = self.self_block.input(x)
        k, v = self.self_attn.project_kv(h)  # (B, H, T, Dh)
        if cache is None:
            y, self_w = self.self_attn(h, k, v, is_causal=True, need_weights=need_weights)
        else:
            k, v = cache.append_self(layer_index, k, v)  # (B, H, T_total, Dh)
            y, self_w = self.self_attn(h, k, v, need_weights=need_weights)
        x = self.self_block.output(x, y)
        h = self.cross_block.input(x)
        y, cross_w = self.cross_attn(h, *cross_kv, mask=key_mask, need_weights=need_weights)
        x = self.cross_block.output(x, y)
        x = self.ffn_block.output(x, self.ffn(self.ffn_block.input(x)))
        return x, self_w, cross_w


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        if config.tie_embeddings:
            self.embed = nn.Embedding(config.src_vocab_size, d)
        else:
            self.src_embed = nn.Embedding(config.src_vocab_size, d)
            self.tgt_embed = nn.Embedding(config.tgt_vocab_size, d)
            self.lm_head = nn.Linear(d, config.tgt_vocab_size, bias=False)
        self.register_buffer("pe", sinusoidal_encoding(config.max_positions, d), persistent=False)
        self.embed_dropout = FastDropout(config.dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.n_encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.n_decoder_layers))
        # Pre-LN leaves the residual stream un-normalised, so each stack ends with one more LayerNorm.
        pre = config.norm == "pre"
        self.encoder_norm = nn.LayerNorm(d) if pre else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d) if pre else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                # N(0, d^-1/2): after the sqrt(d) input scaling, embeddings have unit scale like the
                # positional encodings, and as a tied output matrix they give logits of unit scale.
                nn.init.normal_(module.weight, mean=0.0, std=self.config.d_model**-0.5)

    # --- pieces -----------------------------------------------------------------------------------
    def src_embedding(self) -> nn.Embedding:
        return self.embed if self.config.tie_embeddings else self.src_embed

    def tgt_embedding(self) -> nn.Embedding:
        return self.embed if self.config.tie_embeddings else self.tgt_embed

    def output_weight(self) -> torch.Tensor:
        return self.embed.weight if self.config.tie_embeddings else self.lm_head.weight  # (V, D)

    def embed_tokens(self, ids: torch.Tensor, embedding: nn.Embedding, offset: int = 0) -> torch.Tensor:
        """ids (B, L) -> (B, L, D): scaled embeddings plus positional encodings from ``offset``."""
        length = ids.size(1)
        if offset + length > self.config.max_positions:
            raise ValueError(
                f"sequence of {offset + length} positions exceeds max_positions={self.config.max_positions}"
            )
        x = embedding(ids) * math.sqrt(self.config.d_model)  # (B, L, D)
        x = x + self.pe[offset : offset + length].to(x.dtype)  # (B, L, D)
        return self.embed_dropout(x)

    def key_mask(self, src_mask: torch.Tensor) -> torch.Tensor:
        return src_mask[:, None, None, :]  # (B, 1, 1, S)

    # --- training -------------------------------------------------------------------------------
    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced pass: src (B, S), tgt_in (B, T) ids -> logits (B, T, V). No softmax."""
        enc = self.encode(src)
        x = self.run_decoder(tgt_in, enc)[0]  # (B, T, D)
        return F.linear(x, self.output_weight())  # (B, T, V)

    # --- inference ------------------------------------------------------------------------------
    def encode(self, src: torch.Tensor, need_weights: bool = False) -> EncoderOutput:
        """src (B, S) ids, padded with pad_id -> memory (B, S, D), plus per-layer (B, H, S, S) weights."""
        src_mask = src != self.config.pad_id  # (B, S)
        key_mask = self.key_mask(src_mask)
        x = self.embed_tokens(src, self.src_embedding())
        weights = [] if need_weights else None
        for layer in self.encoder_layers:
            x, w = layer(x, key_mask, need_weights)
            if weights is not None:
                weights.append(w)
        return EncoderOutput(memory=self.encoder_norm(x), src_mask=src_mask, self_attn=weights)

    def run_decoder(
        self, tgt: torch.Tensor, enc: EncoderOutput, cache: KVCache | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None, list[torch.Tensor] | None]:
        """tgt (B, T) -> hidden states (B, T, D) and per-layer self/cross weights when asked for."""
        offset = cache.length if cache is not None else 0
        x = self.embed_tokens(tgt, self.tgt_embedding(), offset)  # (B, T, D)
        key_mask = self.key_mask(enc.src_mask)
        if cache is not None and not cache.has_cross:
            for layer, entry in zip(self.decoder_layers, cache.layers):
                entry.cross_k, entry.cross_v = layer.cross_attn.project_kv(enc.memory)  # (B, H, S, Dh)
        self_ws = [] if need_weights else None
        cross_ws = [] if need_weights else None
        for i, layer in enumerate(self.decoder_layers):
            if cache is not None:
                cross_kv = (cache.layers[i].cross_k, cache.layers[i].cross_v)
            else:
                cross_kv = layer.cross_attn.project_kv(enc.memory)
            x, sw, cw = layer(x, cross_kv, key_mask, cache, i, need_weights)
            if need_weights:
                self_ws.append(sw)
                cross_ws.append(cw)
        if cache is not None:
            cache.length += tgt.size(1)
        return self.decoder_norm(x), self_ws, cross_ws

    def new_cache(self) -> KVCache:
        return KVCache.empty(self.config.n_decoder_layers)

    def decode_step(
        self, token: torch.Tensor, enc: EncoderOutput, cache: KVCache, need_weights: bool = False
    ) -> StepOutput:
        """One incremental step: token (B,) is the latest target token, at position ``cache.length``.

        Appends its keys/values to ``cache`` (cross-attention keys/values are computed from the
        encoder memory on the first step only) and returns next-token logits (B, V) and, when asked,
        per-layer self-attention (B, H, T) and cross-attention (B, H, S) of this step.
        """
        x, self_ws, cross_ws = self.run_decoder(token[:, None], enc, cache, need_weights)  # (B, 1, D)
        logits = F.linear(x[:, -1], self.output_weight())  # (B, V)
        if not need_weights:
            return StepOutput(logits, None, None)
        return StepOutput(logits, [w[:, :, -1] for w in self_ws], [w[:, :, -1] for w in cross_ws])

    def decode_prefix(self, prefix: torch.Tensor, enc: EncoderOutput, need_weights: bool = False) -> StepOutput:
        """The cache-free equivalent of ``decode_step``: recompute the whole prefix (B, T) from scratch."""
        x, self_ws, cross_ws = self.run_decoder(prefix, enc, None, need_weights)  # (B, T, D)
        logits = F.linear(x[:, -1], self.output_weight())  # (B, V)
        if not need_weights:
            return StepOutput(logits, None, None)
        return StepOutput(logits, [w[:, :, -1] for w in self_ws], [w[:, :, -1] for w in cross_ws])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
