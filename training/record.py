"""Print what a checkpoint says about itself: architecture, size, training record and scores.

    python -m training.record                                   # the shipped checkpoint
    python -m training.record runs/base/best.safetensors --json # everything, as JSON
"""
from __future__ import annotations

import json
import sys

from model import cli
from model.checkpoint import DEFAULT_CHECKPOINT
from model.record import best_head
from model.memory import human_bytes, parameter_count


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(prog="python -m training.record", description=__doc__)
    p.add_argument("checkpoint", nargs="?", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--json", action="store_true", help="print the whole record as JSON")
    args = p.parse_args(argv)
    return cli.run(lambda: show(args))


def show(args) -> int:
    ckpt = cli.load(args.checkpoint)
    rec = ckpt.training
    if args.json:
        print(json.dumps({"config": ckpt.config.to_dict(), "parameters": parameter_count(ckpt.model),
                          "training": rec}, indent=2))
        return 0
    cfg = ckpt.config
    size = ckpt.path.stat().st_size
    print(f"checkpoint      {ckpt.path} ({human_bytes(size)}, weights stored as {rec.get('exported_dtype', 'float32')})")
    print(f"architecture    {cfg.n_encoder_layers}+{cfg.n_decoder_layers} layers, d_model {cfg.d_model}, "
          f"{cfg.n_heads} heads, d_ff {cfg.d_ff}, {cfg.norm}-LN, {cfg.activation}, "
          f"vocab {cfg.tgt_vocab_size} joint{' tied' if cfg.tie_embeddings else ''}, dropout {cfg.dropout}")
    print(f"parameters      {parameter_count(ckpt.model):,}")
    if "target_tokens_seen" in rec:  # a record written by training/loop.py
        print(f"training        {rec['steps']} steps, {rec['epochs']} epochs, {rec['target_tokens_seen']:,} target "
              f"tokens, {rec['wall_time_min']} min, {rec['target_tokens_per_s']} target tokens/s")
        print(f"hardware        {rec.get('hardware')}, torch {rec.get('torch')}, {rec.get('date')}")
        print(f"command         {rec.get('command')}")
        best = rec.get("best_dev", {})
        print(f"best dev        BLEU {best.get('bleu')} chrF {best.get('chrf')} at step {best.get('step')}")
        for h in rec.get("dev_history", []):
            print(f"  dev @ step {h['step']:>5} ({h['minutes']:>5} min): BLEU {h['bleu']:5.2f} chrF {h['chrf']:5.2f}")
    if rec.get("averaged"):
        print(f"averaged        {', '.join(rec['averaged'])}")
    for t in rec.get("average_selection", []):
        print(f"  mean of the last {t['average_last']}: dev BLEU {t['bleu']:5.2f} chrF {t['chrf']:5.2f}")
    for name, s in rec.get("scores", {}).items():
        if "copied" in s:  # training.name_copy
            kinds = ", ".join(f"{k} {v}%" for k, v in s.get("by_kind", {}).items())
            print(f"score {name:<18} {s['copied']}% of {s['entities']} names/cities/numbers copied exactly ({kinds})")
        else:
            print(f"score {name:<18} BLEU {s['bleu']:5.2f} chrF {s['chrf']:5.2f} (beam {s['beam']}, {s['n']} sentences)")
        print(f"  {s.get('command', '')}")
    align = rec.get("head_alignment")
    if align:  # scripts/head_alignment.py --record
        f1 = align["head_f1"]
        layer, head = best_head(f1)
        print(f"head alignment  best cross-attention head: layer {layer + 1} head {head + 1}, F1 {f1[layer][head]:.3f} "
              f"against {align['aligner']} ({align['scored_pairs']} pairs); layer means "
              + ", ".join(f"{v:.2f}" for v in align["layer_f1"]))
        print(f"  {align.get('command', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
