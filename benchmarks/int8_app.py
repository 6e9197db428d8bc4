"""INT8 in the app: fp32 against dynamic int8 on the app's own path, measured in one run.

    python benchmarks/int8_app.py                  # shipped checkpoint, 100 Tatoeba test lines
    python benchmarks/int8_app.py --n 300

Batch-1 greedy with everything the app records (``trace_translation``: attention of every layer and
head, top-10, per-step latency), the two models alternating sentence by sentence so load on the
machine hits both alike. Prints ms per sentence, the speed ratio, the weight memory of each (int8:
packed linear weights + the fp32 rest, ``model.quantize.model_weight_bytes``) and how many outputs change.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint  # noqa: E402
from model.decoding import trace_translation  # noqa: E402
from model.memory import human_bytes  # noqa: E402
from model.quantize import model_weight_bytes, quantize_int8  # noqa: E402

TEST = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tatoeba" / "test.tsv"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--test", default=str(TEST), help="French<TAB>English lines")
    p.add_argument("--n", type=int, default=100, help="sentences")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: what the app gives each call)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint, device="cpu")
    with open(args.test, encoding="utf-8") as f:
        lines = [line.split("\t")[0].strip() for line in f if line.strip()][: args.n]
    models = {"fp32": ckpt.model, "int8": quantize_int8(ckpt.model)}
    ms = {k: 0.0 for k in models}
    out: dict[str, list[str]] = {k: [] for k in models}
    with torch.inference_mode():
        for m in models.values():  # one warm-up each
            trace_translation(m, ckpt.tokenizer, lines[0])
        for line in lines:
            for name, m in models.items():
                start = time.perf_counter()
                out[name].append(trace_translation(m, ckpt.tokenizer, line).translation)
                ms[name] += (time.perf_counter() - start) * 1000.0
    size = {k: model_weight_bytes(m) for k, m in models.items()}
    changed = sum(a != b for a, b in zip(out["fp32"], out["int8"]))
    print(f"{len(lines)} sentences, batch-1 greedy instrumented (the app's path), torch threads {torch.get_num_threads()}")
    for name in models:
        print(f"  {name:<5} {ms[name] / len(lines):7.1f} ms/sentence   weights {human_bytes(size[name]):>9} ({size[name]:,} B)")
    print(f"  int8 / fp32: time {ms['int8'] / ms['fp32']:.2f}x, weights {size['int8'] / size['fp32']:.2f}x; "
          f"{changed}/{len(lines)} translations differ")


if __name__ == "__main__":
    main()
