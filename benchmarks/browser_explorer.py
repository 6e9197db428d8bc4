"""How fast the explorer answers in Chromium: Next, layer/head/view switches, and Translate -> first heatmap.

    python benchmarks/browser_explorer.py            # shipped checkpoint, loopback, ~1 minute

Stepping and switching are timed inside the page from the click to the next animation frame (the
figures are redrawn synchronously in the handler, so this includes drawing). Translate is timed from
the click to the moment the new trace's first heatmap is drawn (server round trip included).
"""
from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from playwright.sync_api import sync_playwright  # noqa: E402

from model.checkpoint import DEFAULT_CHECKPOINT  # noqa: E402
from ui.context import load_context  # noqa: E402
from ui.handlers import warm_up  # noqa: E402
from ui.layout import build_demo  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SENTENCES = ["Je mange une pomme.", "Il fait très beau aujourd'hui.", "Où est la gare, s'il vous plaît ?",
             "Nous allons à la plage demain matin.", "Elle lit un livre dans le jardin.",
             "Je ne sais pas ce que tu veux dire.", "Peux-tu m'aider à porter ces valises ?", "Tom est fatigué."]
TIMED_CLICK = """async (sel) => {
  const t0 = performance.now();
  document.querySelector(sel).click();
  await new Promise((r) => requestAnimationFrame(() => r()));
  return performance.now() - t0;
}"""
TIMED_SELECT = """async ([sel, value]) => {
  const s = document.querySelector(sel), t0 = performance.now();
  s.value = value; s.dispatchEvent(new Event("change", {bubbles: true}));
  await new Promise((r) => requestAnimationFrame(() => r()));
  return performance.now() - t0;
}"""
TIMED_TRANSLATE = """async () => {
  const root = document.getElementById("rg-explorer"), before = root.dataset.loads, t0 = performance.now();
  document.querySelector("#rg-translate").click();
  while (root.dataset.loads === before) await new Promise((r) => setTimeout(r, 2));
  await new Promise((r) => requestAnimationFrame(() => r()));
  return performance.now() - t0;
}"""


def summary(name: str, ms: list[float], target: float, width: int = 34) -> None:
    """One line: n, p50 and p95 of ``ms`` against ``target`` (met: p95 within it). cell_view.py prints with it too."""
    ms = sorted(ms)
    p50, p95 = statistics.median(ms), ms[max(0, int(0.95 * len(ms)) - 1)]
    print(f"{name:<{width}} n={len(ms):>3}  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  target <= {target:.0f} ms  "
          f"({'met' if p95 <= target else 'p95 NOT met' if p50 <= target else 'NOT met'})")


def main() -> None:
    ctx = load_context([str(DEFAULT_CHECKPOINT)])
    warm_up(ctx)
    demo = build_demo(ctx)
    demo.launch(prevent_thread_lock=True, quiet=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(demo.local_url + "#s=" + quote(SENTENCES[0]))
        page.wait_for_selector("#rg-explorer figure canvas")
        nxt, switch, translate = [], [], []
        for sentence in SENTENCES:
            page.fill("#rg-source textarea", sentence)
            translate.append(page.evaluate(TIMED_TRANSLATE))
            n = page.evaluate("regard.state.trace.steps.length")
            for _ in range(n - 1):
                nxt.append(page.evaluate(TIMED_CLICK, "#rg-next"))
            for sel, value in (("#rg-layer", "0"), ("#rg-head", "2"), ("#rg-head", "grid"), ("#rg-head", "mean"),
                               ("#rg-layer", "3"), ("#rg-scale", "auto"), ("#rg-scale", "fixed")):
                switch.append(page.evaluate(TIMED_SELECT, [sel, value]))
            for view in ("attention", "cost", "step"):
                switch.append(page.evaluate(TIMED_CLICK, f"#rg-views button[data-view={view}]"))
        browser.close()
    demo.close()
    summary("Next -> updated figures", nxt, 30)
    summary("layer/head/scale/view switch", switch, 30)
    summary("Translate -> first heatmap", translate, 200)


if __name__ == "__main__":
    main()
