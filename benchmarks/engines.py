"""Regard vs Hugging Face ``generate`` vs CTranslate2 on the same weights, in one run, engines alternating.

    python benchmarks/engines.py            # 40 sentences at batch 1, the 3,000-line test batched (~3-5 min)
    python benchmarks/engines.py --quick    # 10 sentences, 300 lines (under a minute)
    python benchmarks/engines.py --checkpoint checkpoints/regard-fr-en-preln.safetensors  # no HF rows

The default is the shipped post-LN model; a pre-LN one runs against CTranslate2 alone (Hugging Face
Marian has no pre-LN variant, so its rows and ratios are left out).

The checkpoint is exported to Hugging Face Marian and CTranslate2 (fp32 and int8) in a temporary
directory (``model/export.py``), so all engines run the same weights. Batch 1: every sentence is
translated by every engine in turn (the order rotates), greedy and beam 4, and the mean ms/sentence
is printed with the ratios issue 11 sets targets for. Batched: the whole test set at a few batch sizes
per engine, best size kept. INT8 rows: Regard with torch dynamic int8 (``model.quantize``) and
CTranslate2 int8, with weight bytes and how many outputs differ from fp32. Needs ``transformers`` and
``ctranslate2`` (requirements-dev.txt).
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.checkpoint import EXPORT_CHECKPOINT, load_checkpoint  # noqa: E402
from model.decoding import default_max_len, greedy_batch, source_ids, trace_translation, translate_batch  # noqa: E402
from model.export import export_ct2, export_hf  # noqa: E402
from model.marian import require_transformers  # noqa: E402
from model.quantize import quantize_int8  # noqa: E402
from model.generation import thread_count  # noqa: E402

TEST = ROOT.parent / "shared" / "data" / "tatoeba" / "test.tsv"


def read_french(path: Path, limit: int) -> list[str]:
    with open(path, encoding="utf-8") as f:
        lines = [line.split("\t")[0].strip() for line in f if line.strip()]
    return lines[:limit]


def state_bytes(model: torch.nn.Module) -> int:
    """Bytes of the serialised state dict: counts int8 packed weights, which are not parameters."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return (time.perf_counter() - start) * 1000.0, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(EXPORT_CHECKPOINT),
                   help="default: the post-LN model; a pre-LN one skips HF (Marian has no pre-LN)")
    p.add_argument("--test", default=str(TEST), help="French<TAB>English lines")
    p.add_argument("--n", type=int, default=40, help="sentences timed at batch 1")
    p.add_argument("--lines", type=int, default=3000, help="lines translated batched")
    p.add_argument("--quick", action="store_true", help="10 sentences at batch 1, 300 lines batched")
    args = p.parse_args()
    if args.quick:
        args.n, args.lines = min(args.n, 10), min(args.lines, 300)
    transformers = require_transformers()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    import ctranslate2

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    ckpt = load_checkpoint(args.checkpoint)
    model, tok = ckpt.model, ckpt.tokenizer
    int8_model = quantize_int8(model)
    sample = read_french(Path(args.test), args.n)
    lines = read_french(Path(args.test), args.lines)
    with_hf = model.config.norm == "post"
    with tempfile.TemporaryDirectory() as tmp:
        hf = transformers.MarianMTModel.from_pretrained(str(export_hf(ckpt, Path(tmp) / "hf"))).eval() if with_hf else None
        ct2_dir, ct2_int8_dir = export_ct2(ckpt, Path(tmp) / "ct2"), export_ct2(ckpt, Path(tmp) / "ct2-int8", "int8")
        ct2 = ctranslate2.Translator(str(ct2_dir), device="cpu", intra_threads=threads)
        # Regard decodes batch 1 on one thread (model.generation.default_threads); give the others that too,
        # and compare against each engine's faster setting.
        ct2_one = ctranslate2.Translator(str(ct2_dir), device="cpu", intra_threads=1)
        ct2_int8 = ctranslate2.Translator(str(ct2_int8_dir), device="cpu", intra_threads=threads)
        ct2_bytes = (ct2_dir / "model.bin").stat().st_size
        ct2_int8_bytes = (ct2_int8_dir / "model.bin").stat().st_size
    suppress = [[tok.piece(model.config.pad_id)], [tok.piece(model.config.bos_id)]]

    def ct2_run(translator, pieces: list[list[str]], beam: int, cap: int, batch: int = 1) -> list[list[str]]:
        res = translator.translate_batch(pieces, beam_size=beam, max_decoding_length=cap, max_batch_size=batch,
                                         suppress_sequences=suppress, length_penalty=1.0)
        return [r.hypotheses[0] for r in res]

    # --- batch 1, engines alternating ---------------------------------------------------------------
    def hf_one_thread(ids, cap, text):
        with thread_count(1):  # the loop's own per-call thread setting, restored after
            return engines["hf generate"](ids, cap, text)

    engines = {
        "regard plain": lambda ids, cap, text: tok.pieces(greedy_batch(model, torch.tensor([ids]), cap)[0]),
        "regard instrumented": lambda ids, cap, text: tok.pieces(
            [s.token_id for s in trace_translation(model, tok, text).steps if s.token_id != model.config.eos_id]),
        "hf generate": lambda ids, cap, text: tok.pieces(
            [t for t in hf.generate(torch.tensor([ids]), max_new_tokens=cap, do_sample=False)[0].tolist()[1:]
             if t != model.config.eos_id]),
        "hf generate 1 thread": lambda ids, cap, text: hf_one_thread(ids, cap, text),
        "ct2 fp32": lambda ids, cap, text: ct2_run(ct2, [tok.pieces(ids)], 1, cap)[0],
        "ct2 fp32 1 thread": lambda ids, cap, text: ct2_run(ct2_one, [tok.pieces(ids)], 1, cap)[0],
        "regard int8": lambda ids, cap, text: tok.pieces(greedy_batch(int8_model, torch.tensor([ids]), cap)[0]),
        "ct2 int8": lambda ids, cap, text: ct2_run(ct2_int8, [tok.pieces(ids)], 1, cap)[0],
        "regard beam4 instrumented": lambda ids, cap, text: tok.pieces(
            [s.token_id for s in trace_translation(model, tok, text, beam_size=4).steps
             if s.token_id != model.config.eos_id]),
        "ct2 beam4 fp32": lambda ids, cap, text: ct2_run(ct2, [tok.pieces(ids)], 4, cap)[0],
        "ct2 beam4 fp32 1 thread": lambda ids, cap, text: ct2_run(ct2_one, [tok.pieces(ids)], 4, cap)[0],
    }
    if not with_hf:
        del engines["hf generate"], engines["hf generate 1 thread"]
    names = list(engines)
    ms = {n: 0.0 for n in names}
    outputs: dict[str, list] = {n: [] for n in names}
    with torch.inference_mode():
        for name in names:  # warm-up: first calls pay for allocation and lazy initialisation
            engines[name](source_ids(model, tok, sample[0]), 20, sample[0])
        for i, text in enumerate(sample):
            ids = source_ids(model, tok, text)
            cap = default_max_len(model, len(ids))
            for name in names[i % len(names):] + names[: i % len(names)]:  # rotate who goes first
                t, out = timed(lambda: engines[name](ids, cap, text))
                ms[name] += t
                outputs[name].append(out)
    n = len(sample)
    per = {name: ms[name] / n for name in names}
    print(f"batch 1, {n} sentences of {Path(args.test).name}, {threads} threads, torch {torch.__version__}, "
          f"ctranslate2 {ctranslate2.__version__}, transformers {transformers.__version__}")
    ref = outputs["regard plain"]
    for name in names:
        same = sum(a == b for a, b in zip(outputs[name], ref if "beam" not in name else outputs["ct2 beam4 fp32"]))
        print(f"  {name:28s} {per[name]:8.1f} ms/sentence   same output as {'ct2 beam4' if 'beam' in name else 'regard plain'}: {same}/{n}")

    # --- batched throughput ------------------------------------------------------------------------
    pieces = [tok.pieces(tok.encode(t)[: model.config.max_positions - 1] + [model.config.eos_id]) for t in lines]
    cap = model.config.max_positions - 1
    best = {}
    batched_out = {}
    with torch.inference_mode():
        for bs in (32, 64, 128, 256):  # alternate engines at each batch size
            t_r, out_r = timed(lambda: translate_batch(model, tok, lines, batch_size=bs))
            t_c, out_c = timed(lambda: ct2_run(ct2, pieces, 1, cap, batch=bs))
            print(f"  batched {len(lines)} lines, batch {bs:3d}: regard {t_r / 1000:6.2f} s   ct2 fp32 {t_c / 1000:6.2f} s")
            best["regard"] = min(best.get("regard", (1e18, 0)), (t_r, bs))
            best["ct2"] = min(best.get("ct2", (1e18, 0)), (t_c, bs))
            batched_out["regard"], batched_out["ct2"] = out_r, out_c
        bs = best["regard"][1]
        t_q, out_q = timed(lambda: translate_batch(int8_model, tok, lines, batch_size=bs))
    changed = sum(a != b for a, b in zip(out_q, batched_out["regard"]))
    ct2_text = [tok.decode([tok.sp.piece_to_id(piece) for piece in h]) for h in batched_out["ct2"]]
    agree = sum(a == b for a, b in zip(ct2_text, batched_out["regard"]))
    print(f"  regard int8 batched (batch {bs}): {t_q / 1000:.2f} s, {changed}/{len(lines)} outputs differ from fp32;"
          f" ct2 fp32 agrees with regard fp32 on {agree}/{len(lines)}")

    # --- weights -------------------------------------------------------------------------------------
    changed_b1 = sum(a != b for a, b in zip(outputs["regard int8"], ref))
    changed_ct2 = sum(a != b for a, b in zip(outputs["ct2 int8"], outputs["ct2 fp32"]))
    print(f"  weights: regard fp32 {state_bytes(model) / 1e6:.1f} MB, regard int8 {state_bytes(int8_model) / 1e6:.1f} MB"
          f" ({changed_b1}/{n} batch-1 outputs changed); ct2 fp32 {ct2_bytes / 1e6:.1f} MB, ct2 int8"
          f" {ct2_int8_bytes / 1e6:.1f} MB ({changed_ct2}/{n} changed)")

    # --- the ratios issue 11 asks for ----------------------------------------------------------------
    c = min(per["ct2 fp32"], per["ct2 fp32 1 thread"])  # each engine at its faster thread count
    ct2_beam = min(per["ct2 beam4 fp32"], per["ct2 beam4 fp32 1 thread"])
    rows = [
        ("instrumented batch-1 / ct2 fp32", per["regard instrumented"] / c, "<= 2.0"),
        ("plain batch-1 / ct2 fp32", per["regard plain"] / c, "<= 1.5"),
    ]
    if with_hf:
        # HF as it runs out of the box (its default threads): how issue 11 measured its 1.24x baseline.
        # Pinned to one thread (Regard's own batch-1 setting) it is an info row.
        hf, hf_one = per["hf generate"], per["hf generate 1 thread"]
        rows += [
            ("hf generate / instrumented", hf / per["regard instrumented"], ">= 1.5"),
            ("hf generate / plain", hf / per["regard plain"], ">= 1.5"),
            ("hf generate 1 thread / instrumented", hf_one / per["regard instrumented"], "(info)"),
            ("hf generate 1 thread / plain", hf_one / per["regard plain"], "(info)"),
        ]
    rows += [
        ("instrumented beam 4 / ct2 fp32 greedy", per["regard beam4 instrumented"] / c, "<= 2.5"),
        ("instrumented beam 4 / ct2 fp32 beam 4", per["regard beam4 instrumented"] / ct2_beam, "(info)"),
        ("batched best regard / best ct2", best["regard"][0] / best["ct2"][0], "<= 1.2"),
        ("regard int8 / regard plain (batch 1)", per["regard int8"] / per["regard plain"], "(info)"),
    ]
    print(f"ratios ({model.config.norm}-LN; target; ct2 at its faster of 1 and 2 threads"
          f"{', hf at its default threads' if with_hf else '; no HF: Marian has no pre-LN'}):")
    for label, value, target in rows:
        print(f"  {label:40s} {value:5.2f}x  {target}")


if __name__ == "__main__":
    main()
