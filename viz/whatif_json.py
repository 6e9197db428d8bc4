"""JSON forms of the "what if" results (beam tree, head ablation, logit lens, word alignment) for the page.

Pure functions from ``model/`` results to JSON-ready dicts; arrays of attention go through
``model.trace_json.encode_array`` (uint8 + scale) like the main trace. Indices are 0-based; the page adds 1.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from model.trace_json import encode_array

if TYPE_CHECKING:
    from model.ablation import HeadRanking
    from model.alignment import WordAlignment
    from model.lens import LogitLens
    from model.generation import BeamTree
    from model.tokenizer import Tokenizer


def beam_tree_json(tree: "BeamTree", tokenizer: "Tokenizer") -> dict[str, Any]:
    """Every node of a beam search, plus each step's per-row attention, so a node click needs no server.

    ``attention.cross`` is (T, R, L, H, S) and ``attention.self`` (T, R, L, H, T): the rows (beams) that
    ran the decoder at step t; a node's attention is ``[node.step, node.row]`` (self: columns 0..step).
    """
    steps = tree.steps
    if not steps or steps[0].cross_attn is None:
        raise ValueError("the beam tree has no recorded attention (generate with need_weights and record)")
    n_steps, rows = len(steps), steps[0].cross_attn.shape[0]
    layers, heads, n_src = steps[0].cross_attn.shape[1:]
    cross = np.stack([s.cross_attn for s in steps])  # (T, R, L, H, S)
    self_attn = np.zeros((n_steps, rows, layers, heads, n_steps), dtype=np.float32)  # (T, R, L, H, T)
    for t, s in enumerate(steps):
        self_attn[t, ..., : t + 1] = s.self_attn[..., : t + 1]
    winners = {n.id for n in tree.path(tree.winner)} if tree.winner >= 0 else set()
    nodes = [{"id": n.id, "step": n.step, "parent": n.parent, "row": n.row, "token_id": n.token_id,
              "piece": tokenizer.piece(n.token_id), "logprob": round(n.logprob, 5), "score": round(n.score, 5),
              "norm_score": round(n.norm_score, 5), "status": n.status, "forced": n.forced,
              "winner": n.id in winners} for n in tree.nodes]
    return {"nodes": nodes, "winner": tree.winner, "steps": n_steps, "rows": int(rows),
            "attention": {"cross": encode_array(cross), "self": encode_array(self_attn)}}


def step_probs(tokenizer: "Tokenizer", token_ids: Sequence[int], logprobs: Sequence[float]) -> list[dict]:
    """Per step: the piece chosen and the probability the model gave it (its top-1 when decoding greedily)."""
    return [{"token_id": int(t), "piece": tokenizer.piece(int(t)), "prob": round(float(np.exp(lp)), 6)}
            for t, lp in zip(token_ids, logprobs)]


def ranking_json(ranking: "HeadRanking", top: int = 12) -> dict[str, Any]:
    """Log-probability drop of the translation per head (kind -> (L, H)) and the ``top`` heads it needs most."""
    return {"baseline_logprob": round(ranking.baseline, 5),
            "drop": {kind: np.round(d, 5).tolist() for kind, d in ranking.drop.items()},
            "top": [{"kind": k, "layer": l, "head": h, "drop": round(d, 5)} for k, l, h, d in ranking.ranked()[:top]]}


def lens_json(lens: "LogitLens", tokenizer: "Tokenizer", out_ids: Sequence[int]) -> dict[str, Any]:
    """Per step: the piece output, then per decoder layer the piece that layer would output and its probability."""
    steps = []
    for t, tok in enumerate(out_ids):
        layers = [{"piece": tokenizer.piece(int(lens.top_ids[t, l])), "prob": round(float(lens.top_probs[t, l]), 5),
                   "chosen_prob": round(float(lens.chosen_probs[t, l]), 5)} for l in range(lens.top_ids.shape[1])]
        steps.append({"piece": tokenizer.piece(int(tok)), "layers": layers})
    return {"layers": int(lens.top_ids.shape[1]), "steps": steps}


def alignment_json(wa: "WordAlignment") -> dict[str, Any]:
    """Word attention of every head and of each layer's mean, with the hard links of each layer mean."""
    return {"src_words": wa.src_words, "tgt_words": wa.tgt_words,
            "heads": np.round(wa.heads, 4).tolist(),  # (L, H, Tw, Sw)
            "layer_mean": np.round(wa.layer_mean, 4).tolist(),  # (L, Tw, Sw)
            "links": [sorted(wa.links(l)) for l in range(wa.layer_mean.shape[0])]}
