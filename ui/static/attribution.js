/* "Attribution": which inputs moved each generated token's log-probability, beside what attention shows.
 *
 * Entering the view (and each new translation while in it) asks once per trace for
 * regard.explain("attribution") (model/explain/attribution.py: gradient × input and 32-step integrated
 * gradients over the source and the English prefix, the source share per step, and each decoder layer's
 * rank agreement with cross-attention); the answer is kept per trace, and "computing…" shows meanwhile while
 * stepping and the other views keep working. Figures: a map laid out like cross-attention (rows: steps
 * "input → output"; columns: the source pieces, a gap, then the decoder's input pieces), |attribution| scaled
 * per row, for the method picked (IG or gradient × input); the agreement per decoder layer as bars on a
 * −1…1 axis. Once computed, a coloured bar under every generated piece gives that step's source share (of the
 * method picked) in every view; a step whose share is under 0.5 is outlined.
 * URL: view=attribution and attr=ig | gxi (the method).
 * Test hooks: #rg-attr-status[data-state=loading|ready|failed][data-requests][data-loads]; the strip
 * #rg-attr-strip[data-cells][data-low][data-method] and its cells .rg-attr-cell[data-step][data-share];
 * the map figure[data-fig=attribution][data-cells="T x C"].
 */
(function () {
  "use strict";
  const R = window.regard;
  if (!R || !R.addView || R.attribution) return;
  const L = R.lib, C = L.C;
  const METHODS = { integrated_gradients: "integrated gradients", grad_x_input: "gradient × input" };
  const URL_NAME = { integrated_gradients: "ig", grad_x_input: "gxi" };
  const KEEP = 8; // traces whose answers are kept
  const IG_STEPS = 32; // what ui/explain.py asks the library for
  const A = { method: "integrated_gradients", cache: new Map(), pending: new Set(), failed: new Set(), requests: 0, loads: 0 };
  R.attribution = A;

  const style = document.createElement("style");
  style.textContent = `#rg-tgt-chips .rg-chip { position: relative; }
    .rg-attr-cell { position: absolute; left: 1px; right: 1px; bottom: -5px; height: 4px; border-radius: 2px; }
    .rg-attr-cell.rg-attr-low { box-shadow: 0 0 0 1.5px #f59e0b; }
    #rg-tgt-chips.rg-attr-on { row-gap: 9px; padding-bottom: 5px; }
    #rg-attr-strip { font-size: 0.72rem; color: #64748b; margin: 2px 0 0; overflow-wrap: anywhere; }
    #rg-attr-strip .rg-attr-key { display: inline-block; width: 18px; height: 4px; border-radius: 2px; vertical-align: middle; margin: 0 3px; }
    .rg-attr-bar { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 10px; margin-bottom: 4px; }
    #rg-explorer .rg-attr-bar select, #rg-explorer .rg-attr-bar button { font: inherit; font-size: 0.8rem; font-weight: 400;
      line-height: 1.4; padding: 1px 8px; border-radius: 6px; border: 1px solid #cbd5e1; background: #f8fafc; color: #334155;
      cursor: pointer; box-shadow: none; min-width: 0; width: auto; }
    #rg-attr-status[data-state=loading] { color: #4f46e5; }
    #rg-attr-status[data-state=failed] { color: #b91c1c; }`;
  document.head.appendChild(style);

  const ids = (t) => t.steps.map((s) => s.token_id);
  const keyOf = (t) => (t.model || "") + "\u0001" + t.source_text + "\u0001" + ids(t).join(",");
  const current = () => { const t = R.trace(); return t ? A.cache.get(keyOf(t)) || null : null; };

  /* share (0: all from the English prefix, 1: all from the French) -> teal … indigo */
  const TEAL = [13, 148, 136], INDIGO = [79, 70, 229];
  const shareColour = (v) => "rgb(" + TEAL.map((c, i) => Math.round(c + Math.max(0, Math.min(1, v)) * (INDIGO[i] - c))).join(",") + ")";
  const f3 = (v) => (Number.isFinite(v) ? v.toFixed(3) : String(v));

  // --- the answer, decoded once ---------------------------------------------------------------------------------
  function decode(data) {
    const T = data.target_len, S = data.source_len, methods = {};
    for (const m of Object.keys(METHODS)) {
      methods[m] = { source: L.f32(data.methods[m].source), prefix: L.f32(data.methods[m].prefix) };
    }
    return { T, S, methods, share: data.source_share, agreement: data.agreement, gap: data.completeness_gap,
      f: data.f, f0: data.f_baseline, steps: data.steps, ms: data.ms, raw: data };
  }

  // --- figures --------------------------------------------------------------------------------------------------
  /* The map: a heatmap with a gap column between source and prefix, and the prefix right of each step blanked
     (it cannot reach that step: the values there are the gradients' exact zeros). */
  function drawMap(p, w, spec) {
    const regions = L.heatmapFigure(p, w, spec), g = regions[0];
    const gapX = g.x + spec.gapAt * g.cw;
    p.rect(gapX, g.y - 1, g.cw, g.nq * g.ch + 2, C.bg);
    for (let q = 0; q < g.nq; q++) {
      const from = spec.gapAt + 2 + q; // prefix column j = k - gapAt - 1 is masked for j > q
      if (from < g.nk) p.rect(g.x + from * g.cw, g.y + q * g.ch, (g.nk - from) * g.cw - 1, Math.max(g.ch - 1, 1), "#f8fafc");
    }
    return regions;
  }
  R.addFigureType("attribution", drawMap);

  /* Bars on a −1…1 axis, one group per decoder layer: the method picked strong, the other pale. */
  function drawAgreement(p, w, spec) {
    const n = spec.labels.length, k = spec.series.length, bh = 14, gh = k * bh + 8, top = 56, lab = 64;
    const h = top + n * gh + 30;
    p.size(w, h);
    p.text(L.fit(spec.title, w - 92, 13, 600), 4, 12, { size: 13, weight: 600, color: C.ink });
    p.text(L.clip(spec.subtitle, Math.max(20, Math.floor(w / 6))), 4, 30, { size: 11, color: C.muted });
    let lx = 4;
    spec.series.forEach((s) => { p.rect(lx, 42, 14, 6, s.color); p.text(s.name, lx + 18, 45, { size: 10, color: C.text }); lx += 30 + L.textWidth(s.name, 10); });
    const x0 = lab, span = Math.max(60, w - lab - 50), X = (v) => x0 + ((v + 1) / 2) * span;
    for (const v of [-1, -0.5, 0, 0.5, 1]) {
      p.rect(X(v), top - 4, v === 0 ? 1.5 : 1, n * gh + 2, v === 0 ? C.muted : C.grid);
      p.text(String(v), X(v), top + n * gh + 12, { size: 10, color: C.muted, align: "center" });
    }
    spec.labels.forEach((label, i) => {
      const y = top + i * gh;
      p.text(label, x0 - 8, y + gh / 2 - 2, { size: 12, align: "right", color: C.ink });
      spec.series.forEach((s, j) => {
        const v = s.values[i], a = X(Math.min(0, v)), b = X(Math.max(0, v)), yy = y + j * bh + 2;
        p.rect(a, yy, Math.max(1, b - a), bh - 3, s.color);
        p.text(v.toFixed(2), v >= 0 ? b + 4 : a - 4, yy + (bh - 3) / 2, { size: 10, color: C.muted, align: v >= 0 ? "left" : "right" });
      });
    });
    return [];
  }
  R.addFigureType("attribution-agreement", drawAgreement);

  function mapSpec(t, d) {
    const T = d.T, S = d.S, m = d.methods[A.method], K = S + 1 + T, values = new Float32Array(T * K), hv = R.state.hover || {};
    for (let q = 0; q < T; q++) {
      let top = 0;
      for (let k = 0; k < S; k++) top = Math.max(top, Math.abs(m.source[q * S + k]));
      for (let j = 0; j <= q; j++) top = Math.max(top, Math.abs(m.prefix[q * T + j]));
      const scale = top > 0 ? 1 / top : 0;
      for (let k = 0; k < S; k++) values[q * K + k] = Math.abs(m.source[q * S + k]) * scale;
      for (let j = 0; j < T; j++) values[q * K + S + 1 + j] = Math.abs(m.prefix[q * T + j]) * scale;
    }
    const cols = t.source_pieces.concat([""], t.target_pieces.slice(0, T));
    const spec = { title: "Attribution of log p · " + METHODS[A.method], subtitle: "|attribution| per row ÷ its largest · left: French · right: English prefix read",
      rows: L.stepRows(t), cols, values, vmax: 1, cur: R.state.step, dimAfter: R.state.step, gapAt: S,
      hiRow: hv.tgt, hiCol: hv.src };
    const raw = (q, k) => (k < S ? m.source[q * S + k] : m.prefix[q * T + (k - S - 1)]);
    return { type: "attribution", spec, meta: { about: "attribution (" + METHODS[A.method] + ")" },
      describe: (q, k) => {
        if (k === S) return "gap: source pieces on the left, the English prefix on the right";
        const read = k < S ? "source " + cols[k] : "prefix " + cols[k];
        if (k > S && k - S - 1 > q) return `step ${q + 1} (${spec.rows[q]}) ← ${read}: not read yet at this step (0)`;
        return `step ${q + 1} (${spec.rows[q]}) ← ${read}: ${METHODS[A.method]} ${raw(q, k).toFixed(4)} (row share ${L.pct(values[q * K + k])} of its max)`;
      },
      onClick: (q) => { R.state.step = q; R.render(); } };
  }
  function agreementSpec(d) {
    const order = [A.method].concat(Object.keys(METHODS).filter((m) => m !== A.method));
    const series = order.map((m, i) => ({ name: METHODS[m], values: d.agreement[m], color: i ? C.soft : C.accent }));
    const labels = d.agreement[A.method].map((_, i) => "layer " + (i + 1));
    return { type: "attribution-agreement", spec: { title: "Attention vs attribution: rank agreement per decoder layer",
      subtitle: "Spearman ρ of |attribution over the source| and the layer's mean cross-attention, mean over steps", labels, series },
    meta: { about: "rank agreement of cross-attention and attribution" } };
  }

  // --- the view -------------------------------------------------------------------------------------------------
  function request(t) {
    const key = keyOf(t);
    if (A.cache.has(key) || A.pending.has(key) || A.failed.has(key)) return;
    A.pending.add(key);
    A.requests++;
    if (!R.explain("attribution", {})) { A.pending.delete(key); A.failed.add(key); }
  }
  function statusHtml(t, d) {
    const key = keyOf(t), state = d ? "ready" : A.failed.has(key) ? "failed" : "loading";
    const text = d ? `computed in ${(d.ms / 1000).toFixed(1)} s (IG ${d.steps} steps)` : state === "failed"
      ? 'the attribution failed (see the message) <button id="rg-attr-retry">retry</button>'
      : `computing… gradient × input and ${IG_STEPS} integrated-gradient steps over ${t.source_pieces.length} source and ${t.steps.length} prefix pieces; stepping works meanwhile`;
    return `<span id="rg-attr-status" data-state="${state}" data-requests="${A.requests}" data-loads="${A.loads}">${text}</span>`;
  }
  function caption(t) {
    const d = current();
    const select = `<label>method <select id="rg-attr-method">${Object.entries(METHODS).map(([m, l]) => `<option value="${m}"${m === A.method ? " selected" : ""}>${L.esc(l)}</option>`).join("")}</select></label>`;
    const json = `<button id="rg-attr-json" title="Download the attribution data of this translation as JSON"${d ? "" : " disabled"}>⤓ data JSON</button>`;
    let text = "";
    if (d) {
      const i = Math.min(R.state.step, d.T - 1), share = d.share[A.method][i], s = t.steps[i];
      const delta = d.f[i] - d.f0[i];
      text = `<b>Step ${i + 1}:</b> <span class="rg-q rg-out">${L.esc(s.piece)}</span> takes <b id="rg-attr-share" data-share="${share}">${L.pct(share)}</b> of its ` +
        `${L.esc(METHODS[A.method])} from the French and ${L.pct(1 - share)} from the English it had written. log p = ${f3(d.f[i])}; ` +
        `against the zero-embedding baseline (${f3(d.f0[i])}) that is a change of ${f3(delta)}, which integrated gradients split over the inputs ` +
        `(sum − change = ${f3(d.gap[i])}: the ${d.steps}-step approximation's gap). ` +
        `Attention only says where one sub-layer looks; attribution follows log p back through the whole network, residual paths included, ` +
        `so the two need not agree: the bars rank how far each layer's cross-attention orders the source pieces as attribution does ` +
        `(1: same order, 0: unrelated). The bar under each generated piece above is its step's source share (outlined: under 50 %).`;
    }
    return `<div class="rg-attr-bar">${select}${json}${statusHtml(t, d)}</div>${text}`;
  }
  R.addView("attribution", {
    label: "Attribution",
    controls: [],
    caption,
    onEnter: request,
    figures: (t) => { const d = current(); return d ? [["attribution", mapSpec(t, d)], ["agreement", agreementSpec(d)]] : []; },
  });

  // --- the share strip under the generated pieces, in every view ----------------------------------------------------
  function strip(t) {
    const root = R.root(); if (!root) return;
    const box = root.querySelector("#rg-tgt-chips"); if (!box) return;
    const d = current(), mark = d ? keyOf(t) + "|" + A.method : "";
    // chips are rebuilt by each load (regard.js), the same sentence again included: redraw only then
    if (box.dataset.attr === mark && (!d || box.querySelector(".rg-attr-cell"))) return;
    box.dataset.attr = mark;
    box.querySelectorAll(".rg-attr-cell").forEach((c) => c.remove());
    let legend = root.querySelector("#rg-attr-strip");
    box.classList.toggle("rg-attr-on", !!d);
    if (!d) { if (legend) legend.remove(); return; }
    const shares = d.share[A.method];
    let low = 0;
    box.querySelectorAll(".rg-chip").forEach((chip, i) => {
      if (i >= shares.length) return;
      const v = shares[i], cell = document.createElement("span");
      cell.className = "rg-attr-cell" + (v < 0.5 ? " rg-attr-low" : "");
      if (v < 0.5) low++;
      cell.dataset.step = String(i); cell.dataset.share = String(v);
      cell.style.background = shareColour(v);
      chip.title = `#${i + 1}: ${t.steps[i].piece} · source share ${L.pct(v)} (${METHODS[A.method]})`;
      chip.appendChild(cell);
    });
    if (!legend) { legend = document.createElement("div"); legend.id = "rg-attr-strip"; box.after(legend); }
    legend.dataset.cells = String(Math.min(shares.length, box.querySelectorAll(".rg-chip").length));
    legend.dataset.low = String(low); legend.dataset.method = URL_NAME[A.method];
    legend.innerHTML = `bar under each piece: the share of its ${L.esc(METHODS[A.method])} from the source` +
      `<span class="rg-attr-key" style="background:${shareColour(0)}"></span>0 %…100 %<span class="rg-attr-key" style="background:${shareColour(1)}"></span>` +
      ` · outlined: under 50 % (${low} of ${shares.length} steps)`;
  }
  R.onRender((t) => {
    strip(t);
    const fig = R.root() && R.root().querySelector('figure[data-fig="attribution"]'), d = current();
    if (fig && d) fig.dataset.cells = d.T + "x" + (d.S + 1 + d.T);
  });

  R.onExplain("attribution", (data, err) => {
    const t = R.trace();
    if (err || !data || !data.methods) {
      A.pending.forEach((key) => A.failed.add(key)); A.pending.clear();
      if (t) R.render();
      return;
    }
    const req = data.request || {}, key = (req.model || "") + "\u0001" + req.text + "\u0001" + (req.generated || []).join(",");
    A.pending.delete(key);
    A.cache.set(key, decode(data));
    while (A.cache.size > KEEP) A.cache.delete(A.cache.keys().next().value);
    A.loads++;
    if (t && key === keyOf(t)) R.render();
  });

  document.addEventListener("change", (e) => {
    if (e.target && e.target.id === "rg-attr-method" && e.target.value in METHODS) { A.method = e.target.value; R.render(); }
  });
  document.addEventListener("click", (e) => {
    const id = e.target && e.target.id, t = R.trace(); if (!t) return;
    if (id === "rg-attr-retry") { A.failed.delete(keyOf(t)); R.render(); }
    if (id === "rg-attr-json") {
      const d = current(); if (!d) return;
      const out = Object.assign({ source_text: t.source_text, translation: t.translation, source_pieces: t.source_pieces,
        decoder_inputs: t.target_pieces.slice(0, d.T), generated: t.steps.map((s) => s.piece), method_shown: A.method }, d.raw);
      L.download(L.baseName(t) + "-attribution.json", new Blob([JSON.stringify(out)], { type: "application/json" }));
    }
  });
  R.urlKeys((q) => { if (q.get("view") === "attribution" || A.method !== "integrated_gradients") q.set("attr", URL_NAME[A.method]); },
    (q) => { const m = Object.keys(URL_NAME).find((k) => URL_NAME[k] === q.get("attr")); if (m) A.method = m; });
})();
