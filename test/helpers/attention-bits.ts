// The f32 attention kernels, forward and backward, over shapes that reach every tile of native/small_gemm.h (6-row
// blocks and their remainders, 16-column panels and tails of 1-15 columns, head dims 8-80, packed B), with and without
// causality, a key mask, packed rows, grouped-query heads and a long-row case that goes through BLAS, printed as one
// JSON line of digests. Run it with and without AUTOGLM_NO_AVX512=1: the AVX-512 tiles must give the AVX2 tiles' bits.
import { createHash } from 'node:crypto';
import { loadNativeBackend } from '../../src/backend/native.js';
import type { AttentionShape } from '../../src/backend/backend.js';

const be = loadNativeBackend();
let s = 7;
const rnd = (): number => {
  s = (Math.imul(s, 1103515245) + 12345) >>> 0;
  return s / 4294967296 - 0.5;
};
const fill = (n: number): Float32Array => Float32Array.from({ length: n }, () => rnd() * 4);
const digest = (...as: Float32Array[]): string => {
  const h = createHash('sha256');
  for (const a of as) h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  return h.digest('hex').slice(0, 16);
};

interface Case { B: number; H: number; Hkv: number; T: number; D: number; causal: boolean; mask?: boolean; doc?: number }
const cases: Case[] = [
  { B: 4, H: 4, Hkv: 4, T: 32, D: 64, causal: false },
  { B: 2, H: 3, Hkv: 3, T: 37, D: 40, causal: true },
  { B: 3, H: 2, Hkv: 2, T: 23, D: 8, causal: false, mask: true },
  { B: 2, H: 4, Hkv: 2, T: 50, D: 80, causal: true },
  { B: 2, H: 2, Hkv: 2, T: 64, D: 32, causal: true, doc: 13 },
  { B: 1, H: 1, Hkv: 1, T: 600, D: 64, causal: true },
];
const out: Record<string, string> = {};
for (const c of cases) {
  const { B, H, Hkv, T, D } = c;
  // (B, T, H, D) layouts, as a projection's output is read in place
  const q = fill(B * T * H * D), k = fill(B * T * Hkv * D), v = fill(B * T * Hkv * D);
  const shape: AttentionShape = {
    B, H, Hkv, Tq: T, Tk: T, D, Dv: D, scale: 1 / Math.sqrt(D), causal: c.causal,
    qStrides: [T * H * D, D, H * D], kStrides: [T * Hkv * D, D, Hkv * D], vStrides: [T * Hkv * D, D, Hkv * D],
    outStrides: [T * H * D, D, H * D],
  };
  const mask = c.mask ? Float32Array.from({ length: B * T }, (_, i) => (i % T >= T - 5 - (i / T | 0) ? 1 : 0)) : null;
  const first = c.doc ? Int32Array.from({ length: B * T }, (_, i) => (i % T) - ((i % T) % c.doc!)) : null;
  const o = new Float32Array(B * T * H * D), stats = new Float32Array(B * H * T * 2);
  be.attention(shape, q, k, v, mask, first, o, stats);
  const dout = fill(o.length), dq = new Float32Array(q.length), dk = new Float32Array(k.length), dv = new Float32Array(v.length);
  be.attentionBackward(shape, q, k, v, mask, first, stats, dout, shape.outStrides, dq, dk, dv);
  out[`B${B} H${H}/${Hkv} T${T} D${D}${c.causal ? ' causal' : ''}${c.mask ? ' mask' : ''}${c.doc ? ` doc${c.doc}` : ''}`] = digest(o, stats, dq, dk, dv);
}
console.log(JSON.stringify(out));
