"""The "What if" tab: force an English prefix (and branch from any top-k candidate), see the beam tree,
compare two sentences, switch heads off, and read the alignment and logit lenses.

Handlers are module-level functions over the explicit ``Context`` (like ``ui.handlers``); each one is a
public API endpoint (``api_name`` below) on the one bounded model queue. Results are JSON that
``static/whatif.js`` draws in the page (``viz.whatif_json`` and ``model.trace_json`` give the shapes).
"""
from __future__ import annotations

import re
from functools import partial
from typing import Any, Callable

import gradio as gr
import torch

from model.ablation import head_mask, layer_counts, rank_heads, sequence_logprobs
from model.alignment import cross_attention, word_alignment
from model.attention import KINDS
from model.decoding import InputError, default_max_len, source_ids, target_ids, trace_translation
from model.lens import logit_lens
from model.search import Greedy, generate
from model.trace_json import trace_to_json
from viz.whatif_json import alignment_json, beam_tree_json, lens_json, ranking_json, step_probs

from .context import Context, LoadedModel, model_call
from .handlers import pick_model, translate
from .inputs import (MAX_BEAM, MAX_LENGTH_PENALTY, BEAM, GREEDY, check_encodable, check_text, checked_choices,
                     checked_slider, guarded, parse_settings, text_box)
from .texts import EXAMPLES

PAIR = ("L'animal n'a pas traversé la rue parce qu'il était trop fatigué.",
        "L'animal n'a pas traversé la rue parce qu'elle était trop large.")
PREFIX_EXAMPLE = "The animal didn't cross the street because it"
MAX_PREFIX_CHARS = 1000
HEAD_RE = re.compile(r"^(encoder|decoder_self|cross):(\d+):(\d+)$")


# --- checking what the page or an API client sends ---------------------------------------------------------
def _source(lm: LoadedModel, text: Any) -> tuple[str, list[int]]:
    text = check_text(text)
    return text, source_ids(lm.ckpt.model, lm.ckpt.tokenizer, text)


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
def _greedy_probs(lm: LoadedModel, src: torch.Tensor, cap: int, mask: Any) -> tuple[list[int], list[dict], str]:
    gen = generate(lm.ckpt.model, src, Greedy(), cap, head_mask=mask, top_k=1, record=True)
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
    cap = default_max_len(m, len(ids))
    key = ("whatif-rank", lm.name, text)
    with model_call(ctx, lm):
        base_ids, base_steps, base_text = _greedy_probs(lm, src, cap, None)
        mask = head_mask(m, off)
        abl_ids, abl_steps, abl_text = _greedy_probs(lm, src, cap, mask)
        eos = m.config.eos_id  # scored as rank_heads scores it: the translation ending with eos
        tgt = torch.tensor([base_ids if base_ids[-1:] == [eos] else base_ids + [eos]], device=src.device)  # (1, T)
        kept = float(sequence_logprobs(m, src, tgt, mask)[0])
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
def _greedy_ids(lm: LoadedModel, src: torch.Tensor, cap: int) -> list[int]:
    """The greedy translation's ids with its final eos (when it ended), as the lenses read them."""
    return [p.token_id for p in generate(lm.ckpt.model, src, Greedy(), cap, top_k=1, record=True).hypotheses[0].path]


@guarded
def alignment(ctx: Context, text: Any, model: Any = None) -> dict:
    """Word alignment of the greedy translation read from cross-attention: word attention of every head
    and layer mean (pieces merged into words: see ``model.alignment``), and each layer mean's links."""
    lm = pick_model(ctx, model)
    text, ids = _source(lm, text)
    m, tok = lm.ckpt.model, lm.ckpt.tokenizer
    src = torch.tensor([ids], device=next(m.parameters()).device)  # (1, S)
    with model_call(ctx, lm):
        out = _greedy_ids(lm, src, default_max_len(m, len(ids)))
        if not [i for i in out if i != m.config.eos_id]:
            raise InputError("the translation is empty (the model ended at once): there are no English words to align")
        attn = cross_attention(m, ids, out)  # (L, H, T, S)
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
        out = _greedy_ids(lm, src, default_max_len(m, len(ids)))
        result = logit_lens(m, ids, out)
    data = lens_json(result, lm.ckpt.tokenizer, out)
    data.update(model=lm.name, translation=lm.ckpt.tokenizer.decode([i for i in out if i != m.config.eos_id]))
    return data


# --- the tab ----------------------------------------------------------------------------------------------
def _host(elem: str, note: str) -> None:
    gr.HTML(f'<div id="{elem}" class="wi-host"><p class="rg-note">{note}</p></div>', padding=False)


def _load(name: str) -> str:
    return f"(d) => {{ if (window.whatif) window.whatif.{name}(d); }}"


def build_tab(ctx: Context) -> tuple[gr.Textbox, gr.Dropdown]:
    """The tab's sub-tabs and events; call inside ``gr.Tab`` in the layout. Returns its sentence box and
    model picker, which the layout fills with the sentence just translated when the tab is opened."""
    model_q = dict(concurrency_id="model", concurrency_limit=ctx.concurrency, show_progress="minimal")
    cfg = ctx.default.ckpt.config

    def bind(fn: Callable[..., Any]) -> Callable[..., Any]:
        bound = partial(fn, ctx)
        bound.__name__ = fn.__name__  # type: ignore[attr-defined]
        return bound

    def show(event: Any, output: Any, loader: str) -> None:
        event.success(None, output, None, js=_load(loader), queue=False)

    with gr.Row():
        text = text_box(value=EXAMPLES[0], label="French", lines=1, max_lines=4, scale=4, elem_id="wi-source")
        model = checked_choices(gr.Dropdown(ctx.names, value=ctx.default.name, label="Model",
                                            interactive=len(ctx.models) > 1, scale=1, elem_id="wi-model"),
                                empty_means_default=True)
    with gr.Tabs(elem_id="wi-tabs"):
        with gr.Tab("Force a prefix", id="wi-force-tab"):
            gr.Markdown("Type the English so far: the model is made to output it (each forced token shows the "
                        "probability the model gave it), then continues on its own. Click a candidate at any step "
                        "to force it instead and re-decode from there.", elem_classes="rg-note")
            with gr.Row():
                prefix = text_box(value=PREFIX_EXAMPLE, label="English prefix (forced)", scale=4, elem_id="wi-prefix")
                force_btn = gr.Button("Force & continue", variant="primary", scale=1, elem_id="wi-force-run")
            forced_out = gr.Textbox(label="English", interactive=False, elem_id="wi-force-translation")
            ids = text_box(visible="hidden", elem_id="wi-branch-ids")
            branch_btn = gr.Button("branch", visible="hidden", elem_id="wi-branch-run")
            force_json = gr.JSON(visible="hidden")
            _host("wi-force", "Force a prefix to see each step here.")
        with gr.Tab("Beam tree", id="wi-beam-tab"):
            with gr.Row():
                beam = checked_slider(2, MAX_BEAM, value=4, step=1, label="Beam size", elem_id="wi-beam-size")
                lp = checked_slider(0.0, MAX_LENGTH_PENALTY, value=1.0, step=0.1, label="Length penalty")
                beam_btn = gr.Button("Search", variant="primary", elem_id="wi-beam-run")
            beam_json = gr.JSON(visible="hidden")
            _host("wi-beam", "Run a beam search to see its tree: click a node for its attention.")
        with gr.Tab("Compare two sentences", id="wi-compare-tab"):
            with gr.Row():
                text_a = text_box(value=PAIR[0], label="Sentence A", elem_id="wi-text-a")
                text_b = text_box(value=PAIR[1], label="Sentence B", elem_id="wi-text-b")
            pair_btn = gr.Button("Translate both", variant="primary", elem_id="wi-compare-run")
            pair_json = gr.JSON(visible="hidden")
            _host("wi-compare", "Translate both to compare their attention with the same controls.")
        with gr.Tab("Switch heads off", id="wi-ablate-tab"):
            gr.Markdown("Pick heads in the grids (or type them as kind:layer:head), then re-translate without "
                        "them. Cell colour: how much the translation's log-probability drops when that head alone "
                        "is off.", elem_classes="rg-note")
            with gr.Row():
                heads = text_box(value="", label="Heads switched off", placeholder="e.g. cross:4:1 cross:4:2",
                                   scale=4, elem_id="wi-heads")
                ablate_btn = gr.Button("Re-translate without them", variant="primary", scale=1, elem_id="wi-ablate-run")
            ablate_json = gr.JSON(visible="hidden")
            _host("wi-ablate", "Re-translate (with no head picked) to rank every head.")
        with gr.Tab("Alignment lens", id="wi-align-tab"):
            align_btn = gr.Button("Align words", variant="primary", elem_id="wi-align-run")
            align_json = gr.JSON(visible="hidden")
            _host("wi-align", "Align the French and English words through cross-attention.")
        with gr.Tab("Logit lens", id="wi-lens-tab"):
            lens_btn = gr.Button("Read every layer", variant="primary", elem_id="wi-lens-run")
            lens_json_box = gr.JSON(visible="hidden")
            _host("wi-lens", f"What each of the {cfg.n_decoder_layers} decoder layers would predict at every step.")

    api = dict(trigger_mode="once", **model_q)
    show(force_btn.click(bind(force_prefix), [text, prefix, model], [forced_out, force_json],
                         api_name="whatif_force", **api), force_json, "loadForce")
    show(prefix.submit(bind(force_prefix), [text, prefix, model], [forced_out, force_json],
                       api_visibility="private", **api), force_json, "loadForce")
    # the page puts the ids of a top-k click into the hidden box through the js step, then the server forces them
    show(branch_btn.click(bind(branch), [text, ids, model], [prefix, forced_out, force_json], api_name="whatif_branch",
                          js="(t, i, m) => [t, window.whatif ? window.whatif.branchIds() : i, m]", **api),
         force_json, "loadForce")
    show(beam_btn.click(bind(beam_tree), [text, beam, lp, model], beam_json, api_name="whatif_beam", **api),
         beam_json, "loadBeam")
    show(pair_btn.click(bind(compare_sentences), [text_a, text_b, model], pair_json, api_name="whatif_compare", **api),
         pair_json, "loadCompare")
    show(ablate_btn.click(bind(ablate), [text, heads, model], ablate_json, api_name="whatif_ablate", **api),
         ablate_json, "loadAblate")
    show(align_btn.click(bind(alignment), [text, model], align_json, api_name="whatif_align", **api),
         align_json, "loadAlign")
    show(lens_btn.click(bind(lens), [text, model], lens_json_box, api_name="whatif_lens", **api),
         lens_json_box, "loadLens")
    return text, model
