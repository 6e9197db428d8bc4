"""What the library agrees to do: resource caps, text repair, and fitting over-long text under the caps.

Every entry point that runs the model (CLI, app, library callers) checks its settings here, so a
beam of a million or a NaN length penalty is refused with a ``LimitError``/``InputError`` (both
``ValueError``s, one-line reasons) instead of growing until the kernel kills the process.
"""
from __future__ import annotations

import math
import re
from typing import Any

from .errors import InputError, LimitError
from .tokenizer import Tokenizer

MAX_BEAM = 16
MAX_APP_BEAM = 8  # the app's beam sliders: one served request's memory and time grow with its beam
MAX_APP_LENGTH_PENALTY = 2.0  # the app's length-penalty slider (the library takes any finite number >= 0)
MAX_SOURCE_CHARS = 1000  # one sentence as the model reads it at once
MAX_LINE_CHARS = 100_000  # one stdin line or argument translated in pieces; beyond this it is refused
# one app request (the text box's max length), translated in pieces like a CLI line; 3 UTF-8 bytes a
# UTF-16 unit at most (6 for a JSON-escaped control character), so a request stays under the server's 64 KiB
MAX_REQUEST_CHARS = 10_000
MAX_BATCH = 4096
MOSTLY_UNKNOWN = 0.5  # warn when more than this share of the characters is unknown to the vocabulary

_SURROGATES = re.compile("[\ud800-\udfff]")
_SENTENCE_END = re.compile(r"(?<=[.!?…;:])\s+")


def _whole(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise InputError(f"{name} must be a whole number, got {value!r}")
    return value


def _whole_between(name: str, value: Any, low: int, high: int) -> int:
    number = _whole(name, value)
    if not low <= number <= high:
        raise LimitError(f"{name} must be between {low} and {high}, got {number}")
    return number


def check_beam_size(beam_size: Any) -> int:
    """1 (greedy) to ``MAX_BEAM``: memory and time grow linearly with the beam."""
    return _whole_between("beam size", beam_size, 1, MAX_BEAM)


def check_length_penalty(length_penalty: Any) -> float:
    """A finite number >= 0 (0 ranks beams by total log-probability, 1 by per-token average)."""
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)):
        raise InputError(f"length penalty must be a number, got {length_penalty!r}")
    if not (math.isfinite(length_penalty) and length_penalty >= 0):
        raise InputError(f"length penalty must be a finite number >= 0, got {length_penalty}")
    return float(length_penalty)


def check_max_len(max_len: Any, max_positions: int) -> int | None:
    """``None`` (automatic) or 1 .. max_positions - 1 output tokens (the decoder also reads <s>)."""
    if max_len is None:
        return None
    cap = _whole("maximum length", max_len)
    if not 1 <= cap <= max_positions - 1:
        raise LimitError(f"maximum length must be between 1 and {max_positions - 1} tokens for this model, got {cap}")
    return cap


def check_batch_size(batch_size: Any) -> int:
    return _whole_between("batch size", batch_size, 1, MAX_BATCH)


def check_decoding(beam_size: Any, length_penalty: Any, max_len: Any, max_positions: int) -> tuple[int, float, int | None]:
    """All decoding settings at once: (beam size, length penalty, max_len or None)."""
    return check_beam_size(beam_size), check_length_penalty(length_penalty), check_max_len(max_len, max_positions)


def check_source(tokenizer: Tokenizer, text: str, max_positions: int) -> list[int]:
    """Ids of one sentence (eos not included) if it fits the model at once, else ``LimitError``."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("The text is empty: type a French sentence to translate.")
    if len(text) > MAX_SOURCE_CHARS:
        raise LimitError(f"The text is {len(text)} characters long; the limit is {MAX_SOURCE_CHARS}.")
    ids = tokenizer.encode(text.strip())
    if len(ids) + 1 > max_positions:  # + eos
        raise LimitError(f"The sentence is {len(ids) + 1} tokens long; this model reads at most {max_positions}.")
    return ids


# --- text repair and coverage ------------------------------------------------------------------------
def repair_text(text: str) -> tuple[str, int]:
    """Lone surrogates (undecodable argv bytes, broken JSON) -> U+FFFD; returns (text, how many)."""
    fixed, n = _SURROGATES.subn("\ufffd", text)
    return fixed, n


def unknown_share(tokenizer: Tokenizer, text: str) -> float:
    """Share of the non-space characters of ``text`` that the vocabulary does not know.

    A character is unknown when, on its own, it encodes to nothing (normalised away, like a
    zero-width space) or only to ``<unk>``/byte-fallback pieces (``<0x..>``) besides the bare word
    start ``▁``. Counting characters, not pieces, keeps one emoji from weighing as its 4 byte pieces.
    """
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    unique = sorted(set(chars))
    known = {}
    for char, ids in zip(unique, tokenizer.encode_batch(unique)):
        real = [i for i in ids if tokenizer.piece(i) != "▁"]
        known[char] = bool(real) and tokenizer.unknown_share(real) < 1.0
    return sum(not known[c] for c in chars) / len(chars)


def unknown_warning(tokenizer: Tokenizer, text: str) -> str | None:
    """A one-line warning when most of ``text`` is unknown to the tokenizer, else None."""
    share = unknown_share(tokenizer, text)
    if share <= MOSTLY_UNKNOWN:
        return None
    return (f"{share:.0%} of the characters are unknown to this model's vocabulary (emoji, another script, "
            "invisible characters?); the translation is guesswork")


# --- over-long text ----------------------------------------------------------------------------------
def fits(tokenizer: Tokenizer, text: str, max_positions: int) -> bool:
    """Whether ``text`` can be read by the model in one go (characters and tokens + eos)."""
    return len(text) <= MAX_SOURCE_CHARS and len(tokenizer.encode(text)) + 1 <= max_positions


def split_to_fit(tokenizer: Tokenizer, text: str, max_positions: int) -> list[str]:
    """Cut ``text`` into consecutive pieces that each ``fits``: at sentence ends, then spaces, then anywhere.

    A text that fits stays whole. Otherwise every sentence is its own piece (the model was trained on
    sentences, and translates them better one by one); a sentence that is still too long is cut into
    the longest runs of words that fit. Nothing is dropped and order is kept: joining the
    translations with a space gives one line for the line.
    """
    text = text.strip()
    if len(text) > MAX_LINE_CHARS:
        raise LimitError(f"the text is {len(text)} characters long; the limit is {MAX_LINE_CHARS}")
    if not text or fits(tokenizer, text, max_positions):
        return [text] if text else []
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        pieces.extend([sentence] if fits(tokenizer, sentence, max_positions) else _split_words(tokenizer, sentence, max_positions))
    return pieces


def _split_words(tokenizer: Tokenizer, sentence: str, max_positions: int) -> list[str]:
    out: list[str] = []
    for word in sentence.split():
        joined = f"{out[-1]} {word}" if out else word
        if out and fits(tokenizer, joined, max_positions):
            out[-1] = joined
        elif fits(tokenizer, word, max_positions):
            out.append(word)
        else:
            out.extend(_split_chars(tokenizer, word, max_positions))
    return out


def _split_chars(tokenizer: Tokenizer, word: str, max_positions: int) -> list[str]:
    out = []
    while word:
        n = min(len(word), MAX_SOURCE_CHARS)
        while n > 1 and not fits(tokenizer, word[:n], max_positions):
            n = max(1, n * (max_positions - 1) // (len(tokenizer.encode(word[:n])) + 1) - 1)
        out.append(word[:n])
        word = word[n:]
    return out
