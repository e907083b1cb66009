/**
 * Makes a small random-initialised Llama chat model (Hugging Face folder: config.json, model.safetensors,
 * character-level tokenizer.json with ChatML special tokens, tokenizer_config.json with the chat template,
 * generation_config.json) and, with --task, a synthetic chat dataset with checkable answers:
 *
 *   npx tsx scripts/make-tiny-chat-model.ts --out /tmp/tiny-chat [--layers 2 --hidden 128 --heads 4 --seed 0]
 *     [--kv-heads N --mlp N --dtype f32|bf16|f16 --shard-mb N]
 *     [--task addition|reverse|lookup --train 20000 --test 500 --digits 2 --data /tmp/tiny-chat-data]
 *
 * The data folder gets train.jsonl (chat `messages`) and test.jsonl (held out: no question of it is in train).
 */
import { parseArgs } from 'node:util';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeTinyChatModel } from '../src/sft/tiny-chat-model.js';
import { syntheticSplits, SYNTHETIC_TASKS, type SyntheticTask } from '../src/sft/synthetic.js';

const { values: a } = parseArgs({
  options: {
    out: { type: 'string' }, layers: { type: 'string', default: '2' }, hidden: { type: 'string', default: '128' },
    heads: { type: 'string', default: '4' }, seed: { type: 'string', default: '0' },
    'kv-heads': { type: 'string' }, mlp: { type: 'string' }, dtype: { type: 'string', default: 'f32' }, 'shard-mb': { type: 'string' },
    task: { type: 'string' }, train: { type: 'string', default: '20000' }, test: { type: 'string', default: '500' },
    digits: { type: 'string', default: '2' }, data: { type: 'string' },
  },
});
if (!a.out) {
  console.error('usage: make-tiny-chat-model.ts --out DIR [--layers N --hidden N --heads N --seed N --kv-heads N --mlp N --dtype f32|bf16|f16 --shard-mb N] [--task addition|reverse|lookup --train N --test N --digits N --data DIR]');
  process.exit(2);
}
const num = (k: string, v: string | undefined) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`--${k} is '${v}'; expected a non-negative integer`);
    process.exit(2);
  }
  return n;
};
if (a.dtype !== 'f32' && a.dtype !== 'bf16' && a.dtype !== 'f16') {
  console.error(`--dtype is '${a.dtype}'; expected f32, bf16 or f16`);
  process.exit(2);
}
const { dir, parameters } = makeTinyChatModel(a.out, {
  layers: num('layers', a.layers), hiddenSize: num('hidden', a.hidden), heads: num('heads', a.heads), seed: num('seed', a.seed),
  ...(a['kv-heads'] ? { kvHeads: num('kv-heads', a['kv-heads']) } : {}), ...(a.mlp ? { intermediateSize: num('mlp', a.mlp) } : {}),
  dtype: a.dtype, ...(a['shard-mb'] ? { maxShardBytes: num('shard-mb', a['shard-mb']) * 2 ** 20 } : {}),
});
console.log(`model: ${dir} (${parameters} parameters)`);
if (a.task) {
  if (!SYNTHETIC_TASKS.includes(a.task as SyntheticTask)) {
    console.error(`--task is '${a.task}'; expected one of ${SYNTHETIC_TASKS.join(', ')}`);
    process.exit(2);
  }
  const data = a.data ?? path.join(a.out, 'data');
  mkdirSync(data, { recursive: true });
  const { train, test } = syntheticSplits({ task: a.task as SyntheticTask, train: num('train', a.train), test: num('test', a.test), seed: num('seed', a.seed) + 1, digits: num('digits', a.digits) });
  const lines = (xs: typeof train) => xs.map((x) => JSON.stringify(x)).join('\n') + '\n';
  writeFileSync(path.join(data, 'train.jsonl'), lines(train));
  writeFileSync(path.join(data, 'test.jsonl'), lines(test));
  console.log(`data: ${data}/train.jsonl (${train.length}), ${data}/test.jsonl (${test.length}, held out)`);
}
