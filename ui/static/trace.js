/* The one decoder of Regard's arrays (model/trace_json.py encode_array: uint8 + scale, or float32 bytes),
 * the head selection over them and the colour scale of an attention weight, shared by the explorer
 * (regard.js), the What if views (whatif.js) and the explanation panels. Loaded before them.
 */
(function () {
  "use strict";
  if (window.regardTrace) return;
  const STOPS = [[0, [248, 250, 252]], [0.1, [224, 231, 255]], [0.35, [165, 180, 252]], [0.65, [99, 102, 241]], [1, [30, 27, 75]]];
  const LUT = Array.from({ length: 256 }, (_, i) => {
    const v = i / 255; let j = 1;
    while (j < STOPS.length - 1 && STOPS[j][0] < v) j++;
    const [a, ca] = STOPS[j - 1], [b, cb] = STOPS[j], f = (v - a) / (b - a || 1);
    return "rgb(" + ca.map((c, k) => Math.round(c + f * (cb[k] - c))).join(",") + ")";
  });
  /* The colour of a weight in [0, 1] (clamped). */
  const colour = (v) => LUT[Math.max(0, Math.min(255, Math.round(v * 255)))];

  function bytes(b64) {
    const bin = atob(b64), out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  /* An encoded array -> {shape, scale, data}: value = data * scale (uint8 codes, or floats with scale 1). */
  function decodeArray(item) {
    const data = item.dtype === "uint8" ? bytes(item.data) : Float32Array.from(item.data.flat(Infinity));
    return { shape: item.shape, scale: item.scale, data };
  }
  /* A float32 array sent as little-endian bytes (every browser's typed arrays are). */
  function f32(item) {
    const b = bytes(item.data);
    return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  }
  /* From a decoded array whose axis idx.length is the heads: the block after the heads at leading indices
   * idx, of one head or the mean over heads ("mean"), as floats. Codes are summed first, then scaled once. */
  function headMap(a, idx, head) {
    const H = a.shape[idx.length];
    let n = 1, off = 0, size = a.data.length;
    for (let k = idx.length + 1; k < a.shape.length; k++) n *= a.shape[k];
    idx.forEach((i, k) => { size /= a.shape[k]; off += i * size; });
    const out = new Float32Array(n);
    if (head === "mean") {
      for (let h = 0; h < H; h++) { const o = off + h * n; for (let i = 0; i < n; i++) out[i] += a.data[o + i]; }
      for (let i = 0; i < n; i++) out[i] *= a.scale / H;
    } else {
      const o = off + head * n; for (let i = 0; i < n; i++) out[i] = a.data[o + i] * a.scale;
    }
    return out;
  }
  window.regardTrace = { LUT, colour, bytes, decodeArray, f32, headMap };
})();
