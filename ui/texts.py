"""Static text of the page: examples, the header, and the Model tab's tables (all user data escaped)."""
from __future__ import annotations

import html
from typing import Any, Sequence

from model.memory import human_bytes, parameter_count
from model.record import public_text
from viz.curves import score_rows

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


def _cell(v: Any) -> str:
    text = f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)
    return html.escape(text)


def table_html(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A titled table; the first column is the row's name. Every cell is escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr><th>" + _cell(r[0]) + "</th>" + "".join(f"<td>{_cell(v)}</td>" for v in r[1:]) + "</tr>"
                   for r in rows)
    return (f'<div class="rg-facts"><h3>{html.escape(title)}</h3><div class="rg-table-wrap"><table>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></div>")


def header_html(lm: Any) -> str:
    """Title and badges of the model shown (``lm``: a ``LoadedModel``)."""
    cfg, param = lm.ckpt.config, next(lm.ckpt.model.parameters())
    badges = [lm.name, f"{parameter_count(lm.ckpt.model) / 1e6:.1f} M parameters",
              f"{cfg.n_encoder_layers} + {cfg.n_decoder_layers} layers", f"{cfg.n_heads} heads",
              f"d_model {cfg.d_model}", f"{lm.ckpt.tokenizer.vocab_size:,} pieces", f"{cfg.norm}-LN",
              f"{param.device} · {str(param.dtype).replace('torch.', '')}"]
    spans = "".join(f'<span class="rg-badge">{html.escape(b)}</span>' for b in badges)
    return ('<div id="rg-header"><h1>Regard <span class="rg-accent">·</span> French → English</h1>'
            "<p>Our own Transformer, translated one token at a time: see what it attends to, how sure it is, "
            f'and what each step costs.</p><div class="rg-badges">{spans}</div></div>')


def _dev(result: Any) -> str:
    if not isinstance(result, dict) or not isinstance(result.get("bleu"), (int, float)):
        return "–"
    chrf = f" · chrF {result['chrf']:.2f}" if isinstance(result.get("chrf"), (int, float)) else ""
    return f"BLEU {result['bleu']:.2f}{chrf} (step {result.get('step', '?')})"


def model_tables_html(models: Sequence[Any]) -> str:
    """Architecture, training and scores of every model, one column per model."""
    names = [m.name for m in models]
    arch = [
        ("checkpoint file", *[m.ckpt.path.name if m.ckpt.path else "–" for m in models]),
        ("parameters", *[f"{parameter_count(m.ckpt.model):,} ({human_bytes(parameter_count(m.ckpt.model) * 4)} fp32)"
                         for m in models]),
        ("encoder / decoder layers", *[f"{m.ckpt.config.n_encoder_layers} / {m.ckpt.config.n_decoder_layers}"
                                       for m in models]),
        ("d_model / heads / d_ff", *[f"{m.ckpt.config.d_model} / {m.ckpt.config.n_heads} / {m.ckpt.config.d_ff}"
                                     for m in models]),
        ("normalisation / activation", *[f"{m.ckpt.config.norm}-LN / {m.ckpt.config.activation}" for m in models]),
        ("vocabulary", *[f"{m.ckpt.tokenizer.vocab_size:,} pieces" for m in models]),
        ("max positions", *[m.ckpt.config.max_positions for m in models]),
        ("dropout", *[f"{m.ckpt.config.dropout} (attention {m.ckpt.config.attention_dropout})" for m in models]),
    ]
    keys = ("steps", "epochs", "target_tokens_seen", "wall_time_min", "target_tokens_per_s", "hardware", "torch",
            "date", "command", "note", "exported_dtype")
    training = [(k.replace("_", " "), *[m.ckpt.training.get(k, "–") for m in models])
                for k in keys if any(k in m.ckpt.training for m in models)]
    training += [(label, *[_dev(m.ckpt.training.get(key)) for m in models])
                 for key, label in (("best_dev", "best dev"), ("final_dev", "final dev"))
                 if any(key in m.ckpt.training for m in models)]
    header, scores = score_rows({m.name: m.ckpt.training for m in models})
    parts = [table_html("Architecture", ["", *names], arch)]
    parts.append(table_html("Training", ["", *names], training) if training
                 else '<p class="rg-note">No training record in these checkpoints.</p>')
    if scores:
        parts.append(table_html("Scores (test sets, from the record)", header, scores))
    return "".join(parts)


def model_card(lm: Any) -> str:
    """The MODEL_CARD.md next to the checkpoint, if there is one (``<stem>.md`` first, for several models)."""
    path = lm.ckpt.path
    if path:
        for card in (path.with_suffix(".md"), path.with_name("MODEL_CARD.md")):
            if card.is_file():
                return public_text(card.read_text(encoding="utf-8"))
    return f"*No model card next to `{path.name if path else 'the checkpoint'}`.*"
