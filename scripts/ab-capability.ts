// In-process A/B of one optional backend capability on a training workload's bf16 step: blocks of steps with the
// capability hidden (A) and present (B) alternate in one process, so that the host's slow drifts fall on both sides
// (a shared host varies 1.3-4x from minute to minute; separate processes compared across minutes say little).
//
//   node --import tsx scripts/ab-capability.ts <block|cls-full|cls-lora|gpt2-full|gpt2-lora> <capability> [blocks] [steps]
//
// e.g. `matmulToBf16` (products written in bf16). Prints each side's median of the blocks' median steps and the median
// of the per-block ratios B/A. CPU=1 times the process's CPU time (user + system) instead of wall time: with
// AUTOGLM_NUM_THREADS=1 that is the step's own work, which the host's contention disturbs far less.
import { backend } from '../src/backend/index.js';
import { blockWorkload } from '../src/bench/workloads.js';
import { EncoderClassifier } from '../src/bench/model-workloads.js';
import { TinyGPT } from '../src/models/tiny-gpt.js';
import { randint } from '../src/tensor/creation.js';
import { crossEntropy } from '../src/tensor/ops/nn.js';
import { manualSeed } from '../src/nn/init.js';
import { AdamW } from '../src/optim/adam.js';
import { LoraModel } from '../src/peft/index.js';
import { autocast } from '../src/tensor/precision.js';
import type { Tensor } from '../src/tensor/tensor.js';
import type { Module } from '../src/nn/module.js';

const [workload = 'block', capability = 'matmulToBf16'] = process.argv.slice(2);
const blocks = Number(process.argv[4] ?? 8), perBlock = Number(process.argv[5] ?? 3);

/** One bf16 training step of the workload, built as src/bench/model-workloads.ts builds it (AdamW; block: its own SGD). */
function stepOf(name: string): () => void {
  if (name === 'block') {
    const w = blockWorkload();
    return () => w.step('bf16');
  }
  manualSeed(0);
  let m: Module;
  let loss: () => Tensor;
  if (name === 'cls-full' || name === 'cls-lora') {
    const enc = new EncoderClassifier();
    if (name === 'cls-lora') new LoraModel(enc, { r: 8, alpha: 16, targetModules: ['qkv', 'proj', 'fc1', 'fc2'], modulesToSave: ['head'] });
    const idx = randint([64, 32], 8002, 1), y = randint([64], 150, 2);
    m = enc;
    loss = () => crossEntropy(enc.forward(idx), y);
  } else if (name === 'gpt2-full' || name === 'gpt2-lora') {
    const gpt = new TinyGPT({ vocabSize: 50257, contextLength: 1024, dim: 768, heads: 12, layers: 12, mlpDim: 3072 });
    if (name === 'gpt2-lora') new LoraModel(gpt, { r: 8, alpha: 16, targetModules: ['qkv'] });
    const idx = randint([8, 128], 50257, 1), y = randint([8, 128], 50257, 2);
    m = gpt;
    loss = () => gpt.loss(idx, y);
  } else {
    throw new Error(`ab-capability: unknown workload '${name}'; expected block, cls-full, cls-lora, gpt2-full or gpt2-lora`);
  }
  const opt = new AdamW(m.trainableParameters(), { lr: 1e-4, weightDecay: 0.01 });
  return () => { opt.zeroGrad(); autocast('bf16', loss).backward(); opt.step(); };
}

const be = backend() as unknown as Record<string, unknown>;
const value = be[capability];
if (value === undefined) throw new Error(`ab-capability: the ${backend().name} backend has no '${capability}' here; nothing to compare`);
const present = (on: boolean) => Object.defineProperty(be, capability, { value: on ? value : undefined, configurable: true, writable: true });
const clock = process.env.CPU === '1' ? () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; } : () => performance.now();
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

const step = stepOf(workload);
for (const on of [false, true]) { // warm-up, each side: primitives, pools, weight copies
  present(on);
  step();
}
const side: Record<'A' | 'B', number[]> = { A: [], B: [] };
for (let b = 0; b < blocks; b++) {
  for (const k of (b % 2 ? ['B', 'A'] : ['A', 'B']) as ('A' | 'B')[]) {
    present(k === 'B');
    const t: number[] = [];
    for (let i = 0; i < perBlock; i++) {
      const t0 = clock();
      step();
      t.push(clock() - t0);
    }
    side[k].push(median(t));
  }
}
present(true);
const ratios = side.A.map((a, i) => side.B[i] / a);
console.log(`${backend().describe()}`);
console.log(`${workload} bf16, ${blocks} blocks of ${perBlock} steps each side, ${process.env.CPU === '1' ? 'CPU' : 'wall'} time: ` +
  `without ${capability} (A) ${median(side.A).toFixed(1)} ms, with it (B) ${median(side.B).toFixed(1)} ms; ` +
  `B/A per block: median ${median(ratios).toFixed(3)} [${ratios.map((r) => r.toFixed(2)).join(' ')}]`);
