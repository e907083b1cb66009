/** The trainer as a user drives it: config errors, a short fine-tune, outputs, reload, and exact resume after SIGKILL. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AutoGLMTrainer, parseTrainerConfig, type Prediction } from '../src/train/index.js';
import { ConfigError } from '../src/errors.js';
import { loadSafetensors } from '../src/models/safetensors.js';
import { listCheckpoints } from '../src/train/checkpoint.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tmp = (p: string) => mkdtempSync(path.join(tmpdir(), p));

test('config errors name the key, the value and what is allowed', async () => {
  assert.throws(() => parseTrainerConfig({ learningRat: 1e-3 }), (e: unknown) => e instanceof ConfigError && /learningRat/.test(e.message) && /learningRate/.test(e.message));
  assert.throws(() => parseTrainerConfig({ method: 'qlora' }), (e: unknown) => e instanceof ConfigError && /method/.test(e.message) && /qlora/.test(e.message) && /lora/.test(e.message));
  assert.throws(() => parseTrainerConfig({ batchSize: 0 }), (e: unknown) => e instanceof ConfigError && /batchSize/.test(e.message));
  assert.throws(() => new AutoGLMTrainer({ config: { method: 'full', baseQuantization: 'int8' } }), ConfigError);
  for (const args of [undefined, {}, { dataset: 3 }, { dataset: null }]) {
    await assert.rejects(new AutoGLMTrainer({}).finetune(args as never), (e: unknown) => e instanceof ConfigError && /needs \{ dataset \}/.test(e.message));
  }
  assert.throws(() => new AutoGLMTrainer({ config: { baseQuantization: 'int8', baseDoubleQuant: false } }), (e: unknown) => e instanceof ConfigError && /baseDoubleQuant/.test(e.message) && /'nf4'/.test(e.message));
  assert.throws(() => parseTrainerConfig({ baseQuantization: 'nf3' }), (e: unknown) => e instanceof ConfigError && /baseQuantization/.test(e.message) && /nf4/.test(e.message));
  const c = parseTrainerConfig({});
  assert.equal(c.method, 'lora');
  assert.equal(c.maxGradNorm, 1.0);
});

const QUICK = { epochs: 1, batchSize: 16, maxLength: 32, logEvery: 1, evalBatchSize: 64 } as const;

test('an outputDir that cannot be a folder is a ConfigError before any step (not a lost run at its end)', async () => {
  const file = path.join(tmp('autoglm-outfile-'), 'not-a-folder');
  writeFileSync(file, 'x');
  const steps: number[] = [];
  const t = new AutoGLMTrainer({ config: { ...QUICK, maxSteps: 2, outputDir: file } });
  t.on('note', () => {});
  t.on('step', (l: { step: number }) => steps.push(l.step));
  await assert.rejects(t.finetune({ dataset: 'custom_intent_v2', maxTrain: 32, maxEval: 16 }),
    (e: unknown) => e instanceof ConfigError && e.message.includes(`outputDir '${file}'`) && /EEXIST/.test(e.message));
  assert.deepEqual(steps, []);
});

test('a short LoRA fine-tune: history, outputs in PEFT layout, reload for predict', async () => {
  const out = tmp('autoglm-ft-');
  const trainer = new AutoGLMTrainer({ config: { ...QUICK, maxSteps: 6, outputDir: out } });
  const notes: string[] = [];
  trainer.on('note', (m: string) => notes.push(m));
  const h = await trainer.finetune({ dataset: 'custom_intent_v2', maxTrain: 200, maxEval: 100 });
  assert.equal(h.steps.length, 6);
  assert.ok(h.steps.every((s) => Number.isFinite(s.loss) && s.lr >= 0));
  assert.ok(h.test && h.test.n === 100 && h.test.accuracy >= 0 && h.test.accuracy <= 1);
  assert.ok(h.trainableParams > 0 && h.trainableParams < h.totalParams / 10);
  for (const f of ['adapter/adapter_config.json', 'adapter/adapter_model.safetensors', 'metrics.jsonl', 'autoglm.json']) assert.ok(existsSync(path.join(out, f)), f);
  const lines = readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(lines.some((l) => l.kind === 'step') && lines.some((l) => l.kind === 'test'));
  const cfg = JSON.parse(readFileSync(path.join(out, 'adapter/adapter_config.json'), 'utf8'));
  assert.equal(cfg.peft_type, 'LORA');
  assert.ok(notes.some((n) => n.startsWith('precision')));
  const before = (await trainer.predict(['wake me up at 7 tomorrow', 'what is the weather in paris'])) as Prediction[];
  const reloaded = await AutoGLMTrainer.load(out);
  const after = (await reloaded.predict(['wake me up at 7 tomorrow', 'what is the weather in paris'])) as Prediction[];
  assert.deepEqual(after.map((p) => p.label), before.map((p) => p.label));
  assert.ok(Math.abs(after[0].score - before[0].score) < 1e-5);
  // the CLI's merge: a plain model with the adapter folded in predicts the same
  const merged = tmp('autoglm-merged-');
  const { main } = await import('../src/cli/main.js');
  assert.equal(await main(['merge', out, '--out', merged]), 0);
  const plain = await AutoGLMTrainer.load(merged);
  assert.equal(plain.lora, null);
  const m = (await plain.predict(['wake me up at 7 tomorrow', 'what is the weather in paris'])) as Prediction[];
  assert.deepEqual(m.map((p) => p.label), before.map((p) => p.label));
  assert.ok(Math.abs(m[0].score - before[0].score) < 1e-5);
});

test('a run on a quantised base (int8, nf4) merges into the full-precision base: a plain f32 model that loads and predicts as the adapter on that base does', async () => {
  const { main } = await import('../src/cli/main.js');
  const texts = ['wake me up at 7 tomorrow', 'what is the weather in paris', 'add milk to the list'];
  for (const base of ['int8', 'nf4'] as const) {
    const out = tmp(`autoglm-q-${base}-`);
    const trainer = new AutoGLMTrainer({ config: { ...QUICK, maxSteps: 6, baseQuantization: base, outputDir: out } });
    trainer.on('note', () => {});
    await trainer.finetune({ dataset: 'custom_intent_v2', maxTrain: 200, maxEval: 100 });
    // the adapter on the unquantised base, which is what the merged folder must reproduce
    const full = (await (await AutoGLMTrainer.load(out, { unquantizedBase: true })).predict(texts)) as Prediction[];
    const merged = tmp(`autoglm-q-${base}-merged-`);
    const log = console.log;
    console.log = () => {};
    try {
      assert.equal(await main(['merge', out, '--out', merged]), 0);
    } finally {
      console.log = log;
    }
    const plain = await AutoGLMTrainer.load(merged);
    assert.equal(plain.lora, null);
    for (const [, p] of plain.classifier!.namedParameters()) assert.equal(p.dtype, 'f32', `${base}: every merged weight is f32`);
    const m = (await plain.predict(texts)) as Prediction[];
    assert.deepEqual(m.map((p) => p.label), full.map((p) => p.label));
    m.forEach((p, i) => assert.ok(Math.abs(p.score - full[i]!.score) < 1e-5, `${base}: ${p.score} vs ${full[i]!.score}`));
  }
});

test('autoglm eval of a run trained on a file, from another folder: the same test split and accuracy (the file by its absolute path)', async () => {
  const { main } = await import('../src/cli/main.js');
  const out = tmp('autoglm-file-run-');
  const file = path.relative(process.cwd(), path.join(ROOT, 'datasets/custom_intent_v2/validation.jsonl')); // 750 rows, a relative path
  const logs: string[] = [];
  const log = console.log, cwd = process.cwd();
  console.log = (...a: unknown[]) => logs.push(a.join(' '));
  try {
    assert.equal(await main(['finetune', '--dataset', file, '--max-steps', '4', '--batch-size', '16', '--max-length', '24', '--output-dir', out, '--quiet', '--no-baseline', '--json']), 0);
    const run = JSON.parse(logs.at(-1)!) as { accuracy: number };
    process.chdir(tmpdir());
    assert.equal(await main(['eval', out, '--json']), 0);
    const ev = JSON.parse(logs.at(-1)!) as { accuracy: number; n: number };
    assert.equal(ev.n, 75);
    assert.equal(ev.accuracy, run.accuracy);
  } finally {
    console.log = log;
    process.chdir(cwd);
  }
});

test('gradientCompression with one process is a validated no-op that says so once', async () => {
  const trainer = new AutoGLMTrainer({ config: { ...QUICK, maxSteps: 2, gradientCompression: true, outputDir: tmp('autoglm-gc-'), method: 'head' } });
  const notes: string[] = [];
  trainer.on('note', (m: string) => notes.push(m));
  await trainer.finetune({ dataset: 'custom_intent_v2', maxTrain: 64, maxEval: 32 });
  assert.equal(notes.filter((n) => /gradientCompression/.test(n)).length, 1);
  assert.throws(() => new AutoGLMTrainer({ config: { gradientCompression: { method: 'zip' } as never } }), ConfigError);
});

/** Runs a fine-tune in a child process; resolves when it exits (or when `killAfterCheckpoint` kills it). */
function child(script: string, killAfterCheckpoint: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.stdout.on('data', (d: Buffer) => {
      if (killAfterCheckpoint && d.toString().includes('CHECKPOINT')) p.kill('SIGKILL');
    });
    p.on('exit', (code, sig) => {
      if (killAfterCheckpoint && sig === 'SIGKILL') resolve();
      else if (code === 0) resolve();
      else reject(new Error(`child exited ${code ?? sig}: ${err.slice(-2000)}`));
    });
  });
}

test('resume is exact: 2N steps straight == N steps, SIGKILL, resume N (bit-identical weights)', async () => {
  const dir = tmp('autoglm-resume-');
  const N = 4;
  const script = (out: string, resume: boolean, kill: boolean) => {
    const f = path.join(dir, `run-${path.basename(out)}-${resume ? 'resume' : 'fresh'}.mts`);
    writeFileSync(f, `
import { AutoGLMTrainer } from ${JSON.stringify(path.join(ROOT, 'src/train/index.js'))};
const t = new AutoGLMTrainer({ config: { epochs: 3, batchSize: 8, maxLength: 32, maxSteps: ${2 * N}, saveEvery: ${N}, keepLast: 3,
  outputDir: ${JSON.stringify(out)}, resume: ${resume}, loraDropout: 0.1, headDropout: 0.1, evalEvery: 3, logEvery: 1 } });
${kill ? `t.on('checkpoint', (_dir, step) => { if (step === ${N}) { process.stdout.write('CHECKPOINT\\n'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000); } });` : ''}
await t.finetune({ dataset: 'custom_intent_v2', maxTrain: 40, maxEval: 16 });
`);
    return f;
  };
  const straight = path.join(dir, 'straight'), killed = path.join(dir, 'killed');
  await child(script(straight, false, false), false);
  await child(script(killed, false, true), true);
  assert.ok(listCheckpoints(killed).length >= 1, 'a checkpoint survived the kill');
  await child(script(killed, true, false), false);
  const a = loadSafetensors(path.join(straight, 'adapter/adapter_model.safetensors')).tensors;
  const b = loadSafetensors(path.join(killed, 'adapter/adapter_model.safetensors')).tensors;
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [k, t] of a) assert.deepEqual(Buffer.from((b.get(k) as typeof t).f32().buffer), Buffer.from(t.f32().buffer), `${k} differs after resume`);
});
