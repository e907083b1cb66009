// Per-kernel time of fine-tuning steps on open-autoglm-base (node --import tsx scripts/profile-step.ts [lora|full|head]).
import { AutoGLMTrainer } from '../src/train/index.js';
import { installKernelTimer } from './kernel-timer.js';

const timer = installKernelTimer();
timer.on = false;
const method = (process.argv[2] ?? 'lora') as 'lora';
const t = new AutoGLMTrainer({ config: { method, epochs: 1, maxSteps: 25, batchSize: 32, outputDir: '/tmp/prof-run', logEvery: 100 } });
let t0 = 0;
t.on('step', (l: { step: number }) => { if (l.step === 5) { timer.on = true; t0 = performance.now(); } });
await t.finetune({ dataset: 'clinc150', maxTrain: 2000, maxEval: 64 });
const N = 20;
timer.report(`${method} (incl. final eval)`, (performance.now() - t0) / N, N, 25);
