// The matrix products of a training step, timed where they run and again alone: each call's wall time inside the step
// (median over the timed steps) against the same call replayed on copies of its operands, back to back. Products are
// most of a bf16 step and run on the same oneDNN kernels as PyTorch's (both link the system's libdnnl): this says how
// much of the step they take and whether the step slows them (cold caches) beyond what they cost alone.
// node --import tsx scripts/profile-products.ts block|cls-lora|cls-full [bf16] [--steps N] [--all]
import { backend, setBackend } from '../src/backend/index.js';
import type { Backend, MatmulArgs } from '../src/backend/backend.js';
import { blockWorkload } from '../src/bench/workloads.js';
import { EncoderClassifier } from '../src/bench/model-workloads.js';
import { randint } from '../src/tensor/creation.js';
import { crossEntropy } from '../src/tensor/ops/nn.js';
import { manualSeed } from '../src/nn/init.js';
import { AdamW } from '../src/optim/adam.js';
import { LoraModel } from '../src/peft/index.js';
import { autocast } from '../src/tensor/precision.js';

const which = process.argv[2] ?? 'block';
const compute = process.argv[3] === 'bf16' ? 'bf16' : 'f32';
const N = process.argv.includes('--steps') ? Number(process.argv[process.argv.indexOf('--steps') + 1]) : 5;
const REPLAYS = 9;

interface Call { m: MatmulArgs; ms: number }
const real = backend();
let recording: Call[] | null = null;
setBackend(new Proxy(real, {
  get(t, k, r) {
    const v = Reflect.get(t, k, r);
    if (k !== 'matmul') return typeof v === 'function' ? v.bind(t) : v;
    return (m: MatmulArgs) => {
      const t0 = performance.now();
      real.matmul(m);
      const ms = performance.now() - t0;
      // copies taken after the timed call, so that copying does not warm the caches for it
      if (recording) recording.push({ m: { ...m, a: m.a.slice(), b: m.b.slice(), out: new Float32Array(m.out.length), bias: m.bias?.slice() ?? null }, ms });
    };
  },
}) as Backend);

let step: () => void;
if (which === 'block') {
  const w = blockWorkload();
  step = () => { w.step(compute); };
} else {
  manualSeed(0);
  const m = new EncoderClassifier();
  if (which === 'cls-lora') new LoraModel(m, { r: 8, alpha: 16, targetModules: ['qkv', 'proj', 'fc1', 'fc2'], modulesToSave: ['head'] });
  const idx = randint([64, 32], 8002, 1), y = randint([64], 150, 2);
  const opt = new AdamW(m.trainableParameters(), { lr: 1e-4, weightDecay: 0.01 });
  step = () => { opt.zeroGrad(); const l = autocast(compute, () => crossEntropy(m.forward(idx), y)); l.backward(); opt.step(); };
}
for (let i = 0; i < 3; i++) step();
// the step's own time first, without the recording's copies
const stepMs: number[] = [];
for (let s = 0; s < N; s++) {
  const t0 = performance.now();
  step();
  stepMs.push(performance.now() - t0);
}
const steps: Call[][] = [];
for (let s = 0; s < N; s++) {
  recording = [];
  step();
  steps.push(recording);
  recording = null;
}
const median = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];
let inStep = 0, alone = 0;
const rows: string[] = [];
steps[0].forEach(({ m }, i) => {
  const here = median(steps.map((c) => c[i].ms));
  const ts: number[] = [];
  for (let j = 0; j < REPLAYS; j++) {
    const t0 = performance.now();
    real.matmul(m);
    ts.push(performance.now() - t0);
  }
  const solo = median(ts);
  inStep += here;
  alone += solo;
  const gflop = (2 * m.batch * m.M * m.N * m.K) / 1e9;
  rows.push(`${String(i).padStart(3)} ${m.batch}x${m.M}x${m.N}x${m.K}${m.transA ? ' tA' : ''}${m.transB ? ' tB' : ''}${m.bias ? ' +bias' : ''}` +
    `${m.beta ? ` beta ${m.beta}` : ''}: in step ${here.toFixed(3)} ms (${(gflop / here * 1e3).toFixed(0)} GFLOP/s), alone ${solo.toFixed(3)} ms (x${(here / solo).toFixed(2)})`);
});
if (process.argv.includes('--all')) for (const r of rows) console.log(r);
const step1 = median(stepMs);
console.log(`${which} ${compute}: ${steps[0].length} products a step; step ${step1.toFixed(1)} ms (median of ${N}), ` +
  `its products ${inStep.toFixed(1)} ms in the step (${(100 * inStep / step1).toFixed(0)}%), ${alone.toFixed(1)} ms replayed alone (x${(inStep / alone).toFixed(2)})`);
console.log(real.describe());
