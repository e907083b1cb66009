/**
 * Every config key means something for every task, or is refused: a table over keys x tasks. For each key the
 * table gives a non-default value (and the other keys it needs, e.g. momentum needs optimizer 'sgd'); for each
 * task the key is either refused when the trainer is built (a ConfigError naming the key and the task) or a
 * tiny run with it differs from the same run without it: in the trained weights, the history, the files written
 * or what the run says (notes). A key added to the schema without a row here fails the coverage test.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AutoGLMTrainer, trainerConfigSchema, type TrainerConfigInput } from '../src/train/index.js';
import { ConfigError } from '../src/errors.js';
import { Rng } from '../src/backend/rng.js';
import type { DatasetSplits, Example } from '../src/data/index.js';
import { TinyGPT } from '../src/models/tiny-gpt.js';
import { manualSeed } from '../src/nn/init.js';
import type { TextEncoder } from '../src/models/classifier.js';
import { makeTinyChatModel } from '../src/sft/tiny-chat-model.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const GPT2 = path.join(ROOT, 'test/fixtures/golden/gpt2');
const TASKS = ['classification', 'multi-task', 'causal-lm', 'sft', 'dpo'] as const;
type Task = (typeof TASKS)[number];
const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-keys-'));

// ---- tiny data: topic (2 classes) x mood (2 classes, missing on a third of the texts) ------------------------------
const WORDS = { weather: ['rain tomorrow', 'snow storm', 'sunny skies'], music: ['new album', 'concert tonight', 'guitar songs'] } as Record<string, string[]>;
function examples(n: number, seed: number): Example[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const topic = rng.int(2) ? 'weather' : 'music', mood = rng.int(2) ? 'happy' : 'angry';
    return { text: `${mood === 'happy' ? 'I love' : 'I hate'} the ${WORDS[topic]![rng.int(3)]}${i % 2 ? ' today' : ''}`, label: topic, ...(i % 3 ? { extra: { mood } } : {}) };
  });
}
const SPLITS: DatasetSplits = { name: 'keys', train: examples(16, 1), validation: examples(4, 2), test: examples(4, 3), labels: ['music', 'weather'], extraLabels: { mood: ['angry', 'happy'] }, skipped: [] };
const TEXTS = path.join(dir, 'texts.jsonl');
writeFileSync(TEXTS, examples(24, 4).map((e) => JSON.stringify({ text: e.text })).join('\n'));
// task sft: chat records (text -> topic) that also carry a 'text' field, so that datasetFormat 'text' reads other data
const CHATS = path.join(dir, 'chats.jsonl');
writeFileSync(CHATS, examples(24, 5).map((e) => JSON.stringify({ messages: [{ role: 'user', content: e.text }, { role: 'assistant', content: e.label }], text: `${e.text}: ${e.label}` })).join('\n'));
// task dpo: the right topic preferred to the other one
const PREFS = path.join(dir, 'prefs.jsonl');
writeFileSync(PREFS, examples(24, 6).map((e) => JSON.stringify({ prompt: [{ role: 'user', content: e.text }], chosen: [{ role: 'assistant', content: e.label }],
  rejected: [{ role: 'assistant', content: e.label === 'music' ? 'weather' : 'music' }] })).join('\n'));
const TINY_CHAT = path.join(dir, 'tiny-chat');
makeTinyChatModel(TINY_CHAT, { hiddenSize: 16, layers: 2, heads: 2, seed: 0 }); // 2 layers: layerwiseLrDecay has layers to tell apart
const MODEL: Record<Task, () => string | TextEncoder> = { classification: tinyEncoder, 'multi-task': tinyEncoder, 'causal-lm': () => GPT2, sft: () => TINY_CHAT, dpo: () => TINY_CHAT };
const DATA: Record<Task, string | DatasetSplits> = { classification: SPLITS, 'multi-task': SPLITS, 'causal-lm': TEXTS, sft: CHATS, dpo: PREFS };

/** A tiny sentence encoder (characters -> 2 transformer blocks of width 16 -> mean pooling): the table's runs stay fast. */
function tinyEncoder(): TextEncoder {
  manualSeed(3);
  const m = new TinyGPT({ vocabSize: 64, contextLength: 16, dim: 16, heads: 2, layers: 2, mlpDim: 32 });
  return { module: m, embedDim: 16, maxLength: 16, padId: 0, name: 'tiny-encoder',
    encodeText: (t) => [...t].map((ch) => 1 + (ch.charCodeAt(0) % 63)), embed: (ids) => m.hidden(ids).mean(1) };
}

const BASE: Record<Task, TrainerConfigInput> = {
  classification: {},
  'multi-task': { tasks: ['keys', 'mood'] },
  'causal-lm': { task: 'causal-lm' },
  // chat records are ~50 characters (tokens) long with the ChatML template; one sample generation keeps it quick
  sft: { task: 'sft', maxLength: 64, sampleGenerations: 1 },
  dpo: { task: 'dpo', maxLength: 64, sampleGenerations: 1 },
};
const COMMON: TrainerConfigInput = { maxSteps: 2, batchSize: 4, maxLength: 12, evalBatchSize: 8, logEvery: 1, learningRate: 1e-2, warmupSteps: 0 };

// ---- the table ---------------------------------------------------------------------------------------------------------
interface Row {
  /** The non-default value set (per task where it differs). */
  value: unknown | Partial<Record<Task, unknown>>;
  perTask?: boolean;
  /** Other keys the value needs to mean something (applied to both runs). */
  needs?: TrainerConfigInput;
  /** Tasks that refuse the key. */
  refused?: Task[];
  /** Why a key is checked otherwise than by "the run differs" (it selects the task, or only sets where files go). */
  special?: string;
}
const PLATEAU = { scheduler: 'plateau', evalEvery: 1, maxSteps: 6, learningRate: 0.3, plateauPatience: 0 } as const;
const TABLE: Record<string, Row> = {
  task: { value: null, special: "selects the task (registry test below: an unknown task is refused, naming the known ones)" },
  tasks: { value: ['keys', 'mood'], refused: ['causal-lm', 'sft', 'dpo'], special: "selects task 'multi-task' (its label sets are the multi-task run's)" },
  method: { value: 'full' },
  learningRate: { value: 0.05 },
  headLearningRate: { value: 0.5, refused: ['causal-lm', 'sft', 'dpo'] },
  layerwiseLrDecay: { value: 0.3 },
  loraRank: { value: 2 },
  loraAlpha: { value: 64 },
  loraDropout: { value: 0.3 },
  loraTargets: { value: { classification: ['qkv'], 'multi-task': ['qkv'], 'causal-lm': ['c_attn'], sft: ['q_proj'], dpo: ['q_proj'] }, perTask: true },
  useRslora: { value: true },
  useDora: { value: true },
  loraPlusRatio: { value: 16 },
  baseQuantization: { value: 'int8' },
  baseDoubleQuant: { value: false, needs: { baseQuantization: 'nf4' } },
  gradientCheckpointing: { value: true },
  headDropout: { value: 0.5, refused: ['causal-lm', 'sft', 'dpo'] },
  taskWeighting: { value: 'uncertainty', refused: ['classification', 'causal-lm', 'sft', 'dpo'] },
  taskWeights: { value: [1, 3], refused: ['classification', 'causal-lm', 'sft', 'dpo'] },
  dwaTemperature: { value: 0.1, needs: { taskWeighting: 'dwa', dwaWindow: 1, maxSteps: 5 }, refused: ['classification', 'causal-lm', 'sft', 'dpo'] },
  dwaWindow: { value: 1, needs: { taskWeighting: 'dwa', maxSteps: 5 }, refused: ['classification', 'causal-lm', 'sft', 'dpo'] },
  taskSampling: { value: 'round-robin', refused: ['classification', 'causal-lm', 'sft', 'dpo'] },
  taskSamplingTemperature: { value: 0.2, needs: { taskSampling: 'temperature', maxSteps: 6 }, refused: ['classification', 'causal-lm', 'sft', 'dpo'] },
  // task 'sft' keys
  datasetFormat: { value: 'text', refused: ['classification', 'multi-task', 'causal-lm', 'dpo'] },
  completionOnlyLoss: { value: false, refused: ['classification', 'multi-task', 'causal-lm', 'dpo'] },
  packing: { value: true, needs: { maxLength: 128 }, refused: ['classification', 'multi-task', 'causal-lm', 'dpo'] }, // rows of 128 hold 2+ examples
  chatTemplate: { value: "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}", refused: ['classification', 'multi-task', 'causal-lm'] },
  sampleGenerations: { value: 0, refused: ['classification', 'multi-task', 'causal-lm'] },
  // task 'dpo' keys
  dpoBeta: { value: 0.5, refused: ['classification', 'multi-task', 'causal-lm', 'sft'] },
  dpoLossType: { value: 'ipo', refused: ['classification', 'multi-task', 'causal-lm', 'sft'] },
  rpoAlpha: { value: 1, refused: ['classification', 'multi-task', 'causal-lm', 'sft'] },
  simpoGamma: { value: 1, needs: { dpoLossType: 'simpo' }, refused: ['classification', 'multi-task', 'causal-lm', 'sft'] },
  desirableWeight: { value: 1.5, needs: { dpoLossType: 'kto' }, refused: ['classification', 'multi-task', 'causal-lm', 'sft'] },
  undesirableWeight: { value: 1.5, needs: { dpoLossType: 'kto' }, refused: ['classification', 'multi-task', 'causal-lm', 'sft'] },
  epochs: { value: 1, needs: { maxSteps: undefined } },
  maxSteps: { value: 3 },
  batchSize: { value: 2 },
  evalBatchSize: { value: 1, special: 'sets how many texts an evaluation pass takes at once (memory and speed): the numbers stay the same, the run must accept it' },
  gradientAccumulation: { value: 2 },
  maxLength: { value: { classification: 4, 'multi-task': 4, 'causal-lm': 4, sft: 40, dpo: 30 }, perTask: true },
  lengthBucketing: { value: false },
  curriculum: { value: { scorer: 'length', pacing: 'linear', startFraction: 0.3 }, refused: ['multi-task', 'causal-lm', 'sft', 'dpo'] },
  sampling: { value: { method: 'loss-weighted' }, refused: ['multi-task', 'causal-lm', 'sft', 'dpo'] },
  optimizer: { value: 'sgd' },
  betas: { value: [0.5, 0.9] },
  eps: { value: 1e-2 },
  weightDecay: { value: 0.5 },
  momentum: { value: 0.5, needs: { optimizer: 'sgd' } },
  nesterov: { value: true, needs: { optimizer: 'sgd' } },
  maxGradNorm: { value: 1e-3 },
  labelSmoothing: { value: 0.3 },
  neftuneNoiseAlpha: { value: 5, refused: ['classification', 'multi-task'] },
  scheduler: { value: 'constant' },
  warmupSteps: { value: 1 },
  warmupRatio: { value: 0.5, needs: { warmupSteps: undefined } },
  minLr: { value: 5e-3, needs: { scheduler: 'cosine' } },
  tMax: { value: 1, needs: { scheduler: 'cosine' } },
  plateauPatience: { value: 3, needs: PLATEAU },
  plateauFactor: { value: 0.1, needs: PLATEAU },
  evalEvery: { value: 1 },
  earlyStopping: { value: { patience: 1 }, needs: { maxSteps: 4, learningRate: 0.3 } },
  mixedPrecision: { value: 'fp32' },
  seed: { value: 7 },
  gradientCompression: { value: true },
  outputDir: { value: null, special: 'sets where the run writes (every run of this test sets it; checked: the outputs land there)' },
  saveEvery: { value: 1 },
  keepLast: { value: 1, needs: { saveEvery: 1 } },
  resume: { value: true },
  logEvery: { value: 2, needs: { maxSteps: 3 } },
};

test('the table covers every config key', () => {
  assert.deepEqual(Object.keys(TABLE).sort(), Object.keys(trainerConfigSchema.shape).sort());
});

let runs = 0;
/** A tiny run's fingerprint: trained weights, history (times aside), files written, notes (times aside). */
async function fingerprint(task: Task, cfg: TrainerConfigInput): Promise<Record<string, unknown>> {
  const out = path.join(dir, `run-${++runs}`);
  const config = Object.fromEntries(Object.entries({ ...COMMON, ...BASE[task], ...cfg, outputDir: out }).filter(([, v]) => v !== undefined)) as TrainerConfigInput;
  const t = new AutoGLMTrainer({ model: MODEL[task](), config });
  const notes: string[] = [];
  // times aside, as in the history: 'computed in 0.1 s' and '0.0 s' are the same run on a busy machine
  t.on('note', (m: string) => notes.push(m.split(out).join('<out>').replace(/\b\d+(\.\d+)? s\b/g, '<t> s')));
  const h = await t.finetune({ dataset: DATA[task], labelSet: 'keys' });
  const w = createHash('sha256');
  for (const [k, p] of t.task!.trainable()) w.update(k).update(Buffer.from(p.f32().buffer));
  const files = (d: string): string[] => readdirSync(d).flatMap((f) => (statSync(path.join(d, f)).isDirectory() ? files(path.join(d, f)).map((x) => `${f}/${x}`) : [f]));
  const { trainTimeS: _a, peakRssMb: _b, outputs: _c, ...rest } = h;
  const history = JSON.stringify(rest, (k, v) => (k === 'time_s' ? undefined : typeof v === 'number' && !Number.isFinite(v) ? String(v) : v));
  return { weights: w.digest('hex'), history, files: files(out).sort(), notes: notes.sort(), out };
}

const valueFor = (row: Row, task: Task) => (row.perTask ? (row.value as Record<Task, unknown>)[task] : row.value);

for (const task of TASKS) {
  test(`key x task: every key is refused by task '${task}' or changes its run`, async () => {
    const baselines = new Map<string, Record<string, unknown>>();
    const baseline = async (needs: TrainerConfigInput) => {
      const k = JSON.stringify(needs, (_k, v) => (v === undefined ? '<unset>' : v));
      if (!baselines.has(k)) baselines.set(k, await fingerprint(task, needs));
      return baselines.get(k)!;
    };
    // the same config twice gives the same fingerprint, so a difference below is the key's doing
    const again = await fingerprint(task, {}), first = await baseline({});
    for (const f of ['weights', 'history', 'files', 'notes']) assert.deepEqual(again[f], first[f], `${task}: two identical runs differ in ${f}`);
    for (const [key, row] of Object.entries(TABLE)) {
      const value = valueFor(row, task);
      if (row.refused?.includes(task)) {
        assert.throws(() => new AutoGLMTrainer({ model: GPT2, config: { ...COMMON, ...BASE[task], [key]: value } as TrainerConfigInput }),
          (e: unknown) => e instanceof ConfigError && e.message.includes(`'${key}'`) && e.message.includes(task), `${key} x ${task}: expected a ConfigError naming the key and the task`);
        continue;
      }
      if (row.special) {
        if (key === 'evalBatchSize') {
          const a = await baseline(row.needs ?? {}), b = await fingerprint(task, { ...row.needs, [key]: value } as TrainerConfigInput);
          assert.equal(b.weights, a.weights, `${key} x ${task}`);
        } else if (key === 'outputDir') {
          const b = await baseline({});
          assert.ok(existsSync(path.join(b.out as string, 'metrics.jsonl')), `${key} x ${task}: outputs in outputDir`);
        }
        continue;
      }
      const a = await baseline(row.needs ?? {});
      const b = await fingerprint(task, { ...row.needs, [key]: value } as TrainerConfigInput);
      const changed = ['weights', 'history', 'files', 'notes'].filter((f) => JSON.stringify(a[f]) !== JSON.stringify(b[f]));
      assert.ok(changed.length > 0, `${key} = ${JSON.stringify(value)} x ${task}: the run is the same as without it (neither refused nor honoured)`);
    }
  });
}

test('value-level refusals name the key and the task', () => {
  const cases: Array<[TrainerConfigInput, string, string]> = [
    [{ task: 'causal-lm', method: 'head' }, 'method', 'causal-lm'],
    [{ task: 'causal-lm', earlyStopping: { monitor: 'val_accuracy' } }, 'earlyStopping.monitor', 'causal-lm'],
    [{ task: 'translation' }, 'task', "'classification'"],
    [{ task: 'multi-task' }, 'task', "'tasks'"],
    [{ method: 'full', loraRank: 4 }, 'loraRank', 'classification'],
    [{ optimizer: 'adamw', momentum: 0.5 }, 'momentum', 'classification'],
    [{ scheduler: 'linear', tMax: 5 }, 'tMax', 'classification'],
    [{ keepLast: 5 }, 'keepLast', 'classification'],
  ];
  for (const [config, key, what] of cases) {
    assert.throws(() => new AutoGLMTrainer({ model: GPT2, config }), (e: unknown) => e instanceof ConfigError && e.message.includes(`'${key}'`) && e.message.includes(what), JSON.stringify(config));
  }
});
