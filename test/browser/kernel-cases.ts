/**
 * Every kernel the wasm backend runs in WebAssembly (not the ones it hands to the portable backend), on random
 * operands, against the portable backend: the table the browser test runs inside Chromium (test/browser.test.ts
 * bundles test/browser/kernels-entry.ts). No node: imports. Each case returns its norm-wise relative error and
 * its tolerance; elementwise and row kernels are forced onto the wasm path at every size (minElements 0).
 */
import type { AttentionShape, Backend, UnaryOp } from '../../src/backend/backend.js';

export interface KernelResult { kernel: string; err: number; tol: number }

let seed = 12345;
function rand(n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    a[i] = ((seed / 2 ** 32) * 2 - 1) * scale;
  }
  return a;
}
function bf16Of(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer.slice(x.byteOffset, x.byteOffset + x.byteLength));
  return Uint16Array.from(u, (v) => (v + 0x7fff + ((v >>> 16) & 1)) >>> 16);
}
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let diff = 0, scale = 1e-30;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= diff)) diff = d;
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / scale;
}
function clone<T extends Float32Array | Int32Array | Uint16Array>(xs: T[]): T[] {
  return xs.map((x) => x.slice() as T);
}

/** Runs every case on `wasm` and `ref`; the wasm backend's minElements is set to 0 while it runs. */
export function runKernelCases(wasm: Backend, ref: Backend): KernelResult[] {
  const out: KernelResult[] = [];
  const w = wasm as Backend & { minElements?: number };
  const saved = w.minElements;
  w.minElements = 0;
  /** Runs `fn` on both backends with copies of `inputs` (outputs are among them, written in place); compares `outs`. */
  const check = (kernel: string, tol: number, inputs: Array<Float32Array | Int32Array | Uint16Array>, outs: number[],
    fn: (b: Backend, xs: Array<Float32Array | Int32Array | Uint16Array>) => void) => {
    const a = clone(inputs), r = clone(inputs);
    fn(wasm, a);
    fn(ref, r);
    const err = Math.max(...outs.map((i) => relErr(a[i]!, r[i]!)));
    out.push({ kernel, err, tol });
  };
  try {
    const F = (xs: unknown[], i: number) => xs[i] as Float32Array;
    const I = (xs: unknown[], i: number) => xs[i] as Int32Array;
    // ---- matmul: f32 with transposes, batch, alpha/beta; bf16; low precision B (bf16, int8 with scales)
    for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      const M = 37, N = 45, K = 29, batch = 2;
      check(`matmul f32 transA=${ta} transB=${tb} batch=2 beta=0.5`, 1e-5, [rand(batch * M * K), rand(batch * K * N), rand(batch * M * N)], [2],
        (b, xs) => b.matmul({ a: F(xs, 0), b: F(xs, 1), out: F(xs, 2), dtype: 'f32', batch, M, N, K, transA: ta, transB: tb, strideA: M * K, strideB: K * N, alpha: 1.5, beta: 0.5 }));
    }
    {
      const M = 64, N = 96, K = 128;
      check('matmul f32 64x96x128 shared B (strideB 0)', 1e-5, [rand(2 * M * K), rand(K * N), new Float32Array(2 * M * N)], [2],
        (b, xs) => b.matmul({ a: F(xs, 0), b: F(xs, 1), out: F(xs, 2), dtype: 'f32', batch: 2, M, N, K, transA: false, transB: false, strideA: M * K, strideB: 0, alpha: 1, beta: 0 }));
      check('matmul bf16', 1e-2, [bf16Of(rand(M * K)), bf16Of(rand(K * N)), new Float32Array(M * N)], [2],
        (b, xs) => b.matmul({ a: xs[0] as Uint16Array, b: xs[1] as Uint16Array, out: F(xs, 2), dtype: 'bf16', batch: 1, M, N, K, transA: false, transB: true, strideA: 0, strideB: 0, alpha: 1, beta: 0 }));
      check('matmulLowp bf16 B', 1e-5, [rand(M * K), bf16Of(rand(K * N)), new Float32Array(M * N)], [2],
        (b, xs) => b.matmulLowp({ a: F(xs, 0), b: xs[1] as Uint16Array, bDtype: 'bf16', scales: null, out: F(xs, 2), batch: 1, M, N, K, transA: false, transB: true, strideA: 0, alpha: 1, beta: 0 }));
      const q = Int8Array.from(rand(K * N, 127), (v) => Math.round(v));
      const sc = rand(N, 0.01).map(Math.abs);
      const a = rand(M * K), o1 = new Float32Array(M * N), o2 = new Float32Array(M * N);
      wasm.matmulLowp({ a, b: q, bDtype: 'i8', scales: sc, out: o1, batch: 1, M, N, K, transA: false, transB: true, strideA: 0, alpha: 1, beta: 0 });
      ref.matmulLowp({ a, b: q, bDtype: 'i8', scales: sc, out: o2, batch: 1, M, N, K, transA: false, transB: true, strideA: 0, alpha: 1, beta: 0 });
      out.push({ kernel: 'matmulLowp int8 B with scales', err: relErr(o1, o2), tol: 1e-5 });
    }
    // ---- elementwise
    for (const op of ['exp', 'tanh', 'sigmoid', 'gelu', 'gelu_tanh', 'silu'] as UnaryOp[]) {
      const n = 3001;
      check(`unary ${op}`, 1e-5, [rand(n, 3), new Float32Array(n)], [1], (b, xs) => b.unary(op, F(xs, 0), F(xs, 1)));
      if (op === 'exp') continue;
      const x = rand(n, 3), y = new Float32Array(n);
      ref.unary(op, x, y);
      check(`unaryBackward ${op}`, 1e-5, [x, y, rand(n), new Float32Array(n)], [3], (b, xs) => b.unaryBackward(op, F(xs, 0), F(xs, 1), F(xs, 2), F(xs, 3)));
    }
    check('reduce sum (outer 7, n 33, inner 5)', 1e-5, [rand(7 * 33 * 5), new Float32Array(7 * 5)], [1], (b, xs) => b.reduce('sum', F(xs, 0), 7, 33, 5, F(xs, 1)));
    // ---- row kernels
    const rows = 19, cols = 77;
    for (const log of [false, true]) {
      check(`softmax log=${log}`, 1e-5, [rand(rows * cols, 4), new Float32Array(rows * cols)], [1], (b, xs) => b.softmax(F(xs, 0), rows, cols, F(xs, 1), log));
      const y = new Float32Array(rows * cols);
      ref.softmax(rand(rows * cols, 4), rows, cols, y, log);
      check(`softmaxBackward log=${log}`, 1e-5, [y, rand(rows * cols), new Float32Array(rows * cols)], [2], (b, xs) => b.softmaxBackward(F(xs, 0), F(xs, 1), rows, cols, F(xs, 2), log));
    }
    {
      const x = rand(rows * cols, 2), g = rand(cols), be = rand(cols);
      check('layerNorm', 1e-5, [x, g, be, new Float32Array(rows * cols), new Float32Array(rows), new Float32Array(rows)], [3, 4, 5],
        (b, xs) => b.layerNorm(F(xs, 0), F(xs, 1), F(xs, 2), rows, cols, 1e-6, F(xs, 3), F(xs, 4), F(xs, 5)));
      const y = new Float32Array(rows * cols), mean = new Float32Array(rows), rstd = new Float32Array(rows);
      ref.layerNorm(x, g, be, rows, cols, 1e-6, y, mean, rstd);
      const dy = rand(rows * cols);
      check('layerNormBackward', 1e-4, [dy, x, g, mean, rstd, new Float32Array(rows * cols), new Float32Array(cols), new Float32Array(cols)], [5, 6, 7],
        (b, xs) => b.layerNormBackward(F(xs, 0), F(xs, 1), F(xs, 2), F(xs, 3), F(xs, 4), rows, cols, F(xs, 5), F(xs, 6), F(xs, 7)));
      check('layerNormBackwardFromOutput', 1e-4, [dy, y, g, be, rstd, new Float32Array(rows * cols), new Float32Array(cols), new Float32Array(cols)], [5, 6, 7],
        (b, xs) => b.layerNormBackwardFromOutput(F(xs, 0), F(xs, 1), F(xs, 2), F(xs, 3), F(xs, 4), rows, cols, F(xs, 5), F(xs, 6), F(xs, 7)));
    }
    {
      const t = Int32Array.from({ length: rows }, (_, i) => (i === 3 ? -100 : (i * 7) % cols));
      check('crossEntropy (ignore -100, smoothing 0.1)', 1e-5, [rand(rows * cols, 3), t, new Float32Array(rows), new Float32Array(rows * cols)], [2, 3],
        (b, xs) => b.crossEntropy(F(xs, 0), I(xs, 1), rows, cols, -100, 0.1, F(xs, 2), F(xs, 3)));
      const lp = new Float32Array(rows * cols);
      ref.crossEntropy(rand(rows * cols, 3), t, rows, cols, -100, 0.1, new Float32Array(rows), lp);
      check('crossEntropyBackward', 1e-5, [lp, t, rand(rows), new Float32Array(rows * cols)], [3],
        (b, xs) => b.crossEntropyBackward(F(xs, 0), I(xs, 1), rows, cols, -100, 0.1, F(xs, 2), F(xs, 3)));
    }
    // ---- attention (B, H, T, D) in a fused (B, T, 3, H, D) projection, with a key mask; causal too
    for (const causal of [false, true]) {
      const B = 2, H = 4, T = 13, D = 16, C = 3 * H * D;
      const st: [number, number, number] = [T * C, D, C];
      const s: AttentionShape = { B, H, Hkv: H, Tq: T, Tk: T, D, Dv: D, qStrides: st, kStrides: st, vStrides: st, outStrides: [T * H * D, D, H * D], scale: 1 / 4, causal };
      const qkv = rand(B * T * C), mask = Float32Array.from({ length: B * T }, (_, i) => (i % T < T - 3 || i < T ? 1 : 0));
      const q = qkv.subarray(0), k = qkv.subarray(H * D), v = qkv.subarray(2 * H * D);
      const o1 = new Float32Array(B * T * H * D), s1 = new Float32Array(B * H * T * 2), o2 = o1.slice(), s2 = s1.slice();
      wasm.attention(s, q, k, v, mask, null, o1, s1);
      ref.attention(s, q, k, v, mask, null, o2, s2);
      out.push({ kernel: `attention causal=${causal}`, err: relErr(o1, o2), tol: 1e-5 });
      const dout = rand(B * T * H * D);
      const g1 = new Float32Array(B * T * C), g2 = new Float32Array(B * T * C);
      wasm.attentionBackward(s, q, k, v, mask, null, s2, dout, [T * H * D, D, H * D], g1.subarray(0), g1.subarray(H * D), g1.subarray(2 * H * D));
      ref.attentionBackward(s, q, k, v, mask, null, s2, dout, [T * H * D, D, H * D], g2.subarray(0), g2.subarray(H * D), g2.subarray(2 * H * D));
      out.push({ kernel: `attentionBackward causal=${causal}`, err: relErr(g1, g2), tol: 1e-4 });
    }
    // ---- optimizer updates
    {
      const n = 4099;
      check('adamw', 1e-6, [rand(n), rand(n), rand(n, 0.1), rand(n, 0.01).map(Math.abs)], [0, 2, 3],
        (b, xs) => b.adamw({ param: F(xs, 0), grad: F(xs, 1), m: F(xs, 2), v: F(xs, 3), lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 3, gradScale: 0.5 }));
      for (const nesterov of [false, true]) {
        check(`sgd nesterov=${nesterov}`, 1e-6, [rand(n), rand(n), rand(n, 0.1)], [0, 2],
          (b, xs) => b.sgd({ param: F(xs, 0), grad: F(xs, 1), buf: F(xs, 2), lr: 0.1, momentum: 0.9, dampening: 0, nesterov, weightDecay: 1e-4, firstStep: false, gradScale: 1 }));
      }
    }
  } finally {
    w.minElements = saved;
  }
  return out;
}
