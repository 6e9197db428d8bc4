"""Weights laid out for the matrix-vector products of CPU decoding.

``F.linear(x, W)`` multiplies by ``W.T``. With ``W`` stored as PyTorch stores it, (out, in) row-major,
MKL takes its transposed-B path, which for the one-row products of batch-1 decoding runs a generic
dot-product kernel. Stored column-major, i.e. as a transposed view of a contiguous (in, out) tensor,
``W.T`` is a plain row-major matrix and MKL streams it with its vector kernel; the output projection
also gains at the four rows of a beam. ``benchmarks/weight_layout.py`` measures the effect on whole
translations (on the 2-core dev machine: beam 4 1.06-1.12x, greedy 1.02x). Same values, same
shapes, same state-dict keys; only the strides change.

Both products are exact fp32 dot products, but they sum in a different order, so the last bits of a
logit can differ between the two layouts (how many translations change is measured, not assumed).
Within one layout every path is bit for bit the same: the plain loop, the instrumented one and the
reference path all read the same tensors (tests/test_search.py runs both layouts).
"""
from __future__ import annotations

import torch
from torch import nn


def column_major(t: torch.Tensor) -> torch.Tensor:
    """A 2-D tensor with the same values stored column-major: its ``.t()`` is contiguous."""
    return t.t().contiguous().t()


def is_column_major(t: torch.Tensor) -> bool:
    return t.dim() == 2 and t.t().is_contiguous() and not t.is_contiguous()


def use_column_major(model: nn.Module) -> nn.Module:
    """Store every ``nn.Linear`` weight of ``model`` and its output matrix column-major, in place.

    A tied embedding is the output matrix too, so it changes layout as well: an embedding look-up
    then gathers a strided row, slower than a contiguous one but a small cost next to the output
    projection's gain (the batched rows of ``benchmarks/engines.py`` include it). Returns ``model``.
    """
    weights = [m.weight for m in model.modules() if type(m) is nn.Linear]
    if hasattr(model, "output_weight"):
        weights.append(model.output_weight())
    with torch.no_grad():
        for w in weights:
            if isinstance(w, nn.Parameter) and w.dim() == 2 and not is_column_major(w):
                w.data = column_major(w.data)
    return model
