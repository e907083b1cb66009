/**
 * GEMM micro-benchmark of the wasm kernels on one thread: the products of the block workload's step (every Linear
 * forward, input gradient and weight gradient, and attention's per-head products as a batch of 32), each timed on
 * its own, and their sum. For tuning wasm/gemm.cc: point it at any build of the single-threaded module.
 *   node --import tsx scripts/bench-wasm-gemm.ts [path/to/autoglm-st.wasm] [--ms 300]
 * Prints per shape the best-of wall time and GFLOP/s, and the GFLOP/s of the whole set (time-weighted).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { instantiateKernels } from '../src/backend/wasm/instantiate.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : dflt);
const file = args.find((a) => a.endsWith('.wasm')) ?? path.join(root, 'build', 'wasm', 'autoglm-st.wasm');
const minMs = Number(opt('ms', '300'));

const w = instantiateKernels(new WebAssembly.Module(readFileSync(file)), false, 1);
const x = w.x;

interface Shape { name: string; batch: number; M: number; N: number; K: number; ta: boolean; tb: boolean }
const shapes: Shape[] = [];
// Linear(nIn, nOut) on 1024 rows: y = x W^T; dx = dy W; dW = dy^T x
for (const [nIn, nOut, what] of [[256, 768, 'qkv'], [256, 256, 'proj'], [256, 1024, 'fc1'], [1024, 256, 'fc2'], [256, 512, 'head']] as const) {
  shapes.push({ name: `${what} fwd`, batch: 1, M: 1024, N: nOut, K: nIn, ta: false, tb: true });
  shapes.push({ name: `${what} dx`, batch: 1, M: 1024, N: nIn, K: nOut, ta: false, tb: false });
  shapes.push({ name: `${what} dW`, batch: 1, M: nOut, N: nIn, K: 1024, ta: true, tb: false });
}
// attention, 32 (batch, head) pairs of T 128, head dim 64
shapes.push({ name: 'attn S=QK^T', batch: 32, M: 128, N: 128, K: 64, ta: false, tb: true });
shapes.push({ name: 'attn O=PV', batch: 32, M: 128, N: 64, K: 128, ta: false, tb: false });
shapes.push({ name: 'attn dV=P^T dO', batch: 32, M: 128, N: 64, K: 128, ta: true, tb: false });

function rand(n: number): Float32Array {
  const a = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) a[i] = ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5;
  return a;
}

console.log(`${path.relative(root, file)}, 1 thread, best of >= ${minMs} ms per shape`);
let totalMs = 0, totalFlops = 0;
for (const s of shapes) {
  const { batch, M, N, K } = s;
  w.reset();
  const pa = w.put(rand(batch * M * K)), pb = w.put(rand(batch * K * N)), po = w.reserve(batch * M * N * 4);
  const run = () => x.ag_matmul(pa, pb, po, 0, 0, 0, batch, M, N, K, s.ta ? 1 : 0, s.tb ? 1 : 0, M * K, K * N, 1, 0, 0);
  run();
  let best = Infinity, spent = 0, n = 0;
  while (spent < minMs || n < 5) {
    const t0 = performance.now();
    run();
    const dt = performance.now() - t0;
    best = Math.min(best, dt);
    spent += dt;
    n++;
  }
  const flops = 2 * batch * M * N * K;
  totalMs += best;
  totalFlops += flops;
  console.log(`${s.name.padEnd(16)} ${`${batch}x${M}x${K}x${N}${s.ta ? ' tA' : ''}${s.tb ? ' tB' : ''}`.padEnd(22)} ${best.toFixed(3).padStart(8)} ms ${(flops / best / 1e6).toFixed(1).padStart(6)} GFLOP/s`);
}
console.log(`all: ${totalMs.toFixed(2)} ms, ${(totalFlops / totalMs / 1e6).toFixed(1)} GFLOP/s`);
