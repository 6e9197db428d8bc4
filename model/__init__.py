"""Regard's French->English Transformer: config, modules, KV cache, tokenizer, checkpoints, decoding."""
from .cache import KVCache
from .config import ModelConfig
from .transformer import EncoderOutput, StepOutput, Transformer

__all__ = ["KVCache", "ModelConfig", "Transformer", "EncoderOutput", "StepOutput"]
