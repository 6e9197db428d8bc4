"""INT8 weights: the quantised twin of a model, its measured weight memory, and the app's toggle.

Through gradio_client like any API user (the served tiny models of conftest), plus the pieces alone.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError
from torch import nn

from model.checkpoint import load_checkpoint
from model.decoding import trace_translation, translate_batch
from model.memory import weight_bytes
from model.quantize import model_weight_bytes, packed_bytes, quantize_int8
from ui import handlers, inputs
from ui.context import load_context
from model.trace_json import check_trace_json, decode_array

EXAMPLE = "le chat mange une pomme sur le canapé"
SETTINGS = dict(decoding=inputs.GREEDY, beam_size=4, length_penalty=1.0, max_len=0, use_cache=True, model="tiny")


@pytest.fixture(scope="module")
def client(served_app) -> Client:  # served_app (conftest) turns Gradio's analytics off before it starts
    return Client(served_app.local_url, verbose=False)


def test_int8_toggle_gives_a_translation_and_a_smaller_weight_readout(client, tiny_checkpoint):
    fp32_text, fp32 = client.predict(text=EXAMPLE, **SETTINGS, weights="fp32", api_name="/translate")
    int8_text, int8 = client.predict(text=EXAMPLE, **SETTINGS, weights="int8", api_name="/translate")
    ckpt = load_checkpoint(tiny_checkpoint)
    expected = trace_translation(quantize_int8(ckpt.model), ckpt.tokenizer, EXAMPLE)
    assert int8_text == int8["translation"] == expected.translation and int8["steps"]
    assert (fp32["weights"], int8["weights"]) == ("fp32", "int8")
    assert int8["weight_bytes"] < fp32["weight_bytes"] == weight_bytes(ckpt.model)  # fp32 is every parameter x 4
    assert int8["weight_bytes_by_format"] == fp32["weight_bytes_by_format"] == {
        "fp32": fp32["weight_bytes"], "int8": int8["weight_bytes"]}  # both readouts, side by side, in every trace
    assert int8["total_ms"] > 0 and all(s["latency_ms"] > 0 for s in int8["steps"])
    check_trace_json(int8)  # every attention map is there, of the right shape
    cross = decode_array(int8["attention"]["cross"])
    np.testing.assert_allclose(cross.sum(-1), 1.0, atol=0.05)  # attention rows still sum to one (uint8 on the wire)


def test_clients_that_send_no_weights_get_fp32(client):
    text, trace = client.predict(EXAMPLE, inputs.GREEDY, 4, 1.0, 0, True, "tiny", api_name="/translate")  # 7 values
    assert trace["weights"] == "fp32" and text == trace["translation"]
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict(text=EXAMPLE, **SETTINGS, weights="int4", api_name="/translate")


def test_quantised_model_packs_linear_weights_and_shares_the_rest(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    q = quantize_int8(tiny_model)
    linears = [m for m in tiny_model.modules() if isinstance(m, nn.Linear)]
    assert linears and not any(isinstance(m, nn.Linear) for m in q.modules())
    # int8 weights, fp32 biases, a float64 scale and an int64 zero point per layer
    want = sum(m.weight.numel() + (4 * m.bias.numel() if m.bias is not None else 0) + 16 for m in linears)
    assert packed_bytes(q) == want and packed_bytes(tiny_model) == 0
    assert model_weight_bytes(q) == want + weight_bytes(q) < model_weight_bytes(tiny_model) == weight_bytes(tiny_model)
    assert q.embed.weight is tiny_model.embed.weight  # shared, not copied
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())  # the fp32 model is untouched


def test_int8_twin_is_built_once_per_model(tiny_checkpoint, tiny_checkpoint_b):
    ctx = load_context([tiny_checkpoint, tiny_checkpoint_b])
    lm = ctx.default
    with ThreadPoolExecutor(4) as pool:
        built = list(pool.map(lambda _: lm.int8_model(), range(4)))
    assert all(m is built[0] for m in built) and ctx.models[1].int8_model() is not built[0]
    assert set(lm.weight_bytes()) == {"fp32", "int8"}


def test_url_and_weight_comparison_carry_the_weights(app_context):
    values = handlers.url_settings(app_context, "#s=le%20chat&weights=int8&model=tiny-pre")
    assert values[-2:] == ["tiny-pre", inputs.INT8]
    assert handlers.url_settings(app_context, "s=le%20chat&weights=nonsense")[-1] == inputs.FP32
    runs = handlers.compare_weights(app_context, "le chat", 0, "tiny")
    assert [r["weights"] for r in runs] == ["fp32", "int8"] and runs[1]["weight_bytes"] < runs[0]["weight_bytes"]
    assert all(r["step_ms"] and r["total_ms"] > 0 for r in runs)
    with pytest.raises(inputs.InputError, match="weights must be"):
        inputs.parse_settings(inputs.GREEDY, 1, 1.0, 0, True, 64, "int4")


def test_evaluate_int8_scores_the_quantised_model(tiny_checkpoint, tmp_path, capsys):
    import evaluate

    data = tmp_path / "pairs.tsv"
    data.write_text("le chat dort.\tthe cat sleeps.\nil fait beau.\tit is nice.\n", encoding="utf-8")
    hyps = tmp_path / "hyps.txt"
    assert evaluate.main(["--checkpoint", str(tiny_checkpoint), "--data", str(data), "--int8", "--device", "cpu",
                          "--hyps", str(hyps)]) == 0
    assert "beam 1, int8" in capsys.readouterr().out
    ckpt = load_checkpoint(tiny_checkpoint)
    q = quantize_int8(ckpt.model)
    # one batch, as evaluate.py runs it (dynamic int8 scales activations per batch: batch-1 runs may differ)
    assert hyps.read_text(encoding="utf-8").splitlines() == translate_batch(q, ckpt.tokenizer, ["le chat dort.", "il fait beau."])
    with pytest.raises(SystemExit):  # an int8 score is not the checkpoint's own
        evaluate.main(["--checkpoint", str(tiny_checkpoint), "--data", str(data), "--int8", "--record"])
