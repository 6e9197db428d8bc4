"""Device and dtype choice in one place: CUDA when present, else CPU, unless the caller says otherwise."""
from __future__ import annotations

import time

import torch

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def pick_device(name: str | None = None) -> torch.device:
    """``None``/"auto" -> cuda if available else cpu; otherwise the named device, checked."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
    return device


def pick_dtype(name: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name in (None, "", "auto"):
        return torch.float32
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {sorted(DTYPES)}")
    return DTYPES[name]


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work so wall-clock timings mean what they say."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timer_ms(device: torch.device | str, start: float) -> float:
    synchronize(device)
    return (time.perf_counter() - start) * 1000.0
