/**
 * A graceful stop (FinetuneArgs.signal; SIGINT / SIGTERM under `autoglm finetune` and `autoglm launch`): the step under
 * way finishes, a checkpoint of it is written whatever saveEvery says, the run ends without test evaluation and
 * outputs, and `resume` continues it to the same weights as a run that was never stopped (bit for bit).
 *   - the API: an AbortSignal aborted during step 3 stops the run after step 4;
 *   - `autoglm finetune`: SIGINT once training runs -> exit 130, one line naming the checkpoint; SIGTERM -> 143;
 *   - `autoglm launch --nproc 2` (worker threads): SIGINT to the launcher -> every rank stops after the same step,
 *     exit 130; with --backend gloo (processes), Ctrl-C as a terminal sends it, to the whole process group (each
 *     rank gets it twice: from the terminal and from the launcher), needs the gloo addon (a failure under CI=true).
 * And the other way a finished run could lose its work: a test evaluation that throws. The trained model is written
 * first, then the error goes up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AutoGLMTrainer, registerTask, type TrainerConfigInput } from '../src/train/index.js';
import { classificationTask } from '../src/train/classification.js';
import { listCheckpoints } from '../src/train/checkpoint.js';
import { loadSafetensors } from '../src/models/safetensors.js';
import { Rng } from '../src/backend/rng.js';
import type { DatasetSplits, Example } from '../src/data/index.js';
import { requireGloo } from './helpers/ci.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'src/cli/launch-entry.ts');
const tmp = (p: string) => mkdtempSync(path.join(tmpdir(), `autoglm-interrupt-${p}`));

const WORDS = { weather: ['rain tomorrow', 'snow storm', 'sunny skies'], music: ['new album', 'concert tickets', 'favourite song'], food: ['pasta recipe', 'pizza dinner', 'chocolate cake'] };
function examples(n: number, seed: number): Example[] {
  const rng = new Rng(seed), labels = Object.keys(WORDS) as (keyof typeof WORDS)[];
  return Array.from({ length: n }, () => {
    const label = labels[rng.int(labels.length)]!;
    return { text: `tell me about the ${WORDS[label][rng.int(3)]}`, label };
  });
}
const splits: DatasetSplits = { name: 'interrupt-synthetic', train: examples(64, 1), validation: examples(12, 2), test: examples(12, 3), labels: Object.keys(WORDS).sort(), extraLabels: {}, skipped: [] };
const CONFIG: TrainerConfigInput = { maxSteps: 8, batchSize: 8, maxLength: 12, evalBatchSize: 16, evalEvery: 3, logEvery: 1, headDropout: 0, loraDropout: 0.1, seed: 5 };

const adapterOf = (out: string) => new Map([...loadSafetensors(path.join(out, 'adapter/adapter_model.safetensors')).tensors].map(([k, t]) => [k, Buffer.from(t.f32().buffer)]));

test('the API: a run whose signal is aborted stops after the step under way with a checkpoint, and resumes to the uninterrupted weights', async () => {
  const straight = tmp('straight-'), split = tmp('split-');
  const quiet = (t: AutoGLMTrainer) => { t.on('note', () => {}); return t; };
  await quiet(new AutoGLMTrainer({ config: { ...CONFIG, outputDir: straight } })).finetune({ dataset: splits });
  const ctl = new AbortController();
  const h = await quiet(new AutoGLMTrainer({ config: { ...CONFIG, outputDir: split } })).finetune({
    dataset: splits, signal: ctl.signal, callbacks: [{ onBatchEnd: (step) => { if (step === 4) ctl.abort(); } }],
  });
  // aborted after step 4's update (no validation there: evalEvery 3): step 5, already under way, finishes
  assert.deepEqual(h.interrupted, { step: 5, checkpoint: path.join(split, 'checkpoint-0000005') });
  assert.equal(h.stepsDone, 5);
  assert.equal(h.test, undefined, 'no test evaluation');
  assert.deepEqual(listCheckpoints(split).map((d) => path.basename(d)), ['checkpoint-0000005'], 'a checkpoint although saveEvery is 0');
  assert.ok(!existsSync(path.join(split, 'adapter')), 'no final outputs');
  assert.equal(h.outputs.checkpoint, path.join(split, 'checkpoint-0000005'));
  const lines = readFileSync(path.join(split, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind: string; step: number });
  assert.deepEqual(lines.filter((l) => l.kind === 'interrupted').map((l) => l.step), [5]);
  // resumed: the same weights as the straight run, bit for bit
  const r = await quiet(new AutoGLMTrainer({ config: { ...CONFIG, outputDir: split, resume: true } })).finetune({ dataset: splits });
  assert.equal(r.interrupted, undefined);
  assert.equal(r.stepsDone, 8);
  const a = adapterOf(straight), b = adapterOf(split);
  assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
  for (const [k, x] of a) assert.ok(b.get(k)!.equals(x), `${k} differs after the interrupted run's resume`);
  // a stop asked during the last step is no interruption
  const last = new AbortController();
  const e = await quiet(new AutoGLMTrainer({ config: { ...CONFIG, outputDir: tmp('last-') } })).finetune({
    dataset: splits, signal: last.signal, callbacks: [{ onBatchEnd: (step) => { if (step === 7) last.abort(); } }],
  });
  assert.equal(e.interrupted, undefined);
  assert.ok(e.test && e.stepsDone === 8);
  // stopped before its first step (Ctrl-C while the model loaded): no step, no checkpoint
  const early = new AbortController();
  early.abort();
  const none = tmp('none-');
  const n = await quiet(new AutoGLMTrainer({ config: { ...CONFIG, outputDir: none } })).finetune({ dataset: splits, signal: early.signal });
  assert.deepEqual([n.interrupted, n.stepsDone, listCheckpoints(none)], [{ step: 0, checkpoint: '' }, 0, []]);
});

/** A history without its timings and outputs (what a resumed run must reproduce). */
function comparable(h: object): unknown {
  return JSON.parse(JSON.stringify(h, (k, v) => (k === 'time_s' || k === 'trainTimeS' || k === 'peakRssMb' || k === 'outputs' ? undefined : v)));
}

for (const [where, cfg, at] of [['after a step (evalEvery 3)', { evalEvery: 3 }, 3], ['ending an epoch (evalEvery 0)', { evalEvery: 0, maxSteps: 12 }, 8]] as const) {
  test(`the API: a stop asked before the validation ${where} gives it up; the checkpoint holds it pending, resume runs it first: the straight run's weights and history`, async () => {
    const straight = tmp('vstraight-'), split = tmp('vsplit-');
    const config = { ...CONFIG, ...cfg };
    const quiet = (t: AutoGLMTrainer) => { t.on('note', () => {}); return t; };
    const s = await quiet(new AutoGLMTrainer({ config: { ...config, outputDir: straight } })).finetune({ dataset: splits });
    const ctl = new AbortController();
    const notes: string[] = [];
    const t = new AutoGLMTrainer({ config: { ...config, outputDir: split } });
    t.on('note', (m: string) => notes.push(m));
    // aborted after step `at`'s update, before its validation (8 steps an epoch: 64 examples, batches of 8)
    const h = await t.finetune({ dataset: splits, signal: ctl.signal, callbacks: [{ onBatchEnd: (step) => { if (step === at) ctl.abort(); } }] });
    assert.deepEqual(h.interrupted, { step: at, checkpoint: path.join(split, `checkpoint-000000${at}`), validationPending: true });
    assert.ok(notes.some((n) => n.startsWith(`interrupted during the validation after step ${at} of`)), notes.join('\n'));
    assert.equal(h.evals.length, s.evals.filter((e) => e.step < at).length, 'the validation under way is not in the history');
    const r = new AutoGLMTrainer({ config: { ...config, outputDir: split, resume: true } });
    const rnotes: string[] = [];
    r.on('note', (m: string) => rnotes.push(m));
    const done = await r.finetune({ dataset: splits });
    assert.ok(rnotes.some((n) => n.startsWith('resume: the validation')), rnotes.join('\n'));
    const a = adapterOf(straight), b = adapterOf(split);
    for (const [k, x] of a) assert.ok(b.get(k)!.equals(x), `${k} differs after the resume`);
    const { interrupted: _, ...rest } = comparable(done) as Record<string, unknown>;
    assert.deepEqual(rest, comparable(s));
  });
}

test('the API: a signal that arrives while a long validation runs (a timer: it fires only when the event loop gets a turn) gives the validation up; resume completes it', async () => {
  // 1,920 validation texts in batches of 8: 240 batches, 1.6 s on a 2-vCPU Zen 3, long enough on a fast CPU for the
  // pace's turns of the event loop (every 100 ms)
  const big: DatasetSplits = { ...splits, validation: examples(1920, 9) };
  const config = { ...CONFIG, evalBatchSize: 8 };
  const straight = tmp('mstraight-'), split = tmp('msplit-');
  const quiet = (t: AutoGLMTrainer) => { t.on('note', () => {}); return t; };
  const s = await quiet(new AutoGLMTrainer({ config: { ...config, outputDir: straight } })).finetune({ dataset: big });
  const ctl = new AbortController();
  let started = 0;
  const h = await quiet(new AutoGLMTrainer({ config: { ...config, outputDir: split } })).finetune({
    dataset: big, signal: ctl.signal, callbacks: [{ onBatchEnd: (step) => { if (step === 3) { started = performance.now(); setTimeout(() => ctl.abort(), 0); } } }],
  });
  const waited = performance.now() - started;
  assert.deepEqual(h.interrupted, { step: 3, checkpoint: path.join(split, 'checkpoint-0000003'), validationPending: true });
  assert.ok(waited < 5_000, `the stop took ${waited.toFixed(0)} ms`);
  const done = await quiet(new AutoGLMTrainer({ config: { ...config, outputDir: split, resume: true } })).finetune({ dataset: big });
  const a = adapterOf(straight), b = adapterOf(split);
  for (const [k, x] of a) assert.ok(b.get(k)!.equals(x), `${k} differs after the resume`);
  assert.deepEqual(done.evals.map((e) => [e.step, e.loss]), s.evals.map((e) => [e.step, e.loss]));
});

/** The CLI (`autoglm <args>` through tsx); sends `signal` once `trigger` appears in its output (to the group with `group`). */
function cli(args: string[], o: { signal?: NodeJS.Signals; trigger?: string; group?: boolean } = {}): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
      cwd: ROOT, env: { ...process.env, AUTOGLM_NUM_THREADS: '1', OMP_NUM_THREADS: '1' }, stdio: ['ignore', 'pipe', 'pipe'], detached: o.group ?? false,
    });
    let out = '', sent = false;
    const watch = (d: Buffer): void => {
      out += d;
      if (o.signal && !sent && out.includes(o.trigger ?? 'autoglm: training')) {
        sent = true;
        if (o.group) process.kill(-child.pid!, o.signal); // as a terminal's Ctrl-C: every process of the group
        else child.kill(o.signal);
      }
    };
    child.stdout!.on('data', watch);
    child.stderr!.on('data', watch);
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`timed out: ${out.slice(-2000)}`)); }, 240_000);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, out }); });
  });
}

const FINETUNE = ['finetune', '--max-train', '96', '--max-eval', '16', '--max-steps', '14', '--batch-size', '8', '--max-length', '16',
  '--head-dropout', '0', '--length-bucketing', 'false', '--seed', '7', '--no-baseline', '--log-every', '1'];

/** The step a run was interrupted after, from the line the CLI prints (and the checkpoint's folder it names). */
function interruptedAt(out: string, dir: string): number {
  // (a data-parallel rank 0 that stopped because rank 1 got the stop first names no signal)
  const m = /interrupted (?:by (SIG\w+)|\(another rank was stopped\)) (?:during the validation )?after step (\d+): checkpoint (\S+);/.exec(out);
  assert.ok(m, `no 'interrupted by' line in: ${out.slice(-3000)}`);
  const step = Number(m[2]);
  assert.equal(m[3], path.join(dir, `checkpoint-${String(step).padStart(7, '0')}`));
  assert.ok(existsSync(m[3]!) && step >= 1 && step < 14, `checkpoint of step ${step}`);
  return step;
}

test('autoglm finetune: SIGINT once training runs -> a checkpoint, exit 130; resuming it gives the uninterrupted weights; SIGTERM -> 143', async () => {
  const straight = tmp('cli-straight-'), split = tmp('cli-split-'), term = tmp('cli-term-');
  const s = await cli([...FINETUNE, '--output-dir', straight]);
  assert.equal(s.code, 0, s.out.slice(-3000));
  const i = await cli([...FINETUNE, '--output-dir', split], { signal: 'SIGINT' });
  assert.equal(i.code, 130, i.out.slice(-3000));
  assert.match(i.out, /SIGINT: stopping after the step under way/);
  interruptedAt(i.out, split);
  assert.ok(!existsSync(path.join(split, 'adapter')));
  const r = await cli([...FINETUNE, '--output-dir', split, '--resume', 'true']);
  assert.equal(r.code, 0, r.out.slice(-3000));
  const a = adapterOf(straight), b = adapterOf(split);
  for (const [k, x] of a) assert.ok(b.get(k)!.equals(x), `${k} differs after resume`);
  const t = await cli([...FINETUNE, '--output-dir', term], { signal: 'SIGTERM' });
  assert.equal(t.code, 143, t.out.slice(-3000));
  interruptedAt(t.out, term);
});

for (const backend of ['local', 'gloo'] as const) {
  const skip = backend === 'gloo' ? requireGloo() : false;
  test(`autoglm launch --nproc 2 --backend ${backend}: ${backend === 'gloo' ? "Ctrl-C to the process group" : 'SIGINT to the launcher'} -> every rank stops after the same step, rank 0's checkpoint, exit 130; resume completes`, { skip }, async () => {
    const dir = tmp(`launch-${backend}-`);
    const launch = ['launch', '--nproc', '2', '--backend', backend];
    const i = await cli([...launch, ...FINETUNE, '--output-dir', dir], { signal: 'SIGINT', trigger: '[rank 1] autoglm: training', group: backend === 'gloo' });
    assert.equal(i.code, 130, i.out.slice(-3000));
    assert.match(i.out, /autoglm launch: SIGINT: every rank stops after the step under way/);
    const step = interruptedAt(i.out, dir);
    // both ranks stopped after that step (rank 1 says so in its note, rank 0 also prints the line)
    for (const rank of [0, 1]) assert.match(i.out, new RegExp(`\\[rank ${rank}\\] autoglm: interrupted after step ${step} of 14`));
    assert.doesNotMatch(i.out, /again: exiting at once|RankFailedError/, 'the double delivery of one Ctrl-C is one request');
    const r = await cli([...launch, ...FINETUNE, '--output-dir', dir, '--resume', 'true']);
    assert.equal(r.code, 0, r.out.slice(-3000));
    assert.match(r.out, new RegExp(`resumed from ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/checkpoint-${String(step).padStart(7, '0')} at step ${step}`));
    assert.ok(existsSync(path.join(dir, 'adapter/adapter_model.safetensors')));
  });
}

test('a test evaluation that throws: the trained model is written to the output folder, then the error goes up', async () => {
  registerTask({
    ...classificationTask, name: 'classification-failing-test',
    async create(ctx, args) {
      const task = await classificationTask.create(ctx, args);
      const evaluate = task.evaluate.bind(task);
      task.evaluate = async (split) => {
        if (split === 'test') throw new Error('out of memory in the test evaluation (simulated)');
        return evaluate(split);
      };
      return task;
    },
  });
  const out = tmp('failing-test-');
  const notes: string[] = [];
  const t = new AutoGLMTrainer({ config: { ...CONFIG, maxSteps: 3, task: 'classification-failing-test', outputDir: out } });
  t.on('note', (m: string) => notes.push(m));
  await assert.rejects(t.finetune({ dataset: splits }), /out of memory in the test evaluation \(simulated\)/);
  assert.ok(existsSync(path.join(out, 'adapter/adapter_model.safetensors')), 'the trained adapter is on disk');
  assert.ok(notes.some((n) => n.includes('the test evaluation failed') && n.includes(path.join(out, 'adapter'))), notes.join('\n'));
});

test('the API: a signal after the last step lets the run finish (test evaluation and outputs)', async () => {
  const out = tmp('after-last-');
  const ctl = new AbortController();
  const t = new AutoGLMTrainer({ config: { ...CONFIG, maxSteps: 3, outputDir: out } });
  t.on('note', () => {});
  const h = await t.finetune({ dataset: splits, signal: ctl.signal, callbacks: [{ onBatchEnd: (step) => { if (step === 3) ctl.abort(); } }] });
  assert.equal(h.interrupted, undefined);
  assert.equal(h.stepsDone, 3);
  assert.ok(h.test, 'the test evaluation ran');
  assert.ok(existsSync(path.join(out, 'adapter/adapter_model.safetensors')));
});
