// Per-kernel time of the gpt2-full / gpt2-lora training step (node --import tsx scripts/profile-gpt2.ts [full|lora] [bf16] [steps]).
import { TinyGPT } from '../src/models/tiny-gpt.js';
import { randint } from '../src/tensor/creation.js';
import { manualSeed } from '../src/nn/init.js';
import { AdamW } from '../src/optim/adam.js';
import { LoraModel } from '../src/peft/index.js';
import { autocast } from '../src/tensor/precision.js';
import { castCacheCounts } from '../src/tensor/versions.js';
import { installKernelTimer, now } from './kernel-timer.js';

const timer = installKernelTimer();
const lora = process.argv[2] === 'lora';
const compute = process.argv[3] === 'bf16' ? 'bf16' : 'f32';
const N = Number(process.argv[4] ?? 2);
manualSeed(0);
const m = new TinyGPT({ vocabSize: 50257, contextLength: 1024, dim: 768, heads: 12, layers: 12, mlpDim: 3072 });
if (lora) new LoraModel(m, { r: 8, alpha: 16, targetModules: ['qkv'] });
const idx = randint([8, 128], 50257, 1), y = randint([8, 128], 50257, 2);
const opt = new AdamW(m.trainableParameters(), { lr: 1e-4, weightDecay: 0.01 });
const step = () => { opt.zeroGrad(); const l = autocast(compute, () => m.loss(idx, y)); l.backward(); opt.step(); };
step();
timer.clear();
castCacheCounts(true);
const t0 = now();
for (let i = 0; i < N; i++) step();
timer.report(`gpt2-${lora ? 'lora' : 'full'} ${compute}`, (now() - t0) / N, N, 30);
const cc = castCacheCounts();
console.log(`weight copies per step: ${cc.hits / N} reused, ${cc.misses / N} made`);
