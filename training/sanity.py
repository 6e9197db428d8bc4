"""The sentences a person would type first, and whether the model gets them right.

    python -m training.sanity --checkpoint checkpoints/regard-fr-en-preln.safetensors [--record]

Five sentences from the first model card plus the issue 7 sentence about a brother in Lyon. Each has
a pattern of the English translations counted as correct (word order, contractions and synonyms a
native speaker would accept, nothing looser); the greedy translation either matches it or it does
not. ``--record`` stores the translations and the verdicts in the checkpoint's record as
``sanity``, which the model cards print.
"""
from __future__ import annotations

import json
import re
import sys

import torch

from model import cli
from model.checkpoint import DEFAULT_CHECKPOINT
from model.decoding import translate_batch
from model.record import store_in_record

# French -> accepted English (a full match of the regular expression, case-sensitive)
SENTENCES: dict[str, str] = {
    "Je mange une pomme.": r"I(?: eat|'m eating| am eating) an apple\.",
    "Le chat dort sur le canapé.": r"The cat(?: sleeps|'s sleeping| is sleeping|'s asleep| is asleep) on the (?:couch|sofa)\.",
    "Il fait très beau aujourd'hui.":
        r"(?:It's|It is|The weather(?:'s| is)) (?:very|really) (?:nice|beautiful|fine|good|lovely)(?: weather)? today\."
        r"|It's a (?:very|really) (?:nice|beautiful|fine|lovely) day(?: today)?\.",
    "Nous allons à la plage demain matin.":
        r"We(?:'re| are) going to the beach tomorrow morning\.|We(?:'ll| will) go to the beach tomorrow morning\.",
    "L'animal n'a pas traversé la rue parce qu'il était trop fatigué.":
        r"The animal (?:didn't|did not) (?:cross|get across|go across|walk across) the (?:street|road) because (?:it|he) was too tired\.",
    "Mon frère aîné travaille dans un hôpital à Lyon.":
        r"My (?:older|elder|big|eldest|oldest) brother works (?:in|at) a hospital in Lyon\.",
}


def check(translations: dict[str, str]) -> dict:
    """{french: english} -> the record: each sentence with its verdict, and how many are correct."""
    rows = [{"fr": fr, "en": translations[fr], "correct": re.fullmatch(SENTENCES[fr], translations[fr].strip()) is not None}
            for fr in SENTENCES]
    return {"sentences": rows, "correct": sum(r["correct"] for r in rows), "total": len(rows)}


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(prog="python -m training.sanity", description=__doc__)
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--record", action="store_true", help="store the result in the checkpoint's record")
    args = p.parse_args(argv)
    return cli.run(lambda: run(args, argv))


def run(args, argv: list[str] | None) -> int:
    ckpt = cli.load(args.checkpoint)
    if args.record:
        cli.check_writable(ckpt.path, "--record: checkpoint")
    french = list(SENTENCES)
    with torch.inference_mode():
        english = translate_batch(ckpt.model, ckpt.tokenizer, french, batch_size=1)  # one at a time, as typed
    result = check(dict(zip(french, english)))
    result["command"] = "python -m training.sanity " + " ".join(argv if argv is not None else sys.argv[1:])
    for row in result["sentences"]:
        print(f"{'ok ' if row['correct'] else 'NO '} {row['fr']} -> {row['en']}")
    print(f"{result['correct']}/{result['total']} correct")
    if args.record:
        store_in_record(ckpt, {"sanity": result})
        print(f"recorded as sanity in {ckpt.path}")
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
