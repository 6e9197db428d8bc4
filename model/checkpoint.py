"""Checkpoint I/O: one safetensors file holding weights, config, SentencePiece model and training record.

Tensors are the model's ``state_dict`` (no pickle). The file's string metadata carries
``regard_format``, ``config`` (JSON), ``training`` (JSON) and ``tokenizer`` (base64 SentencePiece model).
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import ModelConfig
from .tokenizer import Tokenizer
from .transformer import Transformer

FORMAT = "regard-checkpoint/1"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "regard-fr-en.safetensors"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not match the model it claims to hold."""


@dataclass
class Checkpoint:
    model: Transformer
    tokenizer: Tokenizer
    training: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def config(self) -> ModelConfig:
        return self.model.config


def save_checkpoint(
    path: str | Path,
    model: Transformer,
    tokenizer: Tokenizer,
    training: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model`` (optionally cast to ``dtype``, e.g. float16 to halve the file) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[name] = t.contiguous()
    metadata = {
        "regard_format": FORMAT,
        "config": model.config.to_json(),
        "training": json.dumps(training or {}, sort_keys=True),
        "tokenizer": base64.b64encode(tokenizer.model_proto).decode("ascii"),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def load_checkpoint(
    path: str | Path = DEFAULT_CHECKPOINT, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> Checkpoint:
    """Load a checkpoint into a fresh ``Transformer`` with a strict ``load_state_dict``, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated safetensors file ({exc})") from exc
    if metadata.get("regard_format") != FORMAT:
        raise CheckpointError(f"{path}: not a Regard checkpoint (regard_format={metadata.get('regard_format')!r})")
    try:
        config = ModelConfig.from_dict(json.loads(metadata["config"]))
        training = json.loads(metadata.get("training", "{}"))
        tokenizer = Tokenizer(base64.b64decode(metadata["tokenizer"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad metadata ({exc})") from exc
    if tokenizer.vocab_size != config.tgt_vocab_size:
        raise CheckpointError(
            f"{path}: tokenizer has {tokenizer.vocab_size} pieces but the config says {config.tgt_vocab_size}"
        )
    model = Transformer(config)
    try:
        model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in tensors.items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the config: {exc}") from exc
    model.to(device=device, dtype=dtype).eval()
    return Checkpoint(model=model, tokenizer=tokenizer, training=training, path=path)
