"""Every control of the explorer tab, used as a person uses it, under the server's hardening.

Fixtures come from tests/test_browser.py (the served tiny app, the browser, a page that leaves a
screenshot in test-artifacts/ when a test fails).
"""
from __future__ import annotations

import re
from pathlib import Path

from test_browser import SENTENCE, browser, expect, open_page, page, pytestmark, translate, url  # noqa: F401

SOURCE = "#rg-source textarea"


def closed_route_hits(page) -> list[str]:
    """Requests the page made that the server answered 404 (a queue=False event posts to a closed route)."""
    hits: list[str] = []
    page.on("response", lambda r: hits.append(r.url) if r.status == 404 and "/gradio_api/" in r.url else None)
    return hits


def test_beam_search_shows_its_sliders_and_translates_with_the_chosen_size(page):
    hits = closed_route_hits(page)
    page.get_by_text("Decoding settings").click()
    expect(page.locator("#rg-beam")).to_be_hidden()
    page.locator("#rg-settings").get_by_label("Beam search").check()
    expect(page.locator("#rg-beam")).to_be_visible()
    expect(page.locator("#rg-lp")).to_be_visible()
    page.fill("#rg-beam input[type=number]", "3")
    page.locator("#rg-beam input[type=number]").press("Tab")
    translate(page, SENTENCE)
    assert page.evaluate("regard.state.trace.beam_size") == 3
    page.locator("#rg-settings").get_by_label("Greedy").check()
    expect(page.locator("#rg-beam")).to_be_hidden()
    assert hits == []


def test_header_names_the_model_the_picker_shows(page, browser, url, request):
    hits = closed_route_hits(page)
    badge = page.locator("#rg-header .rg-badge").first
    expect(badge).to_have_text("tiny")
    page.click("#rg-model input")
    page.get_by_role("option", name="tiny-pre").click()
    expect(badge).to_have_text("tiny-pre")
    assert hits == []
    linked = open_page(browser, url, request, "#model=tiny-pre")  # a shared post-LN link, opened afresh
    expect(linked.locator("#rg-header .rg-badge").first).to_have_text("tiny-pre")
    linked.close()


def test_enter_translates_and_shift_enter_starts_a_new_line(page):
    loads = int(page.locator("#rg-explorer").get_attribute("data-loads"))
    page.fill(SOURCE, SENTENCE)
    page.locator(SOURCE).press("Shift+Enter")
    expect(page.locator(SOURCE)).to_have_value(SENTENCE + "\n")
    page.locator(SOURCE).press("Enter")
    expect(page.locator("#rg-explorer")).to_have_attribute("data-loads", str(loads + 1))
    expect(page.locator(SOURCE)).to_have_value(SENTENCE + "\n")  # Enter added no line break
    assert page.evaluate("regard.state.trace.source_text") == SENTENCE + "\n"


def test_an_edit_marks_the_result_stale_and_an_error_clears_it(page):
    translate(page, SENTENCE)
    expect(page.locator("#rg-stale")).to_be_hidden()
    page.locator(SOURCE).press_sequentially(" demain")
    expect(page.locator("#rg-stale")).to_contain_text("The French was edited")
    expect(page.locator("#rg-explorer")).to_have_class("rg-stale")
    page.fill(SOURCE, "   ")
    page.click("#rg-translate")
    expect(page.get_by_text("The text is empty", exact=False)).to_be_visible()
    expect(page.locator("#rg-translation textarea")).to_have_value("")
    expect(page.locator("#rg-stale")).to_contain_text("The last translation failed")
    translate(page, SENTENCE)
    expect(page.locator("#rg-stale")).to_be_hidden()
    expect(page.locator("#rg-explorer")).not_to_have_class("rg-stale")


LONG = " ".join(["Le chat mange une pomme.", "Il fait très beau.", "Nous allons à la plage demain."] * 75)


def test_a_long_paste_is_translated_in_pieces_with_nothing_cut(page):
    assert 5000 < len(LONG) < 10_000
    translate(page, LONG)
    expect(page.locator(SOURCE)).to_have_value(LONG)  # the box kept every character
    pieces = page.evaluate("regard.state.trace.pieces")
    assert " ".join(p["source"] for p in pieces) == LONG
    expect(page.locator("#rg-translation textarea")).to_have_value(" ".join(p["translation"] for p in pieces))
    expect(page.locator("#rg-pieces")).to_contain_text(f"translated in {len(pieces)} pieces")
    expect(page.locator("#rg-stale")).to_be_hidden()  # the figures are for this text (its first piece)


def test_a_paste_longer_than_the_box_says_what_it_kept(page):
    page.evaluate("""() => { const a = document.querySelector('#rg-source textarea'); a.focus(); a.select();
        const dt = new DataTransfer(); dt.setData('text/plain', 'x'.repeat(12000));
        a.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true})); }""")
    expect(page.locator("#rg-cut")).to_contain_text("12,000 characters")
    expect(page.locator("#rg-cut")).to_contain_text("only the first 10,000 were kept")


def test_exports_are_named_and_titled_after_what_they_show(page):
    translate(page, SENTENCE)
    page.click("#rg-next")
    page.select_option("#rg-head", label="2")  # head 2
    with page.expect_download() as svg:
        page.click("figure[data-fig=cross] button[data-export=svg]")
    name = "regard-tiny-le-chat-mange-une-pomme-sur-le-canape"  # model, then the sentence without accents
    assert svg.value.suggested_filename == f"{name}-cross-step2-layer2-head2.svg"
    text = Path(svg.value.path()).read_text()
    english = page.evaluate("regard.state.trace.translation")
    assert f"“{SENTENCE}”" in text and "model tiny · fp32 weights · step 2 of" in text and "layer 2 · head 2" in text
    assert english.split()[0] in text
    with page.expect_download() as png:
        page.click("figure[data-fig=topk] button[data-export=png]")
    assert png.value.suggested_filename == f"{name}-topk-step2.png"
    with page.expect_download() as js:
        page.click("#rg-export-json")
    assert js.value.suggested_filename == f"{name}.json"


def test_first_view_is_the_best_aligning_head_and_says_so(page, app_context, monkeypatch):
    f1 = [[0.1, 0.2, 0.3, 0.4], [0.5, 0.9, 0.2, 0.1]]  # tiny: 2 decoder layers x 4 heads; best: layer 2, head 2
    record = {"head_f1": f1, "aligner": "eflomal", "scored_pairs": 500}
    monkeypatch.setitem(app_context.default.ckpt.training, "head_alignment", record)
    translate(page, "le chien dort sur la plage demain")  # a sentence no other test translated: not cached
    assert page.evaluate("[regard.state.layer, regard.state.head]") == [1, 1]
    assert page.evaluate("regard.figures().cross") is not None
    expect(page.locator("#rg-best-head")).to_contain_text("layer 2, head 2")
    expect(page.locator("#rg-best-head")).to_contain_text("F1 0.90 against eflomal on 500 sentence pairs")
    page.select_option("#rg-head", "mean")  # the visitor's choice then stays, and the note goes
    expect(page.locator("#rg-best-head")).to_have_count(0)


def test_step_bar_stays_in_view_while_scrolling_to_the_lower_figures(page):
    page.locator("figure[data-fig=self]").scroll_into_view_if_needed()
    page.mouse.wheel(0, 300)
    bar = page.locator("#rg-stepbar").bounding_box()
    assert 0 <= bar["y"] < 60 and page.evaluate("window.scrollY") > 300  # the page scrolled, the bar stayed on top


def test_figures_and_controls_say_what_they_show(page, browser, url, request):
    self_box = page.locator("figure[data-fig=self]")
    with page.expect_download() as svg:
        self_box.locator("button[data-export=svg]").click()
    svg_text = Path(svg.value.path()).read_text()
    title = re.search(r'<text x="4" y="12" font-size="13" font-weight="600"[^>]*>([^<]*)</text>', svg_text).group(1)
    room = self_box.bounding_box()["width"] - 92  # the PNG/SVG buttons sit in the figure's top right corner
    width = page.evaluate("(t) => { const g = document.createElement('canvas').getContext('2d'); "
                          "g.font = '600 13px Inter, ui-sans-serif, system-ui, -apple-system, Segoe UI, Roboto, sans-serif'; "
                          "return g.measureText(t).width; }", title)
    assert width <= room
    page.click("#rg-views button[data-view=attention]")
    expect(page.locator("#rg-caption")).to_contain_text("In the map below")
    page.click("#rg-views button[data-view=cost]")
    for control in ("#rg-layer", "#rg-head", "#rg-scale"):
        expect(page.locator(control)).to_be_hidden()  # nothing in the latency view is a map
    widths = set()
    for tab in ("Translate & explore", "Compare models", "What if", "Positional encodings", "Model"):
        page.get_by_role("tab", name=tab, exact=True).click()
        widths.add(round(page.locator(".gradio-container").bounding_box()["width"]))
    assert len(widths) == 1  # the page keeps one width on every tab


TABS = ("Translate & explore", "Compare models", "What if", "Positional encodings", "Model")


def open_tab(page, name: str, tabs: str = "#rg-tabs") -> None:
    """Click a tab of ``tabs``; on a phone Gradio folds the tabs that do not fit into its "More tabs" menu."""
    strip = page.locator(f"{tabs} > .tab-wrapper")
    tab = strip.get_by_role("tab", name=name, exact=True)
    if tab.count() and tab.is_visible():
        tab.click()
        return
    strip.get_by_role("button", name="More tabs").click()
    strip.locator(".overflow-dropdown").get_by_role("button", name=name, exact=True).click()


# Elements whose right edge passes the viewport's and that no scrolling (or clipping) box within the
# viewport holds: what a person would have to pan to, or would never see (the page clips, not pans).
OFF_SCREEN = """() => Array.from(document.querySelectorAll('.gradio-container *')).filter((e) => {
    const r = e.getBoundingClientRect();
    if (!r.width || r.right <= innerWidth + 1) return false;
    for (let a = e.parentElement; a; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX, box = a.getBoundingClientRect();
      if (['auto', 'scroll', 'hidden'].includes(o) && box.right <= innerWidth + 1) return false;
    }
    return true;
  }).map((e) => e.tagName + '#' + e.id + '.' + String(e.className).slice(0, 30)).slice(0, 5)"""


def test_phone_fits_the_screen_width_on_every_tab(browser, url, request):
    page = open_page(browser, url, request, "#s=le%20chat%20dort", viewport=(390, 844))  # a short sentence
    assert page.locator("figure[data-fig=cross]").bounding_box()["y"] < 844  # the first map starts on the first screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 and page.evaluate(OFF_SCREEN) == []
    for name in TABS:
        open_tab(page, name)
        page.wait_for_timeout(200)  # let the tab lay out
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, name
        assert page.evaluate(OFF_SCREEN) == [], name
    open_tab(page, "What if")
    open_tab(page, "Beam tree", "#wi-tabs")
    page.click("#wi-beam-run")
    expect(page.locator("#wi-beam g[data-node]").first).to_be_attached()
    assert page.evaluate(OFF_SCREEN) == []  # the tree scrolls in its own box
    page.close()


def test_a_broken_link_says_so_and_the_page_still_translates(browser, url):
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(url + "#s=le%20chat&lp=nan")
    expect(page.get_by_text("not a finite number", exact=False)).to_be_visible()
    expect(page.locator("#rg-explorer")).to_contain_text("Nothing translated yet")
    translate(page, SENTENCE)
    expect(page.locator("#rg-explorer figure canvas").first).to_be_visible()
    page.close()
