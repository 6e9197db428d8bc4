"""Training-step throughput of the choices made in training/loop.py, measured in one run.

    python benchmarks/train_step.py            # default model size, a typical Tatoeba-shaped batch

Compares, on the same random batch: fp32 vs bf16 autocast, the fused SDPA kernel vs the math kernel
for attention, nn.Dropout vs model.dropout.FastDropout, and ``F.cross_entropy`` over padded logits
vs ``model.loss.linear_cross_entropy`` (projection and loss fused, real positions only). Target
rows end in padding like a token-bucketed batch (lengths drawn between 70% and 100% of --tgt-len).
Prints ms/step and real target tokens/s, and each variant's speed relative to the first line.
"""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.config import ModelConfig  # noqa: E402
from model.dropout import FastDropout  # noqa: E402
from model.transformer import Transformer  # noqa: E402
from model.loss import linear_cross_entropy  # noqa: E402


def use_torch_dropout(model: Transformer) -> None:
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, FastDropout):
                setattr(module, child_name, nn.Dropout(child.p))


def run(model, src, tgt, bf16: bool, math_attention: bool, fused_loss: bool, steps: int) -> float:
    optim = torch.optim.Adam(model.parameters(), lr=1e-4)
    vocab = model.config.tgt_vocab_size

    def one_step():
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
        kernel = sdpa_kernel(SDPBackend.MATH) if math_attention else nullcontext()
        with amp, kernel:
            if fused_loss:
                states = model.run_decoder(tgt, model.encode(src))[0]  # (B, T, D)
                loss = linear_cross_entropy(states, model.output_weight(), model.output_bias, tgt,
                                            ignore_index=model.config.pad_id, label_smoothing=0.1)
            else:
                logits = model(src, tgt)  # (B, T, V)
        if not fused_loss:
            loss = F.cross_entropy(logits.float().view(-1, vocab), tgt.view(-1),
                                   ignore_index=model.config.pad_id, label_smoothing=0.1)
        optim.zero_grad()
        loss.backward()
        optim.step()

    one_step()
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=320)
    p.add_argument("--src-len", type=int, default=13)
    p.add_argument("--tgt-len", type=int, default=12)
    p.add_argument("--steps", type=int, default=4)
    args = p.parse_args()
    torch.manual_seed(0)
    cfg = ModelConfig()
    src = torch.randint(4, cfg.src_vocab_size, (args.batch, args.src_len))
    tgt = torch.randint(4, cfg.tgt_vocab_size, (args.batch, args.tgt_len))
    lengths = torch.randint(int(0.7 * args.tgt_len), args.tgt_len + 1, (args.batch, 1))
    tgt[torch.arange(args.tgt_len) >= lengths] = cfg.pad_id  # (B, T): rows end in padding
    real = int((tgt != cfg.pad_id).sum())
    variants = [
        ("fp32, fused SDPA, nn.Dropout", False, False, False, False),
        ("bf16, fused SDPA, nn.Dropout", True, False, False, False),
        ("bf16, math SDPA, nn.Dropout", True, True, False, False),
        ("bf16, math SDPA, FastDropout", True, True, True, False),
        ("+ fused chunked loss (used)", True, True, True, True),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}x"
          f"({args.src_len}->{args.tgt_len}) tokens, {real} real target tokens")
    base = None
    for name, bf16, math_attention, fast_dropout, fused_loss in variants:
        torch.manual_seed(0)
        model = Transformer(cfg).train()
        if not fast_dropout:
            use_torch_dropout(model)
        sec = run(model, src, tgt, bf16, math_attention, fused_loss, args.steps)
        base = base or sec
        print(f"{name:<40} {sec * 1000:7.0f} ms/step {real / sec:7.0f} tgt tok/s "
              f"{base / sec:5.2f}x")


if __name__ == "__main__":
    main()
