"""KV cache vs recomputing the prefix: per-token decoding latency and cache memory, measured in one run.

    python benchmarks/decode_cache.py                       # shipped checkpoint, CPU or CUDA
    python benchmarks/decode_cache.py --checkpoint X --device cuda --lengths 10 40 120

For each target length it forces decoding of that many tokens through the one generation loop
(``model.generation.generate`` with a ``Forced`` prefix: the same tokens both ways, so the work is identical) and prints the mean per-token latency with and without the cache, their ratio, and the
cache's measured bytes next to 2 x layers x d_model x bytes x tokens.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint  # noqa: E402
from model.device import pick_device  # noqa: E402
from model.memory import human_bytes, kv_cross_bytes_formula, kv_self_bytes_formula  # noqa: E402
from model.generation import Forced, generate  # noqa: E402

SENTENCE = "L'animal n'a pas traversé la rue parce qu'il était trop fatigué."


def time_decoding(model, src, n_tokens: int, use_cache: bool) -> tuple[float, int]:
    """Mean ms per token over ``n_tokens`` forced steps; returns (ms, self-attention cache bytes at the end)."""
    tokens = torch.randint(4, model.config.tgt_vocab_size, (n_tokens,), generator=torch.Generator().manual_seed(0))
    gen = generate(model, src, Forced(tokens.tolist()), n_tokens, use_cache=use_cache, record=True)  # step_ms: decoding only
    return sum(gen.step_ms) / n_tokens, gen.steps[-1].kv_self_bytes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--device", default="auto")
    p.add_argument("--lengths", type=int, nargs="+", default=[10, 40, 120])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    device = pick_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, device=device)
    model, tok = ckpt.model, ckpt.tokenizer
    src = torch.tensor([tok.encode(SENTENCE) + [model.config.eos_id]], device=device)
    cfg = model.config
    print(f"device {device}, torch threads {torch.get_num_threads()}, source {src.size(1)} tokens")
    print(f"{'tokens':>6} {'cache ms/tok':>13} {'no-cache ms/tok':>16} {'speed-up':>9} {'KV measured':>12} {'formula':>10}")
    for n in args.lengths:
        time_decoding(model, src, 3, True)  # warm-up
        cached = min(time_decoding(model, src, n, True)[0] for _ in range(args.repeats))
        uncached = min(time_decoding(model, src, n, False)[0] for _ in range(args.repeats))
        measured = time_decoding(model, src, n, True)[1]
        formula = kv_self_bytes_formula(cfg, n, 4)
        print(f"{n:>6} {cached:>13.2f} {uncached:>16.2f} {uncached / cached:>8.1f}x "
              f"{human_bytes(measured):>12} {human_bytes(formula):>10}")
    cross = kv_cross_bytes_formula(cfg, src.size(1), 4)
    print(f"cross-attention cache (once per sentence): {human_bytes(cross)} = 2 x {cfg.n_decoder_layers} layers x "
          f"{cfg.d_model} x 4 bytes x {src.size(1)} source tokens")


if __name__ == "__main__":
    main()
