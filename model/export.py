"""Export a Regard checkpoint as a Hugging Face Marian model or a CTranslate2 model.

    python -m model.export --to hf exports/regard-fr-en-hf
    python -m model.export --to ct2 exports/regard-fr-en-ct2 --quantization int8
    python -m model.export --to hf DIR --checkpoint runs/base/best.safetensors

--to hf exports the shipped post-LN model by default (Hugging Face Marian has no pre-LN variant);
--to ct2 exports the app's default, pre-LN model (CTranslate2's Transformer spec has a pre-norm option).

The Hugging Face directory loads with ``MarianMTModel.from_pretrained`` and ``AutoTokenizer.from_pretrained``:
its ``tokenizer.json`` does Regard's own text preparation (the French elision split), so ``generate`` on
raw French gives Regard's greedy output (``MarianTokenizer`` still loads, without the split). The
CTranslate2 directory holds the model, ``source.spm``/``target.spm``, ``regard_text.py`` (raw text <->
pieces, Regard's length cap) and a README.md. Both need the optional ``transformers`` (and
``ctranslate2``) packages: ``pip install -r requirements-dev.txt``. docs/interop.md has the recipes.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

from . import cli
from .checkpoint import DEFAULT_CHECKPOINT, EXPORT_CHECKPOINT, Checkpoint, CheckpointError, load_checkpoint
from .marian import fast_tokenizer, require_transformers, to_hf_model, write_fast_tokenizer, write_marian_tokenizer
from .tokenizer import ELISION_JOIN_PATTERN, ELISION_PATTERN, SPACES_PATTERN

CT2_QUANTIZATIONS = ("int8", "int8_float32", "int16", "float16", "bfloat16", "float32")


def export_hf(ckpt: Checkpoint, out_dir: str | Path) -> Path:
    """Write config.json, generation_config.json, model.safetensors, tokenizer.json and the MarianTokenizer files."""
    if not hasattr(ckpt.tokenizer, "model_proto"):
        raise ValueError("this checkpoint's vocabulary is already a Marian one: use its directory as it is")
    fast_tokenizer(ckpt.tokenizer)  # refuses a vocabulary it cannot reproduce before anything is written
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    to_hf_model(ckpt.model).save_pretrained(str(out_dir))
    write_marian_tokenizer(ckpt.tokenizer, out_dir)
    write_fast_tokenizer(ckpt.tokenizer, out_dir, ckpt.model.config.max_positions)
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
    write_ct2_text_files(ckpt, out_dir)
    return Path(out_dir)


def write_ct2_text_files(ckpt: Checkpoint, out_dir: str | Path) -> None:
    """source.spm, target.spm, regard_text.py (raw text <-> pieces, Regard's length cap) and README.md.

    The rules in regard_text.py are the ones in ``model/tokenizer.py``, copied as text at export time
    so the folder needs only ``sentencepiece`` and ``ctranslate2``, never Regard itself.
    """
    out_dir = Path(out_dir)
    tok, config = ckpt.tokenizer, ckpt.model.config
    for name in ("source.spm", "target.spm"):
        (out_dir / name).write_bytes(tok.model_proto)
    code = CT2_TEXT_MODULE
    for key, value in {
        "@SPLIT_ELISION@": repr(bool(getattr(tok, "split_elision", False))),
        "@SPACES@": repr(SPACES_PATTERN),
        "@ELISION@": repr(ELISION_PATTERN),
        "@JOIN@": repr(ELISION_JOIN_PATTERN),
        "@MAX_POSITIONS@": repr(config.max_positions),
        "@SUPPRESS@": repr([[tok.piece(config.pad_id)], [tok.piece(config.bos_id)]]),
        "@EOS@": repr(tok.piece(config.eos_id)),
    }.items():
        code = code.replace(key, value)
    (out_dir / "regard_text.py").write_text(code, encoding="utf-8")
    split_note = CT2_SPLIT_NOTE if getattr(tok, "split_elision", False) else \
        "This model reads French as it is: step 2 does nothing."
    readme = CT2_README.replace("@SPLIT@", split_note).replace("@CAP@", str(config.max_positions - 1))
    (out_dir / "README.md").write_text(readme, encoding="utf-8")


# The module written into a CTranslate2 export folder. Kept short: it is the reference recipe.
CT2_TEXT_MODULE = '''"""Raw French text <-> this CTranslate2 model's pieces, exactly as Regard does it (written by Regard).

    import sys; sys.path.insert(0, FOLDER)
    import ctranslate2, regard_text
    translator = ctranslate2.Translator(FOLDER)
    regard_text.translate(translator, ["L'animal n'a pas traversé la rue."])   # Regard's greedy output

or from a shell: ``python FOLDER/regard_text.py "L'animal n'a pas traversé la rue."``
Needs ``sentencepiece`` (and ``ctranslate2`` to translate); see README.md for the rules.
"""
import re
import sys
from pathlib import Path

import sentencepiece as spm

HERE = Path(__file__).resolve().parent
SPLIT_ELISION = @SPLIT_ELISION@
SPACES = re.compile(@SPACES@)
ELISION = re.compile(@ELISION@, re.IGNORECASE)
ELISION_JOIN = re.compile(@JOIN@, re.IGNORECASE)
MAX_POSITIONS = @MAX_POSITIONS@  # the model's position table: source and output each stay below it
SUPPRESS = @SUPPRESS@  # never a next token in Regard's search
EOS = @EOS@
source_sp = spm.SentencePieceProcessor(model_file=str(HERE / "source.spm"))
target_sp = spm.SentencePieceProcessor(model_file=str(HERE / "target.spm"))


def tokenize(text: str) -> list[str]:
    """Source pieces of one sentence, ending with eos ("</s>") as the model was trained."""
    text = text.strip()
    if SPLIT_ELISION:  # plain spaces for Unicode ones, then "l'animal" -> "l' animal"
        text = ELISION.sub(r"\\1\\2 ", SPACES.sub(" ", text))
    return source_sp.encode(text, out_type=str) + [EOS]


def detokenize(pieces: list[str]) -> str:
    """English text of output pieces ("l' animal" -> "l'animal" again)."""
    text = target_sp.decode_pieces(list(pieces))
    return ELISION_JOIN.sub(r"\\1\\2", text) if SPLIT_ELISION else text


def max_decoding_length(pieces: list[str]) -> int:
    """Regard's cap on output tokens: 1.5 x the source pieces (eos included) + 10, below the position limit."""
    return min(int(1.5 * len(pieces)) + 10, MAX_POSITIONS - 1)


def translate(translator, texts: list[str], **options) -> list[str]:
    """Greedy translations (Regard's default); sentences sharing a length cap are decoded as one batch."""
    pieces = [tokenize(t) for t in texts]
    out = [""] * len(texts)
    by_cap: dict[int, list[int]] = {}
    for i, p in enumerate(pieces):
        if len(p) > 1:  # an empty line stays empty, as in Regard
            by_cap.setdefault(max_decoding_length(p), []).append(i)
    options = {"beam_size": 1, "suppress_sequences": SUPPRESS, **options}
    for cap, rows in by_cap.items():
        results = translator.translate_batch([pieces[i] for i in rows], max_decoding_length=cap, **options)
        for i, r in zip(rows, results):
            out[i] = detokenize(r.hypotheses[0])
    return out


if __name__ == "__main__":
    import ctranslate2

    lines = sys.argv[1:] or [line.rstrip("\\n") for line in sys.stdin]
    for line in translate(ctranslate2.Translator(str(HERE)), lines):
        print(line)
'''

CT2_SPLIT_NOTE = """This model was trained on French whose elisions were split: before SentencePiece, a space goes
after an elided word and its apostrophe (' or ’) when a letter follows, "l'animal" -> "l' animal",
"qu'il" -> "qu' il", "jusqu'à" -> "jusqu' à" (elided words: c d j l m n s t qu jusqu lorsqu puisqu
quoiqu presqu, any case, not inside a longer word: "aujourd'hui" stays). Before that, Unicode spaces
(no-break, narrow no-break, ...) become plain spaces. On the output the space is taken out again.
The exact rules are the regular expressions SPACES, ELISION and ELISION_JOIN in regard_text.py
(Python `re`, ELISION* case-insensitive)."""

CT2_README = """# A Regard model for CTranslate2

Written by `python -m model.export --to ct2` (Regard). Everything a CTranslate2 user needs is in this
folder: `model.bin` + `config.json` + `shared_vocabulary.json` (the model), `source.spm` and
`target.spm` (the SentencePiece model, one for both sides), `regard_text.py` (the text rules below, in
a short Python file that needs only `sentencepiece`).

```python
import sys; sys.path.insert(0, "THIS_FOLDER")
import ctranslate2, regard_text
translator = ctranslate2.Translator("THIS_FOLDER")
print(regard_text.translate(translator, ["L'animal n'a pas traversé la rue."]))
```

or `python THIS_FOLDER/regard_text.py "Je mange une pomme."` (one line per argument or stdin line).
The output is Regard's greedy output for the same raw text.

## The rules, to redo them in another language

1. Strip the text (leading and trailing whitespace).
2. @SPLIT@
3. SentencePiece (`source.spm`), pieces as strings, then append `</s>` (the model reads eos last).
4. `translate_batch(..., beam_size=1, suppress_sequences=[["<pad>"], ["<s>"]],
   max_decoding_length=min(int(1.5 * len(pieces)) + 10, @CAP@))`: Regard never emits pad or the
   decoder start, and caps the output at 1.5 x the source pieces (`</s>` included) + 10 tokens.
5. `target.spm` decodes the pieces; then undo step 2 on the English text
   (`regard_text.detokenize`).
"""


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(prog="python -m model.export", description=__doc__)
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
    return cli.run(lambda: export(args))


def export(args: argparse.Namespace) -> int:
    out_dir = Path(args.out_dir)
    cli.check_creatable_dir(out_dir, "DIR")  # before loading and converting, not after
    if out_dir.exists():
        cli.check_writable(out_dir / "config.json", "DIR")
    default = EXPORT_CHECKPOINT if args.to == "hf" else DEFAULT_CHECKPOINT
    ckpt = load_checkpoint(args.checkpoint or default)
    out = export_hf(ckpt, out_dir) if args.to == "hf" else export_ct2(ckpt, out_dir, args.quantization)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
