"""The "What if" tab's layout: its sub-tabs, boxes and events, bound to the handlers in ``ui.whatif`` (as
``ui.layout`` binds ``ui.handlers``). Results go to hidden JSON boxes that ``static/whatif.js`` draws."""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

import gradio as gr

from .context import Context
from .inputs import MAX_BEAM, MAX_LENGTH_PENALTY, checked_choices, checked_slider, text_box
from .texts import EXAMPLES
from .whatif import PAIR, PREFIX_EXAMPLE, ablate, alignment, beam_tree, branch, compare_sentences, force_prefix, lens


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
