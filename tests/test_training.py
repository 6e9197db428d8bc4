"""The training pipeline end to end on tiny data made here: train, resume, export, evaluate."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, tiny_pairs
from model.checkpoint import load_checkpoint
from model.decoding import trace_translation, translate_batch
from training.config import TrainConfig
from training.data import EncodedPairs, collate, make_batches, read_pairs
from training.loop import train
from training.metrics import score
from training.schedule import inverse_sqrt_lr


def write_tsv(path, pairs) -> str:
    path.write_text("".join(f"{fr}\t{en}\n" for fr, en in pairs), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    cfg = TrainConfig.from_dict(dict(
        train_path=write_tsv(tmp / "train.tsv", tiny_pairs(300, seed=1)),
        dev_path=write_tsv(tmp / "dev.tsv", tiny_pairs(20, seed=2)),
        out_dir=str(tmp / "run"), vocab_size=96, d_model=32, n_heads=4, n_encoder_layers=1, n_decoder_layers=1,
        d_ff=64, max_positions=64, max_tokens=400, warmup_steps=10, peak_lr=3e-3, max_steps=12, log_every=4,
        eval_every_min=100, save_every_min=100, keep_snapshots=2,
    ))
    train(cfg, command="pytest")
    first = torch.load(tmp / "run" / "last.pt", weights_only=False)
    train(cfg.replace(max_steps=20), command="pytest resume")
    return tmp / "run", first


def test_training_writes_and_resumes_a_checkpoint(run_dir):
    out, first = run_dir
    assert first["step"] == 12
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["step"] == 20 and state["epoch"] >= 1
    assert [h["step"] for h in state["history"]] == [12, 20]  # one final evaluation per segment
    assert state["elapsed"] > first["elapsed"]
    ckpt = load_checkpoint(out / "best.safetensors")
    record = ckpt.training
    assert record["steps"] in (12, 20) and record["best_dev"]["bleu"] >= 0
    assert record["train_config"]["d_model"] == 32
    (english,) = translate_batch(ckpt.model, ckpt.tokenizer, ["Le chat dort."], max_len=5)
    traced = trace_translation(ckpt.model, ckpt.tokenizer, "Le chat dort.", max_len=5)  # the app's path
    assert english == traced.translation and 1 <= len(traced.steps) <= 5
    assert len(list((out / "snapshots").glob("*.safetensors"))) == 2


def test_resume_continues_the_same_weights(run_dir):
    out, first = run_dir
    resumed = torch.load(out / "last.pt", weights_only=False)
    name = "decoder_layers.0.ffn.linear1.weight"
    assert not torch.equal(first["model"][name], resumed["model"][name])  # training went on from there


def run_export(run: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.export", str(run), "--out", str(out), *flags],
                          cwd=ROOT, capture_output=True, text=True)


def test_export_and_evaluate_entry_points(run_dir, tmp_path):
    out, _ = run_dir
    shipped = tmp_path / "shipped.safetensors"
    res = run_export(out, shipped, "--average-last", "2", "--dtype", "float16")
    assert res.returncode == 0, res.stderr
    ckpt = load_checkpoint(shipped)
    assert ckpt.training["averaged"] == ["step000012.safetensors", "step000020.safetensors"]
    # The references are the model's own output (empty ones become "x"), scored here and by evaluate.py.
    french = ["Le chat dort sur le canapé.", "Nous allons à la plage."]
    own = translate_batch(ckpt.model, ckpt.tokenizer, french)
    data = write_tsv(tmp_path / "eval.tsv", [(f, e if e else "x") for f, e in zip(french, own)])
    res = subprocess.run([sys.executable, "evaluate.py", "--checkpoint", str(shipped), "--data", data, "--record",
                          "--name", "own"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout.strip().splitlines()[-1])
    # evaluate.py scores the model's own output against those references: the same numbers as here
    refs = [e if e else "x" for e in own]
    expected = score(own, refs)
    assert (result["bleu"], result["chrf"]) == (pytest.approx(expected.bleu, abs=0.01), pytest.approx(expected.chrf, abs=0.01))
    assert load_checkpoint(shipped).training["scores"]["own"]["bleu"] == result["bleu"]


def test_export_selects_the_average_on_the_dev_mix(run_dir, tmp_path):
    out, _ = run_dir
    shipped = tmp_path / "chosen.safetensors"
    res = run_export(out, shipped, "--average-best-of", "2", "--dtype", "float16")
    assert res.returncode == 0, res.stderr
    record = load_checkpoint(shipped).training
    tried = record["average_selection"]
    assert [t["average_last"] for t in tried] == [1, 2]
    chosen = max(tried, key=lambda t: t["bleu"])  # the first of equals, as the export keeps it
    assert len(record["averaged"]) == chosen["average_last"]
    assert record["averaged"][-1] == "step000020.safetensors"


def test_export_refuses_two_averaging_flags_and_missing_snapshots(run_dir, tmp_path):
    out, _ = run_dir
    for flags, reason in ((["--average-last", "2", "--average-best-of", "2"], "not both"),
                          (["--average-best-of", "3"], "2 snapshots, 3 asked"),
                          (["--average-best-of", "0"], "must be at least 1"),
                          (["--average-last", "-1"], "must be at least 1")):
        res = run_export(out, tmp_path / "x.safetensors", *flags)
        assert res.returncode == 2 and reason in res.stderr and "Traceback" not in res.stderr
        assert not (tmp_path / "x.safetensors").exists()


def test_metrics_score_known_pairs():
    assert score(["The cat sleeps on the sofa."], ["The cat sleeps on the sofa."]).bleu == pytest.approx(100.0)
    assert score(["Dogs run."], ["The cat sleeps on the sofa."]).bleu == pytest.approx(0.0)
    # 5 of 6 words, then 3/5 bigrams, 2/4 trigrams, 1/3 4-grams; same length, so no brevity penalty
    s = score(["the cat sat on a mat"], ["the cat sat on the mat"])
    assert s.bleu == pytest.approx(100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=0.01)
    assert "tok:13a" in s.bleu_signature and "nc:6" in s.chrf_signature


def test_schedule_warms_up_then_decays():
    assert inverse_sqrt_lr(50, 1e-3, 100) == pytest.approx(5e-4)
    assert inverse_sqrt_lr(100, 1e-3, 100) == pytest.approx(1e-3)
    assert inverse_sqrt_lr(400, 1e-3, 100) == pytest.approx(5e-4)


def test_batches_respect_the_token_budget_and_cover_every_pair(tmp_path):
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 30, (500, 2), generator=g).tolist()
    data = EncodedPairs([[5] * a for a, _ in lengths], [[6] * b for _, b in lengths])
    batches = make_batches(data, max_tokens=256, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        src, tgt_in, tgt_out = collate(data, b, pad_id=0, bos_id=2)
        assert len(b) * max(src.size(1), tgt_in.size(1)) <= 256
        assert torch.all(tgt_in[:, 0] == 2)
    assert make_batches(data, 256, seed=0) == batches and make_batches(data, 256, seed=1) != batches


def test_bad_training_file_names_the_line(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("Bonjour.\tHello.\nno tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.tsv:2"):
        read_pairs(bad)


def test_resume_takes_bookkeeping_from_the_command_line_and_refuses_a_new_recipe(tmp_path):
    cfg = TrainConfig.from_dict(dict(
        train_path=write_tsv(tmp_path / "train.tsv", tiny_pairs(200, seed=1)),
        dev_path=write_tsv(tmp_path / "dev.tsv", tiny_pairs(10, seed=2)),
        out_dir=str(tmp_path / "run"), vocab_size=96, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1,
        d_ff=32, max_positions=64, max_tokens=300, warmup_steps=2, max_steps=4, log_every=2,
        eval_every_min=100, save_every_min=100, keep_snapshots=1,
    ))
    train(cfg, command="pytest")
    snaps = tmp_path / "run" / "snapshots"
    assert len(list(snaps.glob("*.safetensors"))) == 1
    with pytest.raises(ValueError, match=r"keeps its recipe: --d-model 32 \(the run has 16\)"):
        train(cfg.replace(d_model=32, max_steps=6))
    with pytest.raises(ValueError, match=r"--train-path .*:2 \(the run has"):
        train(cfg.replace(train_path=cfg.train_path + ":2", max_steps=6))
    relative = os.path.relpath(cfg.train_path)  # the same file named another way is the same recipe
    train(cfg.replace(train_path=relative, keep_snapshots=3, max_steps=6))
    train(cfg.replace(keep_snapshots=4, max_steps=8))  # left at its default: the run's 3
    assert sorted(p.name for p in snaps.glob("*.safetensors")) == [
        "step000004.safetensors", "step000006.safetensors", "step000008.safetensors"]
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["train_config"]["keep_snapshots"] == 3


def test_every_network_setting_is_a_train_flag_and_reaches_the_trained_model(tmp_path):
    """The architecture is declared once (ModelConfig): each of its fields a run chooses is a flag of
    train.py, and what the flags ask for is the network the checkpoint holds."""
    from dataclasses import fields

    from model.config import ModelConfig
    from train import parse_args

    chosen = {f.name for f in fields(ModelConfig)} - {"src_vocab_size", "tgt_vocab_size", "pad_id", "unk_id", "bos_id", "eos_id"}
    help_text = subprocess.run([sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True).stdout
    assert {name for name in chosen if f"--{name.replace('_', '-')}" not in help_text} == set()
    args = ["--train-path", write_tsv(tmp_path / "train.tsv", tiny_pairs(120, seed=1)),
            "--dev-path", write_tsv(tmp_path / "dev.tsv", tiny_pairs(6, seed=2)), "--out-dir", str(tmp_path / "run"),
            "--vocab-size", "90", "--d-model", "24", "--n-heads", "3", "--n-encoder-layers", "1", "--n-decoder-layers", "2",
            "--d-ff", "40", "--max-positions", "48", "--norm", "pre", "--activation", "silu", "--no-tie-embeddings",
            "--output-bias", "--attention-dropout", "0.05", "--dropout", "0.2",
            "--max-tokens", "200", "--max-steps", "2", "--eval-every-min", "100", "--save-every-min", "100"]
    train(parse_args(args), command="pytest")
    got = load_checkpoint(tmp_path / "run" / "best.safetensors").config
    assert got == ModelConfig(src_vocab_size=90, tgt_vocab_size=90, d_model=24, n_heads=3, n_encoder_layers=1,
                              n_decoder_layers=2, d_ff=40, max_positions=48, norm="pre", activation="silu",
                              tie_embeddings=False, output_bias=True, attention_dropout=0.05, dropout=0.2)
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert (saved["attention_dropout"], saved["output_bias"], saved["n_heads"]) == (0.05, True, 3)
    assert "model" not in saved and "src_vocab_size" not in saved  # one flat key per flag, as records always had
    with pytest.raises(SystemExit) as refused:
        parse_args(["--d-model", "25", "--n-heads", "3"])  # ModelConfig's own rule, at the command line
    assert refused.value.code == 2
