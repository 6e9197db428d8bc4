"""The name-copy test: does the model copy names, cities and numbers it has never seen?

    python -m training.name_copy --checkpoint checkpoints/regard-fr-en-postln.safetensors [--record]

Builds French sentences from templates filled with first names and cities from the held-out pool of
``training.augment`` (never used for augmentation) that also occur nowhere in the training files, and
numbers; translates them greedily and counts the entities that appear in the English exactly as
written (case and accents included). Prints the share per kind and overall; ``--record`` stores it in
the checkpoint's record as ``scores["name_copy"]``.
"""
from __future__ import annotations

import json
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from model import cli
from model.checkpoint import DEFAULT_CHECKPOINT
from model.decoding import translate_batch
from model.record import store_score

from .augment import entity_pools

TRAIN_FILES = ("tatoeba/train.tsv", "extra/multi30k_train.tsv", "extra/wmt_news_2008_2012.tsv",
               "extra/europarl_v7_first3k.tsv", "extra/ntrex128.tsv", "extra/tico19.tsv")
DATA_ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

# {n}: a first name, {m}: another, {c}: a city, {k}: a number. "de"/"à" before a vowel is handled below.
TEMPLATES = (
    "{n} habite à {c} depuis {k} ans.",
    "J'ai rencontré {n} à {c} la semaine dernière.",
    "{n} a acheté {k} livres hier.",
    "Le train pour {c} part dans {k} minutes.",
    "{n} et {m} travaillent à {c}.",
    "Mon ami {n} a {k} ans.",
    "{n} m'a appelé hier soir.",
    "Nous irons à {c} avec {n} demain.",
    "{n} a gagné {k} euros au loto.",
    "La ville de {c} compte {k} habitants.",
    "Est-ce que {n} connaît {m} ?",
    "{n} est né à {c}.",
)


@dataclass(frozen=True)
class Case:
    french: str
    entities: tuple[tuple[str, str], ...]  # (kind, exact string expected in the English)


def _words(paths: list[Path]) -> set[str]:
    words: set[str] = set()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                words.update(re.findall(r"[^\W\d_]+", line))
    return words


def build_cases(n: int, seed: int = 0, exclude: set[str] = frozenset()) -> list[Case]:
    """``n`` sentences whose names and cities come from the held-out pool minus ``exclude``."""
    held = entity_pools()[1]
    names = [w for w in held.names if w not in exclude]
    cities = [w for w in held.cities if w not in exclude]
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        template = TEMPLATES[i % len(TEMPLATES)]
        first, other = rng.sample(names, 2)
        slots = {"n": first, "m": other, "c": rng.choice(cities), "k": str(rng.choice([rng.randint(2, 99), rng.randint(100, 9999)]))}
        french = template.format(**slots)
        french = re.sub(r"\b([Dd])e ([AEIOUYÉ])", r"\1'\2", french)  # "de Anvers" -> "d'Anvers"
        kinds = {"n": "name", "m": "name", "c": "city", "k": "number"}
        entities = tuple((kinds[k], slots[k]) for k in re.findall(r"{(\w)}", template))
        cases.append(Case(french, entities))
    return cases


def copy_rates(cases: list[Case], hypotheses: list[str]) -> dict:
    """Share of entities found verbatim (as a whole word) in the hypothesis, per kind and overall."""
    hits: dict[str, list[int]] = {}
    for case, hyp in zip(cases, hypotheses, strict=True):
        for kind, word in case.entities:
            found = re.search(rf"(?<![^\W_]){re.escape(word)}(?![^\W_])", hyp) is not None
            hits.setdefault(kind, []).append(int(found))
    everything = [h for v in hits.values() for h in v]
    rates = {kind: round(100 * sum(v) / len(v), 1) for kind, v in sorted(hits.items())}
    return {"copied": round(100 * sum(everything) / len(everything), 1), "by_kind": rates,
            "entities": len(everything), "sentences": len(cases)}


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(prog="python -m training.name_copy", description=__doc__)
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--n", type=cli.count(1), default=240, help="number of sentences")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", type=Path, default=DATA_ROOT, help="where the training files are (to exclude their words)")
    p.add_argument("--show", type=cli.count(0), default=5, help="print this many failures")
    p.add_argument("--record", action="store_true", help="store the score in the checkpoint's record")
    args = p.parse_args(argv)
    return cli.run(lambda: run(args, argv))


def run(args, argv: list[str] | None) -> int:
    for f in TRAIN_FILES:
        cli.check_readable(args.data_root / f, "--data-root: training file")
    ckpt = cli.load(args.checkpoint)
    if args.record:
        cli.check_writable(ckpt.path, "--record: checkpoint")
    exclude = _words([args.data_root / f for f in TRAIN_FILES])
    cases = build_cases(args.n, args.seed, exclude)
    with torch.inference_mode():
        hyps = translate_batch(ckpt.model, ckpt.tokenizer, [c.french for c in cases], batch_size=60)
    result = copy_rates(cases, hyps)
    result["command"] = "python -m training.name_copy " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"name-copy test: {result['copied']:.1f}% of {result['entities']} entities copied exactly "
          f"({', '.join(f'{k} {v:.1f}%' for k, v in result['by_kind'].items())})")
    shown = 0
    for case, hyp in zip(cases, hyps):
        if shown < args.show and copy_rates([case], [hyp])["copied"] < 100:
            print(f"  {case.french} -> {hyp}")
            shown += 1
    if args.record:
        store_score(ckpt, "name_copy", result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
