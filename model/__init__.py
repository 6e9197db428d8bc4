"""Regard's French->English Transformer and everything that runs it, no UI code:

- the network: ``config``, ``transformer`` (with ``attention``, ``positional``, ``dropout``), ``cache`` (the
  caller's KV cache), ``layout`` and ``quantize`` (weight layouts, int8);
- generation: ``generation/`` (strategies, tensor-only search steps, the one loop, the beam tree) and the
  entry points over text in ``decoding`` (batched translation, the per-step ``Trace``);
- probes: ``ablation``, ``alignment``, ``lens`` and ``explain/``, each reading a finished translation;
- I/O: ``load`` (one loader), ``checkpoint``, ``marian``, ``tokenizer``, ``record``, ``trace_json``, ``export``;
- input policy: ``limits`` (every cap and the unknown-input rule) and ``errors``;
- the command line: ``cli`` (the shared load-or-exit helper) and ``translate``.
"""
from .cache import KVCache
from .config import ModelConfig
from .transformer import EncoderOutput, StepOutput, Transformer

__all__ = ["KVCache", "ModelConfig", "Transformer", "EncoderOutput", "StepOutput"]
