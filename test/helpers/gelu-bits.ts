// The MLP activations (gelu, gelu_tanh, silu), value and derivative, from every native entry point (unary, unaryBf16,
// unaryBf16Grad, unaryBackward) over values that reach each branch (|x| below and above sqrt 2 and 2 sqrt 2 for the
// normal cdf, both signs for the sigmoid, huge, tiny, infinite, NaN, odd lengths for the tails), printed as one JSON
// line of digests. Run it with and without AUTOGLM_NO_AVX512=1: the AVX-512 path (native/gelu512.cc) must give the
// AVX2 path's bits.
import { createHash } from 'node:crypto';
import { loadNativeBackend } from '../../src/backend/native.js';

const be = loadNativeBackend();
let s = 1;
const rnd = (): number => {
  s = (Math.imul(s, 1103515245) + 12345) >>> 0;
  return s / 4294967296;
};
const n = (1 << 18) + 13;
const x = new Float32Array(n);
for (let i = 0; i < n; i++) {
  const r = rnd();
  x[i] = (rnd() - 0.5) * (r < 0.5 ? 8 : r < 0.75 ? 40 : r < 0.9 ? 2 : 1e4);
}
[NaN, Infinity, -Infinity, 0, -0, 1e-30, -1e-30, 14.5, -14.5, 1.4142135, -1.4142135, 2.828427, -2.828427, 3e38, -3e38, 1e-45]
  .forEach((v, i) => { x[i * 7] = v; });
const digest = (a: ArrayBufferView): string => createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex').slice(0, 16);
const out: Record<string, string> = {};
for (const op of ['gelu', 'gelu_tanh', 'silu'] as const) {
  const y = new Float32Array(n), yb = new Uint16Array(n), y2 = new Uint16Array(n), d2 = new Uint16Array(n), dx = new Float32Array(n);
  be.unary(op, x, y);
  be.unaryBf16!(op, x, yb);
  be.unaryBf16Grad!(op, x, y2, d2);
  be.unaryBackward(op, x, x, new Float32Array(n).fill(1), dx);
  // odd lengths: the tails of both paths
  const short = x.subarray(3, 3 + 37), ys = new Float32Array(37), ys2 = new Uint16Array(37), ds2 = new Uint16Array(37);
  be.unary(op, short, ys);
  be.unaryBf16Grad!(op, short, ys2, ds2);
  Object.assign(out, { [`${op} unary`]: digest(y), [`${op} unaryBf16`]: digest(yb), [`${op} unaryBf16Grad y`]: digest(y2),
    [`${op} unaryBf16Grad d`]: digest(d2), [`${op} unaryBackward`]: digest(dx), [`${op} tails`]: digest(ys) + digest(ys2) + digest(ds2) });
}
console.log(JSON.stringify(out));
