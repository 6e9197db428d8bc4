"""What the handlers share: the loaded models, a small cache of finished traces, the gate of model
calls with its micro-batcher, and load counters.

Nothing here is per visitor: the trace of a translation goes to the browser, so the server keeps no
session state at all (memory per visitor is Gradio's own bookkeeping only).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from model.checkpoint import Checkpoint, load_model
from model.decoding import InputError
from model.quantize import model_weight_bytes, quantize_int8
from model.transformer import Transformer

from .batcher import MAX_BATCH, Batcher

TRACE_CACHE_SIZE = 64  # finished traces kept for repeated requests (examples, shared links): ~30 KB each


@dataclass
class LoadedModel:
    """One checkpoint, served under ``name`` (its file stem; never an absolute path).

    Its dynamically quantised int8 twin is built on first use and kept (``int8_model``): it shares the
    fp32 embeddings and norms, so it adds the int8 linear layers' bytes only.
    """

    name: str
    ckpt: Checkpoint
    runs: int = 0  # fp32 translations run so far: the first one in a process is a cold start
    int8_runs: int = 0  # the same for the int8 model, which has its own cold start
    _int8: Transformer | None = field(default=None, repr=False)
    _int8_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _weight_bytes: dict[str, int] | None = field(default=None, repr=False)

    @property
    def int8_ready(self) -> bool:
        """Whether this model can run in int8 here (dynamic quantisation is CPU-only)."""
        return next(self.ckpt.model.parameters()).device.type == "cpu"

    def int8_model(self) -> Transformer:
        """The int8 model, quantised once (two requests at once still build it once). InputError off the CPU."""
        if not self.int8_ready:
            raise InputError("int8 weights run on the CPU only; this app runs its models on "
                             f"{next(self.ckpt.model.parameters()).device.type}: choose fp32")
        with self._int8_lock:
            if self._int8 is None:
                self._int8 = quantize_int8(self.ckpt.model)
            return self._int8

    def weight_bytes(self) -> dict[str, int]:
        """Measured weight memory of the fp32 model and, on the CPU, of its int8 twin (packed weights + fp32 rest).

        Measured once (it walks every packed weight: ~40 ms, more than a decode) and kept: weights never change.
        """
        if self._weight_bytes is None:
            out = {"fp32": model_weight_bytes(self.ckpt.model)}
            if self.int8_ready:
                out["int8"] = model_weight_bytes(self.int8_model())
            self._weight_bytes = out
        return dict(self._weight_bytes)


@dataclass
class InFlight:
    """The gate of model calls: at most ``limit`` run at once (``with in_flight:`` waits for a slot),
    counted now and at peak (the concurrency bound, measured). A micro-batch is one call."""

    limit: int = 2
    now: int = 0
    peak: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def take(self) -> None:
        """Take a slot; the caller holds ``cond`` and has seen ``free()``."""
        self.now += 1
        self.peak = max(self.peak, self.now)

    def free(self) -> bool:
        return self.now < self.limit

    def __enter__(self) -> "InFlight":
        with self.cond:
            self.cond.wait_for(self.free)
            self.take()
        return self

    def release(self) -> None:
        with self.cond:
            self.now -= 1
            self.cond.notify_all()

    def __exit__(self, *exc: Any) -> None:
        self.release()


class TraceCache:
    """A bounded LRU of serialised traces keyed by (model, text, settings); thread-safe."""

    def __init__(self, size: int = TRACE_CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[tuple, dict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> dict | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple, value: dict) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Context:
    """Everything a handler needs; built once by ``load_context`` and passed explicitly."""

    models: list[LoadedModel]
    cache: TraceCache = field(default_factory=TraceCache)
    concurrency: int = 2  # model calls (micro-batches) at once: one per core on the 2-core host
    max_batch: int = MAX_BATCH  # translate requests decoded together at most (1: no batching)
    in_flight: InFlight = field(init=False)
    batcher: Batcher = field(init=False)

    def __post_init__(self) -> None:
        self.in_flight = InFlight(self.concurrency)
        self.batcher = Batcher(self.in_flight, lambda: self.max_batch)

    @property
    def default(self) -> LoadedModel:
        return self.models[0]

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def model(self, name: Any) -> LoadedModel:
        """The model called ``name`` (None: the default); KeyError with the known names otherwise."""
        if name in (None, ""):
            return self.default
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(f"no model called {str(name)[:60]!r}; choose one of {', '.join(self.names)}")


def unique_names(paths: Sequence[Path]) -> list[str]:
    """File stems, made unique with their parent folder's name when two stems collide."""
    stems = [p.stem for p in paths]
    return [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]


def load_context(paths: Sequence[str | Path], device: str = "cpu", concurrency: int = 2) -> Context:
    """Load every checkpoint (the first is the default). Raises CheckpointError naming a bad file."""
    if not paths:
        raise ValueError("no checkpoint given")
    paths = [Path(p) for p in paths]
    models = [LoadedModel(name, load_model(p, device=device)) for name, p in zip(unique_names(paths), paths)]
    return Context(models, concurrency=concurrency)
