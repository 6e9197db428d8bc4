"""Encoder-decoder Transformer (Vaswani et al. 2017) with explicit, cache-driven incremental decoding.

Nothing is stored on the modules between calls: attention weights come back as return values and the
decoder's keys/values live in a ``KVCache`` that the caller owns. The incremental step at inference
runs ``DecoderLayer.step``, the same arithmetic as ``DecoderLayer.forward`` without the per-module
Python overhead; ``attention.reference_path()`` switches it off, to prove the two agree bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import nn

from .attention import HeadMask, MultiHeadAttention, attention_weights, key_bias, layer_mask
from .cache import KVCache
from .config import ModelConfig
from .dropout import FastDropout
from .positional import sinusoidal_encoding


@dataclass
class EncoderOutput:
    memory: torch.Tensor  # (B, S, D)
    src_mask: torch.Tensor  # (B, S) bool, True at real tokens
    self_attn: list[torch.Tensor] | None  # per layer (B, H, S, S), when asked for

    @cached_property
    def key_bias(self) -> torch.Tensor | None:
        """Additive (B, 1, 1, S) padding bias for attention over the source, None without padding."""
        return key_bias(self.src_mask, self.memory.dtype)


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
        self.activation = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu}[config.activation]

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
        x = x + (self.dropout(y) if self.training else y)  # no module call per sub-layer at inference
        return x if self.pre else self.norm(x)


class EncoderLayer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(config.d_model, config.n_heads, config.attention_dropout)
        self.ffn = FeedForward(config)
        self.attn_block = Sublayer(config)
        self.ffn_block = Sublayer(config)

    def forward(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None,
        need_weights: bool = False,
        head_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, S, D), key_mask (B, 1, 1, S) -> (B, S, D) and weights (B, H, S, S) or None."""
        h = self.attn_block.input(x)
        q, k, v = self.self_attn.project_qkv(h)  # (B, H, S, Dh) each
        y, weights = self.self_attn(h, k, v, mask=key_mask, need_weights=need_weights, head_mask=head_mask, q=q)
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
        key_mask: torch.Tensor | None,
        cache: KVCache | None = None,
        layer_index: int = 0,
        need_weights: bool = False,
        head_mask: HeadMask | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """x (B, T, D); cross_kv each (B, H, S, Dh); key_mask (B, 1, 1, S) or None.

        Without a cache, x is the whole target prefix and a causal mask applies. With one, x is the
        single newest position (T = 1): its keys/values are appended and it attends over all of them.
        Returns (B, T, D), self weights (B, H, T, T_total) and cross weights (B, H, T, S) or Nones.
        """
        self_mask = layer_mask(head_mask, "decoder_self", layer_index)
        h = self.self_block.input(x)
        q, k, v = self.self_attn.project_qkv(h)  # (B, H, T, Dh) each
        if cache is None:
            y, self_w = self.self_attn(h, k, v, is_causal=True, need_weights=need_weights, head_mask=self_mask, q=q)
        else:
            k, v = cache.append_self(layer_index, k, v)  # (B, H, T_total, Dh)
            # One new query sees every cached position; several (a forced chunk) need the causal mask.
            y, self_w = self.self_attn(h, k, v, is_causal=q.size(2) > 1, need_weights=need_weights,
                                       head_mask=self_mask, q=q)
        x = self.self_block.output(x, y)
        h = self.cross_block.input(x)
        y, cross_w = self.cross_attn(h, *cross_kv, mask=key_mask, need_weights=need_weights,
                                     head_mask=layer_mask(head_mask, "cross", layer_index))
        x = self.cross_block.output(x, y)
        x = self.ffn_block.output(x, self.ffn(self.ffn_block.input(x)))
        return x, self_w, cross_w

    def step_weights(self) -> tuple | None:
        """The tensors ``step`` reads, gathered once per decoding (a cache holds them); None where ``step``
        does not apply: training, dynamic-int8 layers, or the reference path (``attention.reference_path``)."""
        sa, ca, ffn = self.self_attn, self.cross_attn, self.ffn
        qkv = sa.fused_qkv()
        linears = (sa.out_proj, ca.q_proj, ca.out_proj, ffn.linear1, ffn.linear2)
        if self.training or qkv is None or any(type(m) is not nn.Linear for m in linears):
            return None
        norms = (self.self_block.norm, self.cross_block.norm, self.ffn_block.norm)
        # module attributes read once here, not through nn.Module.__getattr__ at every step
        settings = (sa.n_heads, self.self_block.pre, ffn.activation)
        return (qkv, *((m.weight, m.bias) for m in linears), *((n.weight, n.bias, n.eps) for n in norms), settings)

    def step(
        self, x: torch.Tensor, cache: KVCache, layer_index: int, key_bias: torch.Tensor | None, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``forward`` for one new position x (B, 1, D) with a cache, at inference without a head mask.

        The same aten ops on the same tensors as ``forward`` (so the same bits, tests/test_search.py),
        without the module calls, attribute look-ups and masks that cost a batch-1 step a quarter of its
        time. Returns (B, 1, D) and, with ``need_weights``, self (B, H, 1, T) and cross (B, H, 1, S) weights.
        """
        entry = cache.layers[layer_index]
        qkv, self_out, cross_q, cross_out, ff1, ff2, *norms, (h, pre, activation) = entry.weights
        b, d = x.size(0), x.size(-1)

        def sublayer(x: torch.Tensor, norm: tuple, run) -> torch.Tensor:  # Sublayer.input/output at inference
            # torch.layer_norm is the kernel F.layer_norm calls, without its Python checks
            y = run(torch.layer_norm(x, (d,), *norm) if pre else x)
            return x + y if pre else torch.layer_norm(x + y, (d,), *norm)

        def self_attention(y: torch.Tensor) -> torch.Tensor:
            q, k, v = F.linear(y, *qkv).view(b, 1, 3, h, d // h).transpose(1, 3).unbind(2)  # (B, H, 1, Dh)
            k, v = cache.append_self(layer_index, k, v)  # (B, H, T, Dh)
            if need_weights:
                weights[0] = attention_weights(q, k, None)  # (B, H, 1, T)
            y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, 1, d)  # (B, 1, D)
            return F.linear(y, *self_out)

        def cross_attention(y: torch.Tensor) -> torch.Tensor:
            q = F.linear(y, *cross_q).view(b, 1, h, d // h).transpose(1, 2)  # (B, H, 1, Dh)
            if need_weights:
                weights[1] = attention_weights(q, entry.cross_k, key_bias)  # (B, H, 1, S)
            y = F.scaled_dot_product_attention(q, entry.cross_k, entry.cross_v, attn_mask=key_bias)  # (B, H, 1, Dh)
            return F.linear(y.transpose(1, 2).reshape(b, 1, d), *cross_out)

        weights: list[torch.Tensor | None] = [None, None]
        x = sublayer(x, norms[0], self_attention)
        x = sublayer(x, norms[1], cross_attention)
        x = sublayer(x, norms[2], lambda y: F.linear(activation(F.linear(y, *ff1)), *ff2))
        return x, weights[0], weights[1]


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
        # Zero-initialised and absent unless asked for, so existing checkpoints load strictly.
        self.output_bias = nn.Parameter(torch.zeros(config.tgt_vocab_size)) if config.output_bias else None
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

    def embed_tokens(
        self, ids: torch.Tensor, embedding: nn.Embedding, offset: int = 0, embeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        """ids (B, L) -> (B, L, D): scaled embeddings plus positional encodings from ``offset``.

        ``embeds`` (B, L, D), when given, replaces the looked-up rows (before the sqrt(d) scale): how
        attribution (model/explain/attribution.py) runs this very forward on interpolated embeddings.
        """
        length = ids.size(1)
        if offset + length > self.config.max_positions:
            raise ValueError(
                f"sequence of {offset + length} positions exceeds max_positions={self.config.max_positions}"
            )
        rows = F.embedding(ids, embedding.weight) if embeds is None else embeds  # (B, L, D); nn.Embedding's op
        x = rows * math.sqrt(self.config.d_model)  # (B, L, D)
        x = x + self.pe[offset : offset + length].to(x.dtype)  # (B, L, D)
        return self.embed_dropout(x) if self.training else x

    def key_mask(self, src_mask: torch.Tensor) -> torch.Tensor:
        return src_mask[:, None, None, :]  # (B, 1, 1, S)

    # --- training -------------------------------------------------------------------------------
    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, head_mask: HeadMask | None = None) -> torch.Tensor:
        """Teacher-forced pass: src (B, S), tgt_in (B, T) ids -> logits (B, T, V). No softmax."""
        return self.teacher_forced(tgt_in, self.encode(src, head_mask=head_mask), head_mask)

    def teacher_forced(self, tgt_in: torch.Tensor, enc: EncoderOutput, head_mask: HeadMask | None = None) -> torch.Tensor:
        """tgt_in (B, T) ids over an already encoded source -> logits (B, T, V): ``forward`` after the encoder."""
        x = self.run_decoder(tgt_in, enc, head_mask=head_mask)[0]  # (B, T, D)
        return self.project(x)  # (B, T, V)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder states (..., D) -> next-token logits (..., V)."""
        if not self.config.tie_embeddings and not isinstance(self.lm_head.weight, torch.Tensor):
            y = self.lm_head(x)  # a dynamically quantised lm_head (model.quantize) is called, not read
            return y if self.output_bias is None else y + self.output_bias
        return F.linear(x, self.output_weight(), self.output_bias)

    # --- inference ------------------------------------------------------------------------------
    def encode(
        self,
        src: torch.Tensor,
        need_weights: bool = False,
        head_mask: HeadMask | None = None,
        embeds: torch.Tensor | None = None,
    ) -> EncoderOutput:
        """src (B, S) ids, padded with pad_id -> memory (B, S, D), plus per-layer (B, H, S, S) weights.

        ``embeds`` (B, S, D) replaces the source's token embeddings (``embed_tokens``); ``src`` still gives the padding.
        """
        src_mask = src != self.config.pad_id  # (B, S)
        x = self.embed_tokens(src, self.src_embedding(), embeds=embeds)
        bias = key_bias(src_mask, x.dtype)  # (B, 1, 1, S) or None
        weights = [] if need_weights else None
        for i, layer in enumerate(self.encoder_layers):
            x, w = layer(x, bias, need_weights, layer_mask(head_mask, "encoder", i))
            if weights is not None:
                weights.append(w)
        return EncoderOutput(memory=self.encoder_norm(x), src_mask=src_mask, self_attn=weights)

    def run_decoder(
        self,
        tgt: torch.Tensor,
        enc: EncoderOutput,
        cache: KVCache | None = None,
        need_weights: bool = False,
        head_mask: HeadMask | None = None,
        states: list[torch.Tensor] | None = None,
        embeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None, list[torch.Tensor] | None]:
        """tgt (B, T) -> hidden states (B, T, D) and per-layer self/cross weights when asked for.

        ``states``, when given a list, receives each decoder layer's output (B, T, D) (the logit lens).
        ``embeds`` (B, T, D) replaces the target's token embeddings (``embed_tokens``).
        """
        offset = cache.length if cache is not None else 0
        x = self.embed_tokens(tgt, self.tgt_embedding(), offset, embeds)  # (B, T, D)
        key_mask = enc.key_bias
        if cache is not None and not cache.has_cross:
            for layer, entry in zip(self.decoder_layers, cache.layers):
                entry.cross_k, entry.cross_v = layer.cross_attn.project_kv(enc.memory)  # (B, H, S, Dh)
        self_ws = [] if need_weights else None
        cross_ws = [] if need_weights else None
        if cache is not None and cache.length == 0:
            for layer, entry in zip(self.decoder_layers, cache.layers):
                entry.weights = layer.step_weights()
        lean = cache is not None and tgt.size(1) == 1 and head_mask is None and states is None
        if lean and cache.layers[0].weights is not None:  # the incremental step of the app and the CLI
            for i, layer in enumerate(self.decoder_layers):
                x, sw, cw = layer.step(x, cache, i, key_mask, need_weights)
                if need_weights:
                    self_ws.append(sw)
                    cross_ws.append(cw)
            cache.length += 1
            return self.decoder_norm(x), self_ws, cross_ws
        for i, layer in enumerate(self.decoder_layers):
            if cache is not None:
                cross_kv = (cache.layers[i].cross_k, cache.layers[i].cross_v)
            else:
                cross_kv = layer.cross_attn.project_kv(enc.memory)
            x, sw, cw = layer(x, cross_kv, key_mask, cache, i, need_weights, head_mask)
            if states is not None:
                states.append(x)
            if need_weights:
                self_ws.append(sw)
                cross_ws.append(cw)
        if cache is not None:
            cache.length += tgt.size(1)
        return self.decoder_norm(x), self_ws, cross_ws

    def new_cache(self, capacity: int = 16) -> KVCache:
        """An empty cache whose self-attention buffers start with room for ``capacity`` positions."""
        return KVCache.empty(self.config.n_decoder_layers, capacity)

    def decode_step(
        self,
        token: torch.Tensor,
        enc: EncoderOutput,
        cache: KVCache,
        need_weights: bool = False,
        head_mask: HeadMask | None = None,
    ) -> StepOutput:
        """One incremental step: token (B,) is the latest target token, at position ``cache.length``.

        Appends its keys/values to ``cache`` (cross-attention keys/values are computed from the
        encoder memory on the first step only) and returns next-token logits (B, V) and, when asked,
        per-layer self-attention (B, H, T) and cross-attention (B, H, S) of this step.
        """
        x, self_ws, cross_ws = self.run_decoder(token[:, None], enc, cache, need_weights, head_mask)  # (B, 1, D)
        logits = self.project(x[:, -1])  # (B, V)
        if not need_weights:
            return StepOutput(logits, None, None)
        return StepOutput(logits, [w[:, :, -1] for w in self_ws], [w[:, :, -1] for w in cross_ws])

    def decode_prefix(
        self, prefix: torch.Tensor, enc: EncoderOutput, need_weights: bool = False, head_mask: HeadMask | None = None
    ) -> StepOutput:
        """The cache-free equivalent of ``decode_step``: recompute the whole prefix (B, T) from scratch."""
        x, self_ws, cross_ws = self.run_decoder(prefix, enc, None, need_weights, head_mask)  # (B, T, D)
        logits = self.project(x[:, -1])  # (B, V)
        if not need_weights:
            return StepOutput(logits, None, None)
        return StepOutput(logits, [w[:, :, -1] for w in self_ws], [w[:, :, -1] for w in cross_ws])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
