/**
 * Preference tuning end to end after SFT, where its effect is measurable without pretrained weights: the model of an
 * `scripts/sft-synthetic.ts` run (method full: <run>/model) answers training prompts greedily; each wrong answer
 * becomes a pair (chosen: the right answer, rejected: the model's own: self-generated negatives), and each right one a
 * pair whose rejected side is the answer with one digit off by one (`--negatives self` leaves those out); task
 * 'dpo' trains on them against the SFT model as the reference; the held-out prompts are answered before and after
 * and scored by exact match. Prints one JSON line.
 *
 *   node --import tsx scripts/sft-synthetic.ts --steps 1500            # first: the SFT run (full fine-tuning)
 *   node --import tsx scripts/dpo-synthetic.ts [--work /tmp/sft-synthetic --tag addition-d2-L2-H128-s0 --prompts 3000]
 *     [--method lora|full --steps 300 --batch-size 32 --lr 2e-3 --beta 0.1 --loss sigmoid|ipo|hinge|robust|exo_pair|sppo_hard|nca_pair|apo_zero|apo_down|simpo|orpo|kto --gamma 0.5 --rpo 0 --threads 1]
 *     [--negatives self+perturbed|self] [--control: task sft on the chosen answers instead, the same steps]
 */
import { parseArgs } from 'node:util';
import { existsSync, readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AutoGLMTrainer, type ChatPrediction } from '../src/train/index.js';
import { applyThreads } from '../src/cli/options.js';

const { values: a } = parseArgs({
  options: {
    work: { type: 'string', default: '/tmp/sft-synthetic' }, tag: { type: 'string', default: 'addition-d2-L2-H128-s0' }, 'sft-run': { type: 'string', default: 'run-full' },
    prompts: { type: 'string', default: '3000' }, method: { type: 'string', default: 'lora' }, steps: { type: 'string', default: '300' },
    'batch-size': { type: 'string', default: '32' }, lr: { type: 'string', default: '2e-3' }, beta: { type: 'string', default: '0.1' },
    control: { type: 'boolean', default: false }, loss: { type: 'string', default: 'sigmoid' }, gamma: { type: 'string', default: '0.5' }, rpo: { type: 'string', default: '0' }, negatives: { type: 'string', default: 'self+perturbed' }, threads: { type: 'string', default: '1' }, 'max-length': { type: 'string', default: '64' },
  },
});
const n = (k: keyof typeof a) => Number(a[k]);
applyThreads(n('threads'));
const base = path.join(a.work as string, a.tag as string);
const sftRun = path.join(base, a['sft-run'] as string);
if (!existsSync(path.join(sftRun, 'model', 'config.json'))) {
  console.error(`no SFT model at ${sftRun}/model: run scripts/sft-synthetic.ts (method full) first`);
  process.exit(2);
}
type Chat = { messages: { role: string; content: string }[] };
const read = (f: string) => readFileSync(path.join(base, 'data', f), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Chat);
const train = read('train.jsonl').slice(0, n('prompts')), test = read('test.jsonl');
const exact = (preds: ChatPrediction[], xs: Chat[]) => preds.filter((p, i) => p.completion.trim() === xs[i]!.messages[1]!.content).length / xs.length;

const sft = await AutoGLMTrainer.load(sftRun);
const t0 = performance.now();
const before = exact((await sft.predict(test.map((x) => x.messages[0]!.content))) as ChatPrediction[], test);
const answers = (await sft.predict(train.map((x) => x.messages[0]!.content))) as ChatPrediction[];
// a right answer's rejected side: the same answer with one digit off by one (the kind of slip the model makes)
const perturbed = (s: string, i: number) => {
  const k = i % s.length, d = Number(s[k]);
  return Number.isNaN(d) ? `${s}0` : `${s.slice(0, k)}${(d + (i % 2 ? 1 : 9)) % 10}${s.slice(k + 1)}`;
};
const pairs = train.flatMap((x, i) => {
  const got = answers[i]!.completion.trim(), want = x.messages[1]!.content;
  const rejected = got !== want && got !== '' ? got : a.negatives === 'self' ? null : perturbed(want, i);
  return rejected === null ? [] : [{ prompt: [x.messages[0]], chosen: [{ role: 'assistant', content: want }], rejected: [{ role: 'assistant', content: rejected }] }];
});
const own = train.filter((x, i) => answers[i]!.completion.trim() !== x.messages[1]!.content).length;
const genS = (performance.now() - t0) / 1e3;
const dir = path.join(base, a.control ? `control-sft-${a.method}-${a.negatives}` : `dpo-${a.method}-${a.loss}-b${a.beta}${a.loss === 'simpo' ? `-g${a.gamma}` : ''}-rpo${a.rpo}-${a.negatives}`);
mkdirSync(dir, { recursive: true });
const prefs = path.join(dir, 'pairs.jsonl');
writeFileSync(prefs, pairs.map((p) => JSON.stringify(p)).join('\n') + '\n');
process.stderr.write(`SFT model: exact match ${(100 * before).toFixed(1)}% on ${test.length} held-out prompts; ${pairs.length} pairs (${own} of its own mistakes) from ${train.length} training prompts\n`);

// the control (--control): the same steps of task sft on the chosen answers alone, i.e. RPO's NLL term without DPO's
if (a.control) writeFileSync(prefs, pairs.map((p) => JSON.stringify({ messages: [...p.prompt, ...p.chosen] })).join('\n') + '\n');
const trainer = new AutoGLMTrainer({
  model: path.join(sftRun, 'model'),
  config: {
    ...(a.control ? { task: 'sft' } : { task: 'dpo', dpoBeta: n('beta'), rpoAlpha: n('rpo'), dpoLossType: a.loss as 'sigmoid', ...(a.loss === 'simpo' ? { simpoGamma: n('gamma') } : {}) }), method: a.method as 'lora' | 'full', maxSteps: n('steps'), epochs: 1000, batchSize: n('batch-size'), learningRate: n('lr'), maxLength: n('max-length'), mixedPrecision: 'fp32', scheduler: 'cosine', warmupRatio: 0.05, weightDecay: 0, evalEvery: 0,
    logEvery: 50, sampleGenerations: 4, outputDir: path.join(dir, 'run'), ...(a.method === 'lora' ? { loraRank: 16 } : {}),
  },
});
trainer.on('step', (s: { step: number; loss: number; rewards?: { accuracy: number; margin: number } }) => {
  if (s.step % 50 === 0) process.stderr.write(`step ${s.step} loss ${s.loss.toFixed(4)} reward accuracy ${s.rewards?.accuracy.toFixed(3)} margin ${s.rewards?.margin.toFixed(3)}\n`);
});
const t1 = performance.now();
const h = await trainer.finetune({ dataset: prefs, maxEval: 200 });
const trainS = (performance.now() - t1) / 1e3;
const after = exact((await trainer.predict(test.map((x) => x.messages[0]!.content))) as ChatPrediction[], test);
console.log(JSON.stringify({
  tag: a.tag, task: a.control ? 'sft (control)' : 'dpo', method: a.method, loss: a.loss, beta: n('beta'), ...(a.loss === 'simpo' ? { gamma: n('gamma') } : {}), rpo_alpha: n('rpo'), lr: n('lr'), steps: h.stepsDone, negatives: a.negatives, pairs: pairs.length, own_mistakes: own, prompts: train.length, held_out: test.length,
  exact_match_sft: before, exact_match_dpo: after, val_reward_accuracy: h.preference?.validation?.accuracy, val_margin: h.preference?.validation?.margin,
  generation_s: +genS.toFixed(1), train_time_s: +trainS.toFixed(1), run: path.join(dir, 'run'),
}));
