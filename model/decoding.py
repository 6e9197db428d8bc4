"""Greedy and beam-search decoding, batched for throughput, and a step-by-step trace for the app.

All search runs on the explicit ``KVCache``; ``use_cache=False`` recomputes the whole prefix every
step (``Transformer.decode_prefix``) so the two can be compared for speed and for equality.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .device import synchronize, timer_ms
from .tokenizer import Tokenizer
from .transformer import EncoderOutput, Transformer

MAX_SOURCE_CHARS = 1000


class InputError(ValueError):
    """The text given cannot be translated; the message says why in words a user understands."""


# --- preparing input ------------------------------------------------------------------------------
def source_ids(model: Transformer, tokenizer: Tokenizer, text: str) -> list[int]:
    """Ids of one French sentence plus eos, checked against the model's position limit."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("The text is empty: type a French sentence to translate.")
    if len(text) > MAX_SOURCE_CHARS:
        raise InputError(f"The text is {len(text)} characters long; the limit is {MAX_SOURCE_CHARS}.")
    ids = tokenizer.encode(text.strip()) + [model.config.eos_id]
    if len(ids) > model.config.max_positions:
        raise InputError(
            f"The sentence is {len(ids)} tokens long; this model reads at most {model.config.max_positions}."
        )
    return ids


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


def next_token_logprobs(model: Transformer, logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities (N, V) with pad and bos ruled out: they are never a next token."""
    logp = F.log_softmax(logits.float(), dim=-1)  # (N, V)
    logp[:, model.config.pad_id] = float("-inf")
    logp[:, model.config.bos_id] = float("-inf")
    return logp


def strip_eos(ids: list[int], eos_id: int) -> list[int]:
    return ids[: ids.index(eos_id)] if eos_id in ids else ids


# --- batched search ---------------------------------------------------------------------------------
@torch.no_grad()
def greedy_batch(model: Transformer, src: torch.Tensor, max_len: int) -> list[list[int]]:
    """src (B, S) padded ids -> B output id lists (eos removed), with the KV cache."""
    cfg = model.config
    enc = model.encode(src)
    cache = model.new_cache()
    batch = src.size(0)
    tokens = torch.full((batch,), cfg.bos_id, dtype=torch.long, device=src.device)  # (B,)
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)  # (B,)
    outputs = []
    for _ in range(max_len):
        logp = next_token_logprobs(model, model.decode_step(tokens, enc, cache).logits)  # (B, V)
        tokens = logp.argmax(-1).masked_fill(finished, cfg.pad_id)  # (B,)
        outputs.append(tokens)
        finished |= tokens == cfg.eos_id
        if bool(finished.all()):
            break
    out = torch.stack(outputs, 1).tolist()  # (B, T)
    return [strip_eos([t for t in row if t != cfg.pad_id], cfg.eos_id) for row in out]


def expand_encoder(enc: EncoderOutput, k: int) -> EncoderOutput:
    """Repeat every sentence's encoder output k times: rows b*k .. b*k+k-1 are sentence b's beams."""
    return EncoderOutput(enc.memory.repeat_interleave(k, 0), enc.src_mask.repeat_interleave(k, 0), None)


@dataclass
class BeamResult:
    tokens: list[int]  # without bos/eos
    score: float  # length-normalised log-probability
    step_ms: list[float] = field(default_factory=list)  # wall time of each search step
    cache_bytes: list[int] = field(default_factory=list)  # KV-cache bytes after each step


@torch.no_grad()
def beam_search_batch(
    model: Transformer, src: torch.Tensor, beam_size: int, max_len: int, length_penalty: float = 1.0
) -> list[BeamResult]:
    """Batched beam search. Hypotheses are ranked by sum(log p) / length**length_penalty.

    A sentence stops once ``beam_size`` hypotheses have ended with eos; at ``max_len`` the alive
    beams compete with the finished ones. Beam size 1 is exactly greedy search.
    """
    if beam_size < 1:
        raise InputError(f"beam size must be at least 1, got {beam_size}")
    cfg = model.config
    device = src.device
    batch, k = src.size(0), beam_size
    enc = expand_encoder(model.encode(src), k)
    cache = model.new_cache()
    tokens = torch.full((batch * k,), cfg.bos_id, dtype=torch.long, device=device)  # (B*K,)
    scores = torch.full((batch, k), float("-inf"), device=device)  # (B, K)
    scores[:, 0] = 0.0  # all beams start identical; keep one alive so the first step is not duplicated
    history = torch.empty((batch * k, 0), dtype=torch.long, device=device)  # (B*K, t)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    step_ms: list[float] = []
    cache_bytes: list[int] = []

    def norm(score: float, length: int) -> float:
        return score / (max(length, 1) ** length_penalty)

    for t in range(max_len):
        start = time.perf_counter()
        logp = next_token_logprobs(model, model.decode_step(tokens, enc, cache).logits)  # (B*K, V)
        vocab = logp.size(-1)
        cand = (scores.view(-1, 1) + logp).view(batch, k * vocab)  # (B, K*V)
        top_scores, top_idx = cand.topk(2 * k, dim=1)  # (B, 2K): enough to find K non-eos
        top_beam, top_tok = top_idx // vocab, top_idx % vocab
        new_scores = torch.full((batch, k), float("-inf"), device=device)
        new_rows = torch.zeros((batch, k), dtype=torch.long, device=device)
        new_tok = torch.full((batch, k), cfg.pad_id, dtype=torch.long, device=device)
        ts, tb, tt = top_scores.tolist(), top_beam.tolist(), top_tok.tolist()
        for b in range(batch):
            if done[b]:
                continue
            filled = 0
            for j in range(2 * k):
                score, beam, tok = ts[b][j], tb[b][j], tt[b][j]
                if score == float("-inf"):
                    break
                row = b * k + beam
                if tok == cfg.eos_id:
                    if j < k:  # only eos that would rank among the top K counts as a finished hypothesis
                        finished[b].append((norm(score, t + 1), history[row].tolist()))
                    continue
                new_scores[b, filled], new_rows[b, filled], new_tok[b, filled] = score, row, tok
                filled += 1
                if filled == k:
                    break
            if len(finished[b]) >= k:
                done[b] = True
        if all(done):
            step_ms.append(timer_ms(device, start))
            cache_bytes.append(cache.nbytes())
            break
        rows = new_rows.view(-1)  # (B*K,)
        cache.reorder(rows)
        history = torch.cat([history.index_select(0, rows), new_tok.view(-1, 1)], dim=1)  # (B*K, t+1)
        scores = new_scores
        tokens = new_tok.view(-1)
        step_ms.append(timer_ms(device, start))
        cache_bytes.append(cache.nbytes())

    results = []
    for b in range(batch):
        pool = list(finished[b])
        if not done[b]:
            for j in range(k):
                s = float(scores[b, j])
                if s > float("-inf"):
                    pool.append((norm(s, history.size(1)), history[b * k + j].tolist()))
        best_score, best = max(pool, key=lambda p: p[0]) if pool else (float("-inf"), [])
        results.append(BeamResult(best, best_score, step_ms, cache_bytes))
    return results


def translate_batch(
    model: Transformer,
    tokenizer: Tokenizer,
    texts: list[str],
    beam_size: int = 1,
    length_penalty: float = 1.0,
    max_len: int | None = None,
    batch_size: int = 64,
) -> list[str]:
    """Translate many sentences, sorted by length into batches; output order matches input order.

    Empty lines give empty translations (so line-aligned files stay aligned).
    """
    device = next(model.parameters()).device
    out = [""] * len(texts)
    encoded = {}
    for i, text in enumerate(texts):
        if text.strip():
            ids = tokenizer.encode(text.strip())[: model.config.max_positions - 1]
            encoded[i] = ids + [model.config.eos_id]
    order = sorted(encoded, key=lambda i: len(encoded[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        src = pad_batch([encoded[i] for i in chunk], model.config.pad_id, device)
        cap = default_max_len(model, src.size(1), max_len)
        if beam_size == 1:
            hyps = greedy_batch(model, src, cap)
        else:
            hyps = [r.tokens for r in beam_search_batch(model, src, beam_size, cap, length_penalty)]
        for i, ids in zip(chunk, hyps):
            out[i] = tokenizer.decode(ids)
    return out


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
    prob: float  # probability of the chosen token
    top_k: list[Candidate]
    self_attn: np.ndarray  # (layers, heads, step+1): the query token over <s> and the tokens so far
    cross_attn: np.ndarray  # (layers, heads, S): the query token over the source pieces
    latency_ms: float  # wall time of this step (GPU-synchronised)
    kv_self_bytes: int  # growing self-attention cache after this step
    kv_cross_bytes: int  # fixed cross-attention cache


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

    @property
    def total_ms(self) -> float:
        return self.encode_ms + sum(s.latency_ms for s in self.steps)


def _record(
    model: Transformer, tokenizer: Tokenizer, step: int, logits: torch.Tensor, chosen: int, out, top_k: int
) -> tuple[int, str, float, list[Candidate], np.ndarray, np.ndarray]:
    probs = next_token_logprobs(model, logits).exp()[0]  # (V,)
    top_p, top_i = probs.topk(top_k)
    cands = [Candidate(int(i), tokenizer.piece(int(i)), float(p)) for p, i in zip(top_p, top_i)]
    self_attn = torch.stack([w[0] for w in out.self_attn]).float().cpu().numpy()  # (L, H, T)
    cross_attn = torch.stack([w[0] for w in out.cross_attn]).float().cpu().numpy()  # (L, H, S)
    return chosen, tokenizer.piece(chosen), float(probs[chosen]), cands, self_attn, cross_attn


@torch.no_grad()
def iter_steps(
    model: Transformer,
    tokenizer: Tokenizer,
    enc: EncoderOutput,
    max_len: int,
    use_cache: bool = True,
    top_k: int = 10,
    forced: list[int] | None = None,
) -> Iterator[StepRecord]:
    """Greedy decoding of one sentence (batch 1), yielding a ``StepRecord`` per generated token.

    With ``forced`` the tokens are given (a beam-search result) and the records show what the model
    computed for that hypothesis. Stops after eos or ``max_len`` tokens.
    """
    cfg = model.config
    device = enc.memory.device
    cache = model.new_cache() if use_cache else None
    prefix = [cfg.bos_id]
    steps = len(forced) + 1 if forced is not None else max_len
    for step in range(min(steps, max_len)):
        start = time.perf_counter()
        if use_cache:
            token = torch.tensor([prefix[-1]], device=device)
            out = model.decode_step(token, enc, cache, need_weights=True)
        else:
            out = model.decode_prefix(torch.tensor([prefix], device=device), enc, need_weights=True)
        if forced is not None:
            chosen = forced[step] if step < len(forced) else cfg.eos_id
        else:
            chosen = int(next_token_logprobs(model, out.logits)[0].argmax())
        synchronize(device)
        latency = (time.perf_counter() - start) * 1000.0
        token_id, piece, prob, cands, self_attn, cross_attn = _record(
            model, tokenizer, step, out.logits, chosen, out, top_k
        )
        yield StepRecord(
            step=step,
            token_id=token_id,
            piece=piece,
            prob=prob,
            top_k=cands,
            self_attn=self_attn,
            cross_attn=cross_attn,
            latency_ms=latency,
            kv_self_bytes=cache.self_nbytes() if cache is not None else 0,
            kv_cross_bytes=cache.cross_nbytes() if cache is not None else 0,
        )
        if chosen == cfg.eos_id:
            return
        prefix.append(chosen)


@torch.no_grad()
def trace_translation(
    model: Transformer,
    tokenizer: Tokenizer,
    text: str,
    beam_size: int = 1,
    length_penalty: float = 1.0,
    max_len: int | None = None,
    use_cache: bool = True,
    top_k: int = 10,
) -> Trace:
    """Translate one sentence and keep everything the app shows, step by step.

    Greedy: records are taken live as decoding runs. Beam: the search runs first (its per-step
    wall time and KV-cache bytes, for all beams, are what the records report), then the winning
    hypothesis is replayed with the cache to collect its attention maps and top-k candidates.
    """
    ids = source_ids(model, tokenizer, text)
    device = next(model.parameters()).device
    src = torch.tensor([ids], device=device)  # (1, S)
    cap = default_max_len(model, len(ids), max_len)
    synchronize(device)
    start = time.perf_counter()
    enc = model.encode(src, need_weights=True)
    encode_ms = timer_ms(device, start)
    encoder_attn = torch.stack([w[0] for w in enc.self_attn]).float().cpu().numpy()  # (L, H, S, S)

    if beam_size == 1:
        steps = list(iter_steps(model, tokenizer, enc, cap, use_cache, top_k))
    else:
        if not use_cache:
            raise InputError("beam search runs with the KV cache; turn the cache on or use greedy search")
        result = beam_search_batch(model, src, beam_size, cap, length_penalty)[0]
        steps = list(iter_steps(model, tokenizer, enc, cap, True, top_k, forced=result.tokens))
        for rec, ms, nbytes in zip(steps, result.step_ms, result.cache_bytes):
            rec.latency_ms = ms
            cross = rec.kv_cross_bytes * beam_size
            rec.kv_cross_bytes, rec.kv_self_bytes = cross, nbytes - cross
    out_ids = [s.token_id for s in steps if s.token_id != model.config.eos_id]
    param = next(model.parameters())
    return Trace(
        source_text=text,
        source_ids=ids,
        source_pieces=tokenizer.pieces(ids),
        encoder_attn=encoder_attn,
        encode_ms=encode_ms,
        steps=steps,
        translation=tokenizer.decode(out_ids),
        target_pieces=["<s>"] + [s.piece for s in steps],
        beam_size=beam_size,
        use_cache=use_cache,
        device=str(param.device),
        dtype=str(param.dtype).replace("torch.", ""),
    )
