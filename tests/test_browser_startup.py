"""A first visit on a cold server: nothing typed or pressed before the page's own start-up is lost.

The page translates the address's sentence (or the default one) when it loads. A visitor who types and
presses Translate before that answer arrives must keep their sentence and its translation. To make the
race certain instead of 1 load in 3, the start-up request (the load event's ``queue/join``) is held in
the browser until the visitor has acted, then let through.

Fixtures come from tests/test_browser.py (the browser, skip marks); the server here is this module's
own, started cold (no warm-up, empty cache).
"""
from __future__ import annotations

import json

import pytest
from test_browser import TIMEOUT_MS, browser, expect, pytestmark  # noqa: F401  (fixtures and skip marks)

from conftest import free_port

MINE = "le chat mange une pomme"
# the start-up answer was handled: marked by the fixed page, or (old page) drawn as one more trace
STARTED = ("document.documentElement.dataset.rgStarted"
           " || +(document.querySelector('#rg-explorer').dataset.loads || 0) >= {}")


@pytest.fixture(scope="module")
def cold_app(tiny_checkpoint, tiny_checkpoint_b):
    """A freshly started app: new context, nothing run or cached yet."""
    from ui.context import load_context
    from ui.layout import build_demo

    demo = build_demo(load_context([tiny_checkpoint, tiny_checkpoint_b], device="cpu"))
    demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True)
    load_fn = next(fn._id for fn in demo.fns.values() if any(t[1] == "load" for t in fn.targets))
    try:
        yield demo.local_url, load_fn
    finally:
        demo.close()


@pytest.fixture(scope="module")
def mine(tiny_checkpoint):
    from model.checkpoint import load_checkpoint
    from model.decoding import trace_translation

    ckpt = load_checkpoint(tiny_checkpoint)
    return trace_translation(ckpt.model, ckpt.tokenizer, MINE).translation


class HeldStartUp:
    """Holds the page's start-up request (the load event joining the queue) until ``release``."""

    def __init__(self, page, load_fn: int) -> None:
        self.load_fn, self.held = load_fn, []
        page.route("**/gradio_api/queue/join*", self.handle)

    def handle(self, route) -> None:
        body = json.loads(route.request.post_data or "{}")
        if body.get("fn_index") == self.load_fn:
            self.held.append(route)
        else:
            route.continue_()

    def release(self) -> None:
        assert len(self.held) == 1  # the start-up was really waiting while the visitor acted
        self.held.pop().continue_()


def cold_page(browser, cold_app):
    url, load_fn = cold_app
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    held = HeldStartUp(page, load_fn)
    page.goto(url, wait_until="commit")
    page.locator("#rg-source textarea").wait_for()  # type as soon as the box appears
    return page, held


def test_typed_sentence_and_its_translation_survive_a_late_start_up(browser, cold_app, mine):
    page, held = cold_page(browser, cold_app)
    page.fill("#rg-source textarea", MINE)
    page.click("#rg-translate")
    expect(page.locator("#rg-translation textarea")).to_have_value(mine)
    held.release()
    page.wait_for_function(STARTED.format(2))  # the visitor's translation, then the start-up's
    expect(page.locator("#rg-source textarea")).to_have_value(MINE)
    expect(page.locator("#rg-translation textarea")).to_have_value(mine)
    assert page.evaluate("regard.state.trace.source_text") == MINE
    page.close()


def test_typed_sentence_is_kept_and_the_start_up_result_marked_stale(browser, cold_app, mine):
    page, held = cold_page(browser, cold_app)
    page.fill("#rg-source textarea", MINE)
    held.release()
    page.wait_for_function(STARTED.format(1))
    expect(page.locator("#rg-source textarea")).to_have_value(MINE)
    expect(page.locator("#rg-stale")).to_contain_text("The French was edited")  # the figures are the default's
    page.locator("#rg-source textarea").press("Enter")
    expect(page.locator("#rg-translation textarea")).to_have_value(mine)
    expect(page.locator("#rg-stale")).to_be_hidden()
    page.close()
