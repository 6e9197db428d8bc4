"""The "What if" endpoints: handlers called directly over the tiny models' context, then through
gradio_client on the served app (each is a public endpoint on the one model queue)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from model.ablation import head_mask  # noqa: E402
from model.decoding import trace_translation  # noqa: E402
from ui import whatif  # noqa: E402
from ui.inputs import parse_heads  # noqa: E402
from model.trace_json import check_trace_json, decode_array  # noqa: E402

TEXT = "le chat mange une pomme sur le canapé"
OTHER = "le chien dort sur la plage demain"
ENDPOINTS = ["/whatif_force", "/whatif_branch", "/whatif_beam", "/whatif_compare", "/whatif_ablate", "/whatif_align",
             "/whatif_lens"]


@pytest.fixture(scope="module")
def tiny(app_context):
    return app_context.default.ckpt


@pytest.fixture(scope="module")
def client(served_app) -> Client:
    return Client(served_app.local_url, verbose=False)


# --- handlers without a server ----------------------------------------------------------------------------------
def test_force_prefix_marks_forced_tokens_and_continues(app_context, tiny):
    plain = trace_translation(tiny.model, tiny.tokenizer, TEXT)
    forced_ids = [plain.steps[1].top_k[1].token_id]  # the model's second choice at step 2, alone
    _, _, data = whatif.branch(app_context, TEXT, f"{plain.steps[0].token_id} {forced_ids[0]}", None)
    check_trace_json(data)
    assert data["n_forced"] == 2 and data["forced"][:3] == [True, True, False]
    assert data["steps"][1]["token_id"] == forced_ids[0]
    assert abs(data["steps"][1]["prob"] - plain.steps[1].top_k[1].prob) < 1e-5  # what the model gave it
    text = tiny.tokenizer.decode([plain.steps[0].token_id, forced_ids[0]])
    translation, again = whatif.force_prefix(app_context, TEXT, text, None)
    assert translation == again["translation"] and again["n_forced"] >= 1


def test_empty_prefix_is_plain_greedy(app_context, tiny):
    plain = trace_translation(tiny.model, tiny.tokenizer, TEXT)
    translation, data = whatif.force_prefix(app_context, TEXT, "", None)
    assert translation == plain.translation and data["n_forced"] == 0


def test_beam_tree_has_every_status_and_the_winner_path(app_context, tiny):
    data = whatif.beam_tree(app_context, TEXT, 3, 1.0, None)
    nodes = data["nodes"]
    assert {n["status"] for n in nodes} >= {"kept", "pruned"}
    winner = [n for n in nodes if n["winner"]]
    assert [n["step"] for n in winner] == list(range(len(winner)))  # one node per step, from the first
    # the translation is the winner path's, and its score is what the model gives that path, teacher-forced
    tokens = [n["token_id"] for n in winner]
    eos, bos = tiny.model.config.eos_id, tiny.model.config.bos_id
    assert data["translation"] == tiny.tokenizer.decode([t for t in tokens if t != eos])
    src = torch.tensor([tiny.tokenizer.encode(TEXT) + [eos]])
    with torch.inference_mode():
        logp = tiny.model(src, torch.tensor([[bos] + tokens[:-1]])).log_softmax(-1)[0]  # (T, V)
    assert winner[-1]["score"] == pytest.approx(float(logp[torch.arange(len(tokens)), tokens].sum()), abs=1e-4)
    cross = decode_array(data["attention"]["cross"])  # (T, R, L, H, S)
    assert cross.shape[:2] == (data["steps"], 3) and cross.shape[-1] == len(data["source_pieces"])
    n = winner[-1]
    assert abs(cross[n["step"], n["row"], 0, 0].sum() - 1) < 0.05


def test_ablate_nothing_equals_the_model_and_a_whole_layer_changes_it(app_context, tiny):
    none = whatif.ablate(app_context, TEXT, "", None)
    plain = trace_translation(tiny.model, tiny.tokenizer, TEXT)
    assert none["original"] == none["ablated"] and none["original"]["translation"] == plain.translation
    assert none["top1_change"] == [0.0] * len(plain.steps)
    assert none["original_logprob_ablated"] == pytest.approx(none["ranking"]["baseline_logprob"], abs=1e-4)
    all_cross = " ".join(f"cross:1:{h}" for h in range(1, 5)) + " " + " ".join(f"cross:2:{h}" for h in range(1, 5))
    off = whatif.ablate(app_context, TEXT, all_cross, None)
    assert len(off["heads"]) == 8 and off["original_logprob_ablated"] != none["original_logprob_ablated"]
    assert off["top1_change"] != none["top1_change"]
    ranked = off["ranking"]["top"]
    assert [r["drop"] for r in ranked] == sorted((r["drop"] for r in ranked), reverse=True)
    assert np.array(off["ranking"]["drop"]["cross"]).shape == (2, 4)


def test_parse_heads_is_one_based_and_refuses_with_text(tiny):
    counts = {"encoder": 2, "decoder_self": 2, "cross": 2}
    assert parse_heads("cross:2:1, encoder:1:4 cross:2:1", counts, 4) == [("cross", 1, 0), ("encoder", 0, 3)]
    for bad in ("cross:3:1", "cross:0:1", "self:1:1", "cross:1", 5):
        with pytest.raises(ValueError):
            parse_heads(bad, counts, 4)
    head_mask(tiny.model, [("cross", 1, 0)])  # the triples are what model.ablation takes


def test_bad_input_is_a_gradio_error(app_context):
    for call in (lambda: whatif.branch(app_context, TEXT, "1 x 2", None),
                 lambda: whatif.branch(app_context, TEXT, "0", None),  # pad is never an output
                 lambda: whatif.ablate(app_context, TEXT, "cross:9:9", None),
                 lambda: whatif.beam_tree(app_context, TEXT, 99, 1.0, None),
                 lambda: whatif.force_prefix(app_context, "", "The", None),
                 lambda: whatif.lens(app_context, TEXT, "no-such-model")):
        with pytest.raises(gr.Error):
            call()


def test_lenses(app_context, tiny):
    plain = trace_translation(tiny.model, tiny.tokenizer, TEXT)
    lens = whatif.lens(app_context, TEXT, None)
    assert lens["layers"] == 2 and [s["piece"] for s in lens["steps"]] == [s.piece for s in plain.steps]
    last = [s["layers"][-1] for s in lens["steps"]]  # the last layer's prediction is the model's own
    assert [c["piece"] for c in last] == [s.piece for s in plain.steps]
    assert [c["chosen_prob"] for c in last] == pytest.approx([s.prob for s in plain.steps], abs=1e-4)
    align = whatif.alignment(app_context, TEXT, None)
    assert align["src_words"] == TEXT.split()  # pieces merged back into the typed words; </s> is no word
    assert align["head_scores"] is None  # the tiny checkpoint has no recorded head alignment
    mean = np.array(align["layer_mean"])  # (L, Tw, Sw)
    assert mean.shape == (2, len(align["tgt_words"]), len(align["src_words"]))
    # a target word's attention over the source words: what is left goes to </s>, which is no word
    assert np.all((mean.sum(-1) > 0.5) & (mean.sum(-1) <= 1.0 + 1e-3))


# --- through gradio_client ------------------------------------------------------------------------------------------
def test_endpoints_are_public_and_documented_by_gradio(client):
    names = list(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert set(ENDPOINTS) <= set(names)


def test_client_force_branch_compare(client, tiny):
    translation, data = client.predict(text=TEXT, prefix="the", model="tiny", api_name="/whatif_force")
    assert data["forced"][0] is True and translation == data["translation"]
    ids = f"{data['steps'][0]['token_id']} {data['steps'][1]['top_k'][2]['token_id']}"
    prefix, _, branched = client.predict(text=TEXT, prefix_ids=ids, model="tiny", api_name="/whatif_branch")
    assert branched["steps"][1]["token_id"] == data["steps"][1]["top_k"][2]["token_id"] and prefix
    a, b = client.predict(text_a=TEXT, text_b=OTHER, model="tiny-pre", api_name="/whatif_compare")
    assert a["source_text"] == TEXT and b["source_text"] == OTHER and a["model"] == "tiny-pre"
    with pytest.raises(AppError, match="kind:layer:head"):
        client.predict(text=TEXT, heads="cross-1-1", model="tiny", api_name="/whatif_ablate")


def test_recorded_head_scores_reach_the_alignment_lens(tiny_checkpoint, tmp_path):
    """scripts/head_alignment.py --record stores per-head F1 in the checkpoint; the lens hands it to the page."""
    import shutil
    import subprocess
    import sys

    from conftest import ROOT, tiny_pairs
    from ui.context import load_context

    ckpt_path = tmp_path / "tiny.safetensors"
    shutil.copy(tiny_checkpoint, ckpt_path)
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{fr}\t{en}\n" for fr, en in tiny_pairs(60, seed=9)), encoding="utf-8")
    res = subprocess.run([sys.executable, "scripts/head_alignment.py", "--checkpoint", str(ckpt_path), "--data",
                          str(data), "--align", "60", "--score", "10", "--ibm1", "--record"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    ctx = load_context([ckpt_path], device="cpu")
    scores = whatif.alignment(ctx, TEXT, None)["head_scores"]
    cfg = ctx.default.ckpt.config
    assert np.array(scores["head_f1"]).shape == (cfg.n_decoder_layers, cfg.n_heads)
    assert len(scores["layer_f1"]) == cfg.n_decoder_layers and scores["scored_pairs"] == 10
    assert all(0.0 <= f <= 1.0 for row in scores["head_f1"] for f in row)
    assert "ibm" in scores["aligner"].lower()
