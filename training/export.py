"""Turn a training run into the shipped checkpoint.

    python -m training.export runs/base --out runs/base/model.safetensors --dtype float16
    python -m training.export runs/base --average-last 3 --out ...   # mean of the last 3 snapshots

Without --average-last the run's best dev-BLEU weights are exported. float16 halves the file; the
weights are loaded back as float32, so evaluate the exported file, not the run's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.device import DTYPES


def average_checkpoints(paths: list[Path]):
    """Load each checkpoint and average their weights; config and tokenizer come from the last one."""
    ckpts = [load_checkpoint(p) for p in paths]
    base = ckpts[-1]
    state = base.model.state_dict()
    for name in state:
        state[name] = torch.stack([c.model.state_dict()[name].float() for c in ckpts]).mean(0)
    base.model.load_state_dict(state)
    base.training = dict(base.training, averaged=[p.name for p in paths])
    return base


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--average-last", type=int, default=0, help="average the last N snapshots instead of best")
    p.add_argument("--dtype", default="float16", choices=sorted(DTYPES))
    args = p.parse_args(argv)
    try:
        if args.average_last:
            snaps = sorted((args.run_dir / "snapshots").glob("step*.safetensors"))[-args.average_last :]
            if len(snaps) < args.average_last:
                raise CheckpointError(f"{args.run_dir}/snapshots: {len(snaps)} snapshots, {args.average_last} asked")
            ckpt = average_checkpoints(snaps)
        else:
            ckpt = load_checkpoint(args.run_dir / "best.safetensors")
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    record = dict(ckpt.training, exported_dtype=args.dtype)
    history = record.get("dev_history") or []
    if history:  # the evaluations are the source of truth for the best one (older runs saved it stale)
        record["best_dev"] = max(history, key=lambda h: h["bleu"])
    save_checkpoint(args.out, ckpt.model, ckpt.tokenizer, record, dtype=DTYPES[args.dtype])
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB, {args.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
