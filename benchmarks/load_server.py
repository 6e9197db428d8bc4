"""Load and memory on the served app, loopback only, bounded in count and time, measured from outside.

    python benchmarks/load_server.py                   # shipped checkpoint; ~10 minutes on 2 cores
    python benchmarks/load_server.py --sessions 100 --long 100 --clients 5 --requests 5   # quicker

The server runs in a child process started the way ``python app.py`` starts it (allocator settings,
warm-up, the same launch options); this process only sends requests, through Gradio's queue exactly
as a browser tab does, and reads the child's RSS from /proc/<pid>/status. Every RSS figure is taken
after a warm-up and once the server has been idle for a moment (``--settle``).

1. Memory (RSS sampled every ``--every`` requests, 8 requests at a time, each from a new session):
   - N new sessions, the same sentence (cache hits after the first);
   - N new sessions, distinct short sentences (no cache hits);
   - L distinct long requests (~1,000 characters, as long as the model reads: 4 at a time).
   Each line: RSS after the warm-up, growth per 100 requests over the whole run, growth over the last 100.
2. Load: C clients x R requests, each client one session sending one request after another:
   - cache hits: 8 sentences x 4 settings, repeated (what the old headline figure measured);
   - distinct, mixed: every request a different sentence, a third of them long (greedy, batched);
   - what-if routes under that translate load: their own row, next to the same routes on an idle server.
   Each row: errors, p50/p95 latency, requests/s, requests decoded and model calls (micro-batches).
3. A burst of B simultaneous requests: the most model calls seen running at once vs the limit.

Figures depend on the CPU and on what else runs on it: docs/benchmarks-server.md says where they came from.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

SENTENCES = ["Je mange une pomme.", "Il fait très beau aujourd'hui.", "Où est la gare, s'il vous plaît ?",
             "Nous allons à la plage demain matin.", "Elle lit un livre dans le jardin.", "Tom est content.",
             "Je ne sais pas ce que tu veux dire.", "Peux-tu m'aider à porter ces valises ?"]
SETTINGS = [("Greedy", 1, 1.0, 0, True), ("Greedy", 1, 1.0, 0, True), ("Beam search", 4, 1.0, 0, True),
            ("Greedy", 1, 1.0, 0, False)]
GREEDY = SETTINGS[0]
TATOEBA_TEST = ROOT.parent / "shared" / "data" / "tatoeba" / "test.tsv"
SUBJECTS = ["Je", "Tu", "Il", "Elle", "Nous", "Vous", "Ils", "Mon frère", "La voisine", "Le professeur"]
VERBS = ["regarde", "cherche", "aime", "achète", "prend", "voit", "oublie", "attend"]
OBJECTS = ["le train", "une pomme", "la voiture rouge", "un livre", "le chat noir", "la clé", "son parapluie"]
TIMES = ["ce matin", "hier soir", "demain", "tous les jours", "à midi", "en été", "avant le dîner"]
LONG_CHARS = 1000  # the app's character limit (model.decoding.MAX_SOURCE_CHARS)
MB = 2**20


def distinct_sentences(n: int) -> list[str]:
    """n different French sentences: Tatoeba's test file's when present, then grammatical-ish templates."""
    unique: list[str] = []
    if TATOEBA_TEST.exists():
        lines = TATOEBA_TEST.read_text(encoding="utf-8").splitlines()
        unique = list(dict.fromkeys(line.split("\t")[0].strip() for line in lines if line.strip()))[:n]
    combos = [f"{s} {v} {o} {t}." for t in TIMES for o in OBJECTS for v in VERBS for s in SUBJECTS]
    made = [combos[(i * 7919) % len(combos)] + ("" if i < len(combos) else f" ({i})") for i in range(n - len(unique))]
    return unique + made


def long_texts(n: int, pool: list[str], count_tokens: Callable[[str], int], max_tokens: int) -> list[str]:
    """n distinct texts of whole sentences, each as long as fits in LONG_CHARS characters and max_tokens pieces."""
    out, j = [], 0
    for _ in range(n):
        text = ""
        while j < len(pool):
            longer = f"{text} {pool[j]}".strip()
            if len(longer) > LONG_CHARS or count_tokens(longer) > max_tokens:
                break
            text, j = longer, j + 1
        j += 1  # the sentence that did not fit starts no text: every text is distinct
        out.append(text)
    return out


def request(base: str, fn_index: int, data: list, session: str | None = None) -> tuple[float, str | None]:
    """One queued call from ``session`` (None: a fresh one): (seconds, error text or None). The answer is dropped."""
    session = session or uuid.uuid4().hex[:12]
    body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": session}).encode()
    start = time.perf_counter()
    req = urllib.request.Request(base + "gradio_api/queue/join", data=body, headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=120).read()
    except urllib.error.HTTPError as err:
        return time.perf_counter() - start, f"{err.code} {err.read()[:120]!r}"
    with urllib.request.urlopen(base + f"gradio_api/queue/data?session_hash={session}", timeout=300) as stream:
        for line in stream:
            if line.startswith(b"data:") and b'"process_completed"' in line[:200]:
                msg = json.loads(line[5:])
                ok = msg.get("success") and not msg["output"].get("error")
                return time.perf_counter() - start, None if ok else str(msg["output"].get("error"))
    return time.perf_counter() - start, "stream ended"


class Server:
    """The app in a child process (``--serve``), its RSS from /proc, its counters over a pipe."""

    def __init__(self, args: argparse.Namespace) -> None:
        cmd = [sys.executable, __file__, "--serve", "--checkpoint", args.checkpoint, "--concurrency",
               str(args.concurrency), "--max-batch", str(args.max_batch)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        ready = json.loads(self.proc.stdout.readline())  # {"url", "fns", "model", "max_tokens"}
        self.base, self.fns, self.model, self.max_tokens = ready["url"], ready["fns"], ready["model"], ready["max_tokens"]

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS line")

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        try:
            self.ask("quit")
        finally:
            self.proc.wait(timeout=30)


def serve(args: argparse.Namespace) -> None:
    """Child: start the app as app.py does, print how to reach it, then answer counter commands on stdin."""
    try:
        from ui.context import tune_allocator
    except ImportError:  # a checkout from before the allocator settings: measured as it was
        tune_allocator = list
    tune_allocator()
    import torch

    from ui.context import load_context
    from ui.handlers import warm_up
    from ui.layout import build_demo

    ctx = load_context([args.checkpoint], concurrency=args.concurrency)
    ctx.max_batch = args.max_batch  # before build_demo: the translate queue admits concurrency x max_batch
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.concurrency))
    warm_up(ctx)
    demo = build_demo(ctx)
    demo.launch(prevent_thread_lock=True, quiet=True)
    config = json.loads(urllib.request.urlopen(demo.local_url + "config").read())
    fns = {d["api_name"]: i for i, d in enumerate(config["dependencies"]) if d.get("api_name")}
    lm = ctx.default
    print(json.dumps({"url": demo.local_url, "fns": fns, "model": lm.name,
                      "max_tokens": lm.ckpt.config.max_positions - 1}), flush=True)
    count = lambda: {"calls": ctx.batcher.calls, "requests": ctx.batcher.requests, "peak": ctx.in_flight.peak}  # noqa: E731
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "quit":
            print("{}", flush=True)
            break
        if command == "max_batch":
            ctx.max_batch = int(rest[0])
        elif command == "reset_peak":
            ctx.in_flight.peak = 0
        elif command == "clear_cache":
            ctx.cache.clear()
        elif command == "tokens":  # tokens <json text>: pieces of a text (the client sizes its long texts)
            text = json.loads(line.split(" ", 1)[1])
            print(json.dumps({"n": len(lm.ckpt.tokenizer.encode(text.strip())) + 1}), flush=True)  # + eos
            continue
        print(json.dumps(count()), flush=True)
    demo.close()


def settled_rss(server: Server, settle: float) -> int:
    time.sleep(settle)  # the app hands free memory back once idle (ui.context.IdleTrim, 0.5 s)
    return server.rss()


def memory_row(server: Server, label: str, make: Callable[[int], list], n: int, every: int, workers: int,
               settle: float) -> None:
    """n requests from n new sessions, ``workers`` at a time; RSS sampled every ``every`` requests."""
    fn = server.fns["translate"]
    samples = [settled_rss(server, settle)]
    errors = 0
    for start in range(0, n, every):
        with ThreadPoolExecutor(workers) as pool:
            errors += sum(1 for _, e in pool.map(lambda i: request(server.base, fn, make(i)), range(start, min(n, start + every))) if e)
        samples.append(settled_rss(server, settle))
    per_100 = (samples[-1] - samples[0]) / n * 100
    last = samples[-1] - samples[-1 - max(1, 100 // every)] if n >= 100 else float("nan")
    print(f"{label:<52} {n} requests, {errors} errors: RSS after warm-up {samples[0] / MB:.0f} MiB, growth "
          f"{per_100 / MB:+.1f} MiB per 100, last 100 {last / MB:+.1f} MiB  "
          f"(every {every}: {' '.join(f'{s / MB:.0f}' for s in samples)} MiB)", flush=True)


def load_row(server: Server, label: str, api: str, make: Callable[[int], list], clients: int, requests: int,
             times_out: list[float] | None = None) -> None:
    """clients x requests, each client one session sending its requests one after the other."""
    fn = server.fns[api]
    before = server.ask("count")

    def client(c: int) -> list[tuple[float, str | None]]:
        session = uuid.uuid4().hex[:12]
        return [request(server.base, fn, make(c * requests + r), session) for r in range(requests)]

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(client, range(clients)) for r in rs]
    wall = time.perf_counter() - start
    after = server.ask("count")
    times = sorted(t for t, _ in results)
    if times_out is not None:
        times_out.extend(times)
    errors = [e for _, e in results if e]
    calls, served = after["calls"] - before["calls"], after["requests"] - before["requests"]
    print(f"{label:<52} {clients} clients x {requests}: {len(errors)} errors, p50 {statistics.median(times):.3f} s, "
          f"p95 {times[max(0, int(0.95 * len(times)) - 1)]:.3f} s, {len(results) / wall:5.1f} requests/s; "
          f"{served} translations decoded in {calls} model calls", flush=True)
    if errors:
        print("  first error:", errors[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from model.checkpoint import DEFAULT_CHECKPOINT
    from ui.batcher import MAX_BATCH

    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--sessions", type=int, default=200, help="new sessions per memory row (>= 200 for a plateau)")
    p.add_argument("--long", type=int, default=200, help="distinct long requests in the memory row")
    p.add_argument("--every", type=int, default=50, help="requests between RSS samples")
    p.add_argument("--settle", type=float, default=1.5, help="idle seconds before each RSS sample")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--requests", type=int, default=25)
    p.add_argument("--burst", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--max-batch", type=int, default=MAX_BATCH, help="requests decoded together at most")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-load", action="store_true")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args)
        return
    server = Server(args)
    try:
        run(server, args)
    finally:
        server.close()


def run(server: Server, args: argparse.Namespace) -> None:
    name = server.model
    pool = distinct_sentences(12000)  # Tatoeba's first (long texts are made of them), templates after
    tokens = lambda text: server.ask("tokens " + json.dumps(text))["n"]  # noqa: E731
    n_long = args.long + (args.clients * args.requests + 2) // 3 + 16
    longs = long_texts(n_long, pool, tokens, server.max_tokens - 16)
    pool = pool[::-1]  # short requests from the other end
    print(f"long texts: {len(longs)}, {statistics.mean(map(len, longs)):.0f} characters on average "
          f"(min {min(map(len, longs))}; as many whole sentences as fit in {LONG_CHARS} characters and "
          f"{server.max_tokens - 16} pieces)", flush=True)
    fn = server.fns["translate"]
    # warm-up, at the concurrency of the measurements: thread pools, allocator arenas, lazily built state
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: request(server.base, fn, [f"{SENTENCES[i % 8]} ({i})", *GREEDY, name]), range(32)))
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda i: request(server.base, fn, [longs[-1 - i], *GREEDY, name]), range(16)))
    server.ask("clear_cache")

    if not args.skip_memory:
        print("-- memory: RSS of the server process after a warm-up, each request from a new session", flush=True)
        memory_row(server, "same sentence (cache hits)", lambda i: [SENTENCES[0], *GREEDY, name],
                   args.sessions, args.every, 8, args.settle)
        memory_row(server, "distinct short sentences (no cache hits)", lambda i: [pool[i], *GREEDY, name],
                   args.sessions, args.every, 8, args.settle)
        memory_row(server, f"distinct long texts (~{LONG_CHARS} characters)", lambda i: [longs[i], *GREEDY, name],
                   args.long, args.every, 4, args.settle)
    if args.skip_load:
        return

    print("-- load: each client one session, one request after another", flush=True)
    mixed = lambda i: [SENTENCES[i % 8], *SETTINGS[(i // 8) % len(SETTINGS)], name]  # noqa: E731
    load_row(server, "cache hits: 8 sentences x 4 settings, repeated", "translate", mixed, args.clients, args.requests)
    short = pool[1000:]
    long_mix = longs[args.long:]

    def distinct(i: int) -> list:  # a third long, all different, greedy
        return [long_mix[i // 3] if i % 3 == 0 else short[i], *GREEDY, name]

    server.ask("clear_cache")
    load_row(server, "distinct, a third long, greedy (no cache hits)", "translate", distinct, args.clients, args.requests)

    # what-if routes: alone on an idle server, then while the translate load above runs again
    whatif = [("whatif_force", lambda s: [s, "The", name]), ("whatif_beam", lambda s: [s, 4, 1.0, name]),
              ("whatif_align", lambda s: [s, name]), ("whatif_lens", lambda s: [s, name])]
    whatif_short = pool[3000:]
    rounds = max(1, args.requests // 5)

    def whatif_client(offset: int) -> list[tuple[float, str | None]]:
        out, session = [], uuid.uuid4().hex[:12]
        for r in range(rounds):
            for k, (api, make) in enumerate(whatif):
                out.append(request(server.base, server.fns[api], make(whatif_short[offset + 4 * r + k]), session))
        return out

    def whatif_line(label: str, results: list[tuple[float, str | None]], wall: float) -> None:
        times = sorted(t for t, _ in results)
        errors = [e for _, e in results if e]
        print(f"{label:<52} 2 clients x {len(results) // 2} (force, beam, align, lens): {len(errors)} errors, "
              f"p50 {statistics.median(times):.3f} s, p95 {times[max(0, int(0.95 * len(times)) - 1)]:.3f} s, "
              f"{len(results) / wall:5.1f} requests/s", flush=True)
        if errors:
            print("  first error:", errors[0])

    start = time.perf_counter()
    with ThreadPoolExecutor(2) as ex:
        alone = [r for rs in ex.map(whatif_client, (0, 500)) for r in rs]
    whatif_line("what-if routes, idle server", alone, time.perf_counter() - start)
    server.ask("clear_cache")
    busy: list[tuple[float, str | None]] = []
    with ThreadPoolExecutor(1) as bg:
        load = bg.submit(load_row, server, "  the translate load beside them (same, cache emptied)", "translate",
                         distinct, args.clients, args.requests)
        time.sleep(2.0)  # the translate clients are under way
        start = time.perf_counter()
        with ThreadPoolExecutor(2) as ex:
            busy = [r for rs in ex.map(whatif_client, (1000, 1500)) for r in rs]
        wall = time.perf_counter() - start
        load.result()
    whatif_line(f"what-if routes while {args.clients} clients translate", busy, wall)

    # a burst: the bound holds, the rest are told to wait or try again
    server.ask("reset_peak")
    with ThreadPoolExecutor(args.burst) as ex:
        burst = list(ex.map(lambda i: request(server.base, fn, [f"{SENTENCES[i % 8]} #{i}", *SETTINGS[2], name]),
                            range(args.burst)))
    peak = server.ask("count")["peak"]
    busy_n = sum(1 for _, e in burst if e and "busy" in e)
    other = sum(1 for _, e in burst if e and "busy" not in e)
    print(f"{args.burst} simultaneous requests: at most {peak} model calls at once (limit {args.concurrency}, a "
          f"micro-batch counting as one); {busy_n} told 'busy, try again', {other} other errors", flush=True)


if __name__ == "__main__":
    main()
