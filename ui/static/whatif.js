/* Regard's "What if" tab: draws what ui/whatif.py returns (forced prefix + branching, beam tree, two
 * sentences side by side, heads switched off, alignment lens, logit lens). Each panel keeps its own
 * state and redraws locally; only "force this candidate" and the buttons go back to the server.
 */
(function () {
  "use strict";
  if (window.whatif) return;
  const W = (window.whatif = {});
  const INK = "#1e293b", MUTED = "#64748b", HI = "#f59e0b", FONT = "11px Inter, ui-sans-serif, system-ui, sans-serif";
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const pct = (p) => (p >= 0.1 ? (p * 100).toFixed(0) : (p * 100).toFixed(1)) + "%";
  const show = (p) => String(p).replace(/^▁/, "␣");
  const $ = (id) => document.getElementById(id);

  const T = window.regardTrace; // static/trace.js: the array decoder and head selection of every view

  // --- a small canvas heatmap (sequential 0..vmax, or diverging -vmax..vmax) ----------------------------------
  function shade(v, diverging) {
    if (diverging) {
      const t = Math.max(-1, Math.min(1, v)), a = Math.abs(t);
      const c = t >= 0 ? [220, 38, 38] : [37, 99, 235];
      return `rgb(${c.map((x) => Math.round(255 + a * (x - 255))).join(",")})`;
    }
    // the one colour scale of a weight (static/trace.js), so it looks the same on every tab
    return T.colour(v);
  }
  W.shade = shade;
  /* A PNG button on the map's figure (named after the map and its title, which the image carries). */
  function pngButton(canvas, title) {
    const box = canvas.parentElement; let b = box.querySelector(":scope > .wi-png");
    if (!b) { b = document.createElement("button"); b.className = "wi-png"; b.textContent = "PNG"; b.title = "Download this map as PNG"; box.insertBefore(b, canvas); }
    const name = "regard-" + canvas.id + (title ? "-" + window.regard.slug(title, 50) : "") + ".png";
    b.onclick = () => canvas.toBlob((blob) => window.regard.download(name, blob), "image/png");
  }
  /* spec: {rows, cols, values (rows*cols), vmax, diverging, cur (row outlined), title} -> draws into canvas. */
  function heat(canvas, spec) {
    const g = canvas.getContext("2d"); g.font = FONT;
    const nq = spec.rows.length, nk = spec.cols.length, vmax = spec.vmax || 1;
    const left = 10 + Math.min(130, Math.max(0, ...spec.rows.map((s) => g.measureText(s).width)));
    const below = 10 + Math.min(90, Math.max(0, ...spec.cols.map((s) => g.measureText(s).width)));
    const width = Math.max(160, canvas.parentElement.clientWidth - 4);
    const bar = 48; // the colour bar and its labels, right of the cells
    const cw = Math.max(4, Math.min(36, (width - left - 8 - bar) / Math.max(nk, 1))), ch = Math.max(6, Math.min(22, cw));
    const top = spec.title ? 20 : 4, w = left + nk * cw + 8 + bar, h = Math.max(top + nq * ch + below, top + 60);
    const r = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * r); canvas.height = Math.round(h * r); canvas.style.width = w + "px"; canvas.style.height = h + "px";
    g.setTransform(r, 0, 0, r, 0, 0); g.fillStyle = "#fff"; g.fillRect(0, 0, w, h); g.font = FONT;
    if (spec.title) { g.fillStyle = INK; g.textBaseline = "middle"; g.fillText(spec.title, 2, 9); }
    for (let q = 0; q < nq; q++) for (let k = 0; k < nk; k++) {
      g.fillStyle = shade(spec.values[q * nk + k] / vmax, spec.diverging);
      g.fillRect(left + k * cw, top + q * ch, cw - (cw > 6 ? 1 : 0), ch - (ch > 6 ? 1 : 0));
    }
    g.fillStyle = INK; g.textBaseline = "middle"; g.textAlign = "right";
    spec.rows.forEach((s, q) => { if (ch >= 9 || q === spec.cur) g.fillText(s.slice(0, 22), left - 4, top + q * ch + ch / 2); });
    spec.cols.forEach((s, k) => {
      if (cw < 8) return;
      g.save(); g.translate(left + k * cw + cw / 2, top + nq * ch + 4); g.rotate(-Math.PI / 2); g.fillText(s.slice(0, 14), 0, 0); g.restore();
    });
    if (spec.cur != null && spec.cur < nq) { g.strokeStyle = HI; g.lineWidth = 2.5; g.strokeRect(left - 1, top + spec.cur * ch, nk * cw + 1, ch); }
    // colour bar: 0..vmax, or -vmax..vmax for a difference map
    const bx = left + nk * cw + 14, bh = Math.max(40, Math.min(nq * ch, 160)), steps = 24;
    for (let i = 0; i < steps; i++) { const f = 1 - i / (steps - 1); g.fillStyle = shade(spec.diverging ? 2 * f - 1 : f, spec.diverging); g.fillRect(bx, top + (bh * i) / steps, 10, bh / steps + 0.5); }
    g.fillStyle = MUTED; g.textAlign = "left"; const fmt = (v) => v.toFixed(Math.abs(v) < 0.1 ? 3 : 2);
    g.fillText(fmt(vmax), bx + 13, top + 4); g.fillText(spec.diverging ? fmt(-vmax) : "0", bx + 13, top + bh - 4);
    canvas.dataset.cells = nq + "x" + nk; canvas.dataset.bar = spec.diverging ? "diverging" : "0-" + fmt(vmax);
    pngButton(canvas, spec.title);
    return { left, top, cw, ch, nq, nk };
  }
  /* A row of <select>s; `on` gets the changed name and value. */
  function selects(defs, on) {
    const html = defs.map(([name, label, opts, value]) => `<label>${label} <select data-sel="${name}">${opts.map(([v, l]) =>
      `<option value="${v}"${String(v) === String(value) ? " selected" : ""}>${esc(l)}</option>`).join("")}</select></label>`).join("");
    const div = document.createElement("div"); div.className = "wi-controls"; div.innerHTML = html;
    div.onchange = (e) => { const s = e.target.dataset.sel; if (s) on(s, e.target.value); };
    return div;
  }
  const headOpts = (H) => [["mean", "mean"]].concat(Array.from({ length: H }, (_, h) => [h, String(h + 1)]));
  const layerOpts = (L) => Array.from({ length: L }, (_, l) => [l, String(l + 1)]);
  const num = (v) => (v === "mean" ? v : +v);
  function clickGradio(id) { const b = $(id); if (b) (b.querySelector("button") || b).click(); }
  function setBox(id, value) {
    const el = document.querySelector(`#${id} textarea, #${id} input`); if (!el) return;
    el.value = value; el.dispatchEvent(new Event("input", { bubbles: true }));
  }
  function clearErrors() { document.querySelectorAll(".toast-body.error .toast-close").forEach((b) => b.click()); }
  function loaded(host) { host.dataset.loads = String((+host.dataset.loads || 0) + 1); clearErrors(); }
  /* A decoder trace's maps: kind "cross" (T, S) or "decoder" (T, T) at layer/head. */
  function traceMap(t, kind, layer, head) {
    const key = kind + layer + head; t.maps = t.maps || {};
    if (!t.maps[key]) t.maps[key] = T.headMap(t.arrays[kind], [layer], num(head));
    return t.maps[key];
  }
  function prepTrace(raw) {
    const t = Object.assign({}, raw); t.arrays = {};
    for (const k of Object.keys(raw.attention)) t.arrays[k] = T.decodeArray(raw.attention[k]);
    t.rows = raw.steps.map((s, i) => raw.target_pieces[i] + " → " + s.piece);
    return t;
  }
  function mapSpec(t, kind, layer, head) {
    const values = traceMap(t, kind, layer, head);
    const rows = kind === "encoder" ? t.source_pieces : t.rows;
    const cols = kind === "decoder" ? t.target_pieces.slice(0, t.steps.length) : t.source_pieces;
    return { rows, cols, values };
  }
  const KIND_OPTS = [["cross", "cross-attention"], ["decoder", "decoder self-attention"], ["encoder", "encoder self-attention"]];

  // --- forced prefix and branching ------------------------------------------------------------------------------
  const F = { t: null, step: 0, kind: "cross", layer: null, head: "mean", pending: "" };
  W.branchIds = () => F.pending;
  W.branchTo = function (step, tokenId) {
    const ids = F.t.steps.slice(0, step).map((s) => s.token_id).concat([tokenId]);
    F.pending = ids.join(" "); F.jumpTo = step;
    clickGradio("wi-branch-run");
  };
  W.loadForce = function (raw) {
    const host = $("wi-force"); if (!host || !raw) return;
    F.raw = raw; F.t = prepTrace(raw); F.layer = F.layer == null ? raw.layers.decoder - 1 : Math.min(F.layer, raw.layers.decoder - 1);
    F.step = F.jumpTo != null ? Math.min(F.jumpTo, raw.steps.length - 1) : Math.min(raw.n_forced, raw.steps.length - 1);
    F.jumpTo = null;
    drawForce(); loaded(host);
  };
  function drawForce() {
    const host = $("wi-force"), t = F.t, s = t.steps[F.step];
    const own = t.steps.length - t.n_forced;
    host.innerHTML = `<div class="wi-summary"><b>${t.n_forced}</b> forced token${t.n_forced === 1 ? "" : "s"}, then <b>${own}</b> of the model's own ·
      log p of the whole output ${t.score.toFixed(2)} · <span class="wi-key wi-forced">forced</span> <span class="wi-key wi-own">model's choice</span>
      <button class="wi-explore" id="wi-force-explore" title="Open this forced translation in the first tab: its cells, attribution and source share, LayerNorm">Open in the explorer</button></div>
      <div class="wi-tokens">${t.steps.map((x, i) => `<button class="wi-tok ${t.forced[i] ? "wi-forced" : "wi-own"}${i === F.step ? " wi-current" : ""}"
        data-step="${i}" title="step ${i + 1}: p = ${pct(x.prob)}${t.forced[i] ? " (forced: the probability the model gave it)" : ""}">${esc(show(x.piece))}<small>${pct(x.prob)}</small></button>`).join("")}</div>
      <div class="wi-cands"><span class="wi-cand-label">Step ${F.step + 1} reads <code>${esc(t.target_pieces[F.step])}</code> · ${t.forced[F.step] ? "forced" : "chose"}
        <code>${esc(s.piece)}</code> (${pct(s.prob)}). Force another candidate from here:</span>
        ${s.top_k.map((c) => `<button class="wi-cand${c.token_id === s.token_id ? " wi-chosen" : ""}" data-token="${c.token_id}">${esc(show(c.piece))} <small>${pct(c.prob)}</small></button>`).join("")}</div>
      <figure class="wi-fig"><canvas id="wi-force-map"></canvas></figure>`;
    const ctl = selects([["kind", "map", KIND_OPTS.slice(0, 2), F.kind], ["layer", "layer", layerOpts(t.layers.decoder), F.layer], ["head", "head", headOpts(t.heads), F.head]],
      (k, v) => { F[k] = k === "kind" ? v : num(v); drawForce(); });
    host.insertBefore(ctl, host.querySelector(".wi-fig"));
    host.querySelector(".wi-tokens").onclick = (e) => { const b = e.target.closest(".wi-tok"); if (b) { F.step = +b.dataset.step; drawForce(); } };
    $("wi-force-explore").onclick = () => { // the explorer's views (attribution's source share included) on the forced trace
      if (!window.regard || !window.regard.load) return;
      window.regard.load(F.raw);
      const tab = document.querySelector("#rg-tabs button[role=tab]"); if (tab) tab.click();
    };
    host.querySelector(".wi-cands").onclick = (e) => { const b = e.target.closest(".wi-cand"); if (b) W.branchTo(F.step, +b.dataset.token); };
    const spec = mapSpec(t, F.kind, F.layer, F.head);
    heat($("wi-force-map"), Object.assign(spec, { cur: F.step, title: `${F.kind === "cross" ? "Cross" : "Decoder self"}-attention, layer ${F.layer + 1}, ${F.head === "mean" ? "mean of heads" : "head " + (F.head + 1)}: every step (rows), forced ones included` }));
    host.dataset.step = String(F.step);
  }

  // --- beam tree ----------------------------------------------------------------------------------------------------
  const B = { d: null, sel: null, head: "mean" };
  W.loadBeam = function (d) {
    const host = $("wi-beam"); if (!host || !d) return;
    B.d = d; B.cross = T.decodeArray(d.attention.cross); B.self = T.decodeArray(d.attention.self);
    B.sel = d.winner >= 0 ? d.winner : null;
    drawBeam(); loaded(host);
  };
  function hypothesis(id) { const out = []; for (let n = id; n >= 0; n = B.d.nodes[n].parent) out.unshift(B.d.nodes[n]); return out; }
  function drawBeam() {
    const host = $("wi-beam"), d = B.d, colW = 96, rowH = 30, pad = 40;
    const levels = []; d.nodes.forEach((n) => { (levels[n.step] = levels[n.step] || []).push(n); });
    const pos = {}; let most = 1;
    levels.forEach((lv, t) => { most = Math.max(most, lv.length); lv.forEach((n, i) => { pos[n.id] = [pad + 60 + t * colW, 20 + i * rowH]; }); });
    const root = [pad, 20], w = pad + 60 + levels.length * colW + 20, h = 30 + most * rowH;
    const edges = d.nodes.map((n) => { const a = n.parent >= 0 ? pos[n.parent] : root, b = pos[n.id];
      return `<line x1="${a[0] + 38}" y1="${a[1]}" x2="${b[0] - 38}" y2="${b[1]}" class="wi-edge${n.winner ? " wi-win" : ""}"/>`; }).join("");
    const nodes = d.nodes.map((n) => { const [x, y] = pos[n.id];
      return `<g class="wi-node wi-${n.status}${n.winner ? " wi-win" : ""}${n.id === B.sel ? " wi-sel" : ""}" data-node="${n.id}" transform="translate(${x},${y})">
        <title>step ${n.step + 1} · ${esc(n.piece)} · log p ${n.logprob.toFixed(3)} · score ${n.score.toFixed(3)} · normalised ${n.norm_score.toFixed(3)} · ${n.status}</title>
        <rect x="-38" y="-12" width="76" height="24" rx="6"/><text y="-1">${esc(show(n.piece).slice(0, 10))}</text><text y="8" class="wi-sc">${n.norm_score.toFixed(2)}</text></g>`; }).join("");
    host.innerHTML = `<div class="wi-summary">Beam ${d.beam_size}, length penalty ${d.length_penalty}: <b>${esc(d.translation)}</b> · ${d.nodes.length} candidates over ${d.steps} steps ·
      <span class="wi-key wi-kept">kept</span> <span class="wi-key wi-pruned">pruned</span> <span class="wi-key wi-finished">finished</span> <span class="wi-key wi-winkey">winner</span> · number = length-normalised score; click a node</div>
      <div class="wi-tree"><svg width="${w}" height="${h}"><g class="wi-node wi-root" transform="translate(${root[0]},${root[1]})"><rect x="-30" y="-12" width="60" height="24" rx="6"/><text y="4">&lt;s&gt;</text></g>${edges}${nodes}</svg></div>
      <div id="wi-beam-detail"></div>`;
    host.querySelector("svg").onclick = (e) => { const g = e.target.closest("[data-node]"); if (g) { B.sel = +g.dataset.node; drawBeam(); } };
    drawBeamNode();
  }
  function drawBeamNode() {
    const box = $("wi-beam-detail"), d = B.d; if (B.sel == null) { box.innerHTML = ""; return; }
    const n = d.nodes[B.sel], path = hypothesis(n.id), prefix = ["<s>"].concat(path.slice(0, -1).map((p) => p.piece));
    box.innerHTML = `<div class="wi-node-info" id="wi-beam-info">Step ${n.step + 1}, <b>${esc(n.piece)}</b> (${n.status}${n.winner ? ", on the winning path" : ""}):
      log p ${n.logprob.toFixed(3)}, cumulative ${n.score.toFixed(3)}, normalised ${n.norm_score.toFixed(3)}. Hypothesis: <code>${esc(path.map((p) => show(p.piece)).join(" "))}</code></div>
      <div class="wi-pair"><figure class="wi-fig"><canvas id="wi-beam-cross"></canvas></figure><figure class="wi-fig"><canvas id="wi-beam-self"></canvas></figure></div>`;
    box.insertBefore(selects([["head", "head", headOpts(d.heads), B.head]], (k, v) => { B.head = num(v); drawBeamNode(); }), box.querySelector(".wi-pair"));
    const rows = layerOpts(d.layers).map(([, l]) => "layer " + l), who = B.head === "mean" ? "mean of heads" : "head " + (B.head + 1);
    const perLayer = (a, width) => { const out = new Float32Array(d.layers * width);
      for (let l = 0; l < d.layers; l++) out.set(T.headMap(a, [n.step, n.row, l], B.head).subarray(0, width), l * width); return out; };
    heat($("wi-beam-cross"), { rows, cols: d.source_pieces, values: perLayer(B.cross, d.source_pieces.length), title: `Cross-attention of this hypothesis at step ${n.step + 1} (${who})` });
    heat($("wi-beam-self"), { rows, cols: prefix, values: perLayer(B.self, n.step + 1), title: `Self-attention over its own prefix (${who})` });
  }

  // --- two sentences side by side ----------------------------------------------------------------------------------
  const P = { a: null, b: null, kind: "cross", layer: null, head: "mean", step: 0 };
  W.loadCompare = function (list) {
    const host = $("wi-compare"); if (!host || !Array.isArray(list) || list.length !== 2) return;
    [P.a, P.b] = list.map(prepTrace); if (P.layer == null) P.layer = P.a.layers.decoder - 1;
    drawCompare(); loaded(host);
  };
  function drawCompare() {
    const host = $("wi-compare"), { a, b } = P, nl = P.kind === "encoder" ? a.layers.encoder : a.layers.decoder;
    P.layer = Math.min(P.layer, nl - 1); const n = Math.max(a.steps.length, b.steps.length); P.step = Math.min(P.step, n - 1);
    const sa = mapSpec(a, P.kind, P.layer, P.head), sb = mapSpec(b, P.kind, P.layer, P.head);
    // A difference needs the same positions on both axes: the same number of source pieces, and for the
    // decoder maps either translations of one length or only the steps that read the same target prefix.
    let rows = Math.min(sa.rows.length, sb.rows.length), cols = Math.min(sa.cols.length, sb.cols.length);
    const sameCols = P.kind === "decoder" || sa.cols.length === sb.cols.length;
    if (P.kind !== "encoder" && a.steps.length !== b.steps.length) {
      let same = 0; while (same < rows && a.target_pieces[same] === b.target_pieces[same]) same++;
      rows = same; if (P.kind === "decoder") cols = same;
    }
    host.innerHTML = `<div class="wi-pair">${[a, b].map((t, i) => `<div class="wi-col"><div class="wi-name">${"AB"[i]}: ${esc(t.source_text)}</div>
      <div class="wi-out" data-side="${"ab"[i]}">${esc(t.translation)}</div><div class="wi-note">step ${P.step + 1}: ${P.step < t.steps.length ? "<code>" + esc(t.steps[P.step].piece) + "</code> " + pct(t.steps[P.step].prob) : "(ended)"}</div>
      <figure class="wi-fig"><canvas id="wi-cmp-${"ab"[i]}"></canvas></figure></div>`).join("")}</div>
      <figure class="wi-fig" id="wi-cmp-diff-box"><canvas id="wi-cmp-diff"></canvas><div class="wi-note" id="wi-cmp-diff-note"></div></figure>`;
    const ctl = selects([["kind", "map", KIND_OPTS, P.kind], ["layer", "layer", layerOpts(nl), P.layer], ["head", "head", headOpts(a.heads), P.head]], (k, v) => { P[k] = k === "kind" ? v : num(v); drawCompare(); });
    ctl.insertAdjacentHTML("beforeend", `<label>step <input type="range" id="wi-cmp-step" min="1" max="${n}" value="${P.step + 1}"></label>`);
    host.prepend(ctl);
    $("wi-cmp-step").oninput = (e) => { P.step = +e.target.value - 1; drawCompare(); };
    const cur = P.kind === "encoder" ? null : P.step, vmax = 1;
    heat($("wi-cmp-a"), Object.assign(sa, { cur, vmax, title: "A" })); heat($("wi-cmp-b"), Object.assign(sb, { cur, vmax, title: "B" }));
    const note = $("wi-cmp-diff-note"), canvas = $("wi-cmp-diff");
    if (!sameCols || !rows) { canvas.hidden = true; note.textContent = !sameCols ? `No difference map: A has ${sa.cols.length} source pieces and B ${sb.cols.length}, so their columns are not the same positions.` : "No difference map: the translations differ in length from the first step."; return; }
    const diff = new Float32Array(rows * cols);
    for (let q = 0; q < rows; q++) for (let k = 0; k < cols; k++) diff[q * cols + k] = sa.values[q * sa.cols.length + k] - sb.values[q * sb.cols.length + k];
    const dmax = Math.max(1e-6, ...diff.map(Math.abs));
    const label = (ra, rb) => ra.map((r, i) => (r === rb[i] ? r : r + " | " + rb[i]));
    heat(canvas, { rows: label(sa.rows.slice(0, rows), sb.rows), cols: label(sa.cols.slice(0, cols), sb.cols), values: diff, vmax: dmax, diverging: true, cur,
      title: `A − B (red: A attends more, blue: B attends more; ±${dmax.toFixed(2)})` });
    note.textContent = rows < Math.max(sa.rows.length, sb.rows.length) ? `Over the first ${rows} steps only: the translations have different lengths, and these steps read the same English so far.` : "";
  }

  // --- heads switched off ------------------------------------------------------------------------------------------
  const A = { d: null };
  const KIND_NAMES = { encoder: "encoder self-attention", decoder_self: "decoder self-attention", cross: "cross-attention" };
  function headsBox() { const el = document.querySelector("#wi-heads textarea, #wi-heads input"); return el ? el.value : ""; }
  W.toggleHead = function (name) {
    const now = new Set(headsBox().split(/[\s,;]+/).filter(Boolean));
    if (now.has(name)) now.delete(name); else now.add(name);
    setBox("wi-heads", [...now].join(" ")); if (A.d) drawGrids();
  };
  W.loadAblate = function (d) { const host = $("wi-ablate"); if (!host || !d) return; A.d = d; drawAblate(); loaded(host); };
  function drawGrids() {
    const d = A.d, on = new Set(headsBox().split(/[\s,;]+/).filter(Boolean)), drop = d.ranking.drop;
    const top = Math.max(1e-6, ...Object.values(drop).flat(2));
    $("wi-grids").innerHTML = Object.keys(KIND_NAMES).map((kind) => `<table class="wi-grid"><caption>${KIND_NAMES[kind]}</caption>
      <tr><th></th>${Array.from({ length: d.n_heads }, (_, h) => `<th>h${h + 1}</th>`).join("")}</tr>
      ${drop[kind].map((row, l) => `<tr><th>L${l + 1}</th>${row.map((v, h) => { const name = `${kind}:${l + 1}:${h + 1}`;
        return `<td><button data-head="${name}" class="${on.has(name) ? "wi-off" : ""}" style="background:${shade(Math.max(0, v) / top)};color:${v / top > 0.55 ? "#fff" : INK}"
          title="${name}: log p drops by ${v.toFixed(3)} without it">${on.has(name) ? "✕" : (Math.abs(v) < 0.05 ? 0 : v).toFixed(1)}</button></td>`; }).join("")}</tr>`).join("")}</table>`).join("");
  }
  function drawAblate() {
    const host = $("wi-ablate"), d = A.d, o = d.original, x = d.ablated, n = Math.max(o.steps.length, x.steps.length);
    const same = o.translation === x.translation;
    const rows = Array.from({ length: n }, (_, i) => { const a = o.steps[i], b = x.steps[i], ch = d.top1_change[i];
      return `<tr><td>${i + 1}</td><td>${a ? esc(show(a.piece)) + " " + pct(a.prob) : ""}</td><td class="${a && b && a.token_id !== b.token_id ? "wi-diff" : ""}">${b ? esc(show(b.piece)) + " " + pct(b.prob) : ""}</td>
        <td>${ch == null ? "" : `<span class="wi-bar ${ch < 0 ? "wi-neg" : ""}" style="width:${Math.round(Math.abs(ch) * 80)}px"></span>${(ch >= 0 ? "+" : "") + (ch * 100).toFixed(1)} pts`}</td></tr>`; }).join("");
    host.innerHTML = `<div class="wi-pair"><div class="wi-col"><div class="wi-name">All heads on</div><div class="wi-out" id="wi-abl-original">${esc(o.translation)}</div>
        <div class="wi-note">log p ${d.ranking.baseline_logprob.toFixed(2)}</div></div>
      <div class="wi-col"><div class="wi-name">Without ${d.heads.length ? esc(d.heads.join(", ")) : "any head (pick some)"}</div><div class="wi-out${same ? "" : " wi-changed"}" id="wi-abl-ablated">${esc(x.translation)}</div>
        <div class="wi-note">log p of the original translation without them: ${d.original_logprob_ablated.toFixed(2)} (${(d.original_logprob_ablated - d.ranking.baseline_logprob).toFixed(2)})</div></div></div>
      <div class="wi-pair"><div class="wi-col"><div id="wi-grids" class="wi-grids"></div></div>
      <div class="wi-col"><table class="wi-table" id="wi-abl-steps"><tr><th>step</th><th>original (top-1 p)</th><th>heads off</th><th>change in top-1 p</th></tr>${rows}</table>
      <table class="wi-table" id="wi-rank"><caption>Heads the translation needs most (drop in log p when that head alone is off)</caption>
      ${d.ranking.top.map((r, i) => `<tr><td>${i + 1}</td><td>${KIND_NAMES[r.kind]}, layer ${r.layer + 1}, head ${r.head + 1}</td><td>${r.drop.toFixed(3)}</td></tr>`).join("")}</table></div></div>`;
    drawGrids();
    $("wi-grids").onclick = (e) => { const b = e.target.closest("[data-head]"); if (b) W.toggleHead(b.dataset.head); };
  }

  // --- alignment lens ------------------------------------------------------------------------------------------------
  const L = { d: null, pick: null };
  W.loadAlign = function (d) {
    const host = $("wi-align"); if (!host || !d) return;
    L.d = d;
    // default: the head that aligns best against the reference aligner when the checkpoint records it,
    // else the layer mean whose word attention is most concentrated (mean over English words of the max)
    const sc = d.head_scores;
    if (sc) {
      let bl = 0, bh = 0;
      sc.head_f1.forEach((row, l) => row.forEach((f, h) => { if (f > sc.head_f1[bl][bh]) { bl = l; bh = h; } }));
      L.pick = L.pick || bl + ":" + bh;
    }
    const focus = (m) => m.reduce((s, row) => s + Math.max(...row), 0) / Math.max(m.length, 1);
    const best = d.layer_mean.map(focus).reduce((bi, v, i, a) => (v > a[bi] ? i : bi), 0);
    L.pick = L.pick || best + ":mean";
    drawAlign(); loaded(host);
  };
  function drawAlign() {
    const host = $("wi-align"), d = L.d, [l, h] = L.pick.split(":"), m = h === "mean" ? d.layer_mean[+l] : d.heads[+l][+h];
    const sc = d.head_scores, f1 = (v) => (v == null ? "" : ` · F1 ${v.toFixed(2)}`);
    const opts = []; d.layer_mean.forEach((_, i) => { opts.push([i + ":mean", `layer ${i + 1} · mean of heads${f1(sc && sc.layer_f1[i])}`]); d.heads[i].forEach((_, j) => opts.push([i + ":" + j, `layer ${i + 1} · head ${j + 1}${f1(sc && sc.head_f1[i][j])}`])); });
    const sw = d.src_words.length, tw = d.tgt_words.length, width = Math.max(host.clientWidth - 10, 400);
    const xs = (n, i) => 20 + ((i + 0.5) * (width - 40)) / n, y0 = 26, y1 = 150;
    let lines = "";
    m.forEach((row, i) => { const arg = row.indexOf(Math.max(...row));
      row.forEach((v, j) => { if (v < 0.1 && j !== arg) return;
        lines += `<line x1="${xs(sw, j)}" y1="${y0 + 8}" x2="${xs(tw, i)}" y2="${y1 - 14}" class="${j === arg ? "wi-link" : "wi-soft"}" stroke-opacity="${Math.min(1, 0.15 + v).toFixed(2)}" stroke-width="${(1 + 4 * v).toFixed(1)}"${j === arg ? ` data-link="${j}-${i}"` : ""}/>`; }); });
    const words = (list, n, y, cls) => list.map((w, i) => `<text x="${xs(n, i)}" y="${y}" class="${cls}">${esc(w)}</text>`).join("");
    host.innerHTML = `<div class="wi-summary">${esc(d.translation)} · thick line: the French word each English word attends to most; others ≥ 0.1 shown faint. Merge rule: ${esc(d.merge_rule)}</div>
      <svg class="wi-align" width="${width}" height="${y1 + 10}">${lines}${words(d.src_words, sw, y0, "wi-fr")}${words(d.tgt_words, tw, y1, "wi-en")}</svg>
      <figure class="wi-fig"><canvas id="wi-align-map"></canvas></figure>${scoreTable(sc)}`;
    host.prepend(selects([["pick", "read from", opts, L.pick]], (k, v) => { L.pick = v; drawAlign(); }));
    heat($("wi-align-map"), { rows: d.tgt_words, cols: d.src_words, values: m.flat(), title: "Word attention (English rows, French columns)" });
  }

  // Which heads align: every head's word-alignment F1 against the reference aligner, best outlined.
  function scoreTable(sc) {
    if (!sc) return `<div class="wi-summary">No per-head alignment scores in this checkpoint (python scripts/head_alignment.py --record measures them).</div>`;
    const top = Math.max(...sc.head_f1.flat());
    const head = `<tr><th>layer</th><th>mean</th>${sc.head_f1[0].map((_, h) => `<th>head ${h + 1}</th>`).join("")}</tr>`;
    const body = sc.head_f1.map((row, l) => `<tr><th>${l + 1}</th><td>${sc.layer_f1[l].toFixed(2)}</td>${row.map((f) =>
      `<td class="${f === top ? "wi-match" : ""}" style="background:${shade(f)};color:${f > 0.55 ? "#fff" : INK}">${f.toFixed(2)}</td>`).join("")}</tr>`).join("");
    return `<div class="wi-summary">Alignment F1 of each cross-attention head against ${esc(sc.aligner)} (trained on ${sc.align_pairs} ${esc(sc.data)} pairs, scored on ${sc.scored_pairs}; F1 = 1 − AER):</div>
      <table class="wi-table" id="wi-align-scores">${head}${body}</table>`;
  }

  // --- logit lens ------------------------------------------------------------------------------------------------------
  W.loadLens = function (d) {
    const host = $("wi-lens"); if (!host || !d) return;
    const head = `<tr><th>step</th><th>output</th>${Array.from({ length: d.layers }, (_, l) => `<th>layer ${l + 1}</th>`).join("")}</tr>`;
    const body = d.steps.map((s, t) => `<tr><td>${t + 1}</td><th>${esc(show(s.piece))}</th>${s.layers.map((c) =>
      `<td class="${c.piece === s.piece ? "wi-match" : ""}" style="background:${shade(c.prob)};color:${c.prob > 0.55 ? "#fff" : INK}"
        title="this layer gives the real output ${pct(c.chosen_prob)}">${esc(show(c.piece))} <small>${pct(c.prob)}</small></td>`).join("")}</tr>`).join("");
    host.innerHTML = `<div class="wi-summary">${esc(d.translation)} · each cell: the piece that layer's state would output through the final norm and output projection, and its probability; outlined = the model's real output.</div>
      <table class="wi-table wi-lens" id="wi-lens-table">${head}${body}</table>`;
    loaded(host);
  };
  window.addEventListener("resize", () => { if (F.t && $("wi-force")) drawForce(); if (P.a && $("wi-compare")) drawCompare(); });
})();
