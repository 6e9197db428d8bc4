"""The SentencePiece wrapper: training from files, lossless round trip, readable pieces."""
from __future__ import annotations

from conftest import tiny_pairs
from model.tokenizer import Tokenizer


def test_tokenizer_trains_from_files_and_round_trips_text(tmp_path):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"{fr}\t{en}\n" for fr, en in tiny_pairs(200)), encoding="utf-8")
    tok = Tokenizer.train_files([tsv], vocab_size=80)
    assert tok.vocab_size == 80
    text = "Le chat mange une pomme."
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert "".join(tok.encode_pieces(text)).replace("▁", " ").strip() == text
    assert tok.pieces([2, 3, 0]) == ["<s>", "</s>", "<pad>"]
