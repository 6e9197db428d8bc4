"""The Attribution view in a real browser (Debian chromium through playwright): one request per trace, the map
and the source-share strip under the generated pieces with the numbers attribute() gives on the tiny app model,
stepping while in the view, the method picker, the strip in the other views, the JSON export, and the address
that reopens the view on a phone without sideways scrolling.

Fixtures come from tests/test_browser.py (the served tiny app, the browser, a page that leaves a
screenshot in test-artifacts/ when a test fails).
"""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
from test_browser import browser, expect, open_page, page, pytestmark, translate, url  # noqa: F401  (fixtures and skip marks)

from model.decoding import target_ids, trace_translation
from model.explain.attribution import attribute

SENTENCE = "le chat mange une pomme sur le canapé"
OTHER = "le chien mange sous la table"
CLOSE = 1e-5  # the server's run and this one: the same float32 model, maybe other thread counts


@pytest.fixture(scope="module")
def tiny(app_context):
    return app_context.default.ckpt


@pytest.fixture(scope="module")
def want(tiny):
    """The trace the page shows and what the library gives for it (IG with the page's 32 steps)."""
    trace = trace_translation(tiny.model, tiny.tokenizer, SENTENCE)
    return trace, attribute(tiny.model, trace.source_ids, [s.token_id for s in trace.steps], steps=32)


def shares(page) -> list[float]:
    return page.evaluate("[...document.querySelectorAll('#rg-tgt-chips .rg-attr-cell')].map((c) => +c.dataset.share)")


def ready(page) -> None:
    expect(page.locator("#rg-attr-status")).to_have_attribute("data-state", "ready")


def test_view_shows_map_strip_and_the_library_numbers(page, tiny, want):
    trace, out = want
    n_steps, n_src = len(trace.steps), len(trace.source_pieces)
    translate(page, SENTENCE)
    page.click("#rg-views button[data-view=attribution]")
    page.locator("body").press("ArrowRight")  # stepping is the page's own, answer or not
    expect(page.locator("#rg-explorer")).to_have_attribute("data-step", "1")
    ready(page)
    expect(page.locator("figure[data-fig=attribution]")).to_have_attribute("data-cells", f"{n_steps}x{n_src + 1 + n_steps}")
    expect(page.locator("figure[data-fig=agreement] canvas")).to_be_visible()
    strip = page.locator("#rg-attr-strip")
    ig = out["source_share"]["integrated_gradients"]
    expect(strip).to_have_attribute("data-cells", str(n_steps))
    expect(strip).to_have_attribute("data-low", str(sum(v < 0.5 for v in ig)))
    assert shares(page) == pytest.approx(ig, abs=CLOSE)
    share = page.locator("#rg-attr-share")
    assert float(share.get_attribute("data-share")) == pytest.approx(ig[1], abs=CLOSE)  # step 2, where we are
    page.locator("body").press("ArrowLeft")
    expect(page.locator("#rg-explorer")).to_have_attribute("data-step", "0")
    assert float(share.get_attribute("data-share")) == pytest.approx(ig[0], abs=CLOSE)
    assert figures_cur(page) == 0

    page.select_option("#rg-attr-method", "grad_x_input")
    expect(strip).to_have_attribute("data-method", "gxi")
    assert shares(page) == pytest.approx(out["source_share"]["grad_x_input"], abs=CLOSE)
    assert "attr=gxi" in page.evaluate("location.hash") and "view=attribution" in page.evaluate("location.hash")

    page.click("#rg-views button[data-view=step]")  # the strip stays in every view, and nothing is asked again
    expect(page.locator("figure[data-fig=cross] canvas")).to_be_visible()
    assert len(shares(page)) == n_steps
    page.click("#rg-views button[data-view=attribution]")
    ready(page)
    status = page.locator("#rg-attr-status")
    assert status.get_attribute("data-requests") == "1" and status.get_attribute("data-loads") == "1"

    with page.expect_download() as js:
        page.click("#rg-attr-json")
    data = json.loads(Path(js.value.path()).read_text())
    assert data["source_share"]["integrated_gradients"] == pytest.approx(ig, abs=CLOSE)
    assert data["agreement"]["integrated_gradients"] == pytest.approx(out["agreement"]["integrated_gradients"], abs=1e-3)
    assert data["source_pieces"] == trace.source_pieces and data["method_shown"] == "grad_x_input"

    translate(page, OTHER)  # a new trace while in the view: asked for once more, the strip follows it
    expect(status).to_have_attribute("data-requests", "2")
    ready(page)
    other = trace_translation(tiny.model, tiny.tokenizer, OTHER)
    expect(strip).to_have_attribute("data-cells", str(len(other.steps)))
    gxi = attribute(tiny.model, other.source_ids, [s.token_id for s in other.steps], steps=32)["source_share"]["grad_x_input"]
    assert shares(page) == pytest.approx(gxi, abs=CLOSE)


def figures_cur(page) -> int:
    return page.evaluate("regard.figures().attribution.cur")


def test_the_address_reopens_the_view_on_a_phone(browser, url, request, want):
    trace, out = want
    fragment = f"#s={quote(SENTENCE)}&step=2&view=attribution&attr=gxi"
    page = open_page(browser, url, request, fragment, viewport=(390, 844))
    ready(page)
    assert page.evaluate("regard.state.view") == "attribution"
    assert page.locator("#rg-attr-method").input_value() == "grad_x_input"
    assert shares(page) == pytest.approx(out["source_share"]["grad_x_input"], abs=CLOSE)
    assert figures_cur(page) == 1
    page.locator("figure[data-fig=attribution] canvas").scroll_into_view_if_needed()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways: {width} px wide"
    page.close()


def test_a_forced_prefix_opens_in_the_explorer_with_its_own_share(page, tiny):
    """What if → Force a prefix → "Open in the explorer": the forced trace's pieces (the imposed ones dashed)
    and, in the Attribution view, the source share of the forced ids as attribute() gives it."""
    prefix = "the dog"
    forced = trace_translation(tiny.model, tiny.tokenizer, SENTENCE, prefix=target_ids(tiny.tokenizer, prefix))
    translate(page, SENTENCE)
    page.get_by_role("tab", name="What if").click()
    page.get_by_role("tab", name="Force a prefix").click()
    page.fill("#wi-source textarea, #wi-source input", SENTENCE)
    page.fill("#wi-prefix textarea, #wi-prefix input", prefix)
    page.click("#wi-force-run")
    expect(page.locator("#wi-force")).to_have_attribute("data-loads", "1")
    page.click("#wi-force-explore")
    expect(page.locator("#rg-tgt-chips .rg-chip")).to_have_count(len(forced.steps))
    expect(page.locator("#rg-tgt-chips .rg-chip.rg-forced")).to_have_count(forced.n_forced)
    page.click("#rg-views button[data-view=attribution]")
    ready(page)
    want = attribute(tiny.model, forced.source_ids, [s.token_id for s in forced.steps], steps=32)
    assert shares(page) == pytest.approx(want["source_share"]["integrated_gradients"], abs=CLOSE)
