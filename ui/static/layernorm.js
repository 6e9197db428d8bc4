/* The "LayerNorm" view of the explorer: the residual stream around every sub-layer, post-LN next to pre-LN.
 *
 * On entering the view (and for each new trace) it asks the server once for regard.explain("layernorm"):
 * {models: [{model, norm, translation, source_pieces, target_pieces, generated, stats}]}, every loaded model
 * on the same sentence (the trace's model on the trace's ids, each other on its own greedy translation);
 * ``stats`` is model/explain/residual.py's dict (its docstring has the layout). Figures follow the step
 * slider (decoder position) and the hovered or clicked source piece (encoder; else the mean over pieces).
 * URL key: lnsrc = the clicked source piece (1-based).
 */
(function () {
  "use strict";
  const R = window.regard;
  if (!R || !R.addView || R.layernorm) return;
  const L = R.lib, C = L.C;
  const LN = { key: null, data: null, status: "idle", src: null, urlSrc: null }; // src: the clicked source piece, or null
  R.layernorm = LN;

  const style = document.createElement("style");
  style.textContent = `#rg-figures > figure.rg-fig[data-fig^="ln-0-"], #rg-figures > figure.rg-fig[data-fig^="ln-1-"] { flex: 1 1 40%; }
    .rg-ln-models { display: flex; flex-wrap: wrap; gap: 4px 16px; margin-top: 4px; }
    .rg-ln-model { flex: 1 1 260px; min-width: 0; overflow-wrap: anywhere; }
    .rg-ln-norm { font-weight: 700; } .rg-ln-num { font-variant-numeric: tabular-nums; font-weight: 600; }
    #rg-ln-json { font-size: 0.75rem; padding: 1px 8px; border-radius: 6px; border: 1px solid #cbd5e1; background: #f8fafc; cursor: pointer; }`;
  document.head.appendChild(style);

  const ids = (t) => t.steps.map((s) => s.token_id);
  const keyOf = (t) => (t.model || "") + "\u0001" + t.source_text + "\u0001" + ids(t).join(",");
  const normName = (m) => (m.norm === "pre" ? "pre-LN" : "post-LN");
  const SHORT = { "self-attention": "self", "cross-attention": "cross", "feed-forward": "FFN" };

  /* One stack's arrays, decoded once per answer. */
  function decodeStack(st) {
    const [P, Ly, K, N] = st.stats.shape;
    return { P, L: Ly, K, N, names: st.sublayers, stats: L.f32(st.stats), emb: L.f32(st.embedding), out: L.f32(st.output),
      gain: L.f32(st.gain_rms), finalGain: st.final_gain_rms };
  }
  function prepare(data) {
    const models = data.models.map((m) => {
      const names = m.stats.stat_names, col = Object.fromEntries(names.map((n, i) => [n, i]));
      return Object.assign({}, m, { col, d: m.stats.d_model, enc: decodeStack(m.stats.encoder), dec: decodeStack(m.stats.decoder) });
    });
    // post-LN on the left, pre-LN on the right, whichever model the trace is from
    const rank = (m) => (m.norm === "post" ? 0 : 1);
    return Object.assign({}, data, { models: models.slice().sort((a, b) => rank(a) - rank(b)) });
  }

  /* Per sub-layer in depth order (L*K values): stat ``name`` at position ``pos`` (null: mean over positions). */
  function series(m, s, name, pos) {
    const c = m.col[name], out = new Array(s.L * s.K).fill(0), rows = pos == null ? [...Array(s.P).keys()] : [pos];
    for (const p of rows) for (let l = 0; l < s.L; l++) for (let k = 0; k < s.K; k++) out[l * s.K + k] += s.stats[((p * s.L + l) * s.K + k) * s.N + c];
    return out.map((v) => v / rows.length);
  }
  const at = (arr, pos) => (pos == null ? arr.reduce((a, v) => a + v, 0) / arr.length : arr[pos]);
  const fmt2 = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));

  /* Which decoder position and source piece each model's figures show. The trace's model follows the step
     slider exactly; another model has its own translation, so its step is clipped to its length. */
  function positions(t, m) {
    const own = m.model === t.model, T = m.dec.P;
    const dec = Math.min(R.state.step, T - 1);
    const hover = R.state.hover && R.state.hover.src != null ? R.state.hover.src : LN.src;
    const same = hover != null && hover < m.enc.P && m.source_pieces[hover] === t.source_pieces[hover];
    return { own, dec, enc: same ? hover : null };
  }
  /* The x axis: sub-layers in depth order (linesFigure numbers them 1..L*K). */
  function xTitle(s) {
    return "sub-layer: " + s.names.map((n) => SHORT[n] || n).join(", ") + " × " + s.L + " layers";
  }
  function normFigure(m, s, pos, where) {
    const gain = Array.from(s.gain, (g) => Math.sqrt(m.d) * g);
    const list = m.norm === "pre"
      ? [["‖x‖", "residual_in", C.accent], ["‖x+y‖", "residual_out", C.link], ["‖y‖", "sublayer_out", C.second], ["‖LN(x)‖", "ln_out", C.muted]]
      : [["‖x‖", "residual_in", C.accent], ["‖x+y‖", "residual_sum", C.hi], ["‖LN(x+y)‖", "residual_out", C.link], ["‖y‖", "sublayer_out", C.second]];
    const lines = list.map(([name, stat, color]) => ({ name, ys: series(m, s, stat, pos), color }));
    lines.push({ name: "√d·g", ys: gain, color: "#94a3b8", dash: true });
    const sub = m.norm === "pre" ? "x in, x+y out (no norm on the stream); dashed √d·LN gain" : "x in, LN(x+y) out; dashed: √d × the LN's rms gain";
    return { title: normName(m) + " · " + where + ": norms", subtitle: sub, series: lines, xTitle: xTitle(s), fmt: fmt2 };
  }
  function lnFigure(m, s, pos, where) {
    const mean = series(m, s, "ln_in_mean", pos), std = series(m, s, "ln_in_std", pos);
    const lo = Math.min(0, ...mean, ...std); // linesFigure's axis starts at 0: shift, and label the ticks back
    const shift = (ys) => ys.map((v) => v - lo);
    return { title: normName(m) + " · " + where + ": LN input", subtitle: "what LayerNorm removes: mean, std over " + m.d + " features of " + (m.norm === "pre" ? "x" : "x+y"),
      series: [{ name: "mean", ys: shift(mean), color: C.accent }, { name: "std", ys: shift(std), color: C.link }],
      xTitle: xTitle(s), fmt: (v) => fmt2(v + lo) };
  }
  function ratioFigure(m, s, pos, where) {
    return { title: normName(m) + " · " + where + ": ‖y‖/‖x‖", subtitle: "a sub-layer's output vs the stream it is added to",
      series: [{ name: "‖y‖ / ‖x‖", ys: series(m, s, "ratio", pos), color: C.second }], xTitle: xTitle(s), fmt: fmt2 };
  }

  function figures(t) {
    if (!LN.data || LN.key !== keyOf(t)) return [];
    const host = R.root() && R.root().querySelector("#rg-figures"), wide = host && host.clientWidth >= 640 && LN.data.models.length > 1;
    const out = [];
    const per = LN.data.models.map((m, i) => {
      const p = positions(t, m), tag = wide ? "ln-" + i + "-" : "ln-s" + i + "-";
      const stepText = "decoder step " + (p.dec + 1);
      const srcText = p.enc == null ? "encoder (mean)" : "encoder " + m.source_pieces[p.enc];
      const about = (what) => ({ about: "LayerNorm · " + what + " · " + m.model + " (" + normName(m) + ")" });
      return [
        [tag + "dec-norm", { type: "lines", spec: normFigure(m, m.dec, p.dec, stepText), meta: about("decoder residual norms") }],
        [tag + "dec-ln", { type: "lines", spec: lnFigure(m, m.dec, p.dec, stepText), meta: about("decoder LayerNorm input mean and std") }],
        [tag + "dec-ratio", { type: "lines", spec: ratioFigure(m, m.dec, p.dec, stepText), meta: about("decoder sub-layer ratio") }],
        [tag + "enc-norm", { type: "lines", spec: normFigure(m, m.enc, p.enc, srcText), meta: about("encoder residual norms") }],
        [tag + "enc-ln", { type: "lines", spec: lnFigure(m, m.enc, p.enc, srcText), meta: about("encoder LayerNorm input mean and std") }],
        [tag + "enc-ratio", { type: "lines", spec: ratioFigure(m, m.enc, p.enc, srcText), meta: about("encoder sub-layer ratio") }],
      ];
    });
    // side by side: interleaved, so each row of the flex box holds the same figure of both models
    if (wide) for (let j = 0; j < per[0].length; j++) per.forEach((f) => { if (f[j]) out.push(f[j]); });
    else per.forEach((f) => out.push(...f));
    return out;
  }

  function modelBlock(t, m) {
    const p = positions(t, m), s = m.dec, last = (s.L - 1) * s.K + s.K - 1;
    const stream = series(m, s, "residual_out", p.dec), first = s.stats[((p.dec * s.L) * s.K) * s.N + m.col.residual_in];
    const decOut = s.out[p.dec], encOut = at(m.enc.out, p.enc);
    return `<div class="rg-ln-model" data-model="${L.esc(m.model)}" data-norm="${L.esc(m.norm)}">` +
      `<span class="rg-ln-norm">${normName(m)}</span> · ${L.esc(m.model)}${p.own ? " (this translation)" : ""}: “${L.esc(m.translation)}”<br>` +
      `decoder step ${p.dec + 1}${p.own ? "" : " of its own " + s.P}: stream ‖x‖ <span class="rg-ln-num" data-stat="dec-embedding">${fmt2(first)}</span> at the embeddings → ` +
      `<span class="rg-ln-num" data-stat="dec-last">${fmt2(stream[last])}</span> after the last sub-layer (×${(stream[last] / first).toFixed(2)}); ` +
      `decoder output ‖h‖ <span class="rg-ln-num" data-stat="dec-output" data-step="${p.dec}">${fmt2(decOut)}</span>; ` +
      `encoder output ‖memory‖ ${p.enc == null ? "(mean)" : "(piece " + (p.enc + 1) + ")"} <span class="rg-ln-num" data-stat="enc-output">${fmt2(encOut)}</span>; √d = ${fmt2(Math.sqrt(m.d))}</div>`;
  }
  function caption(t) {
    const intro = "<b>What LayerNorm does.</b> Each sub-layer adds its output y to the residual stream x. " +
      "<b>Post-LN</b> (the paper's) re-normalises x + y after every sub-layer, so the stream's norm stays near √d·gain (dashed) and a sub-layer's ‖y‖/‖x‖ can stay large; " +
      "<b>pre-LN</b> normalises only each sub-layer's input, so the stream grows with depth and each sub-layer's relative contribution ‖y‖/‖x‖ shrinks (the final LayerNorm rescales it). " +
      "Decoder figures follow the step; encoder figures show the mean over source pieces, or the piece you hover or click.";
    if (LN.status === "failed") return intro + `<br><span id="rg-ln-status">The LayerNorm statistics could not be computed (see the message): open another view and come back, or translate again, to retry.</span>`;
    if (!LN.data || LN.key !== keyOf(t)) return intro + `<br><span id="rg-ln-status">Measuring the residual stream of every loaded model on this sentence…</span>`;
    const models = LN.data.models, norms = new Set(models.map((m) => m.norm));
    const note = models.length < 2 ? "Only one model is loaded: the post-LN vs pre-LN comparison needs both checkpoints."
      : norms.size < 2 ? "Both loaded models use " + normName(models[0]) + ": load a post-LN and a pre-LN checkpoint to compare them." : "";
    return intro + ` <button id="rg-ln-json" title="Download the statistics of every model as JSON">⤓ data JSON</button>` +
      (note ? `<br><span id="rg-ln-status">${note}</span>` : "") +
      `<div class="rg-ln-models">${models.map((m) => modelBlock(t, m)).join("")}</div>`;
  }

  /* Each render of the view: one request per trace. A failure is not retried until the view is left and
     entered again (or a new trace arrives), so a broken answer never loops. */
  function onEnter(t) {
    const key = keyOf(t);
    if (key === LN.key) return;
    LN.src = LN.urlSrc; LN.urlSrc = null; // a restored address pins its piece; a new translation starts at the mean
    LN.key = key; LN.data = null; LN.status = "loading";
    if (!R.explain("layernorm", { both: true })) LN.status = "failed";
  }
  R.onRender(() => { if (R.state.view !== "layernorm" && LN.status === "failed") { LN.key = null; LN.status = "idle"; } });
  R.onExplain("layernorm", (data, err) => {
    const t = R.trace();
    if (err || !data || !Array.isArray(data.models)) { if (LN.status === "loading") LN.status = "failed"; if (R.state.view === "layernorm") R.render(); return; }
    const req = data.request || {};
    if (!t || req.model !== t.model || String(req.generated) !== String(ids(t))) return; // an answer for an older trace
    LN.data = prepare(data); LN.status = "ready";
    if (R.state.view === "layernorm") R.render();
  });

  R.addView("layernorm", { label: "LayerNorm", figures, caption, onEnter, controls: [] });

  // a click on a source piece in this view pins the encoder figures to it (a second click: back to the mean)
  document.addEventListener("click", (e) => {
    if (e.target.closest && e.target.closest("#rg-ln-json")) {
      const t = R.trace(); if (!t || !LN.data) return;
      const raw = { what: "layernorm", request: LN.data.request, models: LN.data.models.map((m) => ({ model: m.model, norm: m.norm, translation: m.translation,
        source_pieces: m.source_pieces, target_pieces: m.target_pieces, generated: m.generated, stats: m.stats })) };
      L.download(L.baseName(t) + "-layernorm.json", new Blob([JSON.stringify(raw)], { type: "application/json" }));
      return;
    }
    const chip = e.target.closest && e.target.closest("#rg-src-chips .rg-chip");
    if (!chip || R.state.view !== "layernorm") return;
    const i = +chip.dataset.src; LN.src = LN.src === i ? null : i; R.render();
  });
  R.urlKeys((q) => { if (R.state.view === "layernorm" && LN.src != null) q.set("lnsrc", LN.src + 1); },
    (q) => { const v = q.get("lnsrc"); LN.urlSrc = v != null && /^\d+$/.test(v) && +v > 0 ? +v - 1 : null; });
})();
