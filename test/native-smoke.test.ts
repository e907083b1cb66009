/**
 * Smoke test of the native backend: hand-computed values, and every kernel against the portable backend
 * (f32 within 1e-5 relative, bf16 matmul within 1e-2). Skips when the addon is not built; fails then under CI=true.
 * Run: node --import tsx --test test/native-smoke.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadNativeBackend, nativeLoadError } from '../src/backend/native.js';
import type { Backend, BinaryOp, UnaryOp } from '../src/backend/backend.js';
import { hashUniform } from '../src/backend/rng.js';
import { requirePiece } from './helpers/ci.js';

let nb: Backend | null = null;
try {
  nb = loadNativeBackend();
} catch {
  // reported by the skip message below
}
const skip = requirePiece('native addon', nb !== null, nativeLoadError() ?? 'unknown reason');

let pb: Backend | null = null;
try {
  const mod = (await import('../src/backend/portable.js')) as { PortableBackend?: new () => Backend };
  if (mod.PortableBackend) pb = new mod.PortableBackend();
} catch {
  pb = null;
}
const skipCmp = skip || (pb ? false : 'portable backend not available');
const N = (): Backend => nb!;
const P = (): Backend => pb!;

// deterministic pseudo-random data
let seed = 12345;
function rnd(): number {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 4294967296;
}
function rand(n: number, lo = -3, hi = 3): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rnd();
  return a;
}
function close(got: ArrayLike<number>, want: ArrayLike<number>, rtol = 1e-5, atol = 1e-6, what = ''): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) {
    const g = got[i]!, w = want[i]!;
    if (Number.isNaN(w) && Number.isNaN(g)) continue;
    if (g === w) continue;
    if (!(Math.abs(g - w) <= atol + rtol * Math.abs(w))) {
      assert.fail(`${what}: element ${i}: got ${g}, want ${w} (diff ${Math.abs(g - w)})`);
    }
  }
}

test('native: describe and threads', { skip }, () => {
  const d = N().describe();
  assert.match(d, /^native \(OpenBLAS .* core=\S+, oneDNN \S+ isa=\S+/);
  assert.ok(N().numThreads() >= 1);
});

test('native: hand-computed values', { skip }, () => {
  const b = N();
  const out = new Float32Array(4);
  b.matmul({ a: new Float32Array([1, 2, 3, 4, 5, 6]), b: new Float32Array([1, 0, 1, 0, 1, 0]), out, dtype: 'f32', batch: 1,
    M: 2, N: 2, K: 3, transA: false, transB: false, strideA: 0, strideB: 0, alpha: 1, beta: 0 });
  assert.deepEqual([...out], [6, 0, 15, 0]);
  const y = new Float32Array(3);
  b.unary('relu', new Float32Array([-1, 0, 2]), y);
  assert.deepEqual([...y], [0, 0, 2]);
  const o4 = new Float32Array(4);
  b.binary('add', new Float32Array([1, 2, 3, 4]), [2, 1], new Float32Array([10, 20]), [0, 1], [2, 2], o4);
  assert.deepEqual([...o4], [11, 22, 13, 24]);
  const s = new Float32Array(2);
  b.reduce('sum', new Float32Array([1, 2, 3, 4, 5, 6]), 2, 3, 1, s);
  assert.deepEqual([...s], [6, 15]);
  assert.equal(b.sumSquares(new Float32Array([3, 4])), 25);
  const h = new Uint16Array(3);
  b.cast(new Float32Array([1, NaN, 1.00390625]), 'f32', h, 'bf16');  // 1 + 2^-8: a tie, rounds to even (1.0)
  assert.deepEqual([...h], [0x3f80, 0x7fc0, 0x3f80]);
  const i32 = new Int32Array(4);
  b.cast(new Float32Array([-2.7, 2.7, NaN, 3e9]), 'f32', i32, 'i32');
  assert.deepEqual([...i32], [-2, 2, 0, 2147483647]);
  const sm = new Float32Array(2);
  b.softmax(new Float32Array([0, Math.log(3)]), 1, 2, sm, false);
  close(sm, [0.25, 0.75], 1e-6);
});

test('native: dropoutMask matches hashUniform bit for bit', { skip }, () => {
  for (const [sd, p] of [[0, 0.1], [123456789, 0.5], [-7, 0.3], [4294967295, 0.9], [5, 0], [6, 1], [8, 1e-9]] as const) {
    const m = new Float32Array(5000);
    N().dropoutMask(sd, p, m);
    const scale = Math.fround(1 / (1 - p));
    for (let i = 0; i < m.length; i++) assert.equal(m[i], hashUniform(sd, i) >= p ? scale : 0);
  }
});

test('native: argument validation throws instead of crashing', { skip }, () => {
  const b = N();
  assert.throws(() => b.unary('exp', new Float64Array(3) as unknown as Float32Array, new Float32Array(3)), /unary/);
  assert.throws(() => b.unary('exp', new Float32Array(8), new Float32Array(3)), /unary/);
  assert.throws(() => b.gather(new Float32Array(4), new Int32Array([5]), 2, new Float32Array(2)), /gather/);
  assert.throws(() => b.binary('add', new Float32Array(2), [1], new Float32Array(2), [3], [2], new Float32Array(2)), /binary/);
  assert.throws(() => b.matmul({ a: new Float32Array(2), b: new Float32Array(4), out: new Float32Array(4), dtype: 'f32', batch: 1,
    M: 2, N: 2, K: 2, transA: false, transB: false, strideA: 0, strideB: 0, alpha: 1, beta: 0 }), /matmul/);
});

const UNARY: UnaryOp[] = ['neg', 'exp', 'log', 'sqrt', 'rsqrt', 'tanh', 'sigmoid', 'relu', 'gelu', 'gelu_tanh', 'silu', 'abs',
  'square', 'reciprocal', 'sign'];
test('native vs portable: unary and unaryBackward', { skip: skipCmp }, () => {
  const n = 70001;  // odd size: exercises vector tails and the parallel path
  const x = rand(n, -12, 12);
  x[0] = 0; x[1] = -0; x[2] = 1e-30; x[3] = -40; x[4] = 40; x[5] = 88; x[6] = -100; x[7] = NaN;
  const pos = rand(n, 1e-3, 50);
  const dy = rand(n);
  for (const op of UNARY) {
    const inp = op === 'log' || op === 'sqrt' || op === 'rsqrt' ? pos : x;
    const a = new Float32Array(n), b = new Float32Array(n);
    N().unary(op, inp, a);
    P().unary(op, inp, b);
    close(a, b, 1e-5, 1e-12, `unary ${op}`);  // float64 0.5x(1+tanh u) is 0 in the far left tail of gelu_tanh
    const da = new Float32Array(n), db = new Float32Array(n);
    N().unaryBackward(op, inp, a, dy, da);
    P().unaryBackward(op, inp, b, dy, db);
    // absolute slack: gelu' and silu' cross zero (cancellation in float32), and float64 s*(1-s) is 0 in the far tail
    close(da, db, 1e-5, 2e-7, `unaryBackward ${op}`);
  }
});

const BINARY: BinaryOp[] = ['add', 'sub', 'mul', 'div', 'pow', 'max', 'min', 'eq', 'gt', 'ge', 'lt', 'le'];
test('native vs portable: binary and where with broadcasting', { skip: skipCmp }, () => {
  const cases: Array<{ shape: number[]; as: number[]; bs: number[]; na: number; nb: number }> = [
    { shape: [300, 257], as: [257, 1], bs: [257, 1], na: 300 * 257, nb: 300 * 257 },    // contiguous
    { shape: [300, 257], as: [257, 1], bs: [0, 0], na: 300 * 257, nb: 1 },              // scalar
    { shape: [300, 257], as: [257, 1], bs: [0, 1], na: 300 * 257, nb: 257 },            // row broadcast
    { shape: [300, 257], as: [0, 1], bs: [1, 0], na: 257, nb: 300 },                    // outer product
    { shape: [4, 3, 50, 7], as: [1050, 350, 7, 1], bs: [0, 7, 0, 1], na: 4200, nb: 21 }, // general
    { shape: [64, 33], as: [1, 64], bs: [33, 1], na: 64 * 33, nb: 64 * 33 },              // transposed a
  ];
  for (const c of cases) {
    const a = rand(c.na), b = rand(c.nb);
    b[3 % c.nb] = a[3 % c.na]!;  // an equal pair for eq/ge/le
    const size = c.shape.reduce((p, d) => p * d, 1);
    for (const op of BINARY) {
      const bb = op === 'pow' ? rand(c.nb, -2, 2) : b;
      const aa = op === 'pow' ? rand(c.na, 0.1, 3) : a;
      const o1 = new Float32Array(size), o2 = new Float32Array(size);
      N().binary(op, aa, c.as, bb, c.bs, c.shape, o1);
      P().binary(op, aa, c.as, bb, c.bs, c.shape, o2);
      close(o1, o2, 1e-6, 0, `binary ${op} ${JSON.stringify(c.shape)} ${JSON.stringify(c.bs)}`);
    }
    const cond = rand(c.na);
    for (let i = 0; i < cond.length; i++) cond[i] = cond[i]! > 0 ? 1 : 0;
    const o1 = new Float32Array(size), o2 = new Float32Array(size);
    N().where(cond, c.as, a, c.as, b, c.bs, c.shape, o1);
    P().where(cond, c.as, a, c.as, b, c.bs, c.shape, o2);
    close(o1, o2, 0, 0, 'where');
  }
});

test('native vs portable: casts are bit-identical', { skip: skipCmp }, () => {
  const n = 40000;
  const x = rand(n, -70000, 70000);
  const special = [0, -0, NaN, -NaN, Infinity, -Infinity, 1e-40, -1e-40, 6e-8, 3e-5, 65504, 65520, 1.00390625, 3e9, -3e9, 127.9, -128.9, 200];
  special.forEach((v, i) => { x[i] = v; });
  const u = new Uint32Array(x.buffer);
  for (let i = special.length; i < 2000; i++) u[i] = Math.floor(rnd() * 4294967296);  // random bit patterns
  const tiny = rand(n, -1e-4, 1e-4);
  for (const src of [x, tiny]) {
    for (const dt of ['bf16', 'f16', 'i32', 'i8'] as const) {
      const mk = () => (dt === 'i32' ? new Int32Array(n) : dt === 'i8' ? new Int8Array(n) : new Uint16Array(n));
      const a = mk(), b = mk();
      N().cast(src, 'f32', a, dt);
      P().cast(src, 'f32', b, dt);
      assert.deepEqual(a, b, `cast f32->${dt}`);
      const fa = new Float32Array(n), fb = new Float32Array(n);
      N().cast(a, dt, fa, 'f32');
      P().cast(a, dt, fb, 'f32');
      assert.deepEqual(new Uint32Array(fa.buffer), new Uint32Array(fb.buffer), `cast ${dt}->f32`);
    }
  }
  const i = new Int32Array([0, 5, -5, 300, -300, 2147483647, 16777217]);
  for (const dt of ['i8', 'bf16', 'f16'] as const) {
    const mk = () => (dt === 'i8' ? new Int8Array(i.length) : new Uint16Array(i.length));
    const a = mk(), b = mk();
    N().cast(i, 'i32', a, dt);
    P().cast(i, 'i32', b, dt);
    assert.deepEqual(a, b, `cast i32->${dt}`);
  }
});

test('native vs portable: reductions, strided copy, axpby, affine, fill', { skip: skipCmp }, () => {
  for (const [outer, n, inner] of [[1, 100000, 1], [300, 200, 1], [1, 300, 500], [7, 50, 33], [3, 0, 4]]) {
    const x = rand(outer! * n! * inner!);
    if (x.length > 10) x[5] = 1000;
    for (const op of ['sum', 'max', 'min'] as const) {
      const a = new Float32Array(outer! * inner!), b = new Float32Array(outer! * inner!);
      N().reduce(op, x, outer!, n!, inner!, a);
      P().reduce(op, x, outer!, n!, inner!, b);
      close(a, b, 1e-5, 1e-5, `reduce ${op} (${outer},${n},${inner})`);
    }
    if (n! > 0) {
      const a = new Int32Array(outer! * inner!), b = new Int32Array(outer! * inner!);
      N().argmax(x, outer!, n!, inner!, a);
      P().argmax(x, outer!, n!, inner!, b);
      assert.deepEqual(a, b, 'argmax');
    }
    const ss = N().sumSquares(x), sp = P().sumSquares(x);
    assert.ok(Math.abs(ss - sp) <= 1e-9 * Math.abs(sp) + 1e-12, `sumSquares ${ss} vs ${sp}`);
  }
  const src = rand(4 * 5 * 6);
  for (const [shape, strides] of [[[6, 5, 4], [1, 6, 30]], [[4, 5, 6], [30, 6, 1]], [[5, 6], [6, 1]], [[4, 3, 6], [30, 12, 1]]]) {
    const size = shape!.reduce((p, d) => p * d, 1);
    const a = new Float32Array(size), b = new Float32Array(size);
    N().stridedCopy(src, shape!, strides!, a);
    P().stridedCopy(src, shape!, strides!, b);
    assert.deepEqual(a, b, 'stridedCopy f32');
    const s16 = new Uint16Array(src.length).map((_, i) => i * 7);
    const a16 = new Uint16Array(size), b16 = new Uint16Array(size);
    N().stridedCopy(s16, shape!, strides!, a16);
    P().stridedCopy(s16, shape!, strides!, b16);
    assert.deepEqual(a16, b16, 'stridedCopy u16');
    const s8 = new Int8Array(src.length).map((_, i) => i);
    const a8 = new Int8Array(size), b8 = new Int8Array(size);
    N().stridedCopy(s8, shape!, strides!, a8);
    P().stridedCopy(s8, shape!, strides!, b8);
    assert.deepEqual(a8, b8, 'stridedCopy i8');
  }
  const x = rand(50000), y = rand(50000);
  const a = new Float32Array(50000), b = new Float32Array(50000);
  N().axpby(0.3, x, -1.7, y, a);
  P().axpby(0.3, x, -1.7, y, b);
  close(a, b, 1e-6, 1e-7, 'axpby');
  N().affine(x, 2.5, -1, a);
  P().affine(x, 2.5, -1, b);
  close(a, b, 1e-6, 1e-7, 'affine');
  N().fill(a, 3.25);
  assert.ok(a.every((v) => v === 3.25));
  const ia = new Int32Array(10);
  N().fill(ia, -4);
  assert.ok(ia.every((v) => v === -4));
});

function mmCase(dtype: 'f32' | 'bf16', batch: number, M: number, Nn: number, K: number, transA: boolean, transB: boolean,
  bcastA: boolean, bcastB: boolean, alpha: number, beta: number): void {
  const sa = bcastA ? 0 : M * K, sb = bcastB ? 0 : K * Nn;
  const a32 = rand(bcastA ? M * K : batch * M * K, -1, 1), b32 = rand(bcastB ? K * Nn : batch * K * Nn, -1, 1);
  let a: Float32Array | Uint16Array = a32, b: Float32Array | Uint16Array = b32;
  if (dtype === 'bf16') {
    a = new Uint16Array(a32.length); b = new Uint16Array(b32.length);
    P().cast(a32, 'f32', a, 'bf16'); P().cast(b32, 'f32', b, 'bf16');
  }
  const init = rand(batch * M * Nn);
  const o1 = Float32Array.from(init), o2 = Float32Array.from(init);
  const args = { a, b, dtype, batch, M, N: Nn, K, transA, transB, strideA: sa, strideB: sb, alpha, beta };
  N().matmul({ ...args, out: o1 });
  P().matmul({ ...args, out: o2 });
  const tol = dtype === 'bf16' ? 1e-2 : 1e-5;
  close(o1, o2, tol, tol * Math.sqrt(K) * 1e-1, `matmul ${dtype} ${batch}x(${M},${Nn},${K}) tA=${transA} tB=${transB}`);
}

test('native vs portable: matmul f32 and bf16', { skip: skipCmp }, () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        mmCase(dtype, 1, 37, 29, 41, transA, transB, false, false, 1, 0);
        mmCase(dtype, 3, 16, 24, 8, transA, transB, false, true, 0.5, 1);
        mmCase(dtype, 4, 33, 17, 9, transA, transB, true, false, 1, 0.25);
      }
    }
    mmCase(dtype, 1, 130, 70, 300, false, false, false, false, 1, 0);
  }
});

test('native vs portable: softmax, norms, CE, gather/scatter, rope', { skip: skipCmp }, () => {
  const rows = 67, cols = 301;
  const x = rand(rows * cols, -8, 8), dy = rand(rows * cols);
  for (const log of [false, true]) {
    const a = new Float32Array(rows * cols), b = new Float32Array(rows * cols);
    N().softmax(x, rows, cols, a, log);
    P().softmax(x, rows, cols, b, log);
    close(a, b, 1e-5, 1e-7, `softmax log=${log}`);
    const da = new Float32Array(rows * cols), db = new Float32Array(rows * cols);
    N().softmaxBackward(b, dy, rows, cols, da, log);
    P().softmaxBackward(b, dy, rows, cols, db, log);
    close(da, db, 1e-5, 1e-6, `softmaxBackward log=${log}`);
  }
  const g = rand(cols), be = rand(cols);
  for (const [gg, bb] of [[g, be], [null, null], [g, null]] as const) {
    const o = [new Float32Array(rows * cols), new Float32Array(rows * cols)];
    const mean = [new Float32Array(rows), new Float32Array(rows)], rstd = [new Float32Array(rows), new Float32Array(rows)];
    N().layerNorm(x, gg, bb, rows, cols, 1e-5, o[0]!, mean[0]!, rstd[0]!);
    P().layerNorm(x, gg, bb, rows, cols, 1e-5, o[1]!, mean[1]!, rstd[1]!);
    close(o[0]!, o[1]!, 1e-5, 1e-5, 'layerNorm');
    close(mean[0]!, mean[1]!, 1e-5, 1e-6, 'layerNorm mean');
    close(rstd[0]!, rstd[1]!, 1e-5, 0, 'layerNorm rstd');
    const dx = [new Float32Array(rows * cols), new Float32Array(rows * cols)];
    const dg = [Float32Array.from(g), Float32Array.from(g)], db = [Float32Array.from(be), Float32Array.from(be)];
    N().layerNormBackward(dy, x, gg, mean[1]!, rstd[1]!, rows, cols, dx[0]!, gg ? dg[0]! : null, bb ? db[0]! : null);
    P().layerNormBackward(dy, x, gg, mean[1]!, rstd[1]!, rows, cols, dx[1]!, gg ? dg[1]! : null, bb ? db[1]! : null);
    close(dx[0]!, dx[1]!, 1e-5, 1e-5, 'layerNormBackward dx');
    close(dg[0]!, dg[1]!, 1e-5, 1e-5, 'layerNormBackward dgamma');
    close(db[0]!, db[1]!, 1e-5, 1e-5, 'layerNormBackward dbeta');
    const r = [new Float32Array(rows), new Float32Array(rows)];
    N().rmsNorm(x, gg, rows, cols, 1e-6, o[0]!, r[0]!);
    P().rmsNorm(x, gg, rows, cols, 1e-6, o[1]!, r[1]!);
    close(o[0]!, o[1]!, 1e-5, 1e-6, 'rmsNorm');
    close(r[0]!, r[1]!, 1e-5, 0, 'rmsNorm rstd');
    N().rmsNormBackward(dy, x, gg, r[1]!, rows, cols, dx[0]!, gg ? dg[0]! : null);
    P().rmsNormBackward(dy, x, gg, r[1]!, rows, cols, dx[1]!, gg ? dg[1]! : null);
    close(dx[0]!, dx[1]!, 1e-5, 1e-5, 'rmsNormBackward dx');
    close(dg[0]!, dg[1]!, 1e-5, 1e-5, 'rmsNormBackward dgamma');
  }
  const t = new Int32Array(rows).map(() => Math.floor(rnd() * cols));
  t[3] = -100;
  for (const ls of [0, 0.1]) {
    const l = [new Float32Array(rows), new Float32Array(rows)], lp = [new Float32Array(rows * cols), new Float32Array(rows * cols)];
    N().crossEntropy(x, t, rows, cols, -100, ls, l[0]!, lp[0]!);
    P().crossEntropy(x, t, rows, cols, -100, ls, l[1]!, lp[1]!);
    close(l[0]!, l[1]!, 1e-5, 1e-6, `crossEntropy ls=${ls}`);
    close(lp[0]!, lp[1]!, 1e-5, 1e-6, `crossEntropy logp ls=${ls}`);
    const dl = rand(rows), d = [new Float32Array(rows * cols), new Float32Array(rows * cols)];
    N().crossEntropyBackward(lp[1]!, t, rows, cols, -100, ls, dl, d[0]!);
    P().crossEntropyBackward(lp[1]!, t, rows, cols, -100, ls, dl, d[1]!);
    close(d[0]!, d[1]!, 1e-5, 1e-7, `crossEntropyBackward ls=${ls}`);
  }
  const table = rand(50 * 40), idx = new Int32Array(300).map(() => Math.floor(rnd() * 50));
  idx[0] = 7; idx[1] = 7; idx[2] = 7;
  const go = [new Float32Array(300 * 40), new Float32Array(300 * 40)];
  N().gather(table, idx, 40, go[0]!);
  P().gather(table, idx, 40, go[1]!);
  assert.deepEqual(go[0], go[1], 'gather');
  const src = rand(300 * 40), dt = [Float32Array.from(table), Float32Array.from(table)];
  N().scatterAdd(src, idx, 40, dt[0]!);
  P().scatterAdd(src, idx, 40, dt[1]!);
  close(dt[0]!, dt[1]!, 1e-5, 1e-6, 'scatterAdd');
  const [R, T, D, rot] = [6, 9, 16, 12];
  const xr = rand(R * T * D), cs = rand(T * rot / 2, -1, 1), sn = rand(T * rot / 2, -1, 1);
  for (const inv of [false, true]) {
    const o = [new Float32Array(R * T * D), new Float32Array(R * T * D)];
    N().rope(xr, cs, sn, R, T, D, rot, inv, o[0]!);
    P().rope(xr, cs, sn, R, T, D, rot, inv, o[1]!);
    close(o[0]!, o[1]!, 1e-6, 1e-6, `rope inverse=${inv}`);
    const inplace = Float32Array.from(xr);
    N().rope(inplace, cs, sn, R, T, D, rot, inv, inplace);
    close(inplace, o[1]!, 1e-6, 1e-6, 'rope in place');
  }
});

test('native vs portable: adamw, sgd, dropout', { skip: skipCmp }, () => {
  const n = 40000;
  const p0 = rand(n), g = rand(n);
  const s = [0, 1].map(() => ({ p: Float32Array.from(p0), m: new Float32Array(n), v: new Float32Array(n), buf: new Float32Array(n) }));
  const bes = [N(), P()];
  for (let step = 1; step <= 3; step++) {
    bes.forEach((b, k) => b.adamw({ param: s[k]!.p, grad: g, m: s[k]!.m, v: s[k]!.v, lr: 1e-2, beta1: 0.9, beta2: 0.999,
      eps: 1e-8, weightDecay: 0.1, step, gradScale: 0.5 }));
  }
  close(s[0]!.p, s[1]!.p, 1e-5, 1e-7, 'adamw param');
  close(s[0]!.m, s[1]!.m, 1e-5, 1e-7, 'adamw m');
  close(s[0]!.v, s[1]!.v, 1e-5, 1e-9, 'adamw v');
  for (const nesterov of [false, true]) {
    for (let step = 0; step < 3; step++) {
      bes.forEach((b, k) => b.sgd({ param: s[k]!.p, grad: g, buf: s[k]!.buf, lr: 0.1, momentum: 0.9, dampening: nesterov ? 0 : 0.1,
        nesterov, weightDecay: 0.01, firstStep: step === 0, gradScale: 2 }));
    }
    close(s[0]!.p, s[1]!.p, 1e-5, 1e-6, 'sgd param');
    close(s[0]!.buf, s[1]!.buf, 1e-5, 1e-6, 'sgd buf');
  }
  const m = [new Float32Array(n), new Float32Array(n)];
  N().dropoutMask(99, 0.37, m[0]!);
  P().dropoutMask(99, 0.37, m[1]!);
  assert.deepEqual(m[0], m[1], 'dropoutMask');
});

test('sums over rows give the same bits with 1 and 2 threads (column sums, a LoRA factor gradient, loraRows, the norms\' backward)', { skip }, async () => {
  const { spawnSync } = await import('node:child_process');
  const run = (n: number): { threads: number; cols: string; dA: string; loraRows: string; norms: string } => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', new URL('./helpers/thread-sums.ts', import.meta.url).pathname],
      { encoding: 'utf8', env: { ...process.env, AUTOGLM_NUM_THREADS: String(n) } });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as { threads: number; cols: string; dA: string; loraRows: string; norms: string };
  };
  const one = run(1), two = run(2);
  assert.equal(one.threads, 1);
  assert.equal(two.threads, 2);
  assert.equal(two.cols, one.cols, 'column sums differ between thread counts');
  assert.equal(two.dA, one.dA, 'the skinny weight gradient differs between thread counts');
  assert.equal(two.loraRows, one.loraRows, 'loraRows (the rank-r columns, B\'s gradient) differs between thread counts');
  assert.equal(two.norms, one.norms, 'LayerNorm\'s or RMSNorm\'s backward differs between thread counts');
});

test('bf16 products from several threads at once give the same bits as one thread (oneDNN path)', { skip }, async () => {
  // Local data-parallel ranks are worker threads of one process: their oneDNN products once shared a stream and a
  // library scratchpad, which gave non-finite steps and a segmentation fault on CPUs with bf16 instructions.
  const { spawnSync } = await import('node:child_process');
  for (const threads of [1, 2]) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', new URL('./helpers/bf16-threads.ts', import.meta.url).pathname, '3', '4'],
      { encoding: 'utf8', env: { ...process.env, AUTOGLM_NUM_THREADS: String(threads), AUTOGLM_BF16_PATH: 'onednn' } });
    assert.equal(r.status, 0, `exit ${r.status} (signal ${r.signal}): ${r.stderr}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { threads: number; mismatches: number };
    assert.equal(out.mismatches, 0, `${out.mismatches} products differ from the single-thread result (${threads} kernel threads per rank)`);
  }
});

test('bf16 products do not depend on what earlier products left in oneDNN\'s buffers (every ISA oneDNN may pick)', { skip }, async () => {
  // On AMX a recomputed forward pass differed from the first one: results must be a function of the operands alone
  const { spawnSync } = await import('node:child_process');
  for (const isa of ['', 'AVX512_CORE_AMX', 'AVX512_CORE_BF16', 'AVX512_CORE']) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', new URL('./helpers/bf16-threads.ts', import.meta.url).pathname, 'history'],
      { encoding: 'utf8', env: { ...process.env, AUTOGLM_BF16_PATH: 'onednn', ...(isa ? { ONEDNN_MAX_CPU_ISA: isa } : {}) } });
    assert.equal(r.status, 0, `ONEDNN_MAX_CPU_ISA=${isa || '(default)'}: exit ${r.status} (signal ${r.signal}): ${r.stderr}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { mismatches: number };
    assert.equal(out.mismatches, 0, `ONEDNN_MAX_CPU_ISA=${isa || '(default)'}: ${out.mismatches} products changed with the buffers' history`);
  }
});

test('bf16 products on the oneDNN path match an f64 reference for every N from 1 to 130 (2 threads; both layouts, beta, bias, batches)', { skip }, async () => {
  // oneDNN 2.6.3's AMX matmul got 49 <= N <= 63 wrong whenever more than one thread ran it (native/matmul.cc, amx_n_gap)
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, ['--import', 'tsx', new URL('./helpers/bf16-threads.ts', import.meta.url).pathname, 'sweep'],
    { encoding: 'utf8', env: { ...process.env, AUTOGLM_NUM_THREADS: '2', AUTOGLM_BF16_PATH: 'onednn' } });
  assert.equal(r.status, 0, `exit ${r.status} (signal ${r.signal}): ${r.stderr}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { bad: number; products: number; first: string };
  assert.ok(out.products > 3000, `${out.products} products`);
  assert.equal(out.bad, 0, `${out.bad} of ${out.products} products are wrong; the first: ${out.first}`);
});

test('AUTOGLM_DNNL_PROBE=1 (whether a product reads its buffers): probed products keep the bits of an unprobed run, and any report names a product', { skip: skip || (nb!.nativeBf16 ? false : 'oneDNN takes no bf16 products on this CPU (they are widened to f32)') }, async () => {
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, ['--import', 'tsx', new URL('./helpers/bf16-threads.ts', import.meta.url).pathname, 'history'],
    { encoding: 'utf8', env: { ...process.env, AUTOGLM_DNNL_PROBE: '1' } });
  assert.equal(r.status, 0, `exit ${r.status} (signal ${r.signal}): ${r.stderr}`);
  assert.equal((JSON.parse(r.stdout.trim().split('\n').pop()!) as { mismatches: number }).mismatches, 0);
  for (const line of r.stderr.split('\n').filter((l) => l.includes('oneDNN product'))) {
    assert.match(line, /^autoglm: oneDNN product .* [0-9,]+ depends on (its output's contents|its scratchpad's contents|nothing \(a repeat\))(; .*)?$/, line);
  }
});

test('loraRows, loraOuter: bf16 rows with the rank-r product beside them, and the factors\' gradients, against an f64 reference', { skip }, async () => {
  const be = N();
  let seed = 3;
  const rand = (n: number): Float32Array => Float32Array.from({ length: n }, () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 4294967296 - 0.5;
  });
  const toBf = (f: Float32Array): Uint16Array => { const h = new Uint16Array(f.length); be.cast(f, 'f32', h, 'bf16'); return h; };
  const wide = (h: Uint16Array): Float32Array => { const f = new Float32Array(h.length); be.cast(h, 'bf16', f, 'f32'); return f; };
  for (const [rows, cols, r] of [[37, 45, 5], [300, 64, 8], [9, 8, 1], [130, 100, 16]]) {
    for (const srcBf16 of [false, true]) {
      const x32 = rand(rows * cols), xb = toBf(x32), F = toBf(rand(r * cols)), H = toBf(rand(rows * r));
      // rows of exactly cols + r, and rows padded with zeros past them (lora-linear's whole cache lines)
      const ld = cols + r + (srcBf16 ? 0 : 7);
      const dst = new Uint16Array(rows * ld).fill(0xffff), h = new Uint16Array(rows * r), gH = new Float32Array(cols * r);
      be.loraRows!(srcBf16 ? xb : x32, rows, cols, dst, F, r, 1.5, h, H, gH, ld);
      const xw = wide(xb), Fw = wide(F), Hw = wide(H), dw = wide(dst), hw = wide(h);
      const want = new Float64Array(cols * r);
      for (let i = 0; i < rows; i++) {
        for (let c = 0; c < cols; c++) assert.equal(dst[i * ld + c], xb[i * cols + c], `row ${i} col ${c}: the bf16 copy`);
        for (let c = cols + r; c < ld; c++) assert.equal(dst[i * ld + c], 0, `row ${i} col ${c}: the padding is zeros`);
        for (let j = 0; j < r; j++) {
          let t = 0;
          for (let c = 0; c < cols; c++) t += xw[i * cols + c] * Fw[j * cols + c];
          // f32 accumulation in another order may land the rounded value one bf16 step away
          assert.ok(Math.abs(hw[i * r + j] - 1.5 * t) <= 1e-5 + Math.abs(1.5 * t) * 2 ** -7, `h[${i}, ${j}] ${hw[i * r + j]} vs ${1.5 * t} (${rows}x${cols}, r ${r})`);
          assert.equal(dw[i * ld + cols + j], hw[i * r + j], 'the r columns hold h');
          for (let c = 0; c < cols; c++) want[c * r + j] += xw[i * cols + c] * Hw[i * r + j];
        }
      }
      for (let k = 0; k < want.length; k++) assert.ok(Math.abs(gH[k] - want[k]) <= 1e-4 * (1 + Math.abs(want[k])), `gH[${k}] ${gH[k]} vs ${want[k]}`);
      // loraOuter over the copy (rows of cols + r, the first cols read) sums the same products in the same order
      const outer = new Float32Array(r * cols);
      be.loraOuter!(dst, rows, cols, ld, H, r, outer);
      for (let c = 0; c < cols; c++) for (let j = 0; j < r; j++) assert.equal(outer[j * cols + c], gH[c * r + j], `loraOuter[${j}, ${c}]`);
    }
  }
  const dst = new Uint16Array(4 * 25), h = new Uint16Array(4 * 17);
  assert.throws(() => be.loraRows!(new Float32Array(32), 4, 8, dst, new Uint16Array(17 * 8), 17, 1, h, null, null, 25), /loraRows: r must be 1 to 16/);
  assert.throws(() => be.loraRows!(new Float32Array(32), 4, 8, dst, new Uint16Array(8 * 8), 8, 1, h, new Uint16Array(32), null, 16), /H and gH come together/);
  assert.throws(() => be.loraRows!(new Float32Array(31), 4, 8, dst, new Uint16Array(8 * 8), 8, 1, h, null, null, 16), /src is smaller/);
  assert.throws(() => be.loraRows!(new Float32Array(32), 4, 8, dst, new Uint16Array(8 * 8), 8, 1, h, null, null, 15), /ld is smaller than cols \+ r/);
  assert.throws(() => be.loraRows!(new Float32Array(32), 4, 8, dst, new Uint16Array(8 * 8), 8, 1, h, null, null, 26), /dst is smaller than rows x ld/);
  assert.throws(() => be.loraOuter!(dst, 4, 8, 7, h, 8, new Float32Array(64)), /loraOuter: ld is smaller than cols/);
  if (!process.env.ONEDNN_MAX_CPU_ISA) {
    // their AVX2 code (CPUs without AVX512-BF16), reached on any CPU with oneDNN held below it: this test and the
    // thread-count one again
    const { spawnSync } = await import('node:child_process');
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-name-pattern', 'loraRows', new URL(import.meta.url).pathname],
      { encoding: 'utf8', env: { ...process.env, NODE_TEST_CONTEXT: undefined, ONEDNN_MAX_CPU_ISA: 'AVX512_CORE' } });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /# pass 2\n/);
  }
});
