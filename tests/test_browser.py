"""The app in a real browser (Debian chromium through playwright): the explorer runs in the page.

Each translation's trace reaches the page once; stepping, view switches, hover and export must then
work without asking the server again. A failing test leaves a screenshot in test-artifacts/<test>.png.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright import sync_api as playwright_api  # requirements-dev.txt: missing, the suite fails

from model.trace_json import check_trace_json, decode_array

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
    pytest.mark.skipif(not CHROMIUM.exists() and not IN_CI, reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]

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


def open_page(browser, url: str, request, fragment: str = "", viewport=(1440, 1000)):
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]}, accept_downloads=True)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url + fragment, wait_until="domcontentloaded")
    page.wait_for_selector("#rg-explorer figure canvas")  # the first trace has arrived and is drawn
    request.node.page = page
    return page


@pytest.fixture
def page(browser, url, request):
    page = open_page(browser, url, request)
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
    loads = int(page.locator("#rg-explorer").get_attribute("data-loads") or 0)
    page.fill("#rg-source textarea", text)
    page.click("#rg-translate")
    expect(page.locator("#rg-explorer")).to_have_attribute("data-loads", str(loads + 1))


def figures(page) -> dict:
    return page.evaluate("window.regard.figures()")


def test_translate_draws_the_trace(page, expected):
    translate(page, SENTENCE)
    expect(page.locator("#rg-translation textarea")).to_have_value(expected.translation)
    expect(page.locator("#rg-src-count")).to_have_text(str(len(expected.source_pieces)))
    expect(page.locator("#rg-step-info")).to_contain_text(f"1 / {len(expected.steps)}")
    for fig in ("cross", "topk", "self"):
        assert page.locator(f"figure[data-fig={fig}] canvas").bounding_box()["height"] > 100
    assert figures(page)["cross"]["rows"][0] == f"<s> → {expected.steps[0].piece}"  # the one-position shift, in words
    expect(page.locator("#rg-caption")).to_contain_text("reads <s>")


def test_next_and_keyboard_move_every_map_without_the_server(page, expected):
    translate(page, SENTENCE)
    calls = []
    page.on("request", lambda r: calls.append(r.url) if "/gradio_api/" in r.url else None)
    page.click("#rg-next")
    expect(page.locator("#rg-explorer")).to_have_attribute("data-step", "1")
    page.locator("body").press("ArrowRight")
    expect(page.locator("#rg-explorer")).to_have_attribute("data-step", "2")
    expect(page.locator("#rg-tgt-chips .rg-current")).to_have_text(re.compile(re.escape(expected.steps[2].piece.lstrip("▁"))))
    assert {f["cur"] for name, f in figures(page).items() if name != "topk"} == {2}
    page.click("#rg-prev")
    expect(page.locator("#rg-step-info")).to_contain_text(f"2 / {len(expected.steps)}")
    assert calls == []  # stepping never asked the server


def test_play_advances_and_pauses(page, expected):
    translate(page, SENTENCE)
    page.click("#rg-play")
    expect(page.locator("#rg-explorer")).to_have_attribute("data-step", "2")
    page.click("#rg-play")
    expect(page.locator("#rg-play")).to_contain_text("Play")


def test_views_and_tabs_keep_full_width_after_stepping(page):
    page.click("#rg-next")
    host_width = page.locator("#rg-figures").bounding_box()["width"]
    for view in ("attention", "cost", "step"):
        page.click(f"#rg-views button[data-view={view}]")
        first = page.locator("#rg-figures figure canvas").first
        assert first.bounding_box()["width"] > 0.9 * host_width - 20
    page.get_by_role("tab", name="Model", exact=True).click()
    expect(page.locator("#rg-model-facts")).to_contain_text("tiny-pre")
    page.get_by_role("tab", name="Translate & explore").click()
    page.locator("body").press("ArrowRight")
    canvas = page.locator("figure[data-fig=cross] canvas")
    expect(canvas).to_be_visible()
    assert canvas.bounding_box()["width"] > 0.9 * page.locator("#rg-figures").bounding_box()["width"] - 20


def test_url_state_opens_that_view(browser, url, request, expected):
    fragment = f"#s={quote(SENTENCE)}&step=3&view=attention&kind=encoder&layer=1&head=2&scale=auto"
    page = open_page(browser, url, request, fragment)
    expect(page.locator("#rg-translation textarea")).to_have_value(expected.translation)
    expect(page.locator("#rg-explorer")).to_have_attribute("data-step", "2")
    state = page.evaluate("({view: regard.state.view, kind: regard.state.kind, layer: regard.state.layer, "
                          "head: regard.state.head, scale: regard.state.scale})")
    assert state == {"view": "attention", "kind": "encoder", "layer": 0, "head": 1, "scale": "auto"}
    assert page.locator("#rg-head").input_value() == "1" and page.locator("#rg-layer").input_value() == "0"
    page.click("#rg-next")
    assert "step=4" in page.evaluate("location.hash")  # the address follows the view, ready to share
    page.close()


def test_export_svg_and_json(page, expected):
    translate(page, SENTENCE)
    with page.expect_download() as svg:
        page.click("figure[data-fig=cross] button[data-export=svg]")
    text = Path(svg.value.path()).read_text()
    assert text.startswith("<svg") and text.count("<rect") > len(expected.source_pieces) * len(expected.steps)
    with page.expect_download() as png:
        page.click("figure[data-fig=cross] button[data-export=png]")
    assert Path(png.value.path()).read_bytes()[:4] == b"\x89PNG"
    with page.expect_download() as js:
        page.click("#rg-export-json")
    data = json.loads(Path(js.value.path()).read_text())
    check_trace_json(data)
    s, t = len(expected.source_pieces), len(expected.steps)
    assert decode_array(data["attention"]["cross"]).shape == (2, 4, t, s)
    assert data["translation"] == expected.translation


def test_hovering_a_piece_links_every_map(page):
    translate(page, SENTENCE)
    page.locator("#rg-src-chips .rg-chip").nth(2).hover()
    expect(page.locator("#rg-src-chips .rg-chip.rg-linked")).to_have_count(1)
    assert figures(page)["cross"]["hiCol"] == 2
    page.locator("#rg-tgt-chips .rg-chip").nth(1).hover()
    f = figures(page)
    assert f["cross"]["hiRow"] == 1 and f["self"]["hiRow"] == 1


def test_clicking_a_cell_says_query_key_and_weight(page):
    translate(page, SENTENCE)
    box = page.locator("figure[data-fig=cross] canvas").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + 60)
    expect(page.locator("figure[data-fig=cross] .rg-readout")).to_contain_text(re.compile(r"step \d+ .*→ source .*weight \d\.\d{3}"))


def test_forty_token_sentence_keeps_thinned_labels(page):
    words = "le chat mange une pomme sur le canapé il fait très beau nous allons à la plage demain".split()
    translate(page, " ".join((words * 3)[:40]))
    page.click("#rg-views button[data-view=attention]")
    page.select_option("#rg-kind", "encoder")
    n = int(page.locator("#rg-src-count").inner_text())
    assert n >= 40
    with page.expect_download() as svg:
        page.click("figure[data-fig=attention] button[data-export=svg]")
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", Path(svg.value.path()).read_text())
    assert len(labels) >= n  # rows and columns both labelled (every label, or every k-th when cells are small)


def test_phone_shows_a_figure_within_two_screens(browser, url, request):
    page = open_page(browser, url, request, viewport=(390, 844))
    top = page.locator("figure[data-fig=cross]").bounding_box()["y"]
    assert top < 2 * 844
    page.close()


def test_example_click_translates_and_errors_clear(page):
    page.fill("#rg-source textarea", " \n ")
    page.click("#rg-translate")
    expect(page.get_by_text("The text is empty", exact=False)).to_be_visible()
    expect(page.locator("#rg-source textarea")).to_have_value(" \n ")  # nothing typed is lost
    loads = int(page.locator("#rg-explorer").get_attribute("data-loads"))
    page.locator("#rg-examples button").nth(1).click()
    expect(page.locator("#rg-explorer")).to_have_attribute("data-loads", str(loads + 1))
    expect(page.locator("#rg-source textarea")).to_have_value("Je mange une pomme.")
    expect(page.get_by_text("The text is empty", exact=False)).to_have_count(0)


def test_max_len_stop_is_announced(browser, url, request):
    page = open_page(browser, url, request, f"#s={quote(SENTENCE)}&max=2")
    expect(page.locator("#rg-maxlen")).to_contain_text("length limit")
    page.close()


def test_model_picker_and_compare_view(browser, url, request):
    page = open_page(browser, url, request, f"#s={quote(SENTENCE)}&model=tiny-pre")
    expect(page.locator("#rg-model input")).to_have_value("tiny-pre")
    assert page.evaluate("regard.state.trace.model") == "tiny-pre"
    page.get_by_role("tab", name="Compare models").click()
    page.click("#rg-compare-run")
    expect(page.locator(".rg-compare-name")).to_have_text(["tiny", "tiny-pre"])
    assert page.locator("#rg-compare canvas").first.bounding_box()["width"] > 200
    page.close()


def test_picking_the_other_model_translates_with_it(page, expected, tiny_checkpoint_b):
    """Issue 7: the picker switches models and the translation changes to the other model's."""
    from model.checkpoint import load_checkpoint
    from model.decoding import trace_translation

    other = load_checkpoint(tiny_checkpoint_b)
    other_text = trace_translation(other.model, other.tokenizer, SENTENCE).translation
    assert other_text != expected.translation  # two different models: the test can tell them apart
    translate(page, SENTENCE)
    assert page.evaluate("regard.state.trace.translation") == expected.translation
    page.click("#rg-model input")
    page.get_by_role("option", name="tiny-pre").click()
    expect(page.locator("#rg-model input")).to_have_value("tiny-pre")
    translate(page, SENTENCE)
    assert page.evaluate("regard.state.trace.model") == "tiny-pre"
    assert page.evaluate("regard.state.trace.translation") == other_text
    expect(page.locator("#rg-translation textarea")).to_have_value(other_text)


def test_typed_markup_is_shown_not_run(page):
    page.evaluate("window.__pwned = false")
    translate(page, '<img src=x onerror="window.__pwned = true"> le chat')
    chips = page.locator("#rg-src-chips")
    expect(chips).to_contain_text("<unk>")  # the tiny vocabulary has no "<": a literal <unk> chip, not a tag
    assert page.locator("#rg-explorer img").count() == 0
    assert page.evaluate("window.__pwned") is False


def test_int8_toggle_runs_the_quantised_model_and_shows_both_weight_sizes(page, expected):
    translate(page, SENTENCE)
    expect(page.locator("#rg-weights-ran")).to_have_text("fp32 weights")
    page.locator("#rg-weights").get_by_label("int8 (dynamic)").check()
    translate(page, SENTENCE)
    expect(page.locator("#rg-weights-ran")).to_have_text("int8 weights")
    assert page.evaluate("regard.state.trace.weights") == "int8" and "weights=int8" in page.evaluate("location.hash")
    by = page.evaluate("regard.state.trace.weight_bytes_by_format")
    assert 0 < by["int8"] < by["fp32"]
    page.click("#rg-views button[data-view=cost]")
    expect(page.locator("#rg-stats")).to_contain_text(re.compile(r"fp32 [\d.]+ KiB · int8 [\d.]+ KiB"))
    page.click("#rg-weights-compare")  # fp32 and int8 on this sentence, latency lines overlaid
    expect(page.locator("#rg-stats")).to_contain_text("greedy, int8 weights")
    assert [r["weights"] for r in page.evaluate("regard.state.runs")] == ["fp32", "int8"]
