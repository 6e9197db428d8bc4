"""The Model tab's "The seed's arithmetic, from this model": parameters by part, training compute (C = 6·P·D),
training and inference memory of every loaded model, and a button that runs one real training step and
puts what torch reports next to the estimate.

Every number comes from ``model.explain.arithmetic`` on the loaded model and its record; this module only
lays them out (all text escaped). ``build`` is called inside the Model tab by ``ui.layout``.
"""
from __future__ import annotations

import html
from functools import partial
from typing import Any, Sequence

import gradio as gr

from model.explain.arithmetic import (NOT_RECORDED, inference_memory, measure_training_step, measured_batch,
                                      parameters_by_part, training_compute, training_memory)
from model.memory import human_bytes

from .context import Context, LoadedModel, whole_machine
from .handlers import pick_model
from .inputs import checked_choices, refuse
from .texts import table_html

STYLE = """<style>
#rg-arithmetic .rg-arith-lead, #rg-arith-measured .rg-arith-lead { margin: 4px 0 8px; }
#rg-arith-measured td.rg-torch { font-weight: 600; }
#rg-arith-measured td.rg-pending { color: var(--body-text-color-subdued); }
</style>"""
MEMORY_KEYS = (("weights", "weights (fp32)"), ("gradients", "gradients (.grad)"), ("adam_exp_avg", "Adam m (exp_avg)"),
               ("adam_exp_avg_sq", "Adam v (exp_avg_sq)"), ("adam_step", "Adam step counters"))


# --- numbers as text -----------------------------------------------------------------------------------
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def sci(x: float, digits: int = 3) -> str:
    """2.695e15 -> '2.70 × 10¹⁵' (``digits`` significant figures)."""
    if x == 0:
        return "0"
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa} × 10{str(int(exponent)).translate(SUPERSCRIPT)}"


def si(x: float, unit: str) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.1f} {prefix}{unit}"
    return f"{x:.0f} {unit}"


def nbytes(n: int, formula: str | None = None) -> str:
    return f"{human_bytes(n)}" + (f" = {formula}" if formula else "")


# --- the static tables ---------------------------------------------------------------------------------
def arithmetic_data(lm: LoadedModel) -> dict[str, Any]:
    """Everything the tables show for one model (JSON-ready)."""
    model, record = lm.ckpt.model, lm.ckpt.training
    return {"parameters": parameters_by_part(model), "compute": training_compute(model, record),
            "memory": training_memory(model, record), "inference": inference_memory(model)}


def _parts_rows(data: dict[str, dict], names: Sequence[str]) -> list[list[str]]:
    keys: list[tuple[str, str]] = []
    for name in names:
        for r in data[name]["parameters"]:
            if (r["stack"], r["part"]) not in keys:
                keys.append((r["stack"], r["part"]))
    total = [k for k in keys if k[0] == "total"]
    rows = []
    for stack, part in [k for k in keys if k[0] != "total"] + total:
        cells = []
        for name in names:
            row = next((r for r in data[name]["parameters"] if (r["stack"], r["part"]) == (stack, part)), None)
            if row is None:
                cells.append("none")
            elif stack == "positional":
                cells.append(f"0 (a buffer of {row['buffer_values']:,} values)")
            else:
                formula = f" · {row['formula']}" if row["formula"] else ""
                cells.append(f"{row['parameters']:,} · {100 * row['share']:.1f} %{formula}")
        label = part if stack in ("total", "embeddings", "positional", "output") else f"{stack} · {part}"
        rows.append([label, *cells])
    return rows


def _compute_rows(data: dict[str, dict], names: Sequence[str]) -> list[list[str]]:
    def cell(name: str, fn: Any) -> str:
        run = data[name]["compute"]["training"]
        return fn(run) if run["recorded"] else run["note"]

    def achieved(run: dict) -> str:
        value = run["achieved_flops_per_s"]
        return value if isinstance(value, str) else f"{si(value, 'FLOP/s')} on {run['hardware']}"

    def padded(run: dict) -> str:
        bound = run.get("padded_bound")
        return f"≤ {sci(bound['flops'])} FLOPs: {bound['note']}" if bound else NOT_RECORDED

    def wall(run: dict) -> str:
        minutes = run["wall_time_min"]
        return minutes if isinstance(minutes, str) else f"{minutes:,} min ({minutes / 60:.1f} h), evaluations excluded"

    inference = [data[n]["compute"]["inference"] for n in names]
    return [
        ["D, tokens", *[cell(n, lambda r: f"{r['tokens']:,} {r['tokens_kind']}") for n in names]],
        ["P, parameters", *[f"{data[n]['compute']['parameters']:,}" for n in names]],
        ["C = 6·P·D", *[cell(n, lambda r: f"{r['formula']} = {sci(r['flops'])} FLOPs") for n in names]],
        ["in PF-days", *[cell(n, lambda r: sci(r["pf_days"])) for n in names]],
        ["counted where each weight runs",
         *[cell(n, lambda r: f"{sci(r['refined_flops'])} FLOPs = {r['refined_formula']}") for n in names]],
        ["with the padding", *[cell(n, padded) for n in names]],
        ["wall time", *[cell(n, wall) for n in names]],
        ["achieved, C / wall time", *[cell(n, achieved) for n in names]],
        ["inference, forward only", *[f"2·P = {si(i['flops_per_token'], 'FLOPs')} a token: "
                                      f"{si(i['per_target_token'], 'FLOPs')} a generated token (decoder + output), "
                                      f"{si(i['per_source_token'], 'FLOPs')} a source token (encoder + cross k/v)"
                                      for i in inference]],
    ]


def _memory_rows(data: dict[str, dict], names: Sequence[str]) -> list[list[str]]:
    mems = [data[n]["memory"] for n in names]

    def batch(m: dict) -> str:
        b = m["batch"]
        mode = "bf16 autocast" if m["settings"]["bf16"] else "fp32"
        assumed = [k for k in m["settings"]["assumed"] if k in ("bf16", "max_tokens")]
        note = f"; {', '.join(assumed)} {NOT_RECORDED}, assumed" if assumed else ""
        return f"{b['rows']} rows × ({b['src_len']} + {b['tgt_len']}) tokens, {mode}: {b['source']}{note}"

    rows = [["batch", *[batch(m) for m in mems]]]
    rows += [[label, *[nbytes(m[key], m["formulas"][key]) for m in mems]] for key, label in MEMORY_KEYS]
    rows.append(["activations, the trainer's fused loss", *[nbytes(m["activations_by_loss"]["fused"]) for m in mems]])
    rows.append(["activations, F.cross_entropy over logits",
                 *[f"{nbytes(m['activations_by_loss']['logits'])} (the N × V log-probabilities kept)" for m in mems]])
    rows.append(["total, as trained", *[nbytes(m["total"]) for m in mems]])
    return rows


def _inference_rows(data: dict[str, dict], names: Sequence[str]) -> list[list[str]]:
    inf = [data[n]["inference"] for n in names]
    return [
        ["weights, as loaded", *[nbytes(i["weights"]) for i in inf]],
        ["KV cache, self-attention", *[nbytes(i["kv_self"], i["formulas"]["kv_self"]) for i in inf]],
        ["KV cache, cross-attention", *[nbytes(i["kv_cross"], i["formulas"]["kv_cross"]) for i in inf]],
        ["total", *[f"{nbytes(i['total'])} at {i['src_len']} source and {i['tgt_len']} target tokens, "
                    f"{i['beams']} beam" for i in inf]],
    ]


def arithmetic_html(names: Sequence[str], data: dict[str, dict]) -> str:
    """The four tables, one column per model."""
    header = ["", *names]
    lead = ('<p class="rg-note rg-arith-lead">Counted on the loaded weights and read from each checkpoint\'s '
            "training record. Training memory is the trainer's step (training/loop.py): fp32 weights, Adam, "
            "and the tensors autograd keeps between forward and backward (model/explain/arithmetic.py "
            "derives them layer by layer).</p>")
    return (STYLE + '<div class="rg-arith">' + lead
            + table_html("Parameters by part", header, _parts_rows(data, names))
            + table_html("Training compute", header, _compute_rows(data, names))
            + table_html("Training memory, one step of the recorded batch", header, _memory_rows(data, names))
            + table_html("Inference memory", header, _inference_rows(data, names)) + "</div>")


# --- the measured step ---------------------------------------------------------------------------------
def measure_html(lm: LoadedModel, result: dict[str, Any] | None) -> str:
    """Estimate and (once measured) what torch reports for one step; cells carry ``data-bytes``."""
    model, record = lm.ckpt.model, lm.ckpt.training
    if result is None:
        shape, note = measured_batch(model, record)
        estimate = training_memory(model, record, shape)
        batch = {"rows": shape[0], "src_len": shape[1], "tgt_len": shape[2], "note": note}
        bf16 = estimate["settings"]["bf16"]
    else:
        estimate, batch, bf16 = result["estimate"], result["batch"], result["bf16"]
    mode = "bf16 autocast" if bf16 else "fp32"
    rows = []
    for key, label in (*MEMORY_KEYS, ("activations", "activations saved for backward"), ("total", "total")):
        est = estimate[key]
        if result is None:
            torch_cell, ratio = '<td class="rg-torch rg-pending">–</td>', "–"
        else:
            got = result["measured"][key]
            torch_cell = f'<td class="rg-torch" data-bytes="{got}">{html.escape(human_bytes(got))} ({got:,} B)</td>'
            ratio = f"{result['ratio'][key]:.4f}" if key in result["ratio"] else "–"
        rows.append(f'<tr data-key="{key}"><th>{html.escape(label)}</th>'
                    f'<td class="rg-est" data-bytes="{est}">{html.escape(human_bytes(est))} ({est:,} B)</td>'
                    f"{torch_cell}<td>{html.escape(ratio)}</td></tr>")
    if result is not None:
        extra = [("step time", f"{result['step_ms']:,.0f} ms (forward {result['forward_ms']:,.0f} ms)"),
                 ("achieved here", f"{si(result['achieved_flops_per_s'], 'FLOP/s')} (6 × matmul weights × tokens)"),
                 ("peak RSS grew by", human_bytes(result["rss_peak_growth"]))]
        rows += [f'<tr><th>{html.escape(k)}</th><td colspan="3">{html.escape(v)}</td></tr>' for k, v in extra]
    head = "".join(f"<th>{h}</th>" for h in ("", "estimate", "torch reports", "torch / estimate"))
    lead = (f"{lm.name}: {batch['rows']} rows × ({batch['src_len']} + {batch['tgt_len']}) tokens, {mode}, "
            f"{batch['note']}; the loss is the trainer's own (projection and cross-entropy fused, model/loss.py). "
            + ("Click “Measure one training step” to run it." if result is None else
               f"Measured on this machine (loss {result['loss_value']:.3f} on random ids)."))
    return (STYLE + f'<div class="rg-facts" data-model="{html.escape(lm.name)}" data-measured="{int(result is not None)}">'
            "<h3>One training step, measured by torch</h3>"
            f'<p class="rg-note rg-arith-lead">{html.escape(lead)}</p><div class="rg-table-wrap"><table>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></div>")


def training_memory_step(ctx: Context, model: Any = None) -> tuple[str, dict]:
    """Run one training step of ``model`` (name; empty = default) and return the table and its JSON."""
    lm = pick_model(ctx, model)
    try:
        # the whole machine: the step's math-kernel switch (sdpa_kernel) is process-wide
        result = whole_machine(ctx, lm, lambda: measure_training_step(lm.ckpt.model, lm.ckpt.training), grad=True)
    except ValueError as exc:
        raise refuse(str(exc)) from None
    return measure_html(lm, result), {"model": lm.name, **result}


def estimate_for(ctx: Context, model: Any = None) -> str:
    return measure_html(pick_model(ctx, model), None)


def build(ctx: Context, model_q: dict) -> None:
    """The section, inside the Model tab: tables for every model, then the measurement of one of them."""
    names = ctx.names
    data = {m.name: arithmetic_data(m) for m in ctx.models}
    gr.Markdown("### The seed's arithmetic, from this model")
    gr.HTML(arithmetic_html(names, data), elem_id="rg-arithmetic")
    with gr.Row(equal_height=True):
        pick = checked_choices(gr.Dropdown(names, value=ctx.default.name, label="Model to measure",
                                           elem_id="rg-arith-model", interactive=len(names) > 1, scale=2),
                               empty_means_default=True)
        button = gr.Button("Measure one training step", elem_id="rg-arith-measure", scale=1)
    table = gr.HTML(measure_html(ctx.default, None), elem_id="rg-arith-measured")
    with gr.Accordion("The arithmetic as JSON", open=False):
        gr.JSON(data, max_height=400, label="every model", elem_id="rg-arith-json")
        measured = gr.JSON(None, max_height=400, label="the last measured step", elem_id="rg-arith-step-json")
    handler = partial(training_memory_step, ctx)
    handler.__name__ = "training_memory"  # type: ignore[attr-defined]
    button.click(handler, pick, [table, measured], api_name="training_memory", **model_q)
    pick.change(partial(estimate_for, ctx), pick, table, api_visibility="private",
                concurrency_id="view", concurrency_limit=1, show_progress="hidden")
