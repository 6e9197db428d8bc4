"""Reading fr<TAB>en files and cutting them into token-bucketed batches."""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from model.tokenizer import Tokenizer


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """Pairs from a UTF-8 ``French<TAB>English`` file; raises ValueError naming the first bad line."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2:
                raise ValueError(f"{path}:{n}: expected 'French<TAB>English', got {line[:80]!r}")
            pairs.append((parts[0].strip(), parts[1].strip()))
    if not pairs:
        raise ValueError(f"{path}: no sentence pairs found")
    return pairs


@dataclass
class EncodedPairs:
    src: list[list[int]]  # French ids + eos
    tgt: list[list[int]]  # English ids + eos (bos is added when batching)


def encode_kept(
    pairs: list[tuple[str, str]], tokenizer: Tokenizer, max_tokens: int, eos_id: int
) -> tuple[EncodedPairs, list[tuple[str, str]]]:
    """Encode both sides, dropping pairs longer than ``max_tokens`` on either side; also the kept pairs."""
    fr = tokenizer.encode_batch([p[0] for p in pairs])
    en = tokenizer.encode_batch([p[1] for p in pairs])
    keep = [i for i, (s, t) in enumerate(zip(fr, en)) if len(s) < max_tokens and len(t) < max_tokens]
    return EncodedPairs([fr[i] + [eos_id] for i in keep], [en[i] + [eos_id] for i in keep]), [pairs[i] for i in keep]


def encode_pairs(pairs: list[tuple[str, str]], tokenizer: Tokenizer, max_tokens: int, eos_id: int) -> EncodedPairs:
    """Encode both sides, dropping pairs longer than ``max_tokens`` on either side."""
    return encode_kept(pairs, tokenizer, max_tokens, eos_id)[0]


def make_batches(data: EncodedPairs, max_tokens: int, seed: int) -> list[list[int]]:
    """Index batches of similar-length pairs whose padded size (rows x longest side) fits ``max_tokens``.

    Lengths get a little seeded noise before sorting so batches differ from epoch to epoch; the batch
    order is shuffled with the same seed, which makes an epoch reproducible from its seed alone.
    """
    rng = random.Random(seed)
    order = sorted(
        range(len(data.src)),
        key=lambda i: (len(data.tgt[i]) + rng.random() * 2, len(data.src[i]) + rng.random() * 2),
    )
    batches, current, longest = [], [], 0
    for i in order:
        size = max(len(data.src[i]), len(data.tgt[i]) + 1)
        if current and max(longest, size) * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def collate(
    data: EncodedPairs, batch: list[int], pad_id: int, bos_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> src (B, S), tgt_in (B, T) starting with bos, tgt_out (B, T) ending with eos; pad-filled."""
    s_len = max(len(data.src[i]) for i in batch)
    t_len = max(len(data.tgt[i]) for i in batch)
    src = torch.full((len(batch), s_len), pad_id, dtype=torch.long)
    tgt_in = torch.full((len(batch), t_len), pad_id, dtype=torch.long)
    tgt_out = torch.full((len(batch), t_len), pad_id, dtype=torch.long)
    for row, i in enumerate(batch):
        s, t = data.src[i], data.tgt[i]
        src[row, : len(s)] = torch.tensor(s)
        tgt_in[row, 0] = bos_id
        tgt_in[row, 1 : len(t)] = torch.tensor(t[:-1])
        tgt_out[row, : len(t)] = torch.tensor(t)
    return src, tgt_in, tgt_out


@dataclass(frozen=True)
class Source:
    """One training file and how many times an epoch sees it (1.5 = every pair once, half of them twice)."""

    path: str
    weight: float = 1.0

    @property
    def name(self) -> str:
        return Path(self.path).stem


def parse_sources(spec: str) -> list[Source]:
    """``"a.tsv:1,b.tsv:2.5"`` (weights optional, default 1) -> sources; raises ValueError with a reason."""
    sources = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        path, _, weight = item.rpartition(":") if re.search(r":[\d.]+$", item) else (item, "", "1")
        try:
            w = float(weight)
        except ValueError:
            raise ValueError(f"bad weight in {item!r}") from None
        if not (w >= 0 and math.isfinite(w)):
            raise ValueError(f"weight must be a finite number >= 0 in {item!r}")
        sources.append(Source(path, w))
    if not sources:
        raise ValueError(f"no data files in {spec!r}")
    return sources


def epoch_indices(sizes: list[int], weights: list[float], seed: int) -> list[int]:
    """Indices into the concatenated sources for one epoch: ``floor(w)`` full copies of each source plus
    a seeded random ``w - floor(w)`` share of it, so a weight of 0.5 halves a source and 2 doubles it."""
    rng = random.Random(seed)
    out, start = [], 0
    for size, w in zip(sizes, weights):
        block = list(range(start, start + size))
        out += block * int(w)
        out += rng.sample(block, round((w - int(w)) * size))
        start += size
    return out


def subset(data: EncodedPairs, indices: list[int], extra: EncodedPairs | None = None) -> EncodedPairs:
    """The pairs at ``indices`` (repeats allowed), followed by ``extra``'s pairs."""
    src = [data.src[i] for i in indices] + (extra.src if extra else [])
    tgt = [data.tgt[i] for i in indices] + (extra.tgt if extra else [])
    return EncodedPairs(src, tgt)
