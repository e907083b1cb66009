/**
 * The bf16 copies of weights that products keep between steps (tensor/versions.ts): reused while the weight is
 * unchanged, never after anything wrote it (an optimizer step, a load, a LoRA merge or unmerge, restoring the best
 * weights, a resume). Every case compares against a fresh cast: a model built anew from the same values, whose
 * weights nothing has cached yet, and the cache's own check (every reused copy against a fresh cast).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Linear } from '../src/nn/layers.js';
import { manualSeed } from '../src/nn/init.js';
import { SGD } from '../src/optim/sgd.js';
import { AdamW } from '../src/optim/adam.js';
import { LoraModel } from '../src/peft/index.js';
import { LoraLinear } from '../src/peft/lora/layer.js';
import { loraLinear } from '../src/tensor/ops/lora-linear.js';
import { EncoderClassifier } from '../src/bench/model-workloads.js';
import { autocast } from '../src/tensor/precision.js';
import { randn, randint } from '../src/tensor/creation.js';
import { crossEntropy } from '../src/tensor/ops/nn.js';
import { noGrad } from '../src/tensor/autograd.js';
import { Tensor } from '../src/tensor/tensor.js';
import { castCacheCounts, checkCastCache, markModified, storageVersion } from '../src/tensor/versions.js';
import { AutoGLMTrainer } from '../src/train/index.js';
import { backend } from '../src/backend/index.js';
import { optimizerBf16Switch } from '../src/backend/native.js';
import { ConfigError } from '../src/errors.js';

const bf16 = <T>(fn: () => T): T => autocast('bf16', fn);
const same = (a: Tensor, b: Tensor, what: string) => assert.deepEqual(Array.from(a.f32()), Array.from(b.f32()), what);

/** `fn` with every copy of m's weights dropped first: products cast the current values afresh. */
function uncached<T>(m: { parameters(): Tensor[] }, fn: () => T): T {
  for (const p of m.parameters()) markModified(p);
  return fn();
}

/** A Linear with the same values as `l`, never used before (nothing cached). */
function fresh(l: Linear): Linear {
  const c = new Linear(l.inFeatures, l.outFeatures);
  c.loadStateDict(l.stateDict());
  for (const p of c.parameters()) p.requiresGrad = false;
  return c;
}

const freeze = (l: Linear, frozen = true) => { for (const p of l.parameters()) p.requiresGrad = !frozen; };

test('a frozen weight is cast once while unchanged; a trainable one is not cached; an optimizer step invalidates', () => {
  manualSeed(1);
  const l = new Linear(48, 40);
  const x = randn([6, 48], 2);
  castCacheCounts(true);
  bf16(() => l.forward(x));
  bf16(() => l.forward(x));
  assert.deepEqual(castCacheCounts(true), { hits: 0, misses: 0 }, 'trainable: cast per product, as before (no copy kept past the graph)');
  freeze(l);
  const y0 = bf16(() => l.forward(x));
  const y1 = bf16(() => l.forward(x));
  same(y0, y1, 'a reused copy gives the same bits');
  assert.deepEqual(castCacheCounts(true), { hits: 1, misses: 1 });
  // unfrozen for a step, frozen again: the copy made before the step is not used after it
  const v = storageVersion(l.weight);
  freeze(l, false);
  const opt = new SGD(l.parameters(), { lr: 0.5 });
  bf16(() => l.forward(x)).sum().backward();
  opt.step();
  assert.ok(storageVersion(l.weight) > v, 'the optimizer step bumps the version');
  freeze(l);
  const y2 = bf16(() => l.forward(x));
  assert.notDeepEqual(Array.from(y2.f32()), Array.from(y0.f32()));
  same(y2, bf16(() => fresh(l).forward(x)), 'after a step: the new weights');
  // AdamW too
  freeze(l, false);
  const adam = new AdamW(l.parameters(), { lr: 0.1, weightDecay: 0.01 });
  bf16(() => l.forward(x)).sum().backward();
  adam.step();
  freeze(l);
  same(bf16(() => l.forward(x)), bf16(() => fresh(l).forward(x)), 'after an AdamW step');
});

test('AdamW and SGD write the bf16 copy of a trainable weight that bf16 products read, with the update: the next forward pass reuses it, the bits of a fresh cast', {
  skip: !backend().optimizerWritesBf16 && 'the backend does not write bf16 copies with the update here (no native bf16 products)',
}, () => {
  for (const [name, make] of [['AdamW', (ps: Tensor[]) => new AdamW(ps, { lr: 0.01, weightDecay: 0.01 })],
    ['SGD', (ps: Tensor[]) => new SGD(ps, { lr: 0.01, momentum: 0.9 })]] as const) {
    manualSeed(11);
    const a = new Linear(320, 256); // 81,920 weights: products cast it (LoRA-sized parameters are rounded instead)
    const b = new Linear(320, 256);
    b.loadStateDict(a.stateDict());
    const x = randn([8, 320], 12);
    const [oa, ob] = [make(a.parameters()), make(b.parameters())];
    const prev = checkCastCache(true); // every reused copy compared with a fresh cast
    try {
      castCacheCounts(true);
      for (let s = 0; s < 3; s++) {
        const la = bf16(() => a.forward(x).sum());
        la.backward();
        oa.step();
        oa.zeroGrad();
        const lb = uncached(b, () => bf16(() => b.forward(x).sum())); // b's copies dropped: cast afresh
        lb.backward();
        ob.step();
        ob.zeroGrad();
        same(la, lb, `${name}, step ${s}: the loss with the optimizer's copy`);
      }
      same(a.weight, b.weight, `${name}: the weights after three steps`);
      assert.ok(castCacheCounts(true).hits >= 2, `${name}: the second and third forward passes read the optimizer's copy`);
    } finally {
      checkCastCache(prev);
    }
  }
});

test('AUTOGLM_OPTIMIZER_BF16 is 1 (the default) or 0 (products cast every trainable weight); another value is a ConfigError naming it', () => {
  const prev = process.env.AUTOGLM_OPTIMIZER_BF16;
  try {
    process.env.AUTOGLM_OPTIMIZER_BF16 = '0';
    assert.equal(optimizerBf16Switch(), false);
    delete process.env.AUTOGLM_OPTIMIZER_BF16;
    assert.equal(optimizerBf16Switch(), true);
    process.env.AUTOGLM_OPTIMIZER_BF16 = 'yes';
    assert.throws(() => optimizerBf16Switch(), (e: Error) => e instanceof ConfigError && /AUTOGLM_OPTIMIZER_BF16 is 'yes'; expected 1 .* or 0/.test(e.message));
  } finally {
    if (prev === undefined) delete process.env.AUTOGLM_OPTIMIZER_BF16;
    else process.env.AUTOGLM_OPTIMIZER_BF16 = prev;
  }
});

test('loads and direct writes: a stale copy is caught by the check and avoided with markModified', () => {
  manualSeed(2);
  const l = new Linear(32, 24);
  freeze(l);
  const x = randn([5, 32], 3);
  const y0 = bf16(() => l.forward(x));
  // loadStateDict (copyInto) bumps the version
  manualSeed(3);
  const other = new Linear(32, 24);
  l.loadStateDict(other.stateDict());
  same(bf16(() => l.forward(x)), bf16(() => other.forward(x)), 'after loadStateDict');
  // a direct write without markModified: the check throws, naming the cause
  (l.weight.storage as Float32Array)[0] += 1;
  const prev = checkCastCache(true);
  try {
    assert.throws(() => bf16(() => l.forward(x)), /stale bf16 copy.*markModified/);
    markModified(l.weight);
    same(bf16(() => l.forward(x)), bf16(() => fresh(l).forward(x)), 'after markModified');
  } finally {
    checkCastCache(prev);
  }
  assert.notDeepEqual(Array.from(bf16(() => l.forward(x)).f32()), Array.from(y0.f32()));
});

test('a transposed view and a slice of a weight are cast from its current values', () => {
  manualSeed(4);
  const l = new Linear(16, 12);
  freeze(l);
  const x = randn([3, 12], 5);
  const viaT = () => bf16(() => x.matmul(l.weight));
  const a = viaT();
  noGrad(() => {
    (l.weight.storage as Float32Array).fill(0.25, 0, 16);
    markModified(l.weight);
  });
  const b = viaT();
  assert.notDeepEqual(Array.from(a.f32()), Array.from(b.f32()));
  same(b, bf16(() => x.matmul(fresh(l).weight)), 'the view reads the new values');
});

test('LoRA: frozen base weights are cast once; merge and unmerge invalidate their copies', () => {
  manualSeed(5);
  const m = new EncoderClassifier();
  const lora = new LoraModel(m, { r: 4, alpha: 8, targetModules: ['qkv', 'proj', 'fc1', 'fc2'], modulesToSave: ['head'], initLoraWeights: 'gaussian' });
  const idx = randint([4, 32], 8002, 6), y = randint([4], 150, 7);
  const opt = new AdamW(m.trainableParameters(), { lr: 1e-3, weightDecay: 0.01 });
  const prev = checkCastCache(true);
  try {
    for (let i = 0; i < 2; i++) {
      opt.zeroGrad();
      bf16(() => crossEntropy(m.forward(idx), y)).backward();
      opt.step();
    }
    castCacheCounts(true);
    opt.zeroGrad();
    bf16(() => crossEntropy(m.forward(idx), y)).backward();
    opt.step();
    const c = castCacheCounts(true);
    assert.ok(c.hits >= 16, `the 16 frozen base weights reuse their copies (hits ${c.hits})`);
    m.eval();
    const before = noGrad(() => bf16(() => m.forward(idx)));
    lora.merge();
    const merged = noGrad(() => bf16(() => m.forward(idx)));
    // merged: bf16(W + sBA) in one product instead of bf16(W) + bf16-products of B, A: close, not equal
    const d = Math.max(...Array.from(merged.f32(), (v, i) => Math.abs(v - before.f32()[i])));
    assert.ok(d < 0.05, `merged forward close to the unmerged one (max diff ${d})`);
    assert.ok(castCacheCounts().hits > 0);
    same(merged, uncached(m, () => noGrad(() => bf16(() => m.forward(idx)))), 'merged: as from freshly cast weights');
    lora.unmerge();
    const after = noGrad(() => bf16(() => m.forward(idx)));
    same(after, uncached(m, () => noGrad(() => bf16(() => m.forward(idx)))), 'unmerged: as from freshly cast weights');
    // W + sBA - sBA in f32 is W to rounding
    const d2 = Math.max(...Array.from(after.f32(), (v, i) => Math.abs(v - before.f32()[i])));
    assert.ok(d2 < 1e-3, `unmerge restores the unmerged outputs (max diff ${d2})`);
  } finally {
    checkCastCache(prev);
  }
});

test('trainer: restoring the best weights and resuming from a checkpoint in bf16 never read a stale copy', async () => {
  const out = mkdtempSync(path.join(tmpdir(), 'autoglm-wcache-'));
  const prev = checkCastCache(true);
  try {
    const config = {
      epochs: 1, batchSize: 16, maxLength: 32, logEvery: 1, evalBatchSize: 64, mixedPrecision: 'bf16' as const,
      maxSteps: 6, evalEvery: 2, saveEvery: 2, learningRate: 5e-2, outputDir: out,
      earlyStopping: { monitor: 'val_loss' as const, patience: 10, restoreBest: true },
    };
    castCacheCounts(true);
    const t = new AutoGLMTrainer({ config });
    const h = await t.finetune({ dataset: 'custom_intent_v2', maxTrain: 160, maxEval: 64 });
    assert.ok(h.test, 'evaluated after restoring the best weights');
    assert.ok(castCacheCounts().hits > 0, 'copies were reused (and checked)');
    const r = new AutoGLMTrainer({ config: { ...config, maxSteps: 8, resume: true } });
    const h2 = await r.finetune({ dataset: 'custom_intent_v2', maxTrain: 160, maxEval: 64 });
    assert.ok(h2.stepsDone >= 6);
  } finally {
    checkCastCache(prev);
  }
});

test('LoRA\'s fused op keeps its base weight\'s wider copies between steps: the bits of fresh copies after the factors change and after a marked write of the weight, an unmarked one caught by the check', () => {
  manualSeed(21);
  const layer = new LoraLinear(new Linear(40, 36));
  layer.addAdapter('default', { r: 4, alpha: 8, dropout: 0, useRslora: false, useDora: false, init: false, seed: 1 });
  for (const p of [layer.weight, layer.bias]) if (p) p.requiresGrad = false; // a frozen base: the factors ride along its product
  const factors = [(layer.lora_A.get('default') as Linear).weight, (layer.lora_B.get('default') as Linear).weight];
  const x = randn([10, 40], 22);
  // y, and the gradients of x (through [W; A; 0] where the factors ride along) and of the factors
  const outputs = (forward: (x: Tensor) => Tensor, grads: () => Tensor[]) => {
    const xg = x.detach().requireGrad();
    const y = bf16(() => forward(xg));
    assert.equal(y.node?.op, 'loraLinear');
    y.sum().backward();
    return [y, xg.grad!, ...grads()].map((t) => Array.from(t.f32()));
  };
  const viaLayer = () => {
    const out = outputs((xg) => layer.forward(xg), () => factors.map((f) => f.grad!));
    for (const f of factors) f.grad = null;
    return out;
  };
  // the same op on copies of the current values: a base weight that is no parameter's memory gets fresh wider copies
  const fresh = () => {
    const copy = (t: Tensor, grad: boolean) => new Tensor(Float32Array.from(t.f32()), 'f32', [...t.shape]).requireGrad(grad);
    const [W, b, A, B] = [copy(layer.weight, false), copy(layer.bias!, false), copy(factors[0], true), copy(factors[1], true)];
    return outputs((xg) => loraLinear(xg, W, b, A, B, 2), () => [A.grad!, B.grad!]);
  };
  assert.deepEqual(viaLayer(), fresh(), 'the first step');
  for (const f of factors) { // an optimizer's step on the factors
    const d = f.storage as Float32Array;
    for (let i = 0; i < d.length; i++) d[i] += 0.01 * ((i % 7) - 3);
    markModified(f);
  }
  assert.deepEqual(viaLayer(), fresh(), 'after a step of the factors: the kept copies with their new columns and rows');
  (layer.weight.storage as Float32Array)[5] += 0.5;
  markModified(layer.weight);
  assert.deepEqual(viaLayer(), fresh(), 'after a marked write of the base weight: copied again');
  (layer.weight.storage as Float32Array)[7] -= 0.5; // unmarked
  const prev = checkCastCache(true);
  try {
    assert.throws(() => viaLayer(), /stale .*markModified/);
  } finally {
    checkCastCache(prev);
  }
});
