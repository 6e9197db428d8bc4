"""Column-major weights (model/layout.py): same values and checkpoints exactly, logits equal to rounding (1e-5)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import tiny_config
from model.checkpoint import load_checkpoint, save_checkpoint
from model.layout import column_major, is_column_major, use_column_major
from model.generation import Greedy, generate
from model.transformer import Transformer


def test_column_major_keeps_values_shapes_and_keys():
    t = torch.randn(5, 3)
    c = column_major(t)
    assert torch.equal(c, t) and c.shape == t.shape and is_column_major(c) and not is_column_major(t)
    torch.manual_seed(0)
    model = Transformer(tiny_config(40, tie_embeddings=False)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    use_column_major(model)
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    linears = [m for m in model.modules() if type(m) is nn.Linear]
    assert linears and all(is_column_major(m.weight) for m in linears)
    assert model.lm_head in linears  # the untied output matrix is a Linear like the others


def test_loaded_checkpoints_are_column_major_and_save_back_identically(tiny_model, tiny_tokenizer, tmp_path):
    first = save_checkpoint(tmp_path / "a.safetensors", tiny_model, tiny_tokenizer)
    loaded = load_checkpoint(first)
    assert is_column_major(loaded.model.output_weight())  # the tied embedding is the output matrix
    assert all(is_column_major(m.weight) for m in loaded.model.modules() if type(m) is nn.Linear)
    second = save_checkpoint(tmp_path / "b.safetensors", loaded.model, tiny_tokenizer)
    a, b = load_checkpoint(first).model.state_dict(), load_checkpoint(second).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("other_cpu", [False, True])
def test_both_layouts_give_the_same_logits_to_rounding_and_the_same_translation(other_cpu, request):
    """Across layouts only a tolerance holds; ``other_cpu`` makes the layouts round apart as some CPUs do."""
    if other_cpu:
        request.getfixturevalue("layout_rounding")
    torch.manual_seed(3)
    row = Transformer(tiny_config(40)).eval()
    col = use_column_major(Transformer(tiny_config(40)).eval())
    col.load_state_dict(row.state_dict())  # copy_ into the column-major parameters keeps their layout
    assert is_column_major(col.output_weight())
    src = torch.randint(4, 40, (2, 9), generator=torch.Generator().manual_seed(3))
    tgt = torch.randint(4, 40, (2, 6), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(col(src, tgt), row(src, tgt), rtol=1e-5, atol=1e-5)
    steps = {}
    for name, model in (("row", row), ("col", col)):
        out = generate(model, src, Greedy(), 10, on_step=lambda e, n=name: steps.setdefault(n, []).append(e.logits))
        steps[name + " tokens"] = [h.tokens for h in out.hypotheses]
    assert steps["row tokens"] == steps["col tokens"]
    for a, b in zip(steps["row"], steps["col"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
