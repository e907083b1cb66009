/**
 * WebGPU kernel timings for scripts/bench-webgpu.ts (bundled into a headless page): each kernel call is timed from
 * recording to the device finishing it (`sync`), median of `runs` after one warm-up.
 */
import { webgpuInBrowser } from '../../src/backend/webgpu/index.js';
import { KERNELS, type BenchKernel } from './bench-kernels.js';

async function bench(runs: number): Promise<{ adapter: string | null; rows: { name: string; ms: number; flop: number }[] }> {
  const G = await webgpuInBrowser();
  if (!G) return { adapter: null, rows: [] };
  const rows = [];
  for (const k of KERNELS as BenchKernel[]) {
    const call = k.setup({
      rand: (n) => G.upload(Float32Array.from({ length: n }, () => Math.random() * 2 - 1), 'f32'),
      zeros: (n) => G.alloc('f32', n),
      k: G,
    });
    const times: number[] = [];
    for (let r = 0; r <= runs; r++) {
      await G.ctx.sync();
      const t0 = performance.now();
      call();
      await G.ctx.sync();
      if (r > 0) times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    rows.push({ name: k.name, ms: times[times.length >> 1], flop: k.flop });
  }
  return { adapter: G.describe(), rows };
}

(globalThis as unknown as { runBench: typeof bench }).runBench = bench;
