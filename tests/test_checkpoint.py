"""Checkpoint I/O: exact round trip, and clear errors for missing, corrupted or mismatched files."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from conftest import tiny_config
from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.transformer import Transformer


def sample_logits(model: Transformer) -> torch.Tensor:
    src = torch.tensor([[10, 11, 12, 13, 3]])
    tgt = torch.tensor([[2, 20, 21]])
    with torch.no_grad():
        return model(src, tgt)


def test_round_trip_gives_identical_logits(tiny_model, tiny_tokenizer, tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    assert ckpt.config == tiny_model.config
    assert torch.equal(sample_logits(ckpt.model), sample_logits(tiny_model))
    assert ckpt.tokenizer.encode("Le chat dort.") == tiny_tokenizer.encode("Le chat dort.")
    assert ckpt.training["note"] == "random weights for tests"
    assert not ckpt.model.training


def test_fp16_checkpoint_is_half_the_size_and_close(tmp_path, tiny_model, tiny_tokenizer, tiny_checkpoint):
    path = save_checkpoint(tmp_path / "half.safetensors", tiny_model, tiny_tokenizer, dtype=torch.float16)
    ckpt = load_checkpoint(path)
    assert next(ckpt.model.parameters()).dtype == torch.float32
    torch.testing.assert_close(sample_logits(ckpt.model), sample_logits(tiny_model), atol=5e-3, rtol=5e-3)
    weights = sum(p.numel() for p in tiny_model.parameters())
    assert tiny_checkpoint.stat().st_size - path.stat().st_size > weights * 2 * 0.9


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="nothere.safetensors: checkpoint file not found"):
        load_checkpoint(tmp_path / "nothere.safetensors")


def test_truncated_file_is_reported(tmp_path, tiny_checkpoint):
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(tiny_checkpoint.read_bytes()[:-500])
    with pytest.raises(CheckpointError, match="truncated.safetensors: unreadable or truncated"):
        load_checkpoint(bad)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.safetensors"):
        load_checkpoint(garbage)


def test_foreign_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a Regard checkpoint"):
        load_checkpoint(path)


def test_weights_that_do_not_match_the_config_are_refused(tmp_path, tiny_tokenizer, tiny_checkpoint):
    # Weights of a 3-layer encoder stored under a config that says 2 layers: strict loading must refuse.
    bigger = Transformer(tiny_config(tiny_tokenizer.vocab_size, n_encoder_layers=3))
    path = save_checkpoint(tmp_path / "mismatch.safetensors", bigger, tiny_tokenizer)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    cfg["n_encoder_layers"] = 2
    meta["config"] = json.dumps(cfg)
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match=r"(?s)mismatch.safetensors: weights do not match.*encoder_layers\.2"):
        load_checkpoint(path)


def test_tokenizer_that_does_not_match_the_vocabulary_is_refused(tmp_path, tiny_tokenizer):
    model = Transformer(tiny_config(tiny_tokenizer.vocab_size + 4))
    path = save_checkpoint(tmp_path / "vocab.safetensors", model, tiny_tokenizer)
    with pytest.raises(CheckpointError, match="vocab.safetensors: tokenizer has 96 pieces"):
        load_checkpoint(path)

