"""The one generation loop: forced prefixes, beam tree without replay, head ablation, logit lens, exactness."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_config
from model.ablation import head_mask, rank_heads, sequence_logprobs
from model.attention import reference_path
from model.layout import is_column_major, use_column_major
from model.decoding import InputError, branch_prefix, trace_translation
from model.lens import logit_lens
from model.generation import Beam, Forced, Greedy, generate
from model.transformer import Transformer

TEXT = "Le chat mange une pomme sur le canapé."


def model_and_source(seed: int = 0, batch: int = 1, vocab: int = 40):
    torch.manual_seed(seed)
    model = Transformer(tiny_config(vocab)).eval()
    src = torch.randint(4, vocab, (batch, 7), generator=torch.Generator().manual_seed(seed))
    return model, src


def run(model, src, strategy, max_len=12, **kw):
    """generate() plus every step's logits, captured through the per-step callback."""
    logits = []
    gen = generate(model, src, strategy, max_len, on_step=lambda e: logits.append(e.logits.clone()), **kw)
    return gen, logits


def teacher_forced(model, src_ids, out_ids):
    """Logits (T, V) and per-layer cross attention of a teacher-forced pass over <s> + out_ids[:-1]."""
    src = torch.tensor([src_ids])
    tgt_in = torch.tensor([[model.config.bos_id] + out_ids[:-1]])
    with torch.no_grad():
        enc = model.encode(src)
        x, self_ws, cross_ws = model.run_decoder(tgt_in, enc, need_weights=True)
        return model.project(x)[0], self_ws, cross_ws


def test_forcing_the_greedy_output_reproduces_greedy_logits_exactly():
    model, src = model_and_source()
    greedy, g_logits = run(model, src, Greedy())
    hyp = greedy.hypotheses[0]
    forced, f_logits = run(model, src, Forced(hyp.tokens))
    assert forced.hypotheses[0].tokens == hyp.tokens
    assert len(f_logits) == len(g_logits)
    for a, b in zip(g_logits, f_logits):
        assert torch.equal(a, b)


def test_forcing_changes_the_continuation_and_reports_the_models_probabilities(tiny_model, tiny_tokenizer):
    greedy = trace_translation(tiny_model, tiny_tokenizer, TEXT, max_len=12)
    first = greedy.steps[0].top_k[3].token_id  # a token the model did not choose
    forced = trace_translation(tiny_model, tiny_tokenizer, TEXT, max_len=12, prefix=[first, 7])
    assert [s.forced for s in forced.steps[:3]] == [True, True, False] and forced.n_forced == 2
    assert [s.token_id for s in forced.steps[:2]] == [first, 7]
    assert [s.token_id for s in forced.steps[2:]] != [s.token_id for s in greedy.steps[2:]]
    out = [s.token_id for s in forced.steps]
    logits, _, _ = teacher_forced(tiny_model, forced.source_ids, out)
    probs = logits.softmax(-1)  # (T, V)
    for t, step in enumerate(forced.steps):
        assert step.prob == pytest.approx(float(probs[t, step.token_id]), rel=1e-4, abs=1e-6)
    assert forced.score == pytest.approx(sum(np.log(s.prob) for s in forced.steps), abs=1e-4)
    # branching: keep step 0, take another candidate at step 1
    prefix = branch_prefix(forced, 1, forced.steps[1].top_k[1].token_id)
    branched = trace_translation(tiny_model, tiny_tokenizer, TEXT, max_len=12, prefix=prefix)
    assert [s.token_id for s in branched.steps[:2]] == prefix


def test_bad_prefixes_are_refused(tiny_model, tiny_tokenizer):
    cfg = tiny_model.config
    for prefix, message in [([cfg.bos_id], "not a token"), ([10**6], "not a token"),
                            ([cfg.eos_id, 5], "only end"), ([5] * 20, "at most")]:
        with pytest.raises(InputError, match=message):
            trace_translation(tiny_model, tiny_tokenizer, TEXT, max_len=12, prefix=prefix)


def test_beam_size_one_is_greedy_through_the_loop():
    model, src = model_and_source(seed=3, batch=3)
    greedy = generate(model, src, Greedy(), 10, record=True)
    beam = generate(model, src, Beam(1), 10, record=True)
    assert [h.tokens for h in beam.hypotheses] == [h.tokens for h in greedy.hypotheses]
    for g, b in zip(greedy.hypotheses, beam.hypotheses):
        assert [p.logprob for p in b.path] == pytest.approx([p.logprob for p in g.path], abs=1e-6)


def test_beam_winner_attention_equals_a_teacher_forced_pass_and_the_tree_is_consistent(tiny_model, tiny_tokenizer):
    trace = trace_translation(tiny_model, tiny_tokenizer, TEXT, max_len=10, beam_size=3)
    out = [s.token_id for s in trace.steps]
    logits, self_ws, cross_ws = teacher_forced(tiny_model, trace.source_ids, out)
    logp = logits.log_softmax(-1)
    for t, step in enumerate(trace.steps):
        for layer in range(tiny_model.config.n_decoder_layers):
            np.testing.assert_allclose(step.cross_attn[layer], cross_ws[layer][0, :, t].numpy(), atol=1e-5)
            np.testing.assert_allclose(step.self_attn[layer], self_ws[layer][0, :, t, : t + 1].numpy(), atol=1e-5)
        assert np.log(step.prob) == pytest.approx(float(logp[t, step.token_id]), abs=1e-4)
    tree = trace.tree
    path = tree.path(tree.winner)
    assert [n.token_id for n in path] == out
    assert tree.nodes[tree.winner].norm_score == pytest.approx(trace.norm_score)
    for level in tree.levels()[:-1]:
        assert sum(n.status == "kept" for n in level) == 3  # the beam stays full until it stops
        assert len(level) == 6  # the top 2 x beam candidates of every step are in the tree
    for n in path:  # each node's attention is the step's attention of the row that scored it
        self_attn, cross_attn = tree.attention(n.id)
        np.testing.assert_array_equal(cross_attn, trace.steps[n.step].cross_attn)
        assert self_attn.shape[-1] == n.step + 1
    for n in tree.nodes:
        assert n.parent < n.id and (n.parent == -1) == (n.step == 0)
        if n.parent >= 0:
            parent = tree.nodes[n.parent]
            assert parent.status == "kept" and n.score == pytest.approx(parent.score + n.logprob, abs=1e-5)


def test_forced_prefix_then_beam(tiny_model, tiny_tokenizer):
    trace = trace_translation(tiny_model, tiny_tokenizer, TEXT, max_len=10, beam_size=3, prefix=[9, 8])
    assert [s.token_id for s in trace.steps[:2]] == [9, 8] and trace.n_forced == 2
    assert [n.forced for n in trace.tree.levels()[0]] == [True]


def test_ablating_no_heads_is_exact_and_a_whole_cross_layer_changes_the_output():
    model, src = model_and_source(seed=1, batch=2)
    normal, n_logits = run(model, src, Greedy(), need_weights=True)
    none_off, z_logits = run(model, src, Greedy(), need_weights=True, head_mask=head_mask(model, []))
    assert [h.tokens for h in none_off.hypotheses] == [h.tokens for h in normal.hypotheses]
    assert all(torch.equal(a, b) for a, b in zip(n_logits, z_logits))
    h = model.config.n_heads
    cross_off = head_mask(model, [("cross", 1, i) for i in range(h)])
    _, c_logits = run(model, src, Greedy(), head_mask=cross_off)
    assert not torch.allclose(c_logits[0], n_logits[0])
    with pytest.raises(InputError, match="heads 0"):
        head_mask(model, [("cross", 0, h)])


def test_rank_heads_matches_one_ablation_at_a_time():
    model, src = model_and_source(seed=2)
    src_ids = src[0].tolist()
    out = generate(model, src, Greedy(), 8).hypotheses[0].tokens + [model.config.eos_id]
    ranking = rank_heads(model, src_ids, out, batch_size=7)
    with torch.no_grad():
        full = float(sequence_logprobs(model, src, torch.tensor([out]))[0])
        assert ranking.baseline == pytest.approx(full, abs=1e-4)
        for kind, layer, head in [("encoder", 0, 1), ("decoder_self", 1, 3), ("cross", 0, 2)]:
            alone = float(sequence_logprobs(model, src, torch.tensor([out]), head_mask(model, [(kind, layer, head)]))[0])
            assert ranking.drop[kind][layer, head] == pytest.approx(full - alone, abs=1e-4)
    top = ranking.ranked()
    assert len(top) == 3 * 2 * model.config.n_heads and top[0][3] >= top[-1][3]


@pytest.mark.parametrize("overrides", [{}, {"norm": "pre", "activation": "silu", "tie_embeddings": False}])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("layout", ["row-major", "column-major"])
def test_fast_path_equals_reference_path_bit_for_bit(overrides, batch, layout):
    """Plain greedy (fused q/k/v, DecoderLayer.forward on its gathered tensors, preallocated cache, no softmax) == instrumented
    == the module-by-module reference path with separate q/k/v, for post- and pre-norm models, with
    PyTorch's weight layout and with the column-major one that loaded checkpoints use (model/layout.py)."""
    torch.manual_seed(4)
    model = Transformer(tiny_config(40, **overrides)).eval()
    if layout == "column-major":
        use_column_major(model)
        assert is_column_major(model.output_weight()) and is_column_major(model.decoder_layers[0].ffn.linear1.weight)
    src = torch.randint(4, 40, (batch, 7), generator=torch.Generator().manual_seed(4))
    src[-1, 5:] = model.config.pad_id  # padded rows go through the key-bias mask
    plain, p_logits = run(model, src, Greedy())
    instrumented, i_logits = run(model, src, Greedy(), need_weights=True, record=True, top_k=5)
    with reference_path():
        ref, r_logits = run(model, src, Greedy(), need_weights=True)
    assert [h.tokens for h in plain.hypotheses] == [h.tokens for h in instrumented.hypotheses]
    assert [h.tokens for h in plain.hypotheses] == [h.tokens for h in ref.hypotheses]
    for a, b, c in zip(p_logits, i_logits, r_logits):
        assert torch.equal(a, b) and torch.equal(a, c)
    beam_plain, bp = run(model, src, Beam(3))
    beam_inst, bi = run(model, src, Beam(3), need_weights=True, record=True)
    assert [h.tokens for h in beam_plain.hypotheses] == [h.tokens for h in beam_inst.hypotheses]
    assert all(torch.equal(a, b) for a, b in zip(bp, bi))


def test_greedy_never_picks_pad_or_bos_even_when_they_score_highest():
    torch.manual_seed(0)
    model = Transformer(tiny_config(40, output_bias=True)).eval()
    src = torch.randint(4, 40, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.output_bias[model.config.pad_id] = 50.0  # pad and bos on top of every step's logits
        model.output_bias[model.config.bos_id] = 40.0
    gen, logits = run(model, src, Greedy(), max_len=6, record=True)
    chosen = [h.tokens + [model.config.eos_id] * h.finished for h in gen.hypotheses]  # every decided token
    assert all(len(c) >= 2 for c in chosen)
    for step, lg in enumerate(logits):
        assert lg.argmax(-1).tolist() == [model.config.pad_id] * 2
        masked = lg.clone()
        masked[:, [model.config.pad_id, model.config.bos_id]] = float("-inf")
        for row, c in enumerate(chosen):
            if step < len(c):
                assert c[step] == int(masked[row].argmax())


def test_logit_lens_last_layer_is_the_models_prediction(tiny_model, tiny_tokenizer):
    trace = trace_translation(tiny_model, tiny_tokenizer, TEXT, max_len=8)
    out = [s.token_id for s in trace.steps]
    gen = generate(tiny_model, torch.tensor([trace.source_ids]), Greedy(), 8, top_k=1, record=True)
    enc, ids = gen.sentence()
    assert ids == out
    lens = logit_lens(tiny_model, enc, ids)
    layers = tiny_model.config.n_decoder_layers
    assert lens.top_ids.shape == lens.top_probs.shape == lens.chosen_probs.shape == (len(out), layers)
    assert lens.top_ids[:, -1].tolist() == out  # greedy: the last layer predicts what was chosen
    np.testing.assert_allclose(lens.chosen_probs[:, -1], [s.prob for s in trace.steps], rtol=1e-4)
    assert np.all(lens.top_probs >= lens.chosen_probs - 1e-7)


def test_int8_model_is_a_new_model_that_translates(tiny_model, tiny_tokenizer):
    from model.quantize import quantize_int8

    q = quantize_int8(tiny_model)
    assert q is not tiny_model and type(tiny_model.decoder_layers[0].self_attn.q_proj) is torch.nn.Linear
    trace = trace_translation(q, tiny_tokenizer, TEXT, max_len=6)
    assert len(trace.steps) >= 1 and trace.steps[0].cross_attn.shape[0] == tiny_model.config.n_decoder_layers


def test_batched_greedy_that_drops_finished_sentences_gives_the_same_translations():
    torch.manual_seed(0)
    model = Transformer(tiny_config(40, output_bias=True)).eval()
    with torch.no_grad():
        model.output_bias[model.config.eos_id] = 3.6  # sentences end at different steps
    src = torch.randint(4, 40, (8, 5), generator=torch.Generator().manual_seed(0))
    plain = generate(model, src, Greedy(), 12).hypotheses  # drops rows as sentences finish
    fixed = generate(model, src, Greedy(), 12, record=True).hypotheses  # keeps every row
    alone = [generate(model, src[i : i + 1], Greedy(), 12).hypotheses[0] for i in range(8)]
    lengths = sorted(len(h.tokens) for h in fixed if h.finished)
    assert len(lengths) >= 3 and lengths[0] < lengths[-1]  # the batch really shrinks on the way
    assert [h.tokens for h in plain] == [h.tokens for h in fixed] == [h.tokens for h in alone]
    assert [h.finished for h in plain] == [h.finished for h in fixed]


def test_the_apps_trace_computes_what_the_cli_computes(tiny_model, tiny_tokenizer):
    trace = trace_translation(tiny_model, tiny_tokenizer, TEXT, max_len=10)
    src = torch.tensor([trace.source_ids])
    plain = generate(tiny_model, src, Greedy(), 10, record=True).hypotheses[0]
    assert [s.token_id for s in trace.steps] == [p.token_id for p in plain.path]
    assert [s.prob for s in trace.steps] == [float(np.exp(p.logprob)) for p in plain.path]  # bit for bit


def test_records_carry_the_exact_entropy(tiny_model, tiny_tokenizer):
    trace = trace_translation(tiny_model, tiny_tokenizer, TEXT, max_len=4)
    out = [s.token_id for s in trace.steps]
    logits, _, _ = teacher_forced(tiny_model, trace.source_ids, out)
    p = logits.double().softmax(-1)
    p[:, [tiny_model.config.pad_id, tiny_model.config.bos_id]] = 0  # never a next token: the records drop them
    expected = -(p * p.clamp_min(1e-300).log()).sum(-1)
    assert [s.entropy for s in trace.steps] == pytest.approx(expected.tolist(), abs=1e-4)


def test_beam_step_ranks_the_same_candidates_as_all_k_times_v():
    """BeamSearch.step ranks each beam's best 2K instead of all K*V continuations: same choice."""
    from model.generation import BeamSearch, next_token_logprobs

    g = torch.Generator().manual_seed(5)
    for trial, (vocab, k) in enumerate([(50, 3)] * 20 + [(7, 4)] * 5):  # 7 < 2K: fewer pieces than candidates
        model, _ = model_and_source(vocab=vocab)
        batch = 2
        search = BeamSearch(model, batch, k, 1.0, torch.device("cpu"))
        search.scores = torch.randn(batch, k, generator=g) * 3  # (B, K) every beam alive
        before = search.scores.clone()
        logits = torch.randn(batch * k, vocab, generator=g) * 4  # (B*K, V)
        choice = search.step(1, logits, None)
        tokens, rows = choice.tokens, choice.parents
        cand = (before.view(-1, 1) + next_token_logprobs(model, logits)).view(batch, k * vocab)  # (B, K*V)
        want_scores, want_idx = cand.topk(2 * k, dim=1)
        for b in range(batch):
            kept = [(int(i) // vocab, int(i) % vocab) for i, sc in zip(want_idx[b], want_scores[b])
                    if int(i) % vocab != model.config.eos_id and sc > float("-inf")][:k]
            got = [(int(r) - b * k, int(t)) for r, t in zip(rows[b * k:(b + 1) * k], tokens[b * k:(b + 1) * k])]
            assert got == kept, trial


def textbook_beam(model, src_row, k, length_penalty, max_len, forced=()):
    """Beam search written the plain way, for one sentence: every hypothesis recomputed from scratch,
    all K*V continuations ranked in Python. The policy BeamSearch implements with tensors: of the top
    2K continuations, an eos among the top K ends a hypothesis, the first K others go on; a sentence
    stops when K have ended; at max_len the live beams compete with the ended ones."""
    cfg = model.config
    norm = lambda score, n: score / max(n, 1) ** length_penalty  # noqa: E731
    alive, ended = [(0.0, [])], []  # (score, tokens)
    with torch.no_grad():
        for t in range(max_len):
            cand = []
            for score, toks in alive:
                logits = model(src_row, torch.tensor([[cfg.bos_id] + toks]))[0, -1]  # (V,)
                logp = logits.log_softmax(-1)
                logp[[cfg.pad_id, cfg.bos_id]] = float("-inf")
                choices = [forced[t]] if t < len(forced) else range(logp.numel())
                cand += [(score + float(logp[v]), toks + [v]) for v in choices]
            cand.sort(key=lambda c: -c[0])  # stable: ties keep beam order, then token order
            if t < len(forced):
                alive = cand[:1]
                if forced[t] == cfg.eos_id:
                    return norm(cand[0][0], t + 1), cand[0][1]
                continue
            alive = []
            for j, (score, toks) in enumerate(cand[: 2 * k]):
                if toks[-1] == cfg.eos_id:
                    if j < k:
                        ended.append((norm(score, t + 1), toks))
                elif len(alive) < k:
                    alive.append((score, toks))
            if len(ended) >= k:
                break
        else:
            ended += [(norm(score, max_len), toks) for score, toks in alive]
    return max(ended, key=lambda e: e[0])


@pytest.mark.parametrize("k, length_penalty, forced", [(2, 1.0, ()), (3, 0.0, ()), (3, 0.6, (5,)), (2, 1.0, (5, 3))])
@pytest.mark.parametrize("vocab", [7, 9, 40])  # few pieces: eos ranks everywhere in the top 2K, ties of ended ones
def test_beam_search_equals_the_textbook_search(k, length_penalty, forced, vocab):
    for seed in range(3):
        model, src = model_and_source(seed=seed, batch=3, vocab=vocab)
        src[1, 5:] = model.config.pad_id  # a shorter sentence in the batch
        max_len = 7
        gen = generate(model, src, Forced(forced, Beam(k, length_penalty)), max_len, record=True)
        for b, hyp in enumerate(gen.hypotheses):
            row = src[b : b + 1, : 5 if b == 1 else None]
            want_norm, want = textbook_beam(model, row, k, length_penalty, max_len, forced)
            got = [p.token_id for p in hyp.path]
            assert got == want, (seed, b)
            assert hyp.norm_score == pytest.approx(want_norm, abs=1e-4)
            assert hyp.finished == (got[-1] == model.config.eos_id)
            tree = gen.trees[b]  # the tree's winner is the same hypothesis
            assert [n.token_id for n in tree.path(tree.winner)] == got
