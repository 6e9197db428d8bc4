"""The "What if" tab: force an English prefix (and branch from any top-k candidate), see the beam tree,
compare two sentences, switch heads off, and read the alignment and logit lenses.

Handlers are module-level functions over the explicit ``Context`` (like ``ui.handlers``); each one is a
public API endpoint (bound in ``ui.whatif_layout``) on the one bounded model queue. Results are JSON that
``static/whatif.js`` draws in the page (``viz.whatif_json`` and ``model.trace_json`` give the shapes).
What the page sends is checked in ``ui.inputs`` (``parse_ids``, ``parse_heads``).
"""
from __future__ import annotations

from typing import Any

import torch

from model.ablation import head_mask, layer_counts, rank_heads, sequence_logprobs
from model.alignment import cross_attention, word_alignment
from model.decoding import InputError, default_max_len, source_ids, target_ids, trace_translation
from model.lens import logit_lens
from model.generation import Generation, Greedy, generate
from model.trace_json import trace_to_json
from viz.whatif_json import alignment_json, beam_tree_json, lens_json, ranking_json, step_probs

from .context import Context, LoadedModel, model_call
from .handlers import pick_model, translate
from .inputs import BEAM, GREEDY, check_encodable, check_text, guarded, parse_heads, parse_ids, parse_settings

PAIR = ("L'animal n'a pas traversé la rue parce qu'il était trop fatigué.",
        "L'animal n'a pas traversé la rue parce qu'elle était trop large.")
PREFIX_EXAMPLE = "The animal didn't cross the street because it"
MAX_PREFIX_CHARS = 1000


# --- checking what the page or an API client sends ---------------------------------------------------------
def _source(lm: LoadedModel, text: Any) -> tuple[str, list[int]]:
    text = check_text(text)
    return text, source_ids(lm.ckpt.model, lm.ckpt.tokenizer, text)


# --- forced prefix and branching --------------------------------------------------------------------------
def _forced_trace(ctx: Context, lm: LoadedModel, text: str, prefix: list[int], head_text: str = "") -> dict:
    model, tok = lm.ckpt.model, lm.ckpt.tokenizer
    with model_call(ctx, lm):
        trace = trace_translation(model, tok, text, prefix=prefix or None)
    data = trace_to_json(trace, lm.ckpt.config)
    data.update(model=lm.name, forced=[s.forced for s in trace.steps], n_forced=trace.n_forced,
                prefix_text=tok.decode(prefix) if prefix else head_text, score=round(trace.score, 5),
                warnings=[], max_len=0, length_penalty=1.0)
    return data


@guarded
def force_prefix(ctx: Context, text: Any, prefix: Any, model: Any = None) -> tuple[str, dict]:
    """Force the English ``prefix`` (text; empty = plain greedy), then let the model continue greedily.

    Returns the translation and its trace (``regard-trace/1``) with ``forced`` (per step: imposed?),
    ``n_forced`` and ``score`` (sum of log-probabilities, forced tokens included).
    """
    lm = pick_model(ctx, model)
    text, _ = _source(lm, text)
    if not isinstance(prefix, str) or len(prefix) > MAX_PREFIX_CHARS:
        raise InputError(f"the English prefix must be text of at most {MAX_PREFIX_CHARS} characters")
    check_encodable(prefix, "The English prefix")  # tokenised too: refused here, not a crash in SentencePiece
    data = _forced_trace(ctx, lm, text, target_ids(lm.ckpt.tokenizer, prefix), prefix.strip())
    return data["translation"], data


@guarded
def branch(ctx: Context, text: Any, prefix_ids: Any, model: Any = None) -> tuple[str, str, dict]:
    """Force exact target ids (e.g. the first t tokens of a translation plus a top-k candidate at step t)
    and continue greedily. Returns the prefix as text, the translation and the trace (as ``force_prefix``)."""
    lm = pick_model(ctx, model)
    text, _ = _source(lm, text)
    data = _forced_trace(ctx, lm, text, parse_ids(prefix_ids))
    return data["prefix_text"], data["translation"], data


# --- beam tree ----------------------------------------------------------------------------------------------
@guarded
def beam_tree(ctx: Context, text: Any, beam_size: Any, length_penalty: Any, model: Any = None) -> dict:
    """Beam search with its whole tree: every candidate of every step (kept, pruned, finished), its
    log-probability and length-normalised score, and the attention of the row that scored it."""
    lm = pick_model(ctx, model)
    text, _ = _source(lm, text)
    settings = parse_settings(BEAM, beam_size, length_penalty, 0, True, lm.ckpt.config.max_positions)
    tok = lm.ckpt.tokenizer
    with model_call(ctx, lm):
        trace = trace_translation(lm.ckpt.model, tok, text, beam_size=settings.beam_size,
                                  length_penalty=settings.length_penalty)
    data = beam_tree_json(trace.tree, tok)
    cfg = lm.ckpt.config
    data.update(model=lm.name, translation=trace.translation, source_pieces=trace.source_pieces,
                beam_size=settings.beam_size, length_penalty=settings.length_penalty,
                layers=cfg.n_decoder_layers, heads=cfg.n_heads)
    return data


# --- two sentences side by side -----------------------------------------------------------------------------
def compare_sentences(ctx: Context, text_a: Any, text_b: Any, model: Any = None) -> list[dict]:
    """Greedy traces (``regard-trace/1``) of two sentences through one model, for the side-by-side view."""
    return [translate(ctx, t, GREEDY, 1, 1.0, 0, True, model)[1] for t in (text_a, text_b)]


# --- heads switched off -------------------------------------------------------------------------------------
def _greedy(lm: LoadedModel, src: torch.Tensor, mask: Any = None) -> Generation:
    """The greedy translation of ``src`` (1, S), with each step's probability, which the views then read
    (``Generation.sentence``) instead of encoding the sentence again."""
    return generate(lm.ckpt.model, src, Greedy(), default_max_len(lm.ckpt.model, src.size(1)), head_mask=mask,
                    top_k=1, record=True)


def _step_probs(lm: LoadedModel, gen: Generation) -> tuple[list[int], list[dict], str]:
    hyp, tok = gen.hypotheses[0], lm.ckpt.tokenizer
    ids = [p.token_id for p in hyp.path]
    return ids, step_probs(tok, ids, [p.logprob for p in hyp.path]), tok.decode(hyp.tokens)


@guarded
def ablate(ctx: Context, text: Any, heads: Any, model: Any = None) -> dict:
    """Re-translate with ``heads`` switched off ("kind:layer:head", 1-based; e.g. "cross:4:1 cross:4:2").

    Returns both translations with each step's top-1 probability, the log-probability of the original
    translation with those heads off, and every head ranked by how much the original translation's
    log-probability drops when that head alone is off (cached per model and sentence).
    """
    lm = pick_model(ctx, model)
    text, ids = _source(lm, text)
    m = lm.ckpt.model
    off = parse_heads(heads, layer_counts(m), m.config.n_heads)
    src = torch.tensor([ids], device=next(m.parameters()).device)  # (1, S)
    key = ("whatif-rank", lm.name, text)
    with model_call(ctx, lm):
        base_ids, base_steps, base_text = _step_probs(lm, _greedy(lm, src))
        mask = head_mask(m, off)
        ablated = _greedy(lm, src, mask)  # encodes with the mask: switched-off encoder heads change the memory
        abl_ids, abl_steps, abl_text = _step_probs(lm, ablated)
        eos = m.config.eos_id  # scored as rank_heads scores it: the translation ending with eos
        tgt = torch.tensor([base_ids if base_ids[-1:] == [eos] else base_ids + [eos]], device=src.device)  # (1, T)
        kept = float(sequence_logprobs(m, src, tgt, mask, enc=ablated.enc)[0])
        ranking = ctx.cache.get(key)
        if ranking is None:
            ranking = ranking_json(rank_heads(m, ids, base_ids))
            ctx.cache.put(key, ranking)
    delta = [round(b["prob"] - a["prob"], 6) for b, a in zip(base_steps, abl_steps)]
    return {"model": lm.name, "source_text": text, "heads": [f"{k}:{l + 1}:{h + 1}" for k, l, h in off],
            "counts": layer_counts(m), "n_heads": m.config.n_heads,
            "original": {"translation": base_text, "steps": base_steps},
            "ablated": {"translation": abl_text, "steps": abl_steps},
            "top1_change": [-d for d in delta], "original_logprob_ablated": round(kept, 5), "ranking": ranking}


# --- lenses ---------------------------------------------------------------------------------------------------
@guarded
def alignment(ctx: Context, text: Any, model: Any = None) -> dict:
    """Word alignment of the greedy translation read from cross-attention: word attention of every head
    and layer mean (pieces merged into words: see ``model.alignment``), and each layer mean's links."""
    lm = pick_model(ctx, model)
    text, ids = _source(lm, text)
    m, tok = lm.ckpt.model, lm.ckpt.tokenizer
    src = torch.tensor([ids], device=next(m.parameters()).device)  # (1, S)
    with model_call(ctx, lm):
        enc, out = _greedy(lm, src).sentence()
        if not [i for i in out if i != m.config.eos_id]:
            raise InputError("the translation is empty (the model ended at once): there are no English words to align")
        attn = cross_attention(m, enc, out)  # (L, H, T, S)
    data = alignment_json(word_alignment(attn, tok.pieces(ids), tok.pieces(out)))
    # Per-head F1 against a reference aligner, when scripts/head_alignment.py --record measured it.
    data["head_scores"] = lm.ckpt.training.get("head_alignment")
    data.update(model=lm.name, translation=tok.decode([i for i in out if i != m.config.eos_id]),
                merge_rule="a piece starting with ▁ begins a word; others continue it; <s>, </s> belong to none. "
                           "Source pieces' attention is summed into their word, target pieces' averaged.")
    return data


@guarded
def lens(ctx: Context, text: Any, model: Any = None) -> dict:
    """Logit lens over the greedy translation: per step, the piece each decoder layer would output
    (final norm + output projection applied to that layer's state) and its probability."""
    lm = pick_model(ctx, model)
    text, ids = _source(lm, text)
    m = lm.ckpt.model
    src = torch.tensor([ids], device=next(m.parameters()).device)  # (1, S)
    with model_call(ctx, lm):
        enc, out = _greedy(lm, src).sentence()
        result = logit_lens(m, enc, out)
    data = lens_json(result, lm.ckpt.tokenizer, out)
    data.update(model=lm.name, translation=lm.ckpt.tokenizer.decode([i for i in out if i != m.config.eos_id]))
    return data
