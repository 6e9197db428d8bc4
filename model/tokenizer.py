"""A thin wrapper over SentencePiece: train a joint vocabulary, encode, decode, show pieces."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

import sentencepiece as spm

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


class Tokenizer:
    """Holds a SentencePiece model as bytes, so it can travel inside a checkpoint."""

    def __init__(self, model_proto: bytes) -> None:
        self.model_proto = model_proto
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(model_proto)
        except Exception as exc:  # sentencepiece raises bare RuntimeError/OSError
            raise ValueError(f"not a valid SentencePiece model: {exc}") from exc
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
    ) -> "Tokenizer":
        """Train on an iterable of sentences (e.g. French and English sides together)."""
        out = io.BytesIO()
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
            minloglevel=2,
            num_threads=2,
        )
        return cls(out.getvalue())

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
    def load(cls, path: str | Path) -> "Tokenizer":
        return cls(Path(path).read_bytes())

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without bos/eos."""
        return self.sp.encode(text, out_type=int)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(texts, out_type=int)

    def encode_pieces(self, text: str) -> list[str]:
        return self.sp.encode(text, out_type=str)

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``; pad/bos/eos are dropped."""
        return self.sp.decode([i for i in ids if i not in (PAD_ID, BOS_ID, EOS_ID)])

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
