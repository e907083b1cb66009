// Prints the bits of the native backend's row-reducing results (column sums of a tall matrix, a LoRA factor's
// weight gradient, loraRows' gradient of B, loraOuter, the norms' parameter gradients) for the thread count in AUTOGLM_NUM_THREADS: native-smoke.test.ts checks they do not depend on it.
import { createHash } from 'node:crypto';
import { loadNativeBackend } from '../../src/backend/native.js';

const be = loadNativeBackend();
let seed = 7;
const rand = (n: number): Float32Array => Float32Array.from({ length: n }, () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 4294967296 - 0.5;
});
const hex = (a: Float32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');
const x = rand(2049 * 300);
const cols = new Float32Array(300);
be.reduce('sum', x, 1, 2049, 300, cols);
// dA = G^T X for G (2049, 8), X (2049, 300): the rank-8 factor's weight gradient (a skinny product over rows)
const g = rand(2049 * 8), dA = new Float32Array(8 * 300);
be.matmul({ a: g, b: x, out: dA, dtype: 'f32', batch: 1, M: 8, N: 300, K: 2049, transA: true, transB: false, strideA: 0, strideB: 0, alpha: 1, beta: 0 });
// loraRows over 2049 rows of 300 columns (9 row chunks), rank 8: its outer product gH = bf16(x)^T H
const toBf = (f: Float32Array): Uint16Array => { const h = new Uint16Array(f.length); be.cast(f, 'f32', h, 'bf16'); return h; };
const dst = new Uint16Array(2049 * 308), h = new Uint16Array(2049 * 8), gH = new Float32Array(300 * 8);
be.loraRows!(x, 2049, 300, dst, toBf(rand(8 * 300)), 8, 2, h, toBf(rand(2049 * 8)), gH, 308);
const outer = new Float32Array(8 * 300);
be.loraOuter!(dst, 2049, 300, 308, h, 8, outer);
// LayerNorm's backward from its output and RMSNorm's from its input: dgamma and dbeta sum over the 2049 rows
const dy = rand(2049 * 300), gamma = rand(300).map((v) => 1 + v), beta = rand(300), rstd = rand(2049).map((v) => 1.5 + v);
const dx = new Float32Array(2049 * 300), dg = new Float32Array(300), db = new Float32Array(300);
be.layerNormBackwardFromOutput(dy, x, gamma, beta, rstd, 2049, 300, dx, dg, db);
const rdx = new Float32Array(2049 * 300), rdg = new Float32Array(300);
be.rmsNormBackward(dy, x, gamma, rstd, 2049, 300, rdx, rdg);
const norms = createHash('sha256').update(hex(dx) + hex(dg) + hex(db) + hex(rdx) + hex(rdg)).digest('hex');
console.log(JSON.stringify({ threads: be.numThreads(), cols: hex(cols), dA: hex(dA), loraRows: hex(gH) + Buffer.from(h.buffer).toString('hex') + hex(outer), norms }));
