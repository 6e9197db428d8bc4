"""Encoder-decoder Transformer (Vaswani et al. 2017) with explicit, cache-driven incremental decoding.

Attention weights come back as return values and the decoder's keys/values live in a ``KVCache`` that
the caller owns; the modules keep only what is derived from their own weights (the fused q/k/v weight,
the tensors a decoder layer's cached step reads). One ``DecoderLayer.forward`` serves training, the
teacher-forced pass and the incremental step; ``attention.reference_path()`` makes it call the modules
with separate q/k/v products, to prove the lean step agrees with them bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .attention import HeadMask, MultiHeadAttention, attend, fusing, key_bias, layer_mask
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


def connect(
    x: torch.Tensor, run: Callable[[torch.Tensor], torch.Tensor], norm: Callable[[torch.Tensor], torch.Tensor],
    pre: bool, dropout: nn.Module | None = None,
) -> torch.Tensor:
    """The sub-layer connection (the Annotated Transformer's): ``x + run(norm(x))`` with pre-LN,
    ``norm(x + run(x))`` with post-LN; x (B, L, D) -> (B, L, D). ``dropout`` (training) acts on run's output."""
    y = run(norm(x) if pre else x)
    if dropout is not None:
        y = dropout(y)
    return x + y if pre else norm(x + y)


class Sublayer(nn.Module):
    """The LayerNorm and dropout around one sub-layer, and where the norm sits (``connect``)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.pre = config.norm == "pre"
        self.norm = nn.LayerNorm(config.d_model)
        self.dropout = FastDropout(config.dropout)

    def around(self, x: torch.Tensor, run: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``connect`` with this block's modules: x (B, L, D) -> (B, L, D)."""
        return connect(x, run, self.norm, self.pre, self.dropout if self.training else None)


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
        weights: list[torch.Tensor | None] = [None]

        def self_attention(h: torch.Tensor) -> torch.Tensor:
            q, k, v = self.self_attn.project_qkv(h)  # (B, H, S, Dh) each
            y, weights[0] = self.self_attn(h, k, v, mask=key_mask, need_weights=need_weights, head_mask=head_mask, q=q)
            return y

        x = self.attn_block.around(x, self_attention)
        x = self.ffn_block.around(x, self.ffn)
        return x, weights[0]


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention over the source and a feed-forward net, each inside a
    sub-layer connection: one ``forward`` for training, the full teacher-forced pass and the cached step.

    The sub-layers call one of two sets of the same operations. Without a cache, in training, with
    gradients or on the reference path, the modules themselves (so forward hooks see every call, as the
    probes in ``model/explain`` need, and dynamic-int8 layers run). In a cached decoding at inference,
    the same aten ops on tensors the layer gathers at the decoding's first step (``lean_weights``),
    without the module calls and attribute look-ups that cost a batch-1 step a quarter of its time.
    Same ops on the same tensors, so the same bits (tests/test_search.py).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(config.d_model, config.n_heads, config.attention_dropout)
        self.cross_attn = MultiHeadAttention(config.d_model, config.n_heads, config.attention_dropout)
        self.ffn = FeedForward(config)
        self.self_block = Sublayer(config)
        self.cross_block = Sublayer(config)
        self.ffn_block = Sublayer(config)
        self._lean: LeanWeights | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_lean": None}  # a copy (model.quantize) gathers its own tensors

    def lean_weights(self, cache: KVCache | None) -> "LeanWeights | None":
        """The tensors the cached step reads, or None where the modules run. Gathered when a decoding
        starts (``cache.length == 0``) and kept on the layer for its later steps."""
        if cache is None or self.training or torch.is_grad_enabled() or not fusing():
            return None
        if cache.length == 0:
            self._lean = self.gather()
        return self._lean

    def gather(self) -> "LeanWeights | None":
        """Read every tensor of the layer once; None for layers the lean ops cannot run (dynamic int8)."""
        sa, ca, ffn = self.self_attn, self.cross_attn, self.ffn
        qkv = sa.fused_qkv()
        linears = (sa.out_proj, ca.q_proj, ca.out_proj, ffn.linear1, ffn.linear2)
        if qkv is None or any(type(m) is not nn.Linear for m in linears):
            return None
        shape = (sa.q_proj.in_features,)

        def layer_norm(n: nn.LayerNorm) -> Callable[[torch.Tensor], torch.Tensor]:
            # torch.layer_norm is the kernel nn.LayerNorm calls, without its Python checks
            return lambda y, w=n.weight, b=n.bias, eps=n.eps: torch.layer_norm(y, shape, w, b, eps)

        norms = tuple(layer_norm(blk.norm) for blk in self.blocks())
        return LeanWeights(qkv, *((m.weight, m.bias) for m in linears), norms,  # type: ignore[arg-type]
                           sa.n_heads, self.self_block.pre, ffn.activation)

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
        """x (B, T, D); cross_kv each (B, H, S, Dh); key_mask: the additive (B, 1, 1, S) source bias or None.

        Without a cache, x is the whole target prefix and a causal mask applies. With one, x holds the
        newest T positions (one per step; a forced chunk may hold more): their keys/values are appended
        and they attend over every cached position. Returns (B, T, D), self weights (B, H, T, T_total)
        and cross weights (B, H, T, S) when ``need_weights``, else Nones.
        """
        lean = self.lean_weights(cache)
        causal = cache is None or x.size(1) > 1  # one new query sees every cached position
        self_mask = layer_mask(head_mask, "decoder_self", layer_index)
        cross_mask = layer_mask(head_mask, "cross", layer_index)
        weights: list[torch.Tensor | None] = [None, None]
        if lean is None:  # the modules: training, hooks, int8, the reference path
            sa, ca = self.self_attn, self.cross_attn
            project, norms, pre, ffn = sa.project_qkv, [b.norm for b in self.blocks()], self.self_block.pre, self.ffn

            def attend_self(h, q, k, v):
                return sa(h, k, v, is_causal=causal, need_weights=need_weights, head_mask=self_mask, q=q)

            def attend_source(h):
                return ca(h, *cross_kv, mask=key_mask, need_weights=need_weights, head_mask=cross_mask)
        else:  # the same ops on the gathered tensors
            qkv, self_out, cross_q, cross_out, ff1, ff2, norms, heads, pre, activation = lean
            b, t, d = x.shape

            def project(h):
                return F.linear(h, *qkv).view(b, t, 3, heads, d // heads).transpose(1, 3).unbind(2)  # (B, H, T, Dh) x 3

            def attend_self(h, q, k, v):
                y, w = attend(q, k, v, None, causal, need_weights, self_mask)  # (B, T, D)
                return F.linear(y, *self_out), w

            def attend_source(h):
                q = F.linear(h, *cross_q).view(b, t, heads, d // heads).transpose(1, 2)  # (B, H, T, Dh)
                y, w = attend(q, *cross_kv, key_mask, False, need_weights, cross_mask)  # (B, T, D)
                return F.linear(y, *cross_out), w

            def ffn(h):
                return F.linear(activation(F.linear(h, *ff1)), *ff2)

        def self_attention(h: torch.Tensor) -> torch.Tensor:
            q, k, v = project(h)  # (B, H, T, Dh) each
            if cache is not None:
                k, v = cache.append_self(layer_index, k, v)  # (B, H, T_total, Dh)
            y, weights[0] = attend_self(h, q, k, v)
            return y

        def cross_attention(h: torch.Tensor) -> torch.Tensor:
            y, weights[1] = attend_source(h)
            return y

        drops = [blk.dropout for blk in self.blocks()] if self.training else [None, None, None]
        x = connect(x, self_attention, norms[0], pre, drops[0])
        x = connect(x, cross_attention, norms[1], pre, drops[1])
        x = connect(x, ffn, norms[2], pre, drops[2])
        return x, weights[0], weights[1]

    def blocks(self) -> tuple[Sublayer, Sublayer, Sublayer]:
        return self.self_block, self.cross_block, self.ffn_block


class LeanWeights(NamedTuple):
    """A decoder layer's tensors for the cached step (``DecoderLayer.gather``): linears as (weight, bias)."""

    qkv: tuple[torch.Tensor, torch.Tensor]  # (3D, D), (3D,): q, k, v stacked (MultiHeadAttention.fused_qkv)
    self_out: tuple[torch.Tensor, torch.Tensor]
    cross_q: tuple[torch.Tensor, torch.Tensor]
    cross_out: tuple[torch.Tensor, torch.Tensor]
    ff1: tuple[torch.Tensor, torch.Tensor]
    ff2: tuple[torch.Tensor, torch.Tensor]
    norms: tuple[Callable[[torch.Tensor], torch.Tensor], ...]  # the three LayerNorms, as functions
    heads: int
    pre: bool
    activation: Callable[[torch.Tensor], torch.Tensor]


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
        for i, layer in enumerate(self.decoder_layers):
            if cache is not None:
                cross_kv = (cache.layers[i].cross_k, cache.layers[i].cross_v)
            else:
                cross_kv = layer.cross_attn.project_kv(enc.memory)
            # .forward, not the module call: no hook watches a whole layer (the probes watch its parts), and
            # the call's machinery is a measurable share of a batch-1 step
            x, sw, cw = layer.forward(x, cross_kv, key_mask, cache, i, need_weights, head_mask)
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
