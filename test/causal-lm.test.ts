/** Causal-LM fine-tuning through the trainer: LoRA and full on a tiny GPT-2 folder, perplexity goes down. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AutoGLMTrainer } from '../src/train/index.js';
import { ConfigError, DatasetError } from '../src/errors.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MODEL = path.join(ROOT, 'test/fixtures/golden/gpt2');
const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-lm-'));
const corpus = path.join(dir, 'texts.jsonl');
const phrases = ['the cat sat on the mat', 'a dog ran in the park', 'the sun is warm today', 'we read a good book'];
writeFileSync(corpus, Array.from({ length: 60 }, (_, i) => JSON.stringify({ text: phrases[i % phrases.length] })).join('\n'));

for (const method of ['lora', 'full'] as const) {
  test(`causal-LM ${method}: validation perplexity falls; outputs saved`, async () => {
    const out = path.join(dir, method);
    const trainer = new AutoGLMTrainer({ model: MODEL, config: {
      task: 'causal-lm', method, epochs: 4, batchSize: 8, learningRate: method === 'lora' ? 2e-2 : 5e-3, warmupRatio: 0, outputDir: out, logEvery: 1 } });
    trainer.on('note', () => {});
    const h = await trainer.finetune({ dataset: corpus });
    const ppl = h.evals.map((e) => e.perplexity as number);
    assert.ok(ppl.length >= 2 && ppl.every(Number.isFinite), JSON.stringify(ppl));
    assert.ok(ppl[ppl.length - 1] < ppl[0] * 0.8, `perplexity ${ppl[0]} -> ${ppl[ppl.length - 1]}`);
    assert.ok(existsSync(method === 'lora' ? path.join(out, 'adapter/adapter_model.safetensors') : path.join(out, 'model/config.json')));
  });
}

test('causal-LM LoRA on an int8 base: tied embedding/head in int8 (Int8Embedding), perplexity falls', async () => {
  const trainer = new AutoGLMTrainer({ model: MODEL, config: {
    task: 'causal-lm', method: 'lora', baseQuantization: 'int8', epochs: 4, batchSize: 8, learningRate: 2e-2, warmupRatio: 0,
    outputDir: path.join(dir, 'int8'), logEvery: 1 } });
  trainer.on('note', () => {});
  const h = await trainer.finetune({ dataset: corpus });
  const ppl = h.evals.map((e) => e.perplexity as number);
  assert.ok(ppl.length >= 2 && ppl.every(Number.isFinite), JSON.stringify(ppl));
  assert.ok(ppl[ppl.length - 1] < ppl[0] * 0.8, `perplexity ${ppl[0]} -> ${ppl[ppl.length - 1]}`);
});

test('causal-LM LoRA on an NF4 base (QLoRA): embeddings and the tied head in bf16, perplexity falls as on f32', async () => {
  const notes: string[] = [];
  const trainer = new AutoGLMTrainer({ model: MODEL, config: {
    task: 'causal-lm', method: 'lora', baseQuantization: 'nf4', epochs: 4, batchSize: 8, learningRate: 2e-2, warmupRatio: 0,
    outputDir: path.join(dir, 'nf4'), logEvery: 1 } });
  trainer.on('note', (n: string) => notes.push(n));
  const h = await trainer.finetune({ dataset: corpus });
  const ppl = h.evals.map((e) => e.perplexity as number);
  assert.ok(ppl.length >= 2 && ppl.every(Number.isFinite), JSON.stringify(ppl));
  assert.ok(ppl[ppl.length - 1] < ppl[0] * 0.8, `perplexity ${ppl[0]} -> ${ppl[ppl.length - 1]}`);
  assert.ok(notes.some((n) => /frozen base in nf4 \(double-quantised absmax\)/.test(n)), notes.join('\n'));
});

test('causal-LM config errors: head method, a model without an LM head, a missing text field', async () => {
  // refused when the trainer is built (the key and the task named), not when it starts training
  assert.throws(() => new AutoGLMTrainer({ model: MODEL, config: { task: 'causal-lm', method: 'head' } }), (e: unknown) => e instanceof ConfigError && /'method'/.test(e.message) && /causal-lm/.test(e.message));
  await assert.rejects(new AutoGLMTrainer({ config: { task: 'causal-lm' } }).finetune({ dataset: corpus }), ConfigError);
  const bad = path.join(dir, 'bad.jsonl');
  writeFileSync(bad, '{"txt": "x"}\n');
  await assert.rejects(new AutoGLMTrainer({ model: MODEL, config: { task: 'causal-lm' } }).finetune({ dataset: bad }), (e: unknown) => e instanceof DatasetError && /bad.jsonl:1/.test(e.message));
});
