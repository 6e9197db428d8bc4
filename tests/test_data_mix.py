"""Issue 7's data pipeline: weighted sources, name/number substitution, elision-aware tokenizer,
and both normalisation variants trained, resumed, loaded and used end to end on tiny data."""
from __future__ import annotations

import random
import re

import pytest
import torch

from conftest import tiny_pairs
from model.checkpoint import load_checkpoint
from model.limits import unknown_share
from model.decoding import trace_translation, translate_batch
from model.tokenizer import UNK_ID, Tokenizer, join_elision, split_elision_text
from training.augment import augment, augment_pair, entity_pools, substitutable
from training.config import TrainConfig
from training.data import epoch_indices, parse_sources
from training.loop import aug_rate_for, train


def write_tsv(path, pairs) -> str:
    path.write_text("".join(f"{fr}\t{en}\n" for fr, en in pairs), encoding="utf-8")
    return str(path)


# --- sources and weights -------------------------------------------------------------------------

def test_parse_sources_reads_weights_and_rejects_bad_ones():
    got = parse_sources("a.tsv:2, dir/b.tsv ,c.tsv:0.5")
    assert [(s.path, s.weight, s.name) for s in got] == [("a.tsv", 2.0, "a"), ("dir/b.tsv", 1.0, "b"), ("c.tsv", 0.5, "c")]
    with pytest.raises(ValueError, match="no data files"):
        parse_sources(" , ")


def test_epoch_indices_follow_the_weights_and_the_seed():
    idx = epoch_indices([10, 4, 6], [1.0, 2.0, 0.5], seed=3)
    assert sorted(i for i in idx if i < 10) == list(range(10))
    assert sorted(i for i in idx if 10 <= i < 14) == sorted(list(range(10, 14)) * 2)
    third = [i for i in idx if i >= 14]
    assert len(third) == 3 and len(set(third)) == 3
    assert idx == epoch_indices([10, 4, 6], [1.0, 2.0, 0.5], seed=3)
    assert idx != epoch_indices([10, 4, 6], [1.0, 2.0, 0.5], seed=4)


# --- name, city and number substitution ----------------------------------------------------------

CRAFTED = [
    ("Tom a vu Mary à Paris.", "Tom saw Mary in Paris."),
    ("Tom a 30 ans et Mary en a 25.", "Tom is 30 and Mary is 25."),
    ("Je l'ai donné à Tom hier.", "I gave it to Tom yesterday."),
    ("Elle habite à Boston depuis 2010.", "She has lived in Boston since 2010."),
]


def test_substitution_is_consistent_on_both_sides():
    pools = entity_pools()[0]
    rng = random.Random(0)
    for _ in range(50):
        for fr, en in CRAFTED:
            found = substitutable(fr, en)
            assert found, (fr, en)
            new_fr, new_en = augment_pair(fr, en, rng, pools)
            for kind, old in found:
                if kind == "number":
                    assert sorted(re.findall(r"\d+", new_fr)) == sorted(re.findall(r"\d+", new_en))
                    assert len(re.findall(r"\d+", new_fr)) == len(re.findall(r"\d+", fr))
                else:
                    assert not re.search(rf"\b{old}\b", new_fr) and not re.search(rf"\b{old}\b", new_en)
            # every capitalised word of the new English that is not in the original came from French
            fresh = set(re.findall(r"[A-ZÀ-Ý][\w'-]+", new_en)) - set(re.findall(r"[A-ZÀ-Ý][\w'-]+", en))
            assert fresh and all(re.search(rf"(?<!\w){re.escape(w)}(?!\w)", new_fr) for w in fresh), (new_fr, new_en)


def test_pairs_without_entities_are_left_alone_and_held_out_names_are_never_used():
    assert augment_pair("Le chat dort.", "The cat sleeps.", random.Random(0)) is None
    train_pool, held = entity_pools()
    assert not set(train_pool.names) & set(held.names) and not set(train_pool.cities) & set(held.cities)
    out = augment(CRAFTED * 100, rate=1.0, seed=5)
    used = {w for _, en in out for w in re.findall(r"[A-ZÀ-Ý][\w-]+", en)}
    assert len(out) == 400 and not used & (set(held.names) | set(held.cities))


def test_rates_above_one_give_that_many_fresh_copies_of_each_pair():
    plain = [("Le chat dort.", "The cat sleeps.")] * 10
    out = augment(CRAFTED * 10 + plain, rate=2.0, seed=5)
    assert len(out) == 80 and len(set(out)) > 60  # two copies of each of the 40 pairs with an entity
    assert 10 <= len(augment(CRAFTED * 10, rate=0.5, seed=5)) <= 30 < 50 <= len(augment(CRAFTED * 10, rate=1.5, seed=5)) <= 70
    with pytest.raises(ValueError, match=">= 0"):
        augment(CRAFTED, rate=-1.0, seed=5)


def test_late_augmentation_applies_from_its_epoch_and_cannot_rewrite_an_epoch_begun(tmp_path):
    a = write_tsv(tmp_path / "a.tsv", CRAFTED * 3 + tiny_pairs(20, seed=1))
    dev = write_tsv(tmp_path / "dev.tsv", tiny_pairs(4, seed=2))
    cfg = TrainConfig.from_dict(dict(train_path=a, dev_path=dev, out_dir=str(tmp_path / "run"), vocab_size=200, aug_rate=0.5,
                                     d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=32, max_positions=64,
                                     max_tokens=200, warmup_steps=2, max_steps=8, log_every=4, eval_every_min=100, save_every_min=100))
    assert [aug_rate_for(TrainConfig(aug_rate=0.5, late_aug_epoch=2, late_aug_rate=2.0), e) for e in range(4)] == [0.5, 0.5, 2.0, 2.0]
    train(cfg, command="pytest")
    epoch = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["epoch"]
    assert epoch >= 1
    with pytest.raises(ValueError, match="epochs still to come"):  # epoch 1 has begun: its data is fixed
        train(cfg.replace(late_aug_epoch=1, late_aug_rate=2.0, max_steps=10))
    with pytest.raises(ValueError, match=">= 0"):
        train(cfg.replace(late_aug_epoch=epoch + 1, late_aug_rate=-1.0, max_steps=10))
    train(cfg.replace(late_aug_epoch=epoch + 1, late_aug_rate=2.0, max_steps=10))
    train(cfg.replace(max_steps=12))  # flags left at their defaults keep the saved rate
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["step"] == 12
    assert (state["train_config"]["late_aug_epoch"], state["train_config"]["late_aug_rate"]) == (epoch + 1, 2.0)


# --- the tokenizer ----------------------------------------------------------------------------------

def test_elision_split_keeps_english_contractions_and_inverts():
    assert split_elision_text("L'animal qu'il jusqu'à aujourd'hui") == "L' animal qu' il jusqu' à aujourd'hui"
    for english in ["I don't know, it's Tom's and I'd go.", "O'Neil can't"]:
        assert split_elision_text(english) == english
    text = "L’homme n'a pas vu l'arbre d'Alice."
    assert join_elision(split_elision_text(text)) == text


@pytest.fixture(scope="module")
def elision_tokenizer():
    words = ["animal", "arbre", "homme", "école", "ami", "enfant", "il", "elle", "a", "est"]
    sentences = [f"{w} {v}" for w in words for v in words] + [f"l'{w} d'{v}" for w in words for v in words]
    sentences += [" ".join(pair) for pair in tiny_pairs(200)]
    return Tokenizer.train(sentences, vocab_size=400, split_elision=True, byte_fallback=True)


def test_tokenizer_keeps_word_starts_after_elision(elision_tokenizer):
    pieces = elision_tokenizer.encode_pieces("L'animal qu'il a vu l'école")
    assert "▁animal" in pieces and "▁il" in pieces and "▁école" in pieces
    assert elision_tokenizer.decode(elision_tokenizer.encode("L'animal qu'il a vu l'école")) == "L'animal qu'il a vu l'école"


@pytest.mark.parametrize("text", ["😀😀😀", "東京で会いましょう", "a\u200db\u200bc", "Ωμέγα ∑ ﬁn", "Zoë Škoda Ærø"])
def test_tokenizer_round_trips_any_unicode_without_unk(elision_tokenizer, text):
    ids = elision_tokenizer.encode(text)
    assert UNK_ID not in ids
    assert elision_tokenizer.decode(ids) == text
    assert unknown_share(elision_tokenizer, text) > 0  # bytes, not pieces: the app and CLI warn about it


# --- both normalisation variants, end to end ---------------------------------------------------------

@pytest.mark.parametrize("norm", ["post", "pre"])
def test_norm_variant_trains_resumes_loads_and_translates(tmp_path, norm):
    a = write_tsv(tmp_path / "a.tsv", tiny_pairs(200, seed=1) + CRAFTED * 5)
    b = write_tsv(tmp_path / "b.tsv", tiny_pairs(100, seed=3))
    dev1 = write_tsv(tmp_path / "dev1.tsv", tiny_pairs(10, seed=2))
    dev2 = write_tsv(tmp_path / "dev2.tsv", tiny_pairs(10, seed=4))
    cfg = TrainConfig.from_dict(dict(
        train_path=f"{a}:1,{b}:0.5", dev_path=f"{dev1},{dev2}", out_dir=str(tmp_path / "run"), vocab_size=320,
        split_elision=True, byte_fallback=True, aug_rate=1.0, norm=norm, d_model=32, n_heads=4,
        n_encoder_layers=1, n_decoder_layers=1, d_ff=64, max_positions=64, max_tokens=400, warmup_steps=5, dev_limit=4,
        peak_lr=3e-3, max_steps=6, log_every=2, eval_every_min=100, save_every_min=100,
    ))
    torch.manual_seed(0)
    train(cfg, command="pytest")
    first = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    train(cfg.replace(max_steps=10), command="pytest resume")
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert (first["step"], state["step"]) == (6, 10)
    assert [h["step"] for h in state["train_history"]] == [2, 4, 6, 8, 10]
    ckpt = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert ckpt.config.norm == norm
    assert ckpt.tokenizer.split_elision and ckpt.tokenizer.byte_fallback
    record = ckpt.training
    assert set(record["dev_history"][-1]["sets"]) == {"dev1", "dev2"}
    for entry in record["train_history"]:
        assert entry["loss"] > 0 and entry["lr"] > 0 and entry["grad_norm"] > 0
    (out,) = translate_batch(ckpt.model, ckpt.tokenizer, ["L'animal dort."], max_len=6)
    traced = trace_translation(ckpt.model, ckpt.tokenizer, "L'animal dort.", max_len=6)  # the app's path
    assert out == traced.translation and 1 <= len(traced.steps) <= 6


def test_augmentation_is_the_same_in_every_process():
    """A resumed run rebuilds its epoch from the seed: nothing may depend on Python's hash seed."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    code = ("from training.augment import augment, entity_pools; import hashlib;"
            f"print(hashlib.md5(repr((entity_pools(), augment({CRAFTED * 20!r}, 0.5, 1))).encode()).hexdigest())")
    outs = {subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(outs) == 1


def test_record_printer_shows_name_copy_and_head_alignment(tiny_checkpoint, tmp_path, capsys):
    import shutil

    from model.record import store_in_record
    from training import record as record_cli

    path = tmp_path / "m.safetensors"
    shutil.copy(tiny_checkpoint, path)
    ckpt = load_checkpoint(path)
    store_in_record(ckpt, {
        "scores": {"name_copy": {"copied": 91.5, "by_kind": {"name": 90.0}, "entities": 400, "command": "c1"}},
        "head_alignment": {"aligner": "eflomal", "scored_pairs": 10, "layer_f1": [0.2, 0.6],
                           "head_f1": [[0.1, 0.2], [0.7, 0.5]], "command": "c2"},
    })
    assert record_cli.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "91.5% of 400 names/cities/numbers copied exactly (name 90.0%)" in out
    assert "layer 2 head 1, F1 0.700 against eflomal" in out
    assert load_checkpoint(path).training["scores"]["name_copy"]["copied"] == 91.5  # stored in the file
