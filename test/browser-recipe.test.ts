/**
 * The browser entry's pieces, run in Node (they import nothing from node:, so they run anywhere): its datasets are
 * loadDataset's (custom_intent_v2 from its files' bytes, a dropped CSV's seeded split), and finetuneInBrowser is the
 * Node trainer's classification recipe: the same tiny job on the same backend ends with the same test loss, bit
 * for bit, and the same adapter bytes. Refused keys are ConfigErrors naming the key. No browser needed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDataset } from '../src/data/index.js';
import { customIntentV2, splitsFromFile } from '../src/browser/data.js';
import { browserConfig, finetuneInBrowser } from '../src/browser/train.js';
import { adapterFiles } from '../src/peft/lora/state.js';
import { dirSource, defaultModelDir } from '../src/models/use-lite/files.js';
import { AutoGLMTrainer } from '../src/train/trainer.js';
import { ConfigError } from '../src/errors.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ci = (s: string) => readFileSync(path.join(ROOT, 'datasets', 'custom_intent_v2', `${s}.jsonl`));

test('custom_intent_v2 from its bytes and a dropped CSV split as loadDataset splits them', () => {
  const strip = (d: { train: unknown; validation: unknown; test: unknown; labels: unknown }) => ({ train: d.train, validation: d.validation, test: d.test, labels: d.labels });
  const mine = customIntentV2({ train: ci('train'), validation: ci('validation'), test: ci('test') }, { maxTrain: 500, maxEval: 100 });
  assert.deepEqual(strip(mine), strip(loadDataset({ dataset: 'custom_intent_v2', maxTrain: 500, maxEval: 100 })));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'autoglm-csv-'));
  try {
    const csv = ['utterance,intent', ...readFileSync(path.join(ROOT, 'datasets', 'custom_intent_v2', 'train.jsonl'), 'utf8').split('\n').slice(0, 300)
      .filter(Boolean).map((l) => JSON.parse(l) as { text: string; label: string }).map((r) => `"${r.text.replace(/"/g, '""')}",${r.label}`), 'no label here,', ''].join('\n');
    const file = path.join(dir, 'mine.csv');
    writeFileSync(file, csv);
    const node = loadDataset({ dataset: file, textField: 'utterance', labelField: 'intent', onBadLine: 'skip' });
    const page = splitsFromFile('mine.csv', new TextEncoder().encode(csv), { textField: 'utterance', labelField: 'intent' });
    assert.equal(page.skipped.length, 1);
    assert.deepEqual(strip(page), strip(node));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

for (const base of ['none', 'nf4'] as const) test(`finetuneInBrowser is the Node trainer's recipe: same job, same test loss bit for bit, same adapter bytes (base ${base === 'none' ? 'f32' : "QLoRA's NF4"})`, async () => {
  // fp32 on both sides (the browser computes in fp32; Node's 'auto' picks bf16 where the native backend has it)
  const job = { epochs: 1, batchSize: 16, loraRank: 4, mixedPrecision: 'fp32' as const, baseQuantization: base };
  const splits = loadDataset({ dataset: 'custom_intent_v2', maxTrain: 64, maxEval: 32 });
  const out = mkdtempSync(path.join(os.tmpdir(), 'autoglm-recipe-'));
  try {
    const trainer = new AutoGLMTrainer({ config: { ...job, outputDir: out } });
    trainer.on('note', () => undefined);
    const h = await trainer.finetune({ dataset: 'custom_intent_v2', maxTrain: 64, maxEval: 32 });
    const b = await finetuneInBrowser({ weights: dirSource(defaultModelDir()), splits, config: job });
    assert.equal(b.steps, h.stepsDone);
    assert.equal(b.test!.loss, h.test!.loss);
    assert.equal(b.test!.accuracy, h.test!.accuracy);
    const files = adapterFiles(b.lora!);
    assert.ok(Buffer.from(files['adapter_model.safetensors']).equals(readFileSync(path.join(out, 'adapter', 'adapter_model.safetensors'))), 'adapter_model.safetensors bytes');
    assert.deepEqual(JSON.parse(files['adapter_config.json']), JSON.parse(readFileSync(path.join(out, 'adapter', 'adapter_config.json'), 'utf8')));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test("finetuneInBrowser's evaluateOn: a bad value is a ConfigError naming it", async () => {
  const splits = loadDataset({ dataset: 'custom_intent_v2', maxTrain: 8, maxEval: 4 });
  await assert.rejects(finetuneInBrowser({ weights: dirSource(defaultModelDir()), splits, evaluateOn: 'gpu' as never }),
    (e: Error) => e instanceof ConfigError && /option 'evaluateOn' is 'gpu'; expected 'device' or 'cpu'/.test(e.message));
});

test('keys the browser run cannot honour are refused by name', () => {
  for (const [cfg, key] of [[{ earlyStopping: { patience: 1 } }, 'earlyStopping'], [{ saveEvery: 10 }, 'saveEvery'], [{ curriculum: { scorer: 'loss' } }, 'curriculum'],
    [{ method: 'head' }, 'method'], [{ scheduler: 'plateau' }, 'scheduler'], [{ mixedPrecision: 'bf16' }, 'mixedPrecision'], [{ tasks: 'intent,domain' }, 'tasks']] as const) {
    assert.throws(() => browserConfig(cfg as Record<string, unknown>), (e: Error) => e instanceof ConfigError && e.message.includes(`'${key}'`), key);
  }
  assert.equal(browserConfig({ loraRank: 4 }).loraRank, 4);
});
