"""Export a Regard checkpoint as a Hugging Face Marian model or a CTranslate2 model.

    python -m model.export --to hf exports/regard-fr-en-hf
    python -m model.export --to ct2 exports/regard-fr-en-ct2 --quantization int8
    python -m model.export --to hf DIR --checkpoint runs/base/best.safetensors

--to hf exports the shipped post-LN model by default (Hugging Face Marian has no pre-LN variant);
--to ct2 exports the app's default, pre-LN model (CTranslate2's Transformer spec has a pre-norm option).

The Hugging Face directory loads with ``MarianMTModel.from_pretrained`` / ``MarianTokenizer`` (or a
``pipeline("translation", model=DIR)``); the CTranslate2 directory with ``ctranslate2.Translator``.
Both need the optional ``transformers`` (and ``ctranslate2``) packages: ``pip install -r requirements-dev.txt``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

from .checkpoint import DEFAULT_CHECKPOINT, EXPORT_CHECKPOINT, Checkpoint, CheckpointError, load_checkpoint
from .marian import require_transformers, to_hf_model, write_marian_tokenizer

CT2_QUANTIZATIONS = ("int8", "int8_float32", "int16", "float16", "bfloat16", "float32")


def export_hf(ckpt: Checkpoint, out_dir: str | Path) -> Path:
    """Write config.json, generation_config.json, model.safetensors and the MarianTokenizer files."""
    if not hasattr(ckpt.tokenizer, "model_proto"):
        raise ValueError("this checkpoint's vocabulary is already a Marian one: use its directory as it is")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    to_hf_model(ckpt.model).save_pretrained(str(out_dir))
    write_marian_tokenizer(ckpt.tokenizer, out_dir)
    return out_dir


def _ct2_loader():
    """CTranslate2's BART loader with Marian's layout but Regard's vocabulary and decoder start.

    CTranslate2's own Marian loader assumes OPUS-MT's conventions (pad is the last id and is dropped,
    the decoder starts from a zero vector); a Regard export has pad 0 and starts from the <s> embedding.
    """
    from ctranslate2.converters.transformers import BartLoader

    class RegardMarianLoader(BartLoader):
        @property
        def architecture_name(self) -> str:
            return "MarianMTModel"

        def get_model_spec(self, model):
            # False for a Marian model; True for to_hf_model's pre-LN intermediate
            model.config.normalize_before = getattr(model.config, "normalize_before", False)
            model.config.normalize_embedding = False  # no LayerNorm on the embeddings
            return super().get_model_spec(model)

        def set_config(self, config, model, tokenizer):
            super().set_config(config, model, tokenizer)
            config.bos_token = tokenizer.convert_ids_to_tokens(model.config.decoder_start_token_id)

    return RegardMarianLoader()


def export_ct2(ckpt: Checkpoint, out_dir: str | Path, quantization: str | None = None) -> Path:
    """Convert through a temporary Hugging Face export; ``quantization`` e.g. "int8" (weights only)."""
    transformers = require_transformers()
    try:
        import ctranslate2
    except ImportError as exc:
        raise CheckpointError("exporting to CTranslate2 needs the optional `ctranslate2` package "
                              "(pip install -r requirements-dev.txt)") from exc
    if quantization not in (None, *CT2_QUANTIZATIONS):
        raise ValueError(f"quantization must be one of {', '.join(CT2_QUANTIZATIONS)}, got {quantization!r}")

    if not hasattr(ckpt.tokenizer, "model_proto"):
        raise ValueError("this checkpoint's vocabulary is already a Marian one: convert its directory with "
                         "ct2-transformers-converter")

    class Converter(ctranslate2.converters.Converter):
        def __init__(self, vocab_dir: Path) -> None:
            self.vocab_dir = str(vocab_dir)

        def _load(self):
            # In memory, not through a saved Hugging Face directory: a pre-LN model's final norms exist
            # only on this intermediate (Hugging Face Marian would drop them on loading).
            model = to_hf_model(ckpt.model, pre_ln_for_ct2=True)
            with warnings.catch_warnings():  # "Recommended: pip install sacremoses": not needed to convert
                warnings.simplefilter("ignore")
                tokenizer = transformers.MarianTokenizer.from_pretrained(self.vocab_dir)
            return _ct2_loader()(model, tokenizer)

    with tempfile.TemporaryDirectory() as tmp:
        write_marian_tokenizer(ckpt.tokenizer, tmp)
        Converter(Path(tmp)).convert(str(out_dir), quantization=quantization, force=True)
    return Path(out_dir)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", metavar="DIR", help="output directory (created; existing files are replaced)")
    p.add_argument("--to", choices=("hf", "ct2"), required=True, help="Hugging Face Marian or CTranslate2")
    p.add_argument("--checkpoint", default=None,
                   help="the Regard .safetensors checkpoint (default: for hf the shipped post-LN model, "
                        "for ct2 the app's default pre-LN one)")
    p.add_argument("--quantization", choices=CT2_QUANTIZATIONS, default=None,
                   help="CTranslate2 weight type (default: the checkpoint's float32)")
    args = p.parse_args(argv)
    if args.quantization and args.to != "ct2":
        p.error("--quantization applies to --to ct2 only")
    try:
        default = EXPORT_CHECKPOINT if args.to == "hf" else DEFAULT_CHECKPOINT
        ckpt = load_checkpoint(args.checkpoint or default)
        out = export_hf(ckpt, args.out_dir) if args.to == "hf" else export_ct2(ckpt, args.out_dir, args.quantization)
    except (CheckpointError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
