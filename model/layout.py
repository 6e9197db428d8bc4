"""Weights laid out for the matrix-vector products of CPU decoding.

``F.linear(x, W)`` multiplies by ``W.T``. With ``W`` stored as PyTorch stores it, (out, in) row-major,
MKL takes its transposed-B path, which for the one-row products of batch-1 decoding runs a generic
dot-product kernel. Stored column-major, i.e. as a transposed view of a contiguous (in, out) tensor,
``W.T`` is a plain row-major matrix and MKL streams it with its vector kernel; the output projection
also gains at the four rows of a beam. ``benchmarks/weight_layout.py`` measures the effect on whole
translations (on the 2-core dev machine: beam 4 1.06-1.12x, greedy 1.02x). Same values, same
shapes, same state-dict keys; only the strides change.

Both products are exact fp32 dot products, but they sum in a different order, so the last bits of a
logit can differ between the two layouts, and whether they do depends on the CPU and its MKL kernels
(an AMD EPYC moves a last bit where an Intel Xeon happens not to). So nothing promises equality across
layouts: the tests compare the two within a stated tolerance (1e-5) and ask for exact equality only
within one layout; how many translations change is measured (``benchmarks/weight_layout.py``), not
assumed. Within one layout the plain loop, the instrumented one and the reference path read the same
tensors and gave the same bits on the CPUs tried (tests/test_search.py runs both layouts).
``REGARD_LAYOUT_ROUNDING=1 python3 -m pytest`` (tests/conftest.py) puts every column-major product one
ulp off, so a test that silently assumes the two layouts agree fails on any CPU.
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
