// Per-kernel time of the cls-full / cls-lora training step (node --import tsx scripts/profile-cls.ts [full|lora] [bf16]).
import { EncoderClassifier } from '../src/bench/model-workloads.js';
import { randint } from '../src/tensor/creation.js';
import { crossEntropy } from '../src/tensor/ops/nn.js';
import { manualSeed } from '../src/nn/init.js';
import { AdamW } from '../src/optim/adam.js';
import { LoraModel } from '../src/peft/index.js';
import { autocast } from '../src/tensor/precision.js';
import { castCacheCounts } from '../src/tensor/versions.js';
import { installKernelTimer, now } from './kernel-timer.js';

const timer = installKernelTimer();
const lora = process.argv[2] === 'lora';
const compute = process.argv[3] === 'bf16' ? 'bf16' : 'f32';
manualSeed(0);
const m = new EncoderClassifier();
if (lora) new LoraModel(m, { r: 8, alpha: 16, targetModules: ['qkv', 'proj', 'fc1', 'fc2'], modulesToSave: ['head'] });
const idx = randint([64, 32], 8002, 1), y = randint([64], 150, 2);
const opt = new AdamW(m.trainableParameters(), { lr: 1e-4, weightDecay: 0.01 });
const step = () => { opt.zeroGrad(); const l = autocast(compute, () => crossEntropy(m.forward(idx), y)); l.backward(); opt.step(); };
for (let i = 0; i < 3; i++) step();
timer.clear();
castCacheCounts(true);
const N = 10;
const t0 = now();
for (let i = 0; i < N; i++) step();
timer.report(`cls-${lora ? 'lora' : 'full'} ${compute}`, (now() - t0) / N, N, 40);
const cc = castCacheCounts();
console.log(`weight copies per step: ${cc.hits / N} reused, ${cc.misses / N} made`);
{
  const r0 = process.resourceUsage();
  const t1 = performance.now();
  for (let i = 0; i < N; i++) step();
  const r1 = process.resourceUsage();
  console.log(`minor faults per step ${((r1.minorPageFault - r0.minorPageFault) / N).toFixed(0)}, step ${((performance.now() - t1) / N).toFixed(1)} ms, sys ${((r1.systemCPUTime - r0.systemCPUTime) / 1000 / N).toFixed(1)} ms/step, user ${((r1.userCPUTime - r0.userCPUTime) / 1000 / N).toFixed(1)} ms/step`);
}
