"""Marian interop: Regard -> Hugging Face / CTranslate2 exports, and Hugging Face Marian models -> Regard.

Every model here is tiny and made in the test: a Regard model trained for a few steps on made-up
sentences, and random ``MarianMTModel``s built with ``transformers`` itself in OPUS-MT's conventions
(eos 0, pad last, decoder start = pad, swish, ``final_logits_bias``).
"""
from __future__ import annotations

import json
import sys

import ctranslate2
import pytest
import torch
import torch.nn.functional as F
import transformers
from conftest import tiny_config, tiny_pairs

from model.checkpoint import CheckpointError, load_checkpoint
from model.load import load_model
from model.decoding import default_max_len, greedy_batch, source_ids, trace_translation
from model.export import export_ct2, export_hf
from model.marian import MarianVocab, is_marian_dir, marian_order
from model.transformer import Transformer

TOL = 1e-4
FRENCH = [fr for fr, _ in tiny_pairs(8, seed=7)] + ["Le chien mange une pomme sur la plage."]


def train_tiny(tiny_tokenizer, norm: str) -> Transformer:
    """A tiny Regard model after 40 Adam steps on the made-up pairs, so its greedy output is not noise."""
    torch.manual_seed(0)
    model = Transformer(tiny_config(tiny_tokenizer.vocab_size, dropout=0.0, norm=norm))
    pairs = tiny_pairs(48, seed=1)
    src = [tiny_tokenizer.encode(fr) + [3] for fr, _ in pairs]
    tgt = [[2] + tiny_tokenizer.encode(en) + [3] for _, en in pairs]
    pad = lambda seqs: torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in seqs], batch_first=True)  # noqa: E731
    src_t, tgt_t = pad(src), pad(tgt)  # (B, S), (B, T)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        logits = model(src_t, tgt_t[:, :-1])  # (B, T-1, V)
        loss = F.cross_entropy(logits.transpose(1, 2), tgt_t[:, 1:], ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained(tiny_tokenizer):
    return train_tiny(tiny_tokenizer, "post")


@pytest.fixture(scope="module")
def trained_pre(tiny_tokenizer):
    return train_tiny(tiny_tokenizer, "pre")


@pytest.fixture(scope="module")
def exports(tmp_path_factory, trained, tiny_tokenizer):
    from model.checkpoint import Checkpoint

    ckpt = Checkpoint(model=trained, tokenizer=tiny_tokenizer)
    root = tmp_path_factory.mktemp("exports")
    return export_hf(ckpt, root / "hf"), export_ct2(ckpt, root / "ct2"), root


def regard_greedy(model, ids: list[int]) -> list[int]:
    return greedy_batch(model, torch.tensor([ids]), default_max_len(model, len(ids)))[0]


def teacher_forced_logits(model, src: list[int], out: list[int]) -> torch.Tensor:
    """Regard's logits (T, V) for decoder input <start> + out."""
    with torch.no_grad():
        return model(torch.tensor([src]), torch.tensor([[model.config.bos_id] + out]))[0]


# --- export -------------------------------------------------------------------------------------------
def test_permutation_puts_sines_first():
    order = marian_order(8)
    assert order.tolist() == [0, 2, 4, 6, 1, 3, 5, 7]


def test_hf_export_reproduces_regard(trained, tiny_tokenizer, exports):
    hf_dir = exports[0]
    hf = transformers.MarianMTModel.from_pretrained(str(hf_dir)).eval()
    hf_tok = transformers.MarianTokenizer.from_pretrained(str(hf_dir))
    lengths = set()
    for text in FRENCH:
        ids = source_ids(trained, tiny_tokenizer, text)
        assert hf_tok(text)["input_ids"] == ids  # the tokenizer files give Regard's ids, eos included
        ours = regard_greedy(trained, ids)
        with torch.no_grad():
            theirs = hf.generate(torch.tensor([ids]), max_new_tokens=default_max_len(trained, len(ids)),
                                 do_sample=False)[0].tolist()
            assert theirs[0] == trained.config.bos_id  # decoder start <s>
            hf_logits = hf(input_ids=torch.tensor([ids]), decoder_input_ids=torch.tensor([[2] + ours])).logits[0]
        assert theirs[1:] == ours + [trained.config.eos_id] or theirs[1:] == ours  # eos, or the length cap
        assert (hf_logits - teacher_forced_logits(trained, ids, ours)).abs().max() < TOL
        assert hf_tok.decode(theirs, skip_special_tokens=True) == tiny_tokenizer.decode(ours)
        lengths.add(len(ours))
    assert len(lengths) > 1  # the trained model gives outputs of several lengths, not one repeated token


def test_ct2_export_reproduces_regard(trained, tiny_tokenizer, exports):
    assert_ct2_reproduces(exports[1], trained, tiny_tokenizer)


def test_ct2_export_of_a_pre_ln_model_reproduces_regard(trained_pre, tiny_tokenizer, tmp_path):
    from model.checkpoint import Checkpoint

    out = export_ct2(Checkpoint(model=trained_pre, tokenizer=tiny_tokenizer), tmp_path / "ct2-pre")
    assert json.loads((out / "config.json").read_text())["decoder_start_token"] == "<s>"
    assert_ct2_reproduces(out, trained_pre, tiny_tokenizer)


def assert_ct2_reproduces(ct2_dir, trained, tiny_tokenizer) -> None:
    """CTranslate2's greedy output equals Regard's on FRENCH, and its log-probabilities match ours."""
    translator = ctranslate2.Translator(str(ct2_dir), device="cpu")
    lengths = set()
    for text in FRENCH:
        ids = source_ids(trained, tiny_tokenizer, text)
        ours = regard_greedy(trained, ids)
        cap = default_max_len(trained, len(ids))
        source = tiny_tokenizer.pieces(ids)
        result = translator.translate_batch([source], beam_size=1, max_decoding_length=cap,
                                            suppress_sequences=[["<pad>"], ["<s>"]])[0]
        assert result.hypotheses[0] == tiny_tokenizer.pieces(ours)
        # Their log-probabilities of our tokens (then eos) against ours.
        scored = translator.score_batch([source], [tiny_tokenizer.pieces(ours)])[0]
        logp = teacher_forced_logits(trained, ids, ours).log_softmax(-1)  # (T+1, V)
        ours_logp = logp.gather(1, torch.tensor(ours + [3])[:, None])[:, 0]
        assert torch.allclose(torch.tensor(scored.log_probs), ours_logp, atol=TOL)
        lengths.add(len(ours))
    assert len(lengths) > 1  # the trained model gives outputs of several lengths, not one repeated token


def test_ct2_int8_export_is_smaller_and_translates(trained, tiny_tokenizer, exports):
    from model.checkpoint import Checkpoint

    out = export_ct2(Checkpoint(model=trained, tokenizer=tiny_tokenizer), exports[2] / "ct2-int8", "int8")
    assert (out / "model.bin").stat().st_size < (exports[1] / "model.bin").stat().st_size
    ids = source_ids(trained, tiny_tokenizer, FRENCH[0])
    hyp = ctranslate2.Translator(str(out)).translate_batch([tiny_tokenizer.pieces(ids)], beam_size=1)[0]
    assert hyp.hypotheses[0]


def test_export_cli_and_reimport(tiny_checkpoint, tmp_path):
    from model.export import main

    assert main(["--to", "hf", str(tmp_path / "hf"), "--checkpoint", str(tiny_checkpoint)]) == 0
    assert is_marian_dir(tmp_path / "hf")
    original = load_checkpoint(tiny_checkpoint)
    back = load_model(tmp_path / "hf")  # a Regard export opens as a Marian model: same function
    ids = source_ids(original.model, original.tokenizer, FRENCH[0])
    assert back.tokenizer.encode(FRENCH[0]) == ids[:-1]
    out = regard_greedy(original.model, ids)
    assert regard_greedy(back.model, ids) == out
    diff = teacher_forced_logits(back.model, ids, out) - teacher_forced_logits(original.model, ids, out)
    assert diff.abs().max() < TOL


def test_pre_ln_cannot_be_exported_to_hugging_face(tiny_tokenizer, tmp_path):
    from model.checkpoint import Checkpoint

    model = Transformer(tiny_config(tiny_tokenizer.vocab_size, norm="pre")).eval()
    with pytest.raises(ValueError, match="post-LN only.*CTranslate2"):
        export_hf(Checkpoint(model=model, tokenizer=tiny_tokenizer), tmp_path / "hf")
    assert not (tmp_path / "hf" / "config.json").exists()


def test_exports_default_to_the_shipped_post_ln_model_for_hf_and_the_app_default_for_ct2(tmp_path):
    from model.checkpoint import DEFAULT_CHECKPOINT, EXPORT_CHECKPOINT
    from model.export import main

    assert load_checkpoint(EXPORT_CHECKPOINT).config.norm == "post"  # the default app model is pre-LN
    default = load_checkpoint(DEFAULT_CHECKPOINT)
    assert default.config.norm == "pre"
    assert main(["--to", "ct2", str(tmp_path / "ct2")]) == 0  # no --checkpoint: the app's pre-LN model
    ids = source_ids(default.model, default.tokenizer, "Mon frère aîné travaille dans un hôpital à Lyon.")
    hyp = ctranslate2.Translator(str(tmp_path / "ct2")).translate_batch(
        [default.tokenizer.pieces(ids)], beam_size=1, suppress_sequences=[["<pad>"], ["<s>"]])[0].hypotheses[0]
    assert hyp == default.tokenizer.pieces(regard_greedy(default.model, ids))


# --- import -------------------------------------------------------------------------------------------
VARIANTS = {
    # OPUS-MT's shape: one shared vocabulary, tied output layer, swish, scaled embeddings.
    "shared-tied-swish": dict(share=True, tie=True, scale=True, activation="swish"),
    # Shared input embeddings but an output layer of its own, no embedding scale.
    "shared-untied-relu": dict(share=True, tie=False, scale=False, activation="relu"),
    # Separate source and target vocabularies (of different sizes), as in some OPUS-MT pairs.
    "separate-gelu": dict(share=False, tie=False, scale=True, activation="gelu"),
}


def write_opus_vocab(tiny_tokenizer, directory, separate: bool) -> tuple[int, int]:
    """OPUS-MT-style vocabulary files: eos 0, unk 1, the pieces, pad last. Returns (src, tgt) sizes."""
    pieces = [tiny_tokenizer.sp.id_to_piece(i) for i in range(4, tiny_tokenizer.vocab_size)]
    src = {"</s>": 0, "<unk>": 1, **{p: i + 2 for i, p in enumerate(pieces)}}
    src["<pad>"] = len(src)
    for name in ("source.spm", "target.spm"):
        (directory / name).write_bytes(tiny_tokenizer.model_proto)
    (directory / "vocab.json").write_text(json.dumps(src))
    config = {"separate_vocabs": separate, "source_lang": "fr", "target_lang": "en"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    if not separate:
        return len(src), len(src)
    # The source side lacks the last five pieces; the target side has them all, in another order.
    src = {"</s>": 0, "<unk>": 1, **{p: i + 2 for i, p in enumerate(pieces[:-5])}}
    src["<pad>"] = len(src)
    (directory / "vocab.json").write_text(json.dumps(src))
    order = ["</s>", "<unk>", *reversed(pieces)]
    order.insert(src["<pad>"], "<pad>")  # pad (the decoder start) has one id on both sides
    (directory / "target_vocab.json").write_text(json.dumps({p: i for i, p in enumerate(order)}))
    return len(src), len(order)


@pytest.fixture(scope="module", params=list(VARIANTS))
def marian_dir(request, tmp_path_factory, tiny_tokenizer):
    v = VARIANTS[request.param]
    directory = tmp_path_factory.mktemp(request.param)
    n_src, n_tgt = write_opus_vocab(tiny_tokenizer, directory, separate=not v["share"])
    pad = n_src - 1
    config = transformers.MarianConfig(
        vocab_size=n_src, decoder_vocab_size=n_tgt, share_encoder_decoder_embeddings=v["share"],
        tie_word_embeddings=v["tie"], scale_embedding=v["scale"], activation_function=v["activation"],
        d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64, init_std=0.3,
        pad_token_id=pad, eos_token_id=0, decoder_start_token_id=pad, forced_eos_token_id=None,
    )
    torch.manual_seed(0)
    hf = transformers.MarianMTModel(config).eval()
    with torch.no_grad():
        hf.final_logits_bias.normal_(0.0, 0.5)
    hf.save_pretrained(str(directory))
    return directory


def test_imported_marian_gives_hf_logits_and_greedy_output(marian_dir):
    hf = transformers.MarianMTModel.from_pretrained(str(marian_dir)).eval()
    hf_tok = transformers.MarianTokenizer.from_pretrained(str(marian_dir))
    ckpt = load_model(marian_dir)
    model, tok, cfg = ckpt.model, ckpt.tokenizer, ckpt.model.config
    assert (cfg.bos_id, cfg.eos_id, cfg.pad_id) == (hf.config.pad_token_id, 0, hf.config.pad_token_id)
    assert cfg.output_bias and cfg.activation in ("silu", "relu", "gelu")
    assert cfg.tie_embeddings == (hf.config.share_encoder_decoder_embeddings and hf.config.tie_word_embeddings)
    for text in FRENCH[:4]:
        ids = source_ids(model, tok, text)
        assert hf_tok(text)["input_ids"] == ids
        ours = regard_greedy(model, ids)
        cap = default_max_len(model, len(ids))
        with torch.no_grad():
            theirs = hf.generate(torch.tensor([ids]), max_new_tokens=cap, do_sample=False,
                                 suppress_tokens=[cfg.pad_id])[0].tolist()
            hf_logits = hf(input_ids=torch.tensor([ids]),
                           decoder_input_ids=torch.tensor([[cfg.bos_id] + ours])).logits[0]  # (T+1, V)
        assert theirs[0] == cfg.pad_id  # OPUS-MT starts decoding from pad
        assert theirs[1:] in (ours, ours + [cfg.eos_id])
        assert (hf_logits - teacher_forced_logits(model, ids, ours)).abs().max() < TOL
        assert tok.decode(ours) == hf_tok.decode(theirs, skip_special_tokens=True)


def test_app_renders_an_imported_model(marian_dir):
    from ui.context import load_context
    from ui.handlers import warm_up
    from ui.layout import build_demo
    from model.trace_json import check_trace_json, trace_to_json

    ckpt = load_model(marian_dir)
    trace = trace_translation(ckpt.model, ckpt.tokenizer, FRENCH[0], max_len=5)
    cfg = ckpt.config
    assert trace.steps[0].cross_attn.shape == (cfg.n_decoder_layers, cfg.n_heads, len(trace.source_ids))
    assert trace.source_pieces[-1] == "</s>" and trace.target_pieces[0] == "<s>"
    check_trace_json(trace_to_json(trace, cfg))  # the trace contract the page reads holds for it
    ctx = load_context([marian_dir], device="cpu")  # what `python app.py --checkpoint DIR` does
    warm_up(ctx)  # one translation through the app's own handler
    page = json.dumps(build_demo(ctx).config)  # the page as Gradio serves it: the model is its default
    assert f'"value": "{ctx.default.name}"' in page and ctx.default.name != "tiny"


def test_marian_vocab_matches_marian_tokenizer(marian_dir):
    hf_tok = transformers.MarianTokenizer.from_pretrained(str(marian_dir))
    cfg = json.loads((marian_dir / "config.json").read_text())
    ours = MarianVocab(marian_dir, pad_id=cfg["pad_token_id"], eos_id=0, start_id=cfg["decoder_start_token_id"])
    for text in FRENCH + [">>" + "le<< chat"]:  # a language-code prefix is one token, as in MarianTokenizer
        assert ours.encode(text) + [0] == hf_tok(text)["input_ids"]
    target_ids = list(range(2, 12)) + [0]
    assert ours.decode(target_ids) == hf_tok.decode(target_ids, skip_special_tokens=True)


def test_marian_dir_without_transformers_is_a_one_line_error(marian_dir, monkeypatch, capsys):
    from model.translate import main

    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(CheckpointError, match="transformers"):
        load_model(marian_dir)
    assert main(["--checkpoint", str(marian_dir), "Le chat."]) == 2
    err = capsys.readouterr().err
    assert "transformers" in err and err.count("\n") == 1


def test_a_directory_that_is_not_marian_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="not a Hugging Face Marian model"):
        load_model(tmp_path)


def test_every_explanation_runs_on_an_imported_model(marian_dir):
    """The cell, attribution, LayerNorm and arithmetic views on a Hugging Face Marian model (its own
    tokenizer, pad as the decoder start, a final-logits bias), through the app's endpoints."""
    import numpy as np

    from model.explain.arrays import decode_f32
    from ui import arithmetic, explain
    from ui.context import load_context

    ctx = load_context([marian_dir], device="cpu")
    lm = ctx.default
    trace = trace_translation(lm.ckpt.model, lm.ckpt.tokenizer, FRENCH[0], max_len=6)
    ids = " ".join(str(s.token_id) for s in trace.steps)
    cell = explain.attention_cell(ctx, FRENCH[0], ids, "cross", "2", "")
    q, k, v, w, out = (decode_f32(cell[n]) for n in ("q", "k", "v", "weights", "head_out"))
    scores = q @ k.transpose(0, 2, 1) * cell["scale"]  # (H, T, S)
    soft = np.exp(scores - scores.max(-1, keepdims=True))
    np.testing.assert_allclose(soft / soft.sum(-1, keepdims=True), w, atol=1e-5)
    np.testing.assert_allclose(w @ v, out, atol=1e-5)
    attr = explain.attribution(ctx, FRENCH[0], ids, "")
    assert len(attr["source_share"]["integrated_gradients"]) == len(trace.steps)
    assert all(0 <= s <= 1 for s in attr["source_share"]["grad_x_input"])
    ln = explain.layernorm(ctx, FRENCH[0], ids, "")["models"][0]
    assert ln["norm"] == "post" and ln["generated"] == [s.token_id for s in trace.steps]
    rows = arithmetic.arithmetic_data(lm)["parameters"]
    assert rows[-1]["stack"] == "total" and rows[-1]["parameters"] == lm.ckpt.model.num_parameters()
    assert sum(r["parameters"] for r in rows[:-1]) == rows[-1]["parameters"]  # every parameter in one part
    assert "total" in arithmetic.arithmetic_html(ctx.names, {lm.name: arithmetic.arithmetic_data(lm)})
