"""Float arrays in JSON: base64 of little-endian C-order float32, decoded by ``regard.lib.f32`` in the page."""
from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np


def encode_f32(values: Any) -> dict[str, Any]:
    """An array (numpy or torch, any float dtype) -> {"shape", "dtype": "float32", "data": base64}."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().float().numpy()
    arr = np.ascontiguousarray(np.asarray(values, dtype="<f4"))
    return {"shape": list(arr.shape), "dtype": "float32", "data": base64.b64encode(arr.tobytes()).decode("ascii")}


def decode_f32(item: dict[str, Any]) -> np.ndarray:
    """Inverse of ``encode_f32``; raises ``ValueError`` when the bytes do not fill the shape."""
    shape = tuple(int(n) for n in item["shape"])
    if item.get("dtype") != "float32":
        raise ValueError(f"expected a float32 array, got dtype {item.get('dtype')!r}")
    raw = np.frombuffer(base64.b64decode(item["data"]), dtype="<f4")
    if raw.size != math.prod(shape):
        raise ValueError(f"{raw.size} floats for an array of shape {shape}")
    return raw.reshape(shape).copy()
