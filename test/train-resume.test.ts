/**
 * Exact resume for every task, as a user meets it: SIGKILL and `resume: true`. For each task (classification
 * with loss-weighted sampling, multi-task with round-robin task sampling and DWA, causal-LM, SFT with packing on an NF4
 * base, DPO, KTO), with plateau +
 * early stopping (best weights restored) and label smoothing / dropout where the task has them:
 *   straight: 8 steps;
 *   run 1: killed right after the step-2 checkpoint, which precedes the first evaluation (step 3), so early
 *     stopping's and plateau's "best" is still +Infinity in it;
 *   run 2: resumes from step 2, writes step 4, and is killed in the middle of writing the step-6 checkpoint;
 *   run 3: resumes from step 4 (the half-written one is ignored) to the end.
 * The final weights must equal the straight run's bit for bit, and the histories must be identical (times aside).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSafetensors } from '../src/models/safetensors.js';
import { listCheckpoints, loadCheckpoint } from '../src/train/checkpoint.js';
import { parseState, stringifyState } from '../src/train/serialize.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ENTRY = path.join(ROOT, 'test/helpers/resume-run.ts');

interface RunArgs { task: string; out: string; resume: boolean; killAfterCheckpoint?: number; killWhileWriting?: number }

/** Runs one child; resolves when it exits 0, or when it was SIGKILLed as the args ask. */
function child(a: RunArgs): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', ENTRY, JSON.stringify(a)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.stdout.on('data', (d: Buffer) => {
      if (a.killAfterCheckpoint !== undefined && d.toString().includes('CHECKPOINT')) p.kill('SIGKILL');
    });
    p.on('exit', (code, sig) => {
      const killed = a.killAfterCheckpoint !== undefined || a.killWhileWriting !== undefined;
      if (killed && sig === 'SIGKILL') resolve();
      else if (!killed && code === 0) resolve();
      else reject(new Error(`child ${JSON.stringify(a)} exited ${code ?? sig}: ${err.slice(-3000)}`));
    });
  });
}

/** The trained tensors of a run's outputs (adapter or model). */
function finalWeights(out: string): Map<string, Buffer> {
  const f = existsSync(path.join(out, 'adapter')) ? path.join(out, 'adapter/adapter_model.safetensors') : path.join(out, 'model.safetensors');
  return new Map([...loadSafetensors(f).tensors].map(([k, t]) => [k, Buffer.from(t.f32().buffer)]));
}

/** The history without what differs between runs by nature: times, memory, output paths. */
function comparable(out: string): unknown {
  const h = parseState(readFileSync(path.join(out, 'history.json'), 'utf8')) as Record<string, unknown>;
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (v && typeof v === 'object' && !ArrayBuffer.isView(v)) return Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'time_s').map(([k, x]) => [k, strip(x)]));
    return v;
  };
  const { trainTimeS: _t, peakRssMb: _p, outputs: _o, ...rest } = h;
  return JSON.parse(stringifyState(strip(rest)));
}

test('training state serialises without loss: +-Infinity, NaN, -0, typed arrays; early stopping and plateau continue alike', async () => {
  const { EarlyStopping, ReduceLROnPlateau } = await import('../src/optim/schedule.js');
  const state = { best: Infinity, worst: -Infinity, missing: NaN, zero: -0, plain: [1, 'a', null, { x: 2.5 }], f32: Float32Array.of(1.5, NaN, -Infinity), i32: Int32Array.of(-3, 7) };
  const back = parseState(stringifyState(state)) as typeof state;
  assert.equal(back.best, Infinity);
  assert.equal(back.worst, -Infinity);
  assert.ok(Number.isNaN(back.missing));
  assert.ok(Object.is(back.zero, -0));
  assert.deepEqual(back.plain, state.plain);
  assert.ok(back.f32 instanceof Float32Array && Buffer.from(back.f32.buffer).equals(Buffer.from(state.f32.buffer)));
  assert.deepEqual(Array.from(back.i32), [-3, 7]);
  // a checkpoint taken before the first evaluation: the restored controllers behave as the originals
  const es = new EarlyStopping({ mode: 'min', patience: 2 }), pl = new ReduceLROnPlateau({ mode: 'min', patience: 0, factor: 0.5 });
  const es2 = new EarlyStopping({ mode: 'min', patience: 2 }), pl2 = new ReduceLROnPlateau({ mode: 'min', patience: 0, factor: 0.5 });
  es2.load((parseState(stringifyState(es.state())) as Record<string, number>));
  pl2.load((parseState(stringifyState(pl.state())) as Record<string, number>));
  for (const v of [1.0, 0.9, 0.95, 0.97, 0.8]) {
    assert.deepEqual(es2.check(v, 0), es.check(v, 0));
    assert.equal(pl2.step(v, 1e-3), pl.step(v, 1e-3));
    assert.equal(pl2.scale, pl.scale);
  }
});

for (const task of ['classification', 'multi-task', 'causal-lm', 'sft', 'dpo', 'kto']) {
  test(`${task}: SIGKILL after a checkpoint that precedes the first evaluation, SIGKILL mid-checkpoint, resume: bit-identical to the straight run`, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), `autoglm-resume-${task}-`));
    const straight = path.join(dir, 'straight'), killed = path.join(dir, 'killed');
    await child({ task, out: straight, resume: false });
    await child({ task, out: killed, resume: false, killAfterCheckpoint: 2 });
    assert.deepEqual(listCheckpoints(killed).map((d) => path.basename(d)), ['checkpoint-0000002']);
    const first = loadCheckpoint(listCheckpoints(killed)[0]!).state as { stopper: { best: number }; plateau: { best: number }; history: { evals: unknown[] } };
    assert.equal(first.history.evals.length, 0, 'the first checkpoint precedes the first evaluation');
    assert.equal(first.stopper.best, Infinity, "early stopping's best survives the checkpoint as +Infinity");
    assert.equal(first.plateau.best, Infinity, "plateau's best survives the checkpoint as +Infinity");
    await child({ task, out: killed, resume: true, killWhileWriting: 6 });
    assert.ok(readdirSync(killed).some((f) => f.startsWith('checkpoint-0000006.tmp-')), 'a half-written step-6 checkpoint was left behind');
    assert.deepEqual(listCheckpoints(killed).map((d) => path.basename(d)), ['checkpoint-0000002', 'checkpoint-0000004']);
    await child({ task, out: killed, resume: true });
    const a = finalWeights(straight), b = finalWeights(killed);
    assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
    for (const [k, x] of a) assert.ok(x.equals(b.get(k)!), `${task}: ${k} differs after resume`);
    const ha = comparable(straight) as { evals: unknown[]; steps: unknown[] };
    assert.ok(ha.evals.length >= 2 && ha.steps.length === 8);
    assert.deepEqual(comparable(killed), ha, `${task}: history differs after resume`);
  });
}
