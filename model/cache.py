"""The decoder's key/value cache as an explicit object (cf. fairseq's incremental state, HF Marian's past_key_values).

Per decoder layer it holds the self-attention keys/values of every target position decoded so far,
which grow by one position per step, and the cross-attention keys/values of the encoder output,
computed once per sentence. ``length`` is the number of cached target positions, which is also the
position index (offset) of the next token.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LayerKV:
    """One decoder layer's cache; tensors are (batch, heads, length, d_head) or None before first use."""

    self_k: torch.Tensor | None = None
    self_v: torch.Tensor | None = None
    cross_k: torch.Tensor | None = None
    cross_v: torch.Tensor | None = None


@dataclass
class KVCache:
    layers: list[LayerKV] = field(default_factory=list)
    length: int = 0

    @classmethod
    def empty(cls, n_layers: int) -> "KVCache":
        return cls(layers=[LayerKV() for _ in range(n_layers)], length=0)

    @property
    def has_cross(self) -> bool:
        return bool(self.layers) and self.layers[0].cross_k is not None

    def append_self(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's keys/values (B, H, 1, Dh) to ``layer`` and return the full (B, H, T, Dh) pair."""
        entry = self.layers[layer]
        if entry.self_k is None:
            entry.self_k, entry.self_v = k, v
        else:
            entry.self_k = torch.cat([entry.self_k, k], dim=2)  # (B, H, T, Dh)
            entry.self_v = torch.cat([entry.self_v, v], dim=2)  # (B, H, T, Dh)
        return entry.self_k, entry.self_v

    def self_nbytes(self) -> int:
        """Bytes held by the growing self-attention keys/values."""
        return sum(t.numel() * t.element_size() for e in self.layers for t in (e.self_k, e.self_v) if t is not None)

    def cross_nbytes(self) -> int:
        """Bytes held by the fixed cross-attention keys/values of the encoder output."""
        return sum(t.numel() * t.element_size() for e in self.layers for t in (e.cross_k, e.cross_v) if t is not None)

    def nbytes(self) -> int:
        return self.self_nbytes() + self.cross_nbytes()

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (N,) in that order: beam search's reshuffle after choosing hypotheses."""
        for e in self.layers:
            for name in ("self_k", "self_v", "cross_k", "cross_v"):
                t = getattr(e, name)
                if t is not None:
                    setattr(e, name, t.index_select(0, index))
