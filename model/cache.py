"""The decoder's key/value cache as an explicit object (cf. fairseq's incremental state, HF Marian's past_key_values).

It holds keys and values only (as HF's ``EncoderDecoderCache``); whatever is derived from the weights
stays on the modules.

Per decoder layer it holds the self-attention keys/values of every target position decoded so far,
which grow by one position per step, and the cross-attention keys/values of the encoder output,
computed once per sentence. ``length`` is the number of cached target positions, which is also the
position index (offset) of the next token.

Self-attention keys/values live in buffers preallocated for ``capacity`` positions (doubled when
outgrown) and each step writes one column, instead of concatenating the whole history every step.
``self_k``/``self_v`` are views of the filled part, and the byte counts report that filled part:
what the cache holds, matching the formula ``2 x layers x d_model x bytes`` per position.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LayerKV:
    """One decoder layer's cache; tensors are (batch, heads, length, d_head) or None before first use."""

    k_buf: torch.Tensor | None = None  # (B, H, capacity, Dh)
    v_buf: torch.Tensor | None = None  # (B, H, capacity, Dh)
    filled: int = 0
    cross_k: torch.Tensor | None = None
    cross_v: torch.Tensor | None = None

    @property
    def self_k(self) -> torch.Tensor | None:
        return None if self.k_buf is None else self.k_buf.narrow(2, 0, self.filled)  # (B, H, T, Dh)

    @property
    def self_v(self) -> torch.Tensor | None:
        return None if self.v_buf is None else self.v_buf.narrow(2, 0, self.filled)  # (B, H, T, Dh)


@dataclass
class KVCache:
    layers: list[LayerKV] = field(default_factory=list)
    length: int = 0
    capacity: int = 16  # positions allocated at the first step

    @classmethod
    def empty(cls, n_layers: int, capacity: int = 16) -> "KVCache":
        return cls(layers=[LayerKV() for _ in range(n_layers)], length=0, capacity=max(1, capacity))

    @property
    def has_cross(self) -> bool:
        return bool(self.layers) and self.layers[0].cross_k is not None

    def append_self(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's keys/values (B, H, t, Dh) to ``layer`` and return the full (B, H, T, Dh) pair."""
        e = self.layers[layer]
        n, t = e.filled, k.size(2)
        if e.k_buf is None or n + t > e.k_buf.size(2):
            size = max(self.capacity, n + t, 2 * (0 if e.k_buf is None else e.k_buf.size(2)))
            e.k_buf, e.v_buf = (grow(buf, x, n, size) for buf, x in ((e.k_buf, k), (e.v_buf, v)))
        e.k_buf.narrow(2, n, t).copy_(k)  # one view op per write: this runs every step in every layer
        e.v_buf.narrow(2, n, t).copy_(v)
        e.filled = n + t
        return e.self_k, e.self_v

    def self_nbytes(self) -> int:
        """Bytes held by the growing self-attention keys/values (the filled positions)."""
        # from the buffers' shapes, without the views: this runs after every step
        return sum(2 * e.filled * (e.k_buf.numel() // e.k_buf.size(2)) * e.k_buf.element_size() for e in self.layers
                   if e.k_buf is not None)

    def cross_nbytes(self) -> int:
        """Bytes held by the fixed cross-attention keys/values of the encoder output."""
        return sum(t.numel() * t.element_size() for e in self.layers for t in (e.cross_k, e.cross_v) if t is not None)

    def nbytes(self) -> int:
        return self.self_nbytes() + self.cross_nbytes()

    def allocated_nbytes(self) -> int:
        """Bytes reserved, including preallocated positions not yet written."""
        bufs = (t for e in self.layers for t in (e.k_buf, e.v_buf, e.cross_k, e.cross_v) if t is not None)
        return sum(t.numel() * t.element_size() for t in bufs)

    def reorder(self, index: torch.Tensor, cross: bool = True) -> None:
        """Keep batch rows ``index`` (N,) in that order: beam search's reshuffle after choosing hypotheses.

        ``cross=False`` leaves the cross-attention keys/values alone, which is exact when ``index`` only
        permutes rows among copies of the same sentence (beam search's rows), whose entries are equal.
        """
        for e in self.layers:
            if e.k_buf is not None:
                n = e.filled
                if index.numel() == e.k_buf.size(0):  # same batch: rewrite only the filled positions
                    e.k_buf[:, :, :n] = e.k_buf[:, :, :n].index_select(0, index)
                    e.v_buf[:, :, :n] = e.v_buf[:, :, :n].index_select(0, index)
                else:  # fewer rows: new buffers of the same capacity, copying only the filled positions
                    e.k_buf, e.v_buf = (select_rows(buf, index, n) for buf in (e.k_buf, e.v_buf))
            if cross and e.cross_k is not None:
                e.cross_k, e.cross_v = e.cross_k.index_select(0, index), e.cross_v.index_select(0, index)


def select_rows(buf: torch.Tensor, index: torch.Tensor, filled: int) -> torch.Tensor:
    """A (N, H, capacity, Dh) buffer holding rows ``index`` (N,) of ``buf``'s first ``filled`` positions."""
    if buf.requires_grad:  # out= does not record gradients; keep the graph (and the unfilled tail)
        return buf.index_select(0, index)
    new = buf.new_empty((index.numel(), *buf.shape[1:]))
    torch.index_select(buf.narrow(2, 0, filled), 0, index, out=new.narrow(2, 0, filled))
    return new


def grow(buf: torch.Tensor | None, like: torch.Tensor, filled: int, size: int) -> torch.Tensor:
    """A (B, H, size, Dh) buffer shaped like ``like`` holding the first ``filled`` positions of ``buf``."""
    b, h, _, dh = like.shape
    new = like.new_empty((b, h, size, dh))
    if buf is not None and filled:
        new[:, :, :filled] = buf[:, :, :filled]
    return new
