"""The seed's arithmetic, from this model: parameters by part, training compute, training memory, and one
real training step measured by torch next to the estimate.

Everything is read off the model's own modules and its checkpoint's training record (``ckpt.training``, as
``training/loop.py`` writes it: ``target_tokens_seen``, ``wall_time_min``, ``steps`` and ``train_config``).
A record without those fields (a test checkpoint, an imported Marian model) gives ``"not recorded"``; the
memory figures then rest on stated assumptions (``ASSUMED``), never on silent defaults.

Training memory (bytes), for a batch of B rows, S source and T target tokens a row, d = d_model, f = d_ff,
H heads, V the output vocabulary, a = 2 under bf16 autocast else 4:

- weights, gradients, Adam's exp_avg and exp_avg_sq: 4·P each (the trainer keeps fp32 parameters; autocast
  casts copies), plus one 4-byte ``step`` counter per parameter tensor;
- activations: what autograd keeps between forward and backward (``activation_rows``), per encoder layer
  with n = B·S rows:
    linear inputs        (c + 2)·n·d·a    c = 3 under autocast (q, k and v each cast their own copy), 1 in fp32
    feed-forward hidden  k·n·f·a          k = 1 for relu (its output is the second linear's input), 2 otherwise
    attention q, k, v    3·n·d·4          the math kernel (the trainer's choice on CPU) computes in fp32
    probabilities        B·H·S·S·4        x3 with attention dropout (the softmax, its mask, the dropped copy)
    dropout masks        2·n·d·a          the mask takes the dtype of the sub-layer's output
    LayerNorm            n·d·4 + 2·n·4    input and (mean, rstd), per norm: 2 a layer (+1 final with pre-LN)
  per decoder layer with m = B·T rows: linear inputs (c + 4)·m·d·a, cross-attention key/value inputs 2·n·d·a
  (fp32: the encoder output once for all layers), feed-forward k·m·f·a, self q, k, v 3·m·d·4, cross q
  m·d·4 and k, v 2·n·d·4, probabilities B·H·T·(T + S)·4, dropout 3·m·d·a, LayerNorm 3 a layer (+1 final);
  embeddings: the ids (8 bytes each) and their dropout masks (fp32); under autocast the bf16 copies of every
  linear weight (2 bytes each); and the loss over N = B·T kept positions: the fused loss of
  ``model/loss.py`` keeps dL/dh N·d·a and dL/dW V·d·4; ``F.cross_entropy`` over the logits keeps the
  N·V·4 log-probabilities, the projection's input N·d·a, the targets and ignore mask (9 bytes a position) and
  (autocast) a bf16 copy of the V·d matrix. The batch has no padding. Small 0-dim scalars (a few bytes) are
  left out, and so are the transient buffers of the backward pass (the RSS growth shows them).

Training compute: C ≈ 6·P·D (2 FLOPs per weight per token forward, twice that backward), with D the record's
*target* tokens seen (real, non-pad positions): the record does not count source tokens, which run through
the encoder too; ``training_compute`` also gives the count split by where each weight runs.
"""
from __future__ import annotations

import contextlib
import math
import resource
import sys
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..config import ModelConfig
from ..loss import linear_cross_entropy
from ..memory import kv_cross_bytes_formula, kv_self_bytes_formula, weight_bytes
from ..transformer import Transformer

NOT_RECORDED = "not recorded"
TYPICAL_LENGTH = 32  # tokens a row on each side: the record keeps the batch budget, not the lengths
MEASURE_TOKENS = 1024  # padded tokens a side in the measured step: about a second on the 2-core dev machine
MEASURE_MAX_BYTES = 3 * 2**29  # 1.5 GiB: a measurement in the served app may not take more
PARAM_BYTES = 4  # fp32 parameters, gradients and Adam moments, as the trainer keeps them
# What a record without ``train_config`` is measured with: torch's Adam defaults, fp32, no smoothing.
ASSUMED = {"max_tokens": 4096, "bf16": False, "label_smoothing": 0.0, "beta1": 0.9, "beta2": 0.999,
           "adam_eps": 1e-8, "peak_lr": 1e-3, "clip_norm": 0.0}
LossFn = Callable[..., torch.Tensor]


# --- parameters --------------------------------------------------------------------------------------------
def _part_of(name: str) -> tuple[str, str]:
    """(stack, part) of a parameter from its state-dict name."""
    top = {"embed.weight": ("embeddings", "shared embedding: source, target and output projection"),
           "src_embed.weight": ("embeddings", "source embedding"),
           "tgt_embed.weight": ("embeddings", "target embedding"),
           "lm_head.weight": ("embeddings", "output projection"),
           "output_bias": ("output", "output bias")}
    if name in top:
        return top[name]
    head = name.split(".")
    if head[0] in ("encoder_norm", "decoder_norm"):
        return head[0].split("_")[0], "final LayerNorm"
    if head[0] in ("encoder_layers", "decoder_layers") and len(head) > 2:
        stack, module = head[0].split("_")[0], head[2]
        if module == "self_attn":
            return stack, "self-attention q, k, v, out"
        if module == "cross_attn":
            return stack, "cross-attention q, k, v, out"
        if module == "ffn":
            return stack, "feed-forward"
        if module.endswith("_block"):
            return stack, "LayerNorms"
    return "other", name


def _part_formula(config: ModelConfig, stack: str, part: str) -> tuple[str, int] | None:
    """The part's size from the config alone, as text and value (None where no formula applies)."""
    d, f = config.d_model, config.d_ff
    layers = config.n_encoder_layers if stack == "encoder" else config.n_decoder_layers
    if stack == "embeddings":
        v = config.tgt_vocab_size if part in ("target embedding", "output projection") else config.src_vocab_size
        return f"V × d = {v:,} × {d}", v * d
    if part == "output bias":
        return f"V = {config.tgt_vocab_size:,}", config.tgt_vocab_size
    if part.endswith("q, k, v, out"):
        return f"layers × 4 × (d² + d) = {layers} × 4 × ({d}² + {d})", layers * 4 * (d * d + d)
    if part == "feed-forward":
        return f"layers × (2·d·d_ff + d_ff + d) = {layers} × (2·{d}·{f} + {f} + {d})", layers * (2 * d * f + f + d)
    if part == "LayerNorms":
        per = 2 if stack == "encoder" else 3
        return f"layers × {per} × 2d = {layers} × {per} × 2·{d}", layers * per * 2 * d
    if part == "final LayerNorm":
        return f"2d = 2·{d}", 2 * d
    return None


def parameters_by_part(model: Transformer) -> list[dict[str, Any]]:
    """Parameters counted on the model's own tensors, grouped by part, each with its config formula.

    Rows: {"stack", "part", "parameters", "share", "formula", "formula_value"}, in the model's order, the
    positional table (a buffer: 0 parameters) after the embeddings, and a last row with stack "total" whose
    count is ``model.num_parameters()``. A tied embedding is one tensor, counted once.
    """
    counts: dict[tuple[str, str], int] = {}
    for name, p in model.named_parameters():  # named_parameters yields a shared (tied) tensor once
        key = _part_of(name)
        counts[key] = counts.get(key, 0) + p.numel()
    total = sum(counts.values())
    rows = []
    for (stack, part), n in counts.items():
        formula = _part_formula(model.config, stack, part)
        rows.append({"stack": stack, "part": part, "parameters": n, "share": n / total,
                     "formula": formula[0] if formula else None, "formula_value": formula[1] if formula else None})
    after = max((i + 1 for i, r in enumerate(rows) if r["stack"] == "embeddings"), default=0)
    rows.insert(after, _positional_row(model))
    rows.append({"stack": "total", "part": "all parameters", "parameters": total, "share": 1.0,
                 "formula": None, "formula_value": None})
    return rows


def _positional_row(model: Transformer) -> dict[str, Any]:
    p, d = model.pe.shape  # (max_positions, D)
    return {"stack": "positional", "part": f"sinusoidal table: a fixed buffer of {p} × {d} values, not trained",
            "parameters": 0, "share": 0.0, "formula": "0 (a buffer)", "formula_value": 0, "buffer_values": p * d}


def _linear_weights(model: Transformer) -> dict[str, int]:
    """Matmul weights by the tokens they multiply: source (encoder, cross-attention k/v) or target (the rest,
    output projection included). Biases, LayerNorms and embedding look-ups are not multiplications."""
    src = sum(m.weight.numel() for m in model.encoder_layers.modules() if isinstance(m, nn.Linear))
    tgt = 0
    for layer in model.decoder_layers:
        for name, m in layer.named_modules():
            if isinstance(m, nn.Linear):
                if name in ("cross_attn.k_proj", "cross_attn.v_proj"):
                    src += m.weight.numel()
                else:
                    tgt += m.weight.numel()
    return {"source_side": src, "target_side": tgt + model.output_weight().numel()}


def _embedding_parameters(model: Transformer) -> int:
    return sum(r["parameters"] for r in parameters_by_part(model) if r["stack"] == "embeddings")


# --- the record --------------------------------------------------------------------------------------------
def _number(record: dict, key: str) -> float | None:
    value = record.get(key) if isinstance(record, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        else None


def training_settings(training: dict | None) -> dict[str, Any]:
    """The step's recipe from ``train_config``, each missing field taken from ``ASSUMED`` and named in "assumed"."""
    tc = training.get("train_config") if isinstance(training, dict) else None
    tc = tc if isinstance(tc, dict) else {}
    out: dict[str, Any] = {}
    assumed = []
    for key, default in ASSUMED.items():
        value = tc.get(key)
        ok = isinstance(value, bool) if isinstance(default, bool) else \
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
        ok = ok and (key != "max_tokens" or value >= 1)
        out[key] = value if ok else default
        if not ok:
            assumed.append(key)
    out["max_tokens"] = int(out["max_tokens"])
    out["assumed"] = assumed
    out["recorded"] = not assumed
    return out


def recorded_batch(config: ModelConfig, training: dict | None) -> dict[str, Any]:
    """The batch the record's budget holds: ``max_tokens`` padded tokens a side, TYPICAL_LENGTH tokens a row."""
    settings = training_settings(training)
    length = min(TYPICAL_LENGTH, config.max_positions)
    rows = max(1, settings["max_tokens"] // length)
    how = "max_tokens" + (" assumed" if "max_tokens" in settings["assumed"] else " recorded")
    return {"rows": rows, "src_len": length, "tgt_len": length, "tokens": rows * length,
            "source": f"{how} ({settings['max_tokens']:,} padded tokens a side), {length} tokens a row assumed"}


def _shape(config: ModelConfig, batch_shape: Any) -> tuple[int, int, int]:
    """(rows, source tokens, target tokens), checked: ValueError with the reason."""
    if not isinstance(batch_shape, (tuple, list)) or len(batch_shape) != 3 or \
            not all(isinstance(n, int) and not isinstance(n, bool) for n in batch_shape):
        raise ValueError(f"a batch shape is three whole numbers (rows, source tokens, target tokens), got {batch_shape!r}")
    b, s, t = batch_shape
    if b < 1 or not (1 <= s <= config.max_positions and 1 <= t <= config.max_positions):
        raise ValueError(f"batch shape {tuple(batch_shape)}: rows must be >= 1 and lengths 1..{config.max_positions}")
    return b, s, t


# --- compute -----------------------------------------------------------------------------------------------
def training_compute(model: Transformer, training: dict | None) -> dict[str, Any]:
    """C ≈ 6·P·D for the recorded run, next to its wall time, and the forward cost of inference.

    P is every parameter (the tied embedding once), D the record's ``target_tokens_seen``. "refined" counts
    6 FLOPs per matmul weight per token it multiplies: encoder and cross-attention k/v weights per *source*
    token (not recorded: taken equal to the target tokens), the rest and the output projection per target
    token. Attention scores (4·L·d per token per attention layer forward) and padding are outside both;
    ``padded_bound`` says how many token slots the steps could have computed on at most.
    """
    p = model.num_parameters()
    emb = _embedding_parameters(model)
    sides = _linear_weights(model)
    out: dict[str, Any] = {"parameters": p, "non_embedding_parameters": p - emb, **sides}
    out["inference"] = {
        "flops_per_token": 2 * p, "formula": f"2·P = 2 × {p:,}",
        "per_target_token": 2 * sides["target_side"], "per_source_token": 2 * sides["source_side"],
        "note": "forward only: 2 FLOPs per weight per token; each generated token runs the decoder and the "
                "output projection, each source token the encoder and the cross-attention keys/values once",
    }
    d_tokens = _number(training or {}, "target_tokens_seen")
    if d_tokens is None:
        out["training"] = {"recorded": False, "note": f"{NOT_RECORDED}: the training record has no target_tokens_seen"}
        return out
    c = 6 * p * d_tokens
    minutes = _number(training, "wall_time_min")
    steps = _number(training, "steps")
    settings = training_settings(training)
    refined = 6 * (sides["source_side"] + sides["target_side"]) * d_tokens
    run: dict[str, Any] = {
        "recorded": True, "tokens": int(d_tokens), "tokens_kind": "target tokens seen (real positions, no padding)",
        "flops": c, "formula": f"6 × P × D = 6 × {p:,} × {int(d_tokens):,}", "pf_days": c / (1e15 * 86400),
        "refined_flops": refined, "refined_formula": f"6 × ({sides['source_side']:,} × D_src + "
        f"{sides['target_side']:,} × D), D_src = D (source tokens not recorded)",
        "wall_time_min": minutes if minutes is not None else NOT_RECORDED,
        "achieved_flops_per_s": c / (minutes * 60) if minutes else NOT_RECORDED,
        "hardware": training.get("hardware", NOT_RECORDED), "steps": int(steps) if steps else NOT_RECORDED,
    }
    if steps and "max_tokens" not in settings["assumed"]:
        slots = int(steps) * settings["max_tokens"]
        run["padded_bound"] = {"token_slots": slots, "flops": 6 * p * slots,
                               "note": f"at most steps × max_tokens = {int(steps):,} × {settings['max_tokens']:,} "
                                       "padded positions a side were computed on"}
    out["training"] = run
    return out


# --- memory: the estimate ----------------------------------------------------------------------------------
def _row(group: str, name: str, count: int, elements: int, bytes_per: int) -> dict[str, Any]:
    return {"group": group, "name": name, "count": count, "elements": elements, "bytes_per_element": bytes_per,
            "bytes": count * elements * bytes_per}


def activation_rows(model: Transformer, shape: tuple[int, int, int], bf16: bool, loss: str = "fused") -> list[dict]:
    """What autograd saves in one training step of ``shape`` (rows, S, T), tensor kinds as in the module doc.

    ``loss`` is "fused" (model/loss.py: projection and loss fused) or "logits" (``F.cross_entropy`` over
    the N × V logits). Each row: {"group", "name", "count", "elements" (per tensor), "bytes_per_element", "bytes"}.
    """
    if loss not in ("fused", "logits"):
        raise ValueError(f"loss must be 'fused' or 'logits', got {loss!r}")
    cfg = model.config
    b, s, t = _shape(cfg, shape)
    d, f, h, le, ld = cfg.d_model, cfg.d_ff, cfg.n_heads, cfg.n_encoder_layers, cfg.n_decoder_layers
    ns, nt = b * s, b * t
    a = 2 if bf16 else 4
    copies = 3 if bf16 else 1  # autocast casts a shared input once per linear that reads it
    hidden = 1 if cfg.activation == "relu" else 2  # relu's backward reads its output, gelu/silu their input
    drop = cfg.dropout > 0
    probs = 3 if cfg.attention_dropout > 0 else 1
    pre = int(cfg.norm == "pre")
    rows = [
        _row("encoder", "linear inputs (q, k, v, out, feed-forward in)", (copies + 2) * le, ns * d, a),
        _row("encoder", "feed-forward hidden", hidden * le, ns * f, a),
        _row("encoder", "attention q, k, v (fp32 math kernel)", 3 * le, ns * d, 4),
        _row("encoder", "attention probabilities", probs * le, b * h * s * s, 4),
        _row("encoder", "dropout masks", 2 * le * drop, ns * d, a),
        _row("encoder", "LayerNorm inputs", 2 * le + pre, ns * d, 4),
        _row("encoder", "LayerNorm mean and rstd", 2 * (2 * le + pre), ns, 4),
        _row("decoder", "linear inputs (q, k, v, out; cross q, out; feed-forward in)", (copies + 4) * ld, nt * d, a),
        # fp32: the encoder output itself, one tensor read by every layer; bf16: a cast copy per k and v
        _row("decoder", "cross-attention key/value inputs", 2 * ld if bf16 else 1, ns * d, a),
        _row("decoder", "feed-forward hidden", hidden * ld, nt * f, a),
        _row("decoder", "self-attention q, k, v (fp32 math kernel)", 3 * ld, nt * d, 4),
        _row("decoder", "cross-attention q", ld, nt * d, 4),
        _row("decoder", "cross-attention k, v", 2 * ld, ns * d, 4),
        _row("decoder", "self-attention probabilities", probs * ld, b * h * t * t, 4),
        _row("decoder", "cross-attention probabilities", probs * ld, b * h * t * s, 4),
        _row("decoder", "dropout masks", 3 * ld * drop, nt * d, a),
        _row("decoder", "LayerNorm inputs", 3 * ld + pre, nt * d, 4),
        _row("decoder", "LayerNorm mean and rstd", 2 * (3 * ld + pre), nt, 4),
        _row("embeddings", "source ids", 1, ns, 8),
        _row("embeddings", "target ids", 1, nt, 8),
        _row("embeddings", "embedding dropout masks (source)", int(drop), ns * d, 4),
        _row("embeddings", "embedding dropout masks (target)", int(drop), nt * d, 4),
    ]
    if bf16:
        lin = sum(m.weight.numel() for stack in (model.encoder_layers, model.decoder_layers)
                  for m in stack.modules() if isinstance(m, nn.Linear))
        rows.append(_row("weights", "bf16 copies of the layers' linear weights (autocast)", 1, lin, 2))
    v = cfg.tgt_vocab_size
    rows.append(_row("loss", "kept-position mask", 1, nt, 1))
    if loss == "fused":
        rows += [_row("loss", "dL/dh, kept positions (fused loss)", 1, nt * d, a),
                 _row("loss", "dL/dW of the output matrix (fused loss)", 1, v * d, 4)]
        if cfg.output_bias:
            rows.append(_row("loss", "dL/db of the output bias (fused loss)", 1, v, 4))
    else:
        rows += [_row("loss", "projection input, kept positions", 1, nt * d, a),
                 _row("loss", "log-probabilities (N × V)", 1, nt * v, 4),
                 _row("loss", "targets and ignore mask", 1, nt, 9)]
        if bf16:
            rows.append(_row("loss", "bf16 copy of the output matrix (autocast)", 1, v * d, 2))
    return [r for r in rows if r["count"]]


def training_memory(model: Transformer, training: dict | None, batch_shape: tuple[int, int, int] | None = None,
                    loss: str = "fused") -> dict[str, Any]:
    """The analytic memory of one training step: weights, gradients, Adam's moments and the activations.

    ``batch_shape`` (rows, S, T) defaults to ``recorded_batch``; bf16 comes from the record (else fp32,
    named in "assumed"). Both losses' activations are given ("activations_by_loss"); ``loss`` picks the
    one in "activations" and "total". Bytes throughout.
    """
    settings = training_settings(training)
    batch = recorded_batch(model.config, training)
    if batch_shape is not None:
        b, s, t = _shape(model.config, batch_shape)
        batch = {"rows": b, "src_len": s, "tgt_len": t, "tokens": b * max(s, t), "source": "given"}
    shape = (batch["rows"], batch["src_len"], batch["tgt_len"])
    p = model.num_parameters()
    tensors = len(list(model.parameters()))
    by_loss = {kind: activation_rows(model, shape, settings["bf16"], kind) for kind in ("fused", "logits")}
    out = {
        "settings": settings, "batch": batch, "loss": loss,
        "weights": p * PARAM_BYTES, "gradients": p * PARAM_BYTES,
        "adam_exp_avg": p * PARAM_BYTES, "adam_exp_avg_sq": p * PARAM_BYTES, "adam_step": tensors * 4,
        "formulas": {"weights": f"P × 4 = {p:,} × 4", "gradients": f"P × 4 = {p:,} × 4",
                     "adam_exp_avg": f"P × 4 = {p:,} × 4", "adam_exp_avg_sq": f"P × 4 = {p:,} × 4",
                     "adam_step": f"{tensors} parameter tensors × 4"},
        "activation_rows": by_loss[loss],
        "activations_by_loss": {kind: sum(r["bytes"] for r in rows) for kind, rows in by_loss.items()},
    }
    out["activations"] = out["activations_by_loss"][loss]
    out["total"] = sum(out[k] for k in ("weights", "gradients", "adam_exp_avg", "adam_exp_avg_sq", "adam_step",
                                        "activations"))
    return out


def inference_memory(model: Transformer, src_len: int = TYPICAL_LENGTH, tgt_len: int = TYPICAL_LENGTH,
                     beams: int = 1) -> dict[str, Any]:
    """Weights as loaded plus the KV caches at ``src_len`` source and ``tgt_len`` target tokens (model.memory)."""
    cfg = model.config
    _shape(cfg, (beams, src_len, tgt_len))
    per_value = next(model.parameters()).element_size()
    weights = weight_bytes(model)
    kv_self = kv_self_bytes_formula(cfg, tgt_len, per_value, beams)
    kv_cross = kv_cross_bytes_formula(cfg, src_len, per_value, beams)
    return {"weights": weights, "kv_self": kv_self, "kv_cross": kv_cross, "total": weights + kv_self + kv_cross,
            "src_len": src_len, "tgt_len": tgt_len, "beams": beams, "bytes_per_value": per_value,
            "formulas": {"kv_self": f"2 × {cfg.n_decoder_layers} layers × {cfg.d_model} × {per_value} B × {tgt_len} tokens",
                         "kv_cross": f"2 × {cfg.n_decoder_layers} layers × {cfg.d_model} × {per_value} B × {src_len} tokens"}}


# --- memory: one real step ---------------------------------------------------------------------------------
def logits_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         targets: torch.Tensor, ignore_index: int, label_smoothing: float = 0.0) -> torch.Tensor:
    """The trainer's loss (``model.loss.linear_cross_entropy``) as the textbook ``F.cross_entropy``: the same
    value, but autograd keeps the N × V log-probabilities.

    hidden (B, T, D), weight (V, D), bias (V,) or None, targets (B, T) -> the mean over kept positions.
    """
    keep = targets != ignore_index  # (B, T)
    logits = F.linear(hidden[keep], weight, bias)  # (N, V)
    return F.cross_entropy(logits.float(), targets[keep], label_smoothing=label_smoothing)


LOSSES: dict[str, LossFn] = {"fused": linear_cross_entropy, "logits": logits_cross_entropy}


def measured_batch(model: Transformer, training: dict | None) -> tuple[tuple[int, int, int], str]:
    """The recorded batch with its rows cut to ``MEASURE_TOKENS`` padded tokens a side, and a note saying so."""
    batch = recorded_batch(model.config, training)
    rows = max(1, min(batch["rows"], MEASURE_TOKENS // batch["src_len"]))
    note = "the recorded batch" if rows == batch["rows"] else \
        f"the recorded batch cut from {batch['rows']} to {rows} rows (to run in about a second here)"
    return (rows, batch["src_len"], batch["tgt_len"]), note


def _peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def measure_training_step(model: Transformer, training: dict | None, batch_shape: tuple[int, int, int] | None = None,
                          loss: str = "fused", seed: int = 0) -> dict[str, Any]:
    """Run one real training step on a CPU copy of ``model`` and report the bytes torch holds.

    The step is the trainer's (training/loop.py): seeded random ids of ``batch_shape`` (default
    ``measured_batch``), bf16 autocast if recorded, the math attention kernel, the loss, ``zero_grad``,
    ``backward``, gradient clipping and ``torch.optim.Adam`` with the record's betas and eps. ``loss``:
    "fused", the trainer's ``model.loss.linear_cross_entropy``, or "logits", ``logits_cross_entropy``
    (each matched against its own estimate). Reported: parameter, ``.grad`` and
    ``optimizer.state`` bytes, the tensors autograd saved (``saved_tensors_hooks``, one count per storage;
    those that are parameters apart), the step's wall ms, the growth of the process's peak RSS, and the
    estimate of the same shape with each measured/estimated ratio. ValueError if it would need more than
    ``MEASURE_MAX_BYTES``. ``sdpa_kernel`` sets a process-wide flag: a caller serving attention on other
    threads holds them off meanwhile (``ui.arithmetic`` takes every slot of the model gate).
    """
    cfg = model.config
    note = "given"
    if batch_shape is None:
        batch_shape, note = measured_batch(model, training)
    shape = _shape(cfg, batch_shape)
    settings = training_settings(training)
    estimate = training_memory(model, training, shape, loss)
    need = estimate["total"] + estimate["weights"]  # the copy's state plus the caller's own weights
    if need > MEASURE_MAX_BYTES:
        raise ValueError(f"one training step of this model at {shape} needs about {need / 2**20:,.0f} MiB, over the "
                         f"{MEASURE_MAX_BYTES / 2**20:,.0f} MiB a measurement may take here: give a smaller batch_shape")
    with torch.random.fork_rng(devices=[]):  # building a module draws its initial weights: not from the caller's RNG
        # A fresh module with the same weights: a deepcopy would copy inference-mode tensors, which cannot train.
        clone = Transformer(cfg)
    with torch.no_grad():
        clone.load_state_dict({k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()})
    clone.train()
    gen = torch.Generator().manual_seed(seed)
    b, s, t = shape
    src = torch.randint(4, cfg.src_vocab_size, (b, s), generator=gen)  # (B, S) ids above the special ones
    tgt_in = torch.randint(4, cfg.tgt_vocab_size, (b, t), generator=gen)  # (B, T)
    tgt_out = torch.randint(4, cfg.tgt_vocab_size, (b, t), generator=gen)  # (B, T)
    optim = torch.optim.Adam(clone.parameters(), lr=settings["peak_lr"], betas=(settings["beta1"], settings["beta2"]),
                             eps=settings["adam_eps"])
    params = {p.untyped_storage().data_ptr() for p in clone.parameters()}
    saved: dict[int, tuple[int, str]] = {}

    def pack(x: torch.Tensor) -> torch.Tensor:
        storage = x.untyped_storage()
        saved.setdefault(storage.data_ptr(), (storage.nbytes(), str(x.dtype).replace("torch.", "")))
        return x

    loss_fn = LOSSES[loss]
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if settings["bf16"] else contextlib.nullcontext()
    rss0 = _peak_rss()
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
        torch.manual_seed(seed)  # the dropout masks, inside fork_rng: the caller's generator is left as it was
        t0 = time.perf_counter()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x), amp, sdpa_kernel(SDPBackend.MATH):
            states = clone.run_decoder(tgt_in, clone.encode(src))[0]  # (B, T, D)
            value = loss_fn(states, clone.output_weight(), clone.output_bias, tgt_out, ignore_index=cfg.pad_id,
                            label_smoothing=settings["label_smoothing"])
        t1 = time.perf_counter()
        optim.zero_grad(set_to_none=True)
        value.backward()
        if settings["clip_norm"]:
            torch.nn.utils.clip_grad_norm_(clone.parameters(), settings["clip_norm"])
        optim.step()
        t2 = time.perf_counter()
    state = [st for st in optim.state.values()]
    measured = {
        "weights": sum(p.numel() * p.element_size() for p in clone.parameters()),
        "gradients": sum(p.grad.numel() * p.grad.element_size() for p in clone.parameters() if p.grad is not None),
        "adam_exp_avg": sum(st["exp_avg"].numel() * st["exp_avg"].element_size() for st in state),
        "adam_exp_avg_sq": sum(st["exp_avg_sq"].numel() * st["exp_avg_sq"].element_size() for st in state),
        "adam_step": sum(st["step"].numel() * st["step"].element_size() for st in state),
        "activations": sum(n for ptr, (n, _) in saved.items() if ptr not in params),
        "saved_parameters": sum(n for ptr, (n, _) in saved.items() if ptr in params),
        "saved_tensors": len(saved),
    }
    by_dtype: dict[str, int] = {}
    for ptr, (n, dtype) in saved.items():
        if ptr not in params:
            by_dtype[dtype] = by_dtype.get(dtype, 0) + n
    measured["activations_by_dtype"] = by_dtype
    measured["total"] = sum(measured[k] for k in ("weights", "gradients", "adam_exp_avg", "adam_exp_avg_sq",
                                                  "adam_step", "activations"))
    keys = ("weights", "gradients", "adam_exp_avg", "adam_exp_avg_sq", "adam_step", "activations", "total")
    flops = 6 * sum(_linear_weights(clone)[k] * n for k, n in (("source_side", b * s), ("target_side", b * t)))
    return {
        "batch": {"rows": b, "src_len": s, "tgt_len": t, "note": note}, "loss": loss,
        "bf16": settings["bf16"], "assumed": settings["assumed"], "loss_value": float(value.detach()),
        "measured": measured, "estimate": {k: estimate[k] for k in keys},
        "ratio": {k: measured[k] / estimate[k] for k in keys if estimate[k]},
        "forward_ms": 1e3 * (t1 - t0), "step_ms": 1e3 * (t2 - t0),
        "matmul_flops": flops, "achieved_flops_per_s": flops / max(t2 - t0, 1e-9),
        "rss_peak_growth": max(0, _peak_rss() - rss0),
    }
