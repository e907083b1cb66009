/**
 * Kernel micro-benchmarks for the native backend (and the portable one with --portable):
 *   node --import tsx scripts/bench-kernels.ts [--portable] [--quick]
 * GEMM GFLOP/s for f32 and bf16 on the shapes of a BERT-base-sized layer, a batched attention product, and
 * elementwise / row-kernel throughput on 1M elements. OPENBLAS_CORETYPE and AUTOGLM_NUM_THREADS are honoured.
 */
import { loadNativeBackend } from '../src/backend/native.js';
import type { Backend } from '../src/backend/backend.js';

const args = new Set(process.argv.slice(2));
let be: Backend;
if (args.has('--portable')) {
  const mod = (await import('../src/backend/portable.js')) as { PortableBackend: new () => Backend };
  be = new mod.PortableBackend();
} else {
  be = loadNativeBackend();
}
const quick = args.has('--quick');
console.log(be.describe());

function rand(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() * 2 - 1;
  return a;
}
function toBf16(a: Float32Array): Uint16Array {
  const o = new Uint16Array(a.length);
  be.cast(a, 'f32', o, 'bf16');
  return o;
}
/** Best-of time in ms of fn, repeated until ~minMs elapsed (at least `min` runs). */
function time(fn: () => void, minMs = quick ? 150 : 600, min = 3): number {
  fn();
  let best = Infinity;
  let total = 0;
  let runs = 0;
  while (total < minMs || runs < min) {
    const t0 = performance.now();
    fn();
    const dt = performance.now() - t0;
    best = Math.min(best, dt);
    total += dt;
    runs++;
  }
  return best;
}

const shapes: Array<[number, number, number, number]> = [
  [1, 512, 512, 512], [1, 2048, 768, 768], [1, 2048, 768, 3072], [1, 2048, 3072, 768], [32, 128, 128, 64],
];
for (const dtype of (args.has('--elem') ? [] : args.has('--f32') ? ['f32'] : ['f32', 'bf16']) as Array<'f32' | 'bf16'>) {
  for (const [batch, M, N, K] of shapes) {
    const a32 = rand(batch * M * K), b32 = rand(batch * K * N);
    const a = dtype === 'f32' ? a32 : toBf16(a32), b = dtype === 'f32' ? b32 : toBf16(b32);
    const out = new Float32Array(batch * M * N);
    for (const [tA, tB] of [[false, false], [false, true]] as const) {
      if (batch > 1 && !tB) continue;
      const ms = time(() => be.matmul({ a, b, out, dtype, batch, M, N, K, transA: tA, transB: tB, strideA: M * K,
        strideB: K * N, alpha: 1, beta: 0 }));
      const gf = (2 * batch * M * N * K) / (ms * 1e6);
      console.log(`matmul ${dtype} ${batch > 1 ? `${batch}x` : ''}(${M},${N},${K})${tB ? ' B^T' : '    '}: ${gf.toFixed(1).padStart(6)} GFLOP/s  (${ms.toFixed(2)} ms)`);
    }
  }
}

if (args.has('--gemm') || args.has('--f32')) process.exit(0);
const N = 1 << 20;
const x = rand(N), y = new Float32Array(N), dy = rand(N), dx = new Float32Array(N);
const report = (name: string, ms: number, n = N): void => {
  console.log(`${name.padEnd(26)} ${(n / (ms * 1e3)).toFixed(0).padStart(6)} M elem/s  (${ms.toFixed(3)} ms)`);
};
for (const op of ['exp', 'tanh', 'sigmoid', 'gelu', 'gelu_tanh', 'silu'] as const) {
  report(`unary ${op}`, time(() => be.unary(op, x, y)));
  if (op === 'gelu' || op === 'silu') report(`unaryBackward ${op}`, time(() => be.unaryBackward(op, x, y, dy, dx)));
}
report('binary add (contiguous)', time(() => be.binary('add', x, [1], dy, [1], [N], y)));
report('binary mul (row bcast)', time(() => be.binary('mul', x, [768, 1], dy, [0, 1], [N / 1024, 768], y), undefined, 3), (N / 1024) * 768);
const rows = N / 1024, cols = 1024;
report('softmax (1024 cols)', time(() => be.softmax(x, rows, cols, y, false)));
const g = rand(cols), bta = rand(cols), mean = new Float32Array(rows), rstd = new Float32Array(rows);
report('layerNorm (1024 cols)', time(() => be.layerNorm(x, g, bta, rows, cols, 1e-5, y, mean, rstd)));
const dg = new Float32Array(cols), db = new Float32Array(cols);
report('layerNormBackward', time(() => be.layerNormBackward(dy, x, g, mean, rstd, rows, cols, dx, dg, db)));
report('reduce sum rows', time(() => be.reduce('sum', x, rows, cols, 1, mean)));
const m = new Float32Array(N), v = new Float32Array(N);
let step = 1;
report('adamw', time(() => be.adamw({ param: y, grad: dy, m, v, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8,
  weightDecay: 0.01, step: step++, gradScale: 1 })));
report('dropoutMask', time(() => be.dropoutMask(7, 0.1, y)));
const h = new Uint16Array(N);
report('cast f32->bf16', time(() => be.cast(x, 'f32', h, 'bf16')));
