/**
 * Every differentiable op, through one shared table of cases: on each backend the analytical gradient matches
 * central finite differences, and the native backend matches the portable one (forward and gradients).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/backend/rng.js';
import { Tensor } from '../src/tensor/tensor.js';
import * as T from '../src/tensor/index.js';
import { releaseBuffer } from '../src/tensor/alloc.js';
import { testBackends, withBackend, relErr } from './helpers/backends.js';
import { requireNative, skipOrFail } from './helpers/ci.js';
import { getBackend } from '../src/backend/index.js';
import { attentionPoison } from '../src/backend/native.js';

interface Case {
  name: string;
  /** Leaf inputs; those that should be checked get requiresGrad. */
  inputs: () => Tensor[];
  fn: (...xs: Tensor[]) => Tensor;
  eps?: number;
  rtol?: number;
  atol?: number;
}

function rn(shape: number[], seed: number, scale = 1, shift = 0): Tensor {
  const r = new Rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = shift + scale * r.normal();
  return new Tensor(d, 'f32', shape).requireGrad();
}
/** Uniform values bounded away from 0 (for log, sqrt, div, pow). */
function pos(shape: number[], seed: number, lo = 0.5, hi = 2): Tensor {
  const r = new Rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = lo + (hi - lo) * r.uniform();
  return new Tensor(d, 'f32', shape).requireGrad();
}
const ids = (vals: number[], shape = [vals.length]) => new Tensor(Int32Array.from(vals), 'i32', shape);
const mask = (vals: number[], shape: number[]) => new Tensor(Float32Array.from(vals), 'f32', shape);
/** Two packed rows of 5 positions: documents [0, 2) [2, 5) and [0, 1) [1, 3) [3, 4) [4, 5). */
const packed = (keyMask: Tensor | null): T.PackedMask => ({ keyMask, firstKey: Int32Array.from([0, 0, 2, 2, 2, 0, 1, 1, 3, 4]) });
/** Values kept away from the kink of relu/abs/max so that finite differences are valid. */
function awayFromZero(shape: number[], seed: number): Tensor {
  const t = rn(shape, seed);
  const d = t.storage as Float32Array;
  for (let i = 0; i < d.length; i++) if (Math.abs(d[i]) < 0.1) d[i] = d[i] < 0 ? -0.3 : 0.3;
  return t;
}

const unaryCases: Case[] = (['neg', 'exp', 'tanh', 'sigmoid', 'gelu', 'gelu_tanh', 'silu', 'square'] as const).map((op, i) => ({
  name: `unary ${op}`, inputs: () => [rn([3, 17], 10 + i)], fn: (x: Tensor) => T.unary(op, x),
}));
unaryCases.push(
  { name: 'unary log', inputs: () => [pos([5, 3], 30)], fn: (x) => x.log() },
  { name: 'unary sqrt', inputs: () => [pos([5, 3], 31)], fn: (x) => x.sqrt() },
  { name: 'unary rsqrt', inputs: () => [pos([5, 3], 32)], fn: (x) => x.rsqrt() },
  { name: 'unary reciprocal', inputs: () => [pos([5, 3], 33)], fn: (x) => x.reciprocal() },
  { name: 'unary relu', inputs: () => [awayFromZero([4, 9], 34)], fn: (x) => x.relu() },
  { name: 'unary abs', inputs: () => [awayFromZero([4, 9], 35)], fn: (x) => x.abs() },
);

const CASES: Case[] = [
  ...unaryCases,
  // binary with broadcasting, size-1 and non-contiguous operands
  { name: 'add broadcast row', inputs: () => [rn([3, 4], 1), rn([4], 2)], fn: (a, b) => a.add(b) },
  { name: 'sub broadcast 3d', inputs: () => [rn([2, 1, 3], 3), rn([1, 5, 1], 4)], fn: (a, b) => a.sub(b) },
  { name: 'mul transposed view', inputs: () => [rn([4, 3], 5), rn([3, 4], 6)], fn: (a, b) => a.transpose(0, 1).mul(b) },
  { name: 'div', inputs: () => [rn([2, 3], 7), pos([2, 3], 8)], fn: (a, b) => a.div(b) },
  { name: 'div scalar-shaped', inputs: () => [rn([2, 3], 9), pos([1], 10)], fn: (a, b) => a.div(b) },
  { name: 'pow', inputs: () => [pos([3, 2], 11), rn([3, 2], 12, 0.5)], fn: (a, b) => a.pow(b) },
  { name: 'maximum', inputs: () => [rn([3, 5], 13), rn([5], 14)], fn: (a, b) => a.maximum(b) },
  { name: 'minimum', inputs: () => [rn([3, 5], 15), rn([3, 1], 16)], fn: (a, b) => a.minimum(b) },
  { name: 'where', inputs: () => [rn([2, 3], 17), rn([3], 18)], fn: (a, b) => T.where(mask([1, 0, 1, 0, 0, 1], [2, 3]), a, b) },
  { name: 'affine + number ops', inputs: () => [rn([7], 19)], fn: (a) => a.mul(3).add(1).sub(0.5).div(2) },
  // reductions
  { name: 'sum all', inputs: () => [rn([3, 4, 5], 20)], fn: (x) => x.sum() },
  { name: 'sum axis 1 keepdim', inputs: () => [rn([3, 4, 5], 21)], fn: (x) => x.sum(1, true) },
  { name: 'sum axes [0,2]', inputs: () => [rn([3, 4, 5], 22)], fn: (x) => x.sum([0, 2]) },
  { name: 'mean axis -1', inputs: () => [rn([3, 4, 5], 23)], fn: (x) => x.mean(-1) },
  { name: 'max axis 0', inputs: () => [rn([6, 5], 24)], fn: (x) => x.max(0) },
  { name: 'min axis 1', inputs: () => [rn([6, 5], 25)], fn: (x) => x.min(1) },
  { name: 'var axis 1 unbiased', inputs: () => [rn([4, 7], 26)], fn: (x) => x.var(1, false, true) },
  { name: 'sum of permuted view', inputs: () => [rn([2, 3, 4], 27)], fn: (x) => x.permute([2, 0, 1]).sum(0) },
  // matmul
  { name: 'matmul 2d odd', inputs: () => [rn([3, 5], 40), rn([5, 7], 41)], fn: (a, b) => a.matmul(b) },
  { name: 'matmul batched', inputs: () => [rn([2, 3, 4], 42), rn([2, 4, 5], 43)], fn: (a, b) => a.matmul(b) },
  { name: 'matmul broadcast batch', inputs: () => [rn([2, 1, 3, 4], 44), rn([3, 4, 2], 45)], fn: (a, b) => a.matmul(b) },
  { name: 'matmul batched @ 2d', inputs: () => [rn([2, 3, 4], 46), rn([4, 5], 47)], fn: (a, b) => a.matmul(b) },
  { name: 'matmul transposed views', inputs: () => [rn([4, 3], 48), rn([5, 4], 49)], fn: (a, b) => a.T.matmul(b.T) },
  { name: 'matmul 3d @ broadcast 3d', inputs: () => [rn([3, 2, 4], 50), rn([1, 4, 3], 51)], fn: (a, b) => a.matmul(b) },
  { name: 'matmul vector', inputs: () => [rn([4], 52), rn([4, 3], 53)], fn: (a, b) => a.matmul(b) },
  { name: 'matmul size-1 dims', inputs: () => [rn([1, 1], 54), rn([1, 6], 55)], fn: (a, b) => a.matmul(b) },
  { name: 'linear with bias', inputs: () => [rn([2, 3, 5], 56), rn([4, 5], 57), rn([4], 58)], fn: (x, w, b) => T.linear(x, w, b) },
  { name: 'addLinear', inputs: () => [rn([2, 3, 4], 66), rn([2, 3, 5], 67), rn([4, 5], 68)], fn: (y, x, w) => T.addLinear(y, x, w, 0.7) },
  { name: 'linear without bias', inputs: () => [rn([3, 5], 59), rn([2, 5], 60)], fn: (x, w) => T.linear(x, w, null) },
  {
    name: 'linearCrossEntropy chunked, bias, ignore + smoothing', inputs: () => [rn([2, 3, 5], 110), rn([7, 5], 111), rn([7], 112)],
    fn: (h, w, b) => T.linearCrossEntropy(h, w, b, ids([0, 6, -100, 3, 3, 1], [2, 3]), { chunkRows: 4, labelSmoothing: 0.1 }),
  },
  { name: 'linearCrossEntropy sum', inputs: () => [rn([4, 3], 113), rn([5, 3], 114)], fn: (h, w) => T.linearCrossEntropy(h, w, null, ids([4, 0, 2, 1]), { reduction: 'sum', chunkRows: 3 }) },
  // frozen low-precision weights (constants here): bf16 storage, and int8 with per-row scales
  { name: 'linear bf16 weight', inputs: () => [rn([2, 3, 5], 105), rn([4], 106)], fn: (x, b) => T.linear(x, rn([4, 5], 107).to('bf16'), b) },
  {
    name: 'linearInt8', inputs: () => [rn([2, 3, 5], 108), rn([4], 109)],
    fn: (x, b) => T.linearInt8(x, new Tensor(Int8Array.from([3, -127, 40, 0, 9, 127, -5, 60, 22, -80, 1, 2, 3, 4, 5, -1, -2, -3, -4, -5]), 'i8', [4, 5]),
      new Tensor(Float32Array.from([0.01, 0.02, 0.005, 0.03]), 'f32', [4]), b),
  },
  // movement
  { name: 'reshape + slice', inputs: () => [rn([4, 6], 61)], fn: (x) => x.reshape([2, 12]).slice(1, 3, 11, 2) },
  { name: 'split + concat', inputs: () => [rn([3, 7], 62)], fn: (x) => { const [a, b, c] = x.split([2, 4, 1], 1); return T.concat([c, a.mul(2), b], 1); } },
  { name: 'expand + contiguous', inputs: () => [rn([3, 1], 63)], fn: (x) => x.expand([2, 3, 4]).contiguous().mul(T.arange(0, 4)) },
  { name: 'unsqueeze/squeeze/stack', inputs: () => [rn([3], 64), rn([3], 65)], fn: (a, b) => T.stack([a, b], 1).unsqueeze(0).squeeze(0) },
  // nn
  { name: 'softmax last axis', inputs: () => [rn([3, 7], 70)], fn: (x) => x.softmax(-1) },
  { name: 'softmax axis 0', inputs: () => [rn([4, 3], 71)], fn: (x) => x.softmax(0) },
  { name: 'logSoftmax', inputs: () => [rn([5, 9], 72)], fn: (x) => x.logSoftmax(-1) },
  { name: 'layerNorm affine', inputs: () => [rn([3, 2, 8], 73), rn([8], 74, 0.3, 1), rn([8], 75)], fn: (x, g, b) => T.layerNorm(x, g, b) },
  { name: 'layerNorm plain', inputs: () => [rn([4, 5], 76)], fn: (x) => T.layerNorm(x, null, null) },
  // gamma near 0 next to beta: xhat is not rebuilt from the output, the input is kept instead
  { name: 'layerNorm small gamma', inputs: () => [rn([3, 8], 77), rn([8], 78, 0.05), rn([8], 79)], fn: (x, g, b) => T.layerNorm(x, g, b) },
  { name: 'rmsNorm', inputs: () => [rn([3, 6], 77), rn([6], 78, 0.3, 1)], fn: (x, g) => T.rmsNorm(x, g) },
  { name: 'embedding repeated ids', inputs: () => [rn([5, 3], 79)], fn: (w) => T.embedding(ids([1, 4, 1, 0, 1, 3], [2, 3]), w) },
  { name: 'dropout seeded', inputs: () => [rn([6, 10], 80)], fn: (x) => T.dropout(x, 0.3, 1234) },
  { name: 'crossEntropy mean', inputs: () => [rn([4, 6], 81)], fn: (x) => T.crossEntropy(x, ids([0, 5, 2, 2])) },
  { name: 'crossEntropy ignore + smoothing', inputs: () => [rn([5, 4], 82)], fn: (x) => T.crossEntropy(x, ids([1, -100, 3, 0, -100]), { labelSmoothing: 0.1 }) },
  { name: 'crossEntropy sum', inputs: () => [rn([3, 5], 83)], fn: (x) => T.crossEntropy(x, ids([4, 0, 1]), { reduction: 'sum' }) },
  // consumed logits (a temporary): the loss keeps them and each row's log-sum-exp where the backend can (Backend.crossEntropyLse)
  { name: 'crossEntropy consumed logits, ignore', inputs: () => [rn([5, 6], 85)], fn: (x) => T.crossEntropy(x.mul(2), ids([1, -100, 5, 0, 3]), { consumeLogits: true }) },
  { name: 'crossEntropy none 3d', inputs: () => [rn([2, 3, 4], 84)], fn: (x) => T.crossEntropy(x, ids([0, 1, 2, 3, 0, 1], [2, 3]), { reduction: 'none' }) },
  { name: 'attention causal', inputs: () => [rn([2, 2, 5, 4], 85), rn([2, 2, 5, 4], 86), rn([2, 2, 5, 4], 87)], fn: (q, k, v) => T.scaledDotProductAttention(q, k, v, { causal: true }) },
  {
    name: 'attention padding mask', inputs: () => [rn([2, 1, 3, 4], 88), rn([2, 1, 4, 4], 89), rn([2, 1, 4, 2], 90)],
    fn: (q, k, v) => T.scaledDotProductAttention(q, k, v, { mask: mask([0, 0, 0, 1, 0, 0, 1, 1], [2, 1, 1, 4]) }),
  },
  {
    name: 'attention general mask (composed)', inputs: () => [rn([1, 2, 3, 4], 94), rn([1, 2, 3, 4], 95), rn([1, 2, 3, 4], 96)],
    fn: (q, k, v) => T.scaledDotProductAttention(q, k, v, { mask: mask([0, 1, 0, 0, 0, 1, 0, 0, 0], [1, 1, 3, 3]) }),
  },
  {
    name: 'attention grouped-query causal + padding', inputs: () => [rn([2, 4, 3, 4], 97), rn([2, 2, 3, 4], 98), rn([2, 2, 3, 4], 99)],
    fn: (q, k, v) => T.scaledDotProductAttention(q, k, v, { causal: true, mask: mask([0, 0, 0, 0, 0, 1], [2, 3]) }),
  },
  { name: 'attention strided views', inputs: () => [rn([2, 5, 2, 4], 100), rn([2, 5, 2, 4], 101), rn([2, 5, 2, 3], 102)], fn: (q, k, v) => T.scaledDotProductAttention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), { causal: true }) },
  { name: 'fused qkv attention causal', inputs: () => [rn([2, 5, 24], 103)], fn: (x) => T.fusedQKVAttention(x, 2, { causal: true }) },
  { name: 'fused qkv attention key mask', inputs: () => [rn([2, 4, 12], 104)], fn: (x) => T.fusedQKVAttention(x, 1, { mask: mask([0, 0, 1, 1, 0, 0, 0, 1], [2, 4]) }) },
  // packed rows: each query's first allowed key (its document's start), on top of the causal bound and a key mask
  { name: 'attention packed (first key per query)', inputs: () => [rn([2, 2, 5, 4], 105), rn([2, 2, 5, 4], 106), rn([2, 2, 5, 4], 107)], fn: (q, k, v) => T.scaledDotProductAttention(q, k, v, { causal: true, mask: packed(null) }) },
  {
    name: 'attention packed grouped-query + key mask', inputs: () => [rn([2, 4, 5, 4], 108), rn([2, 2, 5, 4], 109), rn([2, 2, 5, 3], 110)],
    fn: (q, k, v) => T.scaledDotProductAttention(q, k, v, { causal: true, mask: packed(mask([0, 0, 0, 0, 1, 0, 0, 1, 0, 0], [2, 5])) }),
  },
  { name: 'attention first keys without causal', inputs: () => [rn([2, 1, 5, 4], 111), rn([2, 1, 5, 4], 112), rn([2, 1, 5, 4], 113)], fn: (q, k, v) => T.scaledDotProductAttention(q, k, v, { mask: packed(null) }) },
  { name: 'fused qkv attention packed', inputs: () => [rn([2, 5, 24], 114)], fn: (x) => T.fusedQKVAttention(x, 2, { causal: true, mask: packed(null) }) },
  {
    name: 'rope partial', inputs: () => [rn([1, 2, 3, 6], 91)],
    fn: (x) => {
      const c = new Float32Array(6), s = new Float32Array(6);
      for (let t = 0; t < 3; t++) for (let i = 0; i < 2; i++) { const a = t / 10000 ** (i / 2); c[t * 2 + i] = Math.cos(a); s[t * 2 + i] = Math.sin(a); }
      return T.rope(x, new Tensor(c, 'f32', [3, 2]), new Tensor(s, 'f32', [3, 2]));
    },
  },
  { name: 'maskedFill', inputs: () => [rn([2, 3], 92)], fn: (x) => x.maskedFill(mask([1, 0, 0, 0, 1, 0], [2, 3]), 0.5) },
  // casts: finite differences through bf16 rounding are a step function, so the cast gradient (identity) is
  // checked in tensor.test.ts instead
];

/** Forward value and the input gradients of a case on the current backend. */
function evaluate(c: Case): { y: Float32Array; grads: Float32Array[] } {
  const xs = c.inputs();
  const y = c.fn(...xs);
  const w = new Rng(7);
  const g = new Float32Array(y.size);
  for (let i = 0; i < g.length; i++) g[i] = w.uniform() - 0.5;
  y.backward({ gradient: new Tensor(g, 'f32', [...y.shape]) });
  return { y: y.f32(), grads: xs.map((x) => (x.grad ? x.grad.f32() : new Float32Array(0))) };
}

for (const b of testBackends()) {
  test(`gradients match finite differences (${b.name})`, () => {
    withBackend(b, () => {
      const failed: string[] = [];
      for (const c of CASES) {
        const r = T.gradcheck(c.fn, c.inputs(), { eps: c.eps ?? 1e-2, rtol: c.rtol ?? 1e-2, atol: c.atol ?? 2e-3 });
        if (!r.ok) failed.push(`${c.name}: ${JSON.stringify(r.details)}`);
      }
      assert.deepEqual(failed, []);
    });
  });
}

test('native and wasm agree with portable, forward and backward (f32 within 1e-5 relative)', (t) => {
  const [portable, ...others] = testBackends();
  if (!others.some((b) => b.name === 'native')) skipOrFail(t, 'native addon', 'not built');
  if (!others.length) return t.skip('neither the native nor the wasm backend loads');
  for (const other of others) {
    for (const c of CASES) {
      const p = withBackend(portable, () => evaluate(c));
      const n = withBackend(other, () => evaluate(c));
      const tol = 1e-5;
      assert.ok(relErr(n.y, p.y) <= tol, `${other.name} ${c.name}: forward rel err ${relErr(n.y, p.y)}`);
      n.grads.forEach((g, i) => assert.ok(relErr(g, p.grads[i]) <= tol, `${other.name} ${c.name}: grad ${i} rel err ${relErr(g, p.grads[i])}`));
    }
  }
});

test('fused attention equals its composition', () => {
  for (const b of testBackends()) withBackend(b, () => {
    const q = rn([2, 4, 6, 8], 200), k = rn([2, 2, 6, 8], 201), v = rn([2, 2, 6, 8], 202);
    for (const causal of [false, true]) {
      const f = T.scaledDotProductAttention(q, k, v, { causal, mask: mask([0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0], [2, 6]) }).f32();
      const c = T.composedAttention(q, k, v, causal, mask([0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0], [2, 1, 1, 6]), 1 / Math.sqrt(8), 6, 6).f32();
      assert.ok(relErr(f, c) < 1e-5, `${b.name} causal=${causal}: ${relErr(f, c)}`);
    }
  });
});

test('fused attention gradients (P rebuilt from row statistics) equal the composed form on a parallel-sized problem', () => {
  for (const b of testBackends()) withBackend(b, () => {
    const q = rn([3, 4, 20, 16], 210), k = rn([3, 2, 20, 16], 211), v = rn([3, 2, 20, 16], 212), w = rn([3, 4, 20, 16], 213);
    const km = mask(Array.from({ length: 60 }, (_, i) => (i % 20 >= 17 ? 1 : 0)), [3, 20]);
    const run = (fused: boolean) => {
      const [qq, kk, vv] = [q, k, v].map((t) => t.detach().requireGrad());
      const y = fused
        ? T.scaledDotProductAttention(qq, kk, vv, { causal: true, mask: km })
        : T.composedAttention(qq, kk, vv, true, T.reshape(km, [3, 1, 1, 20]), 1 / 4, 20, 20);
      y.mul(w).sum().backward();
      return [y.f32(), ...[qq, kk, vv].map((t) => (t.grad as Tensor).f32())];
    };
    const f = run(true), c = run(false);
    f.forEach((x, i) => assert.ok(relErr(x, c[i]) < 1e-5, `${b.name} output/grad ${i}: ${relErr(x, c[i])}`));
  });
});

test('fused causal attention over query-row blocks (T > 32; Tq < Tk; grouped kv heads; key mask) equals the composed form', () => {
  for (const b of testBackends()) withBackend(b, () => {
    for (const [Tq, Tk] of [[75, 75], [40, 75], [64, 64]]) {
      const q = rn([2, 4, Tq, 16], 240), k = rn([2, 2, Tk, 16], 241), v = rn([2, 2, Tk, 12], 242), w = rn([2, 4, Tq, 12], 243);
      const km = mask(Array.from({ length: 2 * Tk }, (_, i) => (i % Tk === 3 || i % Tk === Tk - 2 ? 1 : 0)), [2, Tk]);
      const run = (fused: boolean) => {
        const [qq, kk, vv] = [q, k, v].map((t) => t.detach().requireGrad());
        const y = fused
          ? T.scaledDotProductAttention(qq, kk, vv, { causal: true, mask: km })
          : T.composedAttention(qq, kk, vv, true, T.reshape(km, [2, 1, 1, Tk]), 1 / 4, Tq, Tk);
        y.mul(w).sum().backward();
        return [y.f32(), ...[qq, kk, vv].map((t) => (t.grad as Tensor).f32())];
      };
      const f = run(true), c = run(false);
      f.forEach((x, i) => assert.ok(relErr(x, c[i]) < 1e-5, `${b.name} Tq ${Tq} Tk ${Tk} output/grad ${i}: ${relErr(x, c[i])}`));
    }
  });
});

test('fused attention over 600 keys (B in packed panels, the transposed products through BLAS past 512 keys) equals the composed form', () => {
  for (const b of testBackends()) withBackend(b, () => {
    const Tn = 600;
    const q = rn([1, 2, Tn, 16], 260), k = rn([1, 2, Tn, 16], 261), v = rn([1, 2, Tn, 16], 262), w = rn([1, 2, Tn, 16], 263);
    const km = mask(Array.from({ length: Tn }, (_, i) => (i % 97 === 5 ? 1 : 0)), [1, Tn]);
    for (const causal of [true, false]) {
      const run = (fused: boolean) => {
        const [qq, kk, vv] = [q, k, v].map((t) => t.detach().requireGrad());
        const y = fused
          ? T.scaledDotProductAttention(qq, kk, vv, { causal, mask: km })
          : T.composedAttention(qq, kk, vv, causal, T.reshape(km, [1, 1, 1, Tn]), 1 / 4, Tn, Tn);
        y.mul(w).sum().backward();
        return [y.f32(), ...[qq, kk, vv].map((t) => (t.grad as Tensor).f32())];
      };
      const f = run(true), c = run(false);
      f.forEach((x, i) => assert.ok(relErr(x, c[i]) < 1e-5, `${b.name} causal ${causal} output/grad ${i}: ${relErr(x, c[i])}`));
    }
  });
});

for (const [B, H, Tn, D, starts] of [[2, 2, 70, 8, [[0, 23, 50], [0, 31]]], [1, 2, 600, 16, [[0, 5, 6, 130, 131, 400, 599]]]] as const) test(`fused causal attention with packed rows over query-row blocks agrees across backends (T ${Tn}, documents from ${starts.map((s) => s.join(', ')).join('; ')}${Tn > 512 ? ': the transposed products through BLAS' : ''})`, () => {
  const firstKey = Int32Array.from({ length: B * Tn }, (_, i) => {
    const bi = Math.floor(i / Tn), t = i % Tn;
    return starts[bi].filter((s0) => s0 <= t).pop()!;
  });
  const evalOn = (b: ReturnType<typeof testBackends>[number]) => withBackend(b, () => {
    const [q, k, v] = [250, 251, 252].map((seed) => rn([B, H, Tn, D], seed));
    const y = T.scaledDotProductAttention(q, k, v, { causal: true, mask: { keyMask: null, firstKey } });
    y.mul(rn([B, H, Tn, D], 253)).sum().backward();
    return [y.f32(), ...[q, k, v].map((t) => (t.grad as Tensor).f32())];
  });
  const [portable, ...others] = testBackends();
  const ref = evalOn(portable);
  for (const b of others) evalOn(b).forEach((x, i) => assert.ok(relErr(x, ref[i]) < 1e-5, `${b.name} output/grad ${i}: ${relErr(x, ref[i])}`));
});

test('native f32 attention reads no element of P or dS it did not write: NaN-filled scratch, the same results (causal, packed in and out of order, Tq < Tk, grouped kv heads, key mask, 600 keys)', { skip: requireNative() }, () => {
  const native = getBackend('native'), portable = getBackend('portable');
  type Case = { name: string; B: number; H: number; Hkv: number; Tq: number; Tk: number; D: number; causal: boolean; starts?: number[][]; masked?: boolean; firstKey?: (t: number) => number };
  const cases: Case[] = [
    { name: 'causal T 75', B: 2, H: 4, Hkv: 2, Tq: 75, Tk: 75, D: 16, causal: true, masked: true },
    { name: 'causal Tq 40 Tk 75', B: 2, H: 2, Hkv: 2, Tq: 40, Tk: 75, D: 8, causal: true },
    { name: 'no mask T 33', B: 2, H: 2, Hkv: 1, Tq: 33, Tk: 33, D: 8, causal: false, masked: true },
    { name: 'packed T 70', B: 2, H: 2, Hkv: 2, Tq: 70, Tk: 70, D: 8, causal: true, starts: [[0, 23, 50], [0, 31]] },
    { name: 'packed T 600 (BLAS blocks)', B: 1, H: 2, Hkv: 2, Tq: 600, Tk: 600, D: 16, causal: true, starts: [[0, 5, 6, 130, 131, 400, 599]] },
    { name: 'causal T 600', B: 1, H: 2, Hkv: 1, Tq: 600, Tk: 600, D: 8, causal: true },
    // first keys that go back (not documents one after another): whole rows
    { name: 'first keys out of order T 50', B: 1, H: 2, Hkv: 2, Tq: 50, Tk: 50, D: 8, causal: true, starts: [[0]], firstKey: (t) => (t < 20 ? 0 : t < 30 ? 20 : t < 40 ? 10 : 40) },
  ];
  const run = (be: typeof native, c: Case) => withBackend(be, () => {
    const q = rn([c.B, c.H, c.Tq, c.D], 270), k = rn([c.B, c.Hkv, c.Tk, c.D], 271), v = rn([c.B, c.Hkv, c.Tk, c.D], 272);
    // each query's first key: the last listed start at or before it (its document's), or c.firstKey's
    const firstKey = c.starts ? Int32Array.from({ length: c.B * c.Tq }, (_, i) => {
      const b = Math.floor(i / c.Tq), t = i % c.Tq;
      return c.firstKey ? c.firstKey(t) : c.starts![b].filter((s0) => s0 <= t).pop()!;
    }) : null;
    const keyMask = c.masked ? mask(Array.from({ length: c.B * c.Tk }, (_, i) => (i % c.Tk === 3 ? 1 : 0)), [c.B, c.Tk]) : null;
    const y = T.scaledDotProductAttention(q, k, v, { causal: c.causal, mask: firstKey ? { keyMask: null, firstKey } : keyMask ?? undefined });
    y.mul(rn([c.B, c.H, c.Tq, c.D], 273)).sum().backward();
    return [y.f32(), ...[q, k, v].map((t) => (t.grad as Tensor).f32())];
  });
  attentionPoison(true);
  try {
    for (const c of cases) {
      const ref = run(portable, c), got = run(native, c);
      got.forEach((x, i) => {
        assert.ok(x.every(Number.isFinite), `${c.name} output/grad ${i}: a NaN of the poisoned scratch was read`);
        assert.ok(relErr(x, ref[i]) < 1e-5, `${c.name} output/grad ${i}: ${relErr(x, ref[i])}`);
      });
    }
  } finally {
    attentionPoison(false);
  }
});

test('fused qkv attention: its gradient buffer may come from the pool dirty, every element is written', () => {
  for (const b of testBackends()) withBackend(b, () => {
    const [B, Tn, C] = [2, 64, 64]; // qkv of 2 x 64 x 192 floats = 96 KiB: a pooled size
    const x = rn([B, Tn, 3 * C], 230), w = rn([B, Tn, C], 231);
    const run = (fused: boolean) => {
      const xx = x.detach().requireGrad();
      if (fused) releaseBuffer(new Float32Array(B * Tn * 3 * C).fill(Number.NaN)); // the next buffer of that length
      const y = fused
        ? T.fusedQKVAttention(xx, 4, { causal: true })
        : (() => {
          const parts = [0, 1, 2].map((i) => T.slice(xx, 2, i * C, (i + 1) * C).reshape([B, Tn, 4, C / 4]).transpose(1, 2));
          return T.composedAttention(parts[0], parts[1], parts[2], true, null, 1 / Math.sqrt(C / 4), Tn, Tn).transpose(1, 2).reshape([B, Tn, C]);
        })();
      y.mul(w).sum().backward();
      return (xx.grad as Tensor).f32();
    };
    const f = run(true), c = run(false);
    assert.ok(f.every(Number.isFinite), `${b.name}: a NaN of the dirty buffer survived`);
    assert.ok(relErr(f, c) < 1e-5, `${b.name}: ${relErr(f, c)}`);
  });
});

test('fused attention: a query whose keys are all masked gets a zero output and zero gradients', () => {
  for (const b of testBackends()) withBackend(b, () => {
    const q = rn([2, 1, 3, 4], 220), k = rn([2, 1, 3, 4], 221), v = rn([2, 1, 3, 4], 222);
    const y = T.scaledDotProductAttention(q, k, v, { mask: mask([1, 1, 1, 0, 0, 1], [2, 3]) });
    y.sum().backward();
    const out = y.f32(), gq = (q.grad as Tensor).f32(), gv = (v.grad as Tensor).f32();
    assert.ok(out.subarray(0, 12).every((x) => x === 0) && gq.subarray(0, 12).every((x) => x === 0), `${b.name}: batch 0 is all masked`);
    assert.ok([...out, ...gq, ...gv].every(Number.isFinite));
    assert.ok(gv.subarray(12, 24).some((x) => x !== 0));
  });
});

test('bf16 autocast matmul agrees across backends within 1e-2 and with f32 within bf16 precision', (t) => {
  const backends = testBackends();
  const run = () => {
    const a = rn([33, 65], 100), b = rn([65, 17], 101);
    const y = T.autocast('bf16', () => a.matmul(b));
    y.sum().backward();
    return { y: y.f32(), ga: (a.grad as Tensor).f32(), f32: a.detach().matmul(b.detach()).f32() };
  };
  const p = withBackend(backends[0], run);
  assert.ok(relErr(p.y, p.f32) < 2e-2, `bf16 vs f32 rel err ${relErr(p.y, p.f32)}`);
  if (!backends.some((b) => b.name === 'native')) skipOrFail(t, 'native addon', 'not built');
  if (backends.length < 2) return t.skip('neither the native nor the wasm backend loads');
  for (const other of backends.slice(1)) {
    const n = withBackend(other, run);
    assert.ok(relErr(n.y, p.y) <= 1e-2 && relErr(n.ga, p.ga) <= 1e-2, `${other.name}: ${relErr(n.y, p.y)}, ${relErr(n.ga, p.ga)}`);
  }
});

test('crossEntropy with consumed logits: the same loss and gradient bits as with the logits kept, on every backend, over two backward passes', () => {
  const r = new Rng(7);
  const C = 517; // over the vector widths, with a tail
  const x = new Float32Array(6 * C).map(() => 4 * r.normal());
  x[3] = Infinity - Infinity; // a NaN in a row whose target is ignored
  x[C + 10] = -Infinity; // beside row 1's target
  x[2 * C + 4] = 80; // one logit far above the rest
  const targets = ids([-100, 9, 4, 516, 0, 3]);
  for (const be of testBackends()) {
    withBackend(be, () => {
      const run = (consume: boolean) => {
        const leaf = new Tensor(x.slice(), 'f32', [6, C]);
        leaf.requiresGrad = true;
        const loss = T.crossEntropy(leaf.mul(1.5), targets, { consumeLogits: consume }); // a temporary the loss may take
        const bits = () => Array.from(new Uint32Array(Float32Array.from(leaf.grad!.f32()).buffer));
        loss.backward({ retainGraph: true });
        const first = bits();
        loss.backward(); // the second pass adds the same gradient again
        return { loss: loss.item(), first, second: bits() };
      };
      const a = run(false), b = run(true);
      assert.ok(Number.isFinite(a.loss) && a.first.some((u) => u !== 0), `${be.name}: loss ${a.loss}`);
      assert.deepEqual(b, a, `${be.name}: consumed logits`);
    });
  }
});

test('linearCrossEntropy equals crossEntropy(linear(...)) for f32, bf16 and int8 weights, scaled upstream, no grad', () => {
  for (const be of testBackends()) withBackend(be, () => {
    const targets = ids([3, 0, 9, -100, 9, 5, 1, 2, 8, 0, 4, 7, 6, 6, 2, 1, 0], [17]);
    const q = new Tensor(Int8Array.from({ length: 10 * 6 }, (_, i) => ((i * 37) % 255) - 127), 'i8', [10, 6]);
    const sc = rn([10], 300, 0.002, 0.01);
    for (const kind of ['f32', 'bf16', 'int8'] as const) {
      const run = (fused: boolean) => {
        const h = rn([17, 6], 301);
        const w = kind === 'f32' ? rn([10, 6], 302) : kind === 'bf16' ? rn([10, 6], 302).to('bf16') : q;
        const b = rn([10], 303);
        const opts = { labelSmoothing: 0.05 };
        const loss = fused
          ? T.linearCrossEntropy(h, w, b, targets, { ...opts, scales: kind === 'int8' ? sc : null, chunkRows: 5 })
          : T.crossEntropy(kind === 'int8' ? T.linearInt8(h, q, sc, b) : T.linear(h, w, b), targets, opts);
        loss.mul(0.5).backward();
        return { loss: loss.item(), gh: (h.grad as Tensor).f32(), gw: w.grad ? w.grad.f32() : null, gb: (b.grad as Tensor).f32() };
      };
      const f = run(true), u = run(false);
      assert.ok(Math.abs(f.loss - u.loss) < 1e-5 * Math.abs(u.loss), `${be.name} ${kind}: loss ${f.loss} vs ${u.loss}`);
      assert.ok(relErr(f.gh, u.gh) < 1e-5 && relErr(f.gb, u.gb) < 1e-5, `${be.name} ${kind}: gh ${relErr(f.gh, u.gh)} gb ${relErr(f.gb, u.gb)}`);
      if (kind === 'f32') assert.ok(relErr(f.gw!, u.gw!) < 1e-5, `${be.name}: gw ${relErr(f.gw!, u.gw!)}`);
      else assert.equal(f.gw, null);
    }
    // under noGrad: the same loss, nothing recorded
    const h = rn([17, 6], 301), w = rn([10, 6], 302);
    const l = T.noGrad(() => T.linearCrossEntropy(h, w, null, targets));
    assert.ok(Math.abs(l.item() - T.crossEntropy(T.linear(h, w, null), targets).item()) < 1e-5 && !l.requiresGrad);
  });
});

test("linearCrossEntropy reduction 'none': each row's loss as crossEntropy's, h's gradient under per-row upstream values; a trainable weight is refused", () => {
  for (const be of testBackends()) withBackend(be, () => {
    const targets = ids([3, 0, 9, -100, 9, 5, 1, 2, 8, 0, 4], [11]);
    const up = new Tensor(Float32Array.from({ length: 11 }, (_, i) => (i % 3) - 0.7 * i), 'f32', [11]);
    for (const kind of ['f32', 'bf16'] as const) {
      const run = (fused: boolean) => {
        const h = rn([11, 6], 311);
        const w = rn([10, 6], 312).to(kind), b = rn([10], 313);
        w.requiresGrad = false;
        b.requiresGrad = false;
        const rows = fused ? T.linearCrossEntropy(h, w, b, targets, { reduction: 'none', labelSmoothing: 0.05, chunkRows: 4 })
          : T.crossEntropy(T.linear(h, w, b), targets, { reduction: 'none', labelSmoothing: 0.05 });
        T.sum(T.mul(rows, up)).backward();
        return { rows: Float32Array.from(rows.f32()), gh: (h.grad as Tensor).f32(), shape: rows.shape };
      };
      const f = run(true), u = run(false);
      assert.deepEqual(f.shape, [11]);
      assert.ok(relErr(f.rows, u.rows) < 1e-5 && f.rows[3] === 0, `${be.name} ${kind}: rows ${relErr(f.rows, u.rows)}`);
      assert.ok(relErr(f.gh, u.gh) < 1e-5, `${be.name} ${kind}: gh ${relErr(f.gh, u.gh)}`);
    }
    const h = rn([11, 6], 311), w = rn([10, 6], 312);
    assert.throws(() => T.linearCrossEntropy(h, w, null, targets, { reduction: 'none' }), /gradients to h only/);
    const l = T.noGrad(() => T.linearCrossEntropy(h, w, null, targets, { reduction: 'none' }));
    assert.ok(relErr(l.f32(), T.noGrad(() => T.crossEntropy(T.linear(h, w, null), targets, { reduction: 'none' })).f32()) < 1e-5);
  });
});
