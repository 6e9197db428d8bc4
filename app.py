"""Regard in the browser: translate French to English and watch the Transformer decode, token by token.

    python app.py                                         # every checkpoints/*.safetensors, the default first
    python app.py --checkpoint A.safetensors --checkpoint B.safetensors --port 7861
    GRADIO_SERVER_NAME=0.0.0.0 python app.py              # listen on all interfaces (e.g. a Space)

This file only reads the command line and launches; the app itself is the ``ui`` package.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from model import cli
from model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError
from model.device import pick_device
from ui.context import MainThreadRunner, load_context, tune_allocator
from ui.handlers import warm_up
from ui.layout import build_demo
from ui.server import MAX_QUEUE


def default_checkpoints() -> list[str]:
    """The shipped default first, then every other checkpoint next to it."""
    others = sorted(p for p in DEFAULT_CHECKPOINT.parent.glob("*.safetensors") if p != DEFAULT_CHECKPOINT)
    return [str(DEFAULT_CHECKPOINT), *map(str, others)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.Parser(prog="python app.py", description="Regard: French -> English translation, step by step, in the browser.")
    env = os.environ.get("REGARD_CHECKPOINT")
    parser.add_argument("--checkpoint", action="append", default=None,
                        help="a Regard .safetensors checkpoint or a Hugging Face Marian directory; repeat to serve "
                             "several (the first is the default; "
                             f"default: every checkpoints/*.safetensors, {DEFAULT_CHECKPOINT.name} first; env REGARD_CHECKPOINT)")
    parser.add_argument("--device", default=os.environ.get("REGARD_DEVICE"),
                        help="cpu, cuda, cuda:1... (default: cuda if available, else cpu; env REGARD_DEVICE)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (default: %(default)s; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                        help="port (default: %(default)s)")
    parser.add_argument("--concurrency", type=cli.count(1), default=2,
                        help="model calls run at once (default: %(default)s, one per core of the 2-core host)")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    parser.add_argument("--max-queue", type=cli.count(1), default=MAX_QUEUE,
                        help="requests that may wait for the model; beyond it a visitor is told to try again "
                             "(default: %(default)s)")
    parser.add_argument("--analytics", action="store_true",
                        help="allow Gradio's usage telemetry (off by default: nothing leaves the server unasked)")
    args = parser.parse_args(argv)
    args.checkpoint = args.checkpoint or ([env] if env else default_checkpoints())
    return args


def main(argv: list[str] | None = None) -> int:
    tune_allocator()  # before the server's threads start: freed buffers go back to the OS (ui/context.py)
    args = parse_args(argv)
    for path in map(Path, args.checkpoint):
        if not path.exists():  # a checkpoint file, or a Hugging Face Marian model directory
            return cli.fail(f"no checkpoint at {path}: train one (python train.py --out-dir runs/base, then "
                            f"python -m training.export runs/base --out checkpoints/{DEFAULT_CHECKPOINT.name}; "
                            "see docs/experiment.md) or give an existing one with --checkpoint FILE")
    if args.concurrency > 64:
        return cli.fail(f"--concurrency must be between 1 and 64, got {args.concurrency}")
    try:
        ctx = load_context(args.checkpoint, device=pick_device(args.device), concurrency=args.concurrency)
    except (CheckpointError, ValueError, RuntimeError) as exc:  # RuntimeError: torch.device("bogus")
        return cli.fail(f"cannot start: {exc}")
    # one intra-op thread per concurrent model call: the calls share the cores instead of fighting over them
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.concurrency))
    warm_up(ctx)
    ctx.runner = MainThreadRunner()  # this thread runs the calls that take every core (ui/context.py says why)
    demo = build_demo(ctx, analytics=args.analytics, max_queue=args.max_queue)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, prevent_thread_lock=True)
    try:
        ctx.runner.serve()  # until Ctrl+C, as launch() itself would wait
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
