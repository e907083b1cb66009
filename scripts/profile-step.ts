// Per-kernel time of fine-tuning steps on open-autoglm-base (wraps every backend method with a timer).
import { backend, setBackend } from '../src/backend/index.js';
import type { Backend } from '../src/backend/backend.js';
import { AutoGLMTrainer } from '../src/train/index.js';

const real = backend();
const stats = new Map<string, { n: number; ms: number }>();
let on = false;
setBackend(new Proxy(real, {
  get(t, k, r) {
    const v = Reflect.get(t, k, r);
    if (typeof v !== 'function') return v;
    return (...args: unknown[]) => {
      if (!on) return (v as (...a: unknown[]) => unknown).apply(t, args);
      const t0 = performance.now();
      const out = (v as (...a: unknown[]) => unknown).apply(t, args);
      let key = String(k);
      if (k === 'unary' || k === 'unaryBackward' || k === 'binary' || k === 'reduce') key += `:${args[0]}`;
      if (k === 'matmul') { const a = args[0] as { M: number; N: number; K: number; batch: number; transA: boolean; transB: boolean }; key += `:${a.batch}x${a.M}x${a.N}x${a.K}`; }
      const s = stats.get(key) ?? { n: 0, ms: 0 };
      s.n++; s.ms += performance.now() - t0;
      stats.set(key, s);
      return out;
    };
  },
}) as Backend);
const method = (process.argv[2] ?? 'lora') as 'lora';
const t = new AutoGLMTrainer({ config: { method, epochs: 1, maxSteps: 25, batchSize: 32, outputDir: '/tmp/prof-run', logEvery: 100 } });
let t0 = 0;
t.on('step', (l: { step: number }) => { if (l.step === 5) { on = true; t0 = performance.now(); } });
await t.finetune({ dataset: 'clinc150', maxTrain: 2000, maxEval: 64 });
const N = 20;
const total = (performance.now() - t0) / N;
const rows = [...stats.entries()].sort((a, b) => b[1].ms - a[1].ms);
const kern = rows.reduce((a, [, s]) => a + s.ms, 0) / N;
console.log(`${method}: step ${total.toFixed(1)} ms (incl. final eval), kernels ${kern.toFixed(1)} ms`);
for (const [k, s] of rows.slice(0, 25)) console.log(`${(s.ms / N).toFixed(2).padStart(8)} ms ${String(s.n / N).padStart(6)}x ${k}`);
