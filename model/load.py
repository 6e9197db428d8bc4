"""The one loader: whatever a path names, as a ``Checkpoint`` (network, tokenizer, record).

A file is a Regard checkpoint (``checkpoint.load_checkpoint``: hashed safetensors with its config and
tokenizer inside). A directory is where other formats plug in: today a Hugging Face Marian model
(``marian.load_marian_dir``, its own vocabulary behind the same tokenizer interface). The CLI
(``cli.load``) and the app (``ui.context.load_context``) load through here.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import DEFAULT_CHECKPOINT, Checkpoint, CheckpointError, load_checkpoint
from .marian import is_marian_dir, load_marian_dir


def load_model(
    path: str | Path = DEFAULT_CHECKPOINT, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> Checkpoint:
    """Load whatever ``path`` names into a ``Checkpoint``; ``CheckpointError`` with a one-line reason."""
    path = Path(path)
    if path.is_dir():
        if is_marian_dir(path):  # a Hugging Face Marian model, e.g. a downloaded Helsinki-NLP/opus-mt-fr-en
            return load_marian_dir(path, device=device, dtype=dtype)
        raise CheckpointError(f"{path}: a directory, but not a Hugging Face Marian model (no config.json "
                              "with model_type marian)")
    return load_checkpoint(path, device=device, dtype=dtype)
