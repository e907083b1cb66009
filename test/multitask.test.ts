/** Multi-task learning: loss weightings (uncertainty gradient, DWA), task samplers, config errors, and a short run. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { Tensor } from '../src/tensor/tensor.js';
import { noGrad } from '../src/tensor/autograd.js';
import { Rng } from '../src/backend/rng.js';
import { AutoGLMTrainer, parseTrainerConfig, type TrainerConfigInput } from '../src/train/index.js';
import { ConfigError } from '../src/errors.js';
import { main } from '../src/cli/main.js';
import { loadSafetensors } from '../src/models/safetensors.js';
import type { DatasetSplits, Example } from '../src/data/index.js';
import {
  UncertaintyWeighting, DwaWeighting, dwaWeights, makeTaskWeighting, makeTaskSampler, taskProbabilities, primaryLabelSet,
  type MultiTaskEvalResult, type MultiTaskPrediction,
} from '../src/multitask/index.js';

const tmp = (p: string) => mkdtempSync(path.join(tmpdir(), p));
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const scalar = (v: number) => new Tensor(Float32Array.of(v), 'f32', []);

test('uncertainty weighting: value sum exp(-s_t) L_t + s_t, gradient w.r.t. s_t matches finite differences', () => {
  const w = new UncertaintyWeighting(['a', 'b', 'c']);
  const s0 = [0.3, -0.5, 1.2], L = [1.7, 0.4, 2.5];
  (w.logVars.storage as Float32Array).set(s0);
  const losses = new Map(L.map((l, t) => [t, scalar(l).requireGrad()]));
  const total = w.combine(losses);
  const expect = L.reduce((a, l, t) => a + Math.exp(-s0[t]!) * l + s0[t]!, 0);
  assert.ok(Math.abs(total.item() - expect) < 1e-5);
  total.backward();
  const g = Array.from(w.logVars.grad!.f32());
  const f = (s: number[]) => noGrad(() => {
    (w.logVars.storage as Float32Array).set(s);
    return w.combine(new Map(L.map((l, t) => [t, scalar(l)]))).item();
  });
  const h = 1e-2;
  s0.forEach((_, t) => {
    const up = s0.slice(), dn = s0.slice();
    up[t]! += h;
    dn[t]! -= h;
    const fd = (f(up) - f(dn)) / (2 * h);
    assert.ok(Math.abs(g[t]! - fd) < 2e-3, `s_${t}: autograd ${g[t]} vs finite difference ${fd}`);
    assert.ok(Math.abs(g[t]! - (1 - Math.exp(-s0[t]!) * L[t]!)) < 1e-5);
    // and the task loss is scaled by exp(-s_t)
    assert.ok(Math.abs(losses.get(t)!.grad!.f32()[0]! - Math.exp(-s0[t]!)) < 1e-5);
  });
  // a batch with one task only trains that task's s_t
  (w.logVars.storage as Float32Array).set(s0);
  w.logVars.grad = null;
  w.combine(new Map([[1, scalar(0.4)]])).backward();
  assert.deepEqual(Array.from(w.logVars.grad!.f32()).map((x) => Math.abs(x) > 0), [false, true, false]);
  assert.deepEqual(w.parameters(), [w.logVars]);
});

test('DWA weights from loss histories: 1 for the first two windows, then T * softmax(r / temp)', () => {
  assert.deepEqual(dwaWeights([], 2, 2), [1, 1]);
  assert.deepEqual(dwaWeights([[3, 1]], 2, 2), [1, 1]);
  const w = dwaWeights([[2, 1], [1, 1]], 2, 2); // r = [0.5, 1]
  const e = [Math.exp(0.25), Math.exp(0.5)];
  assert.ok(Math.abs(w[0]! - (2 * e[0]!) / (e[0]! + e[1]!)) < 1e-9 && Math.abs(w[1]! - (2 * e[1]!) / (e[0]! + e[1]!)) < 1e-9);
  assert.ok(w[1]! > w[0]!, 'the task whose loss fell less gets more weight');
  const w3 = dwaWeights([[9, 9, 9], [1, 2, 4], [1, 1, 1]], 3, 1); // only the last two windows count: r = [1, 0.5, 0.25]
  assert.ok(Math.abs(w3.reduce((a, b) => a + b, 0) - 3) < 1e-9);
  assert.ok(w3[0]! > w3[1]! && w3[1]! > w3[2]!);
  // the class averages each window's batch losses
  const d = new DwaWeighting(['a', 'b'], 2);
  const feed = (a: number[], b: number[]) => {
    a.forEach((x, i) => d.observe(new Map([[0, x], [1, b[i]!]])));
    d.endWindow();
  };
  feed([2, 4], [1, 1]); // averages [3, 1]
  assert.deepEqual(d.weights(), [1, 1]);
  feed([1, 2], [1, 1]); // averages [1.5, 1]: r = [0.5, 1]
  const want = dwaWeights([[3, 1], [1.5, 1]], 2, 2);
  assert.ok(d.weights().every((x, i) => Math.abs(x - want[i]!) < 1e-12));
  const copy = new DwaWeighting(['a', 'b'], 2);
  copy.load(JSON.parse(JSON.stringify(d.state())));
  assert.deepEqual(copy.weights(), d.weights());
  // static weights
  const st = makeTaskWeighting('static', { tasks: ['a', 'b'], weights: [0.25, 2] });
  assert.ok(Math.abs(st.combine(new Map([[0, scalar(4)], [1, scalar(1)]])).item() - 3) < 1e-6);
});

test('task samplers: proportional and temperature frequencies, round-robin order, resumable state', () => {
  const sizes = [100, 300, 600];
  assert.deepEqual(taskProbabilities(sizes, 1).map((p) => +p.toFixed(6)), [0.1, 0.3, 0.6]);
  const t2 = taskProbabilities(sizes, 2), z = sizes.reduce((a, n) => a + Math.sqrt(n), 0);
  t2.forEach((p, i) => assert.ok(Math.abs(p - Math.sqrt(sizes[i]!) / z) < 1e-12));
  for (const [name, want] of [['proportional', taskProbabilities(sizes, 1)], ['temperature', t2]] as const) {
    const s = makeTaskSampler(name, { sizes, temperature: 2, seed: 5 });
    const n = 20000, counts = [0, 0, 0];
    for (let i = 0; i < n; i++) counts[s.next()]!++;
    counts.forEach((c, i) => assert.ok(Math.abs(c / n - want[i]!) < 0.015, `${name}: task ${i} drawn ${c / n}, expected ${want[i]}`));
  }
  const rr = makeTaskSampler('round-robin', { sizes, temperature: 1, seed: 0 });
  assert.deepEqual(Array.from({ length: 7 }, () => rr.next()), [0, 1, 2, 0, 1, 2, 0]);
  const a = makeTaskSampler('temperature', { sizes, temperature: 2, seed: 9 });
  for (let i = 0; i < 17; i++) a.next();
  const b = makeTaskSampler('temperature', { sizes, temperature: 2, seed: 1 });
  b.load(JSON.parse(JSON.stringify(a.state())));
  assert.deepEqual(Array.from({ length: 20 }, () => b.next()), Array.from({ length: 20 }, () => a.next()));
  assert.throws(() => makeTaskSampler('uniform', { sizes, temperature: 1, seed: 0 }), (e: unknown) => e instanceof ConfigError && /taskSampling/.test(e.message));
});

// ---- a tiny synthetic dataset with two label sets on the same texts: topic (4 classes) and mood (2 classes) ----
const TOPICS: Record<string, string[]> = {
  weather: ['the rain forecast for tomorrow', 'a snow storm in the city', 'the temperature outside', 'sunny skies this weekend'],
  music: ['the new album by that band', 'playing guitar songs', 'concert tickets tonight', 'my favourite song on the radio'],
  food: ['a recipe for pasta', 'ordering pizza for dinner', 'the sushi restaurant downtown', 'baking chocolate cake'],
  sports: ['the football score', 'the tennis match final', 'the basketball game last night', 'who won the marathon'],
};
const MOODS: Record<string, string[]> = {
  happy: ['I absolutely love', 'how wonderful, tell me about', 'I am so happy about', 'great news about'],
  angry: ['I really hate', 'this is awful, stop talking about', 'I am furious about', 'terrible news about'],
};

function synthetic(n: number, seed: number): Example[] {
  const rng = new Rng(seed), topics = Object.keys(TOPICS), moods = Object.keys(MOODS);
  return Array.from({ length: n }, () => {
    const topic = topics[rng.int(topics.length)]!, mood = moods[rng.int(moods.length)]!;
    return { text: `${MOODS[mood]![rng.int(4)]} ${TOPICS[topic]![rng.int(4)]}`, label: topic, extra: { mood } };
  });
}

function syntheticSplits(): DatasetSplits {
  return { name: 'synthetic-topic-mood', train: synthetic(160, 1), validation: synthetic(40, 2), test: synthetic(80, 3),
    labels: Object.keys(TOPICS).sort(), extraLabels: { mood: Object.keys(MOODS).sort() }, skipped: [] };
}

const QUICK = { batchSize: 16, maxLength: 24, logEvery: 1, evalBatchSize: 64 } as const;

test('bad multi-task config: ConfigError naming the key and the allowed task names', async () => {
  assert.deepEqual(parseTrainerConfig({ tasks: 'intent,domain' }).tasks, ['intent', 'domain']);
  assert.deepEqual(parseTrainerConfig({ tasks: 'intent' }).tasks, ['intent']);
  assert.throws(() => new AutoGLMTrainer({ config: { tasks: ['topic', 'mood'], taskWeights: [1] } }),
    (e: unknown) => e instanceof ConfigError && /'taskWeights'/.test(e.message) && /topic, mood/.test(e.message));
  assert.throws(() => new AutoGLMTrainer({ config: { tasks: ['topic', 'mood'], taskWeighting: 'dwa', taskWeights: [1, 2] } }), ConfigError);
  assert.throws(() => new AutoGLMTrainer({ config: { tasks: ['a', 'a'] } }), (e: unknown) => e instanceof ConfigError && /'tasks'/.test(e.message));
  assert.throws(() => new AutoGLMTrainer({ config: { task: 'causal-lm', tasks: ['a', 'b'] } }), (e: unknown) => e instanceof ConfigError && /not supported yet/.test(e.message));
  assert.throws(() => parseTrainerConfig({ taskWeighting: 'gradnorm' }), (e: unknown) => e instanceof ConfigError && /taskWeighting/.test(e.message));
  const t = new AutoGLMTrainer({ config: { ...QUICK, tasks: ['topic', 'colour'], maxSteps: 1, outputDir: tmp('autoglm-mt-bad-') } });
  await assert.rejects(t.finetune({ dataset: syntheticSplits(), labelSet: 'topic' }),
    (e: unknown) => e instanceof ConfigError && /'tasks'/.test(e.message) && /'colour'/.test(e.message) && /'topic', 'mood'/.test(e.message));
  const t2 = new AutoGLMTrainer({ config: { ...QUICK, tasks: ['topic', 'mood'], taskWeights: { topic: 1, color: 2 }, maxSteps: 1, outputDir: tmp('autoglm-mt-bad-') } });
  await assert.rejects(t2.finetune({ dataset: syntheticSplits(), labelSet: 'topic' }), (e: unknown) => e instanceof ConfigError && /'taskWeights'/.test(e.message) && /'color'/.test(e.message));
  // the primary label set is called by the named dataset's name for it
  const fake = (name: string): DatasetSplits => ({ ...syntheticSplits(), name });
  assert.equal(primaryLabelSet(fake('clinc150')), 'intent');
  assert.equal(primaryLabelSet(fake('slurp')), 'intent');
  assert.equal(primaryLabelSet(fake('slurp'), { labelSet: 'scenario' }), 'scenario');
  assert.equal(primaryLabelSet(fake('my-file')), 'label');
});

test('multi-task LoRA run (joint, uncertainty): learns both tasks, evaluates every task, saves and reloads', async () => {
  const out = tmp('autoglm-mt-');
  const trainer = new AutoGLMTrainer({ config: { ...QUICK, epochs: 3, tasks: ['topic', 'mood'], taskWeighting: 'uncertainty', outputDir: out } });
  trainer.on('note', () => {});
  const h = await trainer.finetune({ dataset: syntheticSplits(), labelSet: 'topic' });
  const test = h.test as MultiTaskEvalResult;
  assert.deepEqual(Object.keys(test.tasks), ['topic', 'mood']);
  assert.ok(test.tasks.topic!.accuracy > 0.5, `topic accuracy ${test.tasks.topic!.accuracy} (chance 0.25)`);
  assert.ok(test.tasks.mood!.accuracy > 0.7, `mood accuracy ${test.tasks.mood!.accuracy} (chance 0.5)`);
  assert.equal(test.accuracy, test.tasks.topic!.accuracy);
  assert.ok(h.evals.length === 3 && h.evals.every((e) => e.tasks && Object.keys(e.tasks).length === 2));
  assert.ok(h.steps.every((s) => s.task_loss && 'topic' in s.task_loss && 'mood' in s.task_loss && s.task_weight));
  const wts = Object.values(h.taskWeights ?? {});
  assert.ok(wts.length === 2 && wts.some((w) => Math.abs(w - 1) > 1e-3), 'the log-variances were trained');
  // every head is trainable and saved with the adapter
  const saved = loadSafetensors(path.join(out, 'adapter/adapter_model.safetensors')).tensors;
  for (const task of ['topic', 'mood']) assert.ok([...saved.keys()].some((k) => k.includes(`heads.${task}.`)), `head ${task} saved`);
  const texts = ['I absolutely love the tennis match final', 'I really hate ordering pizza for dinner'];
  const before = (await trainer.predict(texts)) as MultiTaskPrediction[];
  assert.deepEqual(Object.keys(before[0]!.tasks), ['topic', 'mood']);
  const reloaded = await AutoGLMTrainer.load(out);
  const after = (await reloaded.predict(texts)) as MultiTaskPrediction[];
  assert.deepEqual(after.map((p) => [p.tasks.topic!.label, p.tasks.mood!.label]), before.map((p) => [p.tasks.topic!.label, p.tasks.mood!.label]));
  assert.ok(Math.abs(after[0]!.tasks.mood!.score - before[0]!.tasks.mood!.score) < 1e-5);
  const r = (await reloaded.evaluate(syntheticSplits().test)) as MultiTaskEvalResult;
  assert.ok(Math.abs(r.tasks.mood!.accuracy - test.tasks.mood!.accuracy) < 1e-9);
});

test('multi-task full fine-tune with round-robin sampling and windowed DWA; checkpoints resume', async () => {
  const out = tmp('autoglm-mt-full-');
  const cfg: TrainerConfigInput = { ...QUICK, method: 'full', maxSteps: 6, tasks: ['topic', 'mood'], taskWeighting: 'dwa', dwaWindow: 2, taskSampling: 'round-robin', saveEvery: 3, outputDir: out };
  const t = new AutoGLMTrainer({ config: cfg });
  t.on('note', () => {});
  const h = await t.finetune({ dataset: syntheticSplits(), labelSet: 'topic' });
  assert.equal(h.stepsDone, 6);
  // round-robin: steps alternate between the tasks
  assert.deepEqual(h.steps.map((s) => Object.keys(s.task_loss ?? {})), [['topic'], ['mood'], ['topic'], ['mood'], ['topic'], ['mood']]);
  assert.ok(Object.values(h.taskWeights ?? {}).some((w) => Math.abs(w - 1) > 1e-6), 'DWA moved the weights after two windows');
  assert.ok(existsSync(path.join(out, 'model.safetensors')));
  const keys = [...loadSafetensors(path.join(out, 'model.safetensors')).tensors.keys()];
  assert.ok(keys.includes('heads.topic.weight') && keys.includes('heads.mood.weight'));
  assert.ok(Object.keys((h.test as MultiTaskEvalResult).tasks).length === 2);
  // resume from the step-3 checkpoint continues to the same weights
  const resumed = new AutoGLMTrainer({ config: { ...cfg, outputDir: tmp('autoglm-mt-res-'), resume: path.join(out, 'checkpoint-0000003') } });
  resumed.on('note', () => {});
  await resumed.finetune({ dataset: syntheticSplits(), labelSet: 'topic' });
  const a = loadSafetensors(path.join(out, 'model.safetensors')).tensors;
  const b = loadSafetensors(path.join(resumed.config.outputDir as string, 'model.safetensors')).tensors;
  for (const k of ['heads.topic.weight', 'heads.mood.bias']) assert.deepEqual(Array.from(b.get(k)!.f32()), Array.from(a.get(k)!.f32()), `${k} after resume`);
});

test('autoglm finetune --tasks on a user file (each task a label field, some rows lacking one) and autoglm eval of the run from elsewhere: the run\'s own test figures', async () => {
  const dir = tmp('autoglm-mt-file-');
  // topic and mood as fields; every 4th row lacks its mood
  const rows = [...synthetic(160, 1), ...synthetic(40, 2)].map((e, i) => ({ text: e.text, topic: e.label, ...(i % 4 === 3 ? {} : { mood: e.extra!.mood }) }));
  const file = path.join(dir, 'labels.jsonl');
  writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  const out = path.join(dir, 'run');
  const logs: string[] = [];
  const log = console.log, cwd = process.cwd();
  console.log = (...a: unknown[]) => logs.push(a.join(' '));
  try {
    assert.equal(await main(['finetune', '--dataset', file, '--tasks', 'topic,mood', '--max-steps', '12', '--batch-size', '16', '--max-length', '24',
      '--output-dir', out, '--quiet', '--no-baseline', '--json']), 0);
    const run = JSON.parse(logs.at(-1)!) as { accuracy: number; tasks: Record<string, { accuracy: number; n: number }> };
    assert.deepEqual(Object.keys(run.tasks), ['topic', 'mood']);
    assert.ok(run.tasks.mood!.n < run.tasks.topic!.n, `rows lacking a mood are left out of its figures (${run.tasks.mood!.n} of ${run.tasks.topic!.n})`);
    const info = JSON.parse(readFileSync(path.join(out, 'autoglm.json'), 'utf8')) as { data: { dataset: string; labelFields: string[]; labelField: string } };
    assert.deepEqual(info.data, { dataset: file, labelFields: ['topic', 'mood'], labelField: 'topic' });
    process.chdir(tmpdir()); // the run's file is found by its absolute path
    assert.equal(await main(['eval', out, '--json']), 0);
    const ev = JSON.parse(logs.at(-1)!) as { accuracy: number; tasks: Record<string, { accuracy: number; n: number }> };
    assert.equal(ev.accuracy, run.accuracy);
    for (const k of ['topic', 'mood']) assert.deepEqual([ev.tasks[k]!.accuracy, ev.tasks[k]!.n], [run.tasks[k]!.accuracy, run.tasks[k]!.n], k);
  } finally {
    console.log = log;
    process.chdir(cwd);
  }
});

/** The CLI through tsx in a child process (`launch` runs its ranks as worker threads of it). */
function cliChild(args: string[]): Promise<{ code: number | null; out: string; stdout: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/cli/launch-entry.ts'), ...args],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, AUTOGLM_NUM_THREADS: '1' } });
    let out = '', stdout = '';
    p.stdout.on('data', (d) => { out += d; stdout += d; });
    p.stderr.on('data', (d) => (out += d));
    p.on('close', (code) => resolve({ code, out, stdout }));
  });
}

for (const [weighting, sampling] of [['uncertainty', 'joint'], ['dwa', 'round-robin']] as const) {
  test(`autoglm launch --nproc 2 finetune --tasks (${weighting}, ${sampling}): the weights, task weights and test figures of one process on the same global batches`, async () => {
    const dir = tmp(`autoglm-mt-dp-${weighting}-`);
    // every 4th row lacks its mood, so ranks' blocks hold different counts of each task's labels
    const rows = [...synthetic(160, 1), ...synthetic(40, 2), ...synthetic(40, 3)].map((e, i) => ({ text: e.text, topic: e.label, ...(i % 4 === 3 ? {} : { mood: e.extra!.mood }) }));
    const file = path.join(dir, 'labels.jsonl');
    writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const args = (out: string) => ['finetune', '--dataset', file, '--tasks', 'topic,mood', '--task-weighting', weighting, '--task-sampling', sampling,
      ...(weighting === 'dwa' ? ['--dwa-window', '2'] : []), '--method', 'full', '--optimizer', 'sgd', '--learning-rate', '0.05', '--head-learning-rate', '0.5', '--max-steps', '8',
      '--batch-size', '16', '--max-length', '24', '--head-dropout', '0', '--length-bucketing', 'false', '--mixed-precision', 'fp32', '--seed', '3',
      '--log-every', '1', '--output-dir', out, '--quiet', '--no-baseline', '--json'];
    const one = path.join(dir, 'one'), two = path.join(dir, 'two');
    const [a, b] = await Promise.all([cliChild(args(one)), cliChild(['launch', '--nproc', '2', '--backend', 'local', ...args(two)])]);
    assert.equal(a.code, 0, a.out.slice(-3000));
    assert.equal(b.code, 0, b.out.slice(-3000));
    const wa = loadSafetensors(path.join(one, 'model.safetensors')).tensors, wb = loadSafetensors(path.join(two, 'model.safetensors')).tensors;
    assert.deepEqual([...wb.keys()].sort(), [...wa.keys()].sort());
    let diff = 0;
    for (const [k, x] of wa) {
      const p = x.f32(), q = wb.get(k)!.f32();
      for (let i = 0; i < p.length; i++) diff = Math.max(diff, Math.abs(p[i]! - q[i]!));
    }
    assert.ok(diff < 1e-5, `2 ranks vs 1 process: max weight difference ${diff}`);
    type Summary = { accuracy: number; task_weights: Record<string, number>; tasks: Record<string, { accuracy: number; n: number }> };
    const last = (s: string) => JSON.parse(s.trim().split('\n').map((l) => l.replace(/^\[rank \d+\] /, '')).filter((l) => l.startsWith('{')).at(-1)!) as Summary;
    const sa = last(a.stdout), sb = last(b.stdout);
    for (const t of ['topic', 'mood']) {
      assert.ok(Math.abs(sa.task_weights[t]! - sb.task_weights[t]!) < 1e-5, `${t} weight ${sb.task_weights[t]} (2 ranks) vs ${sa.task_weights[t]}`);
      assert.equal(sb.tasks[t]!.n, sa.tasks[t]!.n);
      assert.equal(sb.tasks[t]!.accuracy, sa.tasks[t]!.accuracy, `${t}: test accuracy (each rank scored every 2nd row)`);
    }
    // every step's task weights (DWA's come from the global batches' task losses, summed over the ranks)
    const stepWeights = (out: string) => readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind: string; task_weight?: Record<string, number> })
      .filter((l) => l.kind === 'step').map((l) => [l.task_weight!.topic!, l.task_weight!.mood!]);
    const [pa, pb] = [stepWeights(one), stepWeights(two)];
    assert.equal(pb.length, 8);
    pa.forEach((w, i) => w.forEach((x, t) => assert.ok(Math.abs(x - pb[i]![t]!) < 1e-5, `step ${i + 1}: task weights ${pb[i]} (2 ranks) vs ${w}`)));
    assert.ok(pa.flat().some((w) => Math.abs(w - 1) > 1e-3), `the task weights moved (${weighting}): ${pa.map((w) => w.join('/')).join(' ')}`);
    // the epoch's train loss is the global batches' (each rank's losses are its shares of them)
    const epochLoss = (out: string) => (readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind: string; train_loss: number })
      .find((l) => l.kind === 'epoch') as { train_loss: number }).train_loss;
    assert.ok(Math.abs(epochLoss(one) - epochLoss(two)) < 1e-5, `epoch train loss ${epochLoss(two)} (2 ranks) vs ${epochLoss(one)}`);
  });
}
