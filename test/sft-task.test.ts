/**
 * Task 'sft' on the training loop, end to end on the tiny random-init chat model: LoRA and full runs write the
 * adapter (PEFT layout, tokenizer files and chat template beside it) or the model, sft.json and samples.jsonl;
 * validation loss and perplexity over the scored tokens; predict answers through the chat template; the keys of
 * task 'sft' are refused by the other tasks; and a run resumes exactly (padded and packed), as the trainer issue's
 * resume test does for the other tasks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AutoGLMTrainer, isChatPrediction, isSftEvalResult, type ChatPrediction } from '../src/train/index.js';
import { listCheckpoints } from '../src/train/checkpoint.js';
import { loadSafetensors } from '../src/models/safetensors.js';
import { makeTinyChatModel } from '../src/sft/tiny-chat-model.js';
import { syntheticSplits } from '../src/sft/synthetic.js';
import { AutoGLMError, CheckpointError, ConfigError, DatasetError } from '../src/errors.js';
import { main } from '../src/cli/main.js';
import { loadHFModelFromDir } from '../src/models/hf/loader.js';
import { saveHFModel } from '../src/models/hf/save.js';

const root = mkdtempSync(path.join(tmpdir(), 'autoglm-sft-task-'));
const model = path.join(root, 'tiny');
makeTinyChatModel(model, { hiddenSize: 32, layers: 1, heads: 2, seed: 0 });
const { train } = syntheticSplits({ task: 'addition', train: 60, test: 0, seed: 1, digits: 2 });
const data = path.join(root, 'train.jsonl');
writeFileSync(data, train.map((x) => JSON.stringify(x)).join('\n') + '\n');
const tmp = (p: string) => mkdtempSync(path.join(root, p));
const QUICK = { task: 'sft', batchSize: 8, maxLength: 48, evalBatchSize: 32, logEvery: 1, mixedPrecision: 'fp32', learningRate: 5e-3, sampleGenerations: 2 } as const;

test('LoRA SFT run: adapter with tokenizer files and chat template, sft.json, samples, perplexity, predict through the template', async () => {
  const out = tmp('lora-');
  const t = new AutoGLMTrainer({ model, config: { ...QUICK, method: 'lora', maxSteps: 4, outputDir: out } });
  t.on('note', () => {});
  const h = await t.finetune({ dataset: data });
  assert.equal(h.stepsDone, 4);
  const v = h.evals.at(-1)!;
  assert.ok(Number.isFinite(v.loss) && Math.abs(Math.exp(v.loss) - (h.perplexity?.validation ?? NaN)) < 1e-9 * Math.exp(v.loss));
  // an SFT pass measures loss and perplexity, no accuracy: the log says so (no NaN, no null in metrics.jsonl)
  assert.equal(v.perplexity, h.perplexity?.validation);
  assert.ok(!('accuracy' in v) && !('macro_f1' in v), `eval log keys: ${Object.keys(v).join(', ')}`);
  const evalLines = readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').filter((l) => l.includes('"kind":"eval"'));
  assert.ok(evalLines.length > 0 && evalLines.every((l) => !l.includes('null')), evalLines.join('\n'));
  const adapter = path.join(out, 'adapter');
  for (const f of ['adapter_config.json', 'adapter_model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) assert.ok(existsSync(path.join(adapter, f)), f);
  assert.equal(JSON.parse(readFileSync(path.join(adapter, 'adapter_config.json'), 'utf8')).task_type, 'CAUSAL_LM');
  assert.ok(JSON.parse(readFileSync(path.join(adapter, 'tokenizer_config.json'), 'utf8')).chat_template.includes('<|im_start|>'));
  const summary = JSON.parse(readFileSync(path.join(out, 'sft.json'), 'utf8')) as { tokens: number; scored_tokens: number; completion_only_loss: boolean };
  assert.ok(summary.tokens > summary.scored_tokens && summary.scored_tokens > 0 && summary.completion_only_loss);
  const samples = readFileSync(path.join(out, 'samples.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { messages: unknown[]; reference: string; generated: string });
  assert.equal(samples.length, 2);
  assert.ok(typeof samples[0].generated === 'string' && samples[0].messages.length === 1);
  const p = (await t.predict(['what is 1+2?'])) as ChatPrediction[];
  assert.equal(p[0].prompt, 'what is 1+2?');
  assert.equal(typeof p[0].completion, 'string');
  // a finished run loads for predict, with the same answers
  const loaded = await AutoGLMTrainer.load(out);
  assert.deepEqual(await loaded.predict(['what is 1+2?']), p);
});

test('QLoRA SFT: a bf16 checkpoint loaded 16-bit, its Linear layers in NF4; the reloaded run is quantised the same way (same answers, same validation loss)', async () => {
  const bf16 = path.join(root, 'tiny-bf16');
  saveHFModel(loadHFModelFromDir(model), bf16, { dtype: 'bf16' });
  const out = tmp('qlora-');
  const notes: string[] = [];
  const t = new AutoGLMTrainer({ model: bf16, config: { ...QUICK, method: 'lora', baseQuantization: 'nf4', maxSteps: 4, evalEvery: 4, sampleGenerations: 0, outputDir: out } });
  t.on('note', (m: string) => notes.push(m));
  const h = await t.finetune({ dataset: data });
  assert.ok(notes.some((m) => /frozen base in nf4 \(double-quantised absmax\): 7 layers/.test(m)), notes.join('\n'));
  const losses = h.steps.map((s) => s.loss);
  assert.ok(losses.every(Number.isFinite) && losses.at(-1)! < losses[0], JSON.stringify(losses));
  const p = await t.predict(['what is 1+2?']);
  const loaded = await AutoGLMTrainer.load(out);
  assert.deepEqual(await loaded.predict(['what is 1+2?']), p);
  const v = (await loaded.evaluate('validation')) as { loss: number };
  assert.ok(Math.abs(v.loss - h.evals.at(-1)!.loss) < 1e-6 * v.loss, `reloaded ${v.loss}, trained ${h.evals.at(-1)!.loss}`);
});

test('keys of task sft are refused elsewhere; keys sft cannot honour are refused', () => {
  assert.throws(() => new AutoGLMTrainer({ config: { packing: true } }), (e: Error) => e instanceof ConfigError && /packing/.test(e.message) && /classification/.test(e.message));
  assert.throws(() => new AutoGLMTrainer({ model, config: { task: 'causal-lm', completionOnlyLoss: false } }), ConfigError);
  assert.throws(() => new AutoGLMTrainer({ model, config: { task: 'sft', headDropout: 0.3 } }), (e: Error) => e instanceof ConfigError && /headDropout/.test(e.message));
  assert.throws(() => new AutoGLMTrainer({ model, config: { task: 'sft', method: 'head' } }), ConfigError);
  assert.throws(() => new AutoGLMTrainer({ model, config: { task: 'sft', datasetFormat: 'csv' as 'text' } }), ConfigError); // not a record shape
});

/** 2N steps straight == N steps, stop, resume N more: bit-identical weights. */
async function resumeIsExact(extra: Record<string, unknown>, weights: string): Promise<void> {
  const N = 3;
  const straight = tmp('straight-'), split = tmp('split-');
  const cfg = (out: string, resume: boolean) => ({ ...QUICK, sampleGenerations: 0, ...extra, maxSteps: 2 * N, saveEvery: N, keepLast: 3, evalEvery: 2, outputDir: out, resume });
  const quiet = (t: AutoGLMTrainer) => { t.on('note', () => {}); return t; };
  await quiet(new AutoGLMTrainer({ model, config: cfg(straight, false) })).finetune({ dataset: data });
  await quiet(new AutoGLMTrainer({ model, config: cfg(split, false) })).finetune({ dataset: data, stopAfterSteps: N });
  assert.equal(path.basename(listCheckpoints(split).at(-1)!), 'checkpoint-0000003');
  const h = await quiet(new AutoGLMTrainer({ model, config: cfg(split, true) })).finetune({ dataset: data });
  assert.equal(h.stepsDone, 2 * N);
  const a = loadSafetensors(path.join(straight, weights)).tensors, b = loadSafetensors(path.join(split, weights)).tensors;
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [k, x] of a) assert.deepEqual(Buffer.from(b.get(k)!.f32().buffer), Buffer.from(x.f32().buffer), `${k} differs after resume`);
  const tokens = (d: string) => (JSON.parse(readFileSync(path.join(d, 'sft.json'), 'utf8')) as { tokens: number }).tokens;
  assert.equal(tokens(split), tokens(straight));
}

test('resuming with other data settings (a packed run resumed padded) is a CheckpointError naming the checkpoint and the settings', async () => {
  const out = tmp('settings-');
  const cfg = (packing: boolean, resume: boolean) => ({ ...QUICK, sampleGenerations: 0, method: 'lora', packing, maxSteps: 4, saveEvery: 2, outputDir: out, resume }) as const;
  const t = new AutoGLMTrainer({ model, config: cfg(true, false) });
  t.on('note', () => {});
  await t.finetune({ dataset: data, stopAfterSteps: 2 });
  const r = new AutoGLMTrainer({ model, config: cfg(false, true) });
  r.on('note', () => {});
  await assert.rejects(r.finetune({ dataset: data }), (e: Error) => e instanceof CheckpointError
    && e.message.includes('checkpoint-0000002') && /other data settings/.test(e.message) && /packing/.test(e.message));
});

test('an SFT run resumes exactly (LoRA, padded batches)', () => resumeIsExact({ method: 'lora' }, 'adapter/adapter_model.safetensors'));
test('an SFT run resumes exactly (full fine-tuning, packing, all-token loss)', () => resumeIsExact({ method: 'full', packing: true, completionOnlyLoss: false }, 'model/model.safetensors'));

test('autoglm finetune --task sft --method lora --json: the summary has eval_loss and perplexity; autoglm predict answers through the template', async () => {
  const logs: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => logs.push(a.join(' '));
  const out = tmp('cli-');
  let answer: string;
  try {
    const rc = await main(['finetune', '--task', 'sft', '--model', model, '--dataset', data, '--method', 'lora', '--max-steps', '2', '--batch-size', '8',
      '--max-length', '48', '--mixed-precision', 'fp32', '--sample-generations', '0', '--output-dir', out, '--quiet', '--json']);
    assert.equal(rc, 0);
    assert.equal(await main(['predict', out, 'what is 1+2?', '--json']), 0);
    answer = logs.pop()!;
  } finally {
    console.log = log;
  }
  assert.equal((JSON.parse(answer) as { prompt: string }).prompt, 'what is 1+2?');
  const j = JSON.parse(logs.at(-1)!) as { eval_loss: number; perplexity: number; steps: number };
  assert.equal(j.steps, 2);
  assert.ok(Number.isFinite(j.eval_loss) && Math.abs(Math.exp(j.eval_loss) - j.perplexity) < 1e-6 * j.perplexity);
});

test('predict on an SFT run: typed answers through the chat template, generation options honoured; refused on classification', async () => {
  const out = tmp('predict-');
  const t = new AutoGLMTrainer({ model, config: { ...QUICK, method: 'lora', maxSteps: 2, sampleGenerations: 0, outputDir: out } });
  t.on('note', () => {});
  await t.finetune({ dataset: data });
  const p = await t.predict(['what is 12+30?', 'what is 1+1?']);
  assert.ok(p.every(isChatPrediction));
  const one = await t.predict(['what is 12+30?'], { maxNewTokens: 1 });
  assert.ok(isChatPrediction(one[0]) && one[0].completion.length <= 1, JSON.stringify(one));
  // greedy is the default: the same answer twice; sampling is seeded
  assert.deepEqual(await t.predict(['what is 12+30?']), [p[0]]);
  const s1 = await t.predict(['what is 12+30?'], { doSample: true, temperature: 5, seed: 3 }), s2 = await t.predict(['what is 12+30?'], { doSample: true, temperature: 5, seed: 3 });
  assert.deepEqual(s1, s2);
  const cls = new AutoGLMTrainer({ config: { maxSteps: 1 } });
  await assert.rejects(() => cls.predict(['x'], { maxNewTokens: 4 }), AutoGLMError); // no fine-tune yet
});

test('evaluate an SFT run: loss and perplexity as in training, on a split or a file, in memory and loaded; exact match; autoglm eval', async () => {
  const out = tmp('eval-');
  const t = new AutoGLMTrainer({ model, config: { ...QUICK, method: 'lora', maxSteps: 3, evalEvery: 3, sampleGenerations: 0, outputDir: out } });
  t.on('note', () => {});
  const h = await t.finetune({ dataset: data });
  const v = await t.evaluate('validation');
  assert.ok(isSftEvalResult(v));
  assert.ok(Math.abs(v.loss - h.evals.at(-1)!.loss) < 1e-6, `${v.loss} vs ${h.evals.at(-1)!.loss}`);
  assert.ok(Math.abs(v.perplexity - Math.exp(v.loss)) < 1e-9 * v.perplexity && v.tokens > 0 && v.n === 6);
  // the loaded run re-reads its validation split from the file autoglm.json names: the same figures
  const loaded = await AutoGLMTrainer.load(out);
  const lv = await loaded.evaluate('validation');
  assert.ok(isSftEvalResult(lv) && Math.abs(lv.loss - v.loss) < 1e-6 && lv.n === v.n && lv.tokens === v.tokens);
  await assert.rejects(() => loaded.evaluate('test'), (e: Error) => e instanceof ConfigError && /no test file/.test(e.message));
  // a file: every record; exact match against the references (answers the model gives to itself score 100%)
  const { test: held } = syntheticSplits({ task: 'addition', train: 0, test: 8, seed: 9, digits: 2 });
  const own = (await loaded.predict(held.map((x) => x.messages[0].content))) as ChatPrediction[];
  const file = path.join(root, 'held.jsonl');
  writeFileSync(file, held.map((x, i) => JSON.stringify({ messages: [x.messages[0], { role: 'assistant', content: i < 4 ? own[i].completion : 'not the answer' }] })).join('\n') + '\n');
  const em = await loaded.evaluate(file, { exactMatch: true, maxNewTokens: 128 });
  assert.ok(isSftEvalResult(em) && em.n === 8 && em.answered === 8 && em.exact_match === 0.5, JSON.stringify(em));
  const capped = await loaded.evaluate(file, { maxEval: 3 });
  assert.ok(isSftEvalResult(capped) && capped.n === 3 && capped.exact_match === undefined);
  await assert.rejects(() => loaded.evaluate(path.join(root, 'missing.jsonl')), DatasetError);
  // the CLI
  const logs: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => logs.push(a.join(' '));
  try {
    assert.equal(await main(['eval', out, '--split', 'validation', '--json']), 0);
    const j = JSON.parse(logs.at(-1)!) as { task: string; loss: number; perplexity: number; n: number };
    assert.ok(j.task === 'sft' && Math.abs(j.loss - v.loss) < 1e-6 && j.n === 6);
    assert.equal(await main(['eval', out, '--dataset', file, '--exact-match', '--max-new-tokens', '128', '--json']), 0);
    assert.equal((JSON.parse(logs.at(-1)!) as { exact_match: number }).exact_match, 0.5);
  } finally {
    console.log = log;
  }
});

test('packing: lengthBucketing does not apply to packed rows (drawn uniformly), and the run says so', async () => {
  const run = async (lengthBucketing: boolean) => {
    const t = new AutoGLMTrainer({ model, config: { ...QUICK, method: 'lora', packing: true, batchSize: 2, maxSteps: 2, sampleGenerations: 0, lengthBucketing, outputDir: tmp('bucket-') } });
    const notes: string[] = [];
    t.on('note', (m: string) => notes.push(m));
    await t.finetune({ dataset: data });
    return { notes, weights: t.task!.trainable().map(([, p]) => Buffer.from(p.f32().buffer).toString('base64')).join() };
  };
  const on = await run(true), off = await run(false);
  assert.equal(on.weights, off.weights);
  assert.ok(on.notes.some((n) => /lengthBucketing does not apply to packed rows/.test(n)), JSON.stringify(on.notes));
  assert.ok(!off.notes.some((n) => /lengthBucketing/.test(n)));
});

test('NEFTune (neftuneNoiseAlpha): uniform noise within alpha / sqrt(T * hidden) on the token embeddings while training, none in eval mode; the table\'s gradient is unchanged', async () => {
  const { loadHFModel } = await import('../src/models/hf/loader.js');
  const { lookup, tokenEmbeddings } = await import('../src/models/hf/layers.js');
  const { Tensor } = await import('../src/tensor/tensor.js');
  const lm = await loadHFModel(model) as unknown as { backbone: { embed_tokens: import('../src/nn/layers.js').Embedding; neftuneAlpha: number } };
  const e = lm.backbone.embed_tokens;
  const ids = new Tensor(Int32Array.from({ length: 2 * 9 }, (_, i) => (7 * i) % 50), 'i32', [2, 9]);
  const clean = lookup(e, ids).f32();
  const a = 5 / Math.sqrt(9 * 32);
  const noisy = tokenEmbeddings(e, ids, 5, true).f32();
  let max = 0, sum = 0;
  for (let i = 0; i < clean.length; i++) {
    const d = noisy[i]! - clean[i]!;
    max = Math.max(max, Math.abs(d));
    sum += d;
  }
  assert.ok(max <= a * (1 + 1e-5) && max > 0.9 * a, `noise magnitude ${max} against the bound ${a}`);
  assert.ok(Math.abs(sum / clean.length) < 0.1 * a, `noise mean ${sum / clean.length}`);
  assert.notDeepEqual(Array.from(tokenEmbeddings(e, ids, 5, true).f32()), Array.from(noisy), 'a fresh draw each call');
  assert.deepEqual(Array.from(tokenEmbeddings(e, ids, 5, false).f32()), Array.from(clean), 'eval mode: no noise');
  assert.deepEqual(Array.from(tokenEmbeddings(e, ids, 0, true).f32()), Array.from(clean), 'alpha 0: no noise');
  // the noise is a constant of the step: d(sum)/d(table) counts each id's occurrences, as without it
  const grads = [true, false].map((train) => {
    e.weight.grad = null;
    e.weight.requiresGrad = true;
    tokenEmbeddings(e, ids, train ? 5 : 0, true).sum().backward();
    return Array.from(e.weight.grad!.f32());
  });
  assert.deepEqual(grads[0], grads[1]);
  // the trainer sets it on the decoder's backbone, for task 'sft' and 'causal-lm' (the others refuse the key)
  const t = new AutoGLMTrainer({ model, config: { ...QUICK, method: 'lora', maxSteps: 1, neftuneNoiseAlpha: 5, sampleGenerations: 0, outputDir: tmp('neftune-') } });
  t.on('note', () => {});
  await t.finetune({ dataset: data });
  assert.equal((t.lora!.model as unknown as { backbone: { neftuneAlpha: number } }).backbone.neftuneAlpha, 5);
  assert.throws(() => new AutoGLMTrainer({ config: { neftuneNoiseAlpha: 5 } }), (err: Error) => err instanceof ConfigError && /neftuneNoiseAlpha/.test(err.message) && /classification/.test(err.message));
});
