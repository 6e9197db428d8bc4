"""Translate French to English from the command line.

    python -m model.translate "Je mange une pomme."
    python -m model.translate --beam 4 "Il fait très beau aujourd'hui."
    python -m model.translate --json steps.json "Je mange une pomme."   # per-step record as JSON
    python -m model.translate - < french.txt > english.txt               # one line out per line in

Bad input is one line on stderr and exit code 2. Standard input always gives exactly one output line
per input line: undecodable bytes become U+FFFD, a line longer than the model reads at once is
translated in pieces cut at sentence ends, a line over the hard cap is left empty; each is reported
on stderr with its line number.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import BinaryIO, Iterator

import torch

from . import limits
from . import cli
from .checkpoint import DEFAULT_CHECKPOINT
from .cli import CliError, Parser, warn
from model.trace_json import trace_to_json

from .decoding import trace_translation, translate_batch
from .device import pick_dtype
from .errors import InputError
from .tokenizer import Tokenizer
from .transformer import Transformer

BLOCK_CHARS = 1_000_000  # stdin is read, translated and written in blocks of about this much text
_LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m model.translate", description=__doc__)
    p.add_argument("text", help="a French sentence, or '-' to read one sentence per line from standard input")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="path to a .safetensors checkpoint")
    p.add_argument("--beam", type=int, default=1, help=f"beam size, 1 (greedy) to {limits.MAX_BEAM}")
    p.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam scores are divided by length**this (finite, >= 0)")
    p.add_argument("--max-len", type=int, default=None, help="maximum number of output tokens (below the model's positions)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole prefix at every step")
    p.add_argument("--json", metavar="FILE", help="write the per-step record (attention, top-k, latency) as JSON"
                   " ('-' for standard output); one sentence only")
    p.add_argument("--batch-size", type=int, default=64, help="sentences per batch when reading standard input")
    return p


def decode_bytes(raw: bytes) -> tuple[str, int]:
    """UTF-8 text of ``raw`` with undecodable bytes as U+FFFD, and how many replacements were made."""
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        return text, text.count("\ufffd") - raw.count("\ufffd".encode())


def argument_text(arg: str) -> tuple[str, int]:
    """The text argument as stdin would read it: Python keeps undecodable argv bytes as surrogate escapes."""
    try:
        return decode_bytes(arg.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:  # lone surrogates that are not escapes (a programmatic caller)
        return limits.repair_text(arg)


def read_lines(stream: BinaryIO) -> Iterator[bytes | int]:
    """Lines without their line break, in bounded memory: a line over the cap comes as its byte count."""
    cap = 4 * limits.MAX_LINE_CHARS  # UTF-8 needs at most 4 bytes a character
    while raw := stream.readline(cap + 1):
        if raw.endswith(b"\n") or len(raw) <= cap:
            yield raw.rstrip(b"\n").removesuffix(b"\r")
            continue
        size = len(raw)
        while not raw.endswith(b"\n") and (raw := stream.readline(1 << 20)):
            size += len(raw)
        yield size - raw.endswith(b"\n")


def check_settings(args: argparse.Namespace) -> None:
    """Everything that can be refused before the checkpoint is read."""
    limits.check_beam_size(args.beam)
    limits.check_length_penalty(args.length_penalty)
    limits.check_batch_size(args.batch_size)
    if args.json and args.text == "-":
        raise CliError("--json records one sentence; it cannot be combined with '-' (standard input)")
    if args.json and args.json != "-":
        target = Path(args.json)
        if not target.parent.is_dir():
            raise CliError(f"--json {args.json}: folder {str(target.parent)!r} does not exist")
        if target.is_dir():
            raise CliError(f"--json {args.json}: is a folder, give a file name")


def load(args: argparse.Namespace):
    device = cli.device(args.device)
    dtype = pick_dtype(args.dtype, device)
    ckpt = cli.load(args.checkpoint, device=device, dtype=dtype)
    limits.check_max_len(args.max_len, ckpt.config.max_positions)
    return ckpt


class Segmenter:
    """Turns one line of text into the pieces the model reads, reporting on stderr what it changed."""

    def __init__(self, tokenizer: Tokenizer, max_positions: int) -> None:
        self.tokenizer, self.max_positions = tokenizer, max_positions

    def pieces(self, text: str, where: str) -> list[str]:
        text = text.strip()
        if len(text) > limits.MAX_LINE_CHARS:
            warn(f"{where}: {len(text)} characters, more than the {limits.MAX_LINE_CHARS} a line may have; "
                 "left untranslated (empty output line)")
            return []
        notice = limits.unknown_warning(self.tokenizer, text)
        if notice:
            warn(f"{where}: {notice}")
        pieces = limits.split_to_fit(self.tokenizer, text, self.max_positions)
        if len(pieces) > 1:
            warn(f"{where}: {len(text)} characters, {len(self.tokenizer.encode(text))} tokens: more than the model "
                 f"reads at once ({limits.MAX_SOURCE_CHARS} characters, {self.max_positions - 1} tokens); "
                 f"translated in {len(pieces)} pieces cut at sentence ends")
        return pieces


def translate_stdin(model: Transformer, tokenizer: Tokenizer, args: argparse.Namespace) -> None:
    """One output line per input line, written block by block so memory stays bounded."""
    segmenter = Segmenter(tokenizer, model.config.max_positions)
    block: list[list[str]] = []
    size = 0
    for number, raw in enumerate(read_lines(sys.stdin.buffer), start=1):
        where = f"line {number}"
        if isinstance(raw, int):
            warn(f"{where}: {raw} bytes, more than the {limits.MAX_LINE_CHARS} characters a line may have; "
                 "left untranslated (empty output line)")
            block.append([])
            continue
        text, bad = decode_bytes(raw)
        if bad:
            warn(f"{where}: invalid UTF-8, {bad} undecodable byte sequence(s) replaced by U+FFFD")
        block.append(segmenter.pieces(text, where))
        size += len(text)
        if size >= BLOCK_CHARS or len(block) >= 4 * args.batch_size:
            write_block(model, tokenizer, block, args)
            block, size = [], 0
    write_block(model, tokenizer, block, args)


def write_block(model: Transformer, tokenizer: Tokenizer, block: list[list[str]], args: argparse.Namespace) -> None:
    flat = [piece for pieces in block for piece in pieces]
    outputs = iter(translate_batch(model, tokenizer, flat, beam_size=args.beam, length_penalty=args.length_penalty,
                                   max_len=args.max_len, batch_size=args.batch_size))
    lines = [" ".join(next(outputs) for _ in pieces) for pieces in block]
    sys.stdout.write("".join(_LINE_BREAKS.sub(" ", line) + "\n" for line in lines))
    sys.stdout.flush()


def translate_argument(model: Transformer, tokenizer: Tokenizer, args: argparse.Namespace) -> None:
    """One sentence: traced step by step; a text too long for one pass is translated in pieces like stdin."""
    text, bad = argument_text(args.text)
    if bad:
        warn(f"the text is not valid UTF-8; {bad} undecodable byte sequence(s) replaced by U+FFFD")
    text = text.strip()
    if not text:
        raise InputError("The text is empty: type a French sentence to translate.")
    if not limits.fits(tokenizer, text, model.config.max_positions):
        if args.json:
            raise CliError(f"the text is {len(text)} characters, {len(tokenizer.encode(text))} tokens long; --json "
                           f"records one sentence of at most {limits.MAX_SOURCE_CHARS} characters and "
                           f"{model.config.max_positions - 1} tokens")
        pieces = Segmenter(tokenizer, model.config.max_positions).pieces(text, "the text")
        write_block(model, tokenizer, [pieces], args)
        return
    notice = limits.unknown_warning(tokenizer, text)
    if notice:
        warn(notice)
    trace = trace_translation(model, tokenizer, text, beam_size=args.beam, length_penalty=args.length_penalty,
                              max_len=args.max_len, use_cache=not args.no_cache)
    if args.json == "-":
        json.dump(trace_to_json(trace, model.config, arrays="float"), sys.stdout)
        print()
        return
    print(trace.translation)
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(trace_to_json(trace, model.config, arrays="float")))
        except OSError as exc:
            raise CliError(f"--json {args.json}: cannot write ({exc.strerror or exc})") from None


def run(args: argparse.Namespace) -> int:
    check_settings(args)
    ckpt = load(args)
    with torch.inference_mode():
        if args.text == "-":
            translate_stdin(ckpt.model, ckpt.tokenizer, args)
        else:
            translate_argument(ckpt.model, ckpt.tokenizer, args)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run(lambda: run(args))  # CliError, CheckpointError, InputError, ValueError -> "error: ..."


if __name__ == "__main__":
    sys.exit(main())
