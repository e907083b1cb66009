/**
 * SFT end to end where learning is visible without pretrained weights: a random-init tiny Llama chat model
 * (src/sft/tiny-chat-model.ts) trained with task 'sft' on a synthetic chat task, then greedy answers to the
 * held-out prompts scored by exact match. Prints one JSON line: accuracy, train time, tokens/s, eval loss.
 *
 *   node --import tsx scripts/sft-synthetic.ts [--task addition --digits 2 --train 9000 --test 500]
 *     [--method full|lora --steps 1500 --batch-size 32 --lr 3e-3 --packing --no-completion-only-loss --threads 1]
 *     [--layers 2 --hidden 128 --heads 4 --max-length 64 --work /tmp/sft-synthetic] [--neftune 5 (NEFTune's alpha)]
 */
import { parseArgs } from 'node:util';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { makeTinyChatModel } from '../src/sft/tiny-chat-model.js';
import { syntheticSplits, type SyntheticTask } from '../src/sft/synthetic.js';
import { AutoGLMTrainer, type ChatPrediction } from '../src/train/index.js';
import { applyThreads } from '../src/cli/options.js';
import { mkdirSync, writeFileSync } from 'node:fs';

const { values: a } = parseArgs({
  options: {
    task: { type: 'string', default: 'addition' }, digits: { type: 'string', default: '2' }, train: { type: 'string', default: '9000' },
    test: { type: 'string', default: '500' }, method: { type: 'string', default: 'full' }, steps: { type: 'string', default: '1500' },
    'batch-size': { type: 'string', default: '32' }, lr: { type: 'string', default: '3e-3' }, packing: { type: 'boolean', default: false },
    'no-completion-only-loss': { type: 'boolean', default: false }, 'no-length-bucketing': { type: 'boolean', default: false }, threads: { type: 'string', default: '1' },
    layers: { type: 'string', default: '2' }, hidden: { type: 'string', default: '128' }, heads: { type: 'string', default: '4' },
    'max-length': { type: 'string', default: '64' }, 'lora-rank': { type: 'string', default: '16' }, seed: { type: 'string', default: '0' },
    work: { type: 'string', default: '/tmp/sft-synthetic' }, 'resume-check': { type: 'boolean', default: false },
    neftune: { type: 'string', default: '0' },
  },
});
const n = (k: keyof typeof a) => Number(a[k]);
applyThreads(n('threads'));
const tag = `${a.task}-d${a.digits}-L${a.layers}-H${a.hidden}-s${a.seed}`;
const modelDir = path.join(a.work as string, tag, 'model');
const dataDir = path.join(a.work as string, tag, 'data');
if (!existsSync(path.join(modelDir, 'config.json'))) makeTinyChatModel(modelDir, { layers: n('layers'), hiddenSize: n('hidden'), heads: n('heads'), seed: n('seed') });
if (!existsSync(path.join(dataDir, 'test.jsonl'))) {
  mkdirSync(dataDir, { recursive: true });
  const { train, test } = syntheticSplits({ task: a.task as SyntheticTask, train: n('train'), test: n('test'), seed: n('seed') + 1, digits: n('digits') });
  writeFileSync(path.join(dataDir, 'train.jsonl'), train.map((x) => JSON.stringify(x)).join('\n') + '\n');
  writeFileSync(path.join(dataDir, 'test.jsonl'), test.map((x) => JSON.stringify(x)).join('\n') + '\n');
}
const run = path.join(a.work as string, tag, `run-${a.method}${a.packing ? '-packed' : ''}${a['no-completion-only-loss'] ? '-allloss' : ''}${a['no-length-bucketing'] ? '-nobucket' : ''}${n('neftune') > 0 ? `-neftune${n('neftune')}` : ''}`);
const config = {
  task: 'sft', method: a.method as 'full' | 'lora', maxSteps: n('steps'), epochs: 1000, batchSize: n('batch-size'), learningRate: n('lr'),
  maxLength: n('max-length'), packing: a.packing, completionOnlyLoss: !a['no-completion-only-loss'], lengthBucketing: !a['no-length-bucketing'], mixedPrecision: 'fp32' as const,
  scheduler: 'cosine' as const, warmupRatio: 0.05, weightDecay: 0.0, outputDir: run, logEvery: 100, evalEvery: 0, sampleGenerations: 4, neftuneNoiseAlpha: n('neftune'),
  ...(a.method === 'lora' ? { loraRank: n('lora-rank'), loraTargets: 'all-linear' } : {}),
};
const trainer = new AutoGLMTrainer({ model: modelDir, config });
trainer.on('step', (s: { step: number; loss: number }) => { if (s.step % 100 === 0) process.stderr.write(`step ${s.step} loss ${s.loss.toFixed(4)}\n`); });
const t0 = performance.now();
const h = await trainer.finetune({ dataset: path.join(dataDir, 'train.jsonl'), maxEval: 200 });
const trainS = (performance.now() - t0) / 1e3;
const test = readFileSync(path.join(dataDir, 'test.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { messages: { role: string; content: string }[] });
const t1 = performance.now();
const preds = (await trainer.predict(test.map((x) => x.messages[0].content))) as ChatPrediction[];
const correct = preds.filter((p, i) => p.completion.trim() === test[i].messages[1].content).length;
const sft = JSON.parse(readFileSync(path.join(run, 'sft.json'), 'utf8')) as { tokens_per_s: number; tokens: number };
console.log(JSON.stringify({
  task: a.task, digits: n('digits'), method: a.method, packing: a.packing, completion_only_loss: !a['no-completion-only-loss'], steps: h.stepsDone,
  exact_match: correct / test.length, held_out: test.length, train_time_s: +trainS.toFixed(1), eval_time_s: +((performance.now() - t1) / 1e3).toFixed(1),
  tokens: sft.tokens, tokens_per_s: sft.tokens_per_s, eval_loss: h.evals.at(-1)?.loss, val_perplexity: h.perplexity?.validation, cpu_user_s: +(process.cpuUsage().user / 1e6).toFixed(1), run,
  examples: preds.slice(0, 3).map((p, i) => [test[i].messages[0].content, p.completion]),
}));
