"""Micro-batching: translate requests that arrive while the model is busy are decoded together.

No timer and no thread of its own. A request joins the pending list and waits until either a model
slot is free (the ``InFlight`` gate: ``ctx.concurrency`` calls at once; a waiting what-if call goes
first, see ``InFlight.batch_may_take``) or another request has taken it into a batch. Whoever gets a
slot takes the oldest pending request and every pending request with the same batch key (up to
``max_batch``), runs them in one call and hands each its own result (or its own exception). At low
load a request runs alone at once; under load (another call running) it lingers up to ``LINGER_S``
for company, and a batch holds what queued while the previous ones ran. The concurrency bound
therefore counts model calls (batches), not requests.

Gradio's own ``batch=True`` was not used: one bad input in a Gradio batch fails every request in it,
and a warning cannot be sent to just one of them.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Protocol

MAX_BATCH = 16  # sentences per batched decode: per-sentence cost falls ~3.5x from 1 to 16 on 2 cores
LINGER_S = 0.05  # how long a request that got a slot waits for company while another batch runs (bigger batches)


@dataclass
class Job:
    key: Hashable | None  # requests with equal keys may share a batch; None runs alone
    item: Any
    run: Callable[[list[Any]], list[Any]]  # items -> one result per item, in order
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class Gate(Protocol):
    """What the batcher needs of the model gate (``ui.context.InFlight`` is one): its condition, the
    number of calls running, and a slot to take and give back."""

    cond: threading.Condition
    now: int

    def batch_may_take(self) -> bool: ...
    def take(self) -> None: ...
    def release(self) -> None: ...


@dataclass
class Batcher:
    gate: Gate
    max_batch: Callable[[], int] = lambda: MAX_BATCH  # read at every batch (benchmarks switch it off and on)
    pending: list[Job] = field(default_factory=list)
    calls: int = 0  # batches run so far (model calls through here)
    requests: int = 0  # requests they served: requests / calls is the mean batch size

    def submit(self, key: Hashable | None, item: Any, run: Callable[[list[Any]], list[Any]]) -> Any:
        """``run([item])[0]``, possibly computed as part of a bigger ``run(items)``; raises what it raised."""
        job = Job(key, item, run)
        cond = self.gate.cond
        with cond:
            self.pending.append(job)
            cond.notify_all()  # a lingering batch may now be full
        while True:
            with cond:
                cond.wait_for(lambda: job.done or (self.gate.batch_may_take() and bool(self.pending)))
                if job.done:
                    if job.error is not None:
                        raise job.error
                    return job.result
                self.gate.take()
                if self.gate.now > 1:  # the model is busy anyway: a moment's wait lets more requests join
                    cond.wait_for(lambda: not self.pending or self.full(), timeout=LINGER_S)
                batch = self.take_batch() if self.pending else []
            try:
                if batch:
                    self.run_batch(batch)
            finally:
                self.gate.release()  # wakes the requests whose results are now ready

    def full(self) -> bool:
        """Whether the oldest pending job's batch is as big as it can get (caller holds the lock)."""
        first = self.pending[0]
        return first.key is None or sum(j.key == first.key for j in self.pending) >= self.max_batch()

    def take_batch(self) -> list[Job]:
        """The oldest pending job and the pending jobs that share its key (caller holds the lock)."""
        first = self.pending[0]
        batch = [first] if first.key is None else [j for j in self.pending if j.key == first.key][: self.max_batch()]
        for j in batch:
            self.pending.remove(j)
        self.calls += 1
        self.requests += len(batch)
        return batch

    def run_batch(self, batch: list[Job]) -> None:
        """Run a batch; if it fails as a whole, run its jobs one by one so each error reaches its own request."""
        try:
            results = batch[0].run([j.item for j in batch])
            outcomes: list[tuple[Any, BaseException | None]] = [(r, None) for r in results]
        except Exception as exc:  # noqa: BLE001 - handed to the request(s) it belongs to
            if len(batch) == 1:
                outcomes = [(None, exc)]
            else:
                outcomes = []
                for j in batch:
                    try:
                        outcomes.append((j.run([j.item])[0], None))
                    except Exception as one:  # noqa: BLE001
                        outcomes.append((None, one))
        with self.gate.cond:
            for j, (result, error) in zip(batch, outcomes):
                j.result, j.error, j.done = result, error, True
