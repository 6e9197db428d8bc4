"""Which cross-attention heads align words? Score every head of a checkpoint against a reference aligner.

    python scripts/head_alignment.py                                   # shipped checkpoint, Tatoeba train
    python scripts/head_alignment.py --align 20000 --score 500 --checkpoint X

The reference aligner (eflomal if installed, else ``model.alignment.ibm1_align``) runs on the first
``--align`` sentence pairs of the training data, split into words by the same SentencePiece merge
rule the model's alignments use; the first ``--score`` pairs are then decoded teacher-forced over the
reference English, and every head's (and every layer mean's) word links are scored by F1 (= 1 - AER)
against the reference links. Prints the best heads; ``--record`` stores every score in the
checkpoint's record (``head_alignment``), where the app's alignment lens reads them.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.alignment import cross_attention, head_scores, reference_alignments, word_alignment, words  # noqa: E402
from model import cli  # noqa: E402
from model.checkpoint import DEFAULT_CHECKPOINT  # noqa: E402
from model.record import store_in_record  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tatoeba" / "train.tsv"


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(prog="python scripts/head_alignment.py", description=__doc__)
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--align", type=cli.count(1), default=20000, help="pairs the reference aligner learns from")
    p.add_argument("--score", type=cli.count(1), default=500, help="pairs on which the heads are scored")
    p.add_argument("--top", type=cli.count(1), default=8)
    p.add_argument("--ibm1", action="store_true", help="use the built-in IBM model 1 even if eflomal is installed")
    p.add_argument("--record", action="store_true", help="store the scores in the checkpoint's training record")
    args = p.parse_args(argv)
    return cli.run(lambda: score(args))


def score(args) -> int:
    cli.check_readable(args.data, "--data")
    ckpt = cli.load(args.checkpoint, device="cpu")
    if args.record:
        cli.check_writable(ckpt.path, "--record: checkpoint")
    model, tok = ckpt.model.float().eval(), ckpt.tokenizer
    eos = model.config.eos_id
    rows = [line.split("\t")[:2] for line in Path(args.data).read_text(encoding="utf-8").splitlines()[: args.align]]
    ids = [(tok.encode(fr) + [eos], tok.encode(en) + [eos]) for fr, en in rows]
    pieces = [(tok.pieces(s), tok.pieces(t)) for s, t in ids]
    encode = torch.inference_mode()(lambda s: model.encode(torch.tensor([s])))  # the reference is teacher-forced
    start = time.perf_counter()
    refs, aligner = reference_alignments([(words(s), words(t)) for s, t in pieces], use_eflomal=not args.ibm1)
    print(f"reference: {aligner} on {len(ids)} pairs ({time.perf_counter() - start:.1f} s)")
    n = min(args.score, len(ids))
    alignments = [word_alignment(cross_attention(model, encode(s), t), *pieces[i]) for i, (s, t) in enumerate(ids[:n])]
    per_head, per_layer = head_scores(alignments, refs[:n])
    print(f"word-alignment F1 against the reference on {n} pairs (AER = 1 - F1); layer means:")
    for layer, f1 in enumerate(per_layer):
        print(f"  layer {layer + 1} mean of heads  F1 {f1:.3f}")
    ranked = sorted(((f1, l, h) for (l, h), f1 in zip(
        ((l, h) for l in range(per_head.shape[0]) for h in range(per_head.shape[1])), per_head.ravel())), reverse=True)
    print("best single heads (cross-attention layer, head; 1-based as in the app):")
    for f1, layer, head in ranked[: args.top]:
        print(f"  layer {layer + 1} head {head + 1}  F1 {f1:.3f}")
    if args.record:
        store_in_record(ckpt, {"head_alignment": {
            "aligner": aligner, "align_pairs": len(ids), "scored_pairs": n, "data": Path(args.data).name,
            "layer_f1": [round(float(f), 4) for f in per_layer],  # (L,) 0-based layers
            "head_f1": [[round(float(f), 4) for f in row] for row in per_head],  # (L, H) 0-based
            "command": "python scripts/head_alignment.py " + " ".join(sys.argv[1:]),
        }})
        print(f"recorded as head_alignment in {ckpt.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
