"""The explanation endpoints beyond attention maps (today: the LayerNorm statistics of ``model.explain``).

Each takes a finished translation as the page holds it (the French it read and the ids it generated,
``steps[t].token_id`` of its trace) plus the model's name, so nothing is translated again; the views
(``static/layernorm.js``) ask for them through hidden events of ``ui.layout`` (``regard.explain``), and
API clients call them by name. They run on the one bounded model queue and the model gate
(``context.model_call``), and their answers are kept in the app's byte-bounded cache.
"""
from __future__ import annotations

from typing import Any, Callable

from model.decoding import default_max_len, pad_batch, source_ids
from model.explain.residual import residual_stats
from model.search import Greedy, check_prefix, generate

from .context import Context, LoadedModel, model_call
from .handlers import pick_model
from .inputs import check_text, guarded
from .whatif import parse_ids


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
    "layernorm": (layernorm, ()),
}
