/**
 * Gradient compression: one table of compressor cases run through the same checks (round trip, exactness or
 * precision, payload size formula, hostile payloads, unbiasedness, 3-rank encode/decodeSum), then the
 * memories (residual, DGC), PowerSGD on a low-rank matrix, the step frame and config errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/backend/rng.js';
import { CommunicationError, ConfigError } from '../src/errors.js';
import {
  GradientCompression, makeCompressor, registerCompressor, resolveSpec, sparsityWarmup, ResidualMemory, DGCMemory,
  PowerSGDCompressor, TopKCompressor, type CompressionSpec, type Compressor,
} from '../src/compress/index.js';
import { parseTrainerConfig, type TrainerConfig } from '../src/train/config.js';
import { benchCompressors, VARIANTS, type CompressionRecord } from '../src/bench/compression.js';

function gaussian(n: number, seed: number, scale = 1): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => scale * r.normal());
}
const ctxOf = (name: string, shape: number[], step = 0, seed = 1) => ({ name, shape, step, rng: new Rng(seed) });
/** Matrix shapes for the sizes used below (PowerSGD factors them; the others ignore shapes). */
const SHAPES: Record<number, number[]> = { 1: [1], 7: [7], 1000: [40, 25], 40000: [200, 200] };
const SIZES = [1, 7, 1000, 40000];

interface Case {
  spec: CompressionSpec;
  unbiased: boolean;
  /** The payload size by the wire format's formula (sparse methods read k and index bytes from the payload). */
  bytes: (n: number, p: Uint8Array, shape: number[]) => number;
  /** Checks one decompression d of g. */
  check: (g: Float32Array, d: Float32Array, shape: number[]) => void;
}

const u32 = (p: Uint8Array, off: number) => new DataView(p.buffer, p.byteOffset).getUint32(off, true);
/** Value-section bytes: f32[k], or f32 scale + f16[k] padded to 4 bytes. */
const valueBytes = (values: 'f32' | 'f16', k: number) => (values === 'f32' ? 4 * k : 4 + 4 * Math.ceil(k / 2));
/** The sparse size formula for payloads whose flag bit 1 must say `values`. */
const sparseBytes = (values: 'f32' | 'f16') => (_n: number, p: Uint8Array) => {
  const k = u32(p, 8), ib = u32(p, 12);
  assert.equal(p[3] & 2, values === 'f16' ? 2 : 0, 'flag bit 1 records the value dtype');
  assert.ok(ib === 4 * k || ib <= 4 * k, 'index section is the smaller of u32 and varint');
  return 16 + valueBytes(values, k) + ib;
};
/** d is v as sent: exactly (f32) or rounded to half precision (f16: relative error <= 2^-11). */
function sentAs(values: 'f32' | 'f16', v: number, d: number, what: string): void {
  if (values === 'f32') assert.equal(d, v, what);
  else assert.ok(Math.abs(d - v) <= 2 ** -11 * Math.abs(v) && Math.sign(d) === Math.sign(v), `${what}: ${d} vs ${v} (f16)`);
}
function checkMask(g: Float32Array, d: Float32Array, tau: number, values: 'f32' | 'f16'): void {
  for (let i = 0; i < g.length; i++) {
    if (Math.abs(g[i]) > tau) sentAs(values, g[i], d[i], `element ${i}`);
    else assert.equal(d[i], 0, `element ${i}`);
  }
}
const topkCase = (values: 'f32' | 'f16'): Case => ({
  spec: { method: 'topk', ratio: 0.1, values }, unbiased: false, bytes: sparseBytes(values),
  check: (g, d) => {
    const k = Math.max(1, Math.ceil(0.1 * g.length));
    let kept = 0, minKept = Infinity, maxDropped = 0;
    g.forEach((v, i) => {
      if (d[i] !== 0) { sentAs(values, v, d[i], `topk element ${i}`); kept++; minKept = Math.min(minKept, Math.abs(v)); } else maxDropped = Math.max(maxDropped, Math.abs(v));
    });
    assert.equal(kept, k);
    assert.ok(minKept >= maxDropped, `kept ${minKept} >= dropped ${maxDropped}`);
  },
});
const randomkCase = (values: 'f32' | 'f16'): Case => ({
  spec: { method: 'randomk', ratio: 0.1, values }, unbiased: true, bytes: (n, p) => {
    assert.equal(p[3] & 2, values === 'f16' ? 2 : 0, 'flag bit 1 records the value dtype');
    return 16 + valueBytes(values, Math.max(1, Math.ceil(0.1 * n)));
  },
  check: (g, d) => {
    const k = Math.max(1, Math.ceil(0.1 * g.length));
    let kept = 0;
    g.forEach((v, i) => { if (d[i] !== 0) { kept++; assert.ok(Math.abs(d[i] - (v * g.length) / k) <= (values === 'f32' ? 1e-5 : 2 ** -10) * Math.abs(d[i])); } });
    assert.ok(kept <= k);
  },
});
function std(g: Float32Array): number {
  let s = 0, s2 = 0;
  for (const v of g) { s += v; s2 += v * v; }
  return Math.sqrt(Math.max(0, s2 / g.length - (s / g.length) ** 2));
}

const CASES: Case[] = [
  { spec: { method: 'none' }, unbiased: true, bytes: (n) => 8 + 4 * n, check: (g, d) => assert.deepEqual(d, g) },
  {
    spec: { method: 'fp16' }, unbiased: false, bytes: (n) => 8 + 2 * n,
    check: (g, d) => g.forEach((v, i) => assert.ok(Math.abs(d[i] - v) <= 2 ** -11 * Math.abs(v) + 1e-7, `fp16 element ${i}: ${d[i]} vs ${v}`)),
  },
  {
    spec: { method: 'bf16' }, unbiased: false, bytes: (n) => 8 + 2 * n,
    check: (g, d) => g.forEach((v, i) => assert.ok(Math.abs(d[i] - v) <= 2 ** -8 * Math.abs(v), `bf16 element ${i}: ${d[i]} vs ${v}`)),
  },
  topkCase('f16'),
  topkCase('f32'),
  randomkCase('f16'),
  randomkCase('f32'),
  { spec: { method: 'threshold', threshold: 0.5, values: 'f16' }, unbiased: false, bytes: sparseBytes('f16'), check: (g, d) => checkMask(g, d, 0.5, 'f16') },
  { spec: { method: 'threshold', threshold: 0.5, values: 'f32' }, unbiased: false, bytes: sparseBytes('f32'), check: (g, d) => checkMask(g, d, 0.5, 'f32') },
  { spec: { method: 'std-mask', lambda: 1.5 }, unbiased: false, bytes: sparseBytes('f16'), check: (g, d) => checkMask(g, d, 1.5 * std(g), 'f16') },
  { spec: { method: 'std-mask', lambda: 1.5, values: 'f32' }, unbiased: false, bytes: sparseBytes('f32'), check: (g, d) => checkMask(g, d, 1.5 * std(g), 'f32') },
  {
    spec: { method: 'qsgd', levels: 7, bucketSize: 64 }, unbiased: true,
    bytes: (n) => 16 + 4 * Math.ceil(n / 64) + Math.ceil((n * 4) / 8),
    check: (g, d) => g.forEach((v, i) => assert.ok(d[i] === 0 || Math.sign(d[i]) === Math.sign(v), `qsgd sign ${i}`)),
  },
  {
    spec: { method: 'terngrad' }, unbiased: true, bytes: (n) => 12 + Math.ceil(n / 4),
    check: (g, d) => {
      const s = Math.fround(g.reduce((m, v) => Math.max(m, Math.abs(v)), 0));
      g.forEach((v, i) => assert.ok(d[i] === 0 || d[i] === Math.sign(v) * s, `terngrad element ${i}: ${d[i]}`));
    },
  },
  {
    spec: { method: 'onebit' }, unbiased: false, bytes: (n) => 12 + Math.ceil(n / 8),
    check: (g, d) => {
      const s = Math.fround(g.reduce((m, v) => m + Math.abs(v), 0) / g.length);
      g.forEach((v, i) => assert.equal(d[i], v < 0 ? -s : s));
    },
  },
  {
    spec: { method: 'powersgd', rank: 2 }, unbiased: false,
    bytes: (n, _p, shape) => {
      const [rows, cols] = shape.length === 2 ? shape : [n, 1];
      const r = Math.min(2, rows, cols);
      return 20 + 4 * (shape.length === 2 && r * (rows + cols) < n ? r * (rows + cols) : n);
    },
    check: (g, d, shape) => {
      if (shape.length < 2) return assert.deepEqual(d, g); // vectors travel uncompressed
      const norm = (a: Float32Array) => Math.sqrt(a.reduce((s, v) => s + v * v, 0));
      assert.ok(norm(d) <= norm(g) * (1 + 1e-4), 'P P^T M is a projection of M');
    },
  },
];

test('the table covers every built-in method', () => {
  assert.deepEqual([...new Set(CASES.map((c) => c.spec.method))].sort(), ['bf16', 'fp16', 'none', 'onebit', 'powersgd', 'qsgd', 'randomk', 'std-mask', 'terngrad', 'threshold', 'topk']);
});

const SPARSE = ['topk', 'randomk', 'threshold', 'std-mask'];
for (const c of CASES) {
  const name = c.spec.method;
  const label = SPARSE.includes(name) ? `${name} (${c.spec.values ?? 'f16'} values)` : name;
  test(`${label}: round trip keeps size and dtype, values within the method's guarantee, exact payload size`, () => {
    const comp = makeCompressor(c.spec);
    assert.equal(comp.name, name);
    assert.equal(comp.unbiased, c.unbiased);
    for (const n of SIZES) {
      const g = gaussian(n, n);
      const shape = SHAPES[n];
      const p = comp.compress(g, ctxOf('w', shape));
      assert.ok(p instanceof Uint8Array);
      assert.equal(p.length, c.bytes(n, p, shape), `${name} n=${n}: payload size formula`);
      assert.equal(p.length, (comp as Compressor & { expectedBytes(n: number, p?: Uint8Array, s?: readonly number[]): number }).expectedBytes(n, p, shape), `${name} n=${n}: expectedBytes`);
      const d = comp.decompress(p, n);
      assert.ok(d instanceof Float32Array);
      assert.equal(d.length, n);
      c.check(g, d, shape);
      // decompressAdd accumulates alpha times the same values, and an unaligned payload decodes the same
      const acc = Float32Array.from(g);
      comp.decompressAdd(p, acc, 0.5);
      acc.forEach((v, i) => assert.ok(Math.abs(v - (g[i] + 0.5 * d[i])) <= 1e-5 * (Math.abs(v) + 1), `decompressAdd element ${i}`));
      const shifted = new Uint8Array(p.length + 1).subarray(1);
      shifted.set(p);
      assert.deepEqual(comp.decompress(shifted, n), d);
    }
  });

  test(`${label}: hostile payloads are CommunicationErrors naming the compressor and field`, () => {
    const comp = makeCompressor(c.spec);
    const n = 1000, p = comp.compress(gaussian(n, 3), ctxOf('w', SHAPES[n]));
    const bad = (mutate: (q: Uint8Array) => Uint8Array, field: RegExp, numel = n) => assert.throws(() => comp.decompress(mutate(p.slice()), numel), (e: unknown) => {
      assert.ok(e instanceof CommunicationError, `${name}: ${String(e)}`);
      assert.match(e.message, new RegExp(`'${name}'`));
      assert.match(e.message, field);
      return true;
    });
    bad((q) => q.subarray(0, q.length - 1), /length|indices/);
    bad((q) => q.subarray(0, 5), /length/);
    bad((q) => { const r = new Uint8Array(q.length + 4); r.set(q); return r; }, /length|indices/);
    bad((q) => { q[0] = 0x12; return q; }, /magic/);
    bad((q) => { q[1] = (q[1] + 1) % 11; return q; }, /method/);
    bad((q) => { q[2] = 9; return q; }, /version/);
    bad((q) => q, /numel/, n + 1);
    if (SPARSE.includes(name)) {
      const f16 = (p[3] & 2) !== 0, k = u32(p, 8);
      bad((q) => { q[3] |= 0x80; return q; }, /flags/);
      bad((q) => { q[3] ^= 2; return q; }, /length/); // the other value dtype: the section sizes disagree
      if (f16) {
        const setScale = (v: number) => (q: Uint8Array) => { new DataView(q.buffer, q.byteOffset).setFloat32(16, v, true); return q; };
        for (const v of [NaN, Infinity, 0, -1]) bad(setScale(v), /scale/);
        if (k & 1) bad((q) => { q[20 + 2 * k] = 1; return q; }, /padding/);
      }
    }
  });

  if (c.unbiased) {
    test(`${label}: unbiased, the mean of many decompressions is the input within 5 standard errors`, () => {
      const comp = makeCompressor(c.spec);
      const n = 64, T = 3000, g = gaussian(n, 5);
      const s1 = new Float64Array(n), s2 = new Float64Array(n), rng = new Rng(11);
      for (let t = 0; t < T; t++) {
        const d = comp.decompress(comp.compress(g, { name: 'w', shape: [n], step: 0, rng }), n);
        for (let i = 0; i < n; i++) { s1[i] += d[i]; s2[i] += d[i] * d[i]; }
      }
      for (let i = 0; i < n; i++) {
        const mean = s1[i] / T, sd = Math.sqrt(Math.max(0, s2[i] / T - mean * mean));
        assert.ok(Math.abs(mean - g[i]) <= 5 * sd / Math.sqrt(T) + 1e-6, `${name} element ${i}: mean ${mean} vs ${g[i]} (sd ${sd})`);
      }
    });
  }

  test(`${label}: encode/decodeSum over 3 simulated ranks equals the sum of each rank's decompression`, () => {
    const shapes = new Map([['a', [40, 25]], ['b', [7]], ['c', [200, 200]]]);
    const spec = { ...c.spec, errorFeedback: false };
    const ranks = [0, 1, 2].map((rank) => new GradientCompression(spec, { seed: 9, rank, shapes }));
    const grads = [0, 1, 2].map((r) => new Map([...shapes].map(([k, s], j) => [k, gaussian(s.reduce((a, b) => a * b, 1), 100 * r + j)])));
    const frames = ranks.map((gc, r) => gc.encode(grads[r], 0));
    const zeros = () => new Map([...shapes].map(([k, s]) => [k, new Float32Array(s.reduce((a, b) => a * b, 1))]));
    const sum = zeros(), mean = zeros(), each = [0, 1, 2].map(zeros);
    ranks[0].decodeSum(frames, sum, false);
    ranks[1].decodeSum(frames, mean, true);
    frames.forEach((f, r) => ranks[2].decodeSum([f], each[r], false));
    for (const k of shapes.keys()) {
      const ref = each[0].get(k)!.map((v, i) => v + each[1].get(k)![i] + each[2].get(k)![i]);
      sum.get(k)!.forEach((v, i) => assert.ok(Math.abs(v - ref[i]) <= 1e-5 * (1 + Math.abs(ref[i])), `${k}[${i}]`));
      mean.get(k)!.forEach((v, i) => assert.ok(Math.abs(v - ref[i] / 3) <= 1e-5 * (1 + Math.abs(ref[i])), `mean ${k}[${i}]`));
    }
    if (!['qsgd', 'terngrad', 'randomk', 'powersgd'].includes(name)) { // deterministic: the compressor alone gives the same
      const comp = makeCompressor(c.spec);
      for (const [k, s] of shapes) {
        const ref = new Float32Array(s.reduce((a, b) => a * b, 1));
        for (let r = 0; r < 3; r++) comp.decompressAdd(comp.compress(grads[r].get(k)!, ctxOf(k, s)), ref);
        assert.deepEqual(sum.get(k), ref);
      }
    }
    const dense = 4 * (1000 + 7 + 40000);
    assert.equal(ranks[0].denseBytes, dense);
    assert.equal(ranks[0].bytes, frames[0].length);
  });
}

test('residual error feedback: residual + sent = input, and the residual is added to the next gradient', () => {
  for (const method of ['topk', 'onebit', 'qsgd', 'powersgd'] as const) {
    const comp = makeCompressor({ method, ratio: 0.05, rank: 1 });
    const mem = new ResidualMemory();
    let prev = new Float32Array(1000);
    for (let step = 0; step < 3; step++) {
      const g = gaussian(1000, step + 20);
      const input = mem.compensate('w', g);
      input.forEach((v, i) => assert.ok(Math.abs(v - (g[i] + prev[i])) <= 1e-6, `${method} step ${step}: compensated = grad + residual`));
      const sent = comp.decompress(comp.compress(input, ctxOf('w', [40, 25], step)), 1000);
      mem.update('w', input, sent);
      const res = mem.residual('w')!;
      res.forEach((r, i) => assert.ok(Math.abs(r + sent[i] - input[i]) <= 1e-6 * (1 + Math.abs(input[i])), `${method}: residual + sent = input at ${i}`));
      prev = res.slice();
    }
  }
});

test('residual error feedback with f16 values: sent is the f16-rounded value, residual + sent = input exactly', () => {
  for (const spec of [{ method: 'topk', ratio: 0.05 }, { method: 'threshold', threshold: 1.5e-3 }, { method: 'std-mask' }, { method: 'randomk', errorFeedback: true }] as CompressionSpec[]) {
    const gc = new GradientCompression(spec, { seed: 3, shapes: new Map([['w', [1000]]]) });
    assert.equal(gc.memory.name, 'residual');
    const mem = gc.memory as ResidualMemory;
    for (let step = 0; step < 3; step++) {
      const g = gaussian(1000, step + 40, 1e-3); // small gradients: the scale keeps half precision
      const input = Float32Array.from(mem.compensate('w', g));
      const frame = gc.encode(new Map([['w', g]]), step);
      const sent = new Float32Array(1000);
      gc.decodeSum([frame], new Map([['w', sent]]), false);
      const res = mem.residual('w')!;
      let rounded = 0;
      for (let i = 0; i < 1000; i++) {
        if (spec.method === 'randomk') { // sent = input * numel / k: input - sent is rounded to f32 once
          assert.ok(Math.abs(res[i] + sent[i] - input[i]) <= 2 ** -24 * Math.abs(res[i]), `randomk: residual + sent = input at ${i}`);
          continue;
        }
        assert.equal(res[i] + sent[i], input[i], `${spec.method} step ${step}: residual + sent = input exactly at ${i}`);
        if (sent[i] !== 0) {
          assert.ok(Math.abs(sent[i] - input[i]) <= 2 ** -11 * Math.abs(input[i]), `${spec.method}: f16 precision at ${i}`);
          if (sent[i] !== input[i]) rounded++;
        }
      }
      if (spec.method !== 'randomk') assert.ok(rounded > 0, `${spec.method}: the residual keeps the f16 rounding error`);
    }
  }
});

test('compression ratios on a 1M-element gaussian: top-k 10% >= 10x with f16 values, 4-bit QSGD >= 7x', (t) => {
  const n = 1 << 20, g = gaussian(n, 77, 1e-3), ctx = ctxOf('w', [n]);
  const ratio = (spec: CompressionSpec) => {
    const comp = makeCompressor(spec), p = comp.compress(g, ctx);
    assert.equal(p.length, comp.expectedBytes(n, p));
    const r = (4 * n) / p.length;
    t.diagnostic(`${JSON.stringify(spec)}: ${p.length} bytes, ${r.toFixed(2)}x`);
    return r;
  };
  const topk = ratio({ method: 'topk', ratio: 0.1 });
  assert.ok(topk >= 10, `top-k 10% f16: ${topk}x`);
  const topk32 = ratio({ method: 'topk', ratio: 0.1, values: 'f32' });
  assert.ok(topk32 < 10 && topk > topk32);
  assert.ok(ratio({ method: 'std-mask' }) >= 10);
  ratio({ method: 'std-mask', values: 'f32' });
  ratio({ method: 'randomk', ratio: 0.1 });
  const q = makeCompressor({ method: 'qsgd', levels: 7 }) as Compressor & { bits: number };
  assert.equal(q.bits, 4, 'levels 7: 1 sign + 3 level bits');
  assert.equal((makeCompressor({ method: 'qsgd', levels: 15 }) as Compressor & { bits: number }).bits, 5);
  assert.ok(ratio({ method: 'qsgd', levels: 7 }) >= 7);
  ratio({ method: 'qsgd', levels: 15 });
  ratio({ method: 'qsgd' });
  assert.ok(ratio({ method: 'onebit' }) >= 31);
});

test('DGC: momentum correction, accumulation, momentum-factor masking and local clipping', () => {
  const mem = new DGCMemory({ momentum: 0.9, clipNorm: 0 });
  const comp = makeCompressor({ method: 'topk', ratio: 0.25 });
  const g1 = Float32Array.from([4, -1, 0.5, 2]), g2 = Float32Array.from([1, 1, 1, 1]);
  const v1 = mem.compensate('w', g1);
  assert.deepEqual([...v1], [4, -1, 0.5, 2]);
  const sent = comp.decompress(comp.compress(v1, ctxOf('w', [4])), 4);
  assert.deepEqual([...sent], [4, 0, 0, 0]);
  mem.update('w', v1, sent);
  assert.deepEqual([...mem.buffers('w').u!], [0, -1, 0.5, 2], 'u zeroed where sent');
  assert.deepEqual([...mem.buffers('w').v!], [0, -1, 0.5, 2], 'v zeroed where sent');
  const v2 = mem.compensate('w', g2); // u = 0.9 u + g2; v = v + u
  const u2 = [1, 0.1, 1.45, 2.8];
  u2.forEach((u, i) => assert.ok(Math.abs(mem.buffers('w').u![i] - u) < 1e-6));
  [1, -0.9, 1.95, 4.8].forEach((v, i) => assert.ok(Math.abs(v2[i] - v) < 1e-6));
  const clipped = new DGCMemory({ momentum: 0.9, clipNorm: 1 });
  const c = clipped.compensate('w', Float32Array.from([3, 4]));
  assert.ok(Math.abs(c[0] - 0.6) < 1e-6 && Math.abs(c[1] - 0.8) < 1e-6, 'clipped to norm 1');
  assert.equal(resolveSpec({ method: 'topk', errorFeedback: 'dgc' }).errorFeedback, 'dgc');
  assert.equal(new GradientCompression({ method: 'topk', errorFeedback: 'dgc' }).memory.name, 'dgc');
});

test('DGC sparsity warm-up: exponential from 25% to the target over warmupSteps', () => {
  assert.equal(sparsityWarmup(0, 0.001, 4), 0.25);
  for (let s = 1; s <= 4; s++) assert.ok(Math.abs(sparsityWarmup(s, 0.001, 4) - 0.25 * (0.004) ** (s / 4)) < 1e-12);
  assert.equal(sparsityWarmup(4, 0.001, 4), 0.001);
  assert.equal(sparsityWarmup(100, 0.001, 4), 0.001);
  assert.equal(sparsityWarmup(0, 0.5, 4), 0.5, 'a target above 25% needs no warm-up');
  const topk = makeCompressor({ method: 'topk', ratio: 0.01, warmupSteps: 2 }) as TopKCompressor;
  const g = gaussian(1000, 1);
  const kOf = (step: number) => u32(topk.compress(g, ctxOf('w', [1000], step)), 8);
  assert.deepEqual([kOf(0), kOf(1), kOf(2), kOf(3)], [250, 50, 10, 10]);
});

test('PowerSGD recovers an exactly low-rank matrix and keeps Q across steps', () => {
  const rows = 30, cols = 20, A = gaussian(rows * 2, 1), B = gaussian(cols * 2, 2);
  const M = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) M[i * cols + j] = A[2 * i] * B[2 * j] + A[2 * i + 1] * B[2 * j + 1];
  const ps = makeCompressor({ method: 'powersgd', rank: 2 }) as PowerSGDCompressor;
  const rng = new Rng(3);
  const d = ps.decompress(ps.compress(M, { name: 'w', shape: [rows, cols], step: 0, rng }), rows * cols);
  const err = Math.sqrt(d.reduce((s, v, i) => s + (v - M[i]) ** 2, 0) / M.reduce((s, v) => s + v * v, 0));
  assert.ok(err < 1e-4, `relative error ${err}`);
  const q = ps.state().w;
  assert.equal(q.length, cols * 2);
  const p2 = ps.compress(M, { name: 'w', shape: [rows, cols], step: 1, rng });
  assert.deepEqual(new Float32Array(p2.buffer, p2.byteOffset + 20 + 4 * rows * 2, cols * 2).length, q.length);
  const d2 = ps.decompress(p2, rows * cols);
  assert.ok(Math.sqrt(d2.reduce((s, v, i) => s + (v - M[i]) ** 2, 0) / M.reduce((s, v) => s + v * v, 0)) < 1e-4, 'warm start still exact');
});

test('top-k selects exactly the k largest magnitudes on the sampled path (large tensor, ties)', () => {
  const n = 200000, g = gaussian(n, 8);
  for (let i = 0; i < 1000; i++) g[i * 7] = 0.25; // many ties
  for (const ratio of [0.001, 0.1, 0.6]) {
    const comp = makeCompressor({ method: 'topk', ratio, values: 'f32' }); // exact values: the sums below compare
    const d = comp.decompress(comp.compress(g, ctxOf('w', [n])), n);
    const k = Math.ceil(ratio * n);
    const sorted = Float32Array.from(g, Math.abs).sort().reverse();
    let kept = 0, sumKept = 0, sumRef = 0;
    for (let i = 0; i < n; i++) if (d[i] !== 0) { kept++; sumKept += Math.abs(d[i]); }
    for (let i = 0; i < k; i++) sumRef += sorted[i];
    assert.equal(kept, k, `ratio ${ratio}`);
    assert.ok(Math.abs(sumKept - sumRef) <= 1e-6 * sumRef, `ratio ${ratio}: the kept magnitudes are the top k`);
  }
});

test('step frames: hostile frames are CommunicationErrors; LoRA-only gradients are just fewer tensors', () => {
  const gc = new GradientCompression(true);
  const grads = new Map([['lora_A', gaussian(64, 1)], ['lora_B', gaussian(64, 2)]]);
  const f = gc.encode(grads, 0);
  const into = () => new Map([['lora_A', new Float32Array(64)], ['lora_B', new Float32Array(64)]]);
  const bad = (frames: Uint8Array[], target: Map<string, Float32Array>, re: RegExp) => assert.throws(() => gc.decodeSum(frames, target, true), (e: unknown) => e instanceof CommunicationError && re.test(e.message));
  bad([f.subarray(0, f.length - 3)], into(), /length/);
  bad([f, f.subarray(0, 4)], into(), /rank 1.*length/);
  bad([f], new Map([['lora_A', new Float32Array(64)]]), /tensor count/);
  bad([f], new Map([['lora_B', new Float32Array(64)], ['lora_A', new Float32Array(64)]]), /name hash/);
  bad([f], new Map([['lora_A', new Float32Array(65)], ['lora_B', new Float32Array(64)]]), /numel/);
  bad([], into(), /payloads/);
  const ok = into();
  gc.decodeSum([f], ok, true);
  assert.equal([...ok.values()].reduce((s, a) => s + a.filter((v) => v !== 0).length, 0), 2 * 7, 'top-k 10% of each');
});

test('config: true = top-k 10% with residual feedback; bad keys are ConfigErrors naming the key; duplicate names throw', () => {
  const s = resolveSpec(true);
  assert.equal(s.method, 'topk');
  assert.equal(s.ratio, 0.1);
  assert.equal(s.errorFeedback, 'residual');
  assert.equal(resolveSpec(false).method, 'none');
  assert.equal(resolveSpec({ method: 'qsgd' }).errorFeedback, 'none');
  assert.equal(resolveSpec({ method: 'onebit' }).errorFeedback, 'residual');
  const bad = (spec: unknown, key: string) => assert.throws(() => makeCompressor(spec as CompressionSpec), (e: unknown) => e instanceof ConfigError && e.message.includes(`'${key}'`));
  bad({ method: 'topk', ratio: 0 }, 'ratio');
  bad({ method: 'topk', ratio: 1.5 }, 'ratio');
  bad({ method: 'zip' }, 'method');
  bad({ method: 'qsgd', levels: 0.5 }, 'levels');
  bad({ method: 'powersgd', rank: 0 }, 'rank');
  bad({ method: 'std-mask', lambda: -1 }, 'lambda');
  bad({ method: 'topk', warmupSteps: -1 }, 'warmupSteps');
  bad({ method: 'topk', errorFeedback: 'yes' }, 'errorFeedback');
  bad({ method: 'topk', ratoi: 0.1 }, 'ratoi');
  bad({ method: 'topk', values: 'f8' }, 'values');
  assert.equal(resolveSpec({ method: 'topk' }).values, 'f16');
  assert.equal(resolveSpec(true).values, 'f16');
  assert.throws(() => registerCompressor('topk', () => makeCompressor({ method: 'none' })), ConfigError);
});

test('the trainer\'s gradientCompression key is the registry\'s schema: every option reachable, bad values named', () => {
  const all = [
    { method: 'topk', ratio: 0.01, errorFeedback: 'dgc', momentum: 0.8, clipNorm: 2, warmupSteps: 10, values: 'f32' },
    { method: 'std-mask', lambda: 2.5, errorFeedback: 'residual' },
    { method: 'threshold', threshold: 0.01 },
    { method: 'qsgd', levels: 7, bucketSize: 128, errorFeedback: 'none' },
    { method: 'powersgd', rank: 2 },
  ];
  for (const spec of all) {
    const cfg = parseTrainerConfig({ gradientCompression: spec });
    assert.deepEqual(cfg.gradientCompression, spec);
    const r = resolveSpec(cfg.gradientCompression as CompressionSpec);
    for (const [k, v] of Object.entries(spec)) if (k !== 'errorFeedback') assert.equal((r as unknown as Record<string, unknown>)[k], v, k);
  }
  assert.equal(resolveSpec(parseTrainerConfig({ gradientCompression: { method: 'topk', errorFeedback: 'dgc' } }).gradientCompression as CompressionSpec).errorFeedback, 'dgc');
  const bad = (spec: unknown, re: RegExp) => assert.throws(() => parseTrainerConfig({ gradientCompression: spec }), (e: unknown) => e instanceof ConfigError && re.test(e.message), JSON.stringify(spec));
  bad({ method: 'zip' }, /'gradientCompression\.method' is "zip".*expected one of none, fp16/);
  bad({ method: 'topk', errorFeedback: 'maybe' }, /'gradientCompression\.errorFeedback' is "maybe".*'residual', 'dgc'/);
  bad({ method: 'topk', momentum: 1 }, /'gradientCompression\.momentum' is 1/);
  bad({ method: 'qsgd', levels: 40000 }, /'gradientCompression\.levels' is 40000/);
  bad({ method: 'topk', ratoi: 0.1 }, /'gradientCompression' has unknown key 'ratoi'/);
  // a method's name alone (`--gradient-compression topk`) is that method with its defaults
  assert.deepEqual(parseTrainerConfig({ gradientCompression: 'qsgd' }).gradientCompression, { method: 'qsgd' });
  assert.deepEqual(resolveSpec('topk'), resolveSpec({ method: 'topk' }));
  bad('zip', /'gradientCompression' is "zip": expected true, false, a method name \(none, fp16.*\) or an object with 'method'/);
  // a compressor registered at run time is accepted by the trainer's config at once
  registerCompressor('test-identity', () => makeCompressor({ method: 'none' }));
  assert.equal((parseTrainerConfig({ gradientCompression: { method: 'test-identity' } }).gradientCompression as CompressionSpec).method, 'test-identity');
});

test('sparse payloads switch to u32 indices when varints are not smaller, and check them', () => {
  const n = 2 ** 22 + 2, g = new Float32Array(n);
  g[2 ** 21] = 1;
  g[2 ** 22 + 1] = -2; // both gaps need 4-byte varints: u32 is chosen
  const comp = makeCompressor({ method: 'threshold', threshold: 0.5 });
  const p = comp.compress(g, ctxOf('w', [n]));
  assert.equal(p[3] & 1, 0, 'u32 flag');
  assert.equal(p.length, 16 + (4 + 4) + 8, 'f16 values: scale + 2 halves');
  assert.equal(makeCompressor({ method: 'threshold', threshold: 0.5, values: 'f32' }).compress(g, ctxOf('w', [n])).length, 16 + 8 + 8);
  const d = comp.decompress(p, n);
  assert.equal(d[2 ** 21], 1);
  assert.equal(d[2 ** 22 + 1], -2);
  const q = p.slice();
  q[p.length - 1] = 0xff; // an index beyond numel
  assert.throws(() => comp.decompress(q, n), (e: unknown) => e instanceof CommunicationError && /indices/.test(e.message));
});

test("the trainer's gradientCompression value is a valid spec", () => {
  const fromTrainer: TrainerConfig['gradientCompression'] = { method: 'powersgd', rank: 2, errorFeedback: true };
  const spec: CompressionSpec | boolean = fromTrainer;
  assert.equal(resolveSpec(spec).rank, 2);
  const topk: TrainerConfig['gradientCompression'] = { method: 'topk', ratio: 0.1, values: 'f32' };
  assert.equal(resolveSpec(topk).values, 'f32');
});

test('bench compression has rows for QSGD 4-bit and top-k with DGC, built from the same specs a run takes', () => {
  const rng = new Rng(3);
  const grads = new Map([['w', Float32Array.from({ length: 4096 }, () => rng.normal())], ['b', Float32Array.from({ length: 64 }, () => rng.normal())]]);
  const shapes = new Map([['w', [64, 64]], ['b', [64]]]);
  const recs = benchCompressors(grads, shapes, { source: 'lora', repeats: 1, batchSize: 1 });
  const row = (m: string) => recs.find((r) => r.method === m) as CompressionRecord;
  assert.ok(row('qsgd-4bit') && row('topk-dgc'), recs.map((r) => r.method).join(', '));
  assert.equal(row('topk-dgc').error_feedback, 'dgc');
  assert.ok(row('qsgd-4bit').compression_ratio > 1.6 * row('qsgd').compression_ratio, `${row('qsgd-4bit').compression_ratio} vs ${row('qsgd').compression_ratio}`);
  assert.equal(row('topk-dgc').rel_error, row('topk').rel_error, 'first step with fresh DGC memory sends top-k of g');
  for (const v of Object.values(VARIANTS)) parseTrainerConfig({ gradientCompression: v });
});
