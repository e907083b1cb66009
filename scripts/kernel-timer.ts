// Per-kernel timing for the profiling scripts: wraps every backend method with a timer and prints a table.
import { createRequire } from 'node:module';
import { backend, setBackend } from '../src/backend/index.js';
import type { Backend } from '../src/backend/backend.js';
import { setOpenblasCoreType } from '../src/backend/native.js';

export interface KernelTimer {
  /** Timing is recorded only while on. */
  on: boolean;
  clear(): void;
  /** Prints the step time, the time inside kernels and the top kernels, per step over `steps` steps. */
  report(label: string, stepMs: number, steps: number, top?: number): void;
}

/**
 * The clock: wall time, or with KERNEL_TIMER_CPU=1 the process's CPU time (user + system), which a loaded machine
 * disturbs far less; with one kernel thread (AUTOGLM_NUM_THREADS=1) that is each kernel's own cost, plus whatever V8's
 * collector threads ran meanwhile. KERNEL_TIMER_CPU=thread: the main thread's own CPU time (native addon), without those.
 */
const cpuClock = process.env.KERNEL_TIMER_CPU;
/** The calling thread's own CPU time (the addon's clock_gettime(CLOCK_THREAD_CPUTIME_ID)): leaves out V8's collector threads. */
function threadMsFn(): () => number {
  setOpenblasCoreType(); // this loads the addon before the backend does
  const addon = createRequire(import.meta.url)('../build/Release/autoglm_native.node') as { threadCpuMs(): number };
  return () => addon.threadCpuMs();
}
export const now = cpuClock === 'thread' ? threadMsFn()
  : cpuClock === '1' ? () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; } : () => performance.now();

export function installKernelTimer(): KernelTimer {
  const real = backend();
  const stats = new Map<string, { n: number; ms: number }>();
  const timer: KernelTimer = {
    on: true,
    clear: () => stats.clear(),
    report(label, stepMs, steps, top = 30) {
      const rows = [...stats.entries()].sort((a, b) => b[1].ms - a[1].ms);
      const kern = rows.reduce((a, [, s]) => a + s.ms, 0) / steps;
      console.log(`${label}: step ${stepMs.toFixed(1)} ms, in kernels ${kern.toFixed(1)} ms, outside ${(stepMs - kern).toFixed(1)} ms`);
      for (const [k, s] of rows.slice(0, top)) console.log(`${(s.ms / steps).toFixed(2).padStart(8)} ms ${String(s.n / steps).padStart(6)}x  ${k}`);
    },
  };
  setBackend(new Proxy(real, {
    get(t, k, r) {
      const v = Reflect.get(t, k, r);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        if (!timer.on) return (v as (...a: unknown[]) => unknown).apply(t, args);
        const t0 = now();
        const out = (v as (...a: unknown[]) => unknown).apply(t, args);
        let key = String(k);
        if (k === 'unary' || k === 'unaryBackward' || k === 'binary' || k === 'reduce') key += `:${args[0]}`;
        if (k === 'cast' && process.env.KERNEL_TIMER_CASTS) key += `:${args[1]}->${args[3]}:${(args[0] as { length: number }).length}`;
        if (k === 'scatterAdd') key += `:${(args[3] as { length: number }).length}`;
        if (k === 'stridedCopy') key += `:${JSON.stringify(args[1])}${JSON.stringify(args[2])}`;
        if (k === 'reduce') key += `:${args[2]}x${args[3]}x${args[4]}`;
        if (k === 'binary') key += `:${JSON.stringify(args[2])}${JSON.stringify(args[4])}${JSON.stringify(args[5])}`;
        if (k === 'matmul' || k === 'matmulLowp' || k === 'matmulToBf16') {
          // batch x M x N x K, then each operand's layout: N as stored, T transposed (BLAS's order: a, then b)
          const a = args[0] as { M: number; N: number; K: number; batch: number; transA: boolean; transB: boolean };
          key += `:${a.batch}x${a.M}x${a.N}x${a.K}:${a.transA ? 'T' : 'N'}${a.transB ? 'T' : 'N'}`;
        }
        const s = stats.get(key) ?? { n: 0, ms: 0 };
        s.n++;
        s.ms += now() - t0;
        stats.set(key, s);
        return out;
      };
    },
  }) as Backend);
  return timer;
}
