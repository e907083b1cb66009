/**
 * One run of a resume test (test/train-resume.test.ts), in its own process so that the test can SIGKILL it. Args
 * (JSON in argv[2]): the task, the output folder, resume or not, and where to die:
 *   killAfterCheckpoint: step -> after the checkpoint of that step is complete, print CHECKPOINT and wait (the
 *     test kills the process);
 *   killWhileWriting: step -> SIGKILL itself in the middle of writing that step's checkpoint (its weights and
 *     optimizer files written, trainer_state.json half written).
 * At the end it writes the history (losslessly) to <out>/history.json; the weights are the run's outputs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { syncBuiltinESMExports } from 'node:module';
import { fileURLToPath } from 'node:url';
import { AutoGLMTrainer, type TrainerConfigInput } from '../../src/train/index.js';
import { stringifyState } from '../../src/train/serialize.js';
import { Rng } from '../../src/backend/rng.js';
import type { DatasetSplits, Example } from '../../src/data/index.js';
import { makeTinyChatModel } from '../../src/sft/tiny-chat-model.js';

interface Args { task: 'classification' | 'multi-task' | 'causal-lm' | 'sft' | 'dpo' | 'kto'; out: string; resume: boolean; killAfterCheckpoint?: number; killWhileWriting?: number }
const args = JSON.parse(process.argv[2] as string) as Args;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

if (args.killWhileWriting !== undefined) {
  const target = `checkpoint-${String(args.killWhileWriting).padStart(7, '0')}.tmp-`;
  const write = fs.writeFileSync;
  fs.writeFileSync = ((file: fs.PathOrFileDescriptor, data: string | NodeJS.ArrayBufferView, ...rest: unknown[]) => {
    if (typeof file === 'string' && file.includes(target) && file.endsWith('trainer_state.json')) {
      write(file, String(data).slice(0, 100));
      process.kill(process.pid, 'SIGKILL');
    }
    return (write as (...a: unknown[]) => void)(file, data, ...rest);
  }) as typeof fs.writeFileSync;
  syncBuiltinESMExports();
}

// topic (4 classes) x mood (2 classes) on the same texts
const TOPICS: Record<string, string[]> = {
  weather: ['the rain forecast for tomorrow', 'a snow storm in the city', 'sunny skies this weekend'],
  music: ['the new album by that band', 'concert tickets tonight', 'my favourite song on the radio'],
  food: ['a recipe for pasta', 'ordering pizza for dinner', 'baking chocolate cake'],
  sports: ['the football score', 'the tennis match final', 'who won the marathon'],
};
const MOODS: Record<string, string[]> = { happy: ['I love', 'great news about'], angry: ['I really hate', 'terrible news about'] };
function examples(n: number, seed: number): Example[] {
  const rng = new Rng(seed), topics = Object.keys(TOPICS), moods = Object.keys(MOODS);
  return Array.from({ length: n }, () => {
    const topic = topics[rng.int(topics.length)]!, mood = moods[rng.int(moods.length)]!;
    return { text: `${MOODS[mood]![rng.int(2)]} ${TOPICS[topic]![rng.int(3)]}`, label: topic, extra: { mood } };
  });
}
const splits: DatasetSplits = { name: 'resume-synthetic', train: examples(40, 1), validation: examples(12, 2), test: examples(12, 3),
  labels: Object.keys(TOPICS).sort(), extraLabels: { mood: Object.keys(MOODS).sort() }, skipped: [] };

// plateau + early stopping (patience longer than the run, best weights restored), evaluation every 3 steps, a
// checkpoint every 2: the first checkpoint (step 2) precedes the first evaluation (step 3)
const COMMON: TrainerConfigInput = { maxSteps: 8, epochs: 20, batchSize: 8, maxLength: 16, evalBatchSize: 16, logEvery: 1, evalEvery: 3, saveEvery: 2, keepLast: 10,
  scheduler: 'plateau', plateauPatience: 0, earlyStopping: { patience: 50, restoreBest: true }, loraDropout: 0.1, outputDir: args.out, resume: args.resume };
const PER_TASK: Record<Args['task'], TrainerConfigInput> = {
  // loss-weighted sampling: its loss table and RNG are part of the state
  classification: { headDropout: 0.1, sampling: { method: 'loss-weighted', importanceWeights: true, refreshEvery: 2 } },
  // round-robin task sampling with windowed DWA: samplers, task sampler and loss history in the state
  'multi-task': { headDropout: 0.1, tasks: ['resume-synthetic', 'mood'], taskWeighting: 'dwa', dwaWindow: 2, taskSampling: 'round-robin', labelSmoothing: 0.1 },
  // NEFTune's noise is drawn from the tensor layer's generator, which the state holds (GPT-2 here, a Llama below)
  'causal-lm': { task: 'causal-lm', learningRate: 1e-2, labelSmoothing: 0.1, neftuneNoiseAlpha: 5 },
  // SFT: chat records (text -> topic) on the tiny chat model (ChatML template), packed, loss on the answers, on an NF4
  // base (QLoRA: the resumed run quantises the base again, to the same bits)
  sft: { task: 'sft', learningRate: 1e-2, labelSmoothing: 0.1, packing: true, maxLength: 128, sampleGenerations: 1, neftuneNoiseAlpha: 5, baseQuantization: 'nf4' },
  // DPO: preference pairs (the topic vs another topic) on the tiny chat model; conservative DPO's epsilon, NEFTune, LoRA dropout
  dpo: { task: 'dpo', learningRate: 1e-2, labelSmoothing: 0.1, maxLength: 128, sampleGenerations: 1, neftuneNoiseAlpha: 5 },
  // KTO on the same pairs unpaired: the KL rows' forward (eval mode) between the training ones, weighted examples
  kto: { task: 'dpo', dpoLossType: 'kto', desirableWeight: 1.3, learningRate: 1e-2, maxLength: 128, sampleGenerations: 1, neftuneNoiseAlpha: 5 },
};
const tinyChat = path.join(args.out, '..', 'tiny-chat');
const chatTask = args.task === 'sft' || args.task === 'dpo' || args.task === 'kto';
if (chatTask && !fs.existsSync(path.join(tinyChat, 'config.json'))) makeTinyChatModel(tinyChat, { hiddenSize: 32, layers: 1, heads: 2 });
const model = args.task === 'causal-lm' ? path.join(ROOT, 'test/fixtures/golden/gpt2') : chatTask ? tinyChat : 'open-autoglm-base';
const trainer = new AutoGLMTrainer({ model, config: { ...COMMON, ...PER_TASK[args.task] } });
trainer.on('note', () => {});
trainer.on('checkpoint', (_dir: string, step: number) => {
  if (step === args.killAfterCheckpoint) {
    process.stdout.write('CHECKPOINT\n');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60_000);
  }
});
let dataset: string | DatasetSplits = splits;
if (args.task === 'causal-lm') {
  const file = path.join(args.out, '..', 'texts.jsonl');
  if (!fs.existsSync(file)) fs.writeFileSync(file, splits.train.concat(splits.validation).map((e) => JSON.stringify({ text: e.text })).join('\n'));
  dataset = file;
}
if (args.task === 'sft') {
  const file = path.join(args.out, '..', 'chat.jsonl');
  const chat = (e: Example) => ({ messages: [{ role: 'user', content: e.text }, { role: 'assistant', content: e.label }] });
  if (!fs.existsSync(file)) fs.writeFileSync(file, splits.train.concat(splits.validation).map((e) => JSON.stringify(chat(e))).join('\n'));
  dataset = file;
}
if (args.task === 'dpo' || args.task === 'kto') {
  const file = path.join(args.out, '..', 'prefs.jsonl');
  const topics = Object.keys(TOPICS).sort();
  const pair = (e: Example) => ({ prompt: [{ role: 'user', content: e.text }], chosen: [{ role: 'assistant', content: e.label }],
    rejected: [{ role: 'assistant', content: topics[(topics.indexOf(e.label!) + 1) % topics.length] }] });
  if (!fs.existsSync(file)) fs.writeFileSync(file, splits.train.concat(splits.validation).map((e) => JSON.stringify(pair(e))).join('\n'));
  dataset = file;
}
const h = await trainer.finetune({ dataset, labelSet: 'resume-synthetic' });
fs.writeFileSync(path.join(args.out, 'history.json'), stringifyState(h));
