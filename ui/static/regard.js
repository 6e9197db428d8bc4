/* Regard's explorer: draws one translation's trace (schema regard-trace/1, see viz/trace_json.py) in the page.
 *
 * The server sends each trace once; stepping, switching view/layer/head, hovering and exporting all
 * happen here, so they never wait on the network. Figures are drawn through a small "painter" with two
 * back ends (canvas on screen, SVG for export), so one drawing function serves both.
 * To add a panel: write a function (trace, state) -> figure spec, and list it in VIEWS.
 */
(function () {
  "use strict";
  if (window.regard && window.regard.version) return;
  const R = (window.regard = { version: 1 });

  const C = { ink: "#1e293b", text: "#334155", muted: "#64748b", grid: "#e2e8f0", accent: "#4f46e5",
    soft: "#a5b4fc", hi: "#f59e0b", second: "#0d9488", link: "#db2777", bg: "#ffffff" };
  const FONT = "Inter, ui-sans-serif, system-ui, -apple-system, Segoe UI, Roboto, sans-serif";
  const { LUT, colour, bytes, decodeArray, f32, headMap } = window.regardTrace; // static/trace.js
  const HEAD_MEAN = "mean", HEAD_GRID = "grid";
  const KINDS = { cross: "Cross-attention", decoder: "Decoder self-attention", encoder: "Encoder self-attention" };

  // --- state ------------------------------------------------------------------------------------------------
  const S = { trace: null, raw: null, step: 0, view: "step", kind: "cross", layer: -1, head: HEAD_MEAN,
    scale: "fixed", hover: null, pinned: {}, timer: null, runs: null, compare: null, pendingUrl: null };
  R.state = S;
  const cache = new Map(); // "kind|layer|head" -> Float32Array of the (Q, K) map

  // --- decoding the trace ---------------------------------------------------------------------------------------
  function prepare(raw) {
    const t = Object.assign({}, raw);
    t.att = {};
    for (const k of Object.keys(raw.attention)) t.att[k] = decodeArray(raw.attention[k]);
    t.generated = raw.steps.map((s) => s.piece);
    return t;
  }
  /* One (Q, K) map of a kind/layer/head ("mean" averages the heads) as floats in [0, 1]. */
  function attMap(t, kind, layer, head) {
    const key = kind + "|" + layer + "|" + head;
    if (t === S.trace && cache.has(key)) return cache.get(key);
    const out = headMap(t.att[kind], [layer], head); // (Q, K)
    if (t === S.trace) cache.set(key, out);
    return out;
  }

  // --- painters: one drawing API, two back ends -----------------------------------------------------------------
  const measureCtx = document.createElement("canvas").getContext("2d");
  function textWidth(s, size, weight) { measureCtx.font = (weight || 400) + " " + size + "px " + FONT; return measureCtx.measureText(s).width; }
  class CanvasPainter {
    constructor(canvas, ratio) { this.canvas = canvas; this.ratio = ratio || window.devicePixelRatio || 1; }
    size(w, h) {
      const c = this.canvas, r = this.ratio;
      if (c.width !== Math.round(w * r) || c.height !== Math.round(h * r)) { c.width = Math.round(w * r); c.height = Math.round(h * r); }
      c.style.width = w + "px"; c.style.height = h + "px";
      this.g = c.getContext("2d"); this.g.setTransform(r, 0, 0, r, 0, 0);
      this.g.fillStyle = C.bg; this.g.fillRect(0, 0, w, h);
    }
    rect(x, y, w, h, fill) { this.g.fillStyle = fill; this.g.fillRect(x, y, w, h); }
    frame(x, y, w, h, color, width) { const g = this.g; g.strokeStyle = color; g.lineWidth = width; g.strokeRect(x, y, w, h); }
    text(s, x, y, o) {
      const g = this.g; o = o || {};
      g.save(); g.font = (o.weight || 400) + " " + (o.size || 11) + "px " + FONT; g.fillStyle = o.color || C.text;
      g.textAlign = o.align || "left"; g.textBaseline = o.baseline || "middle";
      g.translate(x, y); if (o.rotate) g.rotate((o.rotate * Math.PI) / 180); g.fillText(s, 0, 0); g.restore();
    }
    line(pts, color, width, dash) {
      const g = this.g; if (pts.length < 2) return;
      g.save(); g.strokeStyle = color; g.lineWidth = width || 1.5; g.setLineDash(dash ? [4, 3] : []);
      g.beginPath(); g.moveTo(pts[0][0], pts[0][1]); for (const p of pts.slice(1)) g.lineTo(p[0], p[1]); g.stroke(); g.restore();
    }
    dot(x, y, r, fill, stroke) {
      const g = this.g; g.beginPath(); g.arc(x, y, r, 0, 2 * Math.PI);
      if (fill) { g.fillStyle = fill; g.fill(); } if (stroke) { g.strokeStyle = stroke; g.lineWidth = 2.5; g.stroke(); }
    }
  }
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  class SvgPainter {
    size(w, h) { this.w = w; this.h = h; this.parts = [`<rect width="${w}" height="${h}" fill="${C.bg}"/>`]; }
    rect(x, y, w, h, fill) { this.parts.push(`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${w.toFixed(1)}" height="${h.toFixed(1)}" fill="${fill}"/>`); }
    frame(x, y, w, h, color, width) { this.parts.push(`<rect x="${x}" y="${y}" width="${w}" height="${h}" fill="none" stroke="${color}" stroke-width="${width}"/>`); }
    text(s, x, y, o) {
      o = o || {};
      const anchor = { left: "start", center: "middle", right: "end" }[o.align || "left"];
      const base = { middle: "central", top: "hanging", bottom: "alphabetic", alphabetic: "alphabetic" }[o.baseline || "middle"];
      const rot = o.rotate ? ` transform="rotate(${o.rotate} ${x} ${y})"` : "";
      this.parts.push(`<text x="${x}" y="${y}" font-size="${o.size || 11}" font-weight="${o.weight || 400}" fill="${o.color || C.text}" text-anchor="${anchor}" dominant-baseline="${base}"${rot}>${esc(s)}</text>`);
    }
    line(pts, color, width, dash) {
      if (pts.length < 2) return;
      this.parts.push(`<polyline fill="none" stroke="${color}" stroke-width="${width || 1.5}"${dash ? ' stroke-dasharray="4 3"' : ""} points="${pts.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ")}"/>`);
    }
    dot(x, y, r, fill, stroke) { this.parts.push(`<circle cx="${x}" cy="${y}" r="${r}" fill="${fill || "none"}"${stroke ? ` stroke="${stroke}" stroke-width="2.5"` : ""}/>`); }
    toString() { return `<svg xmlns="http://www.w3.org/2000/svg" width="${this.w}" height="${this.h}" font-family="${FONT}">${this.parts.join("")}</svg>`; }
  }

  // --- figures: (painter, width, spec) -> hit regions -----------------------------------------------------------
  const clip = (s, n) => (s.length > n ? s.slice(0, n - 1) + "…" : s);
  /* ``s`` shortened with … until it is at most ``room`` px wide in that font */
  function fit(s, room, size, weight) { let n = s.length; while (n > 8 && textWidth(clip(s, n), size, weight) > room) n--; return clip(s, n); }
  function title(p, spec, w) {
    p.text(fit(spec.title, w - 92, 13, 600), 4, 12, { size: 13, weight: 600, color: C.ink }); // 92 px: the PNG/SVG buttons
    if (spec.subtitle) p.text(clip(spec.subtitle, Math.max(20, Math.floor(w / 6))), 4, 30, { size: 11, color: C.muted });
  }
  function labelEvery(n, cell, font) { return Math.max(1, Math.ceil((font + 2) / Math.max(cell, 0.1))); }

  /* One attention map. spec: {title, subtitle, rows, cols, values (Q*K), vmax, cur, dimAfter, hiRow, hiCol, pin}. */
  function heatmapLayout(spec, w, compact) {
    const nq = spec.rows.length, nk = spec.cols.length, font = nq > 30 || nk > 30 ? 10 : 11;
    const rowLab = Math.min(compact ? 70 : 150, 8 + Math.max(...spec.rows.map((s) => textWidth(s, font))));
    const colLabW = Math.min(compact ? 60 : 110, 6 + Math.max(...spec.cols.map((s) => textWidth(s, font))));
    const top = compact ? 22 : spec.subtitle ? 44 : 28, bar = compact ? 0 : 44;
    const avail = Math.max(60, w - rowLab - bar - 8);
    const cw = Math.max(3, Math.min(compact ? 22 : 44, avail / nk));
    const ch = Math.max(compact ? 4 : 12, Math.min(compact ? 18 : 30, compact ? cw : Math.max(cw * 0.8, 560 / Math.max(nq, 1) > 30 ? 30 : 560 / Math.max(nq, 1))));
    const vertical = cw < colLabW || nk > 12;
    const bottom = (vertical ? colLabW : 16) + 6;
    return { nq, nk, font, rowLab, top, cw, ch, vertical, x0: rowLab, y0: top, h: top + nq * ch + bottom + 4, bar };
  }
  function drawHeatmap(p, w, spec, ox, oy, compact) {
    const L = heatmapLayout(spec, w, compact), { nq, nk, cw, ch, font } = L;
    const x0 = ox + L.x0, y0 = oy + L.y0, vmax = spec.vmax || 1;
    if (!compact) title(p, spec, w); else p.text(spec.title, x0, oy + 10, { size: 11, color: C.muted });
    for (let q = 0; q < nq; q++) {
      for (let k = 0; k < nk; k++) {
        const masked = spec.causal && k > q;
        p.rect(x0 + k * cw, y0 + q * ch, Math.max(cw - (cw > 6 ? 1 : 0), 1), Math.max(ch - (ch > 6 ? 1 : 0), 1),
          masked ? "#f8fafc" : colour(spec.values[q * nk + k] / vmax));
      }
      if (spec.dimAfter != null && q > spec.dimAfter) p.rect(x0, y0 + q * ch, nk * cw, ch, "rgba(255,255,255,0.72)");
    }
    const rs = labelEvery(nq, ch, font), cs = labelEvery(nk, cw, font);
    const linkRow = spec.hiRow, linkCol = spec.hiCol;
    for (let q = 0; q < nq; q++) {
      const on = q === spec.cur || q === linkRow;
      if (q % rs && !on) continue;
      if (compact && L.rowLab < 20) break;
      p.text(clip(spec.rows[q], compact ? 9 : 22), x0 - 4, y0 + q * ch + ch / 2,
        { size: font, align: "right", color: q === linkRow ? C.link : q === spec.cur ? C.ink : C.text, weight: on ? 700 : 400 });
    }
    for (let k = 0; k < nk; k++) {
      const on = k === linkCol;
      if (k % cs && !on) continue;
      const x = x0 + k * cw + cw / 2, y = y0 + nq * ch + 4;
      const o = { size: font, color: on ? C.link : C.text, weight: on ? 700 : 400 };
      if (L.vertical) p.text(clip(spec.cols[k], 16), x, y, Object.assign(o, { rotate: -90, align: "right" }));
      else p.text(clip(spec.cols[k], 12), x, y + 6, Object.assign(o, { align: "center" }));
    }
    if (linkRow != null && linkRow < nq) p.frame(x0 - 1, y0 + linkRow * ch, nk * cw + 1, ch, C.link, 1.5);
    if (linkCol != null && linkCol < nk) p.frame(x0 + linkCol * cw, y0 - 1, cw, nq * ch + 1, C.link, 1.5);
    if (spec.cur != null && spec.cur < nq) p.frame(x0 - 1.5, y0 + spec.cur * ch - 0.5, nk * cw + 2, ch + 1, C.hi, 2.5);
    if (spec.pin) p.frame(x0 + spec.pin[1] * cw, y0 + spec.pin[0] * ch, cw, ch, C.ink, 2);
    if (!compact) colourbar(p, x0 + nk * cw + 14, y0, Math.min(nq * ch, 220), vmax);
    return { region: { x: x0, y: y0, cw, ch, nq, nk, spec }, height: L.h };
  }
  function colourbar(p, x, y, h, vmax) {
    const n = 24;
    for (let i = 0; i < n; i++) p.rect(x, y + (h * i) / n, 10, h / n + 0.5, colour(1 - i / (n - 1)));
    p.text(vmax.toFixed(vmax < 0.1 ? 3 : 2), x + 13, y + 4, { size: 10, color: C.muted });
    p.text("0", x + 13, y + h - 4, { size: 10, color: C.muted });
  }
  function heatmapFigure(p, w, spec) {
    const L = heatmapLayout(spec, w, false);
    p.size(w, L.h);
    return [drawHeatmap(p, w, spec, 0, 0, false).region];
  }
  /* All heads of one layer as small multiples; a click on one opens it large. spec.panels: heatmap specs. */
  function gridFigure(p, w, spec) {
    const cols = w < 520 ? 2 : Math.min(4, spec.panels.length), pw = Math.floor((w - 4) / cols);
    const heights = spec.panels.map((s) => heatmapLayout(s, pw, true).h), ph = Math.max(...heights);
    const rows = Math.ceil(spec.panels.length / cols), top = 44;
    p.size(w, top + rows * ph);
    title(p, spec, w);
    const regions = [];
    spec.panels.forEach((s, i) => {
      const r = drawHeatmap(p, pw, s, (i % cols) * pw, top + Math.floor(i / cols) * ph, true).region;
      r.head = i; regions.push(r);
    });
    return regions;
  }
  /* Horizontal bars on a fixed 0–100 % axis. spec: {title, subtitle, labels, values, chosen, rest} */
  function barsFigure(p, w, spec) {
    const n = spec.labels.length, lab = Math.min(150, 10 + Math.max(...spec.labels.map((s) => textWidth(s, 12)))), bh = 19, top = 46;
    const h = top + n * bh + 30;
    p.size(w, h);
    title(p, spec, w);
    const x0 = lab, span = Math.max(60, w - lab - 60);
    for (const t of [0, 0.25, 0.5, 0.75, 1]) {
      p.rect(x0 + t * span, top - 4, 1, n * bh + 4, C.grid);
      p.text(Math.round(t * 100) + "%", x0 + t * span, top + n * bh + 12, { size: 10, color: C.muted, align: "center" });
    }
    spec.labels.forEach((label, i) => {
      const y = top + i * bh, v = spec.values[i], rest = i === n - 1 && spec.rest;
      p.text(clip(label, 20), x0 - 6, y + bh / 2, { size: 12, align: "right", color: rest ? C.muted : C.ink, weight: i === spec.chosen ? 700 : 400 });
      p.rect(x0, y + 3, Math.max(1, v * span), bh - 6, i === spec.chosen ? C.hi : rest ? "#cbd5e1" : C.soft);
      p.text((v >= 0.01 ? (v * 100).toFixed(1) : (v * 100).toFixed(2)) + "%", x0 + v * span + 4, y + bh / 2, { size: 11, color: C.muted });
    });
    return [];
  }
  /* Lines over steps. spec: {title, subtitle, series: [{name, ys, color, dash}], marker, yUnit, xTitle} */
  function linesFigure(p, w, spec) {
    const h = 300, top = 56, left = 56, bottom = 40, right = 12;
    p.size(w, h);
    title(p, spec, w);
    const n = Math.max(1, ...spec.series.map((s) => s.ys.length));
    const ymax = Math.max(1e-9, ...spec.series.flatMap((s) => s.ys)) * 1.1;
    const X = (i) => left + (n === 1 ? 0.5 : i / (n - 1)) * (w - left - right), Y = (v) => top + (1 - v / ymax) * (h - top - bottom);
    for (let t = 0; t <= 4; t++) {
      const v = (ymax * t) / 4;
      p.rect(left, Y(v), w - left - right, 1, C.grid);
      p.text(spec.fmt ? spec.fmt(v) : v.toFixed(1), left - 6, Y(v), { size: 10, align: "right", color: C.muted });
    }
    const every = Math.ceil(n / 12);
    for (let i = 0; i < n; i += every) p.text(String(i + 1), X(i), h - bottom + 12, { size: 10, align: "center", color: C.muted });
    p.text(spec.xTitle || "decoding step", left + (w - left - right) / 2, h - 10, { size: 11, align: "center", color: C.muted });
    let lx = left;
    spec.series.forEach((s) => {
      p.line(s.ys.map((v, i) => [X(i), Y(v)]), s.color, 2, s.dash);
      if (s.ys.length <= 60) s.ys.forEach((v, i) => p.dot(X(i), Y(v), 2.5, s.color));
      p.rect(lx, 40, 14, 3, s.color); p.text(s.name, lx + 18, 41, { size: 10, color: C.text }); lx += 26 + textWidth(s.name, 10);
    });
    if (spec.marker) p.dot(X(spec.marker[0]), Y(spec.marker[1]), 7, null, C.hi);
    return [];
  }
  const DRAW = { heatmap: heatmapFigure, grid: gridFigure, bars: barsFigure, lines: linesFigure };

  // --- what each view shows ---------------------------------------------------------------------------------
  const pct = (v) => (v * 100).toFixed(v >= 0.01 ? 1 : 2) + "%";
  const bytesText = (n) => { const u = ["B", "KiB", "MiB", "GiB"]; let i = 0; while (n >= 1024 && i < 3) { n /= 1024; i++; } return n.toFixed(i ? 1 : 0) + " " + u[i]; };
  const weightsOf = (t) => t.weights || "fp32";
  const COMPARE_CACHE = "Compare KV cache on vs off", COMPARE_WEIGHTS = "Compare fp32 vs int8 speed";
  const headName = (h) => (h === HEAD_MEAN ? "mean over heads" : h === HEAD_GRID ? "all heads" : "head " + (h + 1));
  /* Row labels of decoder maps: the query at step t reads target_pieces[t] and emits steps[t].piece. */
  const stepRows = (t) => t.steps.map((s, i) => t.target_pieces[i] + " → " + s.piece);
  function layerOf(t, kind) { const n = t.layers[kind === "encoder" ? "encoder" : "decoder"]; return S.layer < 0 || S.layer >= n ? n - 1 : S.layer; }
  function attentionSpec(t, kind, id, extra) {
    const layer = layerOf(t, kind), a = t.att[kind], [, H, Q, K] = a.shape;
    const rows = kind === "encoder" ? t.source_pieces : stepRows(t);
    const cols = kind === "cross" || kind === "encoder" ? t.source_pieces : t.target_pieces.slice(0, Q);
    const cur = kind === "encoder" ? null : S.step;
    const hv = S.hover || {};
    const link = kind === "encoder" ? { hiRow: hv.src, hiCol: hv.src } : kind === "cross" ? { hiRow: hv.tgt, hiCol: hv.src } : { hiRow: hv.tgt, hiCol: hv.tgt };
    const base = (values, head) => Object.assign({ rows, cols, values, cur, dimAfter: cur, causal: kind === "decoder",
      vmax: S.scale === "fixed" ? 1 : Math.max(1e-6, ...values), pin: S.pinned[id] && S.pinned[id].head === head ? S.pinned[id].cell : null }, link);
    const titleText = KINDS[kind] + " · layer " + (layer + 1) + " · " + headName(S.head);
    const sub = (extra || "") + (S.scale === "fixed" ? "colour: fixed 0–1 scale" : "colour: scaled to this figure's maximum");
    if (S.head === HEAD_GRID) {
      const panels = Array.from({ length: H }, (_, h) => Object.assign(base(attMap(t, kind, layer, h), h), { title: "head " + (h + 1) }));
      return { type: "grid", spec: { title: titleText + " (click a head to enlarge)", subtitle: sub, panels }, meta: { kind, layer } };
    }
    const head = S.head === HEAD_MEAN ? HEAD_MEAN : Math.min(S.head, H - 1);
    return { type: "heatmap", spec: Object.assign(base(attMap(t, kind, layer, head), head), { title: titleText, subtitle: sub }), meta: { kind, layer, head } };
  }
  function topkSpec(t) {
    const s = t.steps[S.step], labels = s.top_k.map((c) => c.piece).concat(["rest of vocabulary"]);
    const values = s.top_k.map((c) => c.prob).concat([s.rest_prob]);
    const chosen = s.top_k.findIndex((c) => c.token_id === s.token_id);
    const ent = (s.entropy_exact ? "entropy " : "entropy ≥ ") + s.entropy_bits.toFixed(2) + " bits";
    return { type: "bars", spec: { title: "Step " + (S.step + 1) + ": next-token probabilities", subtitle: "top " + s.top_k.length + " + the rest · " + ent + " · chosen " + pct(s.prob), labels, values, chosen, rest: true } };
  }
  // a micro-batched run's latencies are the whole batch's steps: say so wherever a latency is shown
  function batchText(t) { return t.batch_size > 1 ? " · decoded in a batch of " + t.batch_size : ""; }
  function latencySpec(t) {
    const series = [{ name: "this run", ys: t.steps.map((s) => s.latency_ms), color: C.accent }];
    (S.runs || []).forEach((r, i) => series.push({ name: r.label, ys: r.step_ms, color: [C.second, C.link][i % 2], dash: true }));
    const total = t.total_ms.toFixed(1), warm = weightsOf(t) + " weights · " + (t.warm ? "warm run (the model had run before)" : "COLD run: first in this process, includes one-off start-up costs");
    return { type: "lines", spec: { title: "Latency per decoding step — total " + total + " ms", subtitle: warm + batchText(t), series, marker: [S.step, t.steps[S.step].latency_ms], fmt: (v) => v.toFixed(1) + " ms" } };
  }
  function kvSpec(t) {
    const series = [{ name: "measured (self + cross)", ys: t.steps.map((s) => s.kv_self_bytes + s.kv_cross_bytes), color: C.accent }];
    if (t.kv_formula) series.push({ name: "formula", ys: t.kv_formula.self.map((v, i) => v + t.kv_formula.cross[i]), color: C.second, dash: true });
    const s = t.steps[S.step];
    return { type: "lines", spec: { title: t.use_cache ? "KV cache after each step" : "KV cache off: nothing stored (line: what a cache would hold)", subtitle: t.dtype + (t.beam_size > 1 ? ", all " + t.beam_size + " beams" : ""), series, marker: [S.step, s.kv_self_bytes + s.kv_cross_bytes], fmt: bytesText } };
  }
  function stepCaption(t) {
    const i = S.step, s = t.steps[i];
    return `<b>Step ${i + 1} of ${t.steps.length}.</b> The decoder reads <span class="rg-q">${esc(t.target_pieces[i])}</span> ` +
      `(input position ${i + 1}, the token emitted one step earlier${i === 0 ? ": the start marker" : ""}) and emits ` +
      `<span class="rg-q rg-out">${esc(s.piece)}</span> with p = ${pct(s.prob)}. ${S.view === "step" ? "In both attention maps below" : "In the map below"}, row ${i + 1} is this query: ` +
      `“input → output”, so the output of row t is the input of row t+1.` + bestHeadNote(t);
  }
  function bestHeadNote(t) {
    const b = t.best_head;
    if (!b || layerOf(t, "cross") !== b.layer || S.head !== b.head) return "";
    return `<br><span id="rg-best-head">Showing layer ${b.layer + 1}, head ${b.head + 1}: the head whose cross-attention best matches ` +
      `word alignments (F1 ${b.f1.toFixed(2)} against ${esc(b.aligner || "a reference aligner")}${b.pairs ? " on " + b.pairs + " sentence pairs" : ""}). Pick another layer or head above.</span>`;
  }
  const VIEWS = {
    step: { label: "Step through", figures: (t) => [["cross", attentionSpec(t, "cross", "cross")], ["topk", topkSpec(t)], ["self", attentionSpec(t, "decoder", "self")]] },
    attention: { label: "Attention", figures: (t) => [["attention", attentionSpec(t, S.kind, "attention")]] },
    cost: { label: "Latency & memory", figures: (t) => [["latency", latencySpec(t)], ["kv", kvSpec(t)]] },
  };

  // --- the DOM around the figures ----------------------------------------------------------------------------
  let root = null;
  const viewButtons = () => Object.keys(VIEWS).map((v) => `<button data-view="${v}">${esc(VIEWS[v].label)}</button>`).join("");
  const $ = (sel) => root.querySelector(sel);
  function skeleton() {
    root.innerHTML = `
      <div class="rg-notice rg-stale-note" id="rg-stale" hidden></div>
      <div class="rg-notices" id="rg-notices"></div>
      <div id="rg-stepbar" class="rg-stepbar">
        <div class="rg-steprow">
          <button id="rg-prev" title="Previous step (←)">◀</button>
          <input id="rg-step" type="range" min="1" max="1" value="1" aria-label="Decoding step">
          <button id="rg-next" title="Next step (→)">▶</button>
          <button id="rg-play" class="rg-primary">▶ Play</button>
          <span id="rg-step-info" class="rg-step-info"></span>
        </div>
        <div class="rg-viewrow">
          <span class="rg-seg" id="rg-views">${viewButtons()}</span>
          <label class="rg-kind">map <select id="rg-kind">${Object.keys(KINDS).map((k) => `<option value="${k}">${KINDS[k]}</option>`).join("")}</select></label>
          <label>layer <select id="rg-layer"></select></label>
          <label>head <select id="rg-head"></select></label>
          <label>colour <select id="rg-scale"><option value="fixed">fixed 0–1</option><option value="auto">per figure</option></select></label>
        </div>
      </div>
      <div class="rg-chips-box"><div class="rg-pieces-label">source pieces <span class="rg-count" id="rg-src-count"></span>
        <button id="rg-export-json" class="rg-json" title="Download this translation's whole trace as JSON (schema regard-trace/1)">⤓ trace JSON</button></div><div class="rg-chips" id="rg-src-chips"></div>
        <div class="rg-pieces-label">generated pieces <span class="rg-count" id="rg-tgt-count"></span></div><div class="rg-chips" id="rg-tgt-chips"></div></div>
      <div id="rg-caption" class="rg-caption"></div>
      <div id="rg-figures" class="rg-figures"></div>
      <div id="rg-stats" class="rg-stats"></div>
      <div id="rg-tip" class="rg-tip" hidden></div>`;
    $("#rg-prev").onclick = () => go(S.step - 1);
    $("#rg-next").onclick = () => go(S.step + 1);
    $("#rg-step").oninput = (e) => go(+e.target.value - 1);
    $("#rg-play").onclick = togglePlay;
    $("#rg-views").onclick = (e) => { const v = e.target.dataset.view; if (v) { S.view = v; render(); } };
    $("#rg-kind").onchange = (e) => { S.kind = e.target.value; S.view = "attention"; S.layer = -1; render(); };
    $("#rg-layer").onchange = (e) => { S.layer = +e.target.value; S.chosen = true; render(); };
    $("#rg-head").onchange = (e) => { const v = e.target.value; S.head = v === HEAD_MEAN || v === HEAD_GRID ? v : +v; S.chosen = true; render(); };
    $("#rg-scale").onchange = (e) => { S.scale = e.target.value; render(); };
    $("#rg-export-json").onclick = () => download(baseName(S.trace) + ".json", new Blob([JSON.stringify(S.raw)], { type: "application/json" }));
    for (const id of ["#rg-src-chips", "#rg-tgt-chips"]) {
      const box = $(id);
      box.onmouseover = (e) => { const c = e.target.closest(".rg-chip"); if (c) { S.hover = c.dataset.src != null ? { src: +c.dataset.src } : { tgt: +c.dataset.tgt }; render(); } };
      box.onmouseleave = () => { S.hover = null; render(); };
      box.onclick = (e) => { const c = e.target.closest(".rg-chip"); if (c && c.dataset.tgt != null) go(+c.dataset.tgt); };
    }
    new ResizeObserver(() => { if (S.trace) render(); }).observe($("#rg-figures"));
  }
  function chips(pieces, attr, forced) {
    return pieces.map((p, i) => {
      const special = /^<\/?(s|pad|unk)>$/.test(p) ? " rg-special" : "", ws = p.startsWith("▁");
      const imposed = forced && forced[i] ? " rg-forced" : ""; // a What if trace: this token was imposed
      return `<span class="rg-chip${special}${imposed}" data-${attr}="${i}" title="#${i + 1}: ${esc(p)}${imposed ? " (forced)" : ""}">${ws ? '<span class="rg-ws">▁</span>' + esc(p.slice(1)) : esc(p)}</span>`;
    }).join("");
  }
  /* Chips are built once per trace (see load); stepping and hovering only toggle classes, so the
     element under the pointer stays put. */
  function markChips(box, current, hover) {
    box.querySelectorAll(".rg-chip").forEach((c, i) => {
      c.classList.toggle("rg-current", i === current);
      c.classList.toggle("rg-later", current != null && i > current);
      c.classList.toggle("rg-linked", i === hover);
    });
  }
  function selectOptions(sel, options, value) {
    const html = options.map(([v, l]) => `<option value="${v}">${esc(l)}</option>`).join("");
    if (sel.dataset.opts !== html) { sel.innerHTML = html; sel.dataset.opts = html; }
    sel.value = String(value);
  }
  function figureBox(id) {
    let box = root.querySelector(`figure[data-fig="${id}"]`);
    if (!box) {
      box = document.createElement("figure"); box.className = "rg-fig"; box.dataset.fig = id; box.id = "rg-fig-" + id;
      box.innerHTML = `<div class="rg-fig-tools"><button data-export="png" title="Download as PNG">PNG</button><button data-export="svg" title="Download as SVG">SVG</button></div><canvas></canvas><div class="rg-readout"></div>`;
      box.querySelector(".rg-fig-tools").onclick = (e) => { const f = e.target.dataset.export; if (f) exportFigure(id, f); };
      const canvas = box.querySelector("canvas");
      canvas.onmousemove = (e) => { approachFigure(box); hoverCell(box, e); };
      canvas.onmouseleave = () => { $("#rg-tip").hidden = true; if (S.hover && S.hover.cell) { S.hover = null; render(); } };
      canvas.onclick = (e) => clickCell(box, e);
      // a pointer on a map announces a likely click: a mouse moves over it first (the map under it may change
      // while it rests, so every move counts), a finger's pointerdown comes before its click
      canvas.onpointerdown = () => approachFigure(box);
    }
    return box;
  }

  // --- rendering -------------------------------------------------------------------------------------------
  let figures = {}; // id -> {type, spec, meta, regions}
  function render() {
    const t = S.trace; if (!t || !root) return;
    const t0 = performance.now();
    const n = t.steps.length;
    S.step = Math.max(0, Math.min(S.step, n - 1));
    markChips($("#rg-src-chips"), null, S.hover && S.hover.src);
    markChips($("#rg-tgt-chips"), S.step, S.hover && S.hover.tgt);
    const slider = $("#rg-step"); slider.max = Math.max(n, 1); slider.value = S.step + 1; slider.disabled = n < 2;
    const s = t.steps[S.step];
    $("#rg-step-info").innerHTML = `step <b>${S.step + 1} / ${n}</b> · <span class="rg-q">${esc(s.piece)}</span> ${pct(s.prob)} · ${s.latency_ms.toFixed(2)} ms${batchText(t)}` +
      ` · <span id="rg-weights-ran" class="rg-weights-${esc(weightsOf(t))}">${esc(weightsOf(t))} weights</span>`;
    root.querySelectorAll("#rg-views button").forEach((b) => b.classList.toggle("rg-on", b.dataset.view === S.view));
    const kind = S.view === "attention" ? S.kind : "decoder", nl = t.layers[kind === "encoder" ? "encoder" : "decoder"];
    const view = VIEWS[S.view], maps = view.controls ? view.controls.includes("layer") : S.view !== "cost";
    $("#rg-kind").value = S.kind; $("#rg-kind").parentElement.style.display = S.view === "attention" ? "" : "none";
    for (const id of ["#rg-layer", "#rg-head", "#rg-scale"]) $(id).parentElement.style.display = maps ? "" : "none"; // no maps there
    selectOptions($("#rg-layer"), Array.from({ length: nl }, (_, i) => [i, String(i + 1)]), layerOf(t, kind));
    const heads = [[HEAD_MEAN, "mean"], [HEAD_GRID, "grid"]].concat(Array.from({ length: t.heads }, (_, h) => [h, String(h + 1)]));
    selectOptions($("#rg-head"), heads, S.head); $("#rg-scale").value = S.scale;
    $("#rg-caption").innerHTML = view.caption ? view.caption(t) : S.view === "step" ? stepCaption(t) : S.view === "attention" && S.kind !== "encoder" ? stepCaption(t) : "";
    if (view.onEnter) view.onEnter(t); // an extension asks the server for its data here (once per trace: it caches)
    const host = $("#rg-figures"), width = host.clientWidth;
    const wanted = VIEWS[S.view].figures(t), ids = new Set(wanted.map((f) => f[0]));
    host.querySelectorAll("figure.rg-fig").forEach((f) => { if (!ids.has(f.dataset.fig)) f.remove(); });
    figures = {};
    wanted.forEach(([id, fig]) => {
      const box = figureBox(id); if (box.parentElement !== host) host.appendChild(box);
      box.classList.toggle("rg-half", (id === "topk" || id === "self") && width > 640);
      figures[id] = fig;
      if (!width) return; // hidden: drawn when it gets a width (ResizeObserver)
      const w = Math.floor(box.clientWidth || width);
      fig.regions = DRAW[fig.type](new CanvasPainter(box.querySelector("canvas")), w, fig.spec);
    });
    stats(t);
    notices(t);
    renderListeners.forEach((fn) => fn(t));
    writeUrl();
    R.lastRenderMs = performance.now() - t0;
    root.dataset.step = String(S.step);
    root.dataset.rendered = String((+root.dataset.rendered || 0) + 1);
  }
  function stats(t) {
    const dec = t.steps.reduce((a, s) => a + s.latency_ms, 0), n = t.steps.length, last = t.steps[n - 1];
    const cards = [["model", t.model || "–"], ["decoding", (t.beam_size > 1 ? "beam " + t.beam_size : "greedy") + ", cache " + (t.use_cache ? "on" : "off") + ", " + weightsOf(t)],
      ["encoder", t.encode_ms.toFixed(1) + " ms"], ["decoder", dec.toFixed(1) + " ms · " + n + " steps"], ["per token", (dec / n).toFixed(2) + " ms"],
      ["run", t.warm ? "warm" : "cold start"], ["KV cache, last step", t.use_cache ? bytesText(last.kv_self_bytes + last.kv_cross_bytes) : "off"]];
    if (t.rss_bytes) cards.push(["process RSS", bytesText(t.rss_bytes)]);
    const by = t.weight_bytes_by_format || {};
    if (by.fp32 && by.int8) cards.push(["weights (this run: " + weightsOf(t) + ")", "fp32 " + bytesText(by.fp32) + " · int8 " + bytesText(by.int8) + " (" + (by.int8 / by.fp32).toFixed(2) + "×)"]);
    else if (t.weight_bytes) cards.push(["weights", bytesText(t.weight_bytes)]);
    (S.runs || []).forEach((r) => { const ms = r.step_ms.reduce((a, v) => a + v, 0); cards.push([r.label, r.total_ms.toFixed(1) + " ms · " + (ms / Math.max(1, r.step_ms.length)).toFixed(2) + " ms/token"]); });
    const buttons = [["rg-cache-compare", "#rg-cache-run", COMPARE_CACHE]].concat(by.int8 ? [["rg-weights-compare", "#rg-weights-run", COMPARE_WEIGHTS]] : []);
    $("#rg-stats").hidden = S.view !== "cost";
    $("#rg-stats").innerHTML = S.view !== "cost" ? "" : cards.map(([k, v]) => `<div class="rg-stat" data-stat="${esc(k)}"><div class="rg-stat-label">${esc(k)}</div><div class="rg-stat-value">${esc(v)}</div></div>`).join("") +
      buttons.map(([id, , label]) => `<div class="rg-stat"><button id="${id}">${label}</button></div>`).join("");
    for (const [id, target] of buttons) {
      const b = root.querySelector("#" + id);
      if (b) b.onclick = () => { const g = document.querySelector(target); if (g) { b.textContent = "running…"; (g.querySelector("button") || g).click(); } };
    }
  }
  function notices(t) {
    const out = (t.warnings || []).map((w) => `<div class="rg-notice rg-warn">⚠ ${esc(w)}</div>`);
    if (t.pieces) out.push(`<div class="rg-notice rg-warn" id="rg-pieces">The text (${t.input_text.length.toLocaleString("en")} characters) is more than the model reads at once, so it was translated in ${t.pieces.length} pieces cut at sentence ends, as the command line does; the English box holds all of them. The figures show piece 1: “${esc(clip(t.source_text, 80))}”.</div>`);
    if (t.stopped === "max_len") out.push(`<div class="rg-notice rg-warn" id="rg-maxlen">⚠ Decoding stopped at the length limit (${t.steps.length} tokens), not at the end-of-sentence token: the translation may be cut short. Raise “Max output tokens” (0 = automatic).</div>`);
    $("#rg-notices").innerHTML = out.join("");
  }

  // --- interaction ------------------------------------------------------------------------------------------
  function go(step) { if (!S.trace) return; S.step = Math.max(0, Math.min(step, S.trace.steps.length - 1)); render(); }
  function togglePlay() {
    const b = $("#rg-play");
    if (S.timer) { clearInterval(S.timer); S.timer = null; b.textContent = "▶ Play"; return; }
    if (S.step >= S.trace.steps.length - 1) S.step = 0;
    b.textContent = "‖ Pause"; render();
    S.timer = setInterval(() => { if (S.step >= S.trace.steps.length - 1) togglePlay(); else go(S.step + 1); }, 700);
  }
  function cellAt(box, e) {
    const fig = figures[box.dataset.fig]; if (!fig || !fig.regions) return null;
    const r = box.querySelector("canvas").getBoundingClientRect(), x = e.clientX - r.left, y = e.clientY - r.top;
    for (const g of fig.regions) {
      const k = Math.floor((x - g.x) / g.cw), q = Math.floor((y - g.y) / g.ch);
      if (k >= 0 && q >= 0 && k < g.nk && q < g.nq) return { g, q, k, x, y, fig };
    }
    return null;
  }
  function describe(c) {
    if (c.fig.describe) return c.fig.describe(c.q, c.k, c.g);
    const { g, q, k } = c, v = g.spec.values[q * g.nk + k];
    const kind = c.fig.meta.kind, query = kind === "encoder" ? "source " + g.spec.rows[q] : "step " + (q + 1) + " (" + g.spec.rows[q] + ")";
    const key = (kind === "decoder" ? "decoder input " : "source ") + g.spec.cols[k];
    const head = g.head != null ? "head " + (g.head + 1) : headName(c.fig.meta.head);
    return `${query} → ${key}: weight ${v.toFixed(3)} (layer ${c.fig.meta.layer + 1}, ${head})`;
  }
  function hoverCell(box, e) {
    const c = cellAt(box, e), tip = $("#rg-tip");
    if (!c) { tip.hidden = true; return; }
    tip.textContent = describe(c); tip.hidden = false;
    const rr = root.getBoundingClientRect();
    tip.style.left = Math.min(e.clientX - rr.left + 14, rr.width - 260) + "px"; tip.style.top = e.clientY - rr.top + 14 + "px";
  }
  function approachFigure(box) {
    const fig = figures[box.dataset.fig], m = fig && fig.meta; if (!m || !m.kind) return;
    approachListeners.forEach((fn) => fn({ kind: m.kind, layer: m.layer, head: m.head, figure: box.dataset.fig }));
  }
  function clickCell(box, e) {
    const c = cellAt(box, e); if (!c) return;
    if (c.g.head != null && S.head === HEAD_GRID) { S.head = c.g.head; render(); return; } // enlarge one head
    const id = box.dataset.fig;
    if (!c.fig.meta || !c.fig.meta.kind) { if (c.fig.onClick) c.fig.onClick(c.q, c.k, c.g); return; } // an extension's figure
    S.pinned[id] = { head: c.fig.meta.head, cell: [c.q, c.k] };
    if (c.fig.meta.kind !== "encoder") S.step = c.q;
    render();
    root.querySelector(`figure[data-fig="${id}"] .rg-readout`).textContent = "Selected: " + describe(c);
    const m = c.fig.meta;
    cellListeners.forEach((fn) => fn({ kind: m.kind, layer: m.layer, head: m.head, q: c.q, k: c.k, figure: id }));
  }
  document.addEventListener("keydown", (e) => {
    if (!S.trace || !root || e.target.closest("input, textarea, select, [contenteditable]")) return;
    const step = { ArrowRight: S.step + 1, ArrowLeft: S.step - 1, Home: 0, End: S.trace.steps.length - 1 }[e.key];
    if (step != null) { e.preventDefault(); go(step); }
  });

  // --- export ------------------------------------------------------------------------------------------------
  function download(name, blob) {
    const a = document.createElement("a"); a.href = URL.createObjectURL(blob); a.download = name;
    document.body.appendChild(a); a.click(); setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }
  /* What an exported file shows, in its name and in two caption lines above the figure: the sentence and its
     translation, then model, weights, step, layer and head. */
  const slug = (s, n) => String(s).normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, n).replace(/-+$/, "") || "x";
  const baseName = (t) => "regard-" + slug(t.model || "model", 24) + "-" + slug(t.source_text, 40);
  function exportAbout(id, fig) {
    const t = S.trace, m = fig.meta || {}, n = t.steps.length;
    const what = [KINDS[m.kind] || m.about || { topk: "next-token probabilities", latency: "latency per step", kv: "KV cache" }[id] || id, "model " + (t.model || "–"), weightsOf(t) + " weights", "step " + (S.step + 1) + " of " + n];
    if (m.layer != null) what.push("layer " + (m.layer + 1), m.head == null ? "all heads" : headName(m.head));
    const name = baseName(t) + "-" + id + "-step" + (S.step + 1) + (m.layer != null ? "-layer" + (m.layer + 1) + "-" + (m.head == null ? "grid" : m.head === HEAD_MEAN ? "mean" : "head" + (m.head + 1)) : "");
    return { lines: ["“" + t.source_text + "” → “" + t.translation + "”", what.join(" · ")], name };
  }
  const BAND = 38;
  function exportFigure(id, format) {
    const fig = figures[id], box = root.querySelector(`figure[data-fig="${id}"]`); if (!fig || !box) return;
    const w = Math.floor(box.clientWidth), about = exportAbout(id, fig), name = about.name + "." + format;
    const lines = about.lines.map((l, i) => clip(l, Math.floor(w / (i ? 6 : 6.5))));
    if (format === "svg") {
      const p = new SvgPainter(); DRAW[fig.type](p, w, fig.spec);
      const head = lines.map((l, i) => `<text x="4" y="${14 + i * 17}" font-size="${i ? 11 : 12}" font-weight="${i ? 400 : 600}" fill="${i ? C.muted : C.ink}">${esc(l)}</text>`).join("");
      const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${p.h + BAND}" font-family="${FONT}"><title>${esc(about.lines.join(" — "))}</title><rect width="${w}" height="${p.h + BAND}" fill="${C.bg}"/>${head}<g transform="translate(0 ${BAND})">${p.parts.join("")}</g></svg>`;
      download(name, new Blob([svg], { type: "image/svg+xml" })); return;
    }
    const r = 2, fig_c = document.createElement("canvas"); DRAW[fig.type](new CanvasPainter(fig_c, r), w, fig.spec);
    const out = document.createElement("canvas"); out.width = fig_c.width; out.height = fig_c.height + BAND * r;
    const p = new CanvasPainter(out, r); p.g = out.getContext("2d"); p.g.setTransform(r, 0, 0, r, 0, 0);
    p.rect(0, 0, w, BAND, C.bg);
    lines.forEach((l, i) => p.text(l, 4, 12 + i * 17, { size: i ? 11 : 12, weight: i ? 400 : 600, color: i ? C.muted : C.ink }));
    p.g.setTransform(1, 0, 0, 1, 0, 0); p.g.drawImage(fig_c, 0, BAND * r);
    out.toBlob((b) => download(name, b), "image/png");
  }

  // --- URL state: the view in the address, so a link or a reload opens it again ---------------------------------
  function writeUrl() {
    const t = S.trace; if (!t || S.pendingUrl) return;
    const q = new URLSearchParams({ s: inputText(t), decoding: t.beam_size > 1 ? "beam" : "greedy", beam: t.beam_size, lp: t.length_penalty ?? 1,
      max: t.max_len || 0, cache: t.use_cache ? 1 : 0, model: t.model || "", weights: weightsOf(t), step: S.step + 1, view: S.view, kind: S.kind,
      layer: layerOf(t, S.view === "attention" ? S.kind : "decoder") + 1, head: S.head === HEAD_MEAN || S.head === HEAD_GRID ? S.head : S.head + 1, scale: S.scale });
    urlWriters.forEach((fn) => fn(q));
    if (q.get("s").length > 2000) q.delete("s"); // a long text would make the address too long to send back
    const hash = "#" + q.toString();
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }
  function readView(hash) {
    const q = new URLSearchParams(String(hash || "").replace(/^[#?]/, ""));
    const int = (k) => { const v = q.get(k); return v != null && /^\d+$/.test(v) ? +v : null; };
    if (q.get("view") in VIEWS) S.view = q.get("view");
    if (q.get("kind") in KINDS) S.kind = q.get("kind");
    if (int("layer")) { S.layer = int("layer") - 1; S.chosen = true; }
    const h = q.get("head"); if (h === HEAD_MEAN || h === HEAD_GRID) S.head = h; else if (int("head")) S.head = int("head") - 1;
    if (h != null) S.chosen = true;
    if (q.get("scale") === "auto" || q.get("scale") === "fixed") S.scale = q.get("scale");
    if (int("step")) S.step = int("step") - 1;
    urlReaders.forEach((fn) => fn(q));
  }
  R.urlQuery = () => { S.pendingUrl = location.hash || ""; return S.pendingUrl; };

  // --- entry points (called by the Gradio events in ui/layout.py) ----------------------------------------------
  function mount() {
    const host = document.getElementById("rg-explorer");
    if (!host) return false;
    if (root !== host) { root = host; skeleton(); }
    return true;
  }
  function clearErrors() {
    document.querySelectorAll(".toast-body.error .toast-close, .toast-body.error button").forEach((b) => b.click());
  }
  // --- start-up and stale results -----------------------------------------------------------------------------
  let userRuns = 0, failedText = null;
  const sourceArea = () => document.querySelector("#rg-source textarea");
  const sourceText = () => { const a = sourceArea(); return a ? a.value : ""; };
  const inputText = (t) => (t.input_text != null ? t.input_text : t.source_text); // a long text: all its pieces
  /* The figures and the English are stale when the French box no longer holds the sentence they are for,
     or when the last translation failed. ``text``: the box's value if Gradio has not written it yet. */
  function markStale(text) {
    if (!root || !S.trace) return;
    const box = text != null ? text : sourceText(), edited = box.trim() !== String(inputText(S.trace)).trim();
    const why = failedText != null ? "The last translation failed (see the message):" : edited ? "The French was edited:" : null;
    root.classList.toggle("rg-stale", why != null);
    const english = document.querySelector("#rg-translation"); if (english) english.classList.toggle("rg-stale", why != null);
    const note = $("#rg-stale");
    note.hidden = why == null;
    if (why) note.innerHTML = `${why} what is shown is the translation of “${esc(clip(inputText(S.trace), 80))}”. Press Translate (or Enter) to update it.`;
  }
  // Translate and the examples start a translation: counted so that a late start-up never replaces it
  document.addEventListener("click", (e) => { if (e.target.closest && e.target.closest("#rg-translate, #rg-examples button")) userRuns++; }, true);
  document.addEventListener("input", (e) => { if (e.target.closest && e.target.closest("#rg-source")) markStale(); }, true);
  /* The box holds MAX_REQUEST_CHARS (model/limits.py); the browser cuts a longer paste without a word, so say it. */
  document.addEventListener("paste", (e) => {
    const a = e.target.closest && e.target.closest("#rg-source textarea"); if (!a || !(a.maxLength > 0)) return;
    const pasted = (e.clipboardData && e.clipboardData.getData("text")) || "";
    const room = a.maxLength - a.value.length + Math.abs(a.selectionEnd - a.selectionStart), box = a.closest("#rg-source");
    let note = document.getElementById("rg-cut");
    if (!note) { note = document.createElement("div"); note.id = "rg-cut"; note.className = "rg-notice rg-warn"; box.appendChild(note); }
    note.hidden = pasted.length <= room;
    note.textContent = `The pasted text has ${pasted.length.toLocaleString("en")} characters; the box holds ${a.maxLength.toLocaleString("en")}, so only the first ${Math.max(0, room).toLocaleString("en")} were kept. Translate it in parts.`;
  }, true);
  /* Enter translates and Shift+Enter starts a new line (Gradio's textbox does the opposite for lines > 1):
     caught before the textbox sees the key, Enter clicks Translate. */
  window.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || e.isComposing || !(e.target.closest && e.target.closest("#rg-source textarea"))) return;
    e.stopPropagation();
    if (e.shiftKey || e.altKey || e.ctrlKey || e.metaKey) return; // the textarea's own line break
    e.preventDefault();
    const b = document.querySelector("#rg-translate"); if (b) b.click();
  }, true);
  window.addEventListener("keypress", (e) => { if (e.key === "Enter" && e.target.closest && e.target.closest("#rg-source textarea")) e.stopPropagation(); }, true);

  R.load = function (raw) {
    if (!raw || raw.schema !== "regard-trace/1" || !mount()) return;
    failedText = null;
    const t0 = performance.now();
    if (S.timer) togglePlay();
    cache.clear(); S.pinned = {}; S.hover = null; S.runs = null;
    S.raw = raw; S.trace = prepare(raw);
    if (S.pendingUrl != null) { readView(S.pendingUrl); S.pendingUrl = null; } else S.step = 0;
    // until the visitor picks a layer or head, open on the head that aligns words best (if the record says)
    const best = S.trace.best_head;
    if (best && !S.chosen) { S.layer = best.layer; S.head = best.head; }
    clearErrors();
    $("#rg-src-chips").innerHTML = chips(S.trace.source_pieces, "src");
    $("#rg-tgt-chips").innerHTML = chips(S.trace.generated, "tgt", raw.forced);
    $("#rg-src-count").textContent = S.trace.source_pieces.length; $("#rg-tgt-count").textContent = S.trace.steps.length;
    render();
    markStale();
    R.lastLoadMs = performance.now() - t0;
    root.dataset.loads = String((+root.dataset.loads || 0) + 1);
  };
  /* Page start-up (the load event in ui/layout.py). ``start`` is what the server computed for the address:
     {values: the controls, initial: the values the page was built with, translation, trace}; ``now`` is the
     controls' and the English box's values at this moment. A visitor may have typed, picked or pressed
     Translate before it arrived: a control they changed keeps their value, and once they started a
     translation nothing of the start-up is applied. Returns the values to write into the controls. */
  R.startUp = function (start, now) {
    const n = start.values.length, same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
    const ran = userRuns > 0, values = ran ? now.slice(0, n) : start.values.map((v, i) => (same(now[i], start.initial[i]) ? v : now[i]));
    if (ran) S.pendingUrl = null; else { R.load(start.trace); values.push(start.translation); }
    if (ran) values.push(now[n]);
    document.documentElement.dataset.rgStarted = ran ? "kept" : "applied";
    markStale(values[0]);
    return values;
  };
  /* The start-up translation failed (a broken shared link: its error is a toast). */
  R.startFailed = function () {
    document.documentElement.dataset.rgStarted = "failed";
    if (!S.trace) R.failed(); // says so where the figures would be; a translation the visitor started is left alone
  };
  /* A translation failed (its error is a toast): the figures stay, greyed and labelled; the English is cleared. */
  R.failed = function () {
    failedText = sourceText();
    const host = document.getElementById("rg-explorer");
    if (!S.trace) { if (host && !root) host.innerHTML = '<p class="rg-note">Nothing translated yet: see the message, fix the French and press Translate.</p>'; return ""; }
    markStale();
    return "";
  };
  /* Opening the What if tab: its sentence and model follow the last translation (the first piece of a long
     text), unless the visitor changed them there since they were last filled. Returns [sentence, model]. */
  let wiFilled = null;
  R.whatIfInputs = function (t, sentence, model, initial) {
    const last = wiFilled || initial;
    t = S.raw || t; // the start-up translation reaches the explorer only, not the hidden trace component
    if (!t || !t.source_text || sentence !== last[0] || model !== last[1]) return [sentence, model];
    wiFilled = [t.source_text, t.model || model];
    return wiFilled;
  };
  R.loadRuns = function (runs) { S.runs = runs; render(); }; // render() redraws the compare buttons with their labels
  R.go = go;
  R.slug = slug; R.download = download; // and names and saves its exports the same way
  R.figures = () => Object.fromEntries(Object.entries(figures).map(([id, f]) => [id, f.type === "grid" ? { type: f.type, panels: f.spec.panels.length, cur: f.spec.panels[0].cur, hiRow: f.spec.panels[0].hiRow, hiCol: f.spec.panels[0].hiCol } : { type: f.type, cur: f.spec.cur, hiRow: f.spec.hiRow, hiCol: f.spec.hiCol, rows: f.spec.rows, cols: f.spec.cols }]));
  R.render = render;

  /* --- extensions (cell.js, attribution.js, layernorm.js): views, figure types, clicks, server data ------------
     A view: {label, figures(t) -> [[id, {type, spec, meta: {about}, describe?(q, k), onClick?(q, k)}]],
     caption?(t) -> html, onEnter?(t) (each render of the view: request data there), controls?: ["layer", ...]}. */
  const cellListeners = [], approachListeners = [], renderListeners = [], urlWriters = [], urlReaders = [], explainListeners = {};
  R.addView = function (name, view) {
    VIEWS[name] = view;
    const bar = root && root.querySelector("#rg-views"); if (bar) bar.innerHTML = viewButtons();
  };
  R.addFigureType = (type, draw) => { DRAW[type] = draw; };
  R.onCellClick = (fn) => { cellListeners.push(fn); };
  R.onMapApproach = (fn) => { approachListeners.push(fn); }; // {kind, layer, head}: fetch what a click will need
  R.onRender = (fn) => { renderListeners.push(fn); };
  R.urlKeys = (write, read) => { if (write) urlWriters.push(write); if (read) urlReaders.push(read); };
  R.trace = () => S.trace;
  R.root = () => root;
  /* Server data for the current trace: ``what`` names a hidden endpoint of ui/layout.py (#rg-x-<what>), whose
     inputs are (text, generated ids, ...EXPLAIN_ARGS[what], model); the answer reaches onExplain(what) listeners
     with the request echoed in ``data.request``. Requests wait in order, so two quick clicks both arrive. */
  const EXPLAIN_ARGS = { attention_cell: ["kind", "layer"], attribution: [], layernorm: [] };
  const pendingExplain = {};
  R.explainRequest = function (what, params) {
    const t = S.trace; if (!t) return null;
    const args = [t.source_text, t.steps.map((s) => s.token_id).join(" ")].concat((EXPLAIN_ARGS[what] || []).map((k) => params[k]), [t.model || ""]);
    return args;
  };
  R.explain = function (what, params) {
    const args = R.explainRequest(what, params || {}); if (!args) return false;
    (pendingExplain[what] = pendingExplain[what] || []).push(args);
    const g = document.querySelector("#rg-x-" + what); if (!g) return false;
    (g.querySelector("button") || g).click();
    return true;
  };
  R.explainArgs = (what, now) => { const q = pendingExplain[what] || []; return q.length ? q.shift() : now; };
  R.onExplain = (what, fn) => { (explainListeners[what] = explainListeners[what] || []).push(fn); };
  R.loadExplain = function (what, data) { clearErrors(); (explainListeners[what] || []).forEach((fn) => fn(data, null)); };
  R.explainFailed = function (what) { (explainListeners[what] || []).forEach((fn) => fn(null, "failed")); };
  R.lib = { C, FONT, colour, LUT, esc, clip, textWidth, fit, CanvasPainter, SvgPainter, download, slug, baseName, DRAW,
    heatmapFigure, barsFigure, linesFigure, gridFigure, heatmapLayout, pct, bytesText, f32, stepRows, headName, KINDS,
    exportFigure: (id, format) => exportFigure(id, format), figureBox: (id) => figureBox(id) };

  /* The compare tab: every model's translation and cross-attention of one sentence, side by side. */
  R.loadCompare = function (list) {
    const host = document.getElementById("rg-compare"); if (!host || !Array.isArray(list)) return;
    S.compare = list.map(prepare); clearErrors(); drawCompare();
  };
  function drawCompare() {
    const host = document.getElementById("rg-compare"); if (!host || !S.compare) return;
    host.innerHTML = `<div class="rg-compare-row">${S.compare.map((t, i) => `<div class="rg-compare-col"><div class="rg-compare-name">${esc(t.model)}</div>
      <div class="rg-compare-text" data-model="${esc(t.model)}">${esc(t.translation)}</div><div class="rg-note">${t.steps.length} steps · ${t.total_ms.toFixed(1)} ms · stopped at ${t.stopped === "eos" ? "&lt;/s&gt;" : "the length limit"}</div>
      <figure class="rg-fig" data-cmp="${i}"><canvas></canvas></figure></div>`).join("")}</div>`;
    host.querySelectorAll("figure[data-cmp]").forEach((box) => {
      const t = S.compare[+box.dataset.cmp], layer = t.layers.decoder - 1, values = attMap(t, "cross", layer, HEAD_MEAN);
      const spec = { title: "Cross-attention · last layer · mean over heads", subtitle: "colour: fixed 0–1 scale", rows: stepRows(t), cols: t.source_pieces, values, vmax: 1 };
      const w = Math.floor(box.clientWidth); if (w) heatmapFigure(new CanvasPainter(box.querySelector("canvas")), w, spec);
    });
  }
  document.addEventListener("click", (e) => { if (e.target.closest && e.target.closest('[role="tab"]')) setTimeout(() => { render(); drawCompare(); }, 30); });
  window.addEventListener("resize", () => drawCompare());
})();
