"""Export a Regard checkpoint as a Hugging Face Marian model or a CTranslate2 model.

    python -m model.export --to hf exports/regard-fr-en-hf
    python -m model.export --to ct2 exports/regard-fr-en-ct2 --quantization int8
    python -m model.export --to hf DIR --checkpoint runs/base/best.safetensors

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

from .checkpoint import EXPORT_CHECKPOINT, Checkpoint, CheckpointError, load_checkpoint
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
            model.config.normalize_before = False  # post-LN
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

    class Converter(ctranslate2.converters.Converter):
        def __init__(self, hf_dir: Path) -> None:
            self.hf_dir = str(hf_dir)

        def _load(self):
            model = transformers.MarianMTModel.from_pretrained(self.hf_dir)
            with warnings.catch_warnings():  # "Recommended: pip install sacremoses": not needed to convert
                warnings.simplefilter("ignore")
                tokenizer = transformers.MarianTokenizer.from_pretrained(self.hf_dir)
            return _ct2_loader()(model, tokenizer)

    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = export_hf(ckpt, Path(tmp) / "hf")
        Converter(hf_dir).convert(str(out_dir), quantization=quantization, force=True)
    return Path(out_dir)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", metavar="DIR", help="output directory (created; existing files are replaced)")
    p.add_argument("--to", choices=("hf", "ct2"), required=True, help="Hugging Face Marian or CTranslate2")
    p.add_argument("--checkpoint", default=str(EXPORT_CHECKPOINT),
                   help="the Regard .safetensors checkpoint, post-LN (default: the shipped post-LN model)")
    p.add_argument("--quantization", choices=CT2_QUANTIZATIONS, default=None,
                   help="CTranslate2 weight type (default: the checkpoint's float32)")
    args = p.parse_args(argv)
    if args.quantization and args.to != "ct2":
        p.error("--quantization applies to --to ct2 only")
    try:
        ckpt = load_checkpoint(args.checkpoint)
        out = export_hf(ckpt, args.out_dir) if args.to == "hf" else export_ct2(ckpt, args.out_dir, args.quantization)
    except (CheckpointError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
