/**
 * The kernel test page's script (bundled by test/webgpu.test.ts): every case on the portable and the WebGPU
 * backend, results on `window.__kernelResults`.
 */
import { PortableBackend } from '../../src/backend/portable.js';
import { webgpuInBrowser } from '../../src/backend/webgpu/index.js';
import { Twin, type Result } from './twin.js';
import { elementwiseCases } from './cases-elementwise.js';
import { nnCases } from './cases-nn.js';
import { trainCases } from './train-case.js';
import { deviceCases } from './cases-device.js';

interface Report {
  adapter: string | null;
  results: Result[];
  ms: number;
}

async function main(filter: string): Promise<Report> {
  const t0 = performance.now();
  const G = await webgpuInBrowser();
  if (!G) return { adapter: null, results: [], ms: 0 };
  const P = new PortableBackend();
  const results: Result[] = [];
  let seed = 1;
  const variant0 = G.ctx.matmulVariant;
  // the matmul cases run on both matmul kernels (tiled, and direct: the software adapters' default); the rest on the adapter's
  const runs = [...elementwiseCases, ...nnCases, ...trainCases, ...deviceCases].flatMap((c) => c.name.startsWith('matmul')
    ? (['tiled', 'direct'] as const).map((v) => ({ c: { ...c, name: `${c.name} [${v} kernel]` }, v }))
    : [{ c, v: variant0 }]);
  for (const { c, v } of runs) {
    if (filter && !c.name.includes(filter)) continue;
    G.ctx.matmulVariant = v;
    const t = new Twin(G, seed++);
    const errors: string[] = [];
    const c0 = performance.now();
    G.ctx.device.pushErrorScope('validation');
    try {
      await c.run(t, P, G);
      results.push(...await t.results(c.name));
    } catch (e) {
      errors.push(String((e as Error).stack ?? e));
    }
    const gpuError = await G.ctx.device.popErrorScope();
    if (gpuError) errors.push(`WebGPU validation: ${gpuError.message}`);
    const ms = Math.round(performance.now() - c0);
    results.push({ name: `${c.name}: runs without errors`, ok: errors.length === 0, detail: errors.join('\n') || `${ms} ms` });
  }
  G.ctx.matmulVariant = variant0;
  return { adapter: G.describe(), results, ms: performance.now() - t0 };
}

(globalThis as unknown as { runKernelTests: (f: string) => Promise<Report> }).runKernelTests = main;
