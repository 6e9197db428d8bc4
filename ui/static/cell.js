/* "Inside this cell": click any attention cell and see how the model computed its weight.
 *
 * A click on a map (regard.onCellClick: {kind: "cross" | "decoder" | "encoder", layer, head, q, k}) opens a
 * panel under the figures with that layer's real numbers, asked once per (trace, kind, layer) from
 * regard.explain("attention_cell", {kind, layer}) (model/explain/cell.py's dict: q, k, v, weights and head
 * outputs of every head) and kept in a Map, so every later click in that layer opens with no request. The
 * request leaves when the pointer moves over a map of that layer (regard.onMapApproach), before the click. The
 * panel shows the query vector q_i, the key k_j and value v_j of the clicked column, q_i·k over every key,
 * the same divided by √d_k, the softmax (the model's weights, and recomputed here), the softmax without the
 * scaling (peakier: why √d_k), and Σ_j w_j v_j next to the head's output with the largest |difference|.
 * A click on the mean-over-heads map opens head 1 (the panel's head picker switches heads).
 * URL key: cell=kind:layer:head:q:k (the page's kind; layer, head, q, k 1-based; head may be "mean").
 * Root: #rg-cell, data-loads = answers received, data-drawn = panels drawn, data-state = closed | loading |
 * ready | failed; numbers: [data-num=NAME] and vectors #rg-cell-vec-NAME [data-i=d].
 */
(function () {
  "use strict";
  const R = window.regard;
  if (!R || !R.onCellClick || R.cell) return;
  const L = R.lib, C = L.C;
  const SERVER_KIND = { cross: "cross", decoder: "decoder_self", encoder: "encoder" };
  const PAGE_KIND = { cross: "cross", decoder_self: "decoder", encoder: "encoder" };
  const CELL = { open: null, cache: new Map(), pending: new Set(), failed: new Set(), traceKey: null, urlCell: null,
    loads: 0, drawn: 0, drawnAt: 0, view: null, width: 0, built: null, els: null, canvas: null };
  R.cell = CELL;

  const style = document.createElement("style");
  style.textContent = `#rg-cell { margin: 8px 0; padding: 8px; border: 1px solid #c7d2fe; border-radius: 10px; background: #fff;
      overflow-wrap: anywhere; min-width: 0; box-sizing: border-box; max-width: 100%; }
    #rg-cell .rg-cell-bar { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 10px; }
    #rg-cell .rg-cell-bar b { font-size: 1rem; }
    #rg-cell button, #rg-cell select { font: inherit; font-size: 0.78rem; padding: 1px 8px; border-radius: 6px; border: 1px solid #cbd5e1;
      background: #f8fafc; color: #334155; cursor: pointer; }
    #rg-cell .rg-cell-close { margin-left: auto; }
    #rg-cell .rg-cell-note { font-size: 0.84rem; color: #475569; margin: 4px 0; line-height: 1.45; }
    #rg-cell .rg-cell-vecs { display: flex; flex-direction: column; gap: 6px; margin: 6px 0; }
    #rg-cell .rg-cell-name { font-size: 0.8rem; color: #475569; margin-bottom: 1px; }
    #rg-cell .rg-cell-strip { display: flex; flex-wrap: wrap; gap: 2px; }
    #rg-cell .rg-cell-x { font-family: var(--font-mono, monospace); font-size: 0.72rem; min-width: 4.9em; text-align: right; padding: 1px 3px;
      border-radius: 3px; font-variant-numeric: tabular-nums; box-sizing: border-box; }
    #rg-cell .rg-cell-num { font-family: var(--font-mono, monospace); font-weight: 600; font-variant-numeric: tabular-nums; }
    #rg-cell .rg-cell-steps { display: grid; grid-template-columns: minmax(0, max-content) minmax(0, 1fr); gap: 2px 10px; font-size: 0.85rem; margin: 6px 0; }
    #rg-cell .rg-cell-steps > span:nth-child(odd) { color: #475569; }
    #rg-cell figure { margin: 6px 0; }
    #rg-cell .rg-cell-cmp { display: flex; flex-wrap: wrap; gap: 6px 18px; font-size: 0.85rem; }`;
  document.head.appendChild(style);

  const ids = (t) => t.steps.map((s) => s.token_id);
  const keyOf = (t) => (t.model || "") + "\u0001" + t.source_text + "\u0001" + ids(t).join(",");
  const layerKey = (kind, layer) => CELL.traceKey + "\u0001" + kind + "\u0001" + layer;
  const f4 = (v) => (Number.isFinite(v) ? v.toFixed(4) : String(v));
  const sci = (v) => (v === 0 ? "0" : v.toExponential(1));

  // --- the numbers of one cell, from the layer's payload -------------------------------------------------
  function decode(data) {
    return { H: data.heads, Dh: data.d_head, Lq: data.queries, Lk: data.keys, scale: data.scale, causal: data.causal,
      q: L.f32(data.q), k: L.f32(data.k), v: L.f32(data.v), w: L.f32(data.weights), o: L.f32(data.head_out), request: data.request };
  }
  const row = (arr, h, i, n, len) => Array.from(arr.subarray((h * n + i) * len, (h * n + i + 1) * len));
  function softmax(xs) {
    const m = Math.max(...xs), e = xs.map((x) => Math.exp(x - m)), s = e.reduce((a, b) => a + b, 0);
    return e.map((x) => x / s);
  }
  const bits = (ps) => -ps.reduce((a, p) => a + (p > 0 ? p * Math.log2(p) : 0), 0);
  /* Everything the panel shows for head h, query i, key j; keys past i are masked in causal self-attention. */
  function numbers(d, h, i, j) {
    const n = d.causal ? i + 1 : d.Lk, q = row(d.q, h, i, d.Lq, d.Dh);
    const keys = Array.from({ length: n }, (_, m) => row(d.k, h, m, d.Lk, d.Dh));
    const dot = (a, b) => a.reduce((s, x, t) => s + x * b[t], 0);
    const dots = keys.map((k) => dot(q, k)), scaled = dots.map((x) => x * d.scale);
    const weights = Array.from(d.w.subarray((h * d.Lq + i) * d.Lk, (h * d.Lq + i) * d.Lk + n));
    const soft = softmax(scaled), unscaled = softmax(dots);
    const vs = Array.from({ length: n }, (_, m) => row(d.v, h, m, d.Lk, d.Dh));
    const sum = q.map((_, t) => vs.reduce((s, v, m) => s + weights[m] * v[t], 0));
    const out = row(d.o, h, i, d.Lq, d.Dh);
    const kj = row(d.k, h, j, d.Lk, d.Dh), vj = row(d.v, h, j, d.Lk, d.Dh), dj = dot(q, kj);
    return { n, q, k: kj, v: vj, dots, scaled, weights, soft, unscaled, sum, out, masked: j >= n, dot: dj,
      sumDiff: Math.max(...sum.map((x, t) => Math.abs(x - out[t]))), softDiff: Math.max(...soft.map((x, m) => Math.abs(x - weights[m]))) };
  }
  /* The trace's map value at (layer, head or "mean", q, k): what the heatmap was drawn from (8-bit in the trace). */
  function mapWeight(t, kind, layer, head, q, k) {
    const a = t.att[kind], [, H, Q, K] = a.shape, at = (h) => a.data[((layer * H + h) * Q + q) * K + k] * (a.scale || 1);
    if (head !== "mean") return at(head);
    let s = 0; for (let h = 0; h < H; h++) s += at(h); return s / H;
  }

  // --- the bar chart: q·k, ÷√d_k, softmax, softmax without scaling ----------------------------------------
  const BAND = 74, LEFT = 46;
  function barsLayout(spec, w) {
    const n = spec.labels.length, cw = Math.max(2, (w - LEFT - 8) / n), font = 10;
    const labW = Math.min(70, 6 + Math.max(...spec.labels.map((s) => L.textWidth(L.clip(s, 12), font))));
    const vertical = cw < labW;
    return { n, cw, font, vertical, top: 44, h: 44 + 4 * BAND + (vertical ? labW : 16) + 6 };
  }
  function cellBars(p, w, spec) {
    const Y = barsLayout(spec, w), { n, cw, top } = Y;
    p.size(w, Y.h);
    p.text(L.fit(spec.title, w - 92, 13, 600), 4, 12, { size: 13, weight: 600, color: C.ink });
    p.text(L.clip(spec.subtitle, Math.max(20, Math.floor(w / 6))), 4, 30, { size: 11, color: C.muted });
    const signedMax = Math.max(1e-9, ...spec.rows[0].values.map(Math.abs));
    spec.rows.forEach((r, b) => {
      const y = top + b * BAND, plotTop = y + 16, ph = BAND - 24;
      const picked = spec.chosen != null && spec.chosen < n;
      p.text(L.fit(r.label + (picked ? ": " + f4(r.values[spec.chosen]) + " at the clicked key" : ""), w - 8, 11, 600), 4, y + 6, { size: 11, weight: 600, color: C.ink });
      if (picked) p.rect(LEFT + spec.chosen * cw, plotTop, cw, ph, "#fef3c7");
      const signed = r.signed, zero = signed ? plotTop + ph / 2 : plotTop + ph, span = signed ? ph / 2 : ph, max = signed ? signedMax : 1;
      p.rect(LEFT, zero, n * cw, 1, C.grid);
      p.text(signed ? "+" + max.toFixed(2) : "1", LEFT - 4, plotTop + 3, { size: 9, align: "right", color: C.muted });
      p.text("0", LEFT - 4, zero, { size: 9, align: "right", color: C.muted });
      if (signed) p.text("−" + max.toFixed(2), LEFT - 4, plotTop + ph - 3, { size: 9, align: "right", color: C.muted });
      r.values.forEach((v, m) => {
        const hgt = Math.min(span, (Math.abs(v) / max) * span), x = LEFT + m * cw + (cw > 4 ? 1 : 0), bw = Math.max(1, cw - (cw > 4 ? 2 : 0));
        const fill = m === spec.chosen ? "#b45309" : v < 0 ? C.link : C.accent; // dark amber on the amber column
        p.rect(x, v < 0 ? zero : zero - hgt, bw, Math.max(hgt, 0.5), fill);
      });
    });
    const ly = top + 4 * BAND - 4;
    spec.labels.forEach((s, m) => {
      const x = LEFT + (m + 0.5) * cw, o = { size: Y.font, color: m === spec.chosen ? C.ink : C.text, weight: m === spec.chosen ? 700 : 400 };
      if (Y.vertical) p.text(L.clip(s, 12), x, ly, Object.assign(o, { rotate: -90, align: "right" }));
      else p.text(L.clip(s, 10), x, ly + 6, Object.assign(o, { align: "center" }));
    });
    return [{ x: LEFT, y: top, cw, n, h: 4 * BAND }];
  }
  if (R.addFigureType) R.addFigureType("cell-bars", cellBars);

  // --- the panel ------------------------------------------------------------------------------------------
  function panel() {
    const root = R.root(); if (!root) return null;
    let el = root.querySelector("#rg-cell");
    if (!el) {
      el = document.createElement("section"); el.id = "rg-cell"; el.hidden = true;
      el.dataset.loads = String(CELL.loads); el.dataset.drawn = String(CELL.drawn); el.dataset.state = "closed";
      const figs = root.querySelector("#rg-figures");
      if (figs) figs.after(el); else root.appendChild(el);
      el.addEventListener("click", onPanelClick);
      el.addEventListener("change", (e) => { // an explicit pick is no longer "the mean's head 1"
        if (e.target.id === "rg-cell-head" && CELL.open) { Object.assign(CELL.open, { pick: +e.target.value - 1, picked: true }); draw(); writeHash(); }
      });
      // the width, kept from the observer: reading clientWidth at each click would force a layout of the page
      new ResizeObserver((entries) => {
        const w = entries[entries.length - 1].contentRect.width;
        if (w !== CELL.width) { CELL.width = w; if (CELL.open && CELL.view) drawChart(CELL.canvas); }
      }).observe(el);
    }
    return el;
  }
  const queryLabel = (t, kind, i) => (kind === "encoder" ? t.source_pieces[i] : L.stepRows(t)[i]);
  const keyLabel = (t, kind, j) => (kind === "decoder" ? t.target_pieces[j] : t.source_pieces[j]);
  const VECTORS = ["q", "k", "v", "sum", "out"];
  const strip = (name, dh) => `<div><div class="rg-cell-name" id="rg-cell-name-${name}"></div><div class="rg-cell-strip" id="rg-cell-vec-${name}">` +
    Array.from({ length: dh }, (_, d) => `<span class="rg-cell-x" data-i="${d}" title="dimension ${d + 1}"></span>`).join("") + `</div></div>`;
  const num = (name) => `<span class="rg-cell-num" data-num="${name}"></span>`;
  const NUMS = ["dot", "scaled", "weight", "weight-js", "unscaled", "sum-diff", "map-weight", "cell-weight", "map-mean", "cell-mean"];
  const bar = (title, extra) => `<div class="rg-cell-bar"><b>Inside this cell</b><span id="rg-cell-title">${title}</span>${extra}` +
    `<button class="rg-cell-close" id="rg-cell-close" title="Close this panel">✕ close</button></div>`;

  /* The panel's elements for one layer, built once: later clicks in the layer only change their text and
     colours, so a click creates no element (building ~250 of them next to Gradio's page is what a click cost). */
  function skeleton(el, data) {
    const picker = `<label>head <select id="rg-cell-head">${Array.from({ length: data.H }, (_, x) => `<option value="${x + 1}">${x + 1}</option>`).join("")}</select></label>`;
    el.innerHTML = bar("", picker + `<button id="rg-cell-json" title="Download this cell's numbers as JSON">⤓ data JSON</button>`) +
      `<div class="rg-cell-note" id="rg-cell-status" hidden></div>` +
      `<div class="rg-cell-note">weight = softmax over keys of q·k / √d_k, with d_k = ${data.Dh} (√d_k = ${Math.sqrt(data.Dh).toFixed(4)}); the head's output is Σ weight × v. ` +
      `All numbers below are this model's, from one pass over the translation (hooks on the attention layer).</div>` +
      `<div class="rg-cell-vecs">${strip("q", data.Dh)}${strip("k", data.Dh)}${strip("v", data.Dh)}</div>` +
      `<div class="rg-cell-steps" id="rg-cell-steps"><span>q·k</span><span>${num("dot")}</span><span>÷ √d_k</span><span>${num("scaled")}</span>` +
      `<span>softmax (the model's weight)</span><span>${num("weight")} · recomputed here from q·k/√d_k: ${num("weight-js")} (max |diff| over keys <span id="rg-cell-softdiff"></span>)</span>` +
      `<span>softmax without ÷√d_k</span><span>${num("unscaled")}</span><span>peakiness</span><span id="rg-cell-peak"></span></div>` +
      `<figure class="rg-fig" id="rg-cell-fig"><div class="rg-fig-tools"><button data-export="png" title="Download as PNG">PNG</button><button data-export="svg" title="Download as SVG">SVG</button></div><div class="rg-readout" id="rg-cell-readout"></div></figure>` +
      `<div class="rg-cell-vecs">${strip("sum", data.Dh)}${strip("out", data.Dh)}</div>` +
      `<div class="rg-cell-cmp"><span>max |Σ w v − head output| = ${num("sum-diff")}</span>` +
      `<span>clicked cell: map ${num("map-weight")} (the trace stores maps in 8 bits, ±0.002) · this pass ${num("cell-weight")}</span>` +
      `<span id="rg-cell-mean">mean over heads: map ${num("map-mean")} · this pass ${num("cell-mean")}</span></div>`;
    const one = (sel) => el.querySelector(sel);
    return { title: one("#rg-cell-title"), select: one("#rg-cell-head"), status: one("#rg-cell-status"), peak: one("#rg-cell-peak"),
      softDiff: one("#rg-cell-softdiff"), box: one("#rg-cell-fig"), readout: one("#rg-cell-readout"), mean: one("#rg-cell-mean"),
      names: Object.fromEntries(VECTORS.map((n) => [n, one("#rg-cell-name-" + n)])),
      spans: Object.fromEntries(VECTORS.map((n) => [n, Array.from(el.querySelectorAll(`#rg-cell-vec-${n} .rg-cell-x`))])),
      nums: Object.fromEntries(NUMS.map((n) => [n, one(`[data-num="${n}"]`)])) };
  }
  function fillStrip(spans, values, vmax) {
    values.forEach((x, d) => {
      const a = Math.min(1, Math.abs(x) / (vmax || 1)), s = spans[d];
      s.textContent = f4(x);
      s.style.background = x < 0 ? `rgba(219,39,119,${(a * 0.85).toFixed(3)})` : `rgba(79,70,229,${(a * 0.85).toFixed(3)})`;
      s.style.color = a > 0.55 ? "#fff" : "#1e293b";
    });
  }

  function draw() {
    const el = panel(), t = R.trace(), o = CELL.open; if (!el || !t || !o) return;
    const key = layerKey(o.kind, o.layer), data = CELL.cache.get(key);
    el.hidden = !(R.state.view === "step" || R.state.view === "attention");
    el.dataset.kind = o.kind; el.dataset.layer = String(o.layer); el.dataset.q = String(o.q); el.dataset.k = String(o.k);
    const qText = L.esc(queryLabel(t, o.kind, o.q)), kText = L.esc(keyLabel(t, o.kind, o.k));
    const title = `${L.esc(L.KINDS[o.kind])} · layer ${o.layer + 1} · query <span class="rg-q">${qText}</span> · key <span class="rg-q">${kText}</span>`;
    if (!data) {
      const failed = CELL.failed.has(key);
      CELL.built = null; CELL.els = null;
      el.dataset.state = failed ? "failed" : "loading"; el.dataset.head = String(o.pick);
      el.innerHTML = bar(title, "") + `<div class="rg-cell-note" id="rg-cell-status">${failed
        ? "The numbers of this layer could not be computed (see the message): click the cell again to retry."
        : "Asking the model for this layer's queries, keys and values (once per layer: later clicks in it open at once)…"}</div>`;
      finish(el); return;
    }
    const h = Math.min(o.pick, data.H - 1), c = numbers(data, h, o.q, o.k);
    if (CELL.built !== key || !el.contains(CELL.els.title)) { CELL.els = skeleton(el, data); CELL.built = key; }
    const E = CELL.els;
    el.dataset.state = "ready"; el.dataset.head = String(h);
    E.title.innerHTML = title;
    E.select.value = String(h + 1);
    const notes = [];
    if (o.head === "mean" && o.pick === 0 && !o.picked) notes.push(`You clicked the mean over heads: this is head 1 of ${data.H} (pick another head above).`);
    if (c.masked) notes.push(`This cell is masked: in the decoder's self-attention the query at step ${o.q + 1} only sees positions 1–${o.q + 1}, so its weight is 0 by construction. The bars show the keys it does see.`);
    E.status.textContent = notes.join(" "); E.status.hidden = !notes.length;
    E.names.q.innerHTML = `query q (${data.Dh} values) of <span class="rg-q">${qText}</span>, head ${h + 1}`;
    E.names.k.innerHTML = `key k of <span class="rg-q">${kText}</span>`;
    E.names.v.innerHTML = `value v of <span class="rg-q">${kText}</span>`;
    E.names.sum.textContent = "Σ_j weight_j × v_j (recomputed here from the model's weights and values)";
    E.names.out.textContent = `the model's head output (the input of the output projection, head ${h + 1})`;
    const vmaxQK = Math.max(1e-9, ...c.q.map(Math.abs), ...c.k.map(Math.abs));
    const vmaxV = Math.max(1e-9, ...c.v.map(Math.abs), ...c.sum.map(Math.abs), ...c.out.map(Math.abs));
    fillStrip(E.spans.q, c.q, vmaxQK); fillStrip(E.spans.k, c.k, vmaxQK);
    for (const n of ["v", "sum", "out"]) fillStrip(E.spans[n], c[n], vmaxV);
    const wj = c.masked ? 0 : c.weights[o.k];
    const values = { dot: c.dot, scaled: c.dot * data.scale, weight: wj, "weight-js": c.masked ? 0 : c.soft[o.k],
      unscaled: c.masked ? 0 : c.unscaled[o.k], "map-weight": mapWeight(t, o.kind, o.layer, h, o.q, o.k), "cell-weight": wj };
    E.mean.hidden = o.head !== "mean";
    if (o.head === "mean") {
      let sum = 0; for (let x = 0; x < data.H; x++) sum += c.masked ? 0 : data.w[(x * data.Lq + o.q) * data.Lk + o.k];
      Object.assign(values, { "map-mean": mapWeight(t, o.kind, o.layer, "mean", o.q, o.k), "cell-mean": sum / data.H });
    }
    for (const [n, v] of Object.entries(values)) E.nums[n].textContent = f4(v);
    E.nums["sum-diff"].textContent = sci(c.sumDiff); E.softDiff.textContent = sci(c.softDiff);
    const peak = (ps) => `max ${f4(Math.max(...ps))}, entropy ${bits(ps).toFixed(2)} bits`;
    E.peak.textContent = `with √d_k: ${peak(c.weights)} · without: ${peak(c.unscaled)}`;
    E.readout.textContent = "";
    CELL.view = { h, c, data };
    // the chart is drawn while its canvas is out of the page: setting a connected canvas's font makes the
    // browser bring the page's styles up to date first
    const canvas = CELL.canvas || (CELL.canvas = document.createElement("canvas"));
    canvas.remove(); drawChart(canvas); E.box.insertBefore(canvas, E.readout);
    finish(el);
  }
  function finish(el) {
    CELL.drawn++; el.dataset.drawn = String(CELL.drawn); el.dataset.loads = String(CELL.loads);
    CELL.drawnAt = performance.now();
  }
  function chartSpec() {
    const t = R.trace(), o = CELL.open, { c, h, data } = CELL.view;
    const labels = Array.from({ length: c.n }, (_, m) => keyLabel(t, o.kind, m));
    return { title: `${L.KINDS[o.kind]} · layer ${o.layer + 1} · head ${h + 1} · query ${queryLabel(t, o.kind, o.q)}`,
      subtitle: `q·k over the ${c.n} keys it sees, ÷√${data.Dh}, softmax; highlighted: the clicked key`, labels, chosen: c.masked ? null : o.k,
      rows: [{ label: "q·k", values: c.dots, signed: true }, { label: "q·k / √d_k (same axis)", values: c.scaled, signed: true },
        { label: "softmax: the weights", values: c.weights }, { label: "softmax without ÷√d_k", values: c.unscaled }] };
  }
  function drawChart(canvas) {
    const el = panel(); if (!el || !CELL.view || !canvas) return;
    const inner = CELL.width || el.clientWidth - 16; // the panel's content box (16: its padding)
    const w = Math.floor(inner - 14); if (w <= 0) return; // 14: the figure's padding and border
    CELL.view.spec = chartSpec();
    CELL.view.regions = cellBars(new L.CanvasPainter(canvas), w, CELL.view.spec);
    CELL.view.w = w;
  }
  function barAt(e) {
    const v = CELL.view, canvas = e.target; if (!v || !v.regions || canvas.tagName !== "CANVAS") return null;
    const r = canvas.getBoundingClientRect(), g = v.regions[0], m = Math.floor((e.clientX - r.left - g.x) / g.cw);
    return m >= 0 && m < g.n ? m : null;
  }
  function onPanelClick(e) {
    const o = CELL.open; if (!o) return;
    if (e.target.closest("#rg-cell-close")) { close(); return; }
    if (e.target.closest("#rg-cell-json")) { exportJson(); return; }
    const f = e.target.dataset && e.target.dataset.export; if (f) { exportChart(f); return; }
    const m = barAt(e); if (m != null && m !== o.k) { o.k = m; draw(); writeHash(); } // a bar opens that key's cell
  }
  document.addEventListener("mousemove", (e) => {
    if (!e.target.closest || !e.target.closest("#rg-cell-fig canvas")) return;
    const m = barAt(e), v = CELL.view, out = document.getElementById("rg-cell-readout"); if (!out || m == null) return;
    out.textContent = `key ${keyLabel(R.trace(), CELL.open.kind, m)}: q·k ${f4(v.c.dots[m])} · ÷√d_k ${f4(v.c.scaled[m])} · weight ${f4(v.c.weights[m])} · without scaling ${f4(v.c.unscaled[m])} (click: open this key)`;
  });
  function close() {
    CELL.open = null; CELL.view = null; CELL.built = null; CELL.els = null;
    const el = panel(); if (el) { el.hidden = true; el.dataset.state = "closed"; el.innerHTML = ""; }
    writeHash();
  }

  // --- exports ----------------------------------------------------------------------------------------------
  function fileName(ext) {
    const o = CELL.open, h = CELL.view.h;
    return `${L.baseName(R.trace())}-cell-${o.kind}-layer${o.layer + 1}-head${h + 1}-q${o.q + 1}-k${o.k + 1}.${ext}`;
  }
  function exportChart(format) {
    if (!CELL.view || !CELL.view.spec) return;
    const { spec, w } = CELL.view;
    if (format === "svg") { const p = new L.SvgPainter(); cellBars(p, w, spec); L.download(fileName("svg"), new Blob([p.toString()], { type: "image/svg+xml" })); return; }
    const canvas = document.createElement("canvas"); cellBars(new L.CanvasPainter(canvas, 2), w, spec);
    canvas.toBlob((b) => L.download(fileName("png"), b), "image/png");
  }
  function exportJson() {
    const t = R.trace(), o = CELL.open, { c, h, data } = CELL.view;
    const out = { what: "attention_cell", model: t.model || "", source_text: t.source_text, translation: t.translation,
      kind: SERVER_KIND[o.kind], layer: o.layer + 1, head: h + 1, query: { index: o.q + 1, piece: queryLabel(t, o.kind, o.q) },
      key: { index: o.k + 1, piece: keyLabel(t, o.kind, o.k), masked: c.masked }, d_head: data.Dh, scale: data.scale,
      q: c.q, k: c.k, v: c.v, keys: Array.from({ length: c.n }, (_, m) => keyLabel(t, o.kind, m)),
      dots: c.dots, scaled: c.scaled, weights: c.weights, softmax_recomputed: c.soft, softmax_unscaled: c.unscaled,
      weighted_sum: c.sum, head_output: c.out, max_abs_diff_sum_vs_output: c.sumDiff,
      map_weight: mapWeight(t, o.kind, o.layer, h, o.q, o.k), cell_weight: c.masked ? 0 : c.weights[o.k] };
    L.download(fileName("json"), new Blob([JSON.stringify(out)], { type: "application/json" }));
  }

  // --- opening a cell, the server data and the address --------------------------------------------------------
  /* Opens (kind, layer, head, q, k) of the current trace: drawn at once from the Map, else after one request. */
  function openCell(kind, layer, head, q, k, picked) {
    const t = R.trace(); if (!t || !(kind in SERVER_KIND)) return;
    CELL.open = { kind, layer, head, q, k, pick: head === "mean" ? 0 : head, picked: !!picked };
    CELL.failed.delete(layerKey(kind, layer)); // a click asks again for a layer whose request failed
    fetchLayer(kind, layer);
    draw();
    writeHash();
  }
  /* Asks for one layer unless it is here, on its way or failed: from a click, or ahead of one. */
  function fetchLayer(kind, layer) {
    const key = layerKey(kind, layer);
    if (CELL.cache.has(key) || CELL.pending.has(key) || CELL.failed.has(key)) return;
    CELL.pending.add(key);
    if (!R.explain("attention_cell", { kind: SERVER_KIND[kind], layer: String(layer + 1) })) { CELL.pending.delete(key); CELL.failed.add(key); }
  }
  R.onCellClick((c) => { if (c && c.kind in SERVER_KIND) openCell(c.kind, c.layer, c.head, c.q, c.k, false); });
  // the layer under the pointer is fetched before the click: the click then opens it from the Map
  R.onMapApproach((c) => { if (R.trace() && c.kind in SERVER_KIND) fetchLayer(c.kind, c.layer); });
  R.onExplain("attention_cell", (data, err) => {
    const t = R.trace();
    if (err || !data || !data.q) {
      CELL.pending.forEach((key) => CELL.failed.add(key)); CELL.pending.clear();
      if (CELL.open) draw();
      return;
    }
    const req = data.request || {};
    if (!t || req.model !== (t.model || req.model) || String(req.generated) !== String(ids(t))) return; // an older trace's answer
    const key = layerKey(PAGE_KIND[data.kind], data.layer);
    CELL.pending.delete(key);
    CELL.cache.set(key, decode(data));
    CELL.loads++;
    const el = panel(); if (el) el.dataset.loads = String(CELL.loads);
    const o = CELL.open;
    if (o && layerKey(o.kind, o.layer) === key) draw();
  });
  R.onRender((t) => {
    const key = keyOf(t);
    if (key !== CELL.traceKey) { // a new translation: its own layers, and the panel closes unless the address opens one
      CELL.traceKey = key; CELL.cache.clear(); CELL.pending.clear(); CELL.failed.clear();
      const u = CELL.urlCell; CELL.urlCell = null; CELL.open = null; CELL.view = null; CELL.built = null; CELL.els = null;
      const el = panel(); if (el) { el.hidden = true; el.dataset.state = "closed"; el.innerHTML = ""; }
      if (u && valid(t, u)) openCell(u.kind, u.layer, u.head, u.q, u.k, u.head !== "mean");
      return;
    }
    const el = panel();
    if (el) el.hidden = !CELL.open || !(R.state.view === "step" || R.state.view === "attention");
  });
  function valid(t, u) {
    const nl = t.layers[u.kind === "encoder" ? "encoder" : "decoder"], a = t.att[u.kind], [, H, Q, K] = a.shape;
    return u.layer < nl && (u.head === "mean" || u.head < H) && u.q < Q && u.k < K;
  }
  function cellText() {
    const o = CELL.open; if (!o) return null;
    const head = o.head === "mean" && !o.picked ? "mean" : String(o.pick + 1);
    return [o.kind, o.layer + 1, head, o.q + 1, o.k + 1].join(":");
  }
  /* The address is written by regard.js on each render; a panel change between renders writes its key here,
     once the browser is idle: history.replaceState can take tens of ms, which a click need not wait for. */
  let hashTimer = null;
  function writeHash() {
    if (hashTimer != null) return;
    const idle = window.requestIdleCallback || ((fn) => setTimeout(fn, 0));
    hashTimer = idle(() => { hashTimer = null; writeHashNow(); }, { timeout: 300 });
  }
  function writeHashNow() {
    const q = new URLSearchParams(location.hash.replace(/^#/, "")), v = cellText();
    if (!q.has("s")) return; // nothing translated in the address yet: regard.js writes it on its next render
    if (v) q.set("cell", v); else q.delete("cell");
    const hash = "#" + q.toString(); if (location.hash !== hash) history.replaceState(null, "", hash);
  }
  R.urlKeys((q) => { const v = cellText(); if (v) q.set("cell", v); },
    (q) => {
      const m = /^(cross|decoder|encoder):(\d+):(mean|\d+):(\d+):(\d+)$/.exec(q.get("cell") || "");
      CELL.urlCell = m && +m[2] > 0 && (m[3] === "mean" || +m[3] > 0) && +m[4] > 0 && +m[5] > 0
        ? { kind: m[1], layer: +m[2] - 1, head: m[3] === "mean" ? "mean" : +m[3] - 1, q: +m[4] - 1, k: +m[5] - 1 } : null;
    });
})();
