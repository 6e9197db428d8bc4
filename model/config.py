"""The one description of a Regard Transformer's shape, carried inside every checkpoint."""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ConfigError

MAX_POSITIONS = 8192  # the sinusoidal table is max_positions x d_model floats, built before any weight is read
MAX_VOCAB = 1 << 20
MAX_WIDTH = 8192  # d_model
MAX_FF = 65536
MAX_LAYERS = 64
MAX_HEADS = 256

# Inclusive bounds of the numeric fields; ids are checked against the vocabulary in __post_init__.
RANGES: dict[str, tuple[float, float]] = {
    "src_vocab_size": (4, MAX_VOCAB),
    "tgt_vocab_size": (4, MAX_VOCAB),
    "d_model": (2, MAX_WIDTH),
    "n_heads": (1, MAX_HEADS),
    "n_encoder_layers": (1, MAX_LAYERS),
    "n_decoder_layers": (1, MAX_LAYERS),
    "d_ff": (1, MAX_FF),
    "max_positions": (2, MAX_POSITIONS),
}


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the encoder-decoder Transformer.

    ``norm`` chooses where LayerNorm sits: ``"post"`` (Vaswani et al. 2017, our baseline) normalises
    after each residual addition; ``"pre"`` normalises each sub-layer's input and adds a final norm.
    With ``tie_embeddings`` one matrix serves as source embedding, target embedding and output
    projection, which requires a joint vocabulary (``src_vocab_size == tgt_vocab_size``).

    Every field is type- and range-checked on construction (``ConfigError``, a ``ValueError``, with
    a one-line reason), so a bad checkpoint config fails before any tensor is allocated.
    """

    src_vocab_size: int = 8000
    tgt_vocab_size: int = 8000
    d_model: int = 256
    n_heads: int = 8
    n_encoder_layers: int = 4
    n_decoder_layers: int = 4
    d_ff: int = 1024
    dropout: float = 0.1  # on each sub-layer's output and on embeddings + positions, as in the paper
    attention_dropout: float = 0.0  # on attention weights (tensor2tensor's addition, not the paper's)
    max_positions: int = 256
    norm: Literal["post", "pre"] = "post"
    activation: Literal["relu", "gelu", "silu"] = "relu"  # silu = swish, what OPUS-MT models use
    tie_embeddings: bool = True
    output_bias: bool = False  # a learned bias on the logits (Marian's final_logits_bias)
    pad_id: int = 0
    unk_id: int = 1
    bos_id: int = 2
    eos_id: int = 3

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check_field(f.name, _field_types()[f.name], getattr(self, f.name))
        if self.d_model % 2 != 0:
            raise ConfigError(f"d_model must be even (sinusoidal positions come in sin/cos pairs), got {self.d_model}")
        if self.d_model % self.n_heads != 0:
            raise ConfigError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.tie_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ConfigError("tie_embeddings needs a joint vocabulary (src_vocab_size == tgt_vocab_size)")
        ids = {name: getattr(self, name) for name in ("pad_id", "unk_id", "bos_id", "eos_id")}
        vocab = min(self.src_vocab_size, self.tgt_vocab_size)
        for name, value in ids.items():
            if not 0 <= value < vocab:
                raise ConfigError(f"{name} must be a token id below the vocabulary size {vocab}, got {value}")
        # bos is the decoder's start token; Marian (OPUS-MT) models start from pad, so only it may repeat.
        if len({ids["pad_id"], ids["unk_id"], ids["eos_id"]}) != 3 or ids["bos_id"] in (ids["unk_id"], ids["eos_id"]):
            raise ConfigError(f"pad, unk, bos and eos ids must differ (bos may equal pad), got {ids}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Build from a dict (a checkpoint's JSON); fields it lacks keep their defaults."""
        if not isinstance(data, dict):
            raise ConfigError(f"a model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown ModelConfig fields: {unknown}")
        return cls(**data)


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(ModelConfig)


def check_field(name: str, kind: Any, value: Any) -> None:
    """Raise ``ConfigError`` unless ``value`` has the field's type (int, float, bool, Literal) and range."""
    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        if value not in choices or not isinstance(value, str):
            raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return
    if kind is int:
        low, high = RANGES.get(name, (0, MAX_VOCAB))
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{name} must be an integer from {low} to {high}, got {value!r}")
        return
    if kind is float:  # both dropouts: probabilities in [0, 1)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and 0 <= value < 1):
            raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")
        return
    raise ConfigError(f"{name}: no check for type {kind!r}")  # a new field needs a rule here
