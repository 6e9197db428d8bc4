"""Attribution speed: ``model.explain.attribution.attribute`` (gradient x input and 32-step integrated
gradients at once) on the shipped models, for sentences of about 20 generated tokens, against the 2 s target.

    python benchmarks/attribution.py                       # both shipped models, 5 repeats per sentence
    python benchmarks/attribution.py --threads 1 --runs 1  # one thread; one decoder pass for all steps
    python benchmarks/attribution.py --app                 # also through the served app (gradio_client)

Per model: p50 / p95 over every (sentence, repeat) of the wall time of ``attribute`` (the first call of
each model is a warm-up and not counted), the range over sentences of IG's summed |completeness gap|
relative to the summed |f(x) - f(0)|, and per sentence its lengths (S source, T generated ids) and p50.

``--app`` starts ``python app.py`` on a free port and sends each sentence once (the app caches answers)
to its "/attribution" endpoint (text, generated ids "12 7 3", model) with gradio_client: the time end to
end and the ``ms`` that ``attribute`` reports inside the app, which runs torch on cores / concurrency
threads (one on two cores, see app.py).
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.checkpoint import load_checkpoint  # noqa: E402
from model.decoding import source_ids, trace_translation  # noqa: E402
from model.explain.attribution import attribute  # noqa: E402

CHECKPOINTS = ("checkpoints/regard-fr-en-postln.safetensors", "checkpoints/regard-fr-en-preln.safetensors")
SENTENCES = (  # 17 to 23 generated tokens with either model (eos included)
    "Le chat dort sur le canapé pendant que les enfants jouent dans le jardin avec le chien.",
    "Nous allons à la plage demain matin si le temps est beau et s'il ne pleut pas.",
    "Elle lit un livre dans la bibliothèque tous les soirs après le dîner avec ses amis.",
    "Je ne sais pas pourquoi il est parti si tôt ce matin sans dire au revoir.",
)
TARGET_MS = 2000.0
WARM_UP = "Je mange une pomme."  # not one of SENTENCES: the app caches answers, so each sentence is sent once


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def bench_library(path: str, repeats: int, runs: int) -> list[tuple[str, list[int], list[float]]]:
    """Times ``attribute``; returns (text, generated ids, ms of each repeat) per sentence, the warm-up first."""
    ckpt = load_checkpoint(ROOT / path)
    model, tok = ckpt.model, ckpt.tokenizer
    warm = [s.token_id for s in trace_translation(model, tok, WARM_UP).steps]
    cases = []
    for text in SENTENCES:
        generated = [s.token_id for s in trace_translation(model, tok, text).steps]
        cases.append((text, source_ids(model, tok, text), generated))
    attribute(model, source_ids(model, tok, WARM_UP), warm, 32, runs=runs)  # warm-up: allocator, autograd
    times, gaps, out = [], [], []
    for text, src, generated in cases:
        own = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            res = attribute(model, src, generated, 32, runs=runs)
            own.append((time.perf_counter() - t0) * 1000.0)
        times += own
        change = np.abs(np.asarray(res["f"]) - np.asarray(res["f_baseline"])).sum()
        gaps.append(float(np.abs(res["completeness_gap"]).sum() / max(change, 1e-12)))
        out.append((text, generated, own))
    p50, p95 = percentile(times, 50), percentile(times, 95)
    lengths = ", ".join(f"S={len(source_ids(model, tok, t))} T={len(g)}: {percentile(own, 50):.0f} ms" for t, g, own in out)
    print(f"{Path(path).stem}: p50 {p50:.0f} ms, p95 {p95:.0f} ms over {len(times)} calls "
          f"({'within' if p95 <= TARGET_MS else 'OVER'} the {TARGET_MS:.0f} ms target); "
          f"IG |gap| / |f(x) - f(0)| {min(gaps):.3f}..{max(gaps):.3f}; p50 per sentence {lengths}")
    return [(WARM_UP, warm, [])] + out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_app(cases: dict[str, list[tuple[str, list[int], list[float]]]]) -> None:
    """Each sentence once through "/attribution" (a repeat would be answered from the app's cache)."""
    from gradio_client import Client

    port = free_port()
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = None
        for _ in range(120):
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:  # not listening yet
                time.sleep(1)
        if client is None:
            raise SystemExit("the app did not start within 120 s")
        for path, rows in cases.items():
            name = Path(path).stem
            times, inside = [], []
            for i, (text, generated, _) in enumerate(rows):
                t0 = time.perf_counter()
                data = client.predict(text, " ".join(map(str, generated)), name, api_name="/attribution")
                if i:  # rows[0] is the warm-up
                    times.append((time.perf_counter() - t0) * 1000.0)
                    inside.append(data["ms"])
            print(f"{name} through the app (its own thread setting): p50 {percentile(times, 50):.0f} ms end to end, "
                  f"{percentile(inside, 50):.0f} ms inside attribute(), over {len(times)} sentences")
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--runs", type=int, default=4, help="decoder passes sharing the steps (attribute(runs=))")
    parser.add_argument("--app", action="store_true", help="also time the served app's /attribution endpoint")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, runs={args.runs}, IG 32 steps + gradient x input")
    cases = {path: bench_library(path, args.repeats, args.runs) for path in CHECKPOINTS}
    if args.app:
        bench_app(cases)


if __name__ == "__main__":
    main()
