// bf16 products from several threads of one process at once (the local data-parallel ranks do this): each
// worker runs the same products as the main thread did alone and reports whether every result is bit-identical.
// Run as a script: `node --import tsx test/helpers/bf16-threads.ts [threads] [rounds]`; prints one JSON line.
// `... bf16-threads.ts history`: each product run on a fresh thread state, then again after other products have left
// NaN-filled buffers behind and with a NaN-filled output (beta = 0): the bits must not change.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { loadNativeBackend } from '../../src/backend/native.js';

interface Case { batch: number; M: number; N: number; K: number; transA: boolean; transB: boolean; strideA: number; strideB: number; alpha: number; beta: number }

// Shapes of a training step: activations x weight (forward), the two backward products, a batched attention product,
// with a K that is not a multiple of the kernels' blocks, alpha != 1 and accumulation (beta = 1).
const CASES: Case[] = [
  { batch: 1, M: 256, N: 384, K: 128, transA: false, transB: true, strideA: 0, strideB: 0, alpha: 1, beta: 0 },
  { batch: 1, M: 256, N: 128, K: 384, transA: false, transB: false, strideA: 0, strideB: 0, alpha: 1, beta: 0 },
  { batch: 1, M: 384, N: 128, K: 256, transA: true, transB: false, strideA: 0, strideB: 0, alpha: 1, beta: 1 },
  { batch: 8, M: 64, N: 64, K: 40, transA: false, transB: true, strideA: 64 * 40, strideB: 64 * 40, alpha: 0.125, beta: 0 },
  { batch: 1, M: 100, N: 1000, K: 77, transA: false, transB: true, strideA: 0, strideB: 0, alpha: 1, beta: 0 },
  // a weight gradient over many tokens (long K), accumulated, and one of a LoRA factor (N = 8)
  { batch: 1, M: 256, N: 256, K: 2048, transA: true, transB: false, strideA: 0, strideB: 0, alpha: 1, beta: 1 },
  { batch: 1, M: 512, N: 8, K: 3000, transA: true, transB: false, strideA: 0, strideB: 0, alpha: 1, beta: 0 },
  // small products with N = 50 (a tied head over a 50-word vocabulary): on AMX, oneDNN 2.6.3 gets them wrong with more
  // than one thread, in ways that depend on its buffers' earlier contents, unless padded to N = 64 (native/matmul.cc,
  // amx_n_gap)
  { batch: 1, M: 24, N: 50, K: 32, transA: false, transB: true, strideA: 0, strideB: 0, alpha: 1, beta: 0 },
  { batch: 1, M: 1, N: 50, K: 64, transA: false, transB: false, strideA: 0, strideB: 0, alpha: 1, beta: 0 },
  { batch: 1, M: 32, N: 50, K: 64, transA: false, transB: true, strideA: 0, strideB: 0, alpha: 1, beta: 0 },
];

function operands(c: Case, seed: number): { a: Uint16Array; b: Uint16Array; out: Float32Array } {
  let s = seed >>> 0;
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  const bf = (n: number): Uint16Array => {
    const x = new Uint16Array(n);
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      f[0] = s / 4294967296 - 0.5;
      x[i] = u[0]! >>> 16;
    }
    return x;
  };
  const na = c.strideA ? c.batch * c.strideA : c.M * c.K, nb = c.strideB ? c.batch * c.strideB : c.K * c.N;
  const out = new Float32Array(c.batch * c.M * c.N);
  for (let i = 0; i < out.length; i++) out[i] = (i % 7) * 0.25;
  return { a: bf(na), b: bf(nb), out };
}

// Each product's operands are made once per thread; `order` reverses the cases (so that each thread creates some
// of the oneDNN primitives and runs others created by another thread).
function runner(reverse: boolean): () => string[] {
  const be = loadNativeBackend();
  const ops = CASES.map((c, i) => ({ c, ...operands(c, 11 + i) }));
  const order = ops.map((_, i) => (reverse ? ops.length - 1 - i : i));
  return () => {
    const got: string[] = [];
    for (const i of order) {
      const { c, a, b, out } = ops[i]!;
      const o = new Float32Array(out);
      be.matmul({ a, b, out: o, dtype: 'bf16', ...c });
      got[i] = Buffer.from(o.buffer).toString('base64');
    }
    return got;
  };
}

function historyMismatches(): number {
  const be = loadNativeBackend();
  const fresh = runner(false)();
  // dirty the thread's scratchpad: larger products of the same layouts over NaN and huge operands (the small cases)
  for (const c of CASES.filter((k) => k.M * k.N * k.K < 1 << 24)) {
    const big = { ...c, M: c.M * 2, N: c.N * 2, K: c.K * 2, strideA: c.strideA * 4, strideB: c.strideB * 4 };
    const { a, b, out } = operands(big, 5);
    a.fill(0x7fc0);
    b.fill(0x7f00);
    be.matmul({ a, b, out, dtype: 'bf16', ...big });
  }
  let bad = 0;
  CASES.forEach((c, i) => {
    const { a, b, out } = operands(c, 11 + i);
    if (c.beta === 0) out.fill(NaN);
    be.matmul({ a, b, out, dtype: 'bf16', ...c });
    if (Buffer.from(out.buffer).toString('base64') !== fresh[i]) bad++;
  });
  return bad;
}

// Every product of a grid against an f64 reference over the same bf16 operands: N 1-130 (oneDNN 2.6.3's AMX matmul got
// 49 <= N <= 63 wrong with more than one thread), both layouts of A and B, beta 0 and 1, a bias, batches with their
// own B and a shared one. Returns the products whose error exceeds f32 accumulation's (relative to sum |a b|).
function sweepMismatches(): { bad: number; products: number; first: string } {
  const be = loadNativeBackend();
  const wide = (h: Uint16Array): Float32Array => {
    const u = Uint32Array.from(h, (x) => x << 16);
    return new Float32Array(u.buffer);
  };
  let bad = 0, products = 0, first = '', seed = 101;
  const one = (c: Case, bias: boolean): void => {
    const { a, b, out } = operands(c, seed++);
    const bi = bias ? Float32Array.from({ length: c.N }, (_, i) => (i % 5) * 0.5 - 1) : undefined;
    const A = wide(a), B = wide(b), want = Float64Array.from(out, (o) => c.beta * o);
    const scale = new Float64Array(out.length);
    for (let t = 0; t < c.batch; t++) for (let m = 0; m < c.M; m++) for (let n = 0; n < c.N; n++) {
      let s = 0, abs = 0;
      for (let k = 0; k < c.K; k++) {
        const p = A[t * c.strideA + (c.transA ? k * c.M + m : m * c.K + k)]! * B[t * c.strideB + (c.transB ? n * c.K + k : k * c.N + n)]!;
        s += p;
        abs += Math.abs(p);
      }
      const i = (t * c.M + m) * c.N + n;
      want[i] += c.alpha * s + (bi ? bi[n]! : 0);
      scale[i] = abs + 1e-3;
    }
    be.matmul({ a, b, out, dtype: 'bf16', ...c, ...(bi ? { bias: bi } : {}) });
    products++;
    const ok = want.every((w, i) => Math.abs(out[i]! - w) <= 2e-5 * scale[i]!);
    if (!ok && bad++ === 0) first = JSON.stringify({ ...c, bias });
  };
  for (let N = 1; N <= 130; N++) {
    for (const [M, K] of [[1, 32], [24, 77], [100, 32]] as const) {
      for (const transA of [false, true]) for (const transB of [false, true]) for (const beta of [0, 1]) {
        one({ batch: 1, M, N, K, transA, transB, strideA: 0, strideB: 0, alpha: 1, beta }, false);
      }
      one({ batch: 1, M, N, K, transA: false, transB: true, strideA: 0, strideB: 0, alpha: 1, beta: 0 }, true);
    }
    one({ batch: 3, M: 20, N, K: 40, transA: false, transB: false, strideA: 800, strideB: 40 * N, alpha: 0.5, beta: 0 }, false);
    one({ batch: 3, M: 20, N, K: 40, transA: false, transB: true, strideA: 800, strideB: 0, alpha: 1, beta: 1 }, false);
  }
  return { bad, products, first };
}

if (isMainThread && process.argv[2] === 'sweep') {
  console.log(JSON.stringify(sweepMismatches()));
} else if (isMainThread && process.argv[2] === 'history') {
  console.log(JSON.stringify({ mismatches: historyMismatches() }));
} else if (isMainThread) {
  const threads = Number(process.argv[2] ?? 2), rounds = Number(process.argv[3] ?? 40);
  // the workers start on a fresh primitive cache; the main thread's results, made after theirs, are the reference
  const results = await Promise.all(Array.from({ length: threads }, (_, t) => new Promise<string[][]>((resolve, reject) => {
    // Node 20 workers do not apply `--import tsx`: register it in the worker, then import this file
    const boot = `(await import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})).register();\nawait import(${JSON.stringify(import.meta.url)});`;
    const w = new Worker(boot, { eval: true, workerData: { rounds, reverse: t % 2 === 1 } });
    w.on('message', resolve);
    w.on('error', reject);
  })));
  const want = runner(false)();
  let mismatches = 0;
  for (const rs of results) for (const r of rs) r.forEach((got, i) => { if (got !== want[i]) mismatches++; });
  console.log(JSON.stringify({ threads, rounds, mismatches }));
} else {
  const { rounds, reverse } = workerData as { rounds: number; reverse: boolean };
  const run = runner(reverse);
  parentPort!.postMessage(Array.from({ length: rounds }, run));
}
