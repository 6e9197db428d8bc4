"""Column-major vs PyTorch's row-major linear weights (model/layout.py): speed, and outputs that change.

    python benchmarks/weight_layout.py              # 60 sentences timed at batch 1, 3,000 lines compared
    python benchmarks/weight_layout.py --quick      # 20 sentences, 300 lines

Both models hold the same fp32 values; only the strides differ, so MKL picks a different kernel and
sums in a different order. Batch 1: greedy (plain and instrumented) and instrumented beam 4, the two
layouts alternating sentence by sentence, one thread as the app decodes. Then the whole test set
batched (batch 100, as ``evaluate.py`` runs) and at batch 1 on the first lines: how many translations
differ between the layouts.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint  # noqa: E402
from model.decoding import default_max_len, greedy_batch, source_ids, trace_translation, translate_batch  # noqa: E402
from model.layout import is_column_major  # noqa: E402
from model.generation import thread_count  # noqa: E402

TEST = ROOT.parent / "shared" / "data" / "tatoeba" / "test.tsv"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--test", default=str(TEST))
    p.add_argument("--n", type=int, default=60, help="sentences timed at batch 1")
    p.add_argument("--lines", type=int, default=3000, help="lines compared batched")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.n, args.lines = 20, 300
    ckpt = load_checkpoint(args.checkpoint)  # column-major, as every loaded checkpoint
    col, tok = ckpt.model, ckpt.tokenizer
    row = copy.deepcopy(col)
    for param in row.parameters():
        param.data = param.data.contiguous()  # PyTorch's own layout
    assert is_column_major(col.output_weight()) and not is_column_major(row.output_weight())
    with open(args.test, encoding="utf-8") as f:
        lines = [line.split("\t")[0].strip() for line in f if line.strip()][: max(args.n, args.lines)]
    runs = {
        "greedy plain": lambda m, text, ids: greedy_batch(m, torch.tensor([ids]), default_max_len(m, len(ids)))[0],
        "greedy instrumented": lambda m, text, ids: [s.token_id for s in trace_translation(m, tok, text).steps],
        "beam 4 instrumented": lambda m, text, ids: [s.token_id for s in trace_translation(m, tok, text, beam_size=4).steps],
    }
    ms = {(name, layout): 0.0 for name in runs for layout in ("row", "col")}
    same = dict.fromkeys(runs, 0)
    models = {"row": row, "col": col}
    with torch.inference_mode():
        for name, run in runs.items():  # warm-up
            for m in models.values():
                run(m, lines[0], source_ids(m, tok, lines[0]))
        for i, text in enumerate(lines[: args.n]):
            ids = source_ids(col, tok, text)
            for name, run in runs.items():
                out = {}
                for layout in (("row", "col") if i % 2 else ("col", "row")):
                    start = time.perf_counter()
                    out[layout] = run(models[layout], text, ids)
                    ms[(name, layout)] += (time.perf_counter() - start) * 1000
                same[name] += out["row"] == out["col"]
    print(f"batch 1, {args.n} sentences of {Path(args.test).name}, torch {torch.__version__}, "
          f"layouts alternating (ms/sentence)")
    print(f"  {'':24s} {'row-major':>10s} {'col-major':>10s} {'speed-up':>9s}")
    for name in runs:
        r, c = ms[(name, "row")] / args.n, ms[(name, "col")] / args.n
        print(f"  {name:24s} {r:10.2f} {c:10.2f} {r / c:8.2f}x   same output {same[name]}/{args.n}")
    batch = lines[: args.lines]
    with torch.inference_mode(), thread_count(None):
        out_row = translate_batch(row, tok, batch, batch_size=100)
        out_col = translate_batch(col, tok, batch, batch_size=100)
    print(f"batched (100), {len(batch)} lines: {sum(a != b for a, b in zip(out_row, out_col))} translations differ "
          "between the layouts")


if __name__ == "__main__":
    main()
