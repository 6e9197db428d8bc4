"""The page: inputs on the left, the browser-drawn explorer on the right, and tabs for the models.

Every event that runs a model goes through Gradio's bounded queue and then the one gate of model calls
(``ctx.in_flight``, ``ctx.concurrency`` at once); translate requests have their own, wider queue slot
family so that those waiting together can be decoded as one micro-batch (``ui.batcher``). The trace it
returns goes into a hidden JSON component and a browser-only ``.success(js=…)`` hands it to
``regard.js``, which draws everything else without calling the server again.
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import gradio as gr

from model.limits import MAX_REQUEST_CHARS, MAX_SOURCE_CHARS
from model.positional import sinusoidal_encoding
from viz.curves import has_curves, training_curves
from viz.positional import default_dims, encoding_curves, encoding_heatmap, similarity_heatmap

from . import arithmetic, explain, handlers, whatif_layout
from .context import Context
from .inputs import (BEAM, FP32, GREEDY, MAX_BEAM, MAX_LENGTH_PENALTY, WEIGHT_CHOICES, checked_choices,
                     checked_slider, refuse, text_box)
from .server import MAX_QUEUE, LeanSessions, launch_options, polite_queue
from .texts import EXAMPLES, header_html, model_card, model_tables_html

STATIC = Path(__file__).resolve().parent / "static"
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="amber", neutral_hue="slate",
                       font=["Inter", "ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif"],
                       font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"])
LOAD_JS = "(t) => { if (window.regard) window.regard.load(t); }"


def page_assets() -> dict[str, str]:
    """Theme, stylesheet and the explorer script, as ``launch`` takes them (inline: no extra route to serve)."""
    scripts = ("trace.js", "regard.js", "whatif.js", "cell.js", "attribution.js", "layernorm.js")
    script = "\n".join((STATIC / f).read_text(encoding="utf-8") for f in scripts)
    css = "\n".join((STATIC / f).read_text(encoding="utf-8") for f in ("regard.css", "whatif.css"))
    return dict(css=css, head=f"<script>{script}</script>")


class RegardBlocks(LeanSessions, gr.Blocks):
    """``gr.Blocks`` that launches with the app's assets and hardened server options, and checks arity.

    Gradio ignores extra values in an API call; here any count other than the event's inputs is
    refused with text, so a malformed client learns what it sent wrong. Inputs added to an endpoint
    later (``optional``: component id -> default) may be left off the end by older clients.
    """

    optional: dict[int, Any]

    def launch(self, *args: Any, **kwargs: Any):
        for key, value in {"theme": THEME, **page_assets(), **launch_options()}.items():
            kwargs.setdefault(key, value)
        return super().launch(*args, **kwargs)

    def validate_inputs(self, block_fn: Any, inputs: list[Any]) -> None:
        missing = block_fn.inputs[len(inputs):]
        optional = getattr(self, "optional", {})
        if missing and all(b._id in optional for b in missing):
            inputs.extend(optional[b._id] for b in missing)  # the list Gradio goes on to preprocess
        if len(inputs) != len(block_fn.inputs):
            raise refuse(f"this call takes {len(block_fn.inputs)} values, got {len(inputs)}")


def build_demo(ctx: Context, analytics: bool = False, max_queue: int = MAX_QUEUE) -> gr.Blocks:
    """Lay the page out around the loaded models (``ctx``) and wire the events.

    Gradio's usage telemetry is off unless ``analytics`` (``app.py --analytics``) turns it on: a
    visitor's translation should not tell a third party that it happened. ``max_queue`` requests may
    wait for the model; the next one is told the server is busy.
    """
    lm = ctx.default
    cfg = lm.ckpt.config
    model_q = dict(concurrency_id="model", concurrency_limit=ctx.concurrency, show_progress="minimal")
    # translate requests wait inside the handler for the model gate, so enough of them must be let in
    # at once to fill micro-batches; the gate still runs at most ctx.concurrency model calls
    translate_q = {**model_q, "concurrency_id": "translate", "concurrency_limit": ctx.concurrency * ctx.max_batch}
    with RegardBlocks(title="Regard · French → English, step by step", analytics_enabled=analytics) as demo:
        header = gr.HTML(header_html(lm), elem_id="rg-header-box")
        trace = gr.JSON(visible="hidden", elem_id="rg-trace")
        with gr.Tabs(elem_id="rg-tabs"):
            with gr.Tab("Translate & explore", id="explore"):
                with gr.Row(equal_height=False, elem_id="rg-main"):
                    with gr.Column(scale=2, min_width=300, elem_id="rg-col-input"):
                        model = checked_choices(gr.Dropdown(ctx.names, value=lm.name, label="Model",
                                                            elem_id="rg-model", interactive=len(ctx.models) > 1),
                                                empty_means_default=True)
                        text = text_box(value=EXAMPLES[0], label="French", lines=3, max_lines=8, elem_id="rg-source",
                                          placeholder="Tapez une phrase en français…", max_length=MAX_REQUEST_CHARS,
                                          info="Enter translates, Shift+Enter starts a new line. Longer than "
                                               f"{MAX_SOURCE_CHARS} characters: translated sentence by sentence.")
                        translate_btn = gr.Button("Translate", variant="primary", elem_id="rg-translate")
                        translation = gr.Textbox(label="English", lines=2, max_lines=4, interactive=False,
                                                 elem_id="rg-translation",
                                                 buttons=["copy"])
                    # the explorer sits between the two halves of the inputs: on a wide screen regard.css puts it
                    # to their right; on a phone (one column) it follows the translation, the examples and
                    # settings come after it
                    with gr.Column(scale=3, min_width=340, elem_id="rg-col-explorer"):
                        gr.HTML('<div id="rg-explorer"><p class="rg-note">Loading the explorer…</p></div>',
                                elem_id="rg-explorer-box", padding=False)
                    with gr.Column(scale=2, min_width=300, elem_id="rg-col-more"):
                        examples = gr.Dataset(components=[gr.Textbox(visible=False)], samples=[[e] for e in EXAMPLES],
                                              type="index", label="Examples (click one to translate it)",
                                              elem_id="rg-examples", samples_per_page=8)
                        weights = checked_choices(gr.Radio(
                                           WEIGHT_CHOICES, value=FP32, label="Weights", elem_id="rg-weights",
                                           info=handlers.weights_note(ctx)))
                        with gr.Accordion("Decoding settings", open=False, elem_id="rg-settings"):
                            with gr.Row():
                                decoding = checked_choices(gr.Radio([GREEDY, BEAM], value=GREEDY, label="Decoding",
                                                                    scale=2, elem_id="rg-decoding"))
                                use_cache = gr.Checkbox(value=True, label="KV cache", scale=1, elem_id="rg-cache",
                                                        info="Off: recompute the prefix every step.")
                            # shown by regard.css only while "Beam search" is chosen (a browser-only event below)
                            with gr.Row(elem_id="rg-beam-row"):
                                beam_size = checked_slider(1, MAX_BEAM, value=4, step=1, label="Beam size",
                                                           elem_id="rg-beam")
                                length_penalty = checked_slider(0.0, MAX_LENGTH_PENALTY, value=1.0, step=0.1,
                                                               label="Length penalty", elem_id="rg-lp")
                            max_len = checked_slider(0, cfg.max_positions - 1, value=0, step=1, label="Max output tokens",
                                                    info="0 = automatic: 1.5 × source tokens + 10", elem_id="rg-max-len")
                        cache_btn = gr.Button("cache run", visible="hidden", elem_id="rg-cache-run")
                        weights_btn = gr.Button("weights run", visible="hidden", elem_id="rg-weights-run")
                        cache_runs = gr.JSON(visible="hidden")
            with gr.Tab("Compare models", id="compare"):
                gr.Markdown(f"The sentence and settings of the first tab, through each of the {len(ctx.models)} "
                            "loaded models; the training curves of all of them on one chart.", elem_classes="rg-note")
                compare_btn = gr.Button("Translate with every model", variant="primary", elem_id="rg-compare-run")
                gr.HTML('<div id="rg-compare"></div>', elem_id="rg-compare-box")
                compare_json = gr.JSON(visible="hidden")
                records = {m.name: m.ckpt.training for m in ctx.models}
                if has_curves(list(records.values())):
                    gr.Plot(training_curves(records, "Dev BLEU (and loss) over training time, every model"),
                            show_label=False, elem_id="rg-curves-compare")
            with gr.Tab("What if", id="whatif") as whatif_tab:
                wi_text, wi_model = whatif_layout.build_tab(ctx)
            with gr.Tab("Positional encodings", id="positional"):
                positional_tab(ctx)
            with gr.Tab("Model", id="model"):
                gr.HTML(model_tables_html(ctx.models), elem_id="rg-model-facts")
                if has_curves(list(records.values())):
                    gr.Plot(training_curves(records), show_label=False, elem_id="rg-curves")
                arithmetic.build(ctx, model_q)
                for m in ctx.models:
                    with gr.Accordion(f"Model card · {m.name}", open=len(ctx.models) == 1):
                        gr.Markdown(model_card(m))
                with gr.Accordion("Config and full training record (JSON)", open=False):
                    gr.JSON({m.name: {"config": m.ckpt.config.to_dict(), "training": m.ckpt.training}
                             for m in ctx.models}, max_height=500)
        url = text_box(visible=False)
        startup = gr.JSON(visible="hidden")
        explain_events(ctx, model_q)

        # --- events ---------------------------------------------------------------------------------------
        controls = [decoding, beam_size, length_penalty, max_len, use_cache]
        show = dict(fn=None, inputs=trace, outputs=None, js=LOAD_JS, queue=False)
        translate = partial(handlers.translate, ctx)
        translate.__name__ = "translate"  # type: ignore[attr-defined]
        # a failed translation clears the English and greys the figures, which still show the previous one
        failed = dict(fn=None, inputs=None, outputs=translation, queue=False,
                      js="() => (window.regard ? window.regard.failed() : '')")
        # Enter in the French box clicks Translate (regard.js), so the button is the one way in
        run = translate_btn.click(translate, [text, *controls, model, weights], [translation, trace], trigger_mode="once",
                                  api_name="translate", **translate_q)
        run.success(**show)
        run.failure(**failed)
        demo.optional = {weights._id: FP32}  # older API clients send no weights: they get fp32, as before
        run_example = examples.click(partial(handlers.translate_example, ctx), [examples, *controls, model, weights],
                                     [text, translation, trace], api_visibility="private", **model_q)
        run_example.success(**show)
        run_example.failure(**failed)
        # Start-up: the address's controls and translation arrive as one hidden value; regard.startUp writes
        # them only into what the visitor has not touched meanwhile (typing, picking, Translate all win).
        inputs = [text, *controls, model, weights]
        initial = [c.value for c in inputs]
        boot = demo.load(partial(handlers.start_up, ctx, initial), url, startup,
                         js="() => (window.regard ? window.regard.urlQuery() : '')", api_visibility="private",
                         **model_q)
        boot.success(None, [startup, *inputs, translation], [*inputs, translation], queue=False,
                     js="(s, ...now) => window.regard.startUp(s, now)")
        boot.failure(None, None, None, queue=False, js="() => { if (window.regard) window.regard.startFailed(); }")
        # queue=False events would be posted to /gradio_api/run/predict, which ui/server.py closes: the beam
        # sliders are toggled in the browser alone, the header comes through the queue
        decoding.change(None, decoding, None, queue=False,
                        js=f"(d) => {{ document.documentElement.toggleAttribute('data-rg-beam', d === {BEAM!r}); }}")
        # opening What if brings the sentence just translated and its model, unless they were changed there
        whatif_tab.select(None, [trace, wi_text, wi_model], [wi_text, wi_model], queue=False,
                          js=f"(t, s, m) => window.regard.whatIfInputs(t, s, m, {json.dumps([wi_text.value, wi_model.value])})")
        model.change(partial(handlers.header_for, ctx), model, header, api_visibility="private",
                     concurrency_id="header", concurrency_limit=4, show_progress="hidden")
        compare_btn.click(partial(handlers.compare_models, ctx), [text, *controls, weights], compare_json,
                          api_visibility="private", **model_q).success(
            None, compare_json, None, js="(l) => { if (window.regard) window.regard.loadCompare(l); }", queue=False)
        load_runs = dict(fn=None, inputs=cache_runs, outputs=None, queue=False,
                         js="(r) => { if (window.regard) window.regard.loadRuns(r); }")
        cache_btn.click(partial(handlers.compare_cache, ctx), [text, max_len, model, weights], cache_runs,
                        api_visibility="private", **model_q).success(**load_runs)
        weights_btn.click(partial(handlers.compare_weights, ctx), [text, max_len, model], cache_runs,
                          api_visibility="private", **model_q).success(**load_runs)
    demo.queue(default_concurrency_limit=ctx.concurrency, max_size=max_queue)
    # on the queue just made, which launch keeps: in place before the server takes its first request
    polite_queue(demo)
    return demo


def explain_events(ctx: Context, model_q: dict) -> None:
    """The hidden endpoints behind the explanation views (``ui.explain``): ``regard.explain(what)`` queues the
    request's values, clicks ``#rg-x-<what>``, and this event's ``js`` hands them to the server; the answer goes
    back to ``regard.loadExplain``. API clients call the same endpoints by name."""
    for what, (fn, extra) in explain.ENDPOINTS.items():
        boxes = [text_box(visible=False) for _ in range(3 + len(extra))]  # text, generated ids, *extra, model
        button = gr.Button(what, visible="hidden", elem_id=f"rg-x-{what}")
        out = gr.JSON(visible="hidden")
        handler = partial(fn, ctx)
        handler.__name__ = what  # type: ignore[attr-defined]
        event = button.click(handler, boxes, out, api_name=what, trigger_mode="multiple",
                             js=f"(...now) => window.regard.explainArgs({what!r}, now)", **model_q)
        event.success(None, out, None, queue=False, js=f"(d) => {{ if (window.regard) window.regard.loadExplain({what!r}, d); }}")
        event.failure(None, None, None, queue=False, js=f"() => {{ if (window.regard) window.regard.explainFailed({what!r}); }}")


def positional_tab(ctx: Context) -> None:
    """The sinusoidal encodings of the default model (static figures; the slider redraws them in this tab)."""
    cfg = ctx.default.ckpt.config
    pe_full = sinusoidal_encoding(cfg.max_positions, cfg.d_model).numpy()  # (P, D)

    def figures(positions: Any, dims: Sequence[Any] | None):
        try:
            n = max(2, min(int(positions), cfg.max_positions))
            chosen = [int(d) for d in (dims or []) if 0 <= int(d) < cfg.d_model][:8] or default_dims(cfg.d_model)
        except (TypeError, ValueError):
            raise refuse("positions and dimensions must be whole numbers") from None
        pe = pe_full[:n]
        return encoding_heatmap(pe), encoding_curves(pe, chosen), similarity_heatmap(pe)

    start = min(cfg.max_positions, 100)
    with gr.Row():
        pe_len = checked_slider(8, cfg.max_positions, value=start, step=1, label="Positions shown")
        pe_dims = gr.Dropdown(list(range(cfg.d_model)), value=default_dims(cfg.d_model), multiselect=True,
                              max_choices=8, label="Dimensions drawn as curves")
    heat, curves, sim = figures(start, None)
    with gr.Row(equal_height=False):
        heat_plot = gr.Plot(heat, show_label=False, elem_id="rg-pe-matrix")
        sim_plot = gr.Plot(sim, show_label=False, elem_id="rg-pe-similarity")
    curves_plot = gr.Plot(curves, show_label=False, elem_id="rg-pe-curves")
    for control in (pe_len, pe_dims):
        control.change(figures, [pe_len, pe_dims], [heat_plot, curves_plot, sim_plot], api_visibility="private",
                       concurrency_id="view", concurrency_limit=1, trigger_mode="always_last", show_progress="hidden")
