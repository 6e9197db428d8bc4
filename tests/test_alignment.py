"""The alignment lens: pieces merged into words, attention turned into links, heads scored, IBM model 1."""
from __future__ import annotations

import random

import numpy as np
import torch
import pytest

from model.alignment import (
    WordAlignment,
    cross_attention,
    head_scores,
    ibm1_align,
    score_links,
    word_alignment,
    word_attention,
    word_groups,
    words,
)


def test_pieces_merge_into_words():
    pieces = ["▁Le", "▁ch", "at", "▁mange", "▁.", "</s>"]
    assert word_groups(pieces) == [[0], [1, 2], [3], [4]]
    assert words(pieces) == ["Le", "chat", "mange", "."]
    assert word_groups(["<s>", "ab", "▁c", "d"]) == [[1], [2, 3]]  # a leading continuation still starts a word


def test_word_attention_sums_source_pieces_and_averages_target_pieces():
    attn = np.array([[0.1, 0.2, 0.3, 0.4],
                     [0.5, 0.1, 0.1, 0.3],
                     [0.0, 0.0, 1.0, 0.0]])  # (T=3 target pieces, S=4 source pieces)
    src_groups, tgt_groups = [[0], [1, 2], [3]], [[0, 1], [2]]
    w = word_attention(attn, src_groups, tgt_groups)
    expected = np.array([[(0.1 + 0.5) / 2, (0.5 + 0.2) / 2, (0.4 + 0.3) / 2],
                         [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(w, expected)
    np.testing.assert_allclose(w.sum(-1), 1.0)  # rows stay distributions


def test_head_scores_find_the_planted_diagonal_head():
    rng = np.random.default_rng(0)
    alignments, refs = [], []
    for _ in range(20):
        n = int(rng.integers(3, 9))
        heads = rng.dirichlet(np.ones(n), size=(2, 3, n))  # (L=2, H=3, Tw=n, Sw=n) random attention
        heads[1, 2] = 0.8 * np.eye(n) + 0.2 * heads[1, 2]  # layer 1, head 2 attends along the diagonal
        alignments.append(WordAlignment([str(i) for i in range(n)], [str(i) for i in range(n)], heads, heads.mean(1)))
        refs.append({(i, i) for i in range(n)})
    per_head, per_layer = head_scores(alignments, refs)
    assert per_head.shape == (2, 3) and per_layer.shape == (2,)
    assert np.unravel_index(per_head.argmax(), per_head.shape) == (1, 2)
    assert per_head[1, 2] == pytest.approx(1.0)
    assert per_head[0].max() < 0.6


def test_score_links():
    s = score_links([{(0, 0), (1, 1), (2, 1)}], [{(0, 0), (1, 1)}])
    assert (s.precision, s.recall) == pytest.approx((2 / 3, 1.0))
    assert s.f1 == pytest.approx(0.8) and s.aer == pytest.approx(0.2)


def test_ibm1_recovers_a_planted_alignment():
    rng = random.Random(0)
    lexicon = {f"f{i}": f"e{i}" for i in range(30)}
    pairs, truth = [], []
    for _ in range(300):
        src = rng.sample(sorted(lexicon), rng.randint(3, 7))
        tgt = [lexicon[w] for w in src]
        # mostly monotone, with one local swap now and then: the diagonal prior helps but must not decide
        if rng.random() < 0.3:
            k = rng.randrange(len(tgt) - 1)
            tgt[k], tgt[k + 1] = tgt[k + 1], tgt[k]
        pairs.append((src, tgt))
        truth.append({(src.index(f"f{w[1:]}"), i) for i, w in enumerate(tgt)})
    links = ibm1_align(pairs, iterations=5)
    assert score_links(links, truth).f1 > 0.95


def test_alignment_from_a_models_cross_attention(tiny_model, tiny_tokenizer):
    src_ids = tiny_tokenizer.encode("Le chat mange une pomme.") + [3]
    out_ids = tiny_tokenizer.encode("The cat eats an apple.") + [3]
    attn = cross_attention(tiny_model, tiny_model.encode(torch.tensor([src_ids])), out_ids)
    cfg = tiny_model.config
    assert attn.shape == (cfg.n_decoder_layers, cfg.n_heads, len(out_ids), len(src_ids))
    al = word_alignment(attn, tiny_tokenizer.pieces(src_ids), tiny_tokenizer.pieces(out_ids))
    assert al.src_words == "Le chat mange une pomme.".split()
    assert al.heads.shape[2:] == (len(al.tgt_words), len(al.src_words))
    # </s> belongs to no word: a target word's row holds its pieces' mean attention outside </s>
    groups = word_groups(tiny_tokenizer.pieces(out_ids))
    expected = np.stack([(1 - attn[..., g, -1]).mean(-1) for g in groups], -1)  # (L, H, Tw)
    np.testing.assert_allclose(al.heads.sum(-1), expected, atol=1e-5)
