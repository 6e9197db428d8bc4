"""Train Regard's French->English Transformer.

    python train.py --out-dir runs/base --time-budget-min 105      # start or resume
    python train.py --help                                          # every TrainConfig field as a flag

Stop it at any time; running the same command again resumes from ``<out-dir>/last.pt``.
The best dev-BLEU weights are in ``<out-dir>/best.safetensors``; ``python -m training.export``
turns them (or an average of the last snapshots) into the shipped checkpoint.
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys

from model import cli
from training.config import TrainConfig
from training.data import parse_sources
from training.loop import train


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    parser = cli.Parser(prog="python train.py", description=__doc__)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            kind = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
            parser.add_argument(flag, type=kind, default=f.default)
    return TrainConfig(**vars(parser.parse_args(argv)))


def check_files(cfg: TrainConfig) -> None:
    """Every data file readable, the run folder makeable and the device known, before hours of work depend on them."""
    cli.device(cfg.device)
    for flag, spec in (("--train-path", cfg.train_path), ("--dev-path", cfg.dev_path)):
        for source in parse_sources(spec):
            cli.check_readable(source.path, flag)
    cli.check_creatable_dir(cfg.out_dir, "--out-dir")


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    command = "python train.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))

    def work() -> int:
        check_files(cfg)
        train(cfg, command)  # a recipe the run cannot take (e.g. rewriting an epoch already trained): ValueError
        return 0

    return cli.run(work)


if __name__ == "__main__":
    sys.exit(main())
