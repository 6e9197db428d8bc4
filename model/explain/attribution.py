"""Gradient x input and integrated gradients of each generated token over the source and the English prefix.

Target of step t: f_t = log p(generated[t] | source, tgt_in[:t+1]), the log-softmax of the logits at
decoder position t of one teacher-forced pass (tgt_in = [bos] + generated[:-1]). Inputs: the token
embedding rows of the source (S of them) and of the decoder inputs (T), taken *before* the sqrt(d)
scale (``Transformer.embed_tokens(embeds=)``); positional encodings are kept as they are and not
attributed. For both methods below the scale makes no difference: x.grad_x is the same number whether x
is taken before or after a constant factor. Baseline: zero embeddings (positions only).

- gradient x input: a[t, i] = sum_d x[i, d] * df_t/dx[i, d], at the real input;
- integrated gradients (Sundararajan et al. 2017): a[t, i] = sum_d x[i, d] * mean_k df_t/dx[i, d] at
  alpha_k * x, with the midpoint alphas alpha_k = (k + 1/2) / steps. Completeness says
  sum_i a[t, i] = f_t(x) - f_t(0) as steps grow; ``completeness_gap`` reports the difference.

Every gradient is the model's own forward (``encode``/``run_decoder``/``project`` on ``embeds``)
differentiated by autograd: one forward over the batch of alphas (the IG midpoints, then alpha 1 for
gradient x input), then one vector-Jacobian product per step t, with the parameters' ``requires_grad``
off so that no weight gradient is built. Prefix tokens j > t get 0 because the causal mask gives them
no path to f_t: the zeros are the gradients', not a mask's. (``is_grads_batched`` measured slower than
this loop: the fused attention's backward has no batching rule, so vmap runs it as a loop anyway and
adds the concatenations.) Cost: T backward passes over (steps + 1) rows of S + T tokens, growing as
T x (S + T) x steps; ``MAX_WORK`` bounds it at about ten times a 20-token sentence, which takes about
1.5 s (p50) on two cores with the shipped models (``python benchmarks/attribution.py``). Those use ReLU:
its kinks make the integrand jump along the path, so the midpoint sum converges as 1/steps, not
1/steps^2; at 32 steps the summed |gap| is 2-4 % of the summed |f(x) - f(0)| there.

Source share of step t: sum_i |a_src[t, i]| / (sum_i |a_src[t, i]| + sum_j |a_prefix[t, j]|). With
IG it is the attribution split in two: by completeness the two parts add up to the change of log p
from the baseline, and the gradients see the whole network, residual paths and feed-forward layers
included, where a cross-attention map only says where one sub-layer's queries look (its values can be
small, its output can be outweighed by the residual stream). ``agreement`` measures how far the two
tell the same story: per decoder layer, the mean over steps of the Spearman rank correlation between
|attribution over the source| and that layer's head-mean cross-attention row.

What it is not: ALTI+ (Ferrando et al. 2022) decomposes the residual stream itself. It writes each
layer's output (attention, residual and LayerNorm, taken as a linear map) as a sum of one vector per
input token, scores each token's share by how close its vector is to the output, and composes the
shares through the layers (a rollout); it runs forward only, needs no gradient and no baseline, and
has a contribution at every layer. This is a sensitivity of one number, log p, to the input
embeddings: first order at the input (gradient x input) or along the straight path from a baseline
(IG), which it depends on; it says nothing about the intermediate layers.

Returned layout (JSON-ready; arrays through ``arrays.encode_f32``)::

    {"methods": {"grad_x_input": {"source": (T, S), "prefix": (T, T)},
                 "integrated_gradients": {"source": (T, S), "prefix": (T, T)}},
     "source_share": {method: [T floats]}, "agreement": {method: [Ld floats]},
     "completeness_gap": [T floats], "f": [T floats], "f_baseline": [T floats],
     "steps": steps, "source_len": S, "target_len": T, "ms": elapsed, "target": "log p",
     "inputs": "token embeddings before the sqrt(d) scale", "baseline": "zero embeddings"}

``f`` is log p(generated[t]) at the real input, ``f_baseline`` at the zero embeddings.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

import numpy as np
import torch

from ..errors import InputError, LimitError
from ..generation import thread_count
from ..transformer import Transformer
from .arrays import encode_f32

METHODS = ("grad_x_input", "integrated_gradients")
MAX_STEPS = 64
MAX_IDS = 128  # source ids, and generated ids
# (steps + 1) x T x (S + T): rows x backward passes x tokens; 32 steps on a 64 + 64-token sentence fit
MAX_WORK = 33 * 64 * 128


def check_request(model: Transformer, src_ids: Any, generated: Any, steps: Any = 32, runs: Any = 4) -> None:
    """What ``attribute`` refuses, checked alone (a server refuses before it queues): ``InputError``/``LimitError``."""
    cfg = model.config
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise LimitError(f"integrated gradients takes 1 to {MAX_STEPS} steps, got {steps!r}")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise InputError(f"runs must be a whole number >= 1, got {runs!r}")
    for name, ids, vocab in (("source", src_ids, cfg.src_vocab_size), ("generated", generated, cfg.tgt_vocab_size)):
        if not isinstance(ids, (list, tuple)) or not ids:
            raise InputError(f"attribution needs at least one {name} id")
        bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < vocab]
        if bad:
            raise InputError(f"{name} id {bad[0]!r} is not an id of this model's vocabulary (0..{vocab - 1})")
        limit = min(MAX_IDS, cfg.max_positions)
        if len(ids) > limit:
            raise LimitError(f"attribution reads at most {limit} {name} ids, got {len(ids)}")
    work = (steps + 1) * len(generated) * (len(src_ids) + len(generated))
    if work > MAX_WORK:
        raise LimitError(f"attribution of {len(generated)} generated over {len(src_ids)} source ids with {steps} "
                         f"steps is too much work ({work} > {MAX_WORK}); use fewer steps or a shorter sentence")


def rank(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values`` (n,), ties given the average of the ranks they span."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # a run of equal values starts where the sorted value changes; each run gets its mean position
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])  # (runs,)
    ends = np.r_[starts[1:], len(values)]  # (runs,), exclusive
    mean_rank = (starts + ends - 1) / 2 + 1  # (runs,)
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two (n,) arrays: Pearson's correlation of their average ranks.

    0 when either side is constant (its ranking carries no order to agree with).
    """
    ra, rb = rank(a), rank(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else 0.0


@contextlib.contextmanager
def input_gradient_mode(model: Transformer) -> Iterator[None]:
    """Eval mode, grad on (also inside ``no_grad`` or ``inference_mode``), every parameter's
    ``requires_grad`` off (only input gradients are built); all three restored on leaving."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def log_p(model: Transformer, src: torch.Tensor, tgt_in: torch.Tensor, generated: torch.Tensor,
          src_x: torch.Tensor, tgt_x: torch.Tensor) -> torch.Tensor:
    """f (B, T): log p(generated[t]) at every position for B rows of token embeddings (before the sqrt(d)
    scale) src_x (B, S, D) and tgt_x (B, T, D); src (1, S), tgt_in (1, T), generated (1, T) ids."""
    b = src_x.size(0)
    enc = model.encode(src.expand(b, -1), embeds=src_x)  # memory (B, S, D)
    h = model.run_decoder(tgt_in.expand(b, -1), enc, embeds=tgt_x)[0]  # (B, T, D)
    logp = model.project(h).log_softmax(dim=-1)  # (B, T, V)
    return logp.gather(-1, generated.expand(b, -1)[..., None])[..., 0]  # (B, T)


def step_runs(t_len: int, runs: int) -> list[tuple[int, int]]:
    """Steps 0..T-1 cut into at most ``runs`` consecutive (lo, hi), shorter towards the end: a run's
    backward passes each cover hi positions, so the bounds sit at T * sqrt(k / runs) (equal areas)."""
    runs = max(1, min(runs, t_len))
    bounds = [round(t_len * (k / runs) ** 0.5) for k in range(runs + 1)]
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def step_gradients(model: Transformer, src: torch.Tensor, tgt_in: torch.Tensor, generated: torch.Tensor,
                   src_x: torch.Tensor, tgt_x: torch.Tensor, runs: int = 4
                   ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per step t: (t, f_t (A,), df_t/dsrc_x (A, S, D), df_t/dtgt_x (A, T, D)) for A rows of embeddings
    src_x (A, S, D), tgt_x (A, T, D) that require grad (inside ``input_gradient_mode``).

    One encoder forward over the A rows; per run of steps (lo, hi) one decoder forward over the first hi
    positions (f_t reads no later one: the decoder is causal) and one backward per step. The backward of
    step t starts from df_t/dh_t, the gradient of its log-softmax at its own position (one call for the
    whole run, since f_t depends on the decoder state h_t alone), so that no (V x D) product is spent on
    the other positions' zeros. Positions >= hi lie outside a run's graph: autograd returns their zeros
    as it does for any input that does not reach f_t.
    """
    a = src_x.size(0)
    enc = model.encode(src.expand(a, -1), embeds=src_x)  # memory (A, S, D)
    for lo, hi in step_runs(tgt_x.size(1), runs):
        h = model.run_decoder(tgt_in[:, :hi].expand(a, -1), enc, embeds=tgt_x[:, :hi])[0]  # (A, hi, D)
        logp = model.project(h[:, lo:]).log_softmax(dim=-1)  # (A, hi-lo, V)
        f_run = logp.gather(-1, generated[:, lo:hi].expand(a, -1)[..., None])[..., 0]  # (A, hi-lo)
        (u,) = torch.autograd.grad(f_run.sum(), h, retain_graph=True)  # (A, hi, D); row t: df_t/dh_t
        for t in range(lo, hi):
            cot = torch.zeros_like(h)  # (A, hi, D)
            cot[:, t] = u[:, t]
            g_src, g_tgt = torch.autograd.grad(h, (src_x, tgt_x), cot, retain_graph=True)  # (A, S, D), (A, T, D)
            yield t, f_run[:, t - lo].detach(), g_src, g_tgt


def _inputs(model: Transformer, src_ids: list[int], generated: list[int]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """src (1, S), tgt_in (1, T), generated (1, T) ids and the embedding rows src_e (S, D), tgt_e (T, D)."""
    device = next(model.parameters()).device
    src = torch.tensor([list(src_ids)], device=device)  # (1, S)
    gen = torch.tensor([list(generated)], device=device)  # (1, T)
    tgt_in = torch.tensor([[model.config.bos_id, *generated[:-1]]], device=device)  # (1, T)
    src_e = model.src_embedding().weight[src[0]].detach()  # (S, D)
    tgt_e = model.tgt_embedding().weight[tgt_in[0]].detach()  # (T, D)
    return src, tgt_in, gen, src_e, tgt_e


def input_gradients(model: Transformer, src_ids: list[int], generated: list[int], runs: int = 4
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients gradient x input multiplies: df_t/dx at the real input, over the source (T, S, D)
    and the decoder inputs (T, T, D), x the embedding rows before the sqrt(d) scale (``step_gradients``)."""
    check_request(model, src_ids, generated, 1, runs)
    with input_gradient_mode(model):
        src, tgt_in, gen, src_e, tgt_e = _inputs(model, src_ids, generated)
        src_x, tgt_x = src_e[None].clone().requires_grad_(True), tgt_e[None].clone().requires_grad_(True)
        rows = list(step_gradients(model, src, tgt_in, gen, src_x, tgt_x, runs))
    return torch.stack([r[2][0] for r in rows]), torch.stack([r[3][0] for r in rows])  # (T, S, D), (T, T, D)


def _cross_attention(model: Transformer, src: torch.Tensor, tgt_in: torch.Tensor) -> np.ndarray:
    """Head-mean cross-attention (Ld, T, S) of the teacher-forced pass, from the model's own weights."""
    with torch.no_grad():
        enc = model.encode(src)
        cross = model.run_decoder(tgt_in, enc, need_weights=True)[2]  # per layer (1, H, T, S)
    return torch.stack([w[0].mean(dim=0) for w in cross]).double().cpu().numpy()  # (Ld, T, S)


def attribute(model: Transformer, src_ids: list[int], generated: list[int], steps: int = 32,
              runs: int = 4, threads: int | None = None) -> dict[str, Any]:
    """Attribution of each generated token's log p to the source and prefix embeddings (see the module doc).

    ``src_ids`` (S,) as ``model.decoding.source_ids`` gives them, ``generated`` (T,) the trace's token ids;
    ``steps`` the integrated-gradients alphas (1..64); ``runs`` how many decoder passes of growing length
    share the steps (1: one pass over all T positions; more: less backward work on positions a step
    cannot read, the same numbers up to rounding); ``threads`` torch's intra-op threads for this call
    (None: as set; the app gives it every core, ``ui.context.model_call(whole=True)``: two cores take
    about 0.65x one core's time). Runs in the model's
    dtype and device, in eval mode;
    grad mode, the parameters' ``requires_grad`` and the training flag are restored after. Raises
    ``InputError``/``LimitError`` with a reason for steps, ids or lengths it cannot take.
    """
    check_request(model, src_ids, generated, steps, runs)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads must be a whole number >= 1, got {threads!r}")
    start = time.perf_counter()
    t_len, s_len = len(generated), len(src_ids)
    with thread_count(threads), input_gradient_mode(model):
        src, tgt_in, gen, src_e, tgt_e = _inputs(model, src_ids, generated)
        x_src, x_tgt = src_e.double(), tgt_e.double()  # (S, D), (T, D)
        # the IG midpoints, then alpha 1 (the real input) for gradient x input and f(x)
        alphas = torch.cat([(torch.arange(steps, dtype=torch.float64) + 0.5) / steps, torch.ones(1, dtype=torch.float64)])
        alphas = alphas.to(src_e.device, src_e.dtype)[:, None, None]  # (A, 1, 1)
        src_x = (alphas * src_e).requires_grad_(True)  # (A, S, D)
        tgt_x = (alphas * tgt_e).requires_grad_(True)  # (A, T, D)
        maps = {name: (torch.zeros(t_len, s_len, dtype=torch.float64), torch.zeros(t_len, t_len, dtype=torch.float64))
                for name in METHODS}
        f_x = torch.zeros(t_len, dtype=torch.float64)  # (T,)
        for t, f_t, g_src, g_tgt in step_gradients(model, src, tgt_in, gen, src_x, tgt_x, runs):
            g_src, g_tgt = g_src.double(), g_tgt.double()  # (A, S, D), (A, T, D)
            f_x[t] = float(f_t[-1])
            maps["grad_x_input"][0][t] = (g_src[-1] * x_src).sum(-1).cpu()  # (S,)
            maps["grad_x_input"][1][t] = (g_tgt[-1] * x_tgt).sum(-1).cpu()  # (T,)
            maps["integrated_gradients"][0][t] = (g_src[:-1].mean(0) * x_src).sum(-1).cpu()  # (S,)
            maps["integrated_gradients"][1][t] = (g_tgt[:-1].mean(0) * x_tgt).sum(-1).cpu()  # (T,)
        # the baseline through the same (grad-mode) path; nothing requires grad, so no graph is kept
        zeros_src, zeros_tgt = torch.zeros_like(src_e)[None], torch.zeros_like(tgt_e)[None]  # (1, S, D), (1, T, D)
        f_0 = log_p(model, src, tgt_in, gen, zeros_src, zeros_tgt)[0].double().cpu()  # (T,)
        cross = _cross_attention(model, src, tgt_in)  # (Ld, T, S)
    ig_src, ig_tgt = maps["integrated_gradients"]
    gap = ig_src.sum(-1) + ig_tgt.sum(-1) - (f_x - f_0)  # (T,)

    out: dict[str, Any] = {"methods": {}, "source_share": {}, "agreement": {}}
    for name, (a_src, a_tgt) in maps.items():
        a_src, a_tgt = a_src.numpy(), a_tgt.numpy()  # (T, S), (T, T)
        out["methods"][name] = {"source": encode_f32(a_src), "prefix": encode_f32(a_tgt)}
        mass_src, mass_tgt = np.abs(a_src).sum(-1), np.abs(a_tgt).sum(-1)  # (T,)
        total = mass_src + mass_tgt
        out["source_share"][name] = [float(m / n) if n > 0 else 0.0 for m, n in zip(mass_src, total)]
        out["agreement"][name] = [
            float(np.mean([spearman(np.abs(a_src[t]), cross[layer, t]) for t in range(t_len)]))
            for layer in range(cross.shape[0])
        ]
    out.update({
        "completeness_gap": gap.tolist(),
        "f": f_x.tolist(),
        "f_baseline": f_0.tolist(),
        "steps": steps,
        "source_len": s_len,
        "target_len": t_len,
        "target": "log p",
        "inputs": "token embeddings before the sqrt(d) scale",
        "baseline": "zero embeddings",
        "ms": (time.perf_counter() - start) * 1000.0,
    })
    return out
