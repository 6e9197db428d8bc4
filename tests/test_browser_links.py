"""Crafted links in a real browser: a shared address cannot put HTML into Regard's page.

The page reads its model, sentence and settings from the address; a value that is refused comes back
as an error pop-up that repeats it. Each link below must leave no element the app did not create
(no foreign link, no image), and the refused value must show as the text it is.
Fixtures come from tests/test_browser.py (the browser, the served app, the skip marks).
"""
from __future__ import annotations

from urllib.parse import quote

import pytest
from test_browser import TIMEOUT_MS, browser, expect, pytestmark, url  # noqa: F401  (fixtures and skip marks)

LINK = '<a href="https://evil.example/login">Session expired, sign in again</a>'
IMAGE = "<img src=x onerror=alert(1)>"
# name -> (what follows the address, the refused value the pop-up must show as text)
CRAFTED = {
    "model-link": (f"#model={quote(LINK)}", LINK),
    "model-image": (f"#model={quote(IMAGE)}", IMAGE),
    "sentence-and-model": (f"#s={quote(LINK)}&model={quote(IMAGE)}", IMAGE),
}
FOREIGN = ("a[href*='evil.example'], img[src='x'], #rg-explorer ~ script:not([src]), "
           "[onerror], iframe, object, embed")


@pytest.mark.parametrize("name", list(CRAFTED))
def test_a_crafted_link_adds_no_element_and_shows_its_text(browser, url, name):
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        suffix, shown = CRAFTED[name]
        page.goto(url + suffix, wait_until="domcontentloaded")
        # the pop-up repeats (the start of) the refused value, as text
        expect(page.locator("[data-testid=toast-body]").first).to_contain_text(shown[:40])
        assert page.locator(FOREIGN).count() == 0
        assert dialogs == []  # no script ran
    finally:
        page.close()
