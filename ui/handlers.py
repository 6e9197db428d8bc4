"""Event handlers at module level: each takes the ``Context`` explicitly, then the components' values.

They are plain functions (``functools.partial`` binds the context in the layout), so tests call them
without a server. Only ``translate``-like handlers run the model; they all take the one bounded queue
(see ``ui.layout``) and refuse bad input with a ``gr.Error`` that says what is wrong.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import gradio as gr
import torch

from model.decoding import InputError, Trace, trace_batch, trace_translation
from model.limits import split_to_fit, unknown_warning
from model.memory import process_rss_bytes
from model.record import best_head as record_best_head
from model.tokenizer import Tokenizer
from model.transformer import Transformer
from model.trace_json import trace_to_json

from .context import Context, LoadedModel
from .inputs import BEAM, FP32, GREEDY, INT8, Settings, check_text, parse_settings, refuse
from .texts import EXAMPLES, header_html


def pick_model(ctx: Context, name: Any) -> LoadedModel:
    try:
        return ctx.model(name)
    except KeyError as exc:
        raise refuse(exc.args[0]) from None


def decode(model: Transformer, tokenizer: Tokenizer, settings: Settings, texts: list[str]) -> list[Trace]:
    """The traces of ``texts`` (one batch of the micro-batcher) with the same model and settings."""
    with torch.inference_mode():
        if len(texts) > 1:
            return trace_batch(model, tokenizer, texts, max_len=settings.max_len, use_cache=settings.use_cache)
        return [trace_translation(model, tokenizer, texts[0], beam_size=settings.beam_size,
                                  length_penalty=settings.length_penalty, max_len=settings.max_len,
                                  use_cache=settings.use_cache)]


def run_trace(ctx: Context, lm: LoadedModel, text: str, settings: Settings) -> dict:
    """The trace of one translation as JSON (schema ``regard-trace/1``) plus the app's own fields.

    Cached by (model, text, settings): a repeated sentence (an example, a shared link) costs nothing.
    ``settings.weights`` picks the fp32 model or its int8 twin; the trace says which ran and carries the
    measured weight memory of both. Greedy fp32 requests that wait for the model at the same time are
    decoded together (``ctx.batcher``, ``trace_batch``: the same trace each); beam search and int8 (whose
    dynamic activation scales span the whole batch) run alone.
    """
    key = (lm.name, text, settings.key())
    cached = ctx.cache.get(key)
    if cached is not None:
        return cached
    ckpt = lm.ckpt
    int8 = settings.weights == INT8
    model = lm.int8_model() if int8 else ckpt.model  # built outside the model slot: quantising once takes seconds
    batchable = settings.beam_size == 1 and not int8
    group = (lm.name, settings.max_len, settings.use_cache) if batchable else None
    trace = ctx.batcher.submit(group, text, partial(decode, model, ckpt.tokenizer, settings))
    with ctx.in_flight.cond:  # counters shared by the request threads
        warm = (lm.int8_runs if int8 else lm.runs) > 0
        if int8:
            lm.int8_runs += 1
        else:
            lm.runs += 1
    data = trace_to_json(trace, ckpt.config)
    warning = unknown_warning(ckpt.tokenizer, text)  # the CLI's rule: characters, not pieces
    by_format = lm.weight_bytes()
    data.update(model=lm.name, warm=warm, max_len=settings.max_len, best_head=best_head(lm),
                length_penalty=settings.length_penalty,
                warnings=[warning] if warning else [], rss_bytes=process_rss_bytes(),
                weights=settings.weights, weight_bytes=by_format[settings.weights], weight_bytes_by_format=by_format)
    ctx.cache.put(key, data)
    return data


def run_pieces(ctx: Context, lm: LoadedModel, text: str, pieces: list[str], settings: Settings) -> dict:
    """A text too long to read at once, as the CLI translates it: piece by piece, the translations joined.

    ``pieces`` come from ``model.limits.split_to_fit`` (cut at sentence ends, then spaces; nothing
    dropped). The trace is the first piece's (the explorer draws one sentence), plus ``input_text``
    (the whole text) and ``pieces`` (each piece with its translation).
    """
    runs = [run_trace(ctx, lm, piece, settings) for piece in pieces]
    data = dict(runs[0])  # a copy: the cached trace of the first piece stays as it is
    data.update(input_text=text, pieces=[{"source": p, "translation": r["translation"]} for p, r in zip(pieces, runs)],
                warnings=list(dict.fromkeys(w for r in runs for w in r["warnings"])))
    return data


def translate(ctx: Context, text: Any, decoding: Any, beam_size: Any, length_penalty: Any, max_len: Any,
              use_cache: Any, model: Any = None, weights: Any = FP32) -> tuple[str, dict]:
    """Translate French text; returns the English text and the whole trace (``regard-trace/1``).

    A text the model cannot read at once (over ``MAX_SOURCE_CHARS`` characters or its positions) is
    translated in pieces like a CLI line (``run_pieces``): the English joins them all, the trace is the
    first piece's. ``weights`` is "fp32" (default, what older API clients get) or "int8".
    """
    lm = pick_model(ctx, model)
    try:
        text = check_text(text)
        settings = parse_settings(decoding, beam_size, length_penalty, max_len, use_cache,
                                  lm.ckpt.config.max_positions, weights)
        pieces = split_to_fit(lm.ckpt.tokenizer, text, lm.ckpt.config.max_positions)
        data = run_pieces(ctx, lm, text, pieces, settings) if len(pieces) > 1 else run_trace(ctx, lm, text, settings)
    except InputError as exc:
        raise refuse(str(exc)) from None
    for warning in data["warnings"]:
        gr.Warning(warning, title="Mostly unknown input")
    english = " ".join(p["translation"] for p in data["pieces"]) if "pieces" in data else data["translation"]
    return english, data


def example_text(index: Any) -> str:
    """The example at ``index``, checked (the API can send any index)."""
    if isinstance(index, bool) or not isinstance(index, (int, float)) or not float(index).is_integer():
        raise refuse(f"example index must be a whole number, got {str(index)[:20]!r}")
    if not 0 <= int(index) < len(EXAMPLES):
        raise refuse(f"there is no example {int(index)}; choose 0 to {len(EXAMPLES) - 1}")
    return EXAMPLES[int(index)]


def translate_example(ctx: Context, index: Any, *controls: Any) -> tuple[str, str, dict]:
    """An example click: fill the box and translate it at once with the current settings."""
    text = example_text(index)
    return (text, *translate(ctx, text, *controls))


URL_KEYS = ("s", "decoding", "beam", "lp", "max", "cache", "model", "weights")


def url_settings(ctx: Context, query: Any) -> list[Any]:
    """A page address's query/fragment (``s=…&beam=4&model=…``) -> the input controls' values.

    Keys the browser alone reads (step, view, layer, head) are ignored here; bad values are refused
    with the key named, so a broken shared link says why.
    """
    params = parse_qs(str(query or "").lstrip("#?"), keep_blank_values=True)
    get = {k: v[-1] for k, v in params.items() if k in URL_KEYS}
    text = get.get("s", EXAMPLES[0])
    beam = get.get("beam", "1")
    decoding = BEAM if get.get("decoding", "beam" if beam not in ("", "1") else "greedy") == "beam" else GREEDY
    try:
        numbers = [float(get.get(k, d)) for k, d in (("beam", "4" if decoding == BEAM else "1"), ("lp", "1"), ("max", "0"))]
    except ValueError:
        raise refuse("the page address has a setting that is not a number (beam, lp or max)") from None
    if not all(math.isfinite(n) for n in numbers):
        raise refuse("the page address has a setting that is not a finite number (beam, lp or max)")
    beam_n, lp, cap = numbers
    cache = get.get("cache", "1") not in ("0", "false", "off")
    model = pick_model(ctx, get.get("model")).name
    weights = INT8 if get.get("weights") == INT8 else FP32
    return [text, decoding, max(int(beam_n), 1) if decoding == BEAM else 4, lp, int(cap), cache, model, weights]


def open_url(ctx: Context, query: Any) -> list[Any]:
    """The controls from the address (or the defaults), and their translation."""
    values = url_settings(ctx, query)
    return [*values, *translate(ctx, *values)]


def start_up(ctx: Context, initial: list[Any], query: Any) -> dict:
    """Page load, as one JSON value: the address's controls, their translation, and the page's initial values.

    It is not written into the controls directly: a visitor may type, pick or press Translate before it
    arrives, so the page (``regard.startUp`` in ui/static/regard.js) applies a value only to a control
    still at its ``initial`` value, and the translation only if no translation was started meanwhile.
    """
    *values, english, trace = open_url(ctx, query)
    return {"values": values, "initial": list(initial), "translation": english, "trace": trace}


def header_for(ctx: Context, name: Any) -> str:
    """The header naming the model the picker shows."""
    return header_html(pick_model(ctx, name))


def compare_models(ctx: Context, text: Any, decoding: Any, beam_size: Any, length_penalty: Any, max_len: Any,
                   use_cache: Any, weights: Any = FP32) -> list[dict]:
    """The same sentence and settings through every loaded model: one trace each, in model order."""
    return [translate(ctx, text, decoding, beam_size, length_penalty, max_len, use_cache, m.name, weights)[1]
            for m in ctx.models]


def greedy_runs(ctx: Context, text: Any, max_len: Any, model: Any, variants: list[tuple[str, bool, str]]) -> list[dict]:
    """Greedy runs of one sentence, one per (label, KV cache on?, weights): per-step latencies to overlay."""
    runs = []
    for label, cache, weights in variants:
        _, data = translate(ctx, text, GREEDY, 1, 1.0, max_len, cache, model, weights)
        runs.append({"label": label, "weights": weights, "encode_ms": data["encode_ms"], "total_ms": data["total_ms"],
                     "weight_bytes": data["weight_bytes"], "translation": data["translation"],
                     "step_ms": [s["latency_ms"] for s in data["steps"]]})
    return runs


def compare_cache(ctx: Context, text: Any, max_len: Any, model: Any, weights: Any = FP32) -> list[dict]:
    """The KV cache on and off, with the chosen weights."""
    return greedy_runs(ctx, text, max_len, model, [(f"greedy, cache {c}", c == "on", weights) for c in ("on", "off")])


def compare_weights(ctx: Context, text: Any, max_len: Any, model: Any) -> list[dict]:
    """fp32 and int8 weights, cache on: the speed of one against the other on the same sentence."""
    return greedy_runs(ctx, text, max_len, model, [(f"greedy, {w} weights", True, w) for w in (FP32, INT8)])


def warm_up(ctx: Context) -> None:
    """Run every model at start-up, so no visitor sees a cold start.

    On the CPU the int8 twin is built and run here too, so the first visitor who picks int8 waits for neither.
    Each is then run once more, warm, and that run's time kept in ``ctx.warm_ms`` (model name -> weights
    -> ms): the page states what fp32 and int8 took on this machine instead of promising a speed-up.
    """
    warm: dict[str, dict[str, float]] = {}
    for lm in ctx.models:
        for weights in (FP32, INT8) if lm.int8_ready else (FP32,):
            for _ in range(2):  # cold, then warm (the cache cleared in between so the model really runs)
                ctx.cache.clear()
                _, data = translate(ctx, EXAMPLES[0], GREEDY, 1, 1.0, 0, True, lm.name, weights)
            warm.setdefault(lm.name, {})[weights] = data["total_ms"]
    ctx.warm_ms = warm  # read by weights_note; empty until the warm-up has run
    ctx.cache.clear()  # the cached runs were measurements: a visitor's first translation really runs


def weights_note(ctx: Context) -> str:
    """The Weights control's help: what int8 is, and what each took here at start-up (``warm_up``), if measured."""
    note = "int8: the linear layers dynamically quantised (CPU only): smaller weights, sometimes another word."
    ms = ctx.warm_ms.get(ctx.default.name, {})
    if FP32 in ms and INT8 in ms:
        return (note + f" Measured on this server at start-up ({ctx.default.name}, the first example, warm): "
                f"fp32 {ms[FP32]:.1f} ms, int8 {ms[INT8]:.1f} ms.")
    return note + " Its speed depends on the CPU: “Compare fp32 vs int8 speed” under Latency & memory measures both."


def best_head(lm: LoadedModel) -> dict | None:
    """The cross-attention head whose word alignment best matches a reference aligner, from the checkpoint's
    record (``head_alignment``, written by scripts/head_alignment.py --record), or None when not measured.

    Returns {"layer", "head" (0-based), "f1", "aligner", "pairs"}: the explorer opens on this head.
    """
    record = lm.ckpt.training.get("head_alignment") or {}
    f1, cfg = record.get("head_f1"), lm.ckpt.config
    shaped = isinstance(f1, list) and len(f1) == cfg.n_decoder_layers
    if not (shaped and all(isinstance(row, list) and len(row) == cfg.n_heads for row in f1)):
        return None  # not measured, or measured on another architecture
    layer, head = record_best_head(f1)
    return {"layer": layer, "head": head, "f1": float(f1[layer][head]), "aligner": record.get("aligner"),
            "pairs": record.get("scored_pairs")}
