"""A thin wrapper over SentencePiece: train a joint vocabulary, encode, decode, show pieces.

French elision ("l'animal", "qu'il", "jusqu'à") glues the article to the next word, so SentencePiece
never sees that word start a word: "L'animal" became ``▁L ' an ima l``. With ``split_elision`` the
wrapper puts a space after an elided word before SentencePiece sees the text (``l' animal``) and takes
it out again when decoding, so the noun keeps its ``▁`` word start and its usual pieces. The option
travels with the checkpoint (``Tokenizer.options``), because a model trained with it needs it at
inference too. With ``byte_fallback`` (a SentencePiece training option) any character outside the
vocabulary becomes its UTF-8 bytes, so no input is ever ``<unk>``.
"""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Iterable

import sentencepiece as spm

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

# The elision rules, declared once: the regular expressions below are built from them, and the exports
# that must redo them outside Python read them too (model/marian.py writes them into a Hugging Face
# tokenizer.json in Oniguruma syntax, model/export.py into a CTranslate2 folder).
# An elided French word (a single letter or one of the "-qu" conjunctions), then an apostrophe, then a
# letter. "\b" before it keeps English contractions ("don't", "I'd", "it's") out: their letter before
# the apostrophe is not a word of its own.
ELIDED_WORDS = ("c", "d", "j", "l", "m", "n", "s", "t", "qu", "jusqu", "lorsqu", "puisqu", "quoiqu", "presqu")
APOSTROPHES = "'’"
_ELIDED = ("(?:[" + "".join(w for w in ELIDED_WORDS if len(w) == 1) + "]|"
           + "|".join(w for w in ELIDED_WORDS if len(w) > 1) + ")")  # (?:[cdjlmnst]|qu|jusqu|...)
_ELISION = re.compile(rf"\b({_ELIDED})([{APOSTROPHES}])(?=[^\W\d_])", re.IGNORECASE)
_ELISION_SPLIT = re.compile(rf"\b({_ELIDED})([{APOSTROPHES}]) (?=[^\W\d_])", re.IGNORECASE)

_SPACES = re.compile(r"[\u00a0\u2000-\u200a\u202f\u205f\u3000]")

ELISION_PATTERN, ELISION_JOIN_PATTERN, SPACES_PATTERN = _ELISION.pattern, _ELISION_SPLIT.pattern, _SPACES.pattern


def split_elision_text(text: str) -> str:
    """``"L'animal qu'il"`` -> ``"L' animal qu' il"``."""
    return _ELISION.sub(r"\1\2 ", text)


def prepare_split_french(text: str) -> str:
    """What a model trained with ``split_elision`` reads: Unicode spaces made plain, then the split.

    The training data had its Unicode spaces made plain; French typography puts (narrow) no-break
    spaces before "?!:;", which would otherwise reach the model as unseen bytes.
    """
    return split_elision_text(_SPACES.sub(" ", text))


def join_elision(text: str) -> str:
    """Inverse of :func:`split_elision_text` on decoded text."""
    return _ELISION_SPLIT.sub(r"\1\2", text)


class Tokenizer:
    """Holds a SentencePiece model as bytes, so it can travel inside a checkpoint."""

    def __init__(self, model_proto: bytes, split_elision: bool = False) -> None:
        self.model_proto = model_proto
        self.split_elision = split_elision
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(model_proto)
        except Exception as exc:  # sentencepiece raises bare RuntimeError/OSError
            raise ValueError(f"not a valid SentencePiece model: {exc}") from exc
        self._has_bytes = any(self.sp.is_byte(i) for i in range(self.sp.get_piece_size()))
        got = (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id())
        if got != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise ValueError(f"SentencePiece special ids are {got}, expected (pad, unk, bos, eos) = (0, 1, 2, 3)")

    @classmethod
    def train(
        cls,
        sentences: Iterable[str],
        vocab_size: int,
        model_type: str = "unigram",
        character_coverage: float = 1.0,
        input_sentence_size: int = 0,
        seed_sentencepiece_size: int = 1_000_000,
        split_elision: bool = False,
        byte_fallback: bool = False,
    ) -> "Tokenizer":
        """Train on an iterable of sentences (e.g. French and English sides together).

        ``byte_fallback`` needs ``vocab_size`` > 256 + 4: the 256 byte pieces come out of the budget.
        Normalisation is ``identity`` then, so that decode(encode(text)) gives back ``text`` exactly.
        """
        out = io.BytesIO()
        if split_elision:
            sentences = (split_elision_text(s) for s in sentences)
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=out,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            input_sentence_size=input_sentence_size,
            shuffle_input_sentence=True,
            seed_sentencepiece_size=seed_sentencepiece_size,
            hard_vocab_limit=False,
            byte_fallback=byte_fallback,
            normalization_rule_name="identity" if byte_fallback else "nmt_nfkc",
            minloglevel=2,
            num_threads=2,
        )
        return cls(out.getvalue(), split_elision=split_elision)

    @classmethod
    def train_files(cls, paths: Iterable[str | Path], vocab_size: int, **options) -> "Tokenizer":
        """Train on text files: plain text one sentence a line, or French<TAB>English (both sides used)."""

        def sentences():
            for path in paths:
                with open(path, encoding="utf-8") as f:
                    for line in f:
                        yield from (part.strip() for part in line.rstrip("\n").split("\t") if part.strip())

        return cls.train(sentences(), vocab_size, **options)

    @classmethod
    def load(cls, path: str | Path, **options) -> "Tokenizer":
        return cls(Path(path).read_bytes(), **options)

    @property
    def options(self) -> dict:
        """What a checkpoint must store next to the SentencePiece model to rebuild this tokenizer."""
        return {"split_elision": self.split_elision}

    @property
    def byte_fallback(self) -> bool:
        return self._has_bytes

    def _prepare(self, text: str) -> str:
        return prepare_split_french(text) if self.split_elision else text

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without bos/eos."""
        return self.sp.encode(self._prepare(text), out_type=int)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode([self._prepare(t) for t in texts], out_type=int)

    def encode_pieces(self, text: str) -> list[str]:
        return self.sp.encode(self._prepare(text), out_type=str)

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``; pad/bos/eos are dropped."""
        text = self.sp.decode([i for i in ids if i not in (PAD_ID, BOS_ID, EOS_ID)])
        return join_elision(text) if self.split_elision else text

    def unknown_share(self, ids: list[int]) -> float:
        """Share of ``ids`` that are ``<unk>`` or byte-fallback pieces: input the vocabulary never saw."""
        if not ids:
            return 0.0
        return sum(1 for i in ids if i == UNK_ID or self.sp.is_byte(i)) / len(ids)

    def piece(self, token_id: int) -> str:
        """Human-readable piece: SentencePiece's word-start marker stays as '▁' so spacing is visible."""
        if token_id == BOS_ID:
            return "<s>"
        if token_id == EOS_ID:
            return "</s>"
        if token_id == PAD_ID:
            return "<pad>"
        return self.sp.id_to_piece(token_id)

    def pieces(self, ids: list[int]) -> list[str]:
        return [self.piece(i) for i in ids]
