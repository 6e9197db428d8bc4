"""Do the exports translate raw text as Regard does? Hugging Face and CTranslate2, through their own loaders.

    python benchmarks/export_parity.py                 # 500 Tatoeba test lines (a few minutes on 2 cores)
    python benchmarks/export_parity.py --lines 100     # quicker
    python benchmarks/export_parity.py --data other.tsv

The shipped post-LN checkpoint is exported to Hugging Face (``--to hf``) and both shipped checkpoints
to CTranslate2 (``--to ct2``) in a temporary directory. The first ``--lines`` lines of the test file
(French, first column) are used exactly as they are in the file, then:

* Regard: greedy search, each sentence with its own length cap (1.5 x source + 10), which is what
  ``python -m model.translate "..."`` prints (sentences of one length are decoded together);
* Hugging Face: ``AutoTokenizer.from_pretrained(DIR)`` on the raw text, ``MarianMTModel.generate`` on
  padded batches with nothing but the export's own generation config, ``batch_decode``;
* CTranslate2: ``regard_text.translate`` from the export folder (its own source.spm/target.spm and rules).

It prints, for each, the share of translations identical to Regard's (target >= 99.5 %), the share of
source id sequences identical to Regard's (Hugging Face), and the first differences.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.checkpoint import DEFAULT_CHECKPOINT, EXPORT_CHECKPOINT, load_checkpoint  # noqa: E402
from model.decoding import default_max_len, greedy_batch, source_ids  # noqa: E402
from model.export import export_ct2, export_hf  # noqa: E402

TARGET = 99.5


def regard_greedy(ckpt, texts: list[str]) -> tuple[list[str], list[bool]]:
    """Regard's greedy translation of each text with its own cap; and whether it stopped at the cap."""
    model, tok = ckpt.model, ckpt.tokenizer
    ids = [source_ids(model, tok, t) for t in texts]
    out, capped = [""] * len(texts), [False] * len(texts)
    by_len: dict[int, list[int]] = {}
    for i, s in enumerate(ids):
        by_len.setdefault(len(s), []).append(i)
    with torch.inference_mode():
        for n, rows in by_len.items():
            cap = default_max_len(model, n)
            for start in range(0, len(rows), 64):
                chunk = rows[start : start + 64]
                for i, hyp in zip(chunk, greedy_batch(model, torch.tensor([ids[i] for i in chunk]), cap)):
                    out[i], capped[i] = tok.decode(hyp), len(hyp) == cap
    return out, capped


def hf_translate(hf_dir: Path, texts: list[str], batch: int) -> tuple[list[str], list[list[int]]]:
    """The plain transformers path: AutoTokenizer on raw text, generate with the export's config."""
    from transformers import AutoTokenizer, MarianMTModel

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    model = MarianMTModel.from_pretrained(str(hf_dir)).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            enc = tok(texts[start : start + batch], return_tensors="pt", padding=True)
            out += tok.batch_decode(model.generate(**enc), skip_special_tokens=True)
    return out, tok(texts)["input_ids"]


def ct2_translate(ct2_dir: Path, texts: list[str]) -> list[str]:
    """The export folder's own recipe: its regard_text.py (sentencepiece + the split rule) and ctranslate2."""
    import ctranslate2

    spec = importlib.util.spec_from_file_location(f"regard_text_{ct2_dir.name}", ct2_dir / "regard_text.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.translate(ctranslate2.Translator(str(ct2_dir), device="cpu"), texts)


def report(name: str, ours: list[str], theirs: list[str], capped: list[bool], texts: list[str]) -> float:
    same = sum(a == b for a, b in zip(ours, theirs))
    share = 100.0 * same / len(ours)
    print(f"{name:34s} identical to Regard's greedy output: {same}/{len(ours)} = {share:.1f} %  "
          f"target >= {TARGET} %  ({'met' if share >= TARGET else 'NOT met'})")
    for i in [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b][:5]:
        print(f"    line {i + 1}: {texts[i]!r}\n      regard{' (stopped at its cap)' if capped[i] else ''}: "
              f"{ours[i]!r}\n      {name.split()[0]}: {theirs[i]!r}")
    return share


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tatoeba" / "test.tsv"))
    p.add_argument("--lines", type=int, default=500)
    p.add_argument("--batch", type=int, default=50, help="Hugging Face generate batch size")
    args = p.parse_args()
    with open(args.data, encoding="utf-8") as f:
        texts = [line.rstrip("\n").split("\t")[0] for _, line in zip(range(args.lines), f)]
    torch.manual_seed(0)
    print(f"{len(texts)} lines of raw French from {args.data}")
    with tempfile.TemporaryDirectory() as tmp:
        post, pre = load_checkpoint(EXPORT_CHECKPOINT), load_checkpoint(DEFAULT_CHECKPOINT)
        hf_dir = export_hf(post, Path(tmp) / "hf")
        ct2_post, ct2_pre = export_ct2(post, Path(tmp) / "ct2-post"), export_ct2(pre, Path(tmp) / "ct2-pre")
        t0 = time.perf_counter()
        ours_post, capped_post = regard_greedy(post, texts)
        ours_pre, capped_pre = regard_greedy(pre, texts)
        hf, hf_ids = hf_translate(hf_dir, texts, args.batch)
        same_ids = sum(a == source_ids(post.model, post.tokenizer, t) for a, t in zip(hf_ids, texts))
        print(f"{'hf AutoTokenizer ids (post-LN)':34s} identical to Regard's source ids:    {same_ids}/{len(texts)}")
        shares = [
            report("hf generate (post-LN)", ours_post, hf, capped_post, texts),
            report("ct2 regard_text (post-LN)", ours_post, ct2_translate(ct2_post, texts), capped_post, texts),
            report("ct2 regard_text (pre-LN)", ours_pre, ct2_translate(ct2_pre, texts), capped_pre, texts),
        ]
        print(f"Regard stopped at its length cap on {sum(capped_post)} (post-LN) and {sum(capped_pre)} (pre-LN) "
              f"lines; {time.perf_counter() - t0:.0f} s")
    return 0 if min(shares) >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
