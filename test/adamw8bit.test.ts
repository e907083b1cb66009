/**
 * AdamW with 8-bit states (bitsandbytes' AdamW8bit): the unsigned dynamic map; the first step equals AdamW's and
 * stores each moment at the nearest code of its block; a least-squares fit follows AdamW's trajectory; small
 * parameters keep f32 moments (AdamW's bits); a quarter of the state bytes; a checkpoint resumes exactly; the trainer
 * takes `optimizer: 'adamw8bit'`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Tensor } from '../src/tensor/tensor.js';
import { Rng } from '../src/backend/rng.js';
import { AdamW } from '../src/optim/adam.js';
import { AdamW8bit, MIN_8BIT_SIZE, STATE_BLOCK, adamw8bitReference } from '../src/optim/adamw8bit.js';
import { getBackend } from '../src/backend/index.js';
import { requireNative } from './helpers/ci.js';
import type { Optimizer } from '../src/optim/optimizer.js';
import { signedDynamicMap, unsignedDynamicMap } from '../src/peft/nf4.js';
import { AutoGLMTrainer } from '../src/train/trainer.js';
import { CheckpointError, ConfigError } from '../src/errors.js';

const param = (v: Float32Array): Tensor => {
  const t = new Tensor(v.slice(), 'f32', [v.length]);
  t.requiresGrad = true;
  return t;
};

const randn = (rng: Rng, n: number, scale = 1): Float32Array => Float32Array.from({ length: n }, () => rng.normal() * scale);

test("bitsandbytes' unsigned dynamic map: 256 sorted values in [0, 1], torch's values within an ulp", () => {
  const u = unsignedDynamicMap();
  assert.equal(u.length, 256);
  for (let i = 1; i < 256; i++) assert.ok(u[i] > u[i - 1], `sorted, distinct at ${i}`);
  // torch 1.13: create_dynamic_map(signed=False)[i]
  const torch: Array<[number, number]> = [[0, 0], [1, 3.2500003044333425e-07], [2, 7.749999895168003e-07], [3, 2.1249998098937795e-06],
    [100, 0.06273438036441803], [200, 0.6167968511581421], [254, 0.9964843988418579], [255, 1]];
  for (const [i, want] of torch) assert.ok(Math.abs(u[i] - want) <= 1.2e-7 * Math.max(want, 1e-6), `map[${i}] ${u[i]} vs torch ${want}`);
});

/** One optimizer step of `opt` with gradient g on its only parameter. */
function stepWith(opt: Optimizer, p: Tensor, g: Float32Array): void {
  p.grad = new Tensor(g, 'f32', [g.length]);
  opt.step();
  opt.zeroGrad();
}

test('the first step is AdamW\'s, and each moment is stored at the nearest code of its block\'s absmax (blocks of 256, a partial last block)', () => {
  const rng = new Rng(1);
  const n = 20 * STATE_BLOCK + 77;
  const w = randn(rng, n, 0.1), g = randn(rng, n, 0.01);
  const a = param(w), b = param(w);
  const ref = new AdamW([a], { lr: 1e-3, weightDecay: 0.01 }), q = new AdamW8bit([b], { lr: 1e-3, weightDecay: 0.01 });
  stepWith(ref, a, g);
  stepWith(q, b, g);
  const pa = a.f32(), pb = b.f32();
  for (let i = 0; i < n; i++) assert.ok(Math.abs(pa[i] - pb[i]) <= 2e-7 * Math.max(1, Math.abs(pa[i])), `param ${i}: ${pb[i]} vs AdamW ${pa[i]}`);
  const sd = q.stateDict().tensors;
  const c1 = new Uint8Array((sd.get('0.state1') as Tensor).dense().buffer), c2 = new Uint8Array((sd.get('0.state2') as Tensor).dense().buffer);
  const a1 = (sd.get('0.absmax1') as Tensor).f32(), a2 = (sd.get('0.absmax2') as Tensor).f32();
  assert.equal(a1.length, Math.ceil(n / STATE_BLOCK));
  const s = signedDynamicMap(), u = unsignedDynamicMap();
  for (let blk = 0; blk < a1.length; blk++) {
    const lo = blk * STATE_BLOCK, hi = Math.min(n, lo + STATE_BLOCK);
    let mx1 = 0, mx2 = 0;
    for (let i = lo; i < hi; i++) {
      mx1 = Math.max(mx1, Math.abs(Math.fround(0.1 * g[i])));
      mx2 = Math.max(mx2, Math.fround(0.001 * Math.fround(g[i] * g[i])));
    }
    assert.ok(Math.abs(a1[blk] - mx1) <= 1e-6 * mx1 && Math.abs(a2[blk] - mx2) <= 1e-6 * mx2, `block ${blk} absmax`);
    for (let i = lo; i < hi; i++) {
      const m = (0.1 * g[i]) / a1[blk], v = (0.001 * g[i] * g[i]) / a2[blk];
      // no code is nearer than the stored one
      const d1 = Math.abs(s[c1[i]] - m), d2 = Math.abs(u[c2[i]] - v);
      for (let c = 0; c < 256; c++) {
        assert.ok(Math.abs(s[c] - m) >= d1 - 1e-7, `m[${i}]: code ${c} is nearer than ${c1[i]}`);
        if (Math.abs(u[c] - v) < d2 - 1e-7) assert.fail(`v[${i}]: code ${c} is nearer than ${c2[i]}`);
      }
    }
  }
});

test("a least-squares fit with AdamW8bit follows AdamW's loss trajectory; parameters under 4096 elements keep AdamW's f32 moments (same bits); a quarter of the state", () => {
  const rng = new Rng(2);
  const rows = 64, cols = 128; // the weight: 8192 elements (8-bit states); the bias: 64 (f32 states)
  const X = randn(rng, 32 * cols), T = randn(rng, 32 * rows), W0 = randn(rng, rows * cols, 0.05), b0 = randn(rng, rows, 0.05);
  const fit = (make: (ps: Tensor[]) => Optimizer) => {
    const W = param(W0), b = param(b0);
    const opt = make([W, b]);
    const losses: number[] = [];
    for (let step = 0; step < 150; step++) {
      const w = W.f32(), bb = b.f32(), gW = new Float32Array(rows * cols), gb = new Float32Array(rows);
      let loss = 0;
      for (let s = 0; s < 32; s++) {
        for (let r = 0; r < rows; r++) {
          let y = bb[r];
          for (let c = 0; c < cols; c++) y += w[r * cols + c] * X[s * cols + c];
          const e = y - T[s * rows + r];
          loss += e * e / (32 * rows);
          const de = (2 * e) / (32 * rows);
          gb[r] += de;
          for (let c = 0; c < cols; c++) gW[r * cols + c] += de * X[s * cols + c];
        }
      }
      losses.push(loss);
      W.grad = new Tensor(gW, 'f32', [rows * cols]);
      b.grad = new Tensor(gb, 'f32', [rows]);
      opt.step();
      opt.zeroGrad();
    }
    return { losses, opt };
  };
  const ref = fit((ps) => new AdamW(ps, { lr: 1e-2 }));
  const q = fit((ps) => new AdamW8bit(ps, { lr: 1e-2 }));
  const last = (l: number[]) => l[l.length - 1];
  assert.ok(last(ref.losses) < ref.losses[0] / 10, `AdamW fits: ${ref.losses[0]} -> ${last(ref.losses)}`);
  for (let s = 0; s < 150; s += 10) {
    assert.ok(Math.abs(q.losses[s] - ref.losses[s]) <= 0.05 * ref.losses[s], `step ${s}: 8-bit ${q.losses[s]} vs AdamW ${ref.losses[s]}`);
  }
  const bytes = (o: Optimizer, i: number) => [...o.stateDict().tensors].filter(([k]) => k.startsWith(`${i}.`)).reduce((a, [, t]) => a + t.nbytes, 0);
  assert.equal(bytes(q.opt, 0), 2 * rows * cols + 8 * Math.ceil((rows * cols) / STATE_BLOCK)); // codes and absmaxes
  assert.equal(bytes(ref.opt, 0), 8 * rows * cols);
  assert.ok(rows < MIN_8BIT_SIZE);
  assert.ok(q.opt.stateDict().tensors.has('1.m') && !q.opt.stateDict().tensors.has('1.state1'), 'the bias keeps f32 moments');
  // the bias (64 elements) was updated as AdamW updates it: compare one step from the same state
  const b1 = param(b0), b2 = param(b0), g = randn(rng, rows, 0.1);
  const o1 = new AdamW([b1], { lr: 1e-2 }), o2 = new AdamW8bit([b2], { lr: 1e-2 });
  for (let s = 0; s < 3; s++) {
    stepWith(o1, b1, g);
    stepWith(o2, b2, g);
  }
  assert.deepEqual(b2.f32(), b1.f32());
});

test('an AdamW8bit checkpoint (8-bit codes as i8 tensors) resumes exactly; a state of the wrong length is a CheckpointError; a bad option a ConfigError', () => {
  const rng = new Rng(3);
  const n = 5000, w = randn(rng, n, 0.1), grads = Array.from({ length: 10 }, () => randn(rng, n, 0.01));
  const straight = param(w), o = new AdamW8bit([straight], { lr: 1e-3 });
  for (const g of grads) stepWith(o, straight, g);
  const first = param(w), o1 = new AdamW8bit([first], { lr: 1e-3 });
  for (const g of grads.slice(0, 5)) stepWith(o1, first, g);
  const sd = o1.stateDict();
  assert.equal(sd.tensors.get('0.state1')?.dtype, 'i8');
  const resumed = param(first.f32()), o2 = new AdamW8bit([resumed], { lr: 1e-3 });
  o2.loadStateDict({ tensors: new Map([...sd.tensors].map(([k, t]) => [k, new Tensor(t.dense().slice(), t.dtype, t.shape)])), meta: JSON.parse(JSON.stringify(sd.meta)) });
  for (const g of grads.slice(5)) stepWith(o2, resumed, g);
  assert.deepEqual(resumed.f32(), straight.f32());
  const bad = new Map(sd.tensors);
  bad.set('0.absmax1', new Tensor(new Float32Array(3), 'f32', [3]));
  assert.throws(() => new AdamW8bit([param(w)], { lr: 1e-3 }).loadStateDict({ tensors: bad, meta: sd.meta }),
    (e: unknown) => e instanceof CheckpointError && /'0.absmax1' has 3 values; parameter 0 \(5000 elements\) takes 20/.test(e.message));
  assert.throws(() => new AdamW8bit([param(w)], { lr: 1e-3, min8bitSize: -1 }), ConfigError);
});

test("the trainer's optimizer 'adamw8bit': a full fine-tune learns, and resumes from its checkpoint to the uninterrupted run's weights", async () => {
  const root = mkdtempSync(path.join(tmpdir(), 'autoglm-adamw8bit-'));
  try {
    const config = { method: 'full' as const, optimizer: 'adamw8bit' as const, maxSteps: 6, batchSize: 16, maxLength: 24, evalBatchSize: 64, logEvery: 1, seed: 3, headDropout: 0, mixedPrecision: 'fp32' as const };
    const data = { dataset: 'custom_intent_v2', maxTrain: 200, maxEval: 60 };
    const a = new AutoGLMTrainer({ config: { ...config, outputDir: path.join(root, 'a') } });
    a.on('note', () => undefined);
    const h = await a.finetune(data);
    assert.equal(h.stepsDone, 6);
    const losses = h.steps.map((s) => s.loss);
    assert.ok(losses[losses.length - 1] < losses[0], `loss ${losses[0]} -> ${losses[losses.length - 1]}`);
    // the same run stopped after 3 steps with a checkpoint, then resumed
    const b = new AutoGLMTrainer({ config: { ...config, outputDir: path.join(root, 'b'), saveEvery: 3 } });
    b.on('note', () => undefined);
    await b.finetune({ ...data, stopAfterSteps: 3 });
    const c = new AutoGLMTrainer({ config: { ...config, outputDir: path.join(root, 'b'), saveEvery: 3, resume: true } });
    c.on('note', () => undefined);
    const hc = await c.finetune(data);
    assert.deepEqual(hc.steps.map((s) => s.loss), losses); // the history restored, then steps 4-6
    assert.equal(hc.test!.loss, h.test!.loss);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("the native addon's AdamW8bit kernel gives the TypeScript reference's bits (parameters, codes, absmaxes; 5 steps, weight decay, a partial block, zero and outlier gradients)", { skip: requireNative() }, () => {
  const be = getBackend('native');
  assert.ok(be.adamw8bit, 'the native backend has adamw8bit');
  const rng = new Rng(4);
  const n = 300 * STATE_BLOCK + 13;
  const p0 = randn(rng, n, 0.1);
  const make = () => ({ param: p0.slice(), state1: new Uint8Array(n), state2: new Uint8Array(n), absmax1: new Float32Array(Math.ceil(n / STATE_BLOCK)), absmax2: new Float32Array(Math.ceil(n / STATE_BLOCK)) });
  const a = make(), b = make();
  for (let step = 1; step <= 5; step++) {
    const grad = randn(rng, n, 0.01);
    // rows without gradient (an embedding's unused rows: their moments decay toward 0), outliers, exact zeros
    grad.fill(0, 1000, 1000 + 3 * STATE_BLOCK);
    for (let i = 0; i < n; i += 997) grad[i] *= 1000;
    if (step === 1) grad.fill(0, 5000, 5000 + STATE_BLOCK); // a block whose moments stay exactly 0
    const common = { grad, map1: signedDynamicMap(), map2: unsignedDynamicMap(), lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01,
      correction1: 1 - 0.9 ** step, correction2: Math.sqrt(1 - 0.999 ** step), gradScale: 0.5 };
    be.adamw8bit!({ ...a, ...common });
    adamw8bitReference({ ...b, ...common });
  }
  assert.ok(Buffer.from(a.param.buffer).equals(Buffer.from(b.param.buffer)), 'parameters');
  assert.deepEqual(a.state1, b.state1);
  assert.deepEqual(a.state2, b.state2);
  assert.deepEqual(a.absmax1, b.absmax1);
  assert.deepEqual(a.absmax2, b.absmax2);
});
