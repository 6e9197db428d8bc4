"""The one generation loop: greedy, beam search, forced target prefixes and head ablation, batched or not.

``generate(model, src, strategy, max_len)`` serves the app's instrumented trace, the CLI, batched
translation, evaluation and the benchmarks. The strategy is data (``strategies``); each step hands the
logits to a tensor-only search step (``search``). A ``HeadMask`` zeroes chosen heads' outputs
throughout, encoder included. ``on_step`` is called after every step with a ``StepEvent``. With
``record=True`` the loop keeps, per step, every row's attention and top-k as numpy arrays
(``StepData``), the encoder's attention, and for beam search the tree of hypotheses (``BeamTree``);
a hypothesis's per-step data is found through its ``path`` of (step, row) pairs, so the winner of a
beam search needs no replay: the rows its tokens came from are the reorder indices that were also
applied to the KV cache. The ``Generation`` keeps the encoder output, so the views that read a
finished translation (lenses, alignment, ablation) never encode the sentence again.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

import torch

from ..attention import HeadMask
from ..device import synchronize, timer_ms
from ..errors import InputError
from ..transformer import EncoderOutput, StepOutput, Transformer
from .records import Generation, StepData, StepEvent
from .search import BeamSearch, Choice, GreedySearch, next_token_logprobs
from .strategies import Beam, Forced, Greedy, Strategy, check_prefix
from .tree import beam_trees


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


@torch.inference_mode()
def generate(
    model: Transformer,
    src: torch.Tensor,
    strategy: Strategy = Greedy(),
    max_len: int = 50,
    *,
    use_cache: bool = True,
    need_weights: bool = False,
    top_k: int = 0,
    head_mask: HeadMask | None = None,
    on_step: Callable[[StepEvent], None] | None = None,
    record: bool = False,
    threads: int | None | str = "auto",
) -> Generation:
    """Encode ``src`` (B, S) padded ids and decode at most ``max_len`` tokens per sentence.

    ``threads="auto"`` follows ``default_threads``. With ``need_weights`` and ``record`` the encoder's
    attention is kept too (``Generation.encoder_attn``, (B, L, H, S, S)). Returns a ``Generation``
    with the best hypothesis per sentence.
    """
    forced, inner = (strategy.prefix, strategy.then) if isinstance(strategy, Forced) else ((), strategy)
    check_prefix(model, forced, max_len)
    k = inner.size if isinstance(inner, Beam) else 1
    if k < 1:
        raise InputError(f"beam size must be at least 1, got {k}")
    batch = src.size(0)
    rows = batch * k
    device = src.device
    with thread_count(default_threads(rows) if threads == "auto" else threads):
        synchronize(device)
        start = time.perf_counter()
        enc = model.encode(src, need_weights=need_weights and record, head_mask=head_mask)
        encode_ms = timer_ms(device, start)
        encoder_attn = None
        if enc.self_attn is not None:
            encoder_attn = torch.stack(enc.self_attn, 1).float().cpu().numpy()  # (B, L, H, S, S)
        sentences = enc
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
            choice = search.step(t, out.logits, force)
            tokens, parents = choice.tokens, choice.parents
            if parents is not None:
                if cache is not None:
                    cache.reorder(parents, cross=False)  # rows move only among copies of one sentence
                prefix = prefix.index_select(0, parents)
            if cache is None:
                prefix = torch.cat([prefix, tokens[:, None]], dim=1)  # (R, t+2)
            step_ms.append(timer_ms(device, start))
            cache_bytes.append(cache.nbytes() if cache is not None else 0)
            if record:
                steps.append(step_data(model, choice, out, top_k, step_ms[-1], cache, force is not None))
            if on_step is not None:
                ident = torch.arange(rows, device=device) if parents is None else parents
                on_step(StepEvent(t, out.logits, tokens, ident, force is not None, out.self_attn, out.cross_attn,
                                  step_ms[-1]))
            if choice.done:
                break
            keep = search.shrink() if shrink else None
            if keep is not None:
                cache.reorder(keep)
                enc = EncoderOutput(enc.memory.index_select(0, keep), enc.src_mask.index_select(0, keep), None)
                tokens = tokens.index_select(0, keep)
        hyps = search.finish(len(step_ms))
    trees = None
    if record and isinstance(search, BeamSearch):
        trees = beam_trees(search)
        for tree in trees:
            tree.steps = steps
    return Generation(hyps, sentences, head_mask, encode_ms, encoder_attn, steps, trees, step_ms, cache_bytes)


def step_data(model: Transformer, choice: Choice, out: StepOutput, top_k: int, ms: float, cache, forced: bool) -> StepData:
    """Copy one step's per-row attention and top-k out of torch into numpy."""
    self_attn = cross_attn = top_ids = top_probs = entropy = None
    if out.self_attn is not None:
        self_attn = torch.stack(out.self_attn, 1).float().cpu().numpy()  # (R, L, H, T)
        cross_attn = torch.stack(out.cross_attn, 1).float().cpu().numpy()  # (R, L, H, S)
    if top_k > 0:
        logp = choice.logp if choice.logp is not None else next_token_logprobs(model, out.logits)
        n = min(top_k, logp.size(-1))
        ranked = choice.top  # beam search has sorted every row already
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
