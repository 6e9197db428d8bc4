"""Sanity-sentence verdicts and generated model cards: bars marked from the recorded scores."""
from __future__ import annotations

import sys
from pathlib import Path

from model.checkpoint import save_checkpoint
from training.sanity import SENTENCES, check

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from model_card import card  # noqa: E402


def test_sanity_accepts_variants_and_refuses_wrong_translations():
    good = {fr: "" for fr in SENTENCES}
    good.update({
        "Je mange une pomme.": "I'm eating an apple.",
        "Le chat dort sur le canapé.": "The cat sleeps on the sofa.",
        "Il fait très beau aujourd'hui.": "The weather is very nice today.",
        "Nous allons à la plage demain matin.": "We will go to the beach tomorrow morning.",
        "L'animal n'a pas traversé la rue parce qu'il était trop fatigué.":
            "The animal didn't cross the road because it was too tired.",
        "Mon frère aîné travaille dans un hôpital à Lyon.": "My elder brother works at a hospital in Lyon.",
    })
    assert check(good)["correct"] == 6
    bad = dict(good)
    bad["Mon frère aîné travaille dans un hôpital à Lyon."] = "My older brother works in a hospital at the Seon."
    bad["Je mange une pomme."] = "I eat a apple."
    result = check(bad)
    assert result["correct"] == 4 and result["total"] == 6
    assert [r["correct"] for r in result["sentences"]][:1] == [False]
    asleep = dict(good, **{"Le chat dort sur le canapé.": "The cat is asleep on the couch."})
    assert check(asleep)["correct"] == 6
    awake = dict(good, **{"Le chat dort sur le canapé.": "The cat is awake on the couch."})
    assert check(awake)["correct"] == 5


def test_card_marks_each_bar_from_the_record(tiny_model, tiny_tokenizer, tmp_path):
    def score(bleu, name):
        return {"bleu": bleu, "chrf": 50.0, "n": 10, "command": f"python evaluate.py --name {name} --record"}

    record = {
        "steps": 100, "epochs": 1.5, "target_tokens_seen": 12345, "wall_time_min": 3.0, "target_tokens_per_s": 68,
        "hardware": "test CPU", "torch": "x", "date": "2026-11-22", "command": "python train.py --norm post",
        "train_config": {"train_path": "a/train.tsv:1,b/extra.tsv:2", "dev_path": "a/dev.tsv", "dev_limit": 0,
                         "aug_rate": 0.5, "late_aug_epoch": 4, "late_aug_rate": 2.0, "vocab_size": 100,
                         "split_elision": True, "byte_fallback": True},
        "dev_history": [{"step": s, "bleu": s / 10} for s in range(10, 130, 10)],
        "scores": {"tatoeba_test_greedy": score(56.1, "tatoeba"), "multi30k_test2016_greedy": score(20.0, "m30k"),
                   "newstest2013_greedy": score(9.9, "news"),
                   "name_copy": {"copied": 91.0, "entities": 500, "by_kind": {"name": 90.0},
                                 "command": "python -m training.name_copy --record"}},
        "sanity": check({fr: "wrong" for fr in SENTENCES}) | {"command": "python -m training.sanity --record"},
    }
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_model, tiny_tokenizer, record)
    text = card(path)
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "**yes**" in rows["Tatoeba test (3,000) ≥ 55.0"] and "56.10" in rows["Tatoeba test (3,000) ≥ 55.0"]
    assert "| no |" in rows["Multi30k test 2016 (1,000, out of domain) ≥ 35.0"]
    assert "not scored" in rows["FLORES-101 devtest (1,012, out of domain) ≥ 12.0"]
    assert "**yes**" in rows["name-copy test ≥ 90 %"] and "0/6 | no" in rows["sanity sentences all correct"]
    for command in ("--name tatoeba --record", "--name m30k --record", "training.name_copy --record",
                    "training.sanity --record", "python train.py --norm post"):
        assert command in text
    assert "0.5 copies per such pair in epochs 0–3, 2.0 from epoch 4 on" in text
    assert "| step | 10 |" in text and "| 120 |" in text  # ten points of the dev curve, first and last kept


def test_shipped_pair_fits_40_mb_and_each_card_is_generated_from_its_record(monkeypatch):
    """Issue 7's deliverable: both checkpoints in checkpoints/, together <= 40 MB, every bar scored in
    the file's own record, and each card exactly what scripts/model_card.py writes from that record."""
    from conftest import ROOT
    from model.checkpoint import load_checkpoint
    from model_card import BARS

    monkeypatch.chdir(ROOT)  # the cards name their checkpoint by its path relative to the repository
    pair = sorted(Path("checkpoints").glob("regard-fr-en-*.safetensors"))
    assert [p.name for p in pair] == ["regard-fr-en-postln.safetensors", "regard-fr-en-preln.safetensors"]
    assert sum(p.stat().st_size for p in pair) <= 40 * 1000**2
    for path in pair:
        record = load_checkpoint(path).training
        assert {key for key, _, _ in BARS} | {"name_copy"} <= set(record["scores"]) and record["sanity"]["total"] == 6
        assert path.with_suffix(".md").read_text(encoding="utf-8") == card(path) + "\n"
