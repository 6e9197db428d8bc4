"""Checkpoint I/O: one safetensors file holding weights, config, SentencePiece model and training record.

Tensors are the model's ``state_dict`` (no pickle). The file's string metadata carries
``regard_format``, ``config`` (JSON), ``training`` (JSON), ``tokenizer`` (base64 SentencePiece model),
``tokenizer_options`` (JSON) and ``tensors_sha256``: a SHA-256 over every tensor's name, dtype, shape
and raw bytes as stored (sorted by name), checked at load so flipped bits fail loudly instead of
translating as "care care care". Files written before the hash existed load with a warning.
"""
from __future__ import annotations

import base64
import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import ModelConfig
from .errors import CheckpointError, one_line
from .layout import use_column_major
from .tokenizer import Tokenizer
from .transformer import Transformer

FORMAT = "regard-checkpoint/1"
HASH_KEY = "tensors_sha256"
REPO_ROOT = Path(__file__).resolve().parent.parent
# The default of the shipped pair (docs/experiment.md); the other one sits next to it.
DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "regard-fr-en-preln.safetensors"
# Hugging Face Marian has no pre-LN variant, so its export (and benchmarks/engines.py) default to this one.
EXPORT_CHECKPOINT = REPO_ROOT / "checkpoints" / "regard-fr-en-postln.safetensors"


class UnverifiedCheckpointWarning(UserWarning):
    """The checkpoint predates ``tensors_sha256``: its weights cannot be checked for corruption."""


@dataclass
class Checkpoint:
    model: Transformer
    tokenizer: Tokenizer
    training: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def config(self) -> ModelConfig:
        return self.model.config


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """Hex SHA-256 over each tensor's name, dtype, shape and raw bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())  # the bytes as stored, whatever the dtype
    return digest.hexdigest()


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
        "tokenizer_options": json.dumps(tokenizer.options, sort_keys=True),
        HASH_KEY: tensors_sha256(tensors),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def load_checkpoint(
    path: str | Path = DEFAULT_CHECKPOINT, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> Checkpoint:
    """Load a checkpoint into a fresh ``Transformer`` with a strict ``load_state_dict``, in eval mode.

    Raises ``CheckpointError`` with a one-line reason: missing or unreadable file, foreign format,
    tensors that fail their hash, a config out of range, or weights of other shapes than the config.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if not path.is_file():  # /dev/zero, a FIFO: reading it would never end or never parse
        raise CheckpointError(f"{path}: not a regular file, so not a checkpoint")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated safetensors file ({one_line(exc)})") from exc
    if metadata.get("regard_format") != FORMAT:
        raise CheckpointError(f"{path}: not a Regard checkpoint (regard_format={metadata.get('regard_format')!r})")
    _verify(path, metadata.get(HASH_KEY), tensors)
    try:
        config = ModelConfig.from_dict(json.loads(metadata["config"]))
    except (KeyError, ValueError, TypeError) as exc:  # ConfigError is a ValueError
        raise CheckpointError(f"{path}: bad config: {one_line(exc)}") from exc
    try:
        training = json.loads(metadata.get("training", "{}"))
        tokenizer = Tokenizer(base64.b64decode(metadata["tokenizer"]), **json.loads(metadata.get("tokenizer_options", "{}")))
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad metadata ({one_line(exc)})") from exc
    if tokenizer.vocab_size != config.tgt_vocab_size:
        raise CheckpointError(
            f"{path}: tokenizer has {tokenizer.vocab_size} pieces but the config says {config.tgt_vocab_size}"
        )
    with torch.device("meta"):  # shapes only: nothing is allocated for a config the weights contradict
        expected = {k: tuple(v.shape) for k, v in Transformer(config).state_dict().items()}
    problem = _shape_mismatch(expected, {k: tuple(v.shape) for k, v in tensors.items()})
    if problem:
        raise CheckpointError(f"{path}: weights do not match the config: {problem}")
    model = Transformer(config)
    model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in tensors.items()})
    model.to(device=device, dtype=dtype).eval()
    return Checkpoint(model=inference_layout(model), tokenizer=tokenizer, training=training, path=path)


def inference_layout(model: Transformer) -> Transformer:
    """Column-major weights for CPU decoding (``model/layout.py``); GPU models keep PyTorch's layout."""
    return use_column_major(model) if next(model.parameters()).device.type == "cpu" else model


def _verify(path: Path, recorded: str | None, tensors: dict[str, torch.Tensor]) -> None:
    if recorded is None:
        warnings.warn(f"{path}: no {HASH_KEY} in the metadata (an older checkpoint); its weights are not verified",
                      UnverifiedCheckpointWarning, stacklevel=3)
        return
    if tensors_sha256(tensors) != recorded:
        raise CheckpointError(f"{path}: weights are corrupted: their SHA-256 differs from the one recorded at save")


def _shape_mismatch(expected: dict[str, tuple], got: dict[str, tuple]) -> str | None:
    """One line naming how many tensors are missing, unexpected or of another shape, with the first of each."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    reshaped = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    parts = []
    if reshaped:
        k = reshaped[0]
        parts.append(f"{len(reshaped)} of another shape (first {k}: {_dims(got[k])} in the file, "
                     f"{_dims(expected[k])} for the config)")
    if missing:
        parts.append(f"{len(missing)} missing (first {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (first {unexpected[0]})")
    return "; ".join(parts) or None


def _dims(shape: tuple) -> str:
    return "x".join(map(str, shape)) or "scalar"
