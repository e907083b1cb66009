/**
 * Micro-benchmarks behind three of the bf16 changes (issue #17), each against what it replaced, alternated in one process:
 *
 *   node --import tsx scripts/bench-bf16-parts.ts [lora] [head] [gelu] [--repeat 7]
 *
 * lora: loraLinear forward + backward under bf16 autocast, rank 8, on the shapes of the cls and main-job layers, three
 *   ways: the rank-r factors appended to the base product with their own products made in the pass that casts the
 *   rows (`loraRows`, `loraOuter`: the path taken where bf16 runs in hardware), the same appended path with those as
 *   products of their own (the two kernels hidden), and the composition of two products (`castRowsBf16` hidden too).
 *   The ratios are the first path's time over each of the others'.
 * head: GPT-2's head weight gradient (50,257 x 768, 154 MB) accumulated by four 256-row chunk products into fresh zero
 *   pages, against the same after writing a zero a page first (what linearCrossEntropy does).
 * gelu: an MLP activation's forward + backward at 2048 x 1024 (gelu, gelu_tanh, silu; inputs uniform in [-2, 2]):
 *   `unaryBf16Grad` + `mulBf16` (f'(x) kept in bf16) against `unaryBf16` + `unaryBackward` (x kept in f32).
 * Prints the medians; the ratios are new / old.
 */
import { backend } from '../src/backend/index.js';
import { loraLinear } from '../src/tensor/ops/lora-linear.js';
import { autocast } from '../src/tensor/precision.js';
import { randn } from '../src/tensor/creation.js';
import { LORA_BF16_PATHS, withHidden } from './lora-paths.js';

const args = process.argv.slice(2);
const repeat = args.includes('--repeat') ? Number(args[args.indexOf('--repeat') + 1]) : 7;
const all = !args.includes('lora') && !args.includes('head') && !args.includes('gelu');
const be = backend();
const median = (x: number[]) => [...x].sort((p, q) => p - q)[x.length >> 1];
console.log(be.describe());

if (all || args.includes('lora')) {
  if (!be.nativeBf16 || !be.castRowsBf16) console.log('lora: this backend has no bf16 products in hardware: every side takes the composition');
  const paths = LORA_BF16_PATHS;
  for (const [rows, nIn, nOut] of [[2048, 256, 768], [2048, 1024, 256], [1024, 256, 768], [1024, 256, 256], [1024, 256, 1024], [1024, 1024, 256]]) {
    const x = randn([rows, nIn], 1).requireGrad(), W = randn([nOut, nIn], 2).scale(0.1), b = randn([nOut], 3);
    const A = randn([8, nIn], 4).scale(0.1).requireGrad(), B = randn([nOut, 8], 5).scale(0.1).requireGrad(), gy = randn([rows, nOut], 6);
    const run = (hidden: string[]) => withHidden(hidden, () => {
      const t0 = performance.now();
      for (let i = 0; i < 10; i++) {
        const y = autocast('bf16', () => loraLinear(x, W, b, A, B, 2));
        y.backward({ gradient: gy });
        x.grad = A.grad = B.grad = null;
      }
      return (performance.now() - t0) / 10;
    });
    for (const [, h] of paths) run(h);
    const t = paths.map(() => [] as number[]);
    for (let i = 0; i < repeat; i++) paths.forEach(([, h], k) => t[k].push(run(h)));
    const m = t.map(median);
    console.log(`lora ${rows}x${nIn}->${nOut}: ${paths.map(([n], k) => `${n} ${m[k].toFixed(3)} ms`).join(', ')}; ratios ${m.slice(1).map((v) => (m[0] / v).toFixed(3)).join(', ')}`);
  }
}

if (all || args.includes('head')) {
  const V = 50257, D = 768, K = 256;
  const a = new Uint16Array(K * V).fill(0x3c00), b = new Uint16Array(K * D).fill(0x3c00);
  const dtype = be.nativeBf16 ? 'bf16' : 'f32';
  const af = new Float32Array(K * V).fill(1), bf = new Float32Array(K * D).fill(1);
  const run = (touch: boolean) => {
    const t0 = performance.now();
    const out = new Float32Array(V * D);
    if (touch) for (let i = 0; i < out.length; i += 1024) out[i] = 0;
    for (let c = 0; c < 4; c++) {
      be.matmul({ a: dtype === 'bf16' ? a : af, b: dtype === 'bf16' ? b : bf, out, dtype, batch: 1, M: V, N: D, K, transA: true, transB: false,
        strideA: 0, strideB: 0, alpha: 1, beta: 1 });
    }
    return performance.now() - t0;
  };
  const t: number[] = [], f: number[] = [];
  for (let i = 0; i < Math.min(repeat, 5); i++) { t.push(run(true)); f.push(run(false)); }
  console.log(`head gradient (${dtype}, 4 chunks): touched first ${median(t).toFixed(0)} ms, fresh pages ${median(f).toFixed(0)} ms, ratio ${(median(t) / median(f)).toFixed(3)}`);
}

if ((all || args.includes('gelu')) && be.unaryBf16 && be.unaryBf16Grad && be.mulBf16) {
  const n = 2048 * 1024;
  const x = new Float32Array(n), g = new Float32Array(n), dx = new Float32Array(n), y = new Uint16Array(n), d = new Uint16Array(n);
  for (let i = 0; i < n; i++) { x[i] = ((i * 7919) % 4001) / 1000 - 2; g[i] = ((i * 104729) % 2001) / 1000 - 1; }
  for (const op of ['gelu', 'gelu_tanh', 'silu'] as const) {
    const old = () => { const t0 = performance.now(); be.unaryBf16!(op, x, y); be.unaryBackward(op, x, x, g, dx); return performance.now() - t0; };
    const neu = () => { const t0 = performance.now(); be.unaryBf16Grad!(op, x, y, d); be.mulBf16!(g, d, dx); return performance.now() - t0; };
    old(); neu();
    const to: number[] = [], tn: number[] = [];
    for (let i = 0; i < repeat * 6; i++) { to.push(old()); tn.push(neu()); }
    console.log(`gelu ${op} 2048x1024 forward + backward: derivative kept ${median(tn).toFixed(3)} ms, x kept ${median(to).toFixed(3)} ms, ratio ${(median(tn) / median(to)).toFixed(3)}`);
  }
}
