"""The one JSON form of a decoding ``Trace``: for the CLI's ``--json``, the app's API and the browser.

Schema ``regard-trace/1`` (steps are 0-based everywhere; the UI adds 1 when it shows them)::

    schema          "regard-trace/1"
    source_text     the sentence as typed
    translation     the English text
    source_pieces   [S]      encoder inputs, ending in "</s>"
    target_pieces   [T + 1]  decoder inputs: "<s>" then each generated piece; step t reads
                             target_pieces[t] and emits steps[t].piece (= target_pieces[t + 1])
    stopped         "eos" (the model ended the sentence) or "max_len" (cut at the length cap)
    beam_size, use_cache, device, dtype, encode_ms, total_ms
    batch_size      sentences decoded together with this one (1: alone); encode_ms and every
                    latency_ms are then the whole batch's
    layers          {"encoder": Le, "decoder": Ld};  heads: H
    steps           [T] of {step, token_id, piece, prob, latency_ms, kv_self_bytes, kv_cross_bytes,
                            entropy_bits, rest_prob, top_k: [{token_id, piece, prob}]}
                    rest_prob: probability mass outside top_k; entropy_bits: the step's entropy when
                    the record has it, else the lower bound from top_k plus rest as one outcome
                    (entropy_exact says which)
    attention       {"encoder": (Le, H, S, S), "decoder": (Ld, H, T, T), "cross": (Ld, H, T, S)}
                    rows are queries, columns keys; decoder row t attends over columns 0..t and is
                    0 to the right of the diagonal. Each array is {"shape", "dtype", "data", "scale"}:
                      arrays="uint8" (default): data is base64 of C-order uint8, value = byte * scale
                      (scale 1/255: weights to +-0.002, 8x smaller than float32 lists);
                      arrays="float": data is nested lists of floats rounded to 5 decimals, scale 1.
    kv_formula      (optional, with a config) {"self": [T], "cross": [T]} bytes the formula predicts
"""
from __future__ import annotations

import base64
import math
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .memory import kv_cross_bytes_formula, kv_self_bytes_formula

if TYPE_CHECKING:
    from .config import ModelConfig
    from .decoding import Trace

SCHEMA = "regard-trace/1"
EOS_PIECE = "</s>"
ArrayFormat = Literal["uint8", "float"]


def encode_array(values: np.ndarray, arrays: ArrayFormat = "uint8") -> dict[str, Any]:
    """A float array in [0, 1] -> {"shape", "dtype", "scale", "data"} (see the module docstring)."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)
    if arrays == "float":
        return {"shape": list(values.shape), "dtype": "float32", "scale": 1.0,
                "data": np.round(values, 5).tolist()}
    if arrays != "uint8":
        raise ValueError(f"arrays must be 'uint8' or 'float', got {arrays!r}")
    quantised = np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    return {"shape": list(values.shape), "dtype": "uint8", "scale": 1.0 / 255.0,
            "data": base64.b64encode(quantised.tobytes(order="C")).decode("ascii")}


def decode_array(item: dict[str, Any]) -> np.ndarray:
    """Inverse of ``encode_array``: a float32 array of ``item["shape"]``."""
    shape = tuple(int(n) for n in item["shape"])
    if item["dtype"] == "uint8":
        raw = np.frombuffer(base64.b64decode(item["data"]), dtype=np.uint8)
        if raw.size != math.prod(shape):
            raise ValueError(f"{raw.size} bytes for an array of shape {shape}")
        return raw.reshape(shape).astype(np.float32) * np.float32(item["scale"])
    values = np.asarray(item["data"], dtype=np.float32)
    if values.shape != shape:
        raise ValueError(f"data of shape {values.shape} where the record says {shape}")
    return values


def decoder_self_attention(trace: "Trace") -> np.ndarray:
    """Per-step self-attention [(L, H, t + 1)] -> (L, H, T, T), zero right of the diagonal."""
    layers, heads = trace.steps[0].self_attn.shape[:2]
    n = len(trace.steps)
    out = np.zeros((layers, heads, n, n), dtype=np.float32)
    for t, rec in enumerate(trace.steps):
        out[:, :, t, : t + 1] = rec.self_attn[..., : t + 1]
    return out


def cross_attention(trace: "Trace") -> np.ndarray:
    """Per-step cross-attention [(L, H, S)] -> (L, H, T, S)."""
    return np.stack([rec.cross_attn for rec in trace.steps], axis=2).astype(np.float32)


def step_entropy(rec: Any) -> tuple[float, bool]:
    """(entropy in bits, exact?) of one step: the record's own value, else a top-k lower bound."""
    exact = getattr(rec, "entropy", None)
    if exact is not None:
        return float(exact) / math.log(2.0), True  # records keep nats, like torch
    probs = [c.prob for c in rec.top_k if c.prob > 0]
    rest = max(0.0, 1.0 - sum(probs))
    bound = -sum(p * math.log2(p) for p in probs) - (rest * math.log2(rest) if rest > 0 else 0.0)
    return bound, False


def _step(rec: Any) -> dict[str, Any]:
    entropy, exact = step_entropy(rec)
    rest = max(0.0, 1.0 - sum(c.prob for c in rec.top_k))
    return {
        "step": rec.step, "token_id": rec.token_id, "piece": rec.piece, "prob": round(rec.prob, 6),
        "latency_ms": round(rec.latency_ms, 3), "kv_self_bytes": rec.kv_self_bytes,
        "kv_cross_bytes": rec.kv_cross_bytes, "entropy_bits": round(entropy, 4), "entropy_exact": exact,
        "rest_prob": round(rest, 6),
        "top_k": [{"token_id": c.token_id, "piece": c.piece, "prob": round(c.prob, 6)} for c in rec.top_k],
    }


def trace_to_json(trace: "Trace", config: "ModelConfig | None" = None, arrays: ArrayFormat = "uint8") -> dict:
    """The trace as a JSON-ready dict in schema ``regard-trace/1`` (module docstring)."""
    if not trace.steps:
        raise ValueError("a trace without decoding steps has nothing to serialise")
    layers_enc, heads = trace.encoder_attn.shape[:2]
    layers_dec = trace.steps[0].self_attn.shape[0]
    last = trace.steps[-1]
    eos = last.token_id == config.eos_id if config is not None else last.piece == EOS_PIECE
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "source_text": trace.source_text,
        "translation": trace.translation,
        "source_pieces": list(trace.source_pieces),
        "target_pieces": list(trace.target_pieces),
        "stopped": "eos" if eos else "max_len",
        "beam_size": trace.beam_size,
        "use_cache": trace.use_cache,
        "device": trace.device,
        "dtype": trace.dtype,
        "encode_ms": round(trace.encode_ms, 3),
        "total_ms": round(trace.total_ms, 3),
        "batch_size": getattr(trace, "batch_size", 1),
        "layers": {"encoder": int(layers_enc), "decoder": int(layers_dec)},
        "heads": int(heads),
        "steps": [_step(rec) for rec in trace.steps],
        "attention": {
            "encoder": encode_array(trace.encoder_attn, arrays),
            "decoder": encode_array(decoder_self_attention(trace), arrays),
            "cross": encode_array(cross_attention(trace), arrays),
        },
    }
    if config is not None:
        b = {"float32": 4, "float16": 2, "bfloat16": 2}.get(trace.dtype, 4)
        n_src, beams = len(trace.source_ids), trace.beam_size
        data["kv_formula"] = {
            "self": [kv_self_bytes_formula(config, t + 1, b, beams) for t in range(len(trace.steps))],
            "cross": [kv_cross_bytes_formula(config, n_src, b, beams)] * len(trace.steps),
        }
    return data


def check_trace_json(data: dict) -> None:
    """Raise ValueError unless ``data`` follows the schema and every array's shape fits its pieces."""
    if data.get("schema") != SCHEMA:
        raise ValueError(f"schema is {data.get('schema')!r}, expected {SCHEMA!r}")
    s, t = len(data["source_pieces"]), len(data["steps"])
    if len(data["target_pieces"]) != t + 1:
        raise ValueError(f"{len(data['target_pieces'])} decoder inputs for {t} steps")
    le, ld, h = data["layers"]["encoder"], data["layers"]["decoder"], data["heads"]
    want = {"encoder": (le, h, s, s), "decoder": (ld, h, t, t), "cross": (ld, h, t, s)}
    for kind, shape in want.items():
        got = decode_array(data["attention"][kind]).shape
        if got != shape:
            raise ValueError(f"{kind} attention has shape {got}, expected {shape}")
    for i, step in enumerate(data["steps"]):
        if step["step"] != i or step["piece"] != data["target_pieces"][i + 1]:
            raise ValueError(f"step {i} does not match the decoder inputs")
