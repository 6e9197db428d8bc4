"""Smaller weight formats for inference: dynamic int8 (``nn.Linear`` weights) and bfloat16.

Dynamic quantisation stores each ``nn.Linear`` weight as int8 with a per-tensor scale and quantises
activations on the fly (CPU only). The tied embedding / output projection is not an ``nn.Linear`` and
stays fp32, as do the LayerNorms; attention weights are still computed (in fp32) and returned, so every
view of the app works on the int8 model. ``benchmarks/decode_speed.py`` measures both formats' speed
and how many translations change; ``python evaluate.py --int8`` their BLEU.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from .memory import weight_bytes
from .transformer import Transformer


def quantize_int8(model: Transformer) -> Transformer:
    """A new model whose linear layers run in dynamic int8; the given model is left untouched.

    An fp32 model's other parameters (embeddings, norms) are shared with the new one rather than
    copied: neither model changes its weights, and the copy would double the largest tensor in memory.
    """
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("dynamic int8 quantisation runs on the CPU only")
    linear = {id(p) for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters(recurse=False)}
    shared = {id(p): p for p in model.parameters() if id(p) not in linear and p.dtype == torch.float32}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its future move to torchao
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(model, memo=dict(shared)).float().eval(), {nn.Linear},
                                dtype=torch.qint8, inplace=True)


def packed_bytes(model: nn.Module) -> int:
    """Bytes of the dynamically quantised linear layers: int8 weights, fp32 biases, scale and zero point."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    total = 0
    for m in model.modules():
        if isinstance(m, DynamicLinear):
            w, b = m._packed_params._weight_bias()  # int8 (out, in) and fp32 (out,) or None
            total += w.numel() * w.element_size() + 16  # + the per-tensor scale (float64) and zero point (int64)
            total += b.numel() * b.element_size() if b is not None else 0
    return total


def model_weight_bytes(model: nn.Module) -> int:
    """Measured weight memory of a model as it runs: its parameters plus any int8-packed linear layers."""
    return weight_bytes(model) + packed_bytes(model)


def to_bf16(model: Transformer) -> Transformer:
    """A bfloat16 copy of the model (half the weight memory; logits are computed in bf16)."""
    return copy.deepcopy(model).to(torch.bfloat16).eval()
