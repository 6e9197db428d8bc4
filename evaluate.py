"""Score a checkpoint with sacrebleu (BLEU and chrF, signatures printed) on any French<TAB>English file.

    python evaluate.py --data ../shared/data/tatoeba/test.tsv                   # shipped checkpoint, greedy
    python evaluate.py --checkpoint runs/base/best.safetensors --data dev.tsv --beam 4
    python evaluate.py --data test.tsv --int8                                   # dynamic int8 weights (CPU)
    python evaluate.py --data test.tsv --name tatoeba_test --record             # also store the score
                                                                                # in the checkpoint's record
"""
from __future__ import annotations

import json
import sys
import time

import torch

from model import cli, limits
from model.checkpoint import DEFAULT_CHECKPOINT
from model.decoding import translate_batch
from model.record import store_score
from training.data import read_pairs
from training.metrics import score


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python evaluate.py", description=__doc__)
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--data", required=True, help="UTF-8 file of French<TAB>English lines")
    p.add_argument("--beam", type=int, default=1, help=f"beam size, 1 (greedy) to {limits.MAX_BEAM}")
    p.add_argument("--length-penalty", type=float, default=1.0, help="beam scores are divided by length**this")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--limit", type=cli.count(0), default=0, help="score only the first N pairs (0 = all)")
    p.add_argument("--device", default="auto")
    p.add_argument("--hyps", help="write the translations to this file, one per line")
    p.add_argument("--name", help="name of this score in the checkpoint's record (with --record)")
    p.add_argument("--record", action="store_true", help="store the score in the checkpoint's training record")
    p.add_argument("--int8", action="store_true", help="run the dynamically quantised int8 model (CPU only)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.int8 and args.record:
        p.error("--int8 scores are not recorded in the fp32 checkpoint; drop --record")
    return cli.run(lambda: evaluate(args))


def evaluate(args) -> int:
    # everything that can be refused is refused before the first sentence is translated
    limits.check_beam_size(args.beam)
    limits.check_length_penalty(args.length_penalty)
    limits.check_batch_size(args.batch_size)
    cli.check_readable(args.data, "--data")
    if args.hyps:
        cli.check_writable(args.hyps, "--hyps")
    ckpt = cli.load(args.checkpoint, device=cli.device(args.device))
    if args.record:
        cli.check_writable(ckpt.path, "--record: checkpoint")
    pairs = read_pairs(args.data)
    if args.limit:
        pairs = pairs[: args.limit]
    model = ckpt.model
    if args.int8:
        from model.quantize import quantize_int8

        model = quantize_int8(model)
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


if __name__ == "__main__":
    sys.exit(main())
