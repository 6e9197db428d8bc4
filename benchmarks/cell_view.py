"""How fast "Inside this cell" opens in Chromium: click on an attention cell -> the panel drawn with its numbers.

    python benchmarks/cell_view.py            # shipped checkpoints, loopback, ~1 minute

For two sentences, every (kind, layer) of the default model is opened three ways, each timed inside the page
from the click event to the panel drawn (``regard.cell.drawnAt``, set once its HTML and chart are in place)
and to the end of the next frame (its style, layout and paint done). Target: <= 50 ms.

- the user's path: the mouse moves onto the map (real input events, in 10 moves), rests APPROACH_MS, clicks
  a cell. A move over a map asks the server for that layer's q, k, v (cell.js, ``regard.onMapApproach``), so
  the answer is usually there before the click. Also printed: how long after the first move the answer came.
- a finger's tap: pointerdown on the cell, TAP_MS later the click (a touch screen has no hover; the
  pointerdown sends the request, so the click waits for what is left of the round trip).
- a click with no move before it (a synthetic click, what a script would do): it waits for the whole
  request; this is the server round trip.
- two more clicks in a layer already here: answered from the page's cache.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from playwright.sync_api import sync_playwright  # noqa: E402

from app import default_checkpoints  # noqa: E402
from browser_explorer import summary as line  # noqa: E402  (this folder is on the path: a script's own)
from model.decoding import trace_translation  # noqa: E402
from model.explain.cell import attention_layer  # noqa: E402
from ui.context import load_context  # noqa: E402
from ui.handlers import warm_up  # noqa: E402
from ui.layout import build_demo  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SENTENCES = ["Nous allons à la plage demain matin.", "Peux-tu m'aider à porter ces valises ?"]
TAP_SENTENCES = ["Il pleut depuis trois jours dans la vallée.", "Je voudrais un café et deux croissants."]
COLD_SENTENCES = ["Le chat dort sur le canapé du salon.", "Où est la gare, s'il vous plaît ?"]  # fresh traces
KINDS = ("cross", "decoder", "encoder")
CELLS = ((1, 0), (2, 1), (0, 0))  # (query, key): the first opens the layer, the others come from the cache
APPROACH_MS = 250  # the pointer's rest on the map before the click: a quick hand (aiming takes longer)
TAP_MS = 80  # a tap's pointerdown -> click: a quick finger (typical taps last 80-120 ms)
PRESS = """([x, y]) => { const c = document.querySelector('figure[data-fig="attention"] canvas');
  c.dispatchEvent(new PointerEvent("pointerdown", {bubbles: true, clientX: x, clientY: y, pointerType: "touch"})); }"""
TIMED_CELL = """async ([q, k]) => {
  const box = document.querySelector('figure[data-fig="attention"]'), canvas = box.querySelector("canvas");
  const f = regard.figures().attention;
  const L = regard.lib.heatmapLayout({rows: f.rows, cols: f.cols, subtitle: "x"}, Math.floor(box.clientWidth), false);
  const r = canvas.getBoundingClientRect(), panel = () => document.getElementById("rg-cell");
  const done = () => { const p = panel(); return p && p.dataset.state === "ready" && +p.dataset.q === q && +p.dataset.k === k; };
  const t0 = performance.now();
  canvas.dispatchEvent(new MouseEvent("click", {bubbles: true, clientX: r.left + L.x0 + (k + 0.5) * L.cw, clientY: r.top + L.y0 + (q + 0.5) * L.ch}));
  while (!done()) await new Promise((res) => setTimeout(res, 1));
  const drawn = regard.cell.drawnAt - t0;
  // after the next frame's style, layout and paint: a message posted from its animation-frame callback
  await new Promise((res) => requestAnimationFrame(() => { const c = new MessageChannel(); c.port1.onmessage = () => res(); c.port2.postMessage(0); }));
  return [drawn, performance.now() - t0, +panel().dataset.loads];
}"""
SELECT = """([sel, value]) => { const s = document.querySelector(sel); s.value = value; s.dispatchEvent(new Event("change", {bubbles: true})); }"""
TRANSLATE = """async () => {
  const root = document.getElementById("rg-explorer"), before = root.dataset.loads;
  document.querySelector("#rg-translate").click();
  while (root.dataset.loads === before) await new Promise((r) => setTimeout(r, 5));
}"""


def payload(ctx) -> None:
    """What one layer's answer weighs and costs on the server, for the first sentence's last cross layer."""
    ckpt = ctx.default.ckpt
    trace = trace_translation(ckpt.model, ckpt.tokenizer, SENTENCES[0])
    ids = [s.token_id for s in trace.steps]
    layer = ckpt.config.n_decoder_layers - 1
    attention_layer(ckpt.model, trace.source_ids, ids, "cross", layer)  # warm
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        data = attention_layer(ckpt.model, trace.source_ids, ids, "cross", layer)
        times.append((time.perf_counter() - t0) * 1e3)
    print(f"attention_layer (cross, layer {layer + 1}, {len(trace.source_ids)} source x {len(ids)} target pieces): "
          f"median {statistics.median(times):.1f} ms, {len(json.dumps(data)) / 1024:.1f} KiB of JSON")


CELL_POINT = """([q, k]) => {
  const box = document.querySelector('figure[data-fig="attention"]'), canvas = box.querySelector("canvas");
  const f = regard.figures().attention;
  const L = regard.lib.heatmapLayout({rows: f.rows, cols: f.cols, subtitle: "x"}, Math.floor(box.clientWidth), false);
  const r = canvas.getBoundingClientRect();
  return [r.left + L.x0 + (k + 0.5) * L.cw, r.top + L.y0 + (q + 0.5) * L.ch, r.left + 2, r.top + 2];
}"""
ARRIVAL = """(loads) => new Promise((res) => { const t0 = performance.now();
  const tick = () => { const p = document.getElementById("rg-cell"), n = regard.cell.loads;
    if (n >= loads) res(performance.now() - t0); else setTimeout(tick, 1); }; tick(); })"""


def main() -> None:
    ctx = load_context(default_checkpoints())
    warm_up(ctx)
    payload(ctx)
    demo = build_demo(ctx)
    demo.launch(prevent_thread_lock=True, quiet=True)
    cfg = ctx.default.ckpt.config
    times: dict[str, list[float]] = {k: [] for k in ("user", "user_frame", "tap", "tap_frame", "cold", "cold_frame",
                                                     "cached", "cached_frame", "arrival")}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(demo.local_url + "#s=" + quote(SENTENCES[0]))
        page.wait_for_selector("#rg-explorer figure canvas")
        page.click("#rg-views button[data-view=attention]")
        loads = 0
        for triple in zip(SENTENCES, TAP_SENTENCES, COLD_SENTENCES):
            for path, sentence in zip(("user", "tap", "cold"), triple):  # each on a fresh translation: nothing cached
                page.mouse.move(5, 5)  # off the maps
                page.fill("#rg-source textarea", sentence)
                page.evaluate(TRANSLATE)
                loads = int(page.evaluate("regard.cell.loads"))
                for kind in KINDS:
                    page.evaluate(SELECT, ["#rg-kind", kind])
                    for layer in range(cfg.n_encoder_layers if kind == "encoder" else cfg.n_decoder_layers):
                        page.mouse.move(5, 5)
                        page.evaluate(SELECT, ["#rg-layer", str(layer)])
                        for i, cell in enumerate(CELLS):
                            if i == 0 and path == "user":
                                x, y, x0, y0 = page.evaluate(CELL_POINT, list(cell))
                                page.mouse.move(x0, y0)
                                arrival = page.evaluate_handle(ARRIVAL, loads + 1)
                                page.mouse.move(x, y, steps=10)
                                page.wait_for_timeout(APPROACH_MS)
                            if i == 0 and path == "tap":
                                x, y, _, _ = page.evaluate(CELL_POINT, list(cell))
                                page.evaluate(PRESS, [x, y])
                                page.wait_for_timeout(TAP_MS)
                            drawn, frame, now = page.evaluate(TIMED_CELL, list(cell))
                            if i == 0:
                                loads += 1
                                if path == "user":
                                    times["arrival"].append(page.evaluate("(p) => p", arrival))
                            if now != loads:
                                raise SystemExit(f"expected {loads} answers after {kind} layer {layer + 1} cell {cell}, saw {now}")
                            name = path if i == 0 else "cached"
                            times[name].append(drawn)
                            times[name + "_frame"].append(frame)
        browser.close()
    demo.close()
    line(f"user: move onto the map, rest {APPROACH_MS} ms, click -> drawn", times["user"], 50, 44)
    line("  ... -> painted", times["user_frame"], 50, 44)
    line("later click in the layer (cached) -> drawn", times["cached"], 50, 44)
    line("  ... -> painted", times["cached_frame"], 50, 44)
    line(f"tap: pointerdown, click {TAP_MS} ms later -> drawn", times["tap"], 50, 44)
    line("  ... -> painted", times["tap_frame"], 50, 44)
    line("click with no move before it -> drawn", times["cold"], 50, 44)
    line("  ... -> painted", times["cold_frame"], 50, 44)
    line("layer's answer after the pointer's first move", times["arrival"], APPROACH_MS, 44)


if __name__ == "__main__":
    main()
