"""Translate French to English from the command line.

    python -m model.translate "Je mange une pomme."
    python -m model.translate --beam 4 "Il fait très beau aujourd'hui."
    python -m model.translate --json steps.json "Je mange une pomme."   # per-step record as JSON
    python -m model.translate - < french.txt > english.txt               # one line out per line in
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from .checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint
from .decoding import InputError, Trace, trace_translation, translate_batch
from .device import pick_device, pick_dtype


def trace_to_json(trace: Trace) -> dict:
    """A JSON-ready dict of the trace: arrays become nested lists (rounded to 5 decimals)."""

    def convert(value):
        if hasattr(value, "tolist"):
            return [convert(v) for v in value.tolist()] if value.ndim else value.item()
        if isinstance(value, float):
            return round(value, 5)
        if isinstance(value, list):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    data = convert(dataclasses.asdict(trace))
    data["total_ms"] = round(trace.total_ms, 3)
    return data


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model.translate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("text", help="a French sentence, or '-' to read one sentence per line from standard input")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="path to a .safetensors checkpoint")
    p.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy)")
    p.add_argument("--length-penalty", type=float, default=1.0, help="beam scores are divided by length**this")
    p.add_argument("--max-len", type=int, default=None, help="maximum number of output tokens")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole prefix at every step")
    p.add_argument("--json", metavar="FILE", help="write the per-step record (attention, top-k, latency) as JSON"
                   " ('-' for standard output)")
    p.add_argument("--batch-size", type=int, default=64, help="sentences per batch when reading standard input")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        device = pick_device(args.device)
        ckpt = load_checkpoint(args.checkpoint, device=device, dtype=pick_dtype(args.dtype, device))
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model, tok = ckpt.model, ckpt.tokenizer
    with torch.inference_mode():
        if args.text == "-":
            lines = [line.rstrip("\n") for line in sys.stdin]
            try:
                outputs = translate_batch(model, tok, lines, beam_size=args.beam, length_penalty=args.length_penalty,
                                          max_len=args.max_len, batch_size=args.batch_size)
            except InputError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            sys.stdout.write("".join(o + "\n" for o in outputs))
            return 0
        try:
            trace = trace_translation(model, tok, args.text, beam_size=args.beam, length_penalty=args.length_penalty,
                                      max_len=args.max_len, use_cache=not args.no_cache)
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.json == "-":
        json.dump(trace_to_json(trace), sys.stdout)
        print()
        return 0
    print(trace.translation)
    if args.json:
        Path(args.json).write_text(json.dumps(trace_to_json(trace)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
