/**
 * The bf16 autocast kernels of the native backend.
 *
 * `unaryBf16` (the MLP's activation made in bf16 for fc2): bit for bit what unary then a cast give, and a Block under
 * bf16 autocast gives the same output and gradients bits with it as without it. `unaryBf16Grad` (the activation and
 * its derivative in bf16, kept by the backward pass instead of x): the same output bits, the derivative rounded; it
 * reads a bf16 x as its widened copy. `matmulToBf16` (a product written in bf16: fc1 read by its activation, the
 * gradient of a bf16 activation) within one rounding of the f32 product; `mulBf16` and `sumRowsBf16` over bf16
 * gradients; a Block with all of them within bf16 rounding of the f32 path.
 *
 * Attention with bf16 products (native `attentionBf16`, taken under bf16 autocast where the CPU multiplies bf16 in
 * hardware) against the f32 kernel of the portable backend: forward output, statistics and the three gradients, with
 * causal and non-causal masks, key masks, packed rows' first keys, Tq < Tk, odd sizes (tails in every vector loop),
 * the fused qkv layout and a problem large enough for the parallel paths. Errors are those of bf16 operands (norm-wise
 * relative, a few 2^-8). The kernel runs oneDNN's bf16 products where the CPU has them and widened f32 sgemm elsewhere:
 * run this file under ONEDNN_MAX_CPU_ISA=AVX512_CORE (or on a CPU without bf16) for the second path.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AttentionShape, Backend } from '../src/backend/backend.js';
import { getBackend, nativeAvailable, setBackend, backend } from '../src/backend/index.js';
import { Rng } from '../src/backend/rng.js';
import { Tensor } from '../src/tensor/tensor.js';
import * as T from '../src/tensor/index.js';
import { autocast } from '../src/tensor/precision.js';
import { requireNative } from './helpers/ci.js';
import { attentionBf16Budget, attentionBf16Tiles } from '../src/backend/native.js';
import { relErr } from './helpers/backends.js';
import { Block, SelfAttention } from '../src/nn/transformer.js';
import { Linear } from '../src/nn/layers.js';
import { LoraModel } from '../src/peft/index.js';
import type { Module } from '../src/nn/module.js';
import { BF16_ATTENTION_MIN_SHARE, visibleShare } from '../src/tensor/ops/attention-bf16.js';

const skip = requireNative();
const portable = getBackend('portable');

const randn = (n: number, seed: number) => {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.normal());
};

interface Case { B: number; H: number; Tq: number; Tk: number; D: number; Dv: number; causal: boolean; keyMask?: boolean; firstKey?: boolean; fused?: boolean }
const CASES: Case[] = [
  { B: 2, H: 3, Tq: 37, Tk: 37, D: 24, Dv: 24, causal: true },
  { B: 1, H: 2, Tq: 5, Tk: 19, D: 8, Dv: 12, causal: true }, // queries are the last Tq positions
  { B: 3, H: 2, Tq: 17, Tk: 17, D: 16, Dv: 16, causal: false, keyMask: true },
  { B: 2, H: 2, Tq: 21, Tk: 21, D: 9, Dv: 9, causal: true, firstKey: true },
  { B: 2, H: 4, Tq: 33, Tk: 33, D: 16, Dv: 16, causal: true, fused: true }, // q, k, v views of one (B, T, 3, H, D) buffer
  { B: 4, H: 4, Tq: 128, Tk: 128, D: 64, Dv: 64, causal: true, fused: true }, // the block workload's attention
  { B: 2, H: 2, Tq: 45, Tk: 45, D: 10, Dv: 6, causal: true, keyMask: true, firstKey: true }, // padded tiles, every mask
  // on the tiles the cases above compute dK, dV as rows (dS^T Q, P^T dO); long heads with few features as dK^T, dV^T
  { B: 1, H: 2, Tq: 70, Tk: 70, D: 8, Dv: 8, causal: false, keyMask: true },
  { B: 1, H: 2, Tq: 100, Tk: 100, D: 8, Dv: 8, causal: true, firstKey: true, fused: true },
];
const tilesHere = skip ? false : attentionBf16Tiles();
/** Runs f with the AMX tiles of the bf16 attention kernel on or off, restoring them after. */
function withTiles<R>(on: boolean, f: () => R): R {
  const was = attentionBf16Tiles();
  attentionBf16Tiles(on);
  try {
    return f();
  } finally {
    attentionBf16Tiles(was);
  }
}

function layout(c: Case) {
  const { B, H, Tq, Tk, D, Dv } = c;
  if (c.fused) {
    const C = H * D, T = Tq;
    const base = randn(B * T * 3 * C, 1);
    const st: [number, number, number] = [T * 3 * C, D, 3 * C];
    return { q: base, k: base.subarray(C), v: base.subarray(2 * C), qs: st, ks: st, vs: st, size: base.length };
  }
  return {
    q: randn(B * H * Tq * D, 1), k: randn(B * H * Tk * D, 2), v: randn(B * H * Tk * Dv, 3),
    qs: [H * Tq * D, Tq * D, D] as [number, number, number], ks: [H * Tk * D, Tk * D, D] as [number, number, number],
    vs: [H * Tk * Dv, Tk * Dv, Dv] as [number, number, number], size: 0,
  };
}

for (const [c, tiles] of CASES.flatMap((c) => [[c, true], [c, false]] as const)) {
  const name = `B${c.B} H${c.H} Tq${c.Tq} Tk${c.Tk} D${c.D} Dv${c.Dv}${c.causal ? ' causal' : ''}${c.keyMask ? ' keyMask' : ''}${c.firstKey ? ' firstKey' : ''}${c.fused ? ' fused qkv' : ''}`;
  test(`attentionBf16 vs the f32 kernel: ${name}, ${tiles ? 'AMX tiles where the CPU has them' : 'batched products'}`, { skip }, () => withTiles(tiles, () => {
    const native = getBackend('native');
    assert.ok(native.attentionBf16 && native.attentionBf16Backward, 'the native backend has the bf16 attention kernels');
    const { B, H, Tq, Tk, D, Dv } = c;
    const L = layout(c);
    const km = c.keyMask ? Float32Array.from({ length: B * Tk }, (_, i) => (i % Tk) % 5 === 3 || (i >= Tk && i % Tk > Tk - 4) ? 1 : 0) : null;
    const fk = c.firstKey ? Int32Array.from({ length: B * Tq }, (_, i) => (i % Tq) < 8 ? 0 : (i % Tq) < 15 ? 8 : 15) : null;
    const shape: AttentionShape = { B, H, Hkv: H, Tq, Tk, D, Dv, qStrides: L.qs, kStrides: L.ks, vStrides: L.vs, outStrides: [Tq * H * Dv, Dv, H * Dv], scale: 1 / Math.sqrt(D), causal: c.causal };
    const run = (be: Backend, lowp: boolean) => {
      const out = new Float32Array(B * Tq * H * Dv).fill(NaN), stats = new Float32Array(B * H * Tq * 2);
      const ql = new Uint16Array(B * H * Tq * D), kl = new Uint16Array(B * H * Tk * D), vl = new Uint16Array(B * H * Tk * Dv);
      if (lowp) be.attentionBf16!(shape, L.q, L.k, L.v, km, fk, out, stats, ql, kl, vl);
      else be.attention(shape, L.q, L.k, L.v, km, fk, out, stats);
      const dout = randn(B * Tq * H * Dv, 4);
      const grad = (n: number) => new Float32Array(n).fill(NaN);
      let dq: Float32Array, dk: Float32Array, dv: Float32Array;
      if (c.fused) {
        const d = grad(L.size);
        const C = H * D;
        [dq, dk, dv] = [d, d.subarray(C), d.subarray(2 * C)];
      } else {
        [dq, dk, dv] = [grad(B * H * Tq * D), grad(B * H * Tk * D), grad(B * H * Tk * Dv)];
      }
      if (lowp) be.attentionBf16Backward!(shape, ql, kl, vl, km, fk, stats, dout, shape.outStrides, dq, dk, dv);
      else be.attentionBackward(shape, L.q, L.k, L.v, km, fk, stats, dout, shape.outStrides, dq, dk, dv);
      return { out, stats, dq: c.fused ? dq : dq, dk, dv, ql };
    };
    const want = run(portable, false);
    const got = run(native, true);
    // every element written (the NaN fill is gone), and within bf16 error of the f32 kernel
    for (const [what, g, w, tol] of [['out', got.out, want.out, 2e-2], ['dq', got.dq, want.dq, 3e-2], ['dk', got.dk, want.dk, 3e-2], ['dv', got.dv, want.dv, 2e-2]] as const) {
      assert.ok(g.every((x) => Number.isFinite(x)), `${what}: every element written and finite`);
      const e = relErr(g, w);
      assert.ok(e <= tol, `${what}: norm-wise relative error ${e} > ${tol}`);
    }
    // the row statistics are f32 softmax statistics of bf16 scores: the row max within bf16 error, masked rows alike
    for (let r = 0; r < B * H * Tq; r++) {
      const [m, inv] = [got.stats[2 * r], got.stats[2 * r + 1]], [wm, winv] = [want.stats[2 * r], want.stats[2 * r + 1]];
      assert.equal(inv === 0, winv === 0, `row ${r}: fully masked in one kernel only`);
      assert.ok(Math.abs(m - wm) <= 0.05 * Math.max(1, Math.abs(wm)), `row ${r}: max ${m} vs ${wm}`);
    }
    // q packed in bf16: the f32 values rounded (the first row of the first head)
    const q0 = new Uint16Array(D);
    portable.cast(L.q.subarray(0, D), 'f32', q0, 'bf16');
    assert.deepEqual(Array.from(got.ql.subarray(0, D)), Array.from(q0));
  }));
}

test('attentionBf16: the backward pass rebuilds the forward pass\'s P (a repeat gives the same bits)', { skip }, () => {
  const native = getBackend('native');
  const c = CASES[5], L = layout(c);
  const { B, H, Tq, Tk, D, Dv } = c;
  const shape: AttentionShape = { B, H, Hkv: H, Tq, Tk, D, Dv, qStrides: L.qs, kStrides: L.ks, vStrides: L.vs, outStrides: [Tq * H * Dv, Dv, H * Dv], scale: 0.125, causal: true };
  const once = () => {
    const out = new Float32Array(B * Tq * H * Dv), stats = new Float32Array(B * H * Tq * 2);
    const ql = new Uint16Array(B * H * Tq * D), kl = new Uint16Array(B * H * Tk * D), vl = new Uint16Array(B * H * Tk * Dv);
    native.attentionBf16!(shape, L.q, L.k, L.v, null, null, out, stats, ql, kl, vl);
    const d = new Float32Array(L.size);
    native.attentionBf16Backward!(shape, ql, kl, vl, null, null, stats, randn(out.length, 9), shape.outStrides, d, d.subarray(H * D), d.subarray(2 * H * D));
    return [out, d];
  };
  const [a, b] = [once(), once()];
  assert.deepEqual(a[0], b[0]);
  assert.deepEqual(a[1], b[1]);
});

test('attentionBf16 in chunks of (batch, head) blocks (a bounded scratch): every element written, the packing\'s bits, the rest within rounding of one call, and the same bits on a repeat', { skip }, () => {
  const native = getBackend('native');
  // rows of 2 and 1 batch rows, 2 heads and 1 head a chunk, with the last chunk short where the count does not divide
  for (const c of [CASES[2], CASES[3], CASES[5], { ...CASES[5], B: 3, H: 3, Tq: 70, Tk: 70, D: 20, Dv: 20, fused: false, keyMask: true, firstKey: true }]) {
    const { B, H, Tq, Tk, D, Dv } = c;
    const L = layout(c);
    const km = c.keyMask ? Float32Array.from({ length: B * Tk }, (_, i) => (i % Tk) % 7 === 2 ? 1 : 0) : null;
    const fk = c.firstKey ? Int32Array.from({ length: B * Tq }, (_, i) => (i % Tq) < 9 ? 0 : 9 + (i % 2)) : null;
    const shape: AttentionShape = { B, H, Hkv: H, Tq, Tk, D, Dv, qStrides: L.qs, kStrides: L.ks, vStrides: L.vs, outStrides: [Tq * H * Dv, Dv, H * Dv], scale: 0.2, causal: c.causal };
    const dout = randn(B * Tq * H * Dv, 11);
    const once = (budget: number) => {
      attentionBf16Budget(budget);
      try {
        const out = new Float32Array(B * Tq * H * Dv).fill(NaN), stats = new Float32Array(B * H * Tq * 2).fill(NaN);
        const ql = new Uint16Array(B * H * Tq * D), kl = new Uint16Array(B * H * Tk * D), vl = new Uint16Array(B * H * Tk * Dv);
        native.attentionBf16!(shape, L.q, L.k, L.v, km, fk, out, stats, ql, kl, vl);
        const n = c.fused ? L.size : 0, C = H * D;
        const d = c.fused ? new Float32Array(n).fill(NaN) : null;
        const [dq, dk, dv] = d ? [d, d.subarray(C), d.subarray(2 * C)]
          : [new Float32Array(B * H * Tq * D).fill(NaN), new Float32Array(B * H * Tk * D).fill(NaN), new Float32Array(B * H * Tk * Dv).fill(NaN)];
        native.attentionBf16Backward!(shape, ql, kl, vl, km, fk, stats, dout, shape.outStrides, dq, dk, dv);
        return { out, stats, ql, kl, vl, dq, dk, dv };
      } finally {
        attentionBf16Budget(0);
      }
    };
    const whole = once(0);
    for (const [what, budget] of [['2 rows', 2 * H * Tq * Tk], ['1 row', H * Tq * Tk], ['2 heads', 2 * Tq * Tk], ['1 head', 1]] as const) {
      const got = once(budget);
      const at = `B${B} H${H} T${Tq}, chunks of ${what}`;
      // the packed copies are roundings of q, k, v: the same bits; the products may differ in their last bits where a
      // chunk's batch count takes another kernel (one matrix against several), so within rounding, not bit for bit
      for (const k of ['ql', 'kl', 'vl'] as const) assert.deepEqual(got[k], whole[k], `${at}: ${k}`);
      for (const k of ['out', 'stats', 'dq', 'dk', 'dv'] as const) {
        assert.ok(got[k].every(Number.isFinite), `${at}: every element of ${k} written`);
        const e = relErr(got[k], whole[k]);
        assert.ok(e <= 1e-3, `${at}: ${k} norm-wise relative error ${e} against one call`);
      }
      // deterministic: the chunks depend on the shape and the budget only
      const again = once(budget);
      for (const k of Object.keys(whole) as (keyof typeof whole)[]) assert.deepEqual(again[k], got[k], `${at}: a repeat's ${k}`);
    }
  }
});

test('attentionBf16 refuses grouped-query heads and short buffers', { skip }, () => {
  const native = getBackend('native');
  const shape: AttentionShape = { B: 1, H: 2, Hkv: 1, Tq: 4, Tk: 4, D: 4, Dv: 4, qStrides: [32, 16, 4], kStrides: [16, 16, 4], vStrides: [16, 16, 4], outStrides: [32, 4, 8], scale: 0.5, causal: false };
  const f = (n: number) => new Float32Array(n), h = (n: number) => new Uint16Array(n);
  assert.throws(() => native.attentionBf16!(shape, f(32), f(16), f(16), null, null, f(32), f(16), h(32), h(32), h(32)), /grouped-query/);
  assert.throws(() => native.attentionBf16!({ ...shape, Hkv: 2, kStrides: [32, 16, 4], vStrides: [32, 16, 4] }, f(32), f(32), f(32), null, null, f(32), f(16), h(31), h(32), h(32)), /ql, kl, vl/);
});

/** `be`, recording into `calls` the name of each attention kernel it runs; `bf16` set: saying it has bf16 products. */
function recordingAttention(be: Backend, calls: string[], bf16?: boolean): Backend {
  return new Proxy(be, {
    get(t, k, r) {
      if (k === 'nativeBf16' && bf16 !== undefined) return bf16;
      const v = Reflect.get(t, k, r);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => { if (String(k).startsWith('attention') && k !== 'attentionBf16Tiles') calls.push(String(k)); return (v as (...a: unknown[]) => unknown).apply(t, args); };
    },
  });
}

test('under bf16 autocast without AMX tiles, the fused qkv attention takes the bf16 kernel where the CPU has bf16, T >= 64 and no mask hides much (else the f32 one), with the f32 results within bf16 error', { skip }, () => withTiles(false, () => {
  const prev = backend();
  const native = getBackend('native');
  const calls: string[] = [];
  setBackend(recordingAttention(native, calls));
  try {
    const B = 2, Tn = 67, heads = 3, hs = 8, C = heads * hs; // Tn >= BF16_ATTENTION_MIN_T
    const run = (dt: 'f32' | 'bf16') => {
      const qkv = new Tensor(randn(B * Tn * 3 * C, 5), 'f32', [B, Tn, 3 * C]).requireGrad();
      const y = autocast(dt, () => T.fusedQKVAttention(qkv, heads, { causal: false }));
      T.sum(T.mul(y, new Tensor(randn(B * Tn * C, 6), 'f32', [B, Tn, C]))).backward();
      return { y: y.f32(), g: qkv.grad!.f32() };
    };
    const f = run('f32');
    calls.length = 0;
    const h = run('bf16');
    const want = native.nativeBf16 ? ['attentionBf16', 'attentionBf16Backward'] : ['attention', 'attentionBackward'];
    assert.deepEqual(calls, want);
    assert.ok(relErr(h.y, f.y) <= 2e-2, `output ${relErr(h.y, f.y)}`);
    assert.ok(relErr(h.g, f.g) <= 3e-2, `gradient ${relErr(h.g, f.g)}`);
    // the separate q, k, v form (scaledDotProductAttention) too
    calls.length = 0;
    const q = new Tensor(randn(B * heads * Tn * hs, 7), 'f32', [B, heads, Tn, hs]).requireGrad();
    const y2 = autocast('bf16', () => T.scaledDotProductAttention(q, q, q, { causal: false }));
    T.sum(y2).backward();
    assert.deepEqual(calls, want);
    assert.ok(q.grad!.f32().every((x) => Number.isFinite(x)));
    // causal rows (just over half the scores) and short sequences stay on the f32 kernel
    calls.length = 0;
    autocast('bf16', () => T.scaledDotProductAttention(q, q, q, { causal: true }));
    assert.deepEqual(calls, ['attention']);
    calls.length = 0;
    const s = new Tensor(randn(B * heads * 32 * hs, 8), 'f32', [B, heads, 32, hs]);
    autocast('bf16', () => T.scaledDotProductAttention(s, s, s));
    assert.deepEqual(calls, ['attention']);
  } finally {
    setBackend(prev);
  }
}));

test('visibleShare counts the scores the masks leave, as the kernels do (causal, Tq < Tk, key masks, packed rows)', () => {
  const r = new Rng(3);
  for (const [B, Tq, Tk] of [[1, 5, 5], [2, 7, 11], [3, 16, 16], [2, 1, 9]]) {
    for (const causal of [false, true]) {
      for (const withMask of [false, true]) {
        for (const withFirst of [false, true]) {
          const keyMask = withMask ? Float32Array.from({ length: B * Tk }, () => (r.uniform() < 0.3 ? 1 : 0)) : null;
          const firstKey = withFirst ? Int32Array.from({ length: B * Tq }, () => Math.floor(r.uniform() * Tk)) : null;
          let seen = 0; // brute force: key j visible to query i of row b
          for (let b = 0; b < B; b++) for (let i = 0; i < Tq; i++) for (let j = 0; j < Tk; j++) {
            const ok = (!causal || j <= Tk - Tq + i) && (!firstKey || j >= firstKey[b * Tq + i]) && (!keyMask || keyMask[b * Tk + j] === 0);
            if (ok) seen++;
          }
          assert.equal(visibleShare({ B, causal, keyMask, firstKey }, Tq, Tk), seen / (B * Tq * Tk), `B${B} Tq${Tq} Tk${Tk} causal ${causal} mask ${withMask} firstKey ${withFirst}`);
        }
      }
    }
  }
});

test(`under bf16 autocast without AMX tiles, attention stays on the f32 kernel where the masks leave at most ${BF16_ATTENTION_MIN_SHARE} of the scores (packed rows of short documents, mostly padding)`, { skip }, () => withTiles(false, () => {
  const prev = backend();
  const native = getBackend('native');
  const calls: string[] = [];
  // a backend that says it multiplies bf16 in hardware, so that the choice shows on any CPU (the bf16 kernel widens here)
  setBackend(recordingAttention(native, calls, true));
  try {
    const B = 2, Tn = 128, heads = 2, hs = 8;
    const q = new Tensor(randn(B * heads * Tn * hs, 7), 'f32', [B, heads, Tn, hs]).requireGrad();
    const docs = (len: number) => Int32Array.from({ length: B * Tn }, (_, i) => (i % Tn) - ((i % Tn) % len));
    const padded = (keep: number) => new Tensor(Float32Array.from({ length: B * Tn }, (_, i) => (i % Tn) < keep ? 0 : 1), 'f32', [B, Tn]);
    const cases: [string, T.AttentionOptions, boolean][] = [
      ['no mask', {}, true],
      ['causal (50.4% of the scores)', { causal: true }, false],
      ['packed rows of 16-token documents (6.6%)', { causal: true, mask: { keyMask: null, firstKey: docs(16) } }, false],
      ['packed rows of 64-token documents (25.4%)', { causal: true, mask: { keyMask: null, firstKey: docs(64) } }, false],
      ['keys 90% padding', { mask: padded(13) }, false],
      ['keys 50% padding', { mask: padded(64) }, false],
      ['keys 20% padding', { mask: padded(103) }, true],
    ];
    for (const [what, opts, bf16] of cases) {
      calls.length = 0;
      const y = autocast('bf16', () => T.scaledDotProductAttention(q, q, q, opts));
      T.sum(y).backward();
      assert.deepEqual(calls, bf16 ? ['attentionBf16', 'attentionBf16Backward'] : ['attention', 'attentionBackward'], what);
      assert.ok(y.f32().every(Number.isFinite), `${what}: output finite`);
    }
  } finally {
    setBackend(prev);
  }
}));

test('under bf16 autocast on AMX tiles, attention takes the bf16 kernel from 16 tokens on whatever the masks (causal, packed rows, padding), with the f32 results within bf16 error', { skip: skip || (!tilesHere && 'this CPU has no AMX (or oneDNN does not use it): the tiles do not run here') }, () => {
  const prev = backend();
  const calls: string[] = [];
  setBackend(recordingAttention(getBackend('native'), calls));
  try {
    const B = 2, heads = 2;
    const docs = (Tn: number, len: number) => Int32Array.from({ length: B * Tn }, (_, i) => (i % Tn) - ((i % Tn) % len));
    const padded = (Tn: number, keep: number) => new Tensor(Float32Array.from({ length: B * Tn }, (_, i) => (i % Tn) < keep ? 0 : 1), 'f32', [B, Tn]);
    const cases: [string, number, number, T.AttentionOptions, boolean][] = [
      ['T 128 causal', 128, 16, { causal: true }, true],
      ['T 32', 32, 64, {}, true],
      ['T 16 causal', 16, 8, { causal: true }, true],
      ['T 15', 15, 8, {}, false],
      ['packed rows of 16-token documents', 128, 8, { causal: true, mask: { keyMask: null, firstKey: docs(128, 16) } }, true],
      ['keys 90% padding', 128, 8, { mask: padded(128, 13) }, true],
      ['odd head size (no VNNI pairs): the rule without tiles, causal stays f32', 128, 9, { causal: true }, false],
    ];
    for (const [what, Tn, hs, opts, bf16] of cases) {
      const q = new Tensor(randn(B * heads * Tn * hs, 7), 'f32', [B, heads, Tn, hs]).requireGrad();
      const run = (dt: 'f32' | 'bf16') => {
        q.grad = null;
        const y = autocast(dt, () => T.scaledDotProductAttention(q, q, q, opts));
        T.sum(T.mul(y, new Tensor(randn(y.size, 8), 'f32', y.shape))).backward();
        return { y: y.f32(), g: q.grad!.f32() };
      };
      const f = run('f32');
      calls.length = 0;
      const h = run('bf16');
      assert.deepEqual(calls, bf16 ? ['attentionBf16', 'attentionBf16Backward'] : ['attention', 'attentionBackward'], what);
      assert.ok(relErr(h.y, f.y) <= 2e-2, `${what}: output ${relErr(h.y, f.y)}`);
      assert.ok(relErr(h.g, f.g) <= 3e-2, `${what}: gradient ${relErr(h.g, f.g)}`);
    }
  } finally {
    setBackend(prev);
  }
});

test('on AMX tiles the fused qkv attention hands its Linear a bf16 gradient (the cast\'s bits: the same input and weight gradients as through an f32 one; the bias gradient summed from the rounded values)', { skip: skip || (!tilesHere && 'this CPU has no AMX (or oneDNN does not use it): the tiles do not run here') }, () => {
  const prev = backend();
  const native = getBackend('native');
  let gradTypes: string[] = [];
  setBackend(new Proxy(native, {
    get(t, k, r) {
      const v = Reflect.get(t, k, r);
      if (k !== 'attentionBf16Backward' || typeof v !== 'function') return v;
      return (...args: unknown[]) => { gradTypes.push((args[9] as object).constructor.name); return (v as (...a: unknown[]) => unknown).apply(t, args); };
    },
  }));
  try {
    const run = (viaMul: boolean) => {
      const lin = new Linear(32, 96);
      lin.weight.f32().set(randn(96 * 32, 21).map((v) => v * 0.2));
      lin.bias!.f32().set(randn(96, 24).map((v) => v * 0.1));
      const x = new Tensor(randn(2 * 40 * 32, 22), 'f32', [2, 40, 32]).requireGrad();
      const y = autocast('bf16', () => {
        const qkv = lin.forward(x);
        // qkv * 1: the same values, but no longer a Linear's own output, so its gradient comes back in f32
        return T.fusedQKVAttention(viaMul ? T.mul(qkv, 1) : qkv, 2, { causal: true });
      });
      T.sum(T.mul(y, new Tensor(randn(y.size, 23), 'f32', [...y.shape]))).backward();
      return [x.grad!.f32(), lin.weight.grad!.f32(), lin.bias!.grad!.f32()];
    };
    gradTypes = [];
    const direct = run(false);
    assert.deepEqual(gradTypes, native.matmulToBf16 ? ['Uint16Array'] : ['Float32Array']);
    gradTypes = [];
    const through = run(true);
    assert.deepEqual(gradTypes, ['Float32Array']);
    // x's and the weight's gradients: the products read the same bf16 operand (the kernel's rounding is the cast's)
    assert.deepEqual(direct[0], through[0], 'x\'s gradient');
    assert.deepEqual(direct[1], through[1], 'the weight\'s gradient');
    // the bias's: column sums of the rounded gradient (sumRowsBf16, as fc1's) against sums of the f32 one
    assert.ok(relErr(direct[2], through[2]) < 2 ** -8, `the bias's gradient: ${relErr(direct[2], through[2])}`);
  } finally {
    setBackend(prev);
  }
});

test('on AMX tiles the fused qkv attention\'s output is bf16 (the f32 output rounded, bit for bit), its projection reads it and hands back a bf16 gradient; the module\'s output and gradients within bf16 rounding of f32 outputs', { skip: skip || (!tilesHere && 'this CPU has no AMX (or oneDNN does not use it): the tiles do not run here') }, () => {
  const seen: string[] = [];
  const spy = (be: Backend) => new Proxy(be, {
    get(t, k, r) {
      const v = Reflect.get(t, k, r);
      if ((k !== 'attentionBf16' && k !== 'attentionBf16Backward') || typeof v !== 'function') return v;
      return (...args: unknown[]) => { seen.push(`${String(k)} ${(args[k === 'attentionBf16' ? 6 : 7] as object).constructor.name}`); return (v as (...a: unknown[]) => unknown).apply(t, args); };
    },
  }) as Backend;
  // the attention op alone: its bf16 output is the f32 one rounded
  const qkv = new Tensor(randn(2 * 40 * 96, 31), 'f32', [2, 40, 96]);
  const prev = backend();
  try {
    setBackend(spy(getBackend('native')));
    const y16 = autocast('bf16', () => T.fusedQKVAttention(qkv, 2, { causal: true }));
    setBackend(hiding('matmulToBf16'));
    const y32 = autocast('bf16', () => T.fusedQKVAttention(qkv, 2, { causal: true }));
    assert.equal(y16.dtype, 'bf16');
    assert.equal(y32.dtype, 'f32');
    const r = new Uint16Array(y32.size);
    getBackend('native').cast(y32.f32(), 'f32', r, 'bf16');
    assert.deepEqual(y16.dense(), r);
  } finally {
    setBackend(prev);
  }
  // a Block (qkv, attention, proj; the MLP): the attention ran with bf16 out and dout
  seen.length = 0;
  const run = (be: Backend) => bf16Pass(be, () => new Block({ dim: 32, heads: 2, mlpDim: 64, causal: true }), [2, 40, 32], 500);
  const e = run(spy(getBackend('native')));
  assert.deepEqual(seen, ['attentionBf16 Uint16Array', 'attentionBf16Backward Uint16Array']);
  seen.length = 0;
  const a = run(spy(hiding('matmulToBf16')));
  assert.deepEqual(seen, ['attentionBf16 Float32Array', 'attentionBf16Backward Float32Array']);
  // measured up to 5.6e-3 here
  e.forEach((v, i) => assert.ok(relErr(v, a[i]) < 2 ** -7, `tensor ${i}: relative error ${relErr(v, a[i])}`));
});

test('on AMX tiles a bf16 qkv is read as it is (fusedQKVReadsBf16): the output and gradient of its f32 widening, bit for bit; SelfAttention\'s projection writes it in bf16 there, and f32 off the tiles', { skip: skip || (!tilesHere && 'this CPU has no AMX (or oneDNN does not use it): the tiles do not run here') }, () => {
  const native = getBackend('native');
  const opts = { causal: true };
  assert.equal(autocast('bf16', () => T.fusedQKVReadsBf16(2, 40, 96, 2, opts)), true);
  assert.equal(T.fusedQKVReadsBf16(2, 40, 96, 2, opts), false, 'outside bf16 autocast');
  assert.equal(autocast('bf16', () => T.fusedQKVReadsBf16(2, 8, 96, 2, opts)), false, 'below the tiles\' 16 tokens');
  // bf16 values, as a bf16 tensor and as their f32 widening
  const h = new Uint16Array(2 * 40 * 96);
  native.cast(randn(h.length, 33), 'f32', h, 'bf16');
  const w = new Float32Array(h.length);
  native.cast(h, 'bf16', w, 'f32');
  const g = new Tensor(randn(2 * 40 * 32, 34), 'f32', [2, 40, 32]);
  const pass = (bf16: boolean) => {
    const leaf = new Tensor(w.slice(), 'f32', [2, 40, 96]).requireGrad();
    const y = autocast('bf16', () => T.fusedQKVAttention(bf16 ? leaf.to('bf16') : leaf, 2, opts));
    T.sum(T.mul(y, g)).backward();
    return [y.f32(), leaf.grad!.f32()];
  };
  const [y16, d16] = pass(true), [y32, d32] = pass(false);
  assert.deepEqual(y16, y32, 'output');
  assert.deepEqual(d16, d32, 'gradient');
  // in a module: the kernel receives the projection's bf16 output where the tiles run, an f32 one off them
  const seen: string[] = [];
  const spy = (be: Backend) => new Proxy(be, {
    get(t, k, r) {
      const v = Reflect.get(t, k, r);
      if (k !== 'attentionBf16' || typeof v !== 'function') return v;
      return (...args: unknown[]) => { seen.push((args[1] as object).constructor.name); return (v as (...a: unknown[]) => unknown).apply(t, args); };
    },
  }) as Backend;
  // (64 unmasked tokens: the batched bf16 products take them off the tiles)
  const make = () => new SelfAttention({ dim: 32, heads: 2, mlpDim: 64, causal: false });
  const on = bf16Pass(spy(native), make, [2, 64, 32], 700);
  const prevTiles = attentionBf16Tiles();
  attentionBf16Tiles(false);
  try {
    bf16Pass(spy(native), make, [2, 64, 32], 700);
  } finally {
    attentionBf16Tiles(prevTiles);
  }
  assert.deepEqual(seen, ['Uint16Array', 'Float32Array']);
  // against the projection written in f32 (no bf16 outputs at all): within bf16 rounding
  const off = bf16Pass(hiding('matmulToBf16'), make, [2, 64, 32], 700);
  on.forEach((v, i) => assert.ok(relErr(v, off[i]) < 2 ** -7, `tensor ${i}: relative error ${relErr(v, off[i])}`));
});

test('attentionBf16 refuses bf16 q, k, v and a bf16 out off the tiles, and q, k, v of two dtypes, with a clear error', { skip: skip || (!tilesHere && 'this CPU has no AMX (or oneDNN does not use it): the tiles do not run here') }, () => {
  const be = getBackend('native');
  const [B, H, Tq, D] = [1, 2, 32, 16], C = H * D;
  const st: [number, number, number] = [Tq * 3 * C, D, 3 * C];
  const shape: AttentionShape = { B, H, Hkv: H, Tq, Tk: Tq, D, Dv: D, qStrides: st, kStrides: st, vStrides: st, outStrides: [Tq * C, D, C], scale: 0.25, causal: true };
  const q16 = new Uint16Array(B * Tq * 3 * C).fill(0x3f80), q32 = new Float32Array(q16.length).fill(1);
  const run = (q: Float32Array | Uint16Array, k: Float32Array | Uint16Array, out: Float32Array | Uint16Array) => be.attentionBf16!(shape, q, k.subarray(C), q.subarray(2 * C), null, null, out,
    new Float32Array(B * H * Tq * 2), new Uint16Array(B * H * Tq * D), new Uint16Array(B * H * Tq * D), new Uint16Array(B * H * Tq * D));
  run(q16, q16, new Uint16Array(B * Tq * C)); // on the tiles: taken
  assert.throws(() => run(q16, q32, new Float32Array(B * Tq * C)), /Uint16Array/);
  const prev = attentionBf16Tiles();
  attentionBf16Tiles(false);
  try {
    assert.throws(() => run(q16, q16, new Float32Array(B * Tq * C)), /AMX tiles only \(attentionBf16Tiles\)/);
    assert.throws(() => run(q32, q32, new Uint16Array(B * Tq * C)), /AMX tiles only \(attentionBf16Tiles\)/);
  } finally {
    attentionBf16Tiles(prev);
  }
});

test('unaryBf16 equals unary then the cast, bit for bit (odd lengths, tails, the parallel path)', { skip }, () => {
  const native = getBackend('native');
  assert.ok(native.unaryBf16, 'the native backend has unaryBf16');
  for (const op of ['gelu', 'gelu_tanh', 'relu', 'silu', 'tanh'] as const) {
    for (const n of [1, 7, 16, 17, 1023, 1025, 100_003]) {
      const x = randn(n, n);
      x[0] = NaN;
      if (n > 3) [x[1], x[2]] = [Infinity, -Infinity];
      const f = new Float32Array(n), want = new Uint16Array(n), got = new Uint16Array(n);
      native.unary(op, x, f);
      native.cast(f, 'f32', want, 'bf16');
      native.unaryBf16!(op, x, got);
      for (let i = 0; i < n; i++) if (got[i] !== want[i]) assert.fail(`${op} n=${n} element ${i}: 0x${got[i].toString(16)} vs 0x${want[i].toString(16)}`);
    }
  }
});

/** The native backend with the named optional capabilities hidden (absent, as on a backend without them). */
function hiding(...names: string[]): Backend {
  return new Proxy(getBackend('native'), { get: (t, k, r) => (names.includes(String(k)) ? undefined : Reflect.get(t, k, r)) }) as Backend;
}

/**
 * One bf16 autocast forward and backward pass of a module made by `make` (its parameters set from randn(seed + i) *
 * scale) on backend `be`, over x of `xShape`: the output, x's gradient and the trainable parameters' gradients.
 */
function bf16Pass(be: Backend, make: () => Module, xShape: number[], seed: number, scale = 1): Float32Array[] {
  const prev = backend();
  setBackend(be);
  try {
    const m = make();
    for (const [i, p] of m.parameters().entries()) p.f32().set(randn(p.size, seed + i).map((v) => v * scale));
    const x = new Tensor(randn(xShape.reduce((a, b) => a * b), seed - 92), 'f32', xShape).requireGrad();
    const y = autocast('bf16', () => (m as Module & { forward(x: Tensor): Tensor }).forward(x));
    T.sum(T.mul(y, new Tensor(randn(y.size, seed - 91), 'f32', [...y.shape]))).backward();
    return [y.f32(), x.grad!.f32(), ...m.trainableParameters().map((p) => p.grad!.f32())];
  } finally {
    setBackend(prev);
  }
}

test('a Block under bf16 autocast: the same bits with the MLP activation made in bf16 as with the cast; with its derivative kept in bf16, the same output; with fc1 written in bf16, within bf16 rounding', { skip }, () => {
  const run = (be: Backend) => bf16Pass(be, () => new Block({ dim: 32, heads: 2, mlpDim: 72, causal: true }), [3, 11, 32], 100);
  // unaryBf16 alone (the backward pass from x in f32) against the native backend without it: the activation in f32,
  // rounded by fc2's cast (and without bf16 products' outputs, which give a bf16 activation's gradient in bf16)
  const a = run(hiding('unaryBf16Grad', 'matmulToBf16')), b = run(hiding('unaryBf16', 'unaryBf16Grad', 'matmulToBf16'));
  a.forEach((v, i) => assert.deepEqual(v, b[i], `tensor ${i}`));
  // with unaryBf16Grad (the backward pass from f'(x) in bf16): the same output bits, gradients within bf16 rounding
  // (measured 1e-3 to 4.7e-3 here, norm-wise relative)
  const c = run(hiding('matmulToBf16'));
  assert.deepEqual(c[0], a[0], 'the output');
  c.slice(1).forEach((v, i) => assert.ok(relErr(v, a[i + 1]) < 2 ** -7, `gradient ${i}: relative error ${relErr(v, a[i + 1])}`));
  if (!getBackend('native').matmulToBf16) return; // products widened to f32 (no bf16 hardware): fc1 is not written in bf16
  // fc1's output written in bf16 (PyTorch's autocast: the activation reads the rounded product), its gradient and
  // the activation's in bf16: the output and the gradients within bf16 rounding of the f32 path's
  const e = run(getBackend('native'));
  assert.notDeepEqual(e[0], a[0], 'fc1 written in bf16 changes the output bits');
  e.forEach((v, i) => assert.ok(relErr(v, a[i]) < 2 ** -7, `tensor ${i}: relative error ${relErr(v, a[i])}`));
});

test('a relu Block under bf16 autocast: fc1 written in bf16 gives the same output bits (relu commutes with rounding), the gradients within bf16 rounding', { skip }, () => {
  if (!getBackend('native').matmulToBf16) return; // products widened to f32: nothing written in bf16
  const run = (be: Backend) => bf16Pass(be, () => new Block({ dim: 32, heads: 2, mlpDim: 96, causal: false, activation: 'relu' }), [2, 13, 32], 300);
  const a = run(hiding('matmulToBf16')), e = run(getBackend('native'));
  assert.deepEqual(e[0], a[0], 'the output');
  e.slice(1).forEach((v, i) => assert.ok(relErr(v, a[i + 1]) < 2 ** -7, `gradient ${i}: relative error ${relErr(v, a[i + 1])}`));
});

test('a LoRA Block under bf16 autocast (the factors ride along the base products): fc1 written in bf16 and the bf16 activation\'s gradients, within bf16 rounding of f32 outputs', { skip }, () => {
  if (!getBackend('native').matmulToBf16) return; // products widened to f32: nothing written in bf16
  const make = () => {
    const blk = new Block({ dim: 64, heads: 2, mlpDim: 160, causal: true });
    new LoraModel(blk, { r: 8, alpha: 16, targetModules: ['qkv', 'proj', 'fc1', 'fc2'] });
    return blk;
  };
  // attention on the f32 kernel (41 tokens, tiles off): bf16 attention would round dO, whose bits the two runs' MLPs
  // change, and so add bf16 differences of its own to those of fc1's output
  const run = (be: Backend) => withTiles(false, () => bf16Pass(be, make, [3, 41, 64], 200, 0.3));
  const a = run(hiding('matmulToBf16')), e = run(getBackend('native'));
  assert.equal(e.length, 2 + 8, 'the output, x\'s gradient and the 8 factors\' gradients');
  assert.notDeepEqual(e[0], a[0], 'fc1 written in bf16 changes the output bits');
  e.forEach((v, i) => assert.ok(relErr(v, a[i]) < 2 ** -7, `tensor ${i}: relative error ${relErr(v, a[i])}`));
});

/** The digests a test/helpers script prints (its last line, JSON), run in a subprocess with `env` added. */
async function digests(script: string, env: Record<string, string>): Promise<Record<string, string>> {
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, ['--import', 'tsx', new URL(`./helpers/${script}`, import.meta.url).pathname],
    { encoding: 'utf8', env: { ...process.env, ...env } });
  assert.equal(r.status, 0, `${script}: exit ${r.status} (signal ${r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, string>;
}

test('gelu, gelu_tanh and silu in AVX-512 (native/gelu512.cc, where the CPU has it) give the AVX2 path\'s bits from every entry point', { skip }, async () => {
  assert.deepEqual(await digests('gelu-bits.ts', {}), await digests('gelu-bits.ts', { AUTOGLM_NO_AVX512: '1' }));
});

test('softmax, log-softmax, their backward passes and cross-entropy with 16-lane exponentials (native/gelu512.cc, where the CPU has AVX-512) give the 8-lane loops\' bits', { skip }, async () => {
  const avx512 = await digests('softmax-bits.ts', {}), avx2 = await digests('softmax-bits.ts', { AUTOGLM_NO_AVX512: '1' });
  assert.equal(Object.keys(avx512).length, 6 * 7);
  assert.deepEqual(avx512, avx2);
});

test('attention\'s f32 products in AVX-512 (small_gemm.h tile512, 6 x 32 tiles) give the AVX2 tiles\' bits, forward and backward', { skip }, async () => {
  const avx512 = await digests('attention-bits.ts', {}), avx2 = await digests('attention-bits.ts', { AUTOGLM_NO_AVX512: '1' });
  assert.equal(Object.keys(avx512).length, 6);
  assert.deepEqual(avx512, avx2);
});

test("unaryBf16Grad: y has unaryBf16's bits, d is unaryBackward's f'(x) rounded to bf16; mulBf16 multiplies by d widened", { skip }, () => {
  const native = getBackend('native');
  assert.ok(native.unaryBf16Grad && native.mulBf16, 'the native backend has unaryBf16Grad and mulBf16');
  for (const op of ['gelu', 'gelu_tanh', 'silu', 'relu'] as const) {
    for (const n of [1, 7, 16, 17, 1023, 1025, 100_003]) {
      const x = randn(n, n);
      for (let i = 0; i < n; i += 5) x[i] *= 4; // the tails of gelu's erf
      x[0] = NaN;
      if (n > 3) [x[1], x[2]] = [Infinity, -Infinity];
      const y = new Uint16Array(n), d = new Uint16Array(n), wantY = new Uint16Array(n), wantD = new Uint16Array(n);
      native.unaryBf16Grad!(op, x, y, d);
      native.unaryBf16!(op, x, wantY);
      const f = new Float32Array(n);
      native.unaryBackward(op, x, x, new Float32Array(n).fill(1), f);
      native.cast(f, 'f32', wantD, 'bf16');
      for (let i = 0; i < n; i++) {
        if (y[i] !== wantY[i]) assert.fail(`${op} n=${n} y[${i}]: 0x${y[i].toString(16)} vs 0x${wantY[i].toString(16)}`);
        if (d[i] !== wantD[i]) assert.fail(`${op} n=${n} d[${i}] (x ${x[i]}): 0x${d[i].toString(16)} vs 0x${wantD[i].toString(16)}`);
      }
      const g = randn(n, n + 1), got = new Float32Array(n), dw = new Float32Array(n);
      native.mulBf16!(g, d, got);
      native.cast(d, 'bf16', dw, 'f32');
      for (let i = 0; i < n; i++) if (!Object.is(got[i], Math.fround(g[i] * dw[i]))) assert.fail(`${op} n=${n} mulBf16[${i}]: ${got[i]} vs ${g[i] * dw[i]}`);
    }
  }
});

test('unaryBf16Grad of a bf16 x (a table of its 65,536 values) gives the bits of the widened f32 x for every bf16 value: NaNs, infinities, subnormals, zeros; a table made on another thread gives the same', { skip }, () => {
  const native = getBackend('native');
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const wide = new Float32Array(65536);
  native.cast(all, 'bf16', wide, 'f32');
  for (const op of ['gelu', 'gelu_tanh', 'silu', 'relu'] as const) {
    const y1 = new Uint16Array(65536), d1 = new Uint16Array(65536), y2 = new Uint16Array(65536), d2 = new Uint16Array(65536);
    native.unaryBf16Grad!(op, all, y1, d1);
    native.unaryBf16Grad!(op, wide, y2, d2);
    assert.deepEqual(y1, y2, `${op}: y`);
    assert.deepEqual(d1, d2, `${op}: d`);
    // reversed (the lookups' order) and short (the scalar tail)
    const rev = all.slice().reverse(), y3 = new Uint16Array(65536), d3 = new Uint16Array(65536);
    native.unaryBf16Grad!(op, rev, y3, d3);
    assert.deepEqual(y3, y1.slice().reverse(), `${op}: reversed y`);
    assert.deepEqual(d3, d1.slice().reverse(), `${op}: reversed d`);
    const y4 = new Uint16Array(5), d4 = new Uint16Array(5);
    native.unaryBf16Grad!(op, all.subarray(16250, 16255), y4, d4);
    assert.deepEqual(y4, y1.subarray(16250, 16255), `${op}: tail`);
  }
});

test('unaryBf16Grad reads a bf16 x as its widened f32 copy; mulBf16 takes a bf16 g and writes a bf16 out (the f32 product rounded), in place where the dtypes agree', { skip }, () => {
  const native = getBackend('native');
  const widen = (h: Uint16Array) => { const f = new Float32Array(h.length); native.cast(h, 'bf16', f, 'f32'); return f; };
  const bf16 = (f: Float32Array) => { const h = new Uint16Array(f.length); native.cast(f, 'f32', h, 'bf16'); return h; };
  for (const n of [1, 7, 17, 1023, 1025, 100_003]) {
    const x16 = bf16(randn(n, n).map((v) => 3 * v)), x = widen(x16);
    for (const op of ['gelu', 'gelu_tanh', 'silu', 'relu'] as const) {
      const y1 = new Uint16Array(n), d1 = new Uint16Array(n), y2 = new Uint16Array(n), d2 = new Uint16Array(n);
      native.unaryBf16Grad!(op, x16, y1, d1);
      native.unaryBf16Grad!(op, x, y2, d2);
      assert.deepEqual(y1, y2, `${op} n=${n}: y`);
      assert.deepEqual(d1, d2, `${op} n=${n}: d`);
    }
    const d = bf16(randn(n, n + 2)), g = randn(n, n + 3), g16 = bf16(g);
    const want32 = new Float32Array(n), want16 = new Uint16Array(n), wantFromG16 = new Float32Array(n);
    native.mulBf16!(g, d, want32);
    native.cast(want32, 'f32', want16, 'bf16');
    native.mulBf16!(widen(g16), d, wantFromG16);
    const o16 = new Uint16Array(n), o32 = new Float32Array(n), o1616 = new Uint16Array(n);
    native.mulBf16!(g, d, o16);
    native.mulBf16!(g16, d, o32);
    native.mulBf16!(g16, d, o1616);
    assert.deepEqual(o16, want16, `n=${n}: f32 g, bf16 out`);
    assert.deepEqual(o32, wantFromG16, `n=${n}: bf16 g, f32 out`);
    assert.deepEqual(o1616, bf16(wantFromG16), `n=${n}: bf16 g, bf16 out`);
    const inPlace = g16.slice();
    native.mulBf16!(inPlace, d, inPlace);
    assert.deepEqual(inPlace, o1616, `n=${n}: bf16 in place`);
  }
  // out over g with another dtype: refused (the threads' blocks would overlap)
  const g32 = new Float32Array(8);
  assert.throws(() => native.mulBf16!(g32, new Uint16Array(8), new Uint16Array(g32.buffer, 0, 8)), /one dtype/);
});

test('sumRowsBf16: each column summed in f32 row after row (column bands over the threads, 64 columns summed in registers down blocks of rows); a bf16 gradient\'s bias gradient', { skip }, () => {
  const native = getBackend('native');
  for (const [rows, cols] of [[1, 1], [3, 7], [37, 65], [17, 129], [50, 300], [1024, 256], [2048, 1000]] as const) {
    const f = randn(rows * cols, rows + cols), h = new Uint16Array(f.length);
    native.cast(f, 'f32', h, 'bf16');
    const w = new Float32Array(h.length);
    native.cast(h, 'bf16', w, 'f32');
    const want = new Float32Array(cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) want[c] = Math.fround(want[c] + w[r * cols + c]);
    const got = new Float32Array(cols).fill(NaN);
    native.sumRowsBf16!(h, rows, cols, got);
    assert.deepEqual(got, want, `${rows}x${cols}`);
  }
  assert.throws(() => native.sumRowsBf16!(new Uint16Array(5), 2, 3, new Float32Array(3)), /smaller/);
});

test('castColumnSums: the cast\'s bits and reduce\'s column sums, bit for bit, from one pass (tall gradients) or the two kernels (short ones); a Linear\'s bias gradient under bf16 autocast', { skip }, () => {
  const native = getBackend('native');
  for (const [rows, cols] of [[1, 1], [3, 7], [255, 300], [256, 16], [256, 15], [300, 77], [1024, 256], [1024, 512], [2048, 1000], [4097, 130]] as const) {
    const f = randn(rows * cols, rows * 3 + cols);
    f[0] = NaN;
    if (f.length > 5) { f[3] = Infinity; f[4] = -3e-39; f[5] = 65504.5; }
    const want16 = new Uint16Array(f.length), wantSum = new Float32Array(cols);
    native.cast(f, 'f32', want16, 'bf16');
    native.reduce('sum', f, 1, rows, cols, wantSum);
    const got16 = new Uint16Array(f.length).fill(0xffff), gotSum = new Float32Array(cols).fill(-1);
    native.castColumnSums!(f, rows, cols, got16, gotSum);
    assert.deepEqual(got16, want16, `${rows}x${cols}: the rounded copy`);
    assert.deepEqual(gotSum, wantSum, `${rows}x${cols}: the column sums`);
  }
  assert.throws(() => native.castColumnSums!(new Float32Array(5), 2, 3, new Uint16Array(6), new Float32Array(3)), /smaller/);
  assert.throws(() => native.castColumnSums!(new Float32Array(6), 2, 3, new Uint16Array(5), new Float32Array(3)), /smaller/);
  // a Linear under bf16 autocast: the same gradients as with the cast and the sum apart
  const x = new Tensor(randn(2 * 300 * 64, 5), 'f32', [2, 300, 64]);
  const grads = (be: Backend) => {
    const prev = backend();
    setBackend(be);
    try {
      const W = new Tensor(randn(96 * 64, 6), 'f32', [96, 64]).requireGrad(), b = new Tensor(randn(96, 7), 'f32', [96]).requireGrad();
      const xi = x.detach().requireGrad();
      autocast('bf16', () => T.linear(xi, W, b)).square().sum().backward();
      return [xi, W, b].map((t) => Array.from((t.grad as Tensor).f32()));
    } finally {
      setBackend(prev);
    }
  };
  const fused = grads(native), apart = grads(hiding('castColumnSums'));
  for (let i = 0; i < 3; i++) assert.deepEqual(fused[i], apart[i], ['x', 'W', 'b'][i]);
});

test('matmulToBf16 (a product written in bf16, where the CPU multiplies bf16 in hardware): within one bf16 rounding of the f32 product, with bias, alpha, batches, both layouts and the N that AMX pads', { skip }, () => {
  const native = getBackend('native');
  if (!native.matmulToBf16) {
    assert.equal(native.nativeBf16, false, 'absent only where bf16 products widen to f32');
    return;
  }
  const bf16 = (f: Float32Array) => { const h = new Uint16Array(f.length); native.cast(f, 'f32', h, 'bf16'); return h; };
  let seed = 1;
  for (const [batch, M, N, K] of [[1, 1, 1, 8], [1, 37, 50, 64], [1, 64, 63, 96], [3, 17, 130, 40], [1, 256, 1024, 256], [2, 128, 49, 32]] as const) {
    for (const transA of [false, true]) for (const transB of [false, true]) for (const withBias of [false, true]) {
      const alpha = withBias ? 1 : 0.5;
      const a = bf16(randn(batch * M * K, seed++)), b = bf16(randn(batch * K * N, seed++));
      const bias = withBias ? randn(N, seed++) : null;
      const args = { a, b, batch, M, N, K, transA, transB, strideA: M * K, strideB: K * N, alpha, bias };
      const f = new Float32Array(batch * M * N);
      native.matmul({ ...args, out: f, dtype: 'bf16', beta: 0 });
      const out = new Uint16Array(batch * M * N);
      native.matmulToBf16({ ...args, out });
      const w = new Float32Array(out.length);
      native.cast(out, 'bf16', w, 'f32');
      for (let i = 0; i < f.length; i++) {
        // the f32 products agree to accumulation order; the bf16 one is rounded once
        const tol = 2 ** -8 * Math.abs(f[i]) + 1e-5 * Math.sqrt(K);
        if (!(Math.abs(w[i] - f[i]) <= tol)) assert.fail(`${batch}x${M}x${N}x${K} ${transA ? 'T' : 'N'}${transB ? 'T' : 'N'} bias ${withBias} [${i}]: ${w[i]} vs ${f[i]}`);
      }
    }
  }
});

test('crossEntropyGradBf16 with no bf16 output: the rounded gradient left in the logits, the bits of the bf16 gradient widened; the same losses', { skip }, () => {
  const native = getBackend('native');
  const rows = 37, cols = 1001; // a row's tail past the 8-wide loop
  const targets = Int32Array.from({ length: rows }, (_, i) => (i * 7919) % cols);
  targets[5] = -100;
  for (const ls of [0, 0.1]) {
    const logits = randn(rows * cols, 31).map((v) => 4 * v), dloss = randn(rows, 32);
    const z1 = logits.slice(), z2 = logits.slice(), l1 = new Float32Array(rows), l2 = new Float32Array(rows);
    const g16 = new Uint16Array(rows * cols), widened = new Float32Array(rows * cols);
    native.crossEntropyGradBf16!(z1, targets, rows, cols, -100, ls, dloss, l1, g16);
    native.crossEntropyGradBf16!(z2, targets, rows, cols, -100, ls, dloss, l2, null);
    native.cast(g16, 'bf16', widened, 'f32');
    assert.deepEqual(l2, l1, `ls ${ls}: losses`);
    for (let i = 0; i < z2.length; i++) if (!Object.is(z2[i], widened[i])) assert.fail(`ls ${ls} [${i}]: ${z2[i]} vs ${widened[i]}`);
    assert.ok(z2.subarray(5 * cols, 6 * cols).every((v) => v === 0), 'an ignored row: zeros');
  }
});

test('linearCrossEntropy under bf16 autocast: the loss and the logits\' gradient in one kernel (crossEntropyGradBf16: bf16 where products take bf16, rounded in place where they widen) against the two kernels and a rounding', { skip }, () => {
  const prev = backend();
  const native = getBackend('native');
  assert.ok(native.crossEntropyGradBf16, 'the native backend has crossEntropyGradBf16');
  const without = new Proxy(native, { get: (t, k, r) => (k === 'crossEntropyGradBf16' ? undefined : Reflect.get(t, k, r)) }) as Backend;
  const targets = Int32Array.from({ length: 301 }, (_, i) => (i * 7919) % 1003);
  targets[3] = -100; targets[200] = -100;
  try {
    for (const ls of [0, 0.1]) {
      const run = (be: Backend) => {
        setBackend(be);
        const h = new Tensor(randn(301 * 40, 20), 'f32', [301, 40]).requireGrad();
        const w = new Tensor(randn(1003 * 40, 21).map((v) => v * 0.3), 'f32', [1003, 40]).requireGrad();
        const loss = autocast('bf16', () => T.linearCrossEntropy(h, w, null, new Tensor(targets, 'i32', [301]), { labelSmoothing: ls, chunkRows: 128 }));
        loss.mul(0.5).backward();
        return { loss: loss.item(), gh: h.grad!.f32(), gw: w.grad!.f32() };
      };
      const a = run(native), b = run(without);
      assert.ok(Math.abs(a.loss - b.loss) <= 1e-6 * Math.abs(b.loss), `ls ${ls}: loss ${a.loss} vs ${b.loss}`);
      // the same values up to f32 rounding before the bf16 one: a few elements one bf16 step (2^-8) apart (1e-4 measured)
      assert.ok(relErr(a.gh, b.gh) < 1e-3 && relErr(a.gw, b.gw) < 1e-3, `ls ${ls}: gh ${relErr(a.gh, b.gh)} gw ${relErr(a.gw, b.gw)}`);
    }
  } finally {
    setBackend(prev);
  }
});

test('an int8 weight takes a bf16 activation (the MLP activation made in bf16 before an int8 base): widened, as its f32 value', () => {
  const x = T.cast(new Tensor(randn(5 * 12, 3), 'f32', [5, 12]), 'bf16');
  const q = new Tensor(Int8Array.from({ length: 7 * 12 }, (_, i) => ((i * 37) % 255) - 127), 'i8', [7, 12]);
  const scales = new Tensor(Float32Array.from({ length: 7 }, (_, i) => 0.01 * (i + 1)), 'f32', [7]);
  const got = T.linearInt8(x, q, scales, null).f32();
  const want = T.linearInt8(x.to('f32'), q, scales, null).f32();
  assert.deepEqual(got, want);
});

if (!nativeAvailable()) console.log(`# ${String(skip)}`);
