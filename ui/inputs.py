"""Checking what a visitor (or an API client) sends, before the model sees it.

Every refusal is an ``InputError`` whose message a person can act on; the handlers turn it into a
``gr.Error``. The API can send anything (strings for numbers, NaN, lone surrogates), so nothing here
trusts the browser's own widgets.
"""
from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from functools import wraps
from typing import Any, Callable

import gradio as gr

from model.attention import KINDS
from model.decoding import InputError
from model.limits import MAX_APP_BEAM, MAX_APP_LENGTH_PENALTY, MAX_REQUEST_CHARS

ERROR_TITLE = "Cannot translate"
HEAD_RE = re.compile(r"^(encoder|decoder_self|cross):(\d+):(\d+)$")  # a head as the page writes it, 1-based


def refuse(message: str) -> gr.Error:
    """The one way the app reports bad input: a toast with text, no stack trace in the log.

    Gradio renders an error's message as HTML, and messages repeat what was sent (a model name from
    a shared link, a head typed by hand), so the text is escaped: ``<a href=…>`` shows as typed
    instead of becoming a live link in Regard's own pop-up.
    """
    return gr.Error(html.escape(message, quote=False), title=ERROR_TITLE, print_exception=False)

def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with bad input (an ``InputError``) reported as ``refuse`` does: a toast with text, no traceback."""
    @wraps(fn)  # keeps the signature: the API's parameter names are the function's
    def run(*args: Any) -> Any:
        try:
            return fn(*args)
        except InputError as exc:
            raise refuse(str(exc)) from None
    return run

GREEDY, BEAM = "Greedy", "Beam search"
FP32, INT8 = "fp32", "int8"  # the weights a translation runs with: as trained, or dynamically quantised
WEIGHT_CHOICES = [("fp32", FP32), ("int8 (dynamic)", INT8)]  # (label, value): the API sends the value
MAX_BEAM, MAX_LENGTH_PENALTY = MAX_APP_BEAM, MAX_APP_LENGTH_PENALTY  # the sliders' ranges (model/limits.py)


@dataclass(frozen=True)
class Settings:
    beam_size: int
    length_penalty: float
    max_len: int | None  # None: automatic (1.5 x source + 10)
    use_cache: bool
    weights: str = FP32  # FP32 or INT8

    def key(self) -> tuple:
        return (self.beam_size, self.length_penalty, self.max_len, self.use_cache, self.weights)


def _number(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    return number


def parse_settings(decoding: Any, beam_size: Any, length_penalty: Any, max_len: Any, use_cache: Any,
                   max_positions: int, weights: Any = FP32) -> Settings:
    """The decoding controls' values, checked; InputError says what is wrong (``weights``: None means fp32)."""
    if decoding not in (GREEDY, BEAM):
        raise InputError(f"decoding must be {GREEDY!r} or {BEAM!r}, got {str(decoding)[:40]!r}")
    beam = int(_number(beam_size, "beam size")) if decoding == BEAM else 1
    penalty = _number(length_penalty, "length penalty")
    cap = int(_number(max_len, "maximum length")) if max_len not in (None, "") else 0
    if not 1 <= beam <= MAX_BEAM:
        raise InputError(f"beam size must be between 1 and {MAX_BEAM}, got {beam}")
    if not 0.0 <= penalty <= MAX_LENGTH_PENALTY:
        raise InputError(f"length penalty must be between 0 and {MAX_LENGTH_PENALTY}, got {penalty}")
    if not 0 <= cap < max_positions:
        raise InputError(f"maximum length must be between 1 and {max_positions - 1} tokens (0 = automatic), got {cap}")
    if not isinstance(use_cache, bool):
        raise InputError(f"KV cache must be true or false, got {str(use_cache)[:20]!r}")
    if beam > 1 and not use_cache:
        raise InputError("beam search runs with the KV cache: turn the cache on, or use greedy decoding")
    weights = FP32 if weights in (None, "") else weights
    if weights not in (FP32, INT8):
        raise InputError(f"weights must be {FP32!r} or {INT8!r}, got {str(weights)[:20]!r}")
    return Settings(beam, penalty, cap or None, use_cache, weights)


def check_text(text: Any) -> str:
    """The text as a clean ``str``: refuses non-text, more than ``MAX_REQUEST_CHARS`` and lone surrogates.

    Up to ``MAX_REQUEST_CHARS`` it is translated, in pieces when the model cannot read it at once.
    """
    if not isinstance(text, str):
        raise InputError(f"the text must be a string, got {type(text).__name__}")
    if len(text) > MAX_REQUEST_CHARS:
        raise InputError(f"The text is {len(text)} characters long; the limit is {MAX_REQUEST_CHARS} per "
                         "translation: translate it in parts.")
    return check_encodable(text, "The text")


def check_encodable(text: str, what: str) -> str:
    """``text`` unchanged, or an ``InputError`` naming ``what`` if it holds a lone UTF-16 surrogate,
    which SentencePiece (and any UTF-8 writer) cannot take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{what} contains an invalid character at position {exc.start + 1} (a lone UTF-16 "
                         "surrogate, e.g. half of an emoji): remove it and try again.") from None
    return text


def text_box(*args: Any, **kwargs: Any) -> gr.Textbox:
    """A ``gr.Textbox`` whose server side refuses what is not text.

    Gradio's own ``Textbox.preprocess`` turns any JSON value into a string, so an API client sending
    ``["Je", "mange"]`` would have "['Je', 'mange']" translated; here a list, number, bool or object is
    refused with its type named. (Bound on the instance, as in ``checked_slider``.)
    """
    box = gr.Textbox(*args, **kwargs)

    def preprocess(payload: Any) -> Any:
        if payload is not None and not isinstance(payload, str):
            raise refuse(f"{box.label or 'this value'} must be text, got {type(payload).__name__}")
        return payload

    box.preprocess = preprocess  # type: ignore[method-assign]
    return box


def checked_choices(component: Any, empty_means_default: bool = False) -> Any:
    """A ``gr.Dropdown`` or ``gr.Radio`` whose refusal of a value outside its choices is escaped text.

    Gradio's own message repeats the value unescaped in an HTML toast (a crafted link's
    ``#model=<a href=…>`` would show a live link) and logs a traceback; this one does neither. With
    ``empty_means_default`` an API client may send "" for the default (the model pickers).
    """
    original = component.preprocess

    def preprocess(payload: Any) -> Any:
        if empty_means_default and payload == "":
            return payload
        allowed = [value for _, value in component.choices]
        for value in payload if isinstance(payload, list) else [payload]:
            if value is not None and value not in allowed:
                raise refuse(f"{component.label or 'value'}: {str(value)[:200]!r} is not in the list of choices: "
                             f"{', '.join(map(str, allowed))}")
        return original(payload)

    component.preprocess = preprocess  # type: ignore[method-assign]
    return component


def checked_slider(*args: Any, **kwargs: Any) -> gr.Slider:
    """A ``gr.Slider`` whose server side accepts whatever an API client sends and lets ``parse_settings`` judge it.

    Gradio's own check compares the raw value with the bounds and fails with an empty message on a
    string or NaN; here only finite numbers are bounds-checked, with text, and anything else passes
    through. (Bound on the instance: a subclass would make Gradio write a ``.pyi`` next to this file.)
    """
    slider = gr.Slider(*args, **kwargs)

    def preprocess(payload: Any) -> Any:
        try:
            value = float(payload)
        except (TypeError, ValueError):
            return payload
        if math.isfinite(value) and not slider.minimum <= value <= slider.maximum:
            raise refuse(f"{slider.label or 'value'} must be between {slider.minimum:g} and {slider.maximum:g}, "
                         f"got {value:g}")
        return value

    slider.preprocess = preprocess  # type: ignore[method-assign]
    return slider


# --- what the What if tab sends -------------------------------------------------------------------------
def parse_ids(value: Any) -> list[int]:
    """Target ids typed as "12 7 42" (spaces or commas): the prefix a top-k click asks to force."""
    if not isinstance(value, str):
        raise InputError("token ids must be a string of whole numbers separated by spaces")
    parts = [p for p in re.split(r"[\s,]+", value.strip()) if p]
    if not parts:
        raise InputError("give at least one token id to force")
    # ASCII digits only: str.isdigit() also takes "²" or "①", which int() then refuses with a traceback
    if len(parts) > 1000 or not all(re.fullmatch(r"[0-9]{1,8}", p) for p in parts):
        raise InputError("token ids must be whole numbers separated by spaces (at most 1000)")
    return [int(p) for p in parts]


def parse_heads(value: Any, counts: dict[str, int], n_heads: int) -> list[tuple[str, int, int]]:
    """Heads written "kind:layer:head" (1-based, kind = encoder, decoder_self or cross), separated by
    spaces or commas, -> 0-based (kind, layer, head) triples."""
    if not isinstance(value, str):
        raise InputError("heads must be text like 'cross:4:1 encoder:2:3'")
    heads = []
    for part in (p for p in re.split(r"[\s,;]+", value.strip()) if p):
        m = HEAD_RE.match(part)
        if not m:
            raise InputError(f"{part[:40]!r} is not a head: write kind:layer:head, kind one of {', '.join(KINDS)}")
        kind, layer, head = m.group(1), int(m.group(2)), int(m.group(3))
        if not (1 <= layer <= counts[kind] and 1 <= head <= n_heads):
            raise InputError(f"{kind} has layers 1–{counts[kind]} and heads 1–{n_heads}; got {part!r}")
        heads.append((kind, layer - 1, head - 1))
    return sorted(set(heads))
