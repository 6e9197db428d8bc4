"""The Model tab's arithmetic in a real browser: the tables of the served tiny app, then "Measure one training
step" fills the "torch reports" column with what ``measure_training_step`` measures (same seed, same bytes).

Fixtures come from tests/test_browser.py (the served tiny app, the browser, a page that leaves a screenshot in
test-artifacts/ when a test fails).
"""
from __future__ import annotations

import pytest
from conftest import tiny_config
from test_browser import browser, expect, page, pytestmark, url  # noqa: F401  (fixtures and skip marks)

from model.explain.arithmetic import NOT_RECORDED, measure_training_step
from model.transformer import Transformer

KEYS = ("weights", "gradients", "adam_exp_avg", "adam_exp_avg_sq", "adam_step", "activations", "total")


def test_model_tab_tables_then_one_measured_step(page, app_context):
    lm = app_context.default
    p = lm.ckpt.model.num_parameters()
    page.get_by_role("tab", name="Model", exact=True).click()
    tables = page.locator("#rg-arithmetic")
    expect(tables.locator("h3")).to_have_count(4)
    expect(tables).to_contain_text(f"{p:,} · 100.0 %")  # the total row, counted on the loaded weights
    expect(tables).to_contain_text("not recorded")  # the tiny records hold no tokens seen nor train_config
    measured = page.locator("#rg-arith-measured .rg-facts")
    expect(measured).to_have_attribute("data-measured", "0")
    expect(measured.locator("td.rg-pending")).to_have_count(len(KEYS))
    page.click("#rg-arith-measure")
    expect(measured).to_have_attribute("data-measured", "1")
    expect(measured).to_have_attribute("data-model", lm.name)
    shown = {k: int(measured.locator(f"tr[data-key={k}] td.rg-torch").get_attribute("data-bytes")) for k in KEYS}
    assert shown["gradients"] == shown["weights"] == 4 * p  # fp32 gradients: exactly 4 bytes a parameter
    expected = measure_training_step(lm.ckpt.model, lm.ckpt.training)["measured"]
    assert shown == {k: expected[k] for k in KEYS}


def test_api_measures_the_named_model_with_the_whole_gate(served_app, app_context):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(served_app.local_url, verbose=False)
    other = app_context.models[1]
    app_context.in_flight.peak = 0
    table, data = client.predict(model=other.name, api_name="/training_memory")
    assert app_context.in_flight.peak == app_context.in_flight.limit  # no translation ran beside the step
    assert data["model"] == other.name and f'data-model="{other.name}"' in table
    assert data["measured"]["gradients"] == 4 * other.ckpt.model.num_parameters()
    assert data["assumed"]  # the tiny records hold no train_config: every setting is named as assumed
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict(model="<b>nope</b>", api_name="/training_memory")


def test_page_tables_escape_and_say_not_recorded():
    from types import SimpleNamespace

    from ui.arithmetic import arithmetic_data, arithmetic_html, sci

    model = Transformer(tiny_config(96, tie_embeddings=False, output_bias=True))  # an imported Marian model's shape
    lm = SimpleNamespace(name="<i>m</i>", ckpt=SimpleNamespace(model=model, training={"note": "imported"}))
    text = arithmetic_html([lm.name], {lm.name: arithmetic_data(lm)})
    assert "<i>m</i>" not in text and "&lt;i&gt;m&lt;/i&gt;" in text
    assert text.count(NOT_RECORDED) >= 7  # the seven training-compute rows that need the record
    assert f"{lm.ckpt.model.num_parameters():,} · 100.0 %" in text
    assert sci(2_695_218_507_878_400) == "2.70 × 10¹⁵" and sci(3.1194e-05) == "3.12 × 10⁻⁵"
