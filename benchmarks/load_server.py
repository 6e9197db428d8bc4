"""Load on the served app, loopback only, bounded in count and time: throughput, latency, memory, the bound.

    python benchmarks/load_server.py                 # shipped checkpoint; ~2-3 minutes on 2 cores
    python benchmarks/load_server.py --clients 5 --requests 5 --sessions 50

1. C clients x R requests, each through the queue as a browser sends it, each client one session
   (a browser tab) sending its requests one after the other (errors, p50/p95 latency, requests/s),
   in three scenarios:
   - mixed: 8 sentences x 4 settings (greedy, beam 4, cache off), so many are cache hits;
   - distinct: every request a different sentence (Tatoeba's test file when present, else made from
     templates), greedy: no cache hits, the model runs for each; once with micro-batching switched
     off (``ctx.max_batch = 1``) and once with it on, in the same server;
   - distinct, mixed settings: different sentences with the mixed settings (beam and cache-off
     requests are decoded alone).
2. N requests from N new sessions: the server's RSS growth.
3. 100 simultaneous requests: the most model calls seen running at once vs the configured limit
   (a micro-batch is one call), and how many were told the server is busy.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import torch  # noqa: E402

from model.checkpoint import DEFAULT_CHECKPOINT  # noqa: E402
from model.memory import human_bytes, process_rss_bytes  # noqa: E402
from ui.batcher import MAX_BATCH  # noqa: E402
from ui.context import load_context  # noqa: E402
from ui.handlers import warm_up  # noqa: E402
from ui.layout import build_demo  # noqa: E402

SENTENCES = ["Je mange une pomme.", "Il fait très beau aujourd'hui.", "Où est la gare, s'il vous plaît ?",
             "Nous allons à la plage demain matin.", "Elle lit un livre dans le jardin.", "Tom est content.",
             "Je ne sais pas ce que tu veux dire.", "Peux-tu m'aider à porter ces valises ?"]
SETTINGS = [("Greedy", 1, 1.0, 0, True), ("Greedy", 1, 1.0, 0, True), ("Beam search", 4, 1.0, 0, True),
            ("Greedy", 1, 1.0, 0, False)]
TATOEBA_TEST = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tatoeba" / "test.tsv"
SUBJECTS = ["Je", "Tu", "Il", "Elle", "Nous", "Vous", "Ils", "Mon frère", "La voisine", "Le professeur"]
VERBS = ["regarde", "cherche", "aime", "achète", "prend", "voit", "oublie", "attend"]
OBJECTS = ["le train", "une pomme", "la voiture rouge", "un livre", "le chat noir", "la clé", "son parapluie"]
TIMES = ["ce matin", "hier soir", "demain", "tous les jours", "à midi", "en été", "avant le dîner"]


def distinct_sentences(n: int) -> list[str]:
    """n different French sentences: Tatoeba's test file when present, else grammatical-ish templates."""
    if TATOEBA_TEST.exists():
        lines = TATOEBA_TEST.read_text(encoding="utf-8").splitlines()
        unique = list(dict.fromkeys(line.split("\t")[0].strip() for line in lines if line.strip()))
        if len(unique) >= n:
            return unique[:n]
    combos = [f"{s} {v} {o} {t}." for t in TIMES for o in OBJECTS for v in VERBS for s in SUBJECTS]
    return [combos[(i * 7919) % len(combos)] + ("" if i < len(combos) else f" ({i})") for i in range(n)]


def request(base: str, fn_index: int, data: list, session: str | None = None) -> tuple[float, str | None]:
    """One queued call from ``session`` (None: a fresh one): (seconds, error text or None)."""
    session = session or uuid.uuid4().hex[:12]
    body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": session}).encode()
    start = time.perf_counter()
    req = urllib.request.Request(base + "gradio_api/queue/join", data=body, headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=60).read()
    except urllib.error.HTTPError as err:
        return time.perf_counter() - start, f"{err.code} {err.read()[:120]!r}"
    with urllib.request.urlopen(base + f"gradio_api/queue/data?session_hash={session}", timeout=120) as stream:
        for line in stream:
            if line.startswith(b"data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    ok = msg.get("success") and not msg["output"].get("error")
                    return time.perf_counter() - start, None if ok else str(msg["output"].get("error"))
    return time.perf_counter() - start, "stream ended"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--requests", type=int, default=25)
    p.add_argument("--sessions", type=int, default=500)
    p.add_argument("--burst", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--max-batch", type=int, default=MAX_BATCH, help="requests decoded together at most")
    p.add_argument("--no-compare", dest="compare", action="store_false",
                   help="skip the distinct-sentence run with batching off")
    args = p.parse_args()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.concurrency))
    ctx = load_context([args.checkpoint], concurrency=args.concurrency)
    ctx.max_batch = args.max_batch  # before build_demo: the translate queue admits concurrency x max_batch
    warm_up(ctx)
    demo = build_demo(ctx)
    demo.launch(prevent_thread_lock=True, server_port=0 or None, quiet=True)
    base = demo.local_url
    config = json.loads(urllib.request.urlopen(base + "config").read())
    fn = next(i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == "translate")
    name = ctx.default.name

    def mixed(i: int) -> list:
        return [SENTENCES[i % len(SENTENCES)], *SETTINGS[(i // len(SENTENCES)) % len(SETTINGS)], name]

    total = args.clients * args.requests
    pool_of_sentences = distinct_sentences(3 * total)

    def distinct(offset: int, settings: Callable[[int], tuple]) -> Callable[[int], list]:
        return lambda i: [pool_of_sentences[offset + i], *settings(i), name]

    # 1. clients x requests, per scenario
    def scenario(label: str, make: Callable[[int], list], max_batch: int) -> None:
        ctx.max_batch = max_batch
        ctx.cache.clear()
        calls0, served0 = ctx.batcher.calls, ctx.batcher.requests
        def client(c: int) -> list[tuple[float, str | None]]:  # one browser tab: one session, one request at a time
            session = uuid.uuid4().hex[:12]
            return [request(base, fn, make(c * args.requests + r), session) for r in range(args.requests)]

        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = [r for rs in pool.map(client, range(args.clients)) for r in rs]
        wall = time.perf_counter() - start
        times = sorted(t for t, _ in results)
        errors = [e for _, e in results if e]
        calls, served = ctx.batcher.calls - calls0, ctx.batcher.requests - served0
        print(f"{label:<44} {args.clients} clients x {args.requests}: {len(errors)} errors, "
              f"p50 {statistics.median(times):.3f} s, p95 {times[int(0.95 * len(times)) - 1]:.3f} s, "
              f"{len(results) / wall:5.1f} requests/s; {served} decoded in {calls} model calls "
              f"(mean batch {served / max(calls, 1):.1f})", flush=True)
        if errors:
            print("  first error:", errors[0])

    batch = args.max_batch
    scenario("mixed (cache hits), batching on", mixed, batch)
    if args.compare:
        scenario("distinct sentences, greedy, batching OFF", distinct(total, lambda i: SETTINGS[0]), 1)
    scenario("distinct sentences, greedy, batching on", distinct(0, lambda i: SETTINGS[0]), batch)
    scenario("distinct sentences, mixed settings, batching on",
             distinct(2 * total, lambda i: SETTINGS[i % len(SETTINGS)]), batch)

    # 2. new sessions: RSS growth
    rss0 = process_rss_bytes()
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        fresh = list(pool.map(lambda i: request(base, fn, [f"{SENTENCES[i % 8]} {i}", *SETTINGS[0], name]),
                              range(args.sessions)))
    wall = time.perf_counter() - start
    grown = process_rss_bytes() - rss0
    print(f"{args.sessions} requests from {args.sessions} new sessions (distinct sentences, no cache hits, 8 at a "
          f"time): {sum(1 for _, e in fresh if e)} errors, p50 {statistics.median(t for t, _ in fresh):.3f} s, "
          f"{args.sessions / wall:.1f} requests/s; RSS growth {human_bytes(max(grown, 0))} ({grown / 2**20:+.1f} MiB)")

    # 3. a burst: the bound holds, the rest are told to wait or try again
    ctx.in_flight.peak = 0
    with ThreadPoolExecutor(args.burst) as pool:
        burst = list(pool.map(lambda i: request(base, fn, [f"{SENTENCES[i % 8]} #{i}", *SETTINGS[2], name]),
                              range(args.burst)))
    busy = sum(1 for _, e in burst if e and "busy" in e)
    other = sum(1 for _, e in burst if e and "busy" not in e)
    print(f"{args.burst} simultaneous requests: at most {ctx.in_flight.peak} model calls at once "
          f"(limit {ctx.concurrency}, a micro-batch counting as one); {busy} told 'busy, try again', "
          f"{other} other errors")
    demo.close()


if __name__ == "__main__":
    main()
