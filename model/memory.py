"""Memory arithmetic and measurement: weights, KV cache, process and GPU.

Formulas (bytes):
- weights: parameters x bytes per parameter (4 fp32, 2 fp16/bf16, 1 int8);
- self-attention KV cache: 2 (K and V) x decoder layers x d_model x bytes per value, per target token
  (and per beam);
- cross-attention KV cache: the same per *source* token, computed once per sentence.
"""
from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch
from torch import nn

from .config import ModelConfig

BYTES_PER_PARAM = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def weight_bytes(model: nn.Module) -> int:
    """Bytes the parameters occupy now, in their actual dtype."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def weight_bytes_by_dtype(model: nn.Module) -> dict[str, int]:
    """What the same parameters would take stored as fp32, fp16/bf16 and int8."""
    n = parameter_count(model)
    return {name: n * b for name, b in BYTES_PER_PARAM.items()}


def kv_self_bytes_formula(config: ModelConfig, n_tokens: int, bytes_per_value: int, beams: int = 1) -> int:
    """2 x layers x d_model x bytes x tokens (x beams): the growing decoder self-attention cache."""
    return 2 * config.n_decoder_layers * config.d_model * bytes_per_value * n_tokens * beams


def kv_cross_bytes_formula(config: ModelConfig, src_tokens: int, bytes_per_value: int, beams: int = 1) -> int:
    """2 x layers x d_model x bytes x source tokens (x beams): the fixed cross-attention cache."""
    return 2 * config.n_decoder_layers * config.d_model * bytes_per_value * src_tokens * beams


def process_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc), else its peak from getrusage."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def gpu_memory_bytes(device: torch.device | str) -> dict[str, int] | None:
    """Allocated and reserved bytes on a CUDA device; None on CPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return {"allocated": torch.cuda.memory_allocated(device), "reserved": torch.cuda.memory_reserved(device),
            "peak_allocated": torch.cuda.max_memory_allocated(device)}


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
