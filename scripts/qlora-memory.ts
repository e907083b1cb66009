/**
 * What a quantised frozen base saves on a Llama-shaped model: LoRA on every Linear (QLoRA's targets) of a randomly
 * initialised decoder in TinyLlama-1.1B's shape (22 layers, hidden 2048, 32 heads, 4 key-value heads, MLP 5632,
 * vocabulary 32000), trained a few AdamW steps with base none | bf16 | int8 | nf4 (each in a fresh process, so each
 * peak is its own). Prints one row per base: the frozen weights' bytes after quantisation, the training phase's peak
 * RSS (after set-up: the f32 model built before it is quantised is not counted, as a checkpoint loaded in 16 bits
 * never has it) and the median step time.
 *
 *   node --import tsx scripts/qlora-memory.ts [--layers 22] [--seq 256] [--batch 1] [--steps 3] [--warmup 1]
 *     [--bases none,bf16,int8,nf4] [--threads N]
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { LlamaForCausalLM } from '../src/models/llama/model.js';
import { LoraModel, quantizeBase, type BaseQuantization } from '../src/peft/index.js';
import { AdamW } from '../src/optim/adam.js';
import { manualSeed } from '../src/nn/init.js';
import { randint } from '../src/tensor/creation.js';
import { lmBatchLoss } from '../src/train/causal-lm.js';
import { collectGarbage, resetPeakRss, trainPeakRssMb } from '../src/bench/measure.js';
import { applyThreads } from '../src/cli/options.js';
import { parseRopeScaling } from '../src/models/hf/layers.js';

const { values: a } = parseArgs({
  options: {
    layers: { type: 'string', default: '22' }, seq: { type: 'string', default: '256' }, batch: { type: 'string', default: '1' },
    steps: { type: 'string', default: '3' }, warmup: { type: 'string', default: '1' }, bases: { type: 'string', default: 'none,bf16,int8,nf4' },
    base: { type: 'string' }, threads: { type: 'string' },
  },
});

if (!a.base) {
  // the parent: one child process per base, then the table
  console.log(`TinyLlama-1.1B's shape with ${a.layers} layers, LoRA r 16 on every Linear, batch ${a.batch} x ${a.seq} tokens, ${a.steps} steps (+${a.warmup} warm-up)`);
  console.log('| base | frozen weights (MB) | train peak RSS (MB) | step (ms, median) | loss first -> last |');
  console.log('|---|---|---|---|---|');
  const script = fileURLToPath(import.meta.url);
  for (const base of a.bases.split(',')) {
    const args = ['--import', 'tsx', script, '--base', base, ...Object.entries(a).filter(([k, v]) => k !== 'base' && k !== 'bases' && v !== undefined).flatMap(([k, v]) => [`--${k}`, String(v)])];
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (r.status !== 0) throw new Error(`base ${base}: exit ${r.status}`);
    const j = JSON.parse(r.stdout.trim().split('\n').pop() as string);
    console.log(`| ${base} | ${j.frozen_mb} | ${j.train_peak_rss_mb} | ${j.ms_per_step} | ${j.loss_first} -> ${j.loss_last} |`);
  }
} else {
  if (a.threads) applyThreads(Number(a.threads));
  const base = a.base as BaseQuantization | 'none';
  const B = Number(a.batch), T = Number(a.seq), V = 32000;
  manualSeed(0);
  const model = new LlamaForCausalLM({
    modelType: 'llama', vocabSize: V, hiddenSize: 2048, intermediateSize: 5632, numLayers: Number(a.layers), numHeads: 32, numKVHeads: 4,
    headDim: 64, rotaryDim: 64, ropeTheta: 10000, ropeScaling: parseRopeScaling(null, 'tinyllama'), eps: 1e-5, qkvBias: false, oBias: false, mlpBias: false,
    tieWordEmbeddings: false, slidingWindow: null, numLabels: 2,
  });
  for (const p of model.parameters()) p.requiresGrad = false;
  const lora = new LoraModel(model, { r: 16, alpha: 32, targetModules: 'all-linear' });
  let frozen = 0;
  for (const [n, p] of model.namedParameters()) if (!n.includes('lora_')) frozen += p.nbytes;
  if (base !== 'none') quantizeBase(model, base);
  frozen = 0;
  for (const [n, p] of model.namedParameters()) if (!n.includes('lora_')) frozen += p.nbytes;
  const opt = new AdamW(lora.parameterGroups({ lr: 1e-4 }), { lr: 1e-4, weightDecay: 0 });
  const seqs = Array.from({ length: B }, (_, i) => Array.from(randint([T], V, 100 + i).i32('ids')));
  collectGarbage();
  resetPeakRss();
  const times: number[] = [], losses: number[] = [];
  for (let s = 0; s < Number(a.warmup) + Number(a.steps); s++) {
    const t0 = performance.now();
    opt.zeroGrad();
    const loss = lmBatchLoss(model, seqs, 0);
    losses.push(loss.item());
    loss.backward();
    opt.step();
    if (s >= Number(a.warmup)) times.push(performance.now() - t0);
  }
  times.sort((x, y) => x - y);
  console.log(JSON.stringify({
    base, frozen_mb: (frozen / 2 ** 20).toFixed(0), train_peak_rss_mb: trainPeakRssMb().toFixed(0), ms_per_step: times[Math.floor(times.length / 2)].toFixed(0),
    loss_first: losses[0].toFixed(4), loss_last: losses[losses.length - 1].toFixed(4),
  }));
}
