/**
 * The cls-lora training step (bf16 autocast) with loraLinear's three bf16 paths alternated step by step in one
 * process, so that a noisy host's drifts fall on all of them alike (issue #17):
 *
 *   node --import tsx scripts/bench-lora-step.ts [--rounds 20] [--steps 2]
 *
 * rows kernel: the rank-r products in the pass that casts the rows (loraRows, loraOuter; the path taken where bf16
 * runs in hardware); appended, products: the factors appended to the base product, their own products by oneDNN (the
 * two kernels hidden); two products: the composition (castRowsBf16 hidden too). Prints each path's median step and
 * the first path's ratio to the others. Each round runs every path for --steps steps, in a rotating order.
 */
import { backend } from '../src/backend/index.js';
import { EncoderClassifier } from '../src/bench/model-workloads.js';
import { randint } from '../src/tensor/creation.js';
import { crossEntropy } from '../src/tensor/ops/nn.js';
import { manualSeed } from '../src/nn/init.js';
import { AdamW } from '../src/optim/adam.js';
import { LoraModel } from '../src/peft/index.js';
import { autocast } from '../src/tensor/precision.js';
import { LORA_BF16_PATHS, withHidden } from './lora-paths.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: number) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : dflt);
const rounds = opt('--rounds', 20), steps = opt('--steps', 2);
const be = backend();
console.log(be.describe());
if (!be.nativeBf16) console.log('this backend has no bf16 products in hardware: every path takes the composition');

manualSeed(0);
const m = new EncoderClassifier();
new LoraModel(m, { r: 8, alpha: 16, targetModules: ['qkv', 'proj', 'fc1', 'fc2'], modulesToSave: ['head'] });
const idx = randint([64, 32], 8002, 1), y = randint([64], 150, 2);
const optim = new AdamW(m.trainableParameters(), { lr: 1e-4, weightDecay: 0.01 });
const step = () => { optim.zeroGrad(); const l = autocast('bf16', () => crossEntropy(m.forward(idx), y)); l.backward(); optim.step(); };

const paths = LORA_BF16_PATHS;
const timedPath = (hidden: string[]): number => withHidden(hidden, () => {
  step(); // the first step after a switch makes the other path's buffer sizes: not timed
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) step();
  return (performance.now() - t0) / steps;
});
for (const [, h] of paths) timedPath(h);
const t = paths.map(() => [] as number[]);
for (let r = 0; r < rounds; r++) {
  for (let j = 0; j < paths.length; j++) {
    const k = (r + j) % paths.length;
    t[k].push(timedPath(paths[k][1]));
  }
}
const median = (x: number[]) => [...x].sort((p, q) => p - q)[x.length >> 1];
const med = t.map(median);
console.log(`cls-lora bf16 step, ${rounds} rounds of ${steps} steps a path: ${paths.map(([n], k) => `${n} ${med[k].toFixed(1)} ms`).join(', ')}; ratios ${med.slice(1).map((v) => (med[0] / v).toFixed(3)).join(', ')}`);
