"""Write a model card from what a checkpoint records about itself: every figure with its command.

    python scripts/model_card.py checkpoints/regard-fr-en-preln.safetensors > checkpoints/regard-fr-en-preln.md

The card is generated, not edited: architecture from the config, the training record written by
training/loop.py, and the scores that ``evaluate.py --record``, ``training.name_copy --record``,
``training.sanity --record`` and ``scripts/head_alignment.py --record`` stored in the file
(``scripts/ship_pair.sh`` runs all of them). It opens with the project's quality bars, each marked met
or not from the recorded score, so a card cannot claim a bar its checkpoint does not hold.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model import cli  # noqa: E402
from model.checkpoint import load_checkpoint  # noqa: E402
from model.memory import human_bytes, parameter_count  # noqa: E402
from model.record import best_head  # noqa: E402

# (score name in the record, label, bar or None for "reported") — the quality bars the pair is held to
BARS = (
    ("tatoeba_test_greedy", "Tatoeba test (3,000)", 55.0),
    ("multi30k_test2016_greedy", "Multi30k test 2016 (1,000, out of domain)", 35.0),
    ("flores101_devtest_greedy", "FLORES-101 devtest (1,012, out of domain)", 12.0),
    ("newstest2013_greedy", "newstest2013 (3,000, out of domain, selection)", None),
)
NAME_COPY_BAR = 90.0
LICENCES = """- Tatoeba (tatoeba.org), pairs packaged by manythings.org/anki (2019-04-07), **CC-BY 2.0 FR**.
- Multi30k task 1 (Flickr30K captions): **non-commercial research and education** only; this model
  inherits that restriction.
- WMT news 2008–2012 and news-discussion 2015 (statmt.org, via Helsinki-NLP/OPUS-MT-testsets):
  research use. NTREX-128 (Microsoft) and FLORES-101 (Meta): **CC BY-SA 4.0**. TICO-19: **CC0**.
  Europarl v7: free reuse with attribution."""


def bars(rec: dict) -> list[str]:
    scores, sanity = rec.get("scores", {}), rec.get("sanity")
    lines = ["| bar | value | held | command |", "|---|---|---|---|"]
    for key, label, bar in BARS:
        s = scores.get(key)
        value = "not scored" if s is None else f"BLEU {s['bleu']:.2f}, chrF {s['chrf']:.2f}"
        held = "reported" if bar is None and s else ("no" if s is None or s["bleu"] < bar else "**yes**")
        lines.append(f"| {label} {'≥ ' + str(bar) if bar else ''} | {value} | {held} | "
                     f"`{s['command'] if s else '–'}` |")
    nc = scores.get("name_copy")
    lines.append(f"| name-copy test ≥ {NAME_COPY_BAR:g} % | "
                 + (f"{nc['copied']} % of {nc['entities']} | {'**yes**' if nc['copied'] >= NAME_COPY_BAR else 'no'} | "
                    f"`{nc['command']}` |" if nc else "not run | no | – |"))
    lines.append("| sanity sentences all correct | "
                 + (f"{sanity['correct']}/{sanity['total']} | {'**yes**' if sanity['correct'] == sanity['total'] else 'no'}"
                    f" | `{sanity['command']}` |" if sanity else "not run | no | – |"))
    return lines


def aug_text(tc: dict) -> str:
    """How many substituted copies each pair with a name, city or number got, epoch by epoch."""
    text = f"{tc.get('aug_rate')} copies per such pair"
    if tc.get("late_aug_epoch"):
        text += f" in epochs 0–{tc['late_aug_epoch'] - 1}, {tc['late_aug_rate']} from epoch {tc['late_aug_epoch']} on"
    return text


def card(path: Path) -> str:
    ckpt = load_checkpoint(path)
    cfg, rec = ckpt.config, ckpt.training
    tc = rec.get("train_config", {})
    out = [f"# Regard fr→en, {cfg.norm}-LN — model card", "",
           f"`{path.as_posix()}` ({human_bytes(path.stat().st_size)}, weights stored as "
           f"{rec.get('exported_dtype', 'float32')}, loaded as float32). One of the two models of the "
           "normalisation experiment (docs/experiment.md): post-LN, the paper's baseline, and pre-LN, trained by "
           "`scripts/train_pair.sh` with the same data, recipe, seed and step budget. Every figure below "
           "is in the checkpoint's own record (`python -m training.record " + path.as_posix() + "`) with "
           "the command that produced it; this card is generated from it by "
           f"`python scripts/model_card.py {path.as_posix()}`.", "", "## Quality bars (greedy, sacrebleu defaults)", ""]
    out += bars(rec)
    out += ["", "## Data", ""]
    if tc.get("train_path"):
        parts = [p.rsplit(":", 1) for p in tc["train_path"].split(",")]
        out.append("Training files and weights (an epoch sees each file `weight` times): "
                   + ", ".join(f"`{Path(p[0]).parent.name}/{Path(p[0]).name}` ×{p[1] if len(p) > 1 else 1}" for p in parts) + ".")
        out.append(f"Selection: mean greedy BLEU over `{'`, `'.join(Path(p).name for p in tc.get('dev_path', '').split(','))}`"
                   f" (first {tc.get('dev_limit') or 'all'} pairs of each). Name/city/number substitution on both "
                   f"sides: {aug_text(tc)}; SentencePiece {tc.get('vocab_size')} pieces, elision "
                   f"split {tc.get('split_elision')}, byte fallback {tc.get('byte_fallback')}.")
    out += ["", LICENCES, "", "## Architecture", "", "| | |", "|---|---|",
            f"| type | encoder–decoder Transformer, **{cfg.norm}-LayerNorm**, {cfg.activation}, sinusoidal positions |",
            f"| size | {cfg.n_encoder_layers} + {cfg.n_decoder_layers} layers, d_model {cfg.d_model}, {cfg.n_heads} heads, "
            f"d_ff {cfg.d_ff}, max {cfg.max_positions} positions |",
            f"| vocabulary | {cfg.tgt_vocab_size:,} joint pieces{', tied embeddings and output' if cfg.tie_embeddings else ''} |",
            f"| parameters | {parameter_count(ckpt.model):,} |", f"| dropout | {cfg.dropout} |"]
    if "steps" in rec:
        out += ["", "## Training", "", "| | |", "|---|---|",
                f"| command | `{rec.get('command', '')}` |",
                f"| steps / epochs / target tokens | {rec['steps']:,} / {rec['epochs']} / {rec['target_tokens_seen']:,} |",
                f"| wall time, throughput | {rec['wall_time_min']} min, {rec['target_tokens_per_s']:,} target tokens/s |",
                f"| hardware | {rec.get('hardware')}, torch {rec.get('torch')}, {rec.get('date')} |",
                f"| exported | {', '.join(rec['averaged']) + ' averaged' if rec.get('averaged') else 'best dev weights'} |"]
        if rec.get("average_selection"):
            out.append("| average chosen on the dev mix | " + ", ".join(
                f"last {t['average_last']}: {t['bleu']:.2f}" for t in rec["average_selection"]) + " |")
        hist = rec.get("dev_history", [])
        if hist:
            pick = hist if len(hist) <= 10 else [hist[round(i * (len(hist) - 1) / 9)] for i in range(10)]
            out += ["", "Dev-mix BLEU (greedy) during training:", "",
                    "| step | " + " | ".join(str(h["step"]) for h in pick) + " |",
                    "|---|" + "---|" * len(pick),
                    "| BLEU | " + " | ".join(f"{h['bleu']:.2f}" for h in pick) + " |"]
    scores = {k: v for k, v in rec.get("scores", {}).items() if "bleu" in v}
    if scores:
        out += ["", "## All scores", "", "| name | BLEU | chrF | sentences | command |", "|---|---|---|---|---|"]
        out += [f"| {k} | {v['bleu']:.2f} | {v['chrf']:.2f} | {v.get('n', '–')} | `{v.get('command', '')}` |"
                for k, v in scores.items()]
    nc = rec.get("scores", {}).get("name_copy")
    if nc:
        out += ["", f"Name-copy test (`{nc['command']}`): {nc['copied']} % of {nc['entities']} held-out names, "
                f"cities and numbers copied exactly (" + ", ".join(f"{k} {v} %" for k, v in nc["by_kind"].items()) + ")."]
    align = rec.get("head_alignment")
    if align:
        f1 = align["head_f1"]
        layer, head = best_head(f1)
        out += ["", f"Word alignment of cross-attention heads against {align['aligner']} (`{align['command']}`): "
                f"best head layer {layer + 1} head {head + 1} (F1 {f1[layer][head]:.2f}); layer means "
                + ", ".join(f"{v:.2f}" for v in align["layer_f1"]) + "."]
    sanity = rec.get("sanity")
    if sanity:
        out += ["", f"## Sentences a person would type (`{sanity['command']}`)", "",
                "| French | English (greedy) | correct |", "|---|---|---|"]
        out += [f"| {r['fr']} | {r['en']} | {'yes' if r['correct'] else '**no**'} |" for r in sanity["sentences"]]
    out += ["", "## Limitations", "",
            "A 10-million-parameter model trained on two CPU cores: short everyday sentences and captions go "
            "best; long, technical or literary text comes out worse. Names it has never seen are copied "
            "only as often as the name-copy test says. Pronouns and gender follow the training data's "
            "statistics. Multi30k's licence makes it a research model.", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(prog="python scripts/model_card.py", description=__doc__)
    p.add_argument("checkpoint", type=Path)
    args = p.parse_args(argv)
    return cli.run(lambda: print(card(args.checkpoint)))


if __name__ == "__main__":
    sys.exit(main())
