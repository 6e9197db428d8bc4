"""Train Regard's French->English Transformer.

    python train.py --out-dir runs/base --time-budget-min 105      # start or resume
    python train.py --help                                          # every setting, the network's too

Stop it at any time; running the same command again resumes from ``<out-dir>/last.pt``.
The best dev-BLEU weights are in ``<out-dir>/best.safetensors``; ``python -m training.export``
turns them (or an average of the last snapshots) into the shipped checkpoint.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import typing
from typing import Literal

from model import cli
from training.config import TrainConfig, flag_fields
from training.data import parse_sources
from training.loop import train


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """One flag per ``training.config.flag_fields`` entry: a run's settings and its network's."""
    parser = cli.Parser(prog="python train.py", description=__doc__)
    for name, (kind, default) in flag_fields().items():
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif typing.get_origin(kind) is Literal:
            parser.add_argument(flag, choices=typing.get_args(kind), default=default)
        else:
            parser.add_argument(flag, type=kind, default=default)
    try:
        return TrainConfig.from_dict(vars(parser.parse_args(argv)))
    except ValueError as e:  # a setting ModelConfig refuses (d_model not a multiple of n_heads, ...)
        parser.error(str(e))


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
