// Per-kernel time of the block workload step: wraps every backend method with a timer.
import { backend, setBackend } from '../src/backend/index.js';
import type { Backend } from '../src/backend/backend.js';
import { blockWorkload } from '../src/bench/workloads.js';

const real = backend();
const stats = new Map<string, { n: number; ms: number }>();
const proxy = new Proxy(real, {
  get(t, k, r) {
    const v = Reflect.get(t, k, r);
    if (typeof v !== 'function' || k === 'name') return v;
    return (...args: unknown[]) => {
      const t0 = performance.now();
      const out = (v as (...a: unknown[]) => unknown).apply(t, args);
      let key = String(k);
      if (k === 'unary' || k === 'unaryBackward' || k === 'binary' || k === 'reduce') key += `:${args[0]}`;
      if (k === 'matmul') { const a = args[0] as { M: number; N: number; K: number; batch: number; transA: boolean; transB: boolean }; key += `:${a.batch}x${a.M}x${a.N}x${a.K}${a.transA ? 'T' : ''}${a.transB ? 'T' : ''}`; }
      const s = stats.get(key) ?? { n: 0, ms: 0 };
      s.n++; s.ms += performance.now() - t0;
      stats.set(key, s);
      return out;
    };
  },
}) as Backend;
setBackend(proxy);
const dtype = process.argv[2] === 'bf16' ? 'bf16' : 'f32';
const w = blockWorkload();
const step = () => w.step(dtype);
for (let i = 0; i < 3; i++) step();
stats.clear();
const N = 10;
const t0 = performance.now();
for (let i = 0; i < N; i++) step();
const total = (performance.now() - t0) / N;
let kern = 0;
const rows = [...stats.entries()].sort((a, b) => b[1].ms - a[1].ms);
for (const [, s] of rows) kern += s.ms / N;
console.log(`step ${total.toFixed(1)} ms, in kernels ${kern.toFixed(1)} ms, outside ${(total - kern).toFixed(1)} ms`);
for (const [k, s] of rows.slice(0, 30)) console.log(`${(s.ms / N).toFixed(2).padStart(7)} ms  ${String(s.n / N).padStart(4)}x  ${k}`);
