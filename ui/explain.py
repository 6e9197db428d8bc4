"""The explanation endpoints beyond attention maps: one attention layer's numbers (the cell view), the
attributions with their source-vs-prefix share, and the LayerNorm statistics, all from ``model.explain``.

Each takes a finished translation as the page holds it (the French it read and the ids it generated,
``steps[t].token_id`` of its trace) plus the model's name, so nothing is translated again; the views
(``static/cell.js``, ``static/attribution.js``, ``static/layernorm.js``) ask for them through hidden events of ``ui.layout`` (``regard.explain``), and
API clients call them by name. They run on the one bounded model queue and the model gate
(``context.model_call``; attribution takes the whole machine, ``context.whole_machine``), and their answers are kept in the app's byte-bounded cache.
"""
from __future__ import annotations

from typing import Any, Callable

from model.attention import KINDS
from model.decoding import InputError, default_max_len, pad_batch, source_ids
from model.explain.attribution import attribute, check_request
from model.explain.cell import attention_layer
from model.explain.residual import residual_stats
from model.generation import Greedy, check_prefix, generate

from .context import Context, LoadedModel, model_call, whole_machine
from .handlers import pick_model
from .inputs import check_text, guarded
from .inputs import parse_ids

IG_STEPS = 32  # integrated-gradients steps the page asks for (the library accepts 1-64)


def _request(ctx: Context, text: Any, generated_ids: Any, model: Any) -> tuple[LoadedModel, str, list[int], list[int]]:
    """Check a finished translation sent back: (model, text, source ids, generated ids) or ``InputError``."""
    lm = pick_model(ctx, model)
    text = check_text(text)
    src = source_ids(lm.ckpt.model, lm.ckpt.tokenizer, text)
    generated = parse_ids(generated_ids)
    check_prefix(lm.ckpt.model, generated, lm.ckpt.config.max_positions - 1, what="generated")
    return lm, text, src, generated


def _cached(ctx: Context, key: tuple, run: Callable[[], dict]) -> dict:
    hit = ctx.cache.get(key)
    if hit is not None:
        return hit
    data = run()
    ctx.cache.put(key, data)
    return data


def _echo(what: str, lm: LoadedModel, text: str, generated: list[int], **extra: Any) -> dict:
    return {"what": what, "request": {"model": lm.name, "text": text, "generated": generated, **extra}}


@guarded
def attention_cell(ctx: Context, text: Any, generated_ids: Any, kind: Any, layer: Any, model: Any = None) -> dict:
    """One attention layer's queries, keys, values (each (H, L, Dh)), weights and head outputs.

    ``kind``: encoder, decoder_self or cross; ``layer``: 1-based. Any cell (query, key, head) of that
    layer can then be opened in the page without another request.
    """
    lm, text, src, generated = _request(ctx, text, generated_ids, model)
    if kind == "decoder":  # the page's name for the decoder's self-attention map
        kind = "decoder_self"
    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}, got {str(kind)[:40]!r}")
    cfg = lm.ckpt.config
    n = cfg.n_encoder_layers if kind == "encoder" else cfg.n_decoder_layers
    try:
        index = int(str(layer).strip())
    except ValueError:
        raise InputError(f"layer must be a whole number from 1 to {n}, got {str(layer)[:40]!r}") from None
    if not 1 <= index <= n:
        raise InputError(f"{kind} has layers 1–{n}, got {index}")

    def run() -> dict:
        with model_call(ctx, lm):
            data = attention_layer(lm.ckpt.model, src, generated, kind, index - 1)
        return {**data, **_echo("attention_cell", lm, text, generated, kind=kind, layer=index)}
    return _cached(ctx, ("cell", lm.name, tuple(src), tuple(generated), kind, index), run)


@guarded
def attribution(ctx: Context, text: Any, generated_ids: Any, model: Any = None) -> dict:
    """Gradient x input and integrated gradients (32 steps) of every generated token's log-probability
    over the source and the English prefix, the source-vs-prefix share per step and the agreement of
    each decoder layer's mean cross-attention with them (rank correlation)."""
    lm, text, src, generated = _request(ctx, text, generated_ids, model)
    check_request(lm.ckpt.model, src, generated, IG_STEPS)  # a sentence too long is refused before it waits

    def run() -> dict:
        # about 2-3 s on two cores: worth both of them
        data = whole_machine(ctx, lm, lambda: attribute(lm.ckpt.model, src, generated, steps=IG_STEPS), grad=True)
        return {**data, **_echo("attribution", lm, text, generated)}
    return _cached(ctx, ("attribution", lm.name, tuple(src), tuple(generated)), run)


def _greedy(lm: LoadedModel, src: list[int]) -> list[int]:
    """The model's own greedy translation of ``src``, eos included (what a trace's steps hold); inside ``model_call``."""
    model = lm.ckpt.model
    hyp = generate(model, pad_batch([src], model.config.pad_id), Greedy(), default_max_len(model, len(src))).hypotheses[0]
    return list(hyp.tokens) + ([model.config.eos_id] if hyp.finished else [])


@guarded
def layernorm(ctx: Context, text: Any, generated_ids: Any, model: Any = None) -> dict:
    """The residual stream around every sub-layer and LayerNorm, for every loaded model on this sentence:
    the named one on the ids sent, each other one on its own greedy translation (``models``: a list)."""
    lm, text, src, generated = _request(ctx, text, generated_ids, model)

    def one(other: LoadedModel) -> dict:
        ckpt = other.ckpt
        ids = src if other is lm else source_ids(ckpt.model, ckpt.tokenizer, text)
        with model_call(ctx, other):
            out = generated if other is lm else _greedy(other, ids)
            stats = residual_stats(ckpt.model, ids, out)
        return {"model": other.name, "norm": ckpt.config.norm, "translation": ckpt.tokenizer.decode(out),
                "source_pieces": ckpt.tokenizer.pieces(ids), "generated": out,
                "target_pieces": ckpt.tokenizer.pieces([ckpt.config.bos_id] + out), "stats": stats}

    def run() -> dict:
        return {"models": [one(m) for m in [lm] + [m for m in ctx.models if m is not lm]],
                **_echo("layernorm", lm, text, generated)}
    return _cached(ctx, ("layernorm", lm.name, tuple(src), tuple(generated)), run)


ENDPOINTS: dict[str, tuple[Callable[..., dict], tuple[str, ...]]] = {
    "attention_cell": (attention_cell, ("kind", "layer")),
    "attribution": (attribution, ()),
    "layernorm": (layernorm, ()),
}
