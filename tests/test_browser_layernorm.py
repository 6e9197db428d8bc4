"""The "LayerNorm" view in a real browser (Debian chromium through playwright): both tiny models (post-LN
"tiny" and pre-LN "tiny-pre", tests/conftest.py) side by side, their numbers equal to residual_stats on
the same ids, the step and a clicked source piece followed, the phone layout, and an address restored.

Fixtures come from tests/test_browser.py (the served tiny app, the browser, a page that leaves a
screenshot in test-artifacts/ when a test fails).
"""
from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from test_browser import browser, expect, open_page, page, pytestmark, translate, url  # noqa: F401  (fixtures and skip marks)

from model.decoding import trace_translation
from model.explain.arrays import decode_f32
from model.explain.residual import residual_stats

SENTENCE = "le chat mange une pomme sur le canapé"


@pytest.fixture(scope="module")
def measured(app_context) -> dict:
    """Per model name: its own greedy trace of SENTENCE and residual_stats on it (what the page must show)."""
    out = {}
    for lm in app_context.models:
        trace = trace_translation(lm.ckpt.model, lm.ckpt.tokenizer, SENTENCE)
        out[lm.name] = (trace, residual_stats(lm.ckpt.model, trace.source_ids, [s.token_id for s in trace.steps]))
    return out


def shown(page, model: str, stat: str) -> float:
    return float(page.locator(f'.rg-ln-model[data-model="{model}"] [data-stat="{stat}"]').inner_text())


def dec_output(measured: dict, model: str, step: int) -> float:
    trace, data = measured[model]
    return float(decode_f32(data["decoder"]["output"])[min(step, len(trace.steps) - 1)])


def open_view(page) -> None:
    page.click("#rg-views button[data-view=layernorm]")
    expect(page.locator(".rg-ln-model")).to_have_count(2)


def test_both_models_side_by_side_with_their_own_numbers(page, measured):
    assert [data["norm"] for _, data in measured.values()] == ["post", "pre"]  # the served pair differs in norm
    translate(page, SENTENCE)
    open_view(page)
    blocks = page.locator(".rg-ln-model")
    assert [blocks.nth(i).get_attribute("data-norm") for i in range(2)] == ["post", "pre"]
    expect(page.locator('.rg-ln-model[data-model="tiny"]')).to_contain_text("post-LN")
    expect(page.locator('.rg-ln-model[data-model="tiny"]')).to_contain_text("(this translation)")
    expect(page.locator('.rg-ln-model[data-model="tiny-pre"]')).to_contain_text(measured["tiny-pre"][0].translation)
    for model in ("tiny", "tiny-pre"):
        assert shown(page, model, "dec-output") == pytest.approx(dec_output(measured, model, 0), abs=0.006)
        enc = float(decode_f32(measured[model][1]["encoder"]["output"]).mean())
        assert shown(page, model, "enc-output") == pytest.approx(enc, abs=0.006)
    # post-LN keeps the decoder stream at sqrt(d) (32 features, LayerNorm gain 1 at init); pre-LN lets it grow
    assert shown(page, "tiny", "dec-last") == pytest.approx(32 ** 0.5, abs=0.01)
    assert shown(page, "tiny-pre", "dec-last") > 1.3 * shown(page, "tiny-pre", "dec-embedding")
    # two columns: post-LN's figure on the left of pre-LN's, on one row
    left, right = (page.locator(f"figure[data-fig=ln-{i}-dec-norm]").bounding_box() for i in (0, 1))
    assert abs(left["y"] - right["y"]) < 2 and left["x"] + left["width"] <= right["x"]
    expect(page.locator("#rg-figures figure[data-fig^=ln-]")).to_have_count(12)
    page.click("#rg-next")  # the decoder figures and numbers follow the step
    expect(page.locator('.rg-ln-model[data-model="tiny"] [data-stat="dec-output"]')).to_have_attribute("data-step", "1")
    assert shown(page, "tiny", "dec-output") == pytest.approx(dec_output(measured, "tiny", 1), abs=0.006)
    with page.expect_download() as dl:
        page.click("#rg-ln-json")
    data = json.loads(open(dl.value.path(), encoding="utf-8").read())
    assert dl.value.suggested_filename.endswith("-layernorm.json")
    assert [m["norm"] for m in data["models"]] == ["post", "pre"]
    with page.expect_download() as dl:
        page.locator("figure[data-fig=ln-1-dec-norm] button[data-export=svg]").click()
    assert dl.value.suggested_filename.endswith("ln-1-dec-norm-step2.svg")
    assert "pre-LN" in open(dl.value.path(), encoding="utf-8").read()


def test_switching_the_explorer_model_keeps_post_left_and_marks_the_other(page, measured):
    page.click("#rg-model input")
    page.get_by_role("option", name="tiny-pre").click()
    translate(page, SENTENCE)
    open_view(page)
    expect(page.locator('.rg-ln-model[data-model="tiny-pre"]')).to_contain_text("(this translation)")
    assert page.locator(".rg-ln-model").first.get_attribute("data-norm") == "post"
    page.click("#rg-next")
    expect(page.locator('.rg-ln-model[data-model="tiny-pre"] [data-stat="dec-output"]')).to_have_attribute("data-step", "1")
    for model in ("tiny", "tiny-pre"):
        assert shown(page, model, "dec-output") == pytest.approx(dec_output(measured, model, 1), abs=0.006)
    # a clicked source piece pins the encoder numbers to it, and the address keeps it
    page.locator("#rg-src-chips .rg-chip").nth(2).click()
    expect(page.locator('.rg-ln-model[data-model="tiny-pre"]')).to_contain_text("(piece 3)")
    enc = float(decode_f32(measured["tiny-pre"][1]["encoder"]["output"])[2])
    assert shown(page, "tiny-pre", "enc-output") == pytest.approx(enc, abs=0.006)
    assert "lnsrc=3" in page.evaluate("location.hash") and "view=layernorm" in page.evaluate("location.hash")


def test_an_address_restores_the_view_on_a_phone_without_sideways_scroll(browser, url, request, measured):
    fragment = f"#s={quote(SENTENCE)}&model=tiny&step=2&view=layernorm&lnsrc=2"
    page = open_page(browser, url, request, fragment, viewport=(390, 844))
    try:
        expect(page.locator(".rg-ln-model")).to_have_count(2)
        expect(page.locator("#rg-views button.rg-on")).to_have_attribute("data-view", "layernorm")
        expect(page.locator('.rg-ln-model[data-model="tiny"]')).to_contain_text("(piece 2)")
        assert shown(page, "tiny", "dec-output") == pytest.approx(dec_output(measured, "tiny", 1), abs=0.006)
        expect(page.locator("#rg-figures figure[data-fig^=ln-s]")).to_have_count(12)  # stacked: one model, then the other
        order = page.eval_on_selector_all("#rg-figures figure", "fs => fs.map((f) => f.dataset.fig)")
        assert order[:6] == [f"ln-s0-{n}" for n in ("dec-norm", "dec-ln", "dec-ratio", "enc-norm", "enc-ln", "enc-ratio")]
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        boxes = page.eval_on_selector_all("#rg-figures figure", "fs => fs.map((f) => f.getBoundingClientRect().right)")
        assert max(boxes) <= 390
    finally:
        page.close()
