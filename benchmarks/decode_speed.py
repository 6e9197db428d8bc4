"""Decoding speed: the one generation loop against the code it replaced, measured in one run.

    python benchmarks/decode_speed.py                        # shipped checkpoint, 100 Tatoeba test lines
    python benchmarks/decode_speed.py --n 300 --baseline b139544
    python benchmarks/decode_speed.py --threads 1             # both sides on one thread: the code alone

``before`` is the decoding code of git commit ``--baseline`` (the three greedy loops, the beam
search with its replay pass), imported from git into a temporary package and given the same
weights; ``after`` is the current code. The two alternate sentence by sentence, so load on the
machine hits both alike. Rows, in ms per sentence (mean over the sample):

- batch-1 greedy, plain (what the CLI runs) and instrumented (what the app runs: attention of every
  layer and head, top-10, per-step records: ``trace_translation``);
- beam 4, instrumented (before: search, then a replay of the winner; after: one pass);
- batched greedy over the whole sample (``translate_batch``, batch 64), in seconds;
- dynamic int8 and bf16 weights against fp32 (current code, batch-1 greedy plain): speed and how
  many translations change.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint  # noqa: E402
from model.decoding import default_max_len, trace_translation, translate_batch  # noqa: E402
from model.quantize import quantize_int8, to_bf16  # noqa: E402
from model.generation import Greedy, generate  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "tatoeba" / "test.tsv"


def import_baseline(commit: str):
    """The ``model`` package of ``commit`` as the module ``baseline_model``."""
    root = Path(tempfile.mkdtemp(prefix="regard-baseline-"))
    names = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", commit, "model/"],
                           check=True, capture_output=True, text=True).stdout.split()
    (root / "baseline_model").mkdir()
    for name in names:
        text = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{name}"], check=True,
                              capture_output=True, text=True).stdout
        (root / "baseline_model" / Path(name).name).write_text(text, encoding="utf-8")
    sys.path.insert(0, str(root))
    return importlib.import_module("baseline_model.decoding"), importlib.import_module("baseline_model.transformer")


def baseline_model(transformer_mod, model):
    """The old Transformer class holding the current model's weights."""
    old_cfg_cls = importlib.import_module("baseline_model.config").ModelConfig
    known = {f.name for f in dataclasses.fields(old_cfg_cls)}
    old = transformer_mod.Transformer(old_cfg_cls(**{k: v for k, v in model.config.to_dict().items() if k in known}))
    old.load_state_dict(model.state_dict())
    return old.eval()


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return (time.perf_counter() - start) * 1000, out


def compare(name: str, before: Callable[[int], object], after: Callable[[int], object], n: int, unit: str = "ms") -> None:
    """Alternate before(i) / after(i) over items 0..n-1; print mean times, ratio and equal outputs."""
    before(0), after(0)  # warm-up
    tb = ta = 0.0
    same = 0
    for i in range(n):
        t0, a = timed(lambda: before(i))
        t1, b = timed(lambda: after(i))
        tb, ta, same = tb + t0, ta + t1, same + (a == b)
    scale = 1000.0 if unit == "s" else float(n)
    print(f"{name:<36} {tb / scale:>9.2f} {ta / scale:>9.2f} {tb / ta:>7.2f}x   identical outputs {same}/{n}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--n", type=int, default=100, help="sentences from the start of the test file")
    p.add_argument("--baseline", default="b139544", help="git commit whose decoding code is 'before'")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for the whole run (e.g. 1: compares the code alone, without the thread policy)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint, device="cpu")
    model, tok = ckpt.model.float().eval(), ckpt.tokenizer
    lines = [line.split("\t")[0] for line in Path(args.data).read_text(encoding="utf-8").splitlines()[: args.n]]
    ids = [tok.encode(line)[: model.config.max_positions - 1] + [model.config.eos_id] for line in lines]
    srcs = [torch.tensor([i]) for i in ids]
    n = len(srcs)
    print(f"{n} sentences, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    old_dec, old_tf = import_baseline(args.baseline)
    old = baseline_model(old_tf, model)

    def cap(i: int) -> int:
        return default_max_len(model, srcs[i].size(1))

    print(f"{'ms / sentence':<36} {'before':>9} {'after':>9} {'speed-up':>8}   ({args.baseline} vs now)")
    with torch.inference_mode():
        compare("batch-1 greedy, plain", lambda i: old_dec.greedy_batch(old, srcs[i], cap(i))[0],
                lambda i: generate(model, srcs[i], Greedy(), cap(i)).hypotheses[0].tokens, n)
    compare("batch-1 greedy, instrumented", lambda i: old_dec.trace_translation(old, tok, lines[i]).translation,
            lambda i: trace_translation(model, tok, lines[i]).translation, n)
    compare("beam 4, instrumented", lambda i: old_dec.trace_translation(old, tok, lines[i], beam_size=4).translation,
            lambda i: trace_translation(model, tok, lines[i], beam_size=4).translation, n)
    compare("batched greedy (64), s for all", lambda _: old_dec.translate_batch(old, tok, lines),
            lambda _: translate_batch(model, tok, lines), 1, unit="s")
    print(f"{'weights (now, greedy plain)':<36} {'fp32':>9} {'other':>9}")
    for name, other in (("int8 (dynamic)", quantize_int8(model)), ("bf16", to_bf16(model))):
        with torch.inference_mode():
            compare(f"  fp32 vs {name}", lambda i: generate(model, srcs[i], Greedy(), cap(i)).hypotheses[0].tokens,
                    lambda i: generate(other, srcs[i], Greedy(), cap(i)).hypotheses[0].tokens, n)


if __name__ == "__main__":
    main()
