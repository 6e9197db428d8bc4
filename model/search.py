"""The one generation loop: greedy, beam search, forced target prefixes and head ablation, batched or not.

``generate(model, src, strategy, max_len)`` serves the app's instrumented trace, the CLI, batched
translation, evaluation and the benchmarks. The strategy is data:

- ``Greedy()``: the argmax of the logits (pad and bos excluded); no softmax unless something is recorded;
- ``Beam(size, length_penalty)``: hypotheses ranked by sum(log p) / length**length_penalty;
- ``Forced(prefix, then)``: the target tokens ``prefix`` are imposed (the model still computes, and the
  loop reports, the probability it gave each), then ``then`` (greedy or beam) continues.

A ``HeadMask`` zeroes chosen heads' outputs throughout. ``on_step`` is called after every step with a
``StepEvent`` (logits, chosen tokens, per-layer attention when ``need_weights``). With ``record=True``
the loop keeps, per step, every row's attention and top-k as numpy arrays (``StepData``), and beam
search keeps its tree of hypotheses (``BeamTree``); a hypothesis's per-step data is found through its
``path`` of (step, row) pairs, so the winner of a beam search needs no replay: the rows its tokens came
from are the reorder indices that were also applied to the KV cache.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Union

import numpy as np
import torch
import torch.nn.functional as F

from .attention import HeadMask
from .device import timer_ms
from .errors import InputError
from .transformer import EncoderOutput, Transformer


# --- strategies -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Greedy:
    """Take the most likely token at every step."""


@dataclass(frozen=True)
class Beam:
    """Beam search; a sentence stops once ``size`` hypotheses have ended with eos (among the top ``size``)."""

    size: int = 4
    length_penalty: float = 1.0


@dataclass(frozen=True)
class Forced:
    """Impose the target tokens ``prefix`` (ids, without <s>), then continue with ``then``."""

    prefix: tuple[int, ...]
    then: Union[Greedy, Beam] = Greedy()

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", tuple(int(t) for t in self.prefix))


Strategy = Union[Greedy, Beam, Forced]


def check_prefix(model: Transformer, prefix: tuple[int, ...] | list[int], max_len: int, what: str = "forced") -> None:
    """Refuse a forced (or sent-back ``what``) prefix the model cannot continue: ``InputError`` with the reason."""
    cfg = model.config
    if len(prefix) > max_len:
        raise InputError(f"the {what} prefix has {len(prefix)} tokens; at most {max_len} tokens are decoded")
    for i, tok in enumerate(prefix):
        if not 0 <= tok < cfg.tgt_vocab_size or tok in (cfg.pad_id, cfg.bos_id):
            raise InputError(f"{what} token {tok} at position {i} is not a token the model can output")
        if tok == cfg.eos_id and i != len(prefix) - 1:
            raise InputError(f"a {what} prefix can only end with </s>, not contain it")


# --- what the loop hands out ---------------------------------------------------------------------------
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
    hypotheses: list[Hypothesis]  # the best per sentence, in input order
    steps: list[StepData]  # per step when record=True, else empty
    trees: list[BeamTree] | None  # per sentence for beam search, else None
    step_ms: list[float]  # wall time of each step (all rows together)
    cache_bytes: list[int]  # KV-cache bytes after each step (0 without cache)


# --- helpers ------------------------------------------------------------------------------------------
def next_token_logprobs(model: Transformer, logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities (N, V) with pad and bos ruled out: they are never a next token."""
    logp = F.log_softmax(logits.float(), dim=-1)  # (N, V)
    logp[:, model.config.pad_id] = float("-inf")
    logp[:, model.config.bos_id] = float("-inf")
    return logp


def expand_encoder(enc: EncoderOutput, k: int) -> EncoderOutput:
    """Repeat every sentence's encoder output k times: rows b*k .. b*k+k-1 are sentence b's beams."""
    return EncoderOutput(enc.memory.repeat_interleave(k, 0), enc.src_mask.repeat_interleave(k, 0), None)


@contextlib.contextmanager
def thread_count(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads (None: unchanged), restoring the setting after."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_threads(rows: int) -> int | None:
    """One thread when few rows decode (batch 1, a beam of up to 8): per step the matrices are too
    small to share, the second thread mostly waits, and on a busy CPU it stalls the first
    (benchmarks/decode_speed.py measures it). Thread counts change float summation order, so every
    path (plain, instrumented) takes its count from here and stays comparable bit for bit."""
    return 1 if rows <= 8 else None


# --- the loop -------------------------------------------------------------------------------------------
@torch.inference_mode()
def generate(
    model: Transformer,
    src: torch.Tensor | None,
    strategy: Strategy = Greedy(),
    max_len: int = 50,
    *,
    enc: EncoderOutput | None = None,
    use_cache: bool = True,
    need_weights: bool = False,
    top_k: int = 0,
    head_mask: HeadMask | None = None,
    on_step: Callable[[StepEvent], None] | None = None,
    record: bool = False,
    threads: int | None | str = "auto",
) -> Generation:
    """Decode ``src`` (B, S) padded ids (or a given ``enc``) for at most ``max_len`` tokens.

    ``enc`` must have been computed with the same ``head_mask``. ``threads="auto"`` follows
    ``default_threads``. Returns a ``Generation`` with the best hypothesis per sentence.
    """
    forced, inner = (strategy.prefix, strategy.then) if isinstance(strategy, Forced) else ((), strategy)
    check_prefix(model, forced, max_len)
    k = inner.size if isinstance(inner, Beam) else 1
    if k < 1:
        raise InputError(f"beam size must be at least 1, got {k}")
    batch = (enc.memory if enc is not None else src).size(0)
    rows = batch * k
    with thread_count(default_threads(rows) if threads == "auto" else threads):
        if enc is None:
            enc = model.encode(src, head_mask=head_mask)
        device = enc.memory.device
        if k > 1:
            enc = expand_encoder(enc, k)
        if isinstance(inner, Beam):
            search: GreedySearch | BeamSearch = BeamSearch(model, batch, k, inner.length_penalty, device,
                                                           record_k=top_k if record else 0)
        else:
            search = GreedySearch(model, batch, device, record or top_k > 0)
        cache = model.new_cache(capacity=max_len + 1) if use_cache else None
        # Plain batched greedy drops finished sentences from the batch; recorded runs keep rows fixed.
        shrink = isinstance(search, GreedySearch) and cache is not None and not record and on_step is None and batch > 1
        tokens = torch.full((rows,), model.config.bos_id, dtype=torch.long, device=device)  # (R,)
        prefix = tokens[:, None]  # (R, 1): the decoder inputs so far, for the cache-free path
        steps: list[StepData] = []
        step_ms: list[float] = []
        cache_bytes: list[int] = []
        for t in range(max_len):
            start = time.perf_counter()
            if cache is not None:
                out = model.decode_step(tokens, enc, cache, need_weights, head_mask)
            else:
                out = model.decode_prefix(prefix, enc, need_weights, head_mask)
            force = forced[t] if t < len(forced) else None
            tokens, parents, done = search.step(t, out.logits, force)
            if parents is not None:
                if cache is not None:
                    cache.reorder(parents, cross=False)  # rows move only among copies of one sentence
                prefix = prefix.index_select(0, parents)
            if cache is None:
                prefix = torch.cat([prefix, tokens[:, None]], dim=1)  # (R, t+2)
            step_ms.append(timer_ms(device, start))
            cache_bytes.append(cache.nbytes() if cache is not None else 0)
            if record:
                steps.append(step_data(model, search, out, top_k, step_ms[-1], cache, force is not None))
            if on_step is not None:
                ident = torch.arange(rows, device=device) if parents is None else parents
                on_step(StepEvent(t, out.logits, tokens, ident, force is not None, out.self_attn, out.cross_attn,
                                  step_ms[-1]))
            if done:
                break
            keep = search.shrink() if shrink else None
            if keep is not None:
                cache.reorder(keep)
                enc = EncoderOutput(enc.memory.index_select(0, keep), enc.src_mask.index_select(0, keep), None)
                tokens = tokens.index_select(0, keep)
        hyps, trees = search.finish(len(step_ms))
    if trees is not None:
        for tree in trees:
            tree.steps = steps
    return Generation(hyps, steps, trees if record else None, step_ms, cache_bytes)


def step_data(model: Transformer, search, out, top_k: int, ms: float, cache, forced: bool) -> StepData:
    """Copy one step's per-row attention and top-k out of torch into numpy."""
    self_attn = cross_attn = top_ids = top_probs = entropy = None
    if out.self_attn is not None:
        self_attn = torch.stack(out.self_attn, 1).float().cpu().numpy()  # (R, L, H, T)
        cross_attn = torch.stack(out.cross_attn, 1).float().cpu().numpy()  # (R, L, H, S)
    if top_k > 0:
        logp = search.last_logp if search.last_logp is not None else next_token_logprobs(model, out.logits)
        n = min(top_k, logp.size(-1))
        ranked = search.last_top  # beam search has sorted every row already
        if ranked is not None and ranked[0].size(1) >= n:
            top_lp, top_i = ranked[0][:, :n], ranked[1][:, :n]  # (R, k)
        else:
            top_lp, top_i = logp.topk(n, dim=-1)  # (R, k)
        top_ids, top_probs = top_i.cpu().numpy(), top_lp.exp().cpu().numpy()
        # -sum p log p from the log-probabilities at hand: a fifth of entr(p)'s cost, whose log is the
        # slowest op of a recorded step. The clamp turns pad/bos's -inf into a finite 0 * min = 0.
        lp = logp.clamp_min(torch.finfo(logp.dtype).min)  # (R, V)
        entropy = (-(lp.exp() * lp).sum(-1)).cpu().numpy()  # (R,)
    kv_self = cache.self_nbytes() if cache is not None else 0
    kv_cross = cache.cross_nbytes() if cache is not None else 0
    return StepData(self_attn, cross_attn, top_ids, top_probs, entropy, ms, kv_self, kv_cross, forced)


class GreedySearch:
    """Row r decodes sentence ``rows_of[r]``; finished sentences emit pad until ``shrink`` drops them."""

    def __init__(self, model: Transformer, batch: int, device: torch.device, keep_logprobs: bool) -> None:
        cfg = model.config
        self.model, self.cfg, self.keep = model, cfg, keep_logprobs
        self.banned = torch.tensor([cfg.pad_id, cfg.bos_id], device=device)  # never a next token
        self.finished = torch.zeros(batch, dtype=torch.bool, device=device)  # (B,) per sentence
        self.rows_of = torch.arange(batch, device=device)  # (R,) sentence decoded by each row
        self.chosen: list[torch.Tensor] = []  # per step (B,), pad for sentences no longer decoded
        self.logprobs: list[torch.Tensor] = []  # per step (B,) when kept
        self.forced: list[bool] = []
        self.last_logp: torch.Tensor | None = None
        self.last_top: tuple[torch.Tensor, torch.Tensor] | None = None  # greedy ranks nothing; step_data sorts

    def step(self, t: int, logits: torch.Tensor, force: int | None) -> tuple[torch.Tensor, None, bool]:
        if force is None:
            # max().indices is argmax (first maximum; NaN wins), 2-3x faster on CPU. No softmax needed.
            choice = logits.max(-1).indices  # (R,)
            banned = (choice == self.cfg.pad_id) | (choice == self.cfg.bos_id)  # (R,); isin is 4x slower here
            if bool(banned.any()):  # rare: pad or bos on top; copy the logits only then
                choice = logits.index_fill(1, self.banned, float("-inf")).max(-1).indices  # (R,)
        else:
            choice = torch.full_like(self.rows_of, force)
        if self.keep:
            self.last_logp = next_token_logprobs(self.model, logits)  # (R, V)
            self.logprobs.append(self.last_logp.gather(1, choice[:, None])[:, 0])
        self.forced.append(force is not None)
        if choice.size(0) == self.finished.size(0):  # every sentence still has its row
            choice = choice.masked_fill(self.finished, self.cfg.pad_id)  # (B,)
            self.chosen.append(choice)
            self.finished |= choice == self.cfg.eos_id
        else:
            choice = choice.masked_fill(self.finished[self.rows_of], self.cfg.pad_id)  # (R,)
            full = torch.full_like(self.finished, self.cfg.pad_id, dtype=torch.long)  # (B,)
            self.chosen.append(full.index_copy_(0, self.rows_of, choice))
            self.finished[self.rows_of] |= choice == self.cfg.eos_id
        return choice, None, bool(self.finished.all())

    def shrink(self) -> torch.Tensor | None:
        """Rows to keep once at least a quarter of them have finished (else None): fewer rows per step."""
        alive = ~self.finished[self.rows_of]  # (R,)
        n_alive = int(alive.sum())
        if 4 * (alive.size(0) - n_alive) < alive.size(0):
            return None
        keep = alive.nonzero()[:, 0]  # (R',)
        self.rows_of = self.rows_of.index_select(0, keep)
        return keep

    def finish(self, n_steps: int) -> tuple[list[Hypothesis], None]:
        eos = self.cfg.eos_id
        chosen = torch.stack(self.chosen, 1).tolist()  # (B, T)
        lps = torch.stack(self.logprobs, 1).tolist() if self.keep else None  # (B, T)
        hyps = []
        for b, row in enumerate(chosen):
            n = row.index(eos) + 1 if eos in row else len(row)
            path = [PathStep(t, b, row[t], lps[b][t], self.forced[t]) for t in range(n)] if lps else []
            score = sum(p.logprob for p in path) if path else math.nan
            hyps.append(Hypothesis(row[: n - 1] if eos in row else row, path, score, score / max(n, 1), eos in row))
        return hyps, None


class BeamSearch:
    """Rows b*K .. b*K+K-1 hold sentence b's beams; every step keeps the best K continuations."""

    def __init__(self, model: Transformer, batch: int, k: int, length_penalty: float, device: torch.device,
                 record_k: int = 0) -> None:
        self.model, self.cfg, self.k, self.lp, self.device = model, model.config, k, length_penalty, device
        self.batch = batch
        self.scores = torch.full((batch, k), float("-inf"), device=device)  # (B, K)
        self.scores[:, 0] = 0.0  # all beams start identical; keep one alive so the first step is not duplicated
        self.finished: list[list[tuple[float, int]]] = [[] for _ in range(batch)]  # (norm score, node id)
        self.done = [False] * batch
        self.nodes: list[list[BeamNode]] = [[] for _ in range(batch)]  # per sentence; ids index its list
        self.row_node = [-1] * (batch * k)  # node id of the hypothesis now in each row
        self.last_logp: torch.Tensor | None = None
        self.last_top: tuple[torch.Tensor, torch.Tensor] | None = None  # each row's best log-probs and ids
        self.record_k = record_k  # how many of them the step record shows

    def norm(self, score: float, length: int) -> float:
        return score / (max(length, 1) ** self.lp)

    def add(self, t: int, parent_row: int, tok: int, lp: float, score: float, status: str, forced: bool) -> int:
        nodes = self.nodes[parent_row // self.k]
        node = BeamNode(len(nodes), t, self.row_node[parent_row], parent_row, tok, lp, score,
                        self.norm(score, t + 1), status, forced)
        nodes.append(node)
        return node.id

    def step(self, t: int, logits: torch.Tensor, force: int | None) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        logp = next_token_logprobs(self.model, logits)  # (B*K, V)
        self.last_logp, self.last_top = logp, None
        if force is not None:
            return self.force(t, logp, force)
        batch, k, eos = self.batch, self.k, self.cfg.eos_id
        vocab = logp.size(-1)
        # The best 2K continuations of the sentence are among each beam's own best 2K (a beam's score
        # is one constant added to its row), so rank K rows of 2K instead of K*V candidates, and keep
        # the rows' top list for the step record's top-k (step_data) instead of sorting them again.
        width = min(2 * k, vocab)
        self.last_top = logp.topk(min(max(width, self.record_k), vocab), dim=1)  # each (B*K, W)
        row_lp, row_tok = (t[:, :width].reshape(batch, k * width) for t in self.last_top)  # (B, K*2K)
        cand = self.scores.view(batch, k).repeat_interleave(width, dim=1) + row_lp  # (B, K*2K)
        top_scores, pos = cand.topk(min(2 * k, k * width), dim=1)  # (B, 2K): enough to find K non-eos
        top_lp = row_lp.gather(1, pos)  # (B, 2K)
        top_idx = torch.div(pos, width, rounding_mode="floor") * vocab + row_tok.gather(1, pos)  # beam * V + token
        ts, ti, tl = top_scores.tolist(), top_idx.tolist(), top_lp.tolist()
        # plain lists, turned into tensors once: a tensor item assignment costs microseconds each
        new_scores = [[float("-inf")] * k for _ in range(batch)]  # (B, K)
        new_rows = [[b * k] * k for b in range(batch)]  # (B, K): dead rows stay home
        new_tok = [[self.cfg.pad_id] * k for _ in range(batch)]  # (B, K)
        new_node = list(self.row_node)
        for b in range(batch):
            if self.done[b]:
                continue
            filled = 0
            for j in range(len(ts[b])):
                score, beam, tok = ts[b][j], ti[b][j] // vocab, ti[b][j] % vocab
                if score == float("-inf"):
                    break
                row = b * k + beam
                if tok == eos:
                    # only an eos that ranks among the top K counts as a finished hypothesis
                    node = self.add(t, row, tok, tl[b][j], score, "finished" if j < k else "pruned", False)
                    if j < k:
                        self.finished[b].append((self.norm(score, t + 1), node))
                elif filled < k:
                    node = self.add(t, row, tok, tl[b][j], score, "kept", False)
                    new_scores[b][filled], new_rows[b][filled], new_tok[b][filled] = score, row, tok
                    new_node[b * k + filled] = node
                    filled += 1
                else:
                    self.add(t, row, tok, tl[b][j], score, "pruned", False)
            if len(self.finished[b]) >= k:
                self.done[b] = True
        self.scores = torch.tensor(new_scores, device=self.device)  # (B, K)
        self.row_node = new_node
        tokens = torch.tensor(new_tok, dtype=torch.long, device=self.device).view(-1)  # (B*K,)
        return tokens, torch.tensor(new_rows, dtype=torch.long, device=self.device).view(-1), all(self.done)

    def force(self, t: int, logp: torch.Tensor, tok: int) -> tuple[torch.Tensor, None, bool]:
        """Every sentence's live beam (row b*K) takes ``tok``; the other rows stay dead copies."""
        k = self.k
        lps = logp[::k, tok].tolist()  # (B,)
        for b, lp in enumerate(lps):
            score = float(self.scores[b, 0]) + lp
            self.scores[b, 0] = score
            status = "finished" if tok == self.cfg.eos_id else "kept"
            node = self.add(t, b * k, tok, lp, score, status, True)
            self.row_node[b * k] = node
            if tok == self.cfg.eos_id:
                self.finished[b].append((self.norm(score, t + 1), node))
                self.done[b] = True
        return torch.full((self.batch * k,), tok, dtype=torch.long, device=self.device), None, all(self.done)

    def finish(self, n_steps: int) -> tuple[list[Hypothesis], list[BeamTree]]:
        hyps, trees = [], []
        for b in range(self.batch):
            pool = list(self.finished[b])
            if not self.done[b]:  # at max_len the alive beams compete with the finished ones
                for j in range(self.k):
                    s = float(self.scores[b, j])
                    if s > float("-inf"):
                        pool.append((self.norm(s, n_steps), self.row_node[b * self.k + j]))
            best_norm, best = max(pool, key=lambda p: p[0]) if pool else (float("-inf"), -1)
            tree = BeamTree(self.nodes[b], best)
            nodes = tree.path(best)
            path = [PathStep(n.step, n.row, n.token_id, n.logprob, n.forced) for n in nodes]
            ended = bool(nodes) and nodes[-1].token_id == self.cfg.eos_id
            tokens = [p.token_id for p in (path[:-1] if ended else path)]
            hyps.append(Hypothesis(tokens, path, nodes[-1].score if nodes else float("-inf"), best_norm, ended))
            trees.append(tree)
        return hyps, trees
