"""What the loop hands out: the per-step event, the per-step record, hypotheses, the beam tree and the
``Generation`` that carries them all (the one instrumentation channel, cf. x-transformers'
``LayerIntermediates``): the encoder output and its attention, timings, KV bytes and step records."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..attention import HeadMask
from ..transformer import EncoderOutput


@dataclass
class StepEvent:
    """One step as it happens (for ``on_step``); tensors are the loop's own, do not modify them.

    Rows are batch x beam (R = B*K). ``tokens[r]`` is the token now at row r, which continues the
    hypothesis that was at row ``parents[r]`` when this step ran (identity for greedy).
    """

    step: int
    logits: torch.Tensor  # (R, V) next-token scores computed at this step, before softmax
    tokens: torch.Tensor  # (R,)
    parents: torch.Tensor  # (R,)
    forced: bool
    self_attn: list[torch.Tensor] | None  # per decoder layer (R, H, step+1)
    cross_attn: list[torch.Tensor] | None  # per decoder layer (R, H, S)
    latency_ms: float


@dataclass
class StepData:
    """What ``record=True`` keeps of one step, per row that ran the decoder (R = B*K)."""

    self_attn: np.ndarray | None  # (R, L, H, step+1), when need_weights
    cross_attn: np.ndarray | None  # (R, L, H, S), when need_weights
    top_ids: np.ndarray | None  # (R, k) most likely next tokens, when top_k
    top_probs: np.ndarray | None  # (R, k) their probabilities
    entropy: np.ndarray | None  # (R,) entropy in nats of each row's next-token distribution, with top_k
    latency_ms: float
    kv_self_bytes: int  # whole cache (all rows) after this step
    kv_cross_bytes: int
    forced: bool


@dataclass
class PathStep:
    """One token of a hypothesis: produced at ``step`` by decoder row ``row`` (index into StepData)."""

    step: int
    row: int
    token_id: int
    logprob: float
    forced: bool


@dataclass
class Hypothesis:
    tokens: list[int]  # generated ids without bos/eos (forced ones included)
    path: list[PathStep]  # every step incl. a final eos; empty for greedy when nothing was recorded
    score: float  # sum of log-probabilities of the path (nan when not computed)
    norm_score: float  # score / len(path)**length_penalty
    finished: bool  # ended with eos (else stopped at max_len)


@dataclass
class BeamNode:
    """One candidate of one beam-search step. ``parent`` is the node it extends (-1: <s>)."""

    id: int
    step: int
    parent: int
    row: int  # decoder row that scored it (its parent's row at this step)
    token_id: int
    logprob: float  # log p(token | parent hypothesis)
    score: float  # cumulative log-probability
    norm_score: float  # score / (step+1)**length_penalty
    status: str  # "kept" (continues), "pruned" (fell out of the beam) or "finished" (ended with eos)
    forced: bool = False


@dataclass
class BeamTree:
    """Every candidate beam search considered for one sentence (the top 2 x beam of each step)."""

    nodes: list[BeamNode]
    winner: int  # node id of the chosen hypothesis's last token, -1 if none
    steps: list[StepData] = field(repr=False, default_factory=list)  # shared with the Generation

    def path(self, node_id: int) -> list[BeamNode]:
        """The nodes from the first step down to ``node_id``."""
        out = []
        while node_id >= 0:
            out.append(self.nodes[node_id])
            node_id = self.nodes[node_id].parent
        return out[::-1]

    def levels(self) -> list[list[BeamNode]]:
        """Nodes grouped by step."""
        out: list[list[BeamNode]] = []
        for n in self.nodes:
            while len(out) <= n.step:
                out.append([])
            out[n.step].append(n)
        return out

    def attention(self, node_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Self (L, H, step+1) and cross (L, H, S) attention of the step that produced ``node_id``
        (recorded with ``need_weights``)."""
        n = self.nodes[node_id]
        data = self.steps[n.step]
        if data.self_attn is None:
            raise ValueError("attention was not recorded: generate with need_weights=True, record=True")
        return data.self_attn[n.row], data.cross_attn[n.row]


@dataclass
class Generation:
    """A finished generation: what the views read instead of running the encoder again."""

    hypotheses: list[Hypothesis]  # the best per sentence, in input order
    enc: EncoderOutput  # the encoder's output for the B sentences (not repeated per beam)
    head_mask: HeadMask | None  # the heads switched off throughout (encoder included)
    encode_ms: float  # wall time of the encoder pass
    encoder_attn: np.ndarray | None  # (B, L, H, S, S) encoder self-attention, with need_weights and record
    steps: list[StepData]  # per step when record=True, else empty
    trees: list[BeamTree] | None  # per sentence for beam search with record=True, else None
    step_ms: list[float]  # wall time of each step (all rows together)
    cache_bytes: list[int]  # KV-cache bytes after each step (0 without cache)

    def sentence(self, b: int = 0) -> tuple[EncoderOutput, list[int]]:
        """Sentence ``b``'s encoder output, (1, S_b, D) without padding, and the ids of its best
        hypothesis with the final eos when it ended: what a teacher-forced pass over the finished
        translation reads (the lenses, alignment, ablation), so none of them encodes it again."""
        path = self.hypotheses[b].path
        if not path:
            raise ValueError("the hypothesis has no recorded path: generate with record=True or top_k > 0")
        n = int(self.enc.src_mask[b].sum())
        enc = EncoderOutput(self.enc.memory[b : b + 1, :n], self.enc.src_mask[b : b + 1, :n], None)
        return enc, [p.token_id for p in path]

