"""model.explain.arithmetic: parameters by part, C = 6·P·D, and the training-memory estimate against what
torch holds after one real training step (gradients, Adam state, the tensors autograd saved)."""
from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from model.explain import arithmetic
from model.explain.arithmetic import (NOT_RECORDED, inference_memory, measure_training_step,
                                      parameters_by_part, training_compute, training_memory)
from model.transformer import Transformer

VOCAB = 96
VARIANTS = {
    "post": {},
    "pre": {"norm": "pre"},
    # untied embeddings and an output bias (Marian's shape), silu and attention dropout: every optional tensor
    "untied": {"tie_embeddings": False, "src_vocab_size": 90, "output_bias": True, "activation": "silu",
               "attention_dropout": 0.1},
}


def tiny(variant: str, **extra) -> Transformer:
    torch.manual_seed(0)
    return Transformer(tiny_config(VOCAB, **{**VARIANTS[variant], **extra})).eval()


def record(bf16: bool) -> dict:
    return {"target_tokens_seen": 12_000, "wall_time_min": 2.0, "steps": 40, "hardware": "test CPU",
            "train_config": {"max_tokens": 256, "bf16": bf16, "label_smoothing": 0.1, "beta1": 0.9, "beta2": 0.98,
                             "adam_eps": 1e-9, "peak_lr": 1e-3, "clip_norm": 1.0}}


@pytest.mark.parametrize("variant", VARIANTS)
def test_parts_sum_to_the_model_and_match_their_formulas(variant):
    model = tiny(variant)
    rows = parameters_by_part(model)
    parts = [r for r in rows if r["stack"] != "total"]
    assert rows[-1]["stack"] == "total" and rows[-1]["parameters"] == model.num_parameters()
    assert sum(r["parameters"] for r in parts) == model.num_parameters()
    assert sum(r["share"] for r in parts) == pytest.approx(1.0)
    assert not [r for r in parts if r["stack"] == "other"]
    for r in parts:  # the count on the tensors equals the formula from the config alone
        assert r["formula_value"] == r["parameters"], r
    positional = [r for r in parts if r["stack"] == "positional"]
    assert len(positional) == 1 and positional[0]["parameters"] == 0
    assert positional[0]["buffer_values"] == model.pe.numel()


def test_untied_model_lists_three_matrices_and_the_bias():
    parts = {r["part"]: r["parameters"] for r in parameters_by_part(tiny("untied"))}
    assert parts["source embedding"] == 90 * 32
    assert parts["target embedding"] == parts["output projection"] == VOCAB * 32
    assert parts["output bias"] == VOCAB
    assert "shared embedding: source, target and output projection" not in parts


def test_compute_is_six_p_d_on_a_fake_record():
    model = tiny("post")
    p = model.num_parameters()
    run = training_compute(model, record(False))["training"]
    assert run["flops"] == 6 * p * 12_000
    assert run["pf_days"] == pytest.approx(6 * p * 12_000 / (1e15 * 86400))
    assert run["achieved_flops_per_s"] == pytest.approx(6 * p * 12_000 / 120.0)
    assert run["padded_bound"]["token_slots"] == 40 * 256
    # the split by where each weight runs covers every matmul weight: all 2-D tensors of the layers, plus V × d
    out = training_compute(model, record(False))
    matrices = sum(t.numel() for n, t in model.named_parameters() if t.dim() == 2 and "layers" in n)
    assert out["source_side"] + out["target_side"] == matrices + VOCAB * 32
    assert out["inference"]["flops_per_token"] == 2 * p


@pytest.mark.parametrize("training", [None, {}, {"note": "imported from the Hugging Face Marian model at x"},
                                      {"target_tokens_seen": "many", "train_config": "?"}])
def test_records_without_the_fields_say_not_recorded(training):
    model = tiny("post")
    run = training_compute(model, training)["training"]
    assert run["recorded"] is False and run["note"].startswith(NOT_RECORDED)
    memory = training_memory(model, training)
    assert memory["settings"]["recorded"] is False
    assert set(memory["settings"]["assumed"]) == set(arithmetic.ASSUMED)
    assert "max_tokens assumed" in memory["batch"]["source"]
    assert memory["gradients"] == 4 * model.num_parameters()


def test_partial_record_has_no_achieved_rate():
    run = training_compute(tiny("post"), {"target_tokens_seen": 100})["training"]
    assert run["flops"] > 0 and run["achieved_flops_per_s"] == NOT_RECORDED and "padded_bound" not in run


CASES = [("post", True, "fused"), ("post", False, "logits"), ("pre", True, "logits"), ("pre", False, "fused"),
         ("untied", True, "fused"), ("untied", False, "logits")]


@pytest.mark.parametrize("variant,bf16,loss", CASES)
def test_measured_step_matches_the_estimate(variant, bf16, loss):
    model = tiny(variant)
    shape = (4, 7, 5)
    result = measure_training_step(model, record(bf16), batch_shape=shape, loss=loss)
    got, p = result["measured"], model.num_parameters()
    # parameters, gradients and Adam's moments: exactly 4 bytes per parameter each
    assert got["weights"] == got["gradients"] == got["adam_exp_avg"] == got["adam_exp_avg_sq"] == 4 * p
    assert got["adam_step"] == 4 * len(list(model.parameters()))
    estimate = training_memory(model, record(bf16), shape, loss)
    for key in ("weights", "gradients", "adam_exp_avg", "adam_exp_avg_sq", "adam_step"):
        assert got[key] == estimate[key]
    # activations: the estimate leaves out only 0-dim scalars (a few bytes each)
    assert 0 <= got["activations"] - estimate["activations"] <= 64
    assert 0.999 <= result["ratio"]["activations"] <= 1.001
    assert ("bfloat16" in got["activations_by_dtype"]) == bf16
    assert result["step_ms"] > 0 and result["batch"]["rows"] == 4


def test_the_fused_loss_keeps_no_logits():
    model = tiny("post")
    shape = (8, 16, 16)
    fused = measure_training_step(model, record(True), shape)
    logits = measure_training_step(model, record(True), shape, loss="logits")
    saved = logits["measured"]["activations"] - fused["measured"]["activations"]
    n, d = 8 * 16, 32
    # the logits loss keeps N × V fp32 log-probabilities, targets and mask (9 B a row) and a bf16 copy of the
    # V × d matrix; the fused loss keeps dL/dW in fp32 instead; both keep an N × d input (bf16)
    assert saved == pytest.approx(n * VOCAB * 4 + n * 9 + VOCAB * d * 2 - VOCAB * d * 4, abs=64)
    assert fused["loss_value"] == pytest.approx(logits["loss_value"], rel=1e-2)  # same loss, two implementations


def test_measurement_leaves_the_model_and_the_generator_alone():
    model = tiny("post")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    result = measure_training_step(model, record(False), batch_shape=(2, 6, 6))
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and all(p.grad is None for p in model.parameters())
    again = measure_training_step(model, record(False), batch_shape=(2, 6, 6))
    assert again["loss_value"] == result["loss_value"]  # seeded ids and dropout


def test_default_batch_is_the_record_cut_to_the_measuring_budget(monkeypatch):
    model = tiny("post")
    monkeypatch.setattr(arithmetic, "MEASURE_TOKENS", 128)
    shape, note = arithmetic.measured_batch(model, record(False))
    assert shape == (4, 32, 32) and "cut from 8 to 4 rows" in note  # 256 tokens / 32 a row = 8 rows recorded


def test_bad_shapes_and_oversized_steps_are_refused(monkeypatch):
    model = tiny("post")
    for shape in [(0, 4, 4), (2, 65, 4), (2, 4), (2.0, 4, 4), "4x4x4"]:
        with pytest.raises(ValueError, match="batch shape"):
            training_memory(model, None, shape)
    monkeypatch.setattr(arithmetic, "MEASURE_MAX_BYTES", 1000)
    with pytest.raises(ValueError, match="needs about"):
        measure_training_step(model, None, batch_shape=(2, 4, 4))


def test_inference_cross_cache_is_what_the_model_projects():
    model = tiny("post")
    src = torch.randint(4, VOCAB, (1, 9))  # (1, S)
    with torch.inference_mode():
        memory = model.encode(src).memory  # (1, S, D)
        kv = [t for layer in model.decoder_layers for t in layer.cross_attn.project_kv(memory)]  # (1, H, S, Dh)
    out = inference_memory(model, src_len=9, tgt_len=5)
    assert out["kv_cross"] == sum(t.numel() * t.element_size() for t in kv)
    assert out["weights"] == sum(t.numel() * t.element_size() for t in model.state_dict().values())

