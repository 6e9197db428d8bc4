"""The search steps, tensor-only (fairseq's ``search.py``): given a step's logits, choose each row's next
token and the row it continues. Nothing here builds Python objects per candidate: the beam tree is an
read from ``BeamSearch``'s recorded candidates (``tree.beam_trees``), made only when asked for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..transformer import Transformer
from .records import Hypothesis, PathStep

NEG_INF = float("-inf")


def next_token_logprobs(model: Transformer, logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities (N, V) with pad and bos ruled out: they are never a next token."""
    logp = F.log_softmax(logits.float(), dim=-1)  # (N, V)
    logp[:, model.config.pad_id] = NEG_INF
    logp[:, model.config.bos_id] = NEG_INF
    return logp


@dataclass
class Choice:
    """What one search step decided (fairseq's step: scores, indices, beams), for the loop and its record."""

    tokens: torch.Tensor  # (R,) the token now at each row
    parents: torch.Tensor | None  # (R,) the row each one continues; None: every row continues itself
    done: bool  # every sentence has ended
    logp: torch.Tensor | None  # (R, V) next-token log-probabilities, when the step computed them
    top: tuple[torch.Tensor, torch.Tensor] | None  # (R, W) each row's best log-probs and ids, sorted, when ranked


@dataclass
class Candidates:
    """The candidates one beam step ranked, per sentence, best first (C = 2K, or 1 on a forced step).

    ``status``: 0 not considered (the sentence had ended, or no live hypothesis), 1 kept (moves to row
    ``b*K + slot``), 2 pruned, 3 finished (an eos among the top K).
    """

    step: int
    scores: torch.Tensor  # (B, C) cumulative log-probability (float64 on a forced step, as it is summed there)
    logprobs: torch.Tensor  # (B, C) log p(token | its hypothesis)
    rows: torch.Tensor  # (B, C) the decoder row that scored it
    tokens: torch.Tensor  # (B, C)
    status: torch.Tensor  # (B, C)
    forced: bool


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

    def step(self, t: int, logits: torch.Tensor, force: int | None) -> Choice:
        if force is None:
            # max().indices is argmax (first maximum; NaN wins), 2-3x faster on CPU. No softmax needed.
            choice = logits.max(-1).indices  # (R,)
            banned = (choice == self.cfg.pad_id) | (choice == self.cfg.bos_id)  # (R,); isin is 4x slower here
            if bool(banned.any()):  # rare: pad or bos on top; copy the logits only then
                choice = logits.index_fill(1, self.banned, NEG_INF).max(-1).indices  # (R,)
        else:
            choice = torch.full_like(self.rows_of, force)
        logp = None
        if self.keep:
            logp = next_token_logprobs(self.model, logits)  # (R, V)
            self.logprobs.append(logp.gather(1, choice[:, None])[:, 0])
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
        return Choice(choice, None, bool(self.finished.all()), logp, None)

    def shrink(self) -> torch.Tensor | None:
        """Rows to keep once at least a quarter of them have finished (else None): fewer rows per step."""
        alive = ~self.finished[self.rows_of]  # (R,)
        n_alive = int(alive.sum())
        if 4 * (alive.size(0) - n_alive) < alive.size(0):
            return None
        keep = alive.nonzero()[:, 0]  # (R',)
        self.rows_of = self.rows_of.index_select(0, keep)
        return keep

    def finish(self, n_steps: int) -> list[Hypothesis]:
        eos = self.cfg.eos_id
        chosen = torch.stack(self.chosen, 1).tolist() if self.chosen else [[] for _ in range(self.finished.size(0))]  # (B, T)
        lps = torch.stack(self.logprobs, 1).tolist() if self.keep and self.logprobs else None  # (B, T)
        hyps = []
        for b, row in enumerate(chosen):
            n = row.index(eos) + 1 if eos in row else len(row)
            path = [PathStep(t, b, row[t], lps[b][t], self.forced[t]) for t in range(n)] if lps else []
            score = sum(p.logprob for p in path) if path else math.nan
            hyps.append(Hypothesis(row[: n - 1] if eos in row else row, path, score, score / max(n, 1), eos in row))
        return hyps


class BeamSearch:
    """Rows b*K .. b*K+K-1 hold sentence b's beams; every step keeps the best K continuations.

    A step is a few tensor operations over all sentences at once. What is needed to name the winner
    afterwards is kept as tensors: per step the row and token each row came from (``history``) and the
    ranked candidates (``candidates``); ``finish`` walks back from the best ending.
    """

    def __init__(self, model: Transformer, batch: int, k: int, length_penalty: float, device: torch.device,
                 record_k: int = 0) -> None:
        self.model, self.cfg, self.k, self.lp = model, model.config, k, length_penalty
        self.batch = batch
        self.scores = torch.full((batch, k), NEG_INF, device=device)  # (B, K)
        self.scores[:, 0] = 0.0  # all beams start identical; keep one alive so the first step is not duplicated
        self.done = torch.zeros(batch, dtype=torch.bool, device=device)  # (B,)
        self.n_finished = torch.zeros(batch, dtype=torch.long, device=device)  # (B,)
        self.home = torch.arange(batch, device=device)[:, None] * k  # (B, 1): row b*K, where dead rows stay
        self.candidates: list[Candidates] = []
        # per step (R,) each: the row each row's hypothesis came from, its new token and that token's log p
        self.history: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.record_k = record_k  # how many of each row's best tokens the step record shows

    def divisor(self, length: int) -> float:
        """What a score of ``length`` tokens is divided by to rank it: length ** length_penalty."""
        return max(length, 1) ** self.lp

    def norm(self, score: float, length: int) -> float:
        return score / self.divisor(length)

    def step(self, t: int, logits: torch.Tensor, force: int | None) -> Choice:
        logp = next_token_logprobs(self.model, logits)  # (B*K, V)
        if force is not None:
            return self.force(t, logp, force)
        batch, k, eos = self.batch, self.k, self.cfg.eos_id
        vocab = logp.size(-1)
        # The best 2K continuations of the sentence are among each beam's own best 2K (a beam's score
        # is one constant added to its row), so rank K rows of 2K instead of K*V candidates, and keep
        # the rows' top list for the step record's top-k instead of sorting them again.
        width = min(2 * k, vocab)
        top = logp.topk(min(max(width, self.record_k), vocab), dim=1)  # each (B*K, W')
        row_lp, row_tok = (x[:, :width].reshape(batch, k * width) for x in top)  # (B, K*W)
        cand = self.scores.repeat_interleave(width, dim=1) + row_lp  # (B, K*W)
        n = min(2 * k, k * width)  # enough to find K that do not end
        scores, pos = cand.topk(n, dim=1)  # (B, C)
        lps, toks = row_lp.gather(1, pos), row_tok.gather(1, pos)  # (B, C)
        rows = torch.div(pos, width, rounding_mode="floor") + self.home  # (B, C)
        live = (scores > NEG_INF) & ~self.done[:, None]  # (B, C)
        ends = toks == eos
        finished = live & ends
        finished[:, k:] = False  # only an eos among the top K counts as a finished hypothesis
        going = live & ~ends
        rank = going.cumsum(1)  # (B, C): 1 for the best continuation, 2 for the next...
        kept = going & (rank <= k)
        slot = torch.where(kept, rank - 1, k)  # (B, C); column K collects what is not kept
        new_scores = scores.new_full((batch, k + 1), NEG_INF).scatter_(1, slot, scores)[:, :k]  # (B, K)
        new_rows = self.home.expand(batch, k + 1).scatter(1, slot, rows)[:, :k]  # (B, K)
        new_tok = toks.new_full((batch, k + 1), self.cfg.pad_id).scatter_(1, slot, toks)[:, :k]
        new_lp = lps.new_zeros((batch, k + 1)).scatter_(1, slot, lps)[:, :k]
        status = kept + 2 * (live & ~kept & ~finished) + 3 * finished  # (B, C) in 0..3
        self.candidates.append(Candidates(t, scores, lps, rows, toks, status, False))
        self.n_finished += finished.sum(1)
        self.done |= self.n_finished >= k
        self.scores = new_scores
        parents = new_rows.reshape(-1)  # (B*K,)
        self.history.append((parents, new_tok.reshape(-1), new_lp.reshape(-1)))
        return Choice(new_tok.reshape(-1), parents, bool(self.done.all()), logp, top)

    def force(self, t: int, logp: torch.Tensor, tok: int) -> Choice:
        """Every sentence's live beam (row b*K) takes ``tok``; the other rows stay dead copies."""
        k, rows = self.k, self.home  # (B, 1)
        lp = logp[::k, tok]  # (B,)
        score = self.scores[:, 0].double() + lp.double()  # (B,) summed in double, as a Python float would be
        self.scores[:, 0] = score.float()
        ends = tok == self.cfg.eos_id
        status = torch.full_like(rows, 3 if ends else 1)  # (B, 1)
        tokens = torch.full((self.batch * k,), tok, dtype=torch.long, device=logp.device)  # (B*K,)
        self.candidates.append(Candidates(t, score[:, None], lp[:, None], rows, tokens[::k, None], status, True))
        if ends:
            self.done[:] = True
        self.history.append((torch.arange(self.batch * k, device=logp.device), tokens, logp[:, tok]))
        return Choice(tokens, None, bool(self.done.all()), logp, None)

    def best(self, n_steps: int) -> list[tuple[float, int, int, int]]:
        """Per sentence: (normalised score, step, b*K-row or candidate column, kind) of the winner, where
        kind 1 is an ending (a finished candidate of ``step``), 0 a live beam after the last step, -1 none.

        Finished hypotheses in the order they ended (step, then rank), then the live beams when the
        sentence has not ended: the first with the best normalised score wins, as Python's ``max``."""
        best = [(NEG_INF, -1, -1, -1)] * self.batch
        for c in self.candidates:  # a few steps end a hypothesis; the others hold no 3
            ended = c.status == 3  # (B, C)
            if not bool(ended.any()):
                continue
            norm = (c.scores.double() / self.divisor(c.step + 1)).masked_fill(~ended, NEG_INF)  # (B, C)
            value, col = norm.max(1)  # (B,)
            at_end = ended.gather(1, col[:, None])[:, 0].tolist()  # (B,) the best column is an ending
            for b, (v, j, e) in enumerate(zip(value.tolist(), col.tolist(), at_end)):
                if v > best[b][0] or (best[b][3] < 0 and e):
                    best[b] = (v, c.step, j, 1)
        alive = self.scores.double() / self.divisor(n_steps)  # (B, K)
        alive = alive.masked_fill((self.scores == NEG_INF) | self.done[:, None], NEG_INF)
        value, col = alive.max(1)  # (B,)
        for b, (v, j) in enumerate(zip(value.tolist(), col.tolist())):
            if v > NEG_INF and (v > best[b][0] or best[b][3] < 0):
                best[b] = (v, n_steps - 1, b * self.k + j, 0)
        return best

    def finish(self, n_steps: int) -> list[Hypothesis]:
        """The best hypothesis per sentence; ``winners`` keeps where each was found (see ``best``)."""
        self.winners = self.best(n_steps)
        hist = [tuple(x.tolist() for x in h) for h in self.history]  # per step: parents, tokens, log p (R,)
        forced = [c.forced for c in self.candidates]
        eos = self.cfg.eos_id
        hyps = []
        for b, (norm, step, where, kind) in enumerate(self.winners):
            path: list[PathStep] = []
            if kind == 1:
                c = self.candidates[step]
                row, score = int(c.rows[b, where]), float(c.scores[b, where])
                path.append(PathStep(step, row, eos, float(c.logprobs[b, where]), c.forced))
                step -= 1
            elif kind == 0:
                row, score = where, float(self.scores[b, where - b * self.k])
                if self.candidates[-1].forced:  # a forced step's score is the double sum, before float32
                    score = float(self.candidates[-1].scores[b, 0])
            else:
                hyps.append(Hypothesis([], [], NEG_INF, NEG_INF, False))
                continue
            for s in range(step, -1, -1):  # walk back: row ``row`` after step s came from parents[row]
                parents, tokens, lps = hist[s]
                path.append(PathStep(s, parents[row], tokens[row], lps[row], forced[s]))
                row = parents[row]
            path.reverse()
            ended = path[-1].token_id == eos
            hyps.append(Hypothesis([p.token_id for p in (path[:-1] if ended else path)], path, score, norm, ended))
        return hyps
