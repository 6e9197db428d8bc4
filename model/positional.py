"""Sinusoidal positional encodings (Vaswani et al. 2017, section 3.5)."""
from __future__ import annotations

import math

import torch


def sinusoidal_encoding(n_positions: int, d_model: int) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d)).

    Returns a float32 tensor of shape (n_positions, d_model).
    """
    if d_model % 2 != 0:
        raise ValueError(f"d_model must be even for sinusoidal encodings, got {d_model}")
    position = torch.arange(n_positions, dtype=torch.float64).unsqueeze(1)  # (P, 1)
    # float64 so that large positions still match the closed form to float32 precision
    inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))  # (D/2,)
    pe = torch.zeros(n_positions, d_model, dtype=torch.float64)  # (P, D)
    pe[:, 0::2] = torch.sin(position * inv_freq)
    pe[:, 1::2] = torch.cos(position * inv_freq)
    return pe.float()
