"""Regard in the browser: translate French to English and watch the Transformer decode, token by token.

    python app.py                                         # checkpoints/regard-fr-en.safetensors
    python app.py --checkpoint runs/base/best.safetensors --port 7861
    GRADIO_SERVER_NAME=0.0.0.0 python app.py              # listen on all interfaces (e.g. a Space)

One model is loaded at start and shared read-only by every visitor; each visitor's translation (the
full ``Trace``: step records, attention maps, timings) lives in their own ``gr.State``, so moving
through the steps re-slices that record and never re-runs the model.
"""
from __future__ import annotations

import argparse
import html
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import gradio as gr
import torch

from model.checkpoint import DEFAULT_CHECKPOINT, Checkpoint, CheckpointError, load_checkpoint
from model.decoding import MAX_SOURCE_CHARS, InputError, Trace, trace_translation
from model.device import pick_device
from model.memory import gpu_memory_bytes, human_bytes, parameter_count, process_rss_bytes, weight_bytes
from model.memory import weight_bytes_by_dtype
from model.positional import sinusoidal_encoding
from viz import trace as views
from viz.chips import stats_html
from viz.latency import LatencyRun
from viz.memory import weights_chart
from viz.positional import default_dims, encoding_curves, encoding_heatmap, similarity_heatmap

EXAMPLES = [
    "L'animal n'a pas traversé la rue parce qu'il était trop fatigué.",
    "Je mange une pomme.",
    "Il fait très beau aujourd'hui.",
    "Où est la gare, s'il vous plaît ?",
    "Nous allons à la plage demain matin.",
    "Elle lit un livre dans le jardin.",
    "Je ne sais pas ce que tu veux dire.",
    "Peux-tu m'aider à porter ces valises ?",
]
GREEDY, BEAM = "Greedy", "Beam search"
MAX_BEAM = 8
MAX_LENGTH_PENALTY = 2.0
MEAN, GRID = "mean over heads", "all heads (grid)"
ATTENTION_KINDS = {"Encoder self-attention": "encoder", "Decoder self-attention": "decoder", "Cross-attention": "cross"}
PLAY_SECONDS = 0.8
DTYPE_NAMES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}  # torch name -> weights_chart bar

# System fonts: nothing to fetch, so the page looks the same offline and behind firewalls.
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="amber", neutral_hue="slate",
                       font=["Inter", "ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif"],
                       font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"])
CSS = """
.gradio-container { max-width: 1280px !important; margin: 0 auto !important; }
#rg-header { padding: 10px 2px 2px; }
#rg-header h1 { font-size: 1.7rem; font-weight: 700; margin: 0; letter-spacing: -0.01em; }
#rg-header h1 .rg-accent { color: var(--color-accent); }
#rg-header p { margin: 4px 0 8px; color: var(--body-text-color-subdued); }
.rg-badges { display: flex; flex-wrap: wrap; gap: 6px; }
.rg-badge { font-size: 0.78rem; padding: 2px 9px; border-radius: 999px; background: var(--background-fill-secondary);
  border: 1px solid var(--border-color-primary); color: var(--body-text-color-subdued); }
#rg-translation textarea { font-size: 1.15rem !important; font-weight: 500; }
.rg-pieces { margin: 4px 0 10px; }
.rg-pieces-label { font-size: 0.75rem; text-transform: uppercase; letter-spacing: 0.05em;
  color: var(--body-text-color-subdued); margin-bottom: 4px; }
.rg-count { font-weight: 600; margin-left: 4px; }
.rg-chips { display: flex; flex-wrap: wrap; gap: 4px; }
.rg-chip { font-family: var(--font-mono); font-size: 0.85rem; padding: 2px 7px; border-radius: 6px;
  background: #eef2ff; color: #312e81; border: 1px solid #c7d2fe; white-space: pre; }
.rg-chip.rg-special { background: #f1f5f9; color: #64748b; border-color: #e2e8f0; }
.rg-chip.rg-current { background: #f59e0b; color: #1f2937; border-color: #d97706; font-weight: 700; }
.rg-chip.rg-later { opacity: 0.35; }
.rg-ws { opacity: 0.45; }
.rg-stats { display: flex; flex-wrap: wrap; gap: 8px; margin: 2px 0 10px; }
.rg-stat { flex: 1 1 120px; padding: 8px 12px; border-radius: 10px; background: var(--background-fill-secondary);
  border: 1px solid var(--border-color-primary); }
.rg-stat-label { font-size: 0.7rem; text-transform: uppercase; letter-spacing: 0.05em;
  color: var(--body-text-color-subdued); }
.rg-stat-value { font-size: 1.05rem; font-weight: 600; font-variant-numeric: tabular-nums; white-space: pre-wrap; }
#rg-stepbar { align-items: center; gap: 10px; padding: 6px 10px; margin-top: 6px; border-radius: var(--block-radius);
  border: 1px solid var(--border-color-primary); background: var(--block-background-fill); }
#rg-stepbar > button { align-self: center; }
#rg-stepbar .block { border: none !important; box-shadow: none !important; }
.rg-facts h3 { font-size: 0.8rem; text-transform: uppercase; letter-spacing: 0.05em; margin: 6px 0 6px;
  color: var(--body-text-color-subdued); }
.rg-facts table { width: 100%; border-collapse: collapse; margin-bottom: 14px; font-size: 0.9rem;
  border: none !important; }
.rg-facts tr { border: none !important; }
.rg-facts th, .rg-facts td { text-align: left; padding: 5px 8px; vertical-align: top; background: none !important;
  border: none !important; border-bottom: 1px solid var(--border-color-primary) !important; }
.rg-facts th { font-weight: 500; color: var(--body-text-color-subdued); width: 38%; }
.rg-facts td { font-variant-numeric: tabular-nums; word-break: break-word; }
.rg-note { font-size: 0.85rem; color: var(--body-text-color-subdued); }
"""


class RegardBlocks(gr.Blocks):
    """``gr.Blocks`` whose ``launch`` brings the app's theme and stylesheet (Gradio 6 takes them there)."""

    def launch(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("theme", THEME)
        kwargs.setdefault("css", CSS)
        return super().launch(*args, **kwargs)


@dataclass
class Session:
    """One visitor's current translation, kept in ``gr.State``."""

    trace: Trace
    max_len: int | None = None  # the cap asked for (None: automatic), reused by the cache comparison
    earlier: list[LatencyRun] = field(default_factory=list)  # other runs of the same sentence, overlaid


# --- settings and the model call (no UI) ---------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    beam_size: int
    length_penalty: float
    max_len: int | None
    use_cache: bool


def parse_settings(decoding: str, beam_size: Any, length_penalty: Any, max_len: Any, use_cache: Any,
                   max_positions: int) -> Settings:
    """Check the controls' values on the server (the API can send anything); InputError says what is wrong."""
    if decoding not in (GREEDY, BEAM):
        raise InputError(f"decoding must be {GREEDY!r} or {BEAM!r}, got {decoding!r}")
    try:
        beam = int(beam_size) if decoding == BEAM else 1
        penalty = float(length_penalty)
        cap = int(max_len) if max_len not in (None, "") else 0
    except (TypeError, ValueError):
        raise InputError("beam size, length penalty and maximum length must be numbers") from None
    if not 1 <= beam <= MAX_BEAM:
        raise InputError(f"beam size must be between 1 and {MAX_BEAM}, got {beam}")
    if not 0.0 <= penalty <= MAX_LENGTH_PENALTY:
        raise InputError(f"length penalty must be between 0 and {MAX_LENGTH_PENALTY}, got {penalty}")
    if not 0 <= cap < max_positions:
        raise InputError(f"maximum length must be between 1 and {max_positions - 1} tokens (0 = automatic), got {cap}")
    if beam > 1 and not use_cache:
        raise InputError("beam search runs with the KV cache: turn the cache on, or use greedy decoding")
    return Settings(beam, penalty, cap or None, bool(use_cache))


def run_trace(ckpt: Checkpoint, text: str, settings: Settings) -> Trace:
    with torch.inference_mode():
        return trace_translation(ckpt.model, ckpt.tokenizer, text, beam_size=settings.beam_size,
                                 length_penalty=settings.length_penalty, max_len=settings.max_len,
                                 use_cache=settings.use_cache)


def steps_record(trace: Trace) -> dict[str, Any]:
    """The translation's step records as plain JSON (the /translate API returns this)."""
    return {
        "translation": trace.translation,
        "source_pieces": trace.source_pieces,
        "beam_size": trace.beam_size,
        "use_cache": trace.use_cache,
        "device": trace.device,
        "dtype": trace.dtype,
        "encode_ms": round(trace.encode_ms, 3),
        "total_ms": round(trace.total_ms, 3),
        "steps": [
            {"step": s.step + 1, "piece": s.piece, "token_id": s.token_id, "prob": round(s.prob, 6),
             "latency_ms": round(s.latency_ms, 3), "kv_self_bytes": s.kv_self_bytes, "kv_cross_bytes": s.kv_cross_bytes,
             "top_k": [{"piece": c.piece, "prob": round(c.prob, 6)} for c in s.top_k]}
            for s in trace.steps
        ],
    }


def parse_head(choice: str | None, n_heads: int) -> views.Head:
    if choice in (None, MEAN):
        return None
    if choice == GRID:
        return "all"
    head = int(str(choice).removeprefix("head ")) - 1
    if not 0 <= head < n_heads:
        raise ValueError(f"no head {choice!r}")
    return head


def parse_layer(choice: Any, n_layers: int) -> int:
    return max(0, min(int(choice) - 1, n_layers - 1))


# --- static text about the model --------------------------------------------------------------------------
def facts_table(title: str, rows: Sequence[tuple[str, Any]]) -> str:
    """A titled two-column HTML table, every cell escaped."""
    def text(v: Any) -> str:
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)

    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(text(v))}</td></tr>" for k, v in rows)
    return f'<div class="rg-facts"><h3>{html.escape(title)}</h3><table>{body}</table></div>'


def header_html(ckpt: Checkpoint) -> str:
    cfg, param = ckpt.config, next(ckpt.model.parameters())
    badges = [
        f"{parameter_count(ckpt.model) / 1e6:.1f} M parameters",
        f"{cfg.n_encoder_layers} + {cfg.n_decoder_layers} layers",
        f"{cfg.n_heads} heads",
        f"d_model {cfg.d_model}",
        f"{ckpt.tokenizer.vocab_size:,} pieces",
        f"{param.device}",
        str(param.dtype).replace("torch.", ""),
    ]
    spans = "".join(f'<span class="rg-badge">{html.escape(b)}</span>' for b in badges)
    return (
        '<div id="rg-header"><h1>Regard <span class="rg-accent">·</span> French → English</h1>'
        "<p>Our own Transformer, translated one token at a time: see what it attends to, how sure it is, "
        f"and what each step costs.</p><div class=\"rg-badges\">{spans}</div></div>"
    )


def model_facts_html(ckpt: Checkpoint) -> str:
    """Architecture, training record highlights and scores of the loaded checkpoint."""
    cfg, training = ckpt.config, ckpt.training
    n = parameter_count(ckpt.model)
    parts = [facts_table("Architecture", [
        ("checkpoint", ckpt.path),
        ("parameters", f"{n:,} ({human_bytes(n * 4)} as float32)"),
        ("encoder / decoder layers", f"{cfg.n_encoder_layers} / {cfg.n_decoder_layers}"),
        ("d_model / heads / d_ff", f"{cfg.d_model} / {cfg.n_heads} / {cfg.d_ff}"),
        ("normalisation / activation", f"{cfg.norm}-LN / {cfg.activation}"),
        ("vocabulary", f"{ckpt.tokenizer.vocab_size:,} SentencePiece pieces (joint)"),
        ("tied embeddings", cfg.tie_embeddings),
        ("max positions", cfg.max_positions),
        ("dropout", f"{cfg.dropout} (attention {cfg.attention_dropout})"),
    ])]
    facts = [(k.replace("_", " "), training[k]) for k in (
        "steps", "epochs", "target_tokens_seen", "wall_time_min", "target_tokens_per_s", "hardware", "torch", "date",
        "command", "note") if k in training]
    for key in ("best_dev", "final_dev"):
        result = training.get(key)
        if isinstance(result, dict) and "bleu" in result:
            extra = f", chrF {result['chrf']:.2f}" if isinstance(result.get("chrf"), (int, float)) else ""
            name, step = key.replace("_", " ") + " BLEU", result.get("step", "?")
            facts.append((name, f"{result['bleu']:.2f}{extra} (step {step})"))
    parts.append(facts_table("Training", facts) if facts else "<p>No training record in this checkpoint.</p>")
    scores = training.get("scores")
    if isinstance(scores, dict) and scores:
        parts.append(facts_table("Scores", [(k, json.dumps(v) if isinstance(v, (dict, list)) else v)
                                            for k, v in scores.items()]))
    elif scores:
        parts.append(facts_table("Scores", [("scores", scores)]))
    return "".join(parts)


def model_card(ckpt: Checkpoint) -> str:
    """The MODEL_CARD.md next to the checkpoint, if there is one."""
    card = ckpt.path.with_name("MODEL_CARD.md") if ckpt.path else None
    if card and card.is_file():
        return card.read_text(encoding="utf-8")
    return f"*No model card: `MODEL_CARD.md` is not next to `{ckpt.path.name if ckpt.path else 'the checkpoint'}`.*"


def run_stats_html(ckpt: Checkpoint, session: Session) -> str:
    """Timings of the current run and memory right now, as cards."""
    trace, cfg = session.trace, ckpt.config
    n = len(trace.steps)
    decode_ms = sum(s.latency_ms for s in trace.steps)
    f_self, f_cross = views.kv_formula(trace, cfg)
    last = trace.steps[-1]
    measured = (f"{human_bytes(last.kv_self_bytes + last.kv_cross_bytes)}" if trace.use_cache
                else "off (nothing cached)")
    stats = [
        ("device · dtype", f"{trace.device} · {trace.dtype}"),
        ("decoding", views.run_label(trace)),
        ("encoder", f"{trace.encode_ms:.1f} ms"),
        ("decoder", f"{decode_ms:.1f} ms · {n} steps"),
        ("per token", f"{decode_ms / max(n, 1):.2f} ms"),
        ("total", f"{trace.total_ms:.1f} ms"),
    ]
    memory = [
        ("weights", f"{human_bytes(weight_bytes(ckpt.model))} ({parameter_count(ckpt.model):,} params)"),
        ("KV cache, last step", measured),
        ("KV formula, last step", human_bytes(f_self[-1] + f_cross[-1])),
        ("process RSS", human_bytes(process_rss_bytes())),
    ]
    gpu = gpu_memory_bytes(trace.device)
    if gpu is not None:
        memory.append(("GPU allocated / reserved", f"{human_bytes(gpu['allocated'])} / {human_bytes(gpu['reserved'])}"))
    return stats_html(stats) + stats_html(memory)


# --- the app ------------------------------------------------------------------------------------------
def build_demo(checkpoint_path: str | Path = DEFAULT_CHECKPOINT, device: str | None = None) -> gr.Blocks:
    """Load the checkpoint once and lay out the app around it. Raises CheckpointError if it cannot be read."""
    ckpt = load_checkpoint(checkpoint_path, device=pick_device(device))
    cfg = ckpt.config
    pe_full = sinusoidal_encoding(cfg.max_positions, cfg.d_model).numpy()  # (P, D)
    head_choices = [MEAN, GRID] + [f"head {h + 1}" for h in range(cfg.n_heads)]
    step_head_choices = [MEAN] + [f"head {h + 1}" for h in range(cfg.n_heads)]
    dec_layers = [str(i + 1) for i in range(cfg.n_decoder_layers)]
    enc_layers = [str(i + 1) for i in range(cfg.n_encoder_layers)]
    dim_choices = list(range(cfg.d_model))
    pe_positions = min(cfg.max_positions, 100)

    # A translation made at start, so the page opens with every view filled in.
    first = Session(run_trace(ckpt, EXAMPLES[0], Settings(1, 1.0, None, True)))

    def pe_figures(positions: Any, dims: Any):
        n = max(2, min(int(positions), cfg.max_positions))
        dims = [int(d) for d in (dims or [])][:8] or default_dims(cfg.d_model)
        pe = pe_full[:n]
        return encoding_heatmap(pe), encoding_curves(pe, dims), similarity_heatmap(pe)

    def attention_view(session: Session, step: int, kind_label: str, layer: Any, head: Any):
        kind = ATTENTION_KINDS.get(kind_label, "cross")
        n_layers = cfg.n_encoder_layers if kind == "encoder" else cfg.n_decoder_layers
        return views.attention_figure(session.trace, kind, step, parse_layer(layer, n_layers),
                                      parse_head(head, cfg.n_heads))

    def step_pair(session: Session, step: int, layer: Any, head: Any):
        layer_i, head_i = parse_layer(layer, cfg.n_decoder_layers), parse_head(head, cfg.n_heads)
        return (views.cross_attention_figure(session.trace, step, layer_i, head_i),
                views.decoder_attention_figure(session.trace, step, layer_i, head_i))

    with RegardBlocks(title="Regard · French → English, step by step") as demo:
        session = gr.State(first)
        playing = gr.State(False)
        timer = gr.Timer(PLAY_SECONDS, active=False)
        gr.HTML(header_html(ckpt))

        # --- input and translation -----------------------------------------------------------------
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                text = gr.Textbox(value=EXAMPLES[0], label="French", lines=3, max_lines=8, elem_id="rg-source",
                                  placeholder="Tapez une phrase en français…",
                                  info=f"Up to {MAX_SOURCE_CHARS} characters. Shift+Enter translates.")
                gr.Examples(examples=[[e] for e in EXAMPLES], inputs=[text], label="Examples")
            with gr.Column(scale=2):
                decoding = gr.Radio([GREEDY, BEAM], value=GREEDY, label="Decoding")
                with gr.Row():
                    beam_size = gr.Slider(1, MAX_BEAM, value=4, step=1, label="Beam size", visible=False)
                    length_penalty = gr.Slider(0.0, MAX_LENGTH_PENALTY, value=1.0, step=0.1, label="Length penalty",
                                               visible=False)
                max_len = gr.Slider(0, cfg.max_positions - 1, value=0, step=1, label="Max output tokens",
                                    info="0 = automatic: 1.5 × source tokens + 10")
                use_cache = gr.Checkbox(value=True, label="KV cache",
                                        info="Off: every step recomputes the whole prefix (slower, same result).")
                translate_btn = gr.Button("Translate", variant="primary", elem_id="rg-translate")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                translation = gr.Textbox(value=first.trace.translation, label="English", lines=2,
                                         interactive=False, elem_id="rg-translation", buttons=["copy"])
                pieces = gr.HTML(views.translation_html(first.trace), label="Pieces", elem_id="rg-pieces")
            with gr.Column(scale=2):
                with gr.Accordion("Step records (JSON)", open=False):
                    steps_json = gr.JSON(steps_record(first.trace), label="Step records", max_height=360)

        # --- stepping through decoding, shared by every tab -----------------------------------------------------
        with gr.Row(elem_id="rg-stepbar", equal_height=True):
            prev_btn = gr.Button("◀ Previous", size="md", scale=0, min_width=120, elem_id="rg-prev")
            step = gr.Slider(1, max(len(first.trace.steps), 2), value=1, step=1, label="Decoding step",
                             scale=1, min_width=320, elem_id="rg-step")
            next_btn = gr.Button("Next ▶", size="md", scale=0, min_width=120, elem_id="rg-next")
            play_btn = gr.Button("▶ Play", size="md", scale=0, min_width=120, variant="primary", elem_id="rg-play")
        step_info = gr.HTML(views.step_html(first.trace, 0), elem_id="rg-step-info")

        with gr.Tabs():
            with gr.Tab("Step through decoding", id="step"):
                with gr.Row():
                    step_layer = gr.Dropdown(dec_layers, value=dec_layers[-1], label="Decoder layer", scale=1)
                    step_head = gr.Dropdown(step_head_choices, value=MEAN, label="Head", scale=1)
                    gr.Markdown("The orange outline marks the current step. Hover a cell for "
                                "*query → key: weight*; hover a bar for its probability.", elem_classes="rg-note")
                cross0, self0 = step_pair(first, 0, dec_layers[-1], MEAN)
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2):
                        topk_plot = gr.Plot(views.topk_figure(first.trace, 0), show_label=False, elem_id="rg-topk")
                    with gr.Column(scale=3):
                        step_self_plot = gr.Plot(self0, show_label=False, elem_id="rg-step-self")
                step_cross_plot = gr.Plot(cross0, show_label=False, elem_id="rg-step-cross")

            with gr.Tab("Attention", id="attention"):
                with gr.Row():
                    attn_kind = gr.Radio(list(ATTENTION_KINDS), value="Cross-attention", label="Attention", scale=4)
                    attn_layer = gr.Radio(dec_layers, value=dec_layers[-1], label="Layer", scale=2)
                    attn_head = gr.Dropdown(head_choices, value=MEAN, label="Head", scale=2,
                                            elem_id="rg-attention-head")
                gr.Markdown("Decoder views show the steps up to the current one (move it with the step bar above). "
                            f"The encoder has {len(enc_layers)} layers, the decoder {len(dec_layers)}.",
                            elem_classes="rg-note")
                attn_plot = gr.Plot(attention_view(first, 0, "Cross-attention", dec_layers[-1], MEAN),
                                    show_label=False, elem_id="rg-attention")

            with gr.Tab("Positional encodings", id="positional"):
                with gr.Row():
                    pe_len = gr.Slider(8, cfg.max_positions, value=pe_positions, step=1, label="Positions shown")
                    pe_dims = gr.Dropdown(dim_choices, value=default_dims(cfg.d_model), multiselect=True,
                                          max_choices=8, label="Dimensions drawn as curves")
                pe_heat0, pe_curves0, pe_sim0 = pe_figures(pe_positions, default_dims(cfg.d_model))
                with gr.Row(equal_height=False):
                    pe_heat_plot = gr.Plot(pe_heat0, show_label=False, elem_id="rg-pe-matrix")
                    pe_sim_plot = gr.Plot(pe_sim0, show_label=False, elem_id="rg-pe-similarity")
                pe_curves_plot = gr.Plot(pe_curves0, show_label=False, elem_id="rg-pe-curves")
                pe_sentence_plot = gr.Plot(views.sentence_pe_figure(first.trace, pe_full), show_label=False,
                                           elem_id="rg-pe-sentence")

            with gr.Tab("Latency & memory", id="cost"):
                run_stats = gr.HTML(run_stats_html(ckpt, first), elem_id="rg-run-stats")
                with gr.Row():
                    compare_btn = gr.Button("Compare KV cache on vs off (greedy, same sentence)", size="sm",
                                            elem_id="rg-compare")
                latency_plot = gr.Plot(views.latency_figure(first.trace, [], 0), show_label=False,
                                       elem_id="rg-latency")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        kv_plot = gr.Plot(views.kv_figure(first.trace, cfg, 0), show_label=False, elem_id="rg-kv")
                    with gr.Column(scale=2):
                        gr.Plot(weights_chart(weight_bytes_by_dtype(ckpt.model), DTYPE_NAMES.get(first.trace.dtype)),
                                show_label=False, elem_id="rg-weights")

            with gr.Tab("Model", id="model"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2):
                        gr.HTML(model_facts_html(ckpt), elem_id="rg-model-facts")
                    with gr.Column(scale=3):
                        gr.Markdown(model_card(ckpt), elem_id="rg-model-card")
                with gr.Accordion("Config and full training record (JSON)", open=False):
                    gr.JSON({"config": cfg.to_dict(), "training": ckpt.training}, max_height=500)

        # --- event handlers ---------------------------------------------------------------------------------
        step_views = [step, step_info, topk_plot, step_cross_plot, step_self_plot, attn_plot, latency_plot, kv_plot]
        view_inputs = [session, step_layer, step_head, attn_kind, attn_layer, attn_head]

        def render_step(sess: Session, index: int, s_layer, s_head, kind, a_layer, a_head, encoder_too: bool):
            """Every view that depends on the step; the encoder map does not, so it is only sent when asked."""
            trace = sess.trace
            i = views.clamp_step(trace, index)
            cross, self_ = step_pair(sess, i, s_layer, s_head)
            attention = (attention_view(sess, i, kind, a_layer, a_head)
                         if encoder_too or ATTENTION_KINDS.get(kind) != "encoder" else gr.skip())
            return [gr.Slider(value=i + 1), views.step_html(trace, i), views.topk_figure(trace, i), cross, self_,
                    attention, views.latency_figure(trace, sess.earlier, i), views.kv_figure(trace, cfg, i)]

        # The parameter names are the /translate API's (they shadow the components of the same name here).
        def translate(text: str, decoding: str, beam_size: float, length_penalty: float, max_len: float,
                      use_cache: bool, sess: Session):
            """Translate one French sentence; returns the English text and every step's record."""
            try:
                settings = parse_settings(decoding, beam_size, length_penalty, max_len, use_cache, cfg.max_positions)
                trace = run_trace(ckpt, text if isinstance(text, str) else "", settings)
            except InputError as exc:
                raise gr.Error(str(exc), title="Cannot translate", print_exception=False) from None
            earlier: list[LatencyRun] = []
            if sess is not None and sess.trace.source_text == trace.source_text:
                # the same sentence run another way (e.g. cache off): keep the earlier timings to overlay
                earlier = [r for r in [views.latency_run(sess.trace), *sess.earlier]
                           if r.label != views.run_label(trace)][:3]
            new = Session(trace, settings.max_len, earlier)
            return trace.translation, steps_record(trace), new, views.translation_html(trace)

        def show_new(sess: Session, s_layer, s_head, kind, a_layer, a_head):
            n = len(sess.trace.steps)
            out = render_step(sess, 0, s_layer, s_head, kind, a_layer, a_head, encoder_too=True)
            out[0] = gr.Slider(minimum=1, maximum=max(n, 2), value=1, interactive=n > 1)
            return [*out, views.sentence_pe_figure(sess.trace, pe_full), run_stats_html(ckpt, sess)]

        translate_inputs = [text, decoding, beam_size, length_penalty, max_len, use_cache, session]
        translate_outputs = [translation, steps_json, session, pieces]
        shown = [*step_views, pe_sentence_plot, run_stats]
        private = dict(api_visibility="private", queue=False)
        triggers = ((translate_btn.click, dict(api_name="translate")), (text.submit, dict(api_visibility="private")))
        for trigger, api in triggers:
            # The button says it is busy (and cannot be clicked twice) while the model runs; errors show
            # as a toast only, so no stale-output marker is drawn over the previous translation.
            run = trigger(lambda: gr.Button(value="Translating…", interactive=False), None, translate_btn,
                          **private).then(translate, translate_inputs, translate_outputs, show_progress="hidden",
                                          concurrency_id="model", **api)
            run.success(show_new, view_inputs, shown, api_visibility="private", concurrency_id="view",
                        concurrency_limit=4, show_progress="hidden")
            for after in (run.success, run.failure):  # .then is not run after an error in Gradio 6
                after(lambda: gr.Button(value="Translate", interactive=True), None, translate_btn, **private)

        decoding.change(lambda d: [gr.Slider(visible=d == BEAM)] * 2, decoding, [beam_size, length_penalty],
                        api_visibility="private", queue=False)

        def move(delta: int):
            def handler(sess: Session, current: float, *controls):
                return render_step(sess, int(current) - 1 + delta, *controls, encoder_too=False)
            return handler

        view_event = dict(api_visibility="private", concurrency_id="view", concurrency_limit=4,
                          trigger_mode="always_last", show_progress="hidden")
        prev_btn.click(move(-1), [session, step, *view_inputs[1:]], step_views, **view_event)
        next_btn.click(move(+1), [session, step, *view_inputs[1:]], step_views, **view_event)
        step.input(move(0), [session, step, *view_inputs[1:]], step_views, **view_event)

        def toggle_play(sess: Session, current: float, is_playing: bool, *controls):
            if is_playing:
                return [gr.Timer(active=False), gr.Button(value="▶ Play"), False, *[gr.skip()] * len(step_views)]
            at_end = int(current) >= len(sess.trace.steps)
            views_now = (render_step(sess, 0, *controls, encoder_too=False) if at_end  # play again from step 1
                         else [gr.skip()] * len(step_views))
            return [gr.Timer(active=True), gr.Button(value="‖ Pause"), True, *views_now]

        play_btn.click(toggle_play, [session, step, playing, *view_inputs[1:]], [timer, play_btn, playing, *step_views],
                       **view_event)

        def tick(sess: Session, current: float, *controls):
            out = render_step(sess, int(current), *controls, encoder_too=False)  # slider is 1-based: next step
            done = int(current) + 1 >= len(sess.trace.steps)
            stop = [gr.Timer(active=False), gr.Button(value="▶ Play"), False] if done else [gr.skip()] * 3
            return [*out, *stop]

        timer.tick(tick, [session, step, *view_inputs[1:]], [*step_views, timer, play_btn, playing],
                   api_visibility="private", concurrency_id="view", concurrency_limit=4, trigger_mode="once",
                   show_progress="hidden")

        def restep(sess: Session, current: float, s_layer, s_head):
            return step_pair(sess, int(current) - 1, s_layer, s_head)

        for control in (step_layer, step_head):
            control.change(restep, [session, step, step_layer, step_head], [step_cross_plot, step_self_plot],
                           **view_event)

        def reattend(sess: Session, current: float, kind, a_layer, a_head):
            return attention_view(sess, int(current) - 1, kind, a_layer, a_head)

        def layer_choices(kind: str, a_layer: str):
            layers = enc_layers if ATTENTION_KINDS.get(kind) == "encoder" else dec_layers
            return gr.Radio(choices=layers, value=a_layer if a_layer in layers else layers[-1])

        attn_kind.change(layer_choices, [attn_kind, attn_layer], attn_layer, api_visibility="private",
                         queue=False)
        for control in (attn_kind, attn_layer, attn_head):
            control.change(reattend, [session, step, attn_kind, attn_layer, attn_head], attn_plot, **view_event)

        for control in (pe_len, pe_dims):
            control.change(pe_figures, [pe_len, pe_dims], [pe_heat_plot, pe_curves_plot, pe_sim_plot], **view_event)

        def compare(sess: Session, current: float):
            """Time the same sentence greedily with the cache on and off, and overlay the runs."""
            trace = sess.trace
            runs = []
            for cache in (True, False):
                if trace.beam_size == 1 and trace.use_cache == cache:
                    continue  # that run is the one on screen
                other = run_trace(ckpt, trace.source_text, Settings(1, 1.0, sess.max_len, cache))
                runs.append(views.latency_run(other))
            new = Session(trace, sess.max_len, runs)
            return new, views.latency_figure(trace, runs, views.clamp_step(trace, int(current) - 1))

        compare_btn.click(compare, [session, step], [session, latency_plot], api_visibility="private",
                          concurrency_id="model")

    demo.queue(default_concurrency_limit=2, max_size=64)
    return demo


# --- command line -------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Regard: French -> English translation, step by step, in the browser.")
    parser.add_argument("--checkpoint", default=os.environ.get("REGARD_CHECKPOINT", str(DEFAULT_CHECKPOINT)),
                        help="a Regard .safetensors checkpoint (default: %(default)s; env REGARD_CHECKPOINT)")
    parser.add_argument("--device", default=os.environ.get("REGARD_DEVICE"),
                        help="cpu, cuda, cuda:1... (default: cuda if available, else cpu; env REGARD_DEVICE)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (default: %(default)s; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                        help="port (default: %(default)s)")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = Path(args.checkpoint)
    if not path.is_file():
        print(
            f"Regard: no checkpoint at {path}.\n"
            "  Train one (`python train.py --out-dir runs/base`), then export it: `python -m training.export runs/base "
            f"--out {DEFAULT_CHECKPOINT.relative_to(DEFAULT_CHECKPOINT.parent.parent)}` (see README.md),\n"
            "  or point the app at an existing file: `python app.py --checkpoint runs/base/best.safetensors`.",
            file=sys.stderr,
        )
        return 2
    try:
        demo = build_demo(path, args.device)
    except (CheckpointError, ValueError) as exc:
        print(f"Regard: cannot start: {exc}", file=sys.stderr)
        return 2
    demo.launch(server_name=args.host, server_port=args.port, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
