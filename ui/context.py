"""What the handlers share: the loaded models, a small cache of finished traces (bounded in bytes),
the gate of model calls with its micro-batcher, and load counters.

Nothing here is per visitor: the trace of a translation goes to the browser, so the server keeps no
session state at all (and ``ui.server.LeanSessions`` keeps Gradio from keeping a copy per session).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import functools
import json
import os
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from model.checkpoint import Checkpoint
from model.load import load_model
from model.decoding import InputError
from model.quantize import model_weight_bytes, quantize_int8
from model.record import public_record
from model.generation import thread_count
from model.transformer import Transformer

from .batcher import MAX_BATCH, Batcher

# finished traces kept for repeated requests (examples, shared links), bounded in bytes: a Tatoeba
# sentence's trace is ~10-30 KB of JSON, a 1,000-character one up to ~6 MB (never kept: over a quarter)
TRACE_CACHE_BYTES = 4 * 2**20
TRACE_CACHE_ENTRIES = 1024
IDLE_TRIM_S = 0.5  # after the last model call ends, wait this long (its answer is serialised and sent) before trimming
# glibc malloc settings (mallopt numbers), unless the environment sets them: two arenas instead of 8 per
# core for the dozens of request threads, each of which would keep its own free memory. Not set, though
# measured: a fixed mmap threshold (MALLOC_MMAP_THRESHOLD_, or MALLOC_TRIM_THRESHOLD_, which fixes it too)
# returns big buffers at once but maps fresh pages for every KV tensor: 12x the page faults, +20% CPU
MALLOPT = {"MALLOC_ARENA_MAX": (-8, 2)}


@functools.cache
def _glibc() -> Any | None:
    """The C library when it is glibc (has ``malloc_trim``), else None (macOS, musl: nothing to tune)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def tune_allocator() -> list[str]:
    """Set glibc's ``MALLOPT`` (call before the server starts its threads); returns the names set.

    Measured on the served app (docs/benchmarks-server.md): with glibc's defaults, 75 distinct
    long requests leave ~550 MB more RSS than they use, all of it free heap memory that
    ``malloc_trim`` hands back; with two arenas ~180 MB, and ``IdleTrim`` returns it once idle.
    A setting given in the environment (``MALLOC_ARENA_MAX=4 python app.py``) is left as glibc read it.
    """
    libc = _glibc()
    if libc is None:
        return []
    return [name for name, (param, value) in MALLOPT.items() if name not in os.environ and libc.mallopt(param, value) == 1]


def release_free_memory() -> bool:
    """Hand the free pages of glibc's heaps back to the OS (``malloc_trim(0)``); False where there is no glibc."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))


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
    """The gate of model calls: at most ``limit`` run at once, counted now and at peak (the concurrency
    bound, measured). A micro-batch is one call.

    Two kinds of caller: the micro-batcher (translate requests, ``Batcher.submit``) and direct calls
    (``with in_flight:``, the what-if routes). A direct caller goes first when a slot frees, unless
    direct calls already hold half the slots: a person exploring waits for one running call, not for
    the whole translate backlog, and a flood of what-if calls still leaves translation half the model.
    """

    limit: int = 2
    now: int = 0
    peak: int = 0
    started: int = 0  # calls started so far (an idle period is one in which it does not change)
    direct_waiting: int = 0  # direct callers waiting for a slot
    direct_running: int = 0  # direct calls holding a slot
    on_idle: Callable[[], None] | None = field(default=None, repr=False)  # called when the last running call ends
    cond: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def take(self) -> None:
        """Take a slot; the caller holds ``cond`` and has seen ``free()`` (or ``batch_may_take()``)."""
        self.now += 1
        self.started += 1
        self.peak = max(self.peak, self.now)

    def free(self) -> bool:
        return self.now < self.limit

    def batch_may_take(self) -> bool:
        """Whether the batcher may take a slot now (caller holds ``cond``): one is free and no direct caller has priority."""
        return self.free() and (self.direct_waiting == 0 or self.direct_running >= max(1, self.limit // 2))

    def __enter__(self) -> "InFlight":
        with self.cond:
            self.direct_waiting += 1
            try:
                self.cond.wait_for(self.free)
            finally:
                self.direct_waiting -= 1
            self.take()
            self.direct_running += 1
            self.cond.notify_all()  # the batcher waits on direct_waiting too: a slot may still be free for it
        return self

    def release(self, direct: bool = False) -> None:
        with self.cond:
            self.now -= 1
            self.direct_running -= direct
            self.cond.notify_all()
            idle = self.now == 0
        if idle and self.on_idle is not None:
            self.on_idle()

    def __exit__(self, *exc: Any) -> None:
        self.release(direct=True)


class IdleTrim:
    """Once model calls have stopped for ``delay_s``, hand the heap's free pages back to the OS.

    A translation allocates and frees hundreds of MB of buffers of every size (per-step attention and
    KV tensors, a trace's arrays and JSON); glibc keeps what was freed for reuse, so without this the
    RSS after a burst of long requests stays hundreds of MB above what the process uses. Trimming
    costs up to ~0.1 s of CPU with a lot to return, so it runs only while nothing waits for the model:
    one daemon thread, woken by ``InFlight.release`` when the last call ends, sleeps ``delay_s`` and
    trims if no call started meanwhile.
    """

    def __init__(self, gate: InFlight, delay_s: float = IDLE_TRIM_S) -> None:
        self.gate, self.delay_s = gate, delay_s
        self.trims = 0  # trims done so far
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    def __call__(self) -> None:
        """An idle period may be starting: (re)arm the trim."""
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="regard-idle-trim", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self.gate.cond:
                started = self.gate.started
            time.sleep(self.delay_s)
            with self.gate.cond:
                idle = self.gate.now == 0 and self.gate.started == started
            if idle and release_free_memory():  # else a call is running: its release re-arms us
                self.trims += 1


class TraceCache:
    """A thread-safe LRU of finished traces keyed by (model, text, settings), bounded in bytes.

    Each trace is kept as its compact JSON (``bytes``), so its size is exact and the bound holds:
    the entries' bytes never exceed ``max_bytes``, a trace over ``max_item_bytes`` is not kept (one
    long sentence must not push out every example), and the least recently used go first. ``get``
    returns a fresh ``dict`` each time, which nobody can change under the cache. ``size`` bounds the
    count as well (a guard; the bytes are the bound that matters).
    """

    def __init__(self, max_bytes: int = TRACE_CACHE_BYTES, max_item_bytes: int | None = None,
                 size: int = TRACE_CACHE_ENTRIES) -> None:
        self.max_bytes = max_bytes
        self.max_item_bytes = max_bytes // 4 if max_item_bytes is None else max_item_bytes
        self.size = size
        self.bytes = 0  # sum of the kept entries' JSON lengths
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> dict | None:
        with self._lock:
            blob = self._items.get(key)
            if blob is None:
                return None
            self._items.move_to_end(key)
        return json.loads(blob)

    def put(self, key: tuple, value: dict) -> None:
        """Keep ``value`` (JSON-serialisable) unless it alone is over ``max_item_bytes``."""
        blob = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= len(old)
            if len(blob) > self.max_item_bytes:
                return
            self._items[key] = blob
            self.bytes += len(blob)
            while self.bytes > self.max_bytes or len(self._items) > self.size:
                _, dropped = self._items.popitem(last=False)
                self.bytes -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Context:
    """Everything a handler needs; built once by ``load_context`` and passed explicitly."""

    models: list[LoadedModel]
    cache: TraceCache = field(default_factory=TraceCache)
    concurrency: int = 2  # model calls (micro-batches) at once: one per core on the 2-core host
    max_batch: int = MAX_BATCH  # translate requests decoded together at most (1: no batching)
    # warm_up's second (warm) run per model and weights, in ms: what the page's weights note quotes
    warm_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    in_flight: InFlight = field(init=False)
    batcher: Batcher = field(init=False)
    idle_trim: IdleTrim = field(init=False)
    whole: threading.Lock = field(default_factory=threading.Lock, repr=False)  # model_call(whole=True) callers
    runner: "MainThreadRunner | None" = field(default=None, repr=False)  # where whole_machine jobs run (app.py)

    def __post_init__(self) -> None:
        self.in_flight = InFlight(self.concurrency)
        self.batcher = Batcher(self.in_flight, lambda: self.max_batch)
        self.idle_trim = IdleTrim(self.in_flight)
        self.in_flight.on_idle = self.idle_trim

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
    for lm in models:  # the record is served (Model tab, /config): no path of the training machine in it
        lm.ckpt.training = public_record(lm.ckpt.training)
    return Context(models, concurrency=concurrency)


@contextlib.contextmanager
def model_call(ctx: Context, lm: LoadedModel, grad: bool = False, whole: bool = False) -> Iterator[None]:
    """One model call through the gate (``ctx.in_flight``: the concurrency bound is measured on it), counted
    in ``lm.runs``; no autograd inside unless ``grad`` (gradient attributions).

    ``whole``: every slot of the gate, for a call worth the whole machine (see ``whole_machine``). Nothing
    else runs beside it, so torch's process-wide settings (the attention kernel) are its own meanwhile;
    ``ctx.whole`` lets one such caller collect slots at a time.
    """
    with contextlib.ExitStack() as stack:
        if whole:
            stack.enter_context(ctx.whole)
            for _ in range(ctx.in_flight.limit):
                stack.enter_context(ctx.in_flight)
        else:
            stack.enter_context(ctx.in_flight)
        if not grad:
            stack.enter_context(torch.inference_mode())
        yield
    lm.runs += 1


class MainThreadRunner:
    """Runs jobs on the thread that made it (``app.py``: the main thread, once the server is up).

    Why: with torch's OpenMP (libgomp) every thread that runs a multi-threaded op gets its own pool of
    threads, and on the 2-core host a second pool made attribution about 4x slower (3 s on the main
    thread, 10 s on a server thread, ``python3 benchmarks/attribution.py --app``). The app's request
    threads run their model calls on one thread each; the few calls worth every core run here.
    """

    def __init__(self) -> None:
        self.owner = threading.current_thread()
        self._jobs: "queue.Queue[tuple[Callable[[], Any], concurrent.futures.Future]]" = queue.Queue()

    def run(self, job: Callable[[], Any]) -> Any:
        """``job()``'s result (or exception), computed on the owner thread; at once if called there."""
        if threading.current_thread() is self.owner:
            return job()
        done: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((job, done))
        return done.result()

    def serve(self, stop: threading.Event | None = None, poll_s: float = 0.2) -> None:
        """Run jobs as they come, on the owner thread, until ``stop`` is set (or KeyboardInterrupt)."""
        while stop is None or not stop.is_set():
            try:
                job, done = self._jobs.get(timeout=poll_s)
            except queue.Empty:
                continue
            if done.set_running_or_notify_cancel():
                try:
                    done.set_result(job())
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting request thread
                    done.set_exception(exc)


def whole_machine(ctx: Context, lm: LoadedModel, job: Callable[[], Any], grad: bool = False) -> Any:
    """``job()`` as one model call that has the machine: every slot of the gate (``model_call(whole=True)``)
    and a thread per core, on ``ctx.runner``'s thread when the app has one (else the caller's). Thread
    count and autograd mode are per thread in torch, so both are set where the job runs."""
    def with_every_core() -> Any:
        with thread_count(os.cpu_count() or 1), (contextlib.nullcontext() if grad else torch.inference_mode()):
            return job()

    with model_call(ctx, lm, grad=True, whole=True):  # the gate only: the mode is the job's thread's
        return ctx.runner.run(with_every_core) if ctx.runner is not None else with_every_core()