/**
 * Curriculum and loss-weighted sampling: pacing functions, difficulty scorers against an explicit per-sample
 * backward, the two samplers' distributions, state round trips, and the trainer end to end (incl. exact resume).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Tensor } from '../src/tensor/tensor.js';
import { crossEntropy } from '../src/tensor/ops/nn.js';
import { Linear } from '../src/nn/layers.js';
import { manualSeed } from '../src/nn/init.js';
import { Rng } from '../src/backend/rng.js';
import { ConfigError } from '../src/errors.js';
import {
  PACINGS, makePacing, SCORERS, scoreFn, CurriculumSampler, LossWeightedSampler, Registry, buildSampler, rank,
  type ScoringBatch,
} from '../src/curriculum/index.js';
import { AutoGLMTrainer, parseTrainerConfig } from '../src/train/index.js';
import { configFromFlags } from '../src/cli/config-flags.js';
import { loadSafetensors } from '../src/models/safetensors.js';
import { listCheckpoints } from '../src/train/checkpoint.js';

const tmp = (p: string) => mkdtempSync(path.join(tmpdir(), p));
const close = (a: number, b: number, tol = 1e-6) => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));

// ---- pacing ----------------------------------------------------------------------------------------------------

test('pacing functions: start at startFraction, non-decreasing, 1 from fullAt on, known values', () => {
  const opts = { startFraction: 0.2, fullAt: 0.5, stages: 4 };
  for (const name of ['sqrt', 'linear', 'step', 'exponential']) {
    const f = makePacing(name, opts);
    assert.ok(close(f(0), 0.2), `${name}(0) = ${f(0)}`);
    let prev = 0;
    for (let i = 0; i <= 1000; i++) {
      const v = f(i / 1000);
      assert.ok(v >= prev - 1e-12 && v >= 0.2 - 1e-12 && v <= 1, `${name} at ${i / 1000}: ${v}`);
      prev = v;
    }
    assert.equal(f(0.5), 1, name);
    assert.equal(f(0.7), 1, name);
    assert.equal(f(1), 1, name);
    assert.ok(f(0.49) < 1, name);
  }
  // t = fullAt / 4 -> u = 1/4
  assert.ok(close(makePacing('linear', opts)(0.125), 0.2 + 0.8 * 0.25));
  assert.ok(close(makePacing('sqrt', opts)(0.125), 0.2 + 0.8 * 0.5));
  assert.ok(close(makePacing('exponential', opts)(0.125), 0.2 * 5 ** 0.25));
  const step = makePacing('step', opts);
  assert.deepEqual([0.06, 0.13, 0.26, 0.38].map((t) => +step(t).toFixed(6)), [0.2, 0.4, 0.6, 0.8]);
  // the seed's (epoch / total)^0.5 is sqrt with startFraction -> 0 and fullAt 1
  assert.ok(close(makePacing('sqrt', { startFraction: 1e-9, fullAt: 1 })(0.36), 0.6, 1e-6));
  assert.throws(() => makePacing('linear', { startFraction: 0, fullAt: 0.5 }), (e: unknown) => e instanceof ConfigError && /startFraction/.test(e.message));
  assert.throws(() => makePacing('linear', { startFraction: 0.2, fullAt: 1.5 }), (e: unknown) => e instanceof ConfigError && /fullAt/.test(e.message));
  assert.throws(() => makePacing('cubic', opts), (e: unknown) => e instanceof ConfigError && /cubic/.test(e.message) && /sqrt/.test(e.message));
});

test('registries throw on a duplicate name', () => {
  assert.throws(() => PACINGS.register('sqrt', () => () => 1), (e: unknown) => e instanceof ConfigError && /sqrt/.test(e.message));
  assert.throws(() => SCORERS.register('loss', { needsModel: false, score: () => new Float32Array() }), ConfigError);
  const r = new Registry<number>('thing');
  r.register('a', 1);
  assert.equal(r.get('a'), 1);
  assert.throws(() => r.get('b'), (e: unknown) => e instanceof ConfigError && /'b'/.test(e.message) && /'a'/.test(e.message));
});

// ---- scorers ------------------------------------------------------------------------------------------------------

/** A tiny linear head on random features: the scorers' inputs and an explicit per-sample backward. */
function tinyHead(B = 6, D = 5, C = 4) {
  manualSeed(3);
  const head = new Linear(D, C);
  const rng = new Rng(11);
  const h = Float32Array.from({ length: B * D }, () => rng.normal());
  const labels = Int32Array.from({ length: B }, (_, i) => i % C);
  const logits = head.forward(new Tensor(h, 'f32', [B, D])).f32().slice();
  const batch: ScoringBatch = { indices: [...Array(B).keys()], labels, lengths: [...Array(B).keys()].map((i) => 3 + i), logits, numClasses: C, features: h, featureDim: D };
  return { head, h, labels, logits, batch, B, D, C };
}

test('scorers: loss = -log p(y), confidence = 1 - p(y), length = tokens', () => {
  const { batch, logits, labels, B, C } = tinyHead();
  const p = new Tensor(logits, 'f32', [B, C]).softmax(-1).f32();
  const ce = crossEntropy(new Tensor(logits, 'f32', [B, C]), new Tensor(labels, 'i32', [B]), { reduction: 'none' }).f32();
  const conf = SCORERS.get('confidence').score(batch), loss = SCORERS.get('loss').score(batch);
  for (let r = 0; r < B; r++) {
    assert.ok(close(conf[r]!, 1 - p[r * C + labels[r]!]!, 1e-5), `confidence row ${r}`);
    assert.ok(close(loss[r]!, ce[r]!, 1e-5), `loss row ${r}`);
  }
  assert.deepEqual([...SCORERS.get('length').score(batch)], [3, 4, 5, 6, 7, 8]);
  assert.equal(SCORERS.get('length').needsModel, false);
});

test("scorer grad-norm equals the norm of the head's per-sample gradient from an explicit backward", () => {
  const { head, h, labels, batch, B, D } = tinyHead();
  const g = SCORERS.get('grad-norm').score(batch);
  for (let r = 0; r < B; r++) {
    head.weight.grad = null;
    (head.bias as Tensor).grad = null;
    const x = new Tensor(h.slice(r * D, (r + 1) * D), 'f32', [1, D]);
    crossEntropy(head.forward(x), new Tensor(Int32Array.of(labels[r]!), 'i32', [1])).backward();
    let ss = 0;
    for (const v of (head.weight.grad as unknown as Tensor).f32()) ss += v * v;
    for (const v of ((head.bias as Tensor).grad as Tensor).f32()) ss += v * v;
    assert.ok(close(g[r]!, Math.sqrt(ss), 1e-4), `row ${r}: closed form ${g[r]} vs backward ${Math.sqrt(ss)}`);
  }
});

test('scoreFn chunks rows (sorted by length) and returns scores in the caller order', () => {
  const lengths = [5, 1, 4, 2, 3], labels = [0, 1, 0, 1, 0];
  const calls: number[][] = [];
  const forward = (idx: number[]) => {
    calls.push(idx);
    // logits favour class 0 by the row index: loss of row i is a known function of i
    return { logits: Float32Array.from(idx.flatMap((i) => [i, 0])), numClasses: 2, features: null, featureDim: 0 };
  };
  const f = scoreFn('confidence', { labels, lengths }, forward, 2);
  const got = f([0, 1, 2, 3, 4]);
  assert.deepEqual(calls, [[1, 3], [4, 2], [0]]);
  const sig = (z: number) => 1 / (1 + Math.exp(-z));
  [0, 1, 2, 3, 4].forEach((i) => assert.ok(close(got[i]!, 1 - (labels[i] === 0 ? sig(i) : 1 - sig(i)), 1e-6), `row ${i}`));
  assert.throws(() => scoreFn('loss', { labels, lengths }, null), ConfigError);
});

// ---- curriculum sampler ---------------------------------------------------------------------------------------------

function curriculum(opts: Partial<ConstructorParameters<typeof CurriculumSampler>[0]> = {}) {
  const n = 100;
  let scored = 0;
  const s = new CurriculumSampler({
    n, batchSize: 8, seed: 5, totalBatches: 100, refreshEvery: 10, pacing: makePacing('linear', { startFraction: 0.2, fullAt: 0.5 }),
    // difficulty = index: the easiest k rows are 0..k-1
    score: (idx) => { scored += idx.length; return Float32Array.from(idx, (i) => i); },
    ...opts,
  });
  return { s, n, scored: () => scored };
}

test('curriculum sampler: draws only from the easiest fraction, all data by fullAt, null at epoch ends', () => {
  const { s, n, scored } = curriculum();
  assert.equal(s.batchesPerEpoch, 13);
  const late = new Set<number>();
  let nulls = 0, batches = 0;
  while (s.draws < 100) {
    const frac = s.fraction, pool = s.poolSize;
    const b = s.next();
    if (b === null) { nulls++; continue; }
    batches++;
    assert.equal(b.length, 8);
    assert.equal(new Set(b).size, 8, 'distinct within a batch');
    assert.ok(b.every((i) => i < pool), `batch ${batches} at fraction ${frac} drew ${Math.max(...b)} >= ${pool}`);
    assert.equal(pool, Math.max(8, Math.ceil(frac * n - 1e-9)));
    if (s.progress > 0.5) b.forEach((i) => late.add(i));
  }
  assert.equal(nulls, Math.floor(100 / 13));
  assert.ok(late.size > 0.95 * n, `after fullAt the whole set is drawn (${late.size} distinct)`);
  assert.equal(s.poolSize, n);
  assert.equal(s.stats.refreshes, 10);
  assert.equal(scored(), 10 * n);
  // early batches come from the first 20% only
  const { s: s2 } = curriculum();
  assert.ok((s2.next() as number[]).every((i) => i < 20));
});

test('curriculum sampler: scoreSubset re-scores a random subset; static scorers score once', () => {
  const a = curriculum({ scoreSubset: 30 });
  while (a.s.draws < 60) a.s.next();
  assert.equal(a.scored(), 100 + 5 * 30, 'refreshes at draws 0 (all rows), 10, 20, 30, 40, 50 (30 rows each)');
  const b = curriculum({ static: true });
  while (b.s.draws < 60) b.s.next();
  assert.equal(b.scored(), 100);
  assert.deepEqual([...rank(Float32Array.of(3, NaN, 1, 1, 0))], [4, 2, 3, 0, 1]);
});

test('curriculum sampler: state/load round trip continues exactly (mid-window, with a subset)', () => {
  // scores change with every call (like a model that trains), so stale scores matter; `model.v` stands for
  // the model's weights, which the trainer restores from the checkpoint next to the sampler state
  const mk = (model: { v: number }) => curriculum({ scoreSubset: 25, score: (idx) => Float32Array.from(idx, (i) => Math.sin(i * 7 + ++model.v)) }).s;
  const ma = { v: 0 }, a = mk(ma);
  for (let i = 0; i < 23; i++) a.next();
  const st = JSON.parse(JSON.stringify(a.state()));
  const b = mk({ ...ma });
  b.load(st);
  assert.deepEqual(b.currentScores(), a.currentScores());
  for (let i = 0; i < 40; i++) assert.deepEqual(b.next(), a.next(), `batch ${i} after load`);
  assert.throws(() => curriculum({ refreshEvery: 7 }).s.load(st), (e: unknown) => e instanceof ConfigError && /refreshEvery/.test(e.message));
  assert.throws(() => new LossWeightedSampler({ n: 100, batchSize: 8, seed: 5, temperature: 1, floor: 0.1, importanceWeights: false }).load(st),
    (e: unknown) => e instanceof ConfigError && /CurriculumSampler/.test(e.message));
});

// ---- loss-weighted sampler ------------------------------------------------------------------------------------------

function weighted(importanceWeights = false, refreshEvery = 1) {
  const n = 20;
  const s = new LossWeightedSampler({ n, batchSize: 10, seed: 9, temperature: 0.5, floor: 0.2, importanceWeights, refreshEvery });
  const losses = Float32Array.from({ length: n }, (_, i) => (i % 5) * 0.4);
  s.update([...Array(n).keys()], { loss: losses });
  return { s, n, losses };
}

test('loss-weighted sampler: p = (1 - eps) softmax(l / T) + eps / N; unseen rows at the mean; uniform before any loss', () => {
  const { s, n, losses } = weighted();
  const z = [...losses].map((l) => Math.exp(l / 0.5)), Z = z.reduce((a, b) => a + b);
  const p = s.probabilities();
  for (let i = 0; i < n; i++) assert.ok(close(p[i]!, 0.8 * (z[i]! / Z) + 0.2 / n, 1e-9), `p[${i}]`);
  const fresh = new LossWeightedSampler({ n: 4, batchSize: 2, seed: 1, temperature: 1, floor: 0, importanceWeights: false });
  assert.deepEqual([...fresh.probabilities()], [0.25, 0.25, 0.25, 0.25]);
  const part = new LossWeightedSampler({ n: 3, batchSize: 2, seed: 1, temperature: 1, floor: 0, importanceWeights: false });
  part.update([0, 1], { loss: Float32Array.of(0, 2) });
  part.next();
  const q = part.probabilities();
  assert.ok(close(q[2]!, Math.E / (1 + Math.E * Math.E + Math.E), 1e-9), 'unseen row at the mean loss (1)');
});

test('loss-weighted sampler: draw frequencies match p (chi-square, fixed seed)', () => {
  const { s, n } = weighted();
  const p = s.probabilities();
  const counts = new Float64Array(n);
  let total = 0;
  for (let k = 0; k < 4000; k++) {
    const b = s.next();
    if (!b) continue;
    for (const i of b) counts[i]!++;
    total += b.length;
  }
  let chi2 = 0;
  for (let i = 0; i < n; i++) chi2 += (counts[i]! - total * p[i]!) ** 2 / (total * p[i]!);
  // 19 degrees of freedom: the 99.9% quantile is 43.8
  assert.ok(chi2 < 43.8, `chi-square ${chi2.toFixed(1)} over ${total} draws`);
});

test('loss-weighted sampler: importance weights make the weighted mean unbiased', () => {
  const { s, n } = weighted(true);
  const f = Float64Array.from({ length: n }, (_, i) => (i % 5) + 0.5 * Math.cos(i)); // correlated with the losses
  const target = f.reduce((a, b) => a + b) / n;
  const p = s.probabilities();
  const w = s.weights([...Array(n).keys()]) as Float32Array;
  // exact expectation of one draw: sum_i p_i w_i f_i = mean f
  let e = 0;
  for (let i = 0; i < n; i++) e += p[i]! * w[i]! * f[i]!;
  assert.ok(close(e, target, 1e-6));
  // Monte Carlo: weighted batch means average to the uniform mean; unweighted ones are biased towards high-loss rows
  let wsum = 0, usum = 0, batches = 0;
  for (let k = 0; k < 3000; k++) {
    const b = s.next();
    if (!b) continue;
    const wb = s.weights(b) as Float32Array;
    wsum += b.reduce((a, i, j) => a + wb[j]! * f[i]!, 0) / b.length;
    usum += b.reduce((a, i) => a + f[i]!, 0) / b.length;
    batches++;
  }
  assert.ok(Math.abs(wsum / batches - target) < 0.02, `weighted ${wsum / batches} vs ${target}`);
  const biased = [...p].reduce((a, pi, i) => a + pi * f[i]!, 0);
  assert.ok(Math.abs(usum / batches - biased) < 0.02 && Math.abs(biased - target) > 0.5);
  assert.equal(weighted(false).s.weights([0, 1]), null);
});

test('loss-weighted sampler: state/load round trip continues exactly (table snapshot mid-window)', () => {
  const a = weighted(true, 3).s, b = weighted(true, 3).s;
  const feed = (s: LossWeightedSampler, idx: number[], k: number) => s.update(idx, { loss: Float32Array.from(idx, (i) => ((i * 13 + k) % 7) / 3) });
  for (let k = 0; k < 8; k++) {
    const x = a.next();
    if (x) feed(a, x, k);
  }
  b.load(JSON.parse(JSON.stringify(a.state())));
  for (let k = 8; k < 30; k++) {
    const x = a.next(), y = b.next();
    assert.deepEqual(y, x, `batch ${k}`);
    if (x && y) {
      assert.deepEqual(b.weights(y), a.weights(x));
      feed(a, x, k);
      feed(b, y, k);
    }
  }
});

// ---- config, trainer -------------------------------------------------------------------------------------------------

test('config: curriculum and sampling keys are validated, named in errors, and reachable from CLI flags', () => {
  const bad: Array<[unknown, RegExp]> = [
    [{ curriculum: { scorer: 'entropy' } }, /curriculum\.scorer.*entropy.*grad-norm/],
    [{ curriculum: { pacing: 'cubic' } }, /curriculum\.pacing.*cubic/],
    [{ curriculum: { startFraction: 0 } }, /curriculum\.startFraction/],
    [{ curriculum: { refreshEvery: 0 } }, /curriculum\.refreshEvery/],
    [{ curriculum: { scorerr: 'loss' } }, /curriculum.*scorerr/],
    [{ sampling: { method: 'hard' } }, /sampling\.method.*hard/],
    [{ sampling: { floor: 1.5 } }, /sampling\.floor/],
    [{ sampling: { temperature: 0 } }, /sampling\.temperature/],
  ];
  for (const [cfg, re] of bad) assert.throws(() => parseTrainerConfig(cfg), (e: unknown) => e instanceof ConfigError && re.test(e.message), JSON.stringify(cfg));
  assert.throws(() => new AutoGLMTrainer({ config: { curriculum: true, sampling: { method: 'loss-weighted' } } }), (e: unknown) => e instanceof ConfigError && /sampling\.method/.test(e.message));
  assert.throws(() => new AutoGLMTrainer({ config: { task: 'causal-lm', curriculum: { scorer: 'length' } } }), (e: unknown) => e instanceof ConfigError && /curriculum/.test(e.message));
  const c = parseTrainerConfig({ curriculum: true });
  assert.equal(c.sampling.method, 'uniform');
  assert.equal(parseTrainerConfig({}).curriculum, false);
  const fromFlags = parseTrainerConfig(configFromFlags({ curriculum: '{"scorer":"length","pacing":"step"}', sampling: '{"method":"loss-weighted","importanceWeights":true}' }));
  assert.deepEqual([(fromFlags.curriculum as { scorer: string }).scorer, fromFlags.sampling.importanceWeights], ['length', true]);
  assert.equal(buildSampler(parseTrainerConfig({}), { batchSize: 4, seed: 1, gradientAccumulation: 1, labels: [0], lengths: [1], forward: null }), null);
});

const QUICK = { batchSize: 8, maxLength: 32, evalBatchSize: 64, logEvery: 1, loraDropout: 0.1, headDropout: 0.1, evalEvery: 3, epochs: 3 } as const;
const DATA = { dataset: 'custom_intent_v2', maxTrain: 40, maxEval: 16 } as const;

/** 2N steps straight == N steps, stop, resume N more (bit-identical adapter weights); returns the checkpoint's sampler state. */
async function resumeIsExact(extra: Record<string, unknown>): Promise<Record<string, unknown>> {
  const N = 4;
  const straight = tmp('autoglm-cur-straight-'), split = tmp('autoglm-cur-split-');
  const cfg = (out: string, resume: boolean) => ({ ...QUICK, ...extra, maxSteps: 2 * N, saveEvery: N, keepLast: 3, outputDir: out, resume });
  await new AutoGLMTrainer({ config: cfg(straight, false) }).finetune(DATA);
  await new AutoGLMTrainer({ config: cfg(split, false) }).finetune({ ...DATA, stopAfterSteps: N });
  const first = listCheckpoints(split);
  assert.equal(path.basename(first[first.length - 1]!), 'checkpoint-0000004');
  const state = JSON.parse(readFileSync(path.join(first[first.length - 1]!, 'trainer_state.json'), 'utf8')) as { taskState: { sampler: Record<string, unknown> } };
  const t = new AutoGLMTrainer({ config: cfg(split, true) });
  const h = await t.finetune(DATA);
  assert.equal(h.stepsDone, 2 * N);
  const a = loadSafetensors(path.join(straight, 'adapter/adapter_model.safetensors')).tensors;
  const b = loadSafetensors(path.join(split, 'adapter/adapter_model.safetensors')).tensors;
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [k, x] of a) assert.deepEqual(Buffer.from((b.get(k) as typeof x).f32().buffer), Buffer.from(x.f32().buffer), `${k} differs after resume`);
  return state.taskState.sampler;
}

test('trainer + curriculum (loss scorer, subset refresh): trains, checkpoints the scores, resumes bit-identically', async () => {
  const s = await resumeIsExact({ curriculum: { scorer: 'loss', pacing: 'linear', startFraction: 0.3, fullAt: 0.6, refreshEvery: 3, scoreSubset: 10 } });
  assert.equal(s['kind'], 'CurriculumSampler');
  assert.equal(s['draws'], 4);
  assert.equal(typeof s['scores'], 'string');
  const scores = Buffer.from(s['scores'] as string, 'base64');
  assert.equal(scores.byteLength, 40 * 4);
});

test('trainer + loss-weighted sampling with importance weights: resumes bit-identically', async () => {
  const s = await resumeIsExact({ sampling: { method: 'loss-weighted', temperature: 1, floor: 0.2, importanceWeights: true, refreshEvery: 3 } });
  assert.equal(s['kind'], 'LossWeightedSampler');
  assert.equal(typeof s['losses'], 'string');
});

test('trainer + curriculum with grad-norm and length scorers, method head: a short run', async () => {
  for (const scorer of ['grad-norm', 'length']) {
    const h = await new AutoGLMTrainer({ config: { ...QUICK, method: 'head', loraDropout: 0, maxSteps: 4, outputDir: tmp('autoglm-cur-head-'), curriculum: { scorer, refreshEvery: 2 } } }).finetune(DATA);
    assert.equal(h.stepsDone, 4);
    assert.ok(h.steps.every((x) => Number.isFinite(x.loss)), scorer);
  }
});
