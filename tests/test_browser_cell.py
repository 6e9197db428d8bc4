"""The "Inside this cell" panel in a real browser (Debian chromium through playwright): a click on an attention
cell shows that cell's query, key, value, dot products, softmax and weighted sum, equal to 4 decimals to what
model/explain/cell.py and numpy give; a layer is asked for once; the address reopens the panel; every kind of
map works; a phone shows it without sideways scrolling.

Fixtures come from tests/test_browser.py (the served tiny app, the browser, a page that leaves a
screenshot in test-artifacts/ when a test fails).
"""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from test_browser import browser, expect, page, pytestmark, translate, url  # noqa: F401  (fixtures and skip marks)

from model.decoding import trace_translation
from model.explain.arrays import decode_f32
from model.explain.cell import attention_layer

SENTENCE = "le chat mange une pomme sur le canapé"
DIGITS = 6e-5  # 4 decimals shown: half a unit of the last digit, plus float32 noise
POINT = """([id, q, k]) => {
  const f = regard.figures()[id], box = document.querySelector(`figure[data-fig="${id}"]`);
  const L = regard.lib.heatmapLayout({rows: f.rows, cols: f.cols, subtitle: "x"}, Math.floor(box.clientWidth), false);
  return {x: L.x0 + (k + 0.5) * L.cw, y: L.y0 + (q + 0.5) * L.ch};
}"""


@pytest.fixture(scope="module")
def model(app_context):
    return app_context.default.ckpt.model


@pytest.fixture(scope="module")
def trace(app_context):
    ckpt = app_context.default.ckpt
    return trace_translation(ckpt.model, ckpt.tokenizer, SENTENCE)


def expected(model, trace, kind: str, layer: int, head: int, q: int, k: int) -> dict:
    """What the panel must show for one cell, from the library's payload and numpy."""
    data = attention_layer(model, trace.source_ids, [s.token_id for s in trace.steps], kind, layer)
    a = {n: decode_f32(data[n]).astype(np.float64)[head] for n in ("q", "k", "v", "weights", "head_out")}
    n = q + 1 if data["causal"] else data["keys"]
    dots = a["k"][:n] @ a["q"][q]  # (n,)
    unscaled = np.exp(dots - dots.max()) / np.exp(dots - dots.max()).sum()
    weights = a["weights"][q, :n]
    return {"dot": float(a["q"][q] @ a["k"][k]), "scaled": float(a["q"][q] @ a["k"][k]) * data["scale"],
            "weight": float(weights[k]), "unscaled": float(unscaled[k]), "q": a["q"][q], "k": a["k"][k], "v": a["v"][k],
            "sum": weights @ a["v"][:n], "out": a["head_out"][q]}


def click_cell(page, figure: str, q: int, k: int) -> None:
    point = page.evaluate(POINT, [figure, q, k])
    page.locator(f'figure[data-fig="{figure}"] canvas').click(position=point)


def ready(page, q: int, k: int, head: int) -> None:
    panel = page.locator("#rg-cell")
    expect(panel).to_have_attribute("data-state", "ready")
    for name, value in (("q", q), ("k", k), ("head", head)):
        expect(panel).to_have_attribute(f"data-{name}", str(value))


def cell_key(address: str) -> str:
    return parse_qs(urlsplit(address).fragment)["cell"][0]


def wait_for_cell_key(page, key: str) -> None:
    """The panel writes its key into the address once the browser is idle."""
    page.wait_for_function("(key) => new URLSearchParams(location.hash.slice(1)).get('cell') === key", arg=key)


def shown(page, name: str) -> float:
    return float(page.locator(f'#rg-cell [data-num="{name}"]').inner_text())


def vector(page, name: str) -> np.ndarray:
    return np.array([float(x) for x in page.locator(f"#rg-cell-vec-{name} .rg-cell-x").all_inner_texts()])


def assert_numbers(page, want: dict) -> None:
    for name in ("dot", "scaled", "weight", "unscaled"):
        assert shown(page, name) == pytest.approx(want[name], abs=DIGITS), name
    assert shown(page, "weight-js") == pytest.approx(want["weight"], abs=DIGITS)
    assert shown(page, "cell-weight") == pytest.approx(want["weight"], abs=DIGITS)
    for name in ("q", "k", "v", "sum", "out"):
        np.testing.assert_allclose(vector(page, name), want[name], atol=DIGITS, rtol=0, err_msg=name)
    assert float(page.locator('#rg-cell [data-num="sum-diff"]').inner_text()) < 1e-5


def test_a_cross_cell_shows_the_models_numbers_its_layer_is_asked_for_once_and_the_address_reopens_it(page, model, trace):
    translate(page, SENTENCE)
    click_cell(page, "cross", 1, 2)  # the step view: last layer, mean over heads
    ready(page, 1, 2, 0)
    expect(page.locator("#rg-cell")).to_have_attribute("data-loads", "1")
    expect(page.locator("#rg-cell-status")).to_contain_text("mean over heads: this is head 1")
    assert_numbers(page, expected(model, trace, "cross", 1, 0, 1, 2))
    # the map the visitor clicked: the trace's 8-bit mean over heads next to this pass's
    assert abs(shown(page, "map-mean") - shown(page, "cell-mean")) <= 0.5 / 255 + DIGITS
    wait_for_cell_key(page, "cross:2:mean:2:3")
    calls = []
    page.on("request", lambda r: calls.append(r.url) if "/gradio_api/" in r.url else None)
    drawn = int(page.locator("#rg-cell").get_attribute("data-drawn"))
    click_cell(page, "cross", 3, 0)
    ready(page, 3, 0, 0)
    assert int(page.locator("#rg-cell").get_attribute("data-drawn")) == drawn + 1
    assert_numbers(page, expected(model, trace, "cross", 1, 0, 3, 0))
    page.select_option("#rg-cell-head", label="3")  # the panel's head picker (labels are 1-based)
    ready(page, 3, 0, 2)
    assert_numbers(page, expected(model, trace, "cross", 1, 2, 3, 0))
    expect(page.locator("#rg-cell")).to_have_attribute("data-loads", "1")
    assert calls == []  # a later click in the layer, and another head, asked nothing
    with page.expect_download() as download:
        page.click("#rg-cell-json")
    data = json.loads(open(download.value.path(), encoding="utf-8").read())
    assert (data["kind"], data["layer"], data["head"], data["query"]["index"], data["key"]["index"]) == ("cross", 2, 3, 4, 1)
    np.testing.assert_allclose(data["weighted_sum"], expected(model, trace, "cross", 1, 2, 3, 0)["sum"], atol=1e-6)
    wait_for_cell_key(page, "cross:2:3:4:1")
    assert cell_key(page.url) == "cross:2:3:4:1"
    page.reload()  # the same address: the panel is back, on the head that was picked
    ready(page, 3, 0, 2)
    expect(page.locator("#rg-cell-status")).to_be_hidden()  # head 3 as picked, not "the mean's head 1"
    assert_numbers(page, expected(model, trace, "cross", 1, 2, 3, 0))


def show_map(page, kind: str, layer: int, head: int) -> None:
    """The Attention view on one map; layer and head 1-based, as the page's labels."""
    page.select_option("#rg-kind", kind)
    # labels, not values: playwright matches either, and the options' values are 0-based
    page.select_option("#rg-layer", label=str(layer))
    page.select_option("#rg-head", label=str(head))


def test_decoder_self_and_encoder_cells_open_too_and_fit_a_phone(page, model, trace):
    translate(page, SENTENCE)
    page.click("#rg-views button[data-view=attention]")
    show_map(page, "decoder", 1, 2)
    click_cell(page, "attention", 3, 1)
    ready(page, 3, 1, 1)
    assert_numbers(page, expected(model, trace, "decoder_self", 0, 1, 3, 1))
    click_cell(page, "attention", 1, 3)  # above the diagonal: masked
    ready(page, 1, 3, 1)
    expect(page.locator("#rg-cell-status")).to_contain_text("masked")
    assert shown(page, "weight") == 0.0
    show_map(page, "encoder", 2, 4)
    click_cell(page, "attention", 4, 2)
    ready(page, 4, 2, 3)
    assert_numbers(page, expected(model, trace, "encoder", 1, 3, 4, 2))
    expect(page.locator("#rg-cell")).to_have_attribute("data-loads", "2")  # one answer per layer opened
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the vectors wrap, the chart shrinks
    page.wait_for_function("document.querySelector('#rg-cell-fig canvas').getBoundingClientRect().right <= 390")  # redrawn
    panel = page.locator("#rg-cell").bounding_box()
    assert panel["x"] >= 0 and panel["x"] + panel["width"] <= 390
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    chart = page.locator("#rg-cell-fig canvas").bounding_box()
    assert chart["height"] > 200 and chart["x"] + chart["width"] <= 390


def test_a_pointer_over_a_map_fetches_its_layer_before_the_click(page, model, trace):
    translate(page, SENTENCE)
    page.click("#rg-views button[data-view=attention]")
    show_map(page, "cross", 2, 1)
    box = page.locator('figure[data-fig="attention"] canvas').bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # over the map, no click
    page.wait_for_function("regard.cell.loads === 1")
    assert page.evaluate("regard.cell.open") is None  # nothing opened: the layer is only at hand
    page.mouse.move(box["x"] + box["width"] / 2 + 3, box["y"] + box["height"] / 2)  # more moves ask nothing again
    click_cell(page, "attention", 2, 1)
    ready(page, 2, 1, 0)
    assert page.evaluate("regard.cell.loads") == 1 and page.evaluate("regard.cell.drawn") >= 1
