"""Updating a checkpoint's training record in place: scores, sanity verdicts, head-alignment results.

The evaluation programs (``evaluate.py --record``, ``training.name_copy``, ``training.sanity``,
``scripts/head_alignment.py``) store what they measured here, so each figure of a model card is in
the checkpoint it describes, next to the command that produced it.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from .checkpoint import REPO_ROOT, Checkpoint, save_checkpoint


def store_in_record(ckpt: Checkpoint, updates: dict[str, Any]) -> None:
    """Merge ``updates`` into the checkpoint's training record and rewrite the file in place; the
    weights keep the dtype they are stored in, so their bytes (and hash) do not change."""
    record = {**ckpt.training, **updates}
    dtype = next(iter(ckpt.model.state_dict().values())).dtype
    save_checkpoint(ckpt.path, ckpt.model.cpu(), ckpt.tokenizer, record, dtype=stored_dtype(ckpt.path) or dtype)
    ckpt.training = record


def store_score(ckpt: Checkpoint, name: str, result: dict[str, Any]) -> None:
    """Add ``result`` to the checkpoint's record under ``scores[name]``, rewriting the file in place."""
    store_in_record(ckpt, {"scores": {**ckpt.training.get("scores", {}), name: result}})
    print(f"  recorded as scores[{name!r}] in {ckpt.path}")


def best_head(head_f1: list[list[float]]) -> tuple[int, int]:
    """0-based (layer, head) of the highest F1 in a recorded (layers, heads) ``head_alignment`` table."""
    return max(((l, h) for l, row in enumerate(head_f1) for h in range(len(row))), key=lambda lh: head_f1[lh[0]][lh[1]])


def stored_dtype(path: str | Path) -> torch.dtype | None:
    """The dtype the file stores its floating-point weights in, so re-saving does not change them."""
    with safe_open(str(path), framework="pt") as f:
        for name in f.keys():
            dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}.get(f.get_slice(name).get_dtype())
            if dtype is not None:
                return dtype
    return None


# An absolute POSIX path: a "/" that does not continue a word, a URL ("https://") or a relative path.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/\-])/(?:[\w.@+\-]+/)*[\w.@+\-]+")


def public_path(path: str) -> str:
    """An absolute path as it may be shown to anyone: relative to the repository or to ``shared/``, or
    else its last two parts (``/home/ana/runs/preln`` -> ``…/runs/preln``): where the training machine
    keeps its files is nobody's business, but which run or data file it was still reads."""
    p = Path(path)
    if p.is_relative_to(REPO_ROOT):
        return p.relative_to(REPO_ROOT).as_posix() or "."
    parts = p.parts
    if "shared" in parts:
        return "../" + "/".join(parts[parts.index("shared"):])
    return "…/" + "/".join(parts[-2:])


def public_text(text: str) -> str:
    """``text`` with every absolute path replaced by :func:`public_path`."""
    return _ABSOLUTE_PATH.sub(lambda m: public_path(m.group(0)), text)


def public_record(value: Any) -> Any:
    """A training record (or any JSON value) with every absolute path in its strings made public."""
    if isinstance(value, str):
        return public_text(value)
    if isinstance(value, dict):
        return {k: public_record(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [public_record(v) for v in value]
    return value
