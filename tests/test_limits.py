"""``model.limits``: the library's resource caps, text repair, unknown-input share and splitting of long text."""
from __future__ import annotations

import math

import pytest

from conftest import tiny_pairs
from model import limits
from model.errors import InputError, LimitError
from model.tokenizer import Tokenizer


def test_caps_refuse_with_reasons():
    assert limits.check_beam_size(16) == 16 and limits.check_beam_size(4.0) == 4
    with pytest.raises(LimitError, match="between 1 and 16, got 17"):
        limits.check_beam_size(17)
    with pytest.raises(InputError, match="whole number"):
        limits.check_beam_size(2.5)
    for bad in (math.nan, math.inf, -0.1, "1", True):
        with pytest.raises(InputError, match="length penalty"):
            limits.check_length_penalty(bad)
    assert limits.check_length_penalty(0) == 0.0
    assert limits.check_max_len(None, 64) is None and limits.check_max_len(63, 64) == 63
    with pytest.raises(LimitError, match="between 1 and 63 tokens"):
        limits.check_max_len(64, 64)
    with pytest.raises(LimitError, match="batch size"):
        limits.check_batch_size(0)
    assert limits.check_decoding(2, 1.0, None, 64) == (2, 1.0, None)
    assert issubclass(LimitError, ValueError)


def test_check_source(tiny_tokenizer):
    assert limits.check_source(tiny_tokenizer, " Le chat. ", 64) == tiny_tokenizer.encode("Le chat.")
    with pytest.raises(InputError, match="empty"):
        limits.check_source(tiny_tokenizer, "  ", 64)
    with pytest.raises(LimitError, match="this model reads at most 8"):
        limits.check_source(tiny_tokenizer, "Le chat dort sur le canapé de la maison.", 8)


def test_repair_text_replaces_lone_surrogates():
    assert limits.repair_text("ok \udcff\ud800 done") == ("ok \ufffd\ufffd done", 2)
    assert limits.repair_text("😀 fine") == ("😀 fine", 0)


def test_split_to_fit_keeps_every_word_in_order(tiny_tokenizer):
    text = " ".join(f"Le chat {'dort ' * (i % 5)}sur le canapé." for i in range(30))
    pieces = limits.split_to_fit(tiny_tokenizer, text, 32)
    assert len(pieces) > 1 and all(limits.fits(tiny_tokenizer, p, 32) for p in pieces)
    assert " ".join(pieces).split() == text.split()
    word = "x" * 3000  # no sentence end, no space: cut anywhere, still nothing lost
    pieces = limits.split_to_fit(tiny_tokenizer, word, 32)
    assert "".join(pieces) == word and all(limits.fits(tiny_tokenizer, p, 32) for p in pieces)
    assert limits.split_to_fit(tiny_tokenizer, "Le chat.", 32) == ["Le chat."]
    with pytest.raises(LimitError):
        limits.split_to_fit(tiny_tokenizer, "a" * (limits.MAX_LINE_CHARS + 1), 32)


def test_unknown_share_counts_characters_for_unk_and_byte_pieces(tiny_tokenizer):
    byte_tok = Tokenizer.train([s for p in tiny_pairs() for s in p], vocab_size=330, byte_fallback=True)
    assert any(byte_tok.sp.is_byte(i) for i in byte_tok.encode("😀"))  # bytes, not <unk>
    for tok in (tiny_tokenizer, byte_tok):
        assert limits.unknown_share(tok, "😀😀😀") == 1.0
        assert limits.unknown_share(tok, "le chat dort") == 0.0
        assert limits.unknown_share(tok, "le chat 😀") == pytest.approx(1 / 7)  # one character of 7, not 4 bytes
        assert limits.unknown_warning(tok, "le chat 😀") is None
        assert "unknown" in limits.unknown_warning(tok, "你好世界 le")  # 4 of 6
    assert limits.unknown_share(tiny_tokenizer, "\u200b\u200b") == 1.0  # normalised away: nothing known
