"""Score a checkpoint with sacrebleu (BLEU and chrF, signatures printed) on any French<TAB>English file.

    python evaluate.py --data ../shared/data/tatoeba/test.tsv                   # shipped checkpoint, greedy
    python evaluate.py --checkpoint runs/base/best.safetensors --data dev.tsv --beam 4
    python evaluate.py --data test.tsv --int8                                   # dynamic int8 weights (CPU)
    python evaluate.py --data test.tsv --name tatoeba_test --record             # also store the score
                                                                                # in the checkpoint's record
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from model.checkpoint import DEFAULT_CHECKPOINT, Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from model.decoding import translate_batch
from model.device import pick_device
from training.data import read_pairs
from training.metrics import score


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--data", required=True, help="UTF-8 file of French<TAB>English lines")
    p.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy)")
    p.add_argument("--length-penalty", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--limit", type=int, default=0, help="score only the first N pairs (0 = all)")
    p.add_argument("--device", default="auto")
    p.add_argument("--hyps", help="write the translations to this file, one per line")
    p.add_argument("--name", help="name of this score in the checkpoint's record (with --record)")
    p.add_argument("--record", action="store_true", help="store the score in the checkpoint's training record")
    p.add_argument("--int8", action="store_true", help="run the dynamically quantised int8 model (CPU only)")
    args = p.parse_args(argv)
    if args.int8 and args.record:
        p.error("--int8 scores are not recorded in the fp32 checkpoint; drop --record")
    try:
        ckpt = load_checkpoint(args.checkpoint, device=pick_device(args.device))
        pairs = read_pairs(args.data)
    except (CheckpointError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.limit:
        pairs = pairs[: args.limit]
    model = ckpt.model
    if args.int8:
        from model.quantize import quantize_int8

        try:
            model = quantize_int8(model)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    t0 = time.time()
    with torch.inference_mode():
        hyps = translate_batch(model, ckpt.tokenizer, [fr for fr, _ in pairs], beam_size=args.beam,
                               length_penalty=args.length_penalty, batch_size=args.batch_size)
    seconds = time.time() - t0
    result = score(hyps, [en for _, en in pairs]).as_dict()
    result.update(data=args.data, beam=args.beam, length_penalty=args.length_penalty, int8=args.int8,
                  seconds=round(seconds, 1), command="python " + " ".join(sys.argv))
    print(f"{args.data}: BLEU {result['bleu']:.2f}  chrF {result['chrf']:.2f}  "
          f"({len(pairs)} sentences, beam {args.beam}{', int8' if args.int8 else ''}, {seconds:.0f}s)")
    print(f"  {result['bleu_signature']}")
    print(f"  {result['chrf_signature']}")
    if args.hyps:
        with open(args.hyps, "w", encoding="utf-8") as f:
            f.writelines(h + "\n" for h in hyps)
    if args.record:
        store_score(ckpt, args.name or args.data, result)
    print(json.dumps(result))
    return 0


def store_score(ckpt: Checkpoint, name: str, result: dict) -> None:
    """Add ``result`` to the checkpoint's record under ``scores[name]``, rewriting the file in place."""
    store_in_record(ckpt, {"scores": {**ckpt.training.get("scores", {}), name: result}})
    print(f"  recorded as scores[{name!r}] in {ckpt.path}")


def store_in_record(ckpt: Checkpoint, updates: dict) -> None:
    """Merge ``updates`` into the checkpoint's training record and rewrite the file in place; the
    weights keep the dtype they are stored in, so their bytes (and hash) do not change."""
    record = {**ckpt.training, **updates}
    dtype = next(iter(ckpt.model.state_dict().values())).dtype
    stored = _stored_dtype(ckpt.path)
    save_checkpoint(ckpt.path, ckpt.model.cpu(), ckpt.tokenizer, record, dtype=stored or dtype)
    ckpt.training = record


def _stored_dtype(path) -> torch.dtype | None:
    """The dtype the file stores its floating-point weights in, so re-saving does not change them."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        for name in f.keys():
            t = f.get_slice(name)
            dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}.get(t.get_dtype())
            if dtype is not None:
                return dtype
    return None


if __name__ == "__main__":
    sys.exit(main())
