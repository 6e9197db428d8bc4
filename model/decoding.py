"""Translation entry points for the app, CLI and evaluation, built on the one loop in ``model.generation``.

``translate_batch`` translates many sentences (greedy or beam, batched for throughput);
``trace_translation`` translates one and keeps everything the app shows, step by step (``Trace``):
attention, top-k, latency, KV-cache bytes, and for beam search the whole tree of hypotheses;
``trace_batch`` gives the same greedy traces for several sentences decoded together (the app's
micro-batches: one batched pass, split back into one exact trace per sentence). A forced
target prefix and a head-ablation mask apply to both. ``use_cache=False`` recomputes the whole prefix
every step (``Transformer.decode_prefix``) so the two can be compared for speed and for equality.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .attention import HeadMask
from .errors import InputError
from .generation.loop import generate
from .generation.records import BeamTree, Generation, Hypothesis, StepEvent
from .generation.search import next_token_logprobs
from .generation.strategies import Beam, Forced, Greedy
from .limits import MAX_SOURCE_CHARS, check_source, split_to_fit
from .tokenizer import Tokenizer
from .transformer import Transformer

__all__ = [
    "MAX_SOURCE_CHARS", "InputError", "source_ids", "pad_batch", "default_max_len", "next_token_logprobs",
    "strip_eos", "greedy_batch", "translate_batch", "Candidate", "StepRecord", "Trace", "trace_translation",
    "trace_batch", "target_ids", "branch_prefix",
]


# --- preparing input ------------------------------------------------------------------------------
def source_ids(model: Transformer, tokenizer: Tokenizer, text: str) -> list[int]:
    """Ids of one French sentence plus eos, checked against the model's position limit."""
    return check_source(tokenizer, text, model.config.max_positions) + [model.config.eos_id]


def target_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    """Ids of an English target prefix typed by a person (to force with ``trace_translation(prefix=)``)."""
    if not isinstance(text, str):
        raise InputError("the target prefix must be text")
    return tokenizer.encode(text.strip()) if text.strip() else []


def pad_batch(seqs: list[list[int]], pad_id: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Right-pad id lists to one (B, L) long tensor."""
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out.to(device)


def default_max_len(model: Transformer, src_len: int, max_len: int | None = None) -> int:
    """Target length cap: the caller's, else 1.5 x source + 10; never past the position table."""
    limit = model.config.max_positions - 1
    if max_len is not None:
        if max_len < 1:
            raise InputError(f"maximum length must be at least 1, got {max_len}")
        return min(max_len, limit)
    return min(int(1.5 * src_len) + 10, limit)


def strip_eos(ids: list[int], eos_id: int) -> list[int]:
    return ids[: ids.index(eos_id)] if eos_id in ids else ids


# --- batched search ---------------------------------------------------------------------------------
def greedy_batch(model: Transformer, src: torch.Tensor, max_len: int, head_mask: HeadMask | None = None) -> list[list[int]]:
    """src (B, S) padded ids -> B output id lists (eos removed), with the KV cache."""
    return [h.tokens for h in generate(model, src, Greedy(), max_len, head_mask=head_mask).hypotheses]


def translate_batch(
    model: Transformer,
    tokenizer: Tokenizer,
    texts: list[str],
    beam_size: int = 1,
    length_penalty: float = 1.0,
    max_len: int | None = None,
    batch_size: int = 64,
    head_mask: HeadMask | None = None,
) -> list[str]:
    """Translate many sentences, sorted by length into batches; output order matches input order.

    Empty lines give empty translations (so line-aligned files stay aligned). A text longer than the
    model reads at once is translated in pieces (``limits.split_to_fit``: at sentence ends, then
    spaces) and their translations joined by a space, as the CLI and the app do: nothing is cut off.
    """
    device = next(model.parameters()).device
    pieces = [split_to_fit(tokenizer, text, model.config.max_positions) for text in texts]  # LimitError past a line's cap
    flat = [piece for parts in pieces for piece in parts]
    out = [""] * len(flat)
    encoded = {i: tokenizer.encode(piece) + [model.config.eos_id] for i, piece in enumerate(flat)}
    order = sorted(encoded, key=lambda i: len(encoded[i]))
    strategy = Greedy() if beam_size == 1 else Beam(beam_size, length_penalty)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        src = pad_batch([encoded[i] for i in chunk], model.config.pad_id, device)
        cap = default_max_len(model, src.size(1), max_len)
        for i, hyp in zip(chunk, generate(model, src, strategy, cap, head_mask=head_mask).hypotheses):
            out[i] = tokenizer.decode(hyp.tokens)
    joined, done = [], iter(out)
    for parts in pieces:
        joined.append(" ".join(next(done) for _ in parts))
    return joined


# --- step-by-step trace for the app -----------------------------------------------------------------
@dataclass
class Candidate:
    token_id: int
    piece: str
    prob: float


@dataclass
class StepRecord:
    """What the model did at one decoding step (one generated token)."""

    step: int  # 0-based index of the generated token
    token_id: int
    piece: str
    prob: float  # probability the model gave the chosen (or forced) token
    top_k: list[Candidate]
    self_attn: np.ndarray  # (layers, heads, step+1): the query token over <s> and the tokens so far
    cross_attn: np.ndarray  # (layers, heads, S): the query token over the source pieces
    latency_ms: float  # wall time of this step (GPU-synchronised; all beams together)
    kv_self_bytes: int  # growing self-attention cache after this step (all beams)
    kv_cross_bytes: int  # fixed cross-attention cache (all beams)
    forced: bool = False  # the token was imposed (a forced prefix), not chosen by the model
    entropy: float | None = None  # nats, of the whole next-token distribution at this step


@dataclass
class Trace:
    """A whole translation, ready to be browsed step by step without re-running the model."""

    source_text: str
    source_ids: list[int]
    source_pieces: list[str]  # includes the final </s>
    encoder_attn: np.ndarray  # (layers, heads, S, S)
    encode_ms: float
    steps: list[StepRecord]
    translation: str
    target_pieces: list[str]  # the decoder inputs: <s> then each generated piece
    beam_size: int
    use_cache: bool
    device: str
    dtype: str
    score: float = math.nan  # sum of the steps' log-probabilities (forced steps included)
    norm_score: float = math.nan  # score / steps**length_penalty (beam search's ranking)
    n_forced: int = 0  # the first n_forced steps were forced
    tree: BeamTree | None = None  # beam search: every hypothesis considered, with its attention
    batch_size: int = 1  # sentences decoded together (``trace_batch``): latencies are the whole batch's

    @property
    def total_ms(self) -> float:
        return self.encode_ms + sum(s.latency_ms for s in self.steps)


def step_records(tokenizer: Tokenizer, gen: Generation, hyp: Hypothesis, src_len: int | None = None,
                 sentences: int = 1) -> list[StepRecord]:
    """One ``StepRecord`` per token of ``hyp``, read from the rows that produced it (no replay).

    In a greedy batch of ``sentences`` padded to one source width, each record keeps its row's first
    ``src_len`` cross-attention columns (the rest are padding, weight 0) and this sentence's share of
    the KV cache: exactly what a run of the sentence alone holds.
    """
    records = []
    for p in hyp.path:
        data = gen.steps[p.step]
        top = [] if data.top_ids is None else [
            Candidate(int(i), tokenizer.piece(int(i)), float(q)) for i, q in zip(data.top_ids[p.row], data.top_probs[p.row])
        ]
        cross = data.cross_attn[p.row]  # (L, H, S_padded)
        width = cross.shape[-1]
        src_len = width if src_len is None else src_len
        records.append(StepRecord(
            step=p.step, token_id=p.token_id, piece=tokenizer.piece(p.token_id), prob=float(np.exp(p.logprob)),
            top_k=top, self_attn=data.self_attn[p.row], cross_attn=cross[..., :src_len],
            latency_ms=data.latency_ms, kv_self_bytes=data.kv_self_bytes // sentences,
            kv_cross_bytes=data.kv_cross_bytes // (sentences * width) * src_len,
            forced=p.forced, entropy=None if data.entropy is None else float(data.entropy[p.row]),
        ))
    return records


def build_trace(model: Transformer, tokenizer: Tokenizer, text: str, ids: list[int], encoder_attn: np.ndarray,
                encode_ms: float, steps: list[StepRecord], hyp: Hypothesis, beam_size: int, use_cache: bool,
                tree: BeamTree | None = None, batch_size: int = 1) -> Trace:
    """The ``Trace`` of one sentence from its decoded hypothesis and step records."""
    param = next(model.parameters())
    return Trace(
        source_text=text,
        source_ids=ids,
        source_pieces=tokenizer.pieces(ids),
        encoder_attn=encoder_attn,
        encode_ms=encode_ms,
        steps=steps,
        translation=tokenizer.decode(hyp.tokens),
        target_pieces=["<s>"] + [s.piece for s in steps],
        beam_size=beam_size,
        use_cache=use_cache,
        device=str(param.device),
        dtype=str(param.dtype).replace("torch.", ""),
        score=hyp.score,
        norm_score=hyp.norm_score,
        n_forced=sum(s.forced for s in steps),
        tree=tree,
        batch_size=batch_size,
    )


def trace_translation(
    model: Transformer,
    tokenizer: Tokenizer,
    text: str,
    beam_size: int = 1,
    length_penalty: float = 1.0,
    max_len: int | None = None,
    use_cache: bool = True,
    top_k: int = 10,
    *,
    prefix: list[int] | None = None,
    head_mask: HeadMask | None = None,
    on_step: Callable[[StepEvent], None] | None = None,
) -> Trace:
    """Translate one sentence and keep everything the app shows, step by step.

    ``prefix`` (target ids, see ``target_ids``/``branch_prefix``) is forced first; greedy or beam
    search continues from it. ``head_mask`` switches heads off for the whole run. Records come from
    the one decoding pass: with beam search each record is read from the row that produced the
    winner's token at that step (its latency and KV bytes cover all beams), and ``Trace.tree`` holds
    every hypothesis considered.
    """
    if beam_size > 1 and not use_cache:
        raise InputError("beam search runs with the KV cache; turn the cache on or use greedy search")
    ids = source_ids(model, tokenizer, text)
    src = torch.tensor([ids], device=next(model.parameters()).device)  # (1, S)
    cap = default_max_len(model, len(ids), max_len)
    inner = Greedy() if beam_size == 1 else Beam(beam_size, length_penalty)
    strategy = Forced(prefix, inner) if prefix else inner
    gen = generate(model, src, strategy, cap, use_cache=use_cache, need_weights=True, top_k=top_k,
                   head_mask=head_mask, on_step=on_step, record=True)
    hyp = gen.hypotheses[0]
    return build_trace(model, tokenizer, text, ids, gen.encoder_attn[0], gen.encode_ms, step_records(tokenizer, gen, hyp),
                       hyp, beam_size, use_cache, gen.trees[0] if gen.trees else None)


def cut_greedy(hyp: Hypothesis, cap: int) -> Hypothesis:
    """A greedy hypothesis decoded past ``cap`` tokens, as a run with ``max_len=cap`` would have ended it."""
    if len(hyp.path) <= cap:
        return hyp
    path = hyp.path[:cap]  # an eos can only be the last token, so none is left
    score = sum(p.logprob for p in path)
    return Hypothesis([p.token_id for p in path], path, score, score / max(cap, 1), False)


def trace_batch(
    model: Transformer,
    tokenizer: Tokenizer,
    texts: list[str],
    max_len: int | None = None,
    use_cache: bool = True,
    top_k: int = 10,
    *,
    head_mask: HeadMask | None = None,
) -> list[Trace]:
    """Greedy traces of several sentences decoded together: one batched encode and one batched loop.

    Each trace equals ``trace_translation(model, tokenizer, text, max_len=max_len, ...)`` for its
    sentence (same tokens; probabilities and attention up to float rounding): every sentence keeps
    its own length cap, padding gets no attention, and the KV bytes are the sentence's own. Only the
    timings are shared: ``encode_ms`` and each step's ``latency_ms`` are the batch's, and
    ``Trace.batch_size`` says how many sentences ran together.
    """
    if not texts:
        return []
    ids = [source_ids(model, tokenizer, t) for t in texts]
    src = pad_batch(ids, model.config.pad_id, next(model.parameters()).device)  # (B, S)
    caps = [default_max_len(model, len(i), max_len) for i in ids]
    gen = generate(model, src, Greedy(), max(caps), use_cache=use_cache, need_weights=True, top_k=top_k,
                   head_mask=head_mask, record=True)
    encoder_attn, encode_ms = gen.encoder_attn, gen.encode_ms  # (B, L, H, S, S)
    traces = []
    for b, (text, sid, cap) in enumerate(zip(texts, ids, caps)):
        n = len(sid)
        hyp = cut_greedy(gen.hypotheses[b], cap)
        steps = step_records(tokenizer, gen, hyp, src_len=n, sentences=len(texts))
        traces.append(build_trace(model, tokenizer, text, sid, encoder_attn[b, :, :, :n, :n].copy(), encode_ms, steps, hyp,
                                  1, use_cache, batch_size=len(texts)))
    return traces


def branch_prefix(trace: Trace, step: int, token_id: int) -> list[int]:
    """The prefix that keeps ``trace``'s first ``step`` tokens and puts ``token_id`` at ``step``:
    clicking a top-k candidate re-decodes from there with ``trace_translation(prefix=...)``."""
    if not 0 <= step <= len(trace.steps):
        raise InputError(f"step {step} is outside this translation's 0..{len(trace.steps)}")
    return [s.token_id for s in trace.steps[:step]] + [int(token_id)]
