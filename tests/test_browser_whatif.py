"""The "What if" tab in a real browser (Debian chromium through playwright): forcing a prefix and
branching from a top-k candidate, the beam tree click, the side-by-side compare view and head ablation.

Fixtures come from tests/test_browser.py (the served tiny app, the browser, a page that leaves a
screenshot in test-artifacts/ when a test fails).
"""
from __future__ import annotations

import pytest
import torch
from test_browser import browser, expect, page, pytestmark, translate, url  # noqa: F401  (fixtures and skip marks)

from model.ablation import head_mask
from model.decoding import default_max_len, source_ids, target_ids, trace_translation
from model.generation import Greedy, generate

TEXT = "le chat mange une pomme sur le canapé"
PAIR = ("le chat mange une pomme", "le chat dort une pomme")


@pytest.fixture
def tiny(app_context):
    return app_context.default.ckpt


def open_tab(page, name: str, text: str = TEXT) -> None:
    page.get_by_role("tab", name="What if").click()
    page.get_by_role("tab", name=name).click()
    page.fill("#wi-source textarea, #wi-source input", text)


def test_force_prefix_then_branch_from_a_candidate(page, tiny):
    open_tab(page, "Force a prefix")
    prefix = "the cat"
    page.fill("#wi-prefix textarea, #wi-prefix input", prefix)
    page.click("#wi-force-run")
    expect(page.locator("#wi-force")).to_have_attribute("data-loads", "1")
    n_forced = len(target_ids(tiny.tokenizer, prefix))
    expected = trace_translation(tiny.model, tiny.tokenizer, TEXT, prefix=target_ids(tiny.tokenizer, prefix))
    expect(page.locator("#wi-force .wi-tok.wi-forced")).to_have_count(n_forced)
    expect(page.locator("#wi-force .wi-tok")).to_have_count(len(expected.steps))
    expect(page.locator("#wi-force-translation textarea, #wi-force-translation input")).to_have_value(expected.translation)
    assert page.locator("#wi-force-map").get_attribute("data-cells") == f"{len(expected.steps)}x{len(expected.source_pieces)}"
    # the first step after the prefix is selected: force its second candidate instead
    assert page.locator("#wi-force").get_attribute("data-step") == str(n_forced)
    cand = page.locator("#wi-force .wi-cand:not(.wi-chosen)").first
    token = int(cand.get_attribute("data-token"))
    cand.click()
    expect(page.locator("#wi-force")).to_have_attribute("data-loads", "2")
    branched = trace_translation(tiny.model, tiny.tokenizer, TEXT,
                                 prefix=[s.token_id for s in expected.steps[:n_forced]] + [token])
    expect(page.locator("#wi-force .wi-tok.wi-forced")).to_have_count(n_forced + 1)
    chip = page.locator(f"#wi-force .wi-tok[data-step='{n_forced}']")
    expect(chip).to_have_class("wi-tok wi-forced wi-current")
    expect(page.locator("#wi-force-translation textarea, #wi-force-translation input")).to_have_value(branched.translation)


def test_beam_tree_node_click_shows_its_attention(page, tiny):
    open_tab(page, "Beam tree")
    page.click("#wi-beam-run")
    expect(page.locator("#wi-beam")).to_have_attribute("data-loads", "1")
    trace = trace_translation(tiny.model, tiny.tokenizer, TEXT, beam_size=4)
    expect(page.locator("#wi-beam g[data-node]")).to_have_count(len(trace.tree.nodes))
    pruned = next(n for n in trace.tree.nodes if n.status == "pruned")
    page.click(f"#wi-beam g[data-node='{pruned.id}']")
    info = page.locator("#wi-beam-info")
    expect(info).to_contain_text(f"Step {pruned.step + 1}")
    expect(info).to_contain_text("pruned")
    expect(page.locator(f"#wi-beam g.wi-sel[data-node='{pruned.id}']")).to_have_count(1)
    layers = tiny.config.n_decoder_layers
    assert page.locator("#wi-beam-cross").get_attribute("data-cells") == f"{layers}x{len(trace.source_pieces)}"
    assert page.locator("#wi-beam-self").get_attribute("data-cells") == f"{layers}x{pruned.step + 1}"


def test_compare_two_sentences_with_a_difference_map(page, tiny):
    n_src = [len(source_ids(tiny.model, tiny.tokenizer, t)) for t in PAIR]
    assert n_src[0] == n_src[1]  # the pair is chosen so that the encoder maps have one shape
    open_tab(page, "Compare two sentences")
    page.fill("#wi-text-a textarea", PAIR[0])
    page.fill("#wi-text-b textarea", PAIR[1])
    page.click("#wi-compare-run")
    expect(page.locator("#wi-compare")).to_have_attribute("data-loads", "1")
    for side, text in zip("ab", PAIR):
        expect(page.locator(f"#wi-compare .wi-out[data-side={side}]")).to_have_text(
            trace_translation(tiny.model, tiny.tokenizer, text).translation)
    page.select_option("#wi-compare select[data-sel=kind]", "encoder")
    assert page.locator("#wi-cmp-diff").get_attribute("data-cells") == f"{n_src[0]}x{n_src[0]}"
    page.select_option("#wi-compare select[data-sel=head]", "1")  # the same control drives both maps
    assert page.locator("#wi-cmp-a").get_attribute("data-cells") == page.locator("#wi-cmp-b").get_attribute("data-cells")


def test_ablation_grid_picks_heads_and_retranslates(page, tiny):
    open_tab(page, "Switch heads off")
    page.click("#wi-ablate-run")
    expect(page.locator("#wi-ablate")).to_have_attribute("data-loads", "1")
    expect(page.locator("#wi-grids button[data-head]")).to_have_count(3 * 2 * 4)  # kinds x layers x heads
    page.click("#wi-grids button[data-head='cross:1:1']")
    page.click("#wi-grids button[data-head='cross:2:3']")
    expect(page.locator("#wi-heads textarea, #wi-heads input")).to_have_value("cross:1:1 cross:2:3")
    page.click("#wi-ablate-run")
    expect(page.locator("#wi-ablate")).to_have_attribute("data-loads", "2")
    ids = source_ids(tiny.model, tiny.tokenizer, TEXT)
    gen = generate(tiny.model, torch.tensor([ids]), Greedy(), default_max_len(tiny.model, len(ids)),
                   head_mask=head_mask(tiny.model, [("cross", 0, 0), ("cross", 1, 2)]))
    expect(page.locator("#wi-abl-ablated")).to_have_text(tiny.tokenizer.decode(gen.hypotheses[0].tokens))
    expect(page.locator("#wi-grids button.wi-off")).to_have_count(2)
    expect(page.locator("#wi-abl-steps tr")).not_to_have_count(1)


def test_what_if_opens_on_the_sentence_just_translated_and_its_model(page):
    page.click("#rg-model input")
    page.get_by_role("option", name="tiny-pre").click()
    translate(page, TEXT)
    page.get_by_role("tab", name="What if").click()
    expect(page.locator("#wi-source textarea, #wi-source input")).to_have_value(TEXT)
    expect(page.locator("#wi-model input")).to_have_value("tiny-pre")
    page.fill("#wi-source textarea, #wi-source input", PAIR[0])  # changed here: kept on the next visit
    page.get_by_role("tab", name="Translate & explore").click()
    translate(page, PAIR[1])
    page.get_by_role("tab", name="What if").click()
    expect(page.locator("#wi-source textarea, #wi-source input")).to_have_value(PAIR[0])


def test_what_if_maps_share_the_explorer_colours_with_a_bar_and_a_png_export(page):
    open_tab(page, "Compare two sentences")
    page.fill("#wi-text-a textarea", PAIR[0])
    page.fill("#wi-text-b textarea", PAIR[1])
    page.click("#wi-compare-run")
    expect(page.locator("#wi-compare")).to_have_attribute("data-loads", "1")
    assert page.evaluate("[0, 0.3, 0.7, 1].every((v) => whatif.shade(v) === regard.lib.colour(v))")
    assert page.locator("#wi-cmp-a").get_attribute("data-bar").startswith("0-")
    assert page.locator("#wi-cmp-diff").get_attribute("data-bar") == "diverging"
    with page.expect_download() as png:
        page.locator("#wi-cmp-a").locator("xpath=..").locator(".wi-png").click()
    assert png.value.suggested_filename.startswith("regard-wi-cmp-a") and png.value.suggested_filename.endswith(".png")
