// The softmax family's native kernels (softmax, log-softmax and their backward passes, crossEntropy, its backward pass
// and the fused bf16 form) over rows whose widths reach every loop (whole blocks of 16 and of 8, tails) and values
// from tiny to huge, NaN and infinities among them, printed as one JSON line of digests. Run it with and without
// AUTOGLM_NO_AVX512=1: the 16-lane exponentials (native/gelu512.cc sum_exp_avx512, exp_avx512) must give the 8-lane
// loops' bits.
import { createHash } from 'node:crypto';
import { loadNativeBackend } from '../../src/backend/native.js';

const be = loadNativeBackend();
let s = 7;
const rnd = (): number => {
  s = (Math.imul(s, 1103515245) + 12345) >>> 0;
  return s / 4294967296;
};
const digest = (a: ArrayBufferView): string => createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex').slice(0, 16);
const out: Record<string, string> = {};
for (const cols of [512, 37, 24, 8, 3, 50257]) {
  const rows = cols > 1000 ? 3 : 41, n = rows * cols;
  const x = Float32Array.from({ length: n }, () => (rnd() - 0.5) * (rnd() < 0.9 ? 16 : 200));
  if (cols > 3) [NaN, Infinity, -Infinity, 88.5, -103, 1e-30].forEach((v, i) => { x[(i + 1) * cols + 2] = v; });
  const t = Int32Array.from({ length: rows }, (_, r) => (r * 7) % cols);
  t[1] = -100; // an ignored row
  const y = new Float32Array(n), ly = new Float32Array(n), dy = Float32Array.from({ length: n }, () => rnd() - 0.5);
  const dx = new Float32Array(n), ldx = new Float32Array(n);
  be.softmax(x, rows, cols, y, false);
  be.softmax(x, rows, cols, ly, true);
  be.softmaxBackward(y, dy, rows, cols, dx, false);
  be.softmaxBackward(ly, dy, rows, cols, ldx, true);
  const loss = new Float32Array(rows), logp = new Float32Array(n), dl = new Float32Array(n), dloss = Float32Array.from({ length: rows }, () => rnd());
  be.crossEntropy(x, t, rows, cols, -100, 0.1, loss, logp);
  be.crossEntropyBackward(logp, t, rows, cols, -100, 0.1, dloss, dl);
  const k = `cols ${cols}`;
  Object.assign(out, { [`${k} softmax`]: digest(y), [`${k} logSoftmax`]: digest(ly), [`${k} softmaxBackward`]: digest(dx),
    [`${k} logSoftmaxBackward`]: digest(ldx), [`${k} crossEntropy`]: digest(loss) + digest(logp), [`${k} crossEntropyBackward`]: digest(dl) });
  if (be.crossEntropyGradBf16) {
    const l2 = new Float32Array(rows), d16 = new Uint16Array(n);
    be.crossEntropyGradBf16(x.slice(), t, rows, cols, -100, 0.1, dloss, l2, d16);
    out[`${k} crossEntropyGradBf16`] = digest(l2) + digest(d16);
  }
}
console.log(JSON.stringify(out));
