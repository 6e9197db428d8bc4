"""Turn a training run into the shipped checkpoint.

    python -m training.export runs/base --out runs/base/model.safetensors --dtype float16
    python -m training.export runs/base --average-last 3 --out ...   # mean of the last 3 snapshots
    python -m training.export runs/base --average-best-of 4 --out ...  # the mean of the last 1..4
                                                                       # that scores best on the dev mix

Without either flag the run's best dev-BLEU weights are exported. --average-best-of scores each mean
after rounding it to --dtype (what ships) on the run's own dev sets and limit, never on a test set.
float16 halves the file; the weights are loaded back as float32, so evaluate the exported file, not
the run's.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

from model import cli
from model.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from model.device import DTYPES


def mean_checkpoint(ckpts: list[Checkpoint], names: list[str]) -> Checkpoint:
    """A new checkpoint holding the mean of ``ckpts``' weights (they are left as they are); config and
    tokenizer come from the last one, ``names`` go into its record as ``averaged``."""
    base = ckpts[-1]
    states = [c.model.state_dict() for c in ckpts]  # once each, not once per tensor
    model = copy.deepcopy(base.model)
    model.load_state_dict({name: torch.stack([state[name].float() for state in states]).mean(0) for name in states[-1]})
    return Checkpoint(model=model, tokenizer=base.tokenizer, training=dict(base.training, averaged=names),
                      path=base.path)


def average_checkpoints(paths: list[Path]) -> Checkpoint:
    """Load each checkpoint and average their weights; config and tokenizer come from the last one."""
    return mean_checkpoint([load_checkpoint(p) for p in paths], [p.name for p in paths])


def last_snapshots(run_dir: Path, n: int) -> list[Path]:
    """The run's last ``n`` snapshots, oldest first; ``CheckpointError`` if it has fewer."""
    snaps = sorted((run_dir / "snapshots").glob("step*.safetensors"))[-n:]
    if len(snaps) < n:
        raise CheckpointError(f"{run_dir}/snapshots: {len(snaps)} snapshots, {n} asked")
    return snaps


def select_average(run_dir: Path, most: int, dtype: torch.dtype):
    """Average the last k snapshots for k = 1..``most`` and keep the k with the best dev-mix BLEU.

    Each candidate is rounded to ``dtype`` before it is scored, so the score is the shipped file's.
    The dev sets and their limit come from the run's own config. Returns the checkpoint, its record
    holding every candidate's score under ``average_selection``.
    """
    from .data import parse_sources, read_pairs
    from .loop import evaluate_dev

    snaps = last_snapshots(run_dir, most)
    loaded = [load_checkpoint(p) for p in snaps]  # once each: the candidates share them
    cfg = loaded[-1].training.get("train_config") or {}
    if not cfg.get("dev_path"):
        raise CheckpointError(f"{snaps[-1]}: its record names no dev sets to select on")
    dev = {s.name: read_pairs(s.path)[: cfg.get("dev_limit") or None] for s in parse_sources(cfg["dev_path"])}
    best, tried = None, []
    for k in range(1, most + 1):
        ckpt = mean_checkpoint(loaded[-k:], [p.name for p in snaps[-k:]])
        state = ckpt.model.state_dict()
        ckpt.model.load_state_dict({n: t.to(dtype).float() for n, t in state.items()})
        result = evaluate_dev(ckpt.model, ckpt.tokenizer, dev)
        tried.append({"average_last": k, "bleu": result["bleu"], "chrf": result["chrf"]})
        print(f"mean of the last {k}: dev BLEU {result['bleu']:.2f} chrF {result['chrf']:.2f}", flush=True)
        if best is None or result["bleu"] > best[1]:
            best = (ckpt, result["bleu"])
    ckpt = best[0]
    ckpt.training = dict(ckpt.training, average_selection=tried)
    return ckpt


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(prog="python -m training.export", description=__doc__)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--average-last", type=cli.count(1), default=0, help="average the last N snapshots instead of best")
    p.add_argument("--average-best-of", type=cli.count(1), default=0, metavar="N",
                   help="average the last k snapshots for the k in 1..N with the best dev-mix BLEU")
    p.add_argument("--dtype", default="float16", choices=sorted(DTYPES))
    args = p.parse_args(argv)
    if args.average_last and args.average_best_of:
        p.error("give --average-last or --average-best-of, not both")
    return cli.run(lambda: export(args))


def export(args) -> int:
    if not args.run_dir.is_dir():
        raise cli.CliError(f"{args.run_dir}: no such run folder")
    cli.check_writable(args.out, "--out", make_parents=True)  # before the averaging, which evaluates every candidate
    if args.average_best_of:  # an OSError here: a dev set named in the record is missing
        ckpt = select_average(args.run_dir, args.average_best_of, DTYPES[args.dtype])
    elif args.average_last:
        ckpt = average_checkpoints(last_snapshots(args.run_dir, args.average_last))
    else:
        ckpt = load_checkpoint(args.run_dir / "best.safetensors")
    record = dict(ckpt.training, exported_dtype=args.dtype)
    history = record.get("dev_history") or []
    if history:  # the evaluations are the source of truth for the best one (older runs saved it stale)
        record["best_dev"] = max(history, key=lambda h: h["bleu"])
    save_checkpoint(args.out, ckpt.model, ckpt.tokenizer, record, dtype=DTYPES[args.dtype])
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB, {args.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
