"""The alignment lens: word alignments read from cross-attention, scored against a reference aligner.

Merge rule (SentencePiece): a piece that starts with "▁" begins a new word, any other piece continues
the word before it (the first piece begins a word whatever it looks like); <s>, </s> and <pad> belong
to no word. Piece attention becomes word attention by SUMMING over a source word's pieces (the
attention mass the word receives) and AVERAGING over a target word's pieces (each piece is one query,
each an equal share of the word). A target word is aligned to the source word it gives most attention.

Attention is read at the step that *produces* each target piece (the app's step records: query = the
previous token), the convention under which cross-attention heads are known to align (Garg et al. 2019).

The reference aligner is IBM model 1 with fast_align's diagonal prior (Dyer et al. 2013), written
here in numpy; ``reference_alignments`` uses eflomal instead when it is installed (pip install
eflomal; it runs offline).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .attention import HeadMask
from .transformer import EncoderOutput, Transformer

WORD_START = "▁"
SPECIAL = ("<s>", "</s>", "<pad>")
Links = set[tuple[int, int]]  # (source word, target word), Pharaoh "j-i" order


def word_groups(pieces: list[str]) -> list[list[int]]:
    """Indices of the pieces of each word, by the merge rule above."""
    groups: list[list[int]] = []
    for i, piece in enumerate(pieces):
        if piece in SPECIAL:
            continue
        if piece.startswith(WORD_START) or not groups:
            groups.append([i])
        else:
            groups[-1].append(i)
    return groups


def words(pieces: list[str]) -> list[str]:
    """The words that ``word_groups`` forms, as text."""
    return ["".join(pieces[i] for i in g).replace(WORD_START, "") for g in word_groups(pieces)]


def word_attention(attn: np.ndarray, src_groups: list[list[int]], tgt_groups: list[list[int]]) -> np.ndarray:
    """Piece attention (..., T, S) -> word attention (..., Tw, Sw): sum over source pieces, mean over target pieces."""
    cols = np.stack([attn[..., g].sum(-1) for g in src_groups], -1)  # (..., T, Sw)
    return np.stack([cols[..., g, :].mean(-2) for g in tgt_groups], -2)  # (..., Tw, Sw)


def hard_links(word_attn: np.ndarray) -> Links:
    """(Tw, Sw) -> each target word linked to its most-attended source word."""
    return {(int(j), i) for i, j in enumerate(word_attn.argmax(-1))}


@dataclass
class AlignmentScore:
    precision: float
    recall: float
    f1: float
    aer: float  # alignment error rate with one reference set (sure = possible): 1 - F1


def score_links(pred: list[Links], ref: list[Links]) -> AlignmentScore:
    """Corpus-level precision/recall/F1/AER of predicted links against reference links."""
    hit = sum(len(p & r) for p, r in zip(pred, ref))
    n_pred, n_ref = sum(map(len, pred)), sum(map(len, ref))
    precision = hit / n_pred if n_pred else 0.0
    recall = hit / n_ref if n_ref else 0.0
    f1 = 2 * hit / (n_pred + n_ref) if n_pred + n_ref else 0.0
    return AlignmentScore(precision, recall, f1, 1.0 - f1)


@torch.inference_mode()
def cross_attention(
    model: Transformer, enc: EncoderOutput, out_ids: list[int], head_mask: HeadMask | None = None
) -> np.ndarray:
    """Teacher-forced cross-attention (L, H, T, S) of ``out_ids`` over the one sentence encoded in
    ``enc`` (e.g. a finished ``Generation.sentence()``, so nothing is encoded again): row t is the
    step that produces ``out_ids[t]``."""
    tgt_in = torch.tensor([[model.config.bos_id] + list(out_ids[:-1])], device=enc.memory.device)  # (1, T)
    _, _, cross = model.run_decoder(tgt_in, enc, need_weights=True, head_mask=head_mask)
    return torch.stack([w[0] for w in cross]).float().cpu().numpy()  # (L, H, T, S)


@dataclass
class WordAlignment:
    src_words: list[str]
    tgt_words: list[str]
    heads: np.ndarray  # (L, H, Tw, Sw) word attention of every head
    layer_mean: np.ndarray  # (L, Tw, Sw) mean over heads

    def links(self, layer: int, head: int | None = None) -> Links:
        """Hard links of one head, or of the layer's mean over heads when ``head`` is None."""
        return hard_links(self.layer_mean[layer] if head is None else self.heads[layer, head])


def word_alignment(attn: np.ndarray, src_pieces: list[str], tgt_pieces: list[str]) -> WordAlignment:
    """From piece cross-attention (L, H, T, S) and the pieces on both sides (T target, S source)."""
    heads = word_attention(attn, word_groups(src_pieces), word_groups(tgt_pieces))  # (L, H, Tw, Sw)
    return WordAlignment(words(src_pieces), words(tgt_pieces), heads, heads.mean(1))


def head_scores(alignments: list[WordAlignment], refs: list[Links]) -> tuple[np.ndarray, np.ndarray]:
    """F1 against the reference per head (L, H) and per layer mean (L,), over a corpus."""
    n_layers, n_heads = alignments[0].heads.shape[:2]
    per_head = np.array([[score_links([a.links(l, h) for a in alignments], refs).f1 for h in range(n_heads)]
                         for l in range(n_layers)])
    per_layer = np.array([score_links([a.links(l) for a in alignments], refs).f1 for l in range(n_layers)])
    return per_head, per_layer


# --- the reference aligner ---------------------------------------------------------------------------
def ibm1_align(pairs: list[tuple[list[str], list[str]]], iterations: int = 5, tension: float = 4.0,
               null_prob: float = 0.08) -> list[Links]:
    """IBM model 1 with fast_align's diagonal prior, by EM: each target word links to one source word or NULL.

    p(target i aligned to source j) ∝ exp(-tension * |i/m - j/n|) t(e_i | f_j); NULL gets ``null_prob``.
    Vectorised over all (sentence, i, j) triples of the corpus at once.
    """
    src_vocab: dict[str, int] = {"<null>": 0}
    tgt_vocab: dict[str, int] = {}
    f_ids, e_ids, group, src_pos, prior = [], [], [], [], []
    g = 0
    for src, tgt in pairs:
        n, m = len(src), len(tgt)
        fs = [0] + [src_vocab.setdefault(w, len(src_vocab)) for w in src]
        for i, w in enumerate(tgt):
            e = tgt_vocab.setdefault(w, len(tgt_vocab))
            diag = np.exp(-tension * np.abs((i + 0.5) / m - (np.arange(n) + 0.5) / n)) if n else np.zeros(0)
            p = np.concatenate([[null_prob], (1 - null_prob) * diag / max(diag.sum(), 1e-12)])
            f_ids.extend(fs), e_ids.extend([e] * (n + 1)), group.extend([g] * (n + 1))
            src_pos.extend(range(-1, n)), prior.extend(p)
            g += 1
    f_ids, e_ids, group = np.array(f_ids), np.array(e_ids), np.array(group)
    src_pos, prior = np.array(src_pos), np.array(prior)
    pair_id = np.unique(f_ids * len(tgt_vocab) + e_ids, return_inverse=True)[1]  # co-occurring (f, e) pairs
    pair_f = np.zeros(pair_id.max() + 1, dtype=int)
    pair_f[pair_id] = f_ids
    t = np.ones(pair_id.max() + 1)  # uniform start
    for _ in range(iterations):
        post = t[pair_id] * prior
        post /= np.bincount(group, post)[group]  # normalise over the source positions of each target word
        counts = np.bincount(pair_id, post, minlength=len(t))
        t = counts / np.bincount(pair_f, counts, minlength=len(src_vocab))[pair_f]
    post = t[pair_id] * prior
    best = np.full(g, -1)
    order = np.lexsort((-post, group))  # per group, highest posterior first
    first = np.r_[True, group[order][1:] != group[order][:-1]]
    best[group[order][first]] = src_pos[order][first]
    links: list[Links] = []
    k = 0
    for src, tgt in pairs:
        links.append({(int(best[k + i]), i) for i in range(len(tgt)) if best[k + i] >= 0})
        k += len(tgt)
    return links


def reference_alignments(pairs: list[tuple[list[str], list[str]]], use_eflomal: bool = True) -> tuple[list[Links], str]:
    """Reference links for word pairs, and the aligner's name: eflomal when installed, else ``ibm1_align``."""
    if use_eflomal:
        try:
            return _eflomal(pairs), "eflomal"
        except ImportError:
            pass
    return ibm1_align(pairs), "IBM model 1 + diagonal prior (model.alignment.ibm1_align)"


def _eflomal(pairs: list[tuple[list[str], list[str]]]) -> list[Links]:
    import tempfile

    from eflomal import Aligner

    with tempfile.NamedTemporaryFile("r", suffix=".links") as fwd:
        Aligner().align([" ".join(s) for s, _ in pairs], [" ".join(t) for _, t in pairs], links_filename_fwd=fwd.name)
        lines = open(fwd.name, encoding="utf-8").read().splitlines()
    return [{tuple(map(int, link.split("-"))) for link in line.split()} for line in lines]
