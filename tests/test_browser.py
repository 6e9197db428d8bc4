"""The app in a real browser (Debian chromium through playwright): translate, step, and look at every tab.

A failing test leaves a full-page screenshot in test-artifacts/<test name>.png.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SENTENCE = "le chat mange une pomme sur le canapé"
TIMEOUT_MS = 30_000

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

pytestmark = [
    pytest.mark.browser,
    # Locally a missing browser is a skip; in CI, which installs it, the tests run and fail without it.
    pytest.mark.skipif(not CHROMIUM.exists() and not IN_CI,
                       reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect


@pytest.fixture(scope="module")
def url(served_app) -> str:
    return served_app.local_url


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"CI=true but {CHROMIUM} is missing: install Debian's chromium (scripts/test.sh does)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, url, request):
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#rg-step-cross .js-plotly-plot")  # the app has drawn its first figures
    failed_before = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed_before:  # the call phase is reported before fixture teardown
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    page.close()


@pytest.fixture(scope="module")
def expected(tiny_checkpoint):
    from model.checkpoint import load_checkpoint
    from model.decoding import trace_translation

    ckpt = load_checkpoint(tiny_checkpoint)
    return trace_translation(ckpt.model, ckpt.tokenizer, SENTENCE)


def translate(page, text: str) -> None:
    page.fill("#rg-source textarea", text)
    page.click("#rg-translate")


def heatmap_in(page, elem_id: str):
    """The drawn heatmap image inside one of the app's plots."""
    return page.locator(f"#{elem_id} .js-plotly-plot .main-svg .heatmaplayer image").first


def test_translate_shows_translation_pieces_and_heatmap(page, expected):
    translate(page, SENTENCE)
    expect(page.locator("#rg-translation textarea")).to_have_value(expected.translation)
    chips = page.locator("#rg-pieces")
    expect(chips).to_contain_text(f"source pieces {len(expected.source_pieces)}", ignore_case=True)
    expect(chips).to_contain_text(expected.source_pieces[1])
    expect(heatmap_in(page, "rg-step-cross")).to_be_attached()
    expect(page.locator("#rg-step-cross .gtitle")).to_contain_text("steps 1–1")
    expect(page.locator("#rg-step-info")).to_contain_text(f"1 / {len(expected.steps)}")


def test_step_controls_move_the_views(page, expected):
    translate(page, SENTENCE)
    expect(page.locator("#rg-translation textarea")).to_have_value(expected.translation)
    expect(page.locator("#rg-step-info")).to_contain_text(f"1 / {len(expected.steps)}")
    page.click("#rg-next")
    expect(page.locator("#rg-step-info")).to_contain_text(f"2 / {len(expected.steps)}")
    expect(page.locator("#rg-step-info")).to_contain_text(expected.steps[1].piece)
    expect(page.locator("#rg-topk .gtitle")).to_contain_text("Step 2")
    expect(page.locator("#rg-step-self .gtitle")).to_contain_text("steps 1–2")
    expect(page.locator("#rg-step input[type=number]")).to_have_value("2")
    page.click("#rg-prev")
    expect(page.locator("#rg-step-info")).to_contain_text(f"1 / {len(expected.steps)}")


def test_play_advances_through_the_steps(page, expected):
    translate(page, SENTENCE)
    expect(page.locator("#rg-translation textarea")).to_have_value(expected.translation)
    page.click("#rg-play")
    expect(page.locator("#rg-step-info")).to_contain_text(f"3 / {len(expected.steps)}")
    page.click("#rg-play")  # pause
    expect(page.locator("#rg-play")).to_contain_text("Play")


def test_positional_tab_draws_the_encodings(page):
    page.get_by_role("tab", name="Positional encodings").click()
    for elem_id in ("rg-pe-matrix", "rg-pe-similarity", "rg-pe-sentence"):
        expect(heatmap_in(page, elem_id)).to_be_attached()
    expect(page.locator("#rg-pe-curves .scatterlayer .trace").first).to_be_attached()


def test_attention_tab_grid_of_heads(page, expected):
    page.get_by_role("tab", name="Attention").click()
    page.get_by_label("Encoder self-attention").check()
    expect(page.locator("#rg-attention .gtitle")).to_contain_text("Encoder self-attention")
    page.locator("#rg-attention-head input").click()
    page.get_by_role("option", name="all heads (grid)").click()
    expect(page.locator("#rg-attention .heatmaplayer image")).to_have_count(4)  # the tiny model's 4 heads


def test_latency_and_memory_are_measured(page):
    translate(page, SENTENCE)
    page.get_by_role("tab", name="Latency & memory").click()
    stats = page.locator("#rg-run-stats")
    expect(stats).to_contain_text("decoder")
    decoder_ms = float(re.search(r"DECODER\s*([\d.]+) ms", stats.inner_text(), re.I).group(1))
    rss = re.search(r"PROCESS RSS\s*([\d.]+) (KiB|MiB|GiB)", stats.inner_text(), re.I)
    assert decoder_ms > 0 and float(rss.group(1)) > 0
    expect(page.locator("#rg-latency .scatterlayer .point").first).to_be_attached()
    expect(page.locator("#rg-latency .gtitle")).to_contain_text(re.compile(r"total [1-9.][\d.]* ms|total 0\.\d*[1-9]"))
    expect(page.locator("#rg-kv .barlayer .point").first).to_be_attached()
    expect(page.locator("#rg-weights .barlayer .point")).to_have_count(4)


def test_bad_input_shows_a_reason_and_keeps_the_text(page):
    too_long = "a" * 1001
    translate(page, too_long)
    expect(page.get_by_text("the limit is 1000", exact=False)).to_be_visible()
    expect(page.locator("#rg-source textarea")).to_have_value(too_long)
    expect(page.locator("#rg-translate")).to_be_enabled()


def test_typed_markup_is_shown_not_run(page):
    page.evaluate("window.__pwned = false")
    translate(page, '<img src=x onerror="window.__pwned = true"> le chat')
    pieces = page.locator("#rg-pieces")
    expect(pieces).to_contain_text("<unk>")  # the tiny vocabulary has no "<": a literal <unk> chip, not a tag
    expect(pieces).to_contain_text("▁chat")
    assert page.locator("#rg-pieces img, #rg-pieces unk").count() == 0
    assert page.evaluate("window.__pwned") is False
