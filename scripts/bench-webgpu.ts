/**
 * WebGPU kernels against a CPU backend, side by side in one run: the same kernels (test/webgpu/bench-kernels.ts)
 * timed on the native backend (else wasm, else portable) in this process and on WebGPU in headless Chromium.
 *   node --import tsx scripts/bench-webgpu.ts [--runs N]
 * Medians of N runs (default 5) after one warm-up; WebGPU times include submitting and waiting for the device.
 * Under SwiftShader (no GPU) WebGPU runs on the CPU in emulation: the figures then say nothing about GPU speed.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { backend } from '../src/backend/index.js';
import { KERNELS } from '../test/webgpu/bench-kernels.js';
import { runInChromium } from '../test/webgpu/browser.js';

const argv = process.argv.slice(2);
const runs = argv.includes('--runs') ? Number(argv[argv.indexOf('--runs') + 1]) : 5;
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer; got '${argv[argv.indexOf('--runs') + 1]}'`);

const cpu = backend();
const cpuMs = new Map<string, number>();
for (const k of KERNELS) {
  const call = k.setup({ rand: (n) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1), zeros: (n) => new Float32Array(n), k: cpu });
  const times: number[] = [];
  for (let r = 0; r <= runs; r++) {
    const t0 = performance.now();
    call();
    if (r > 0) times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  cpuMs.set(k.name, times[times.length >> 1]);
}

const here = path.dirname(fileURLToPath(import.meta.url));
const gpu = await runInChromium<{ adapter: string | null; rows: { name: string; ms: number; flop: number }[] }>(
  path.join(here, '..', 'test', 'webgpu', 'bench-page.ts'), 'runBench', runs, 600_000);
if (!gpu.adapter) {
  console.log('no WebGPU adapter in headless Chromium: nothing to compare');
  process.exit(1);
}
console.log(`cpu: ${cpu.describe()}\nwebgpu: ${gpu.adapter}\nmedian of ${runs} runs`);
if (gpu.adapter.includes('swiftshader')) console.log('NOTE: SwiftShader emulates the GPU on the CPU; these WebGPU times are not GPU speed');
const fmt = (ms: number, flop: number): string => `${ms.toFixed(2).padStart(9)} ms${flop ? ` ${(flop / ms / 1e6).toFixed(1).padStart(8)} GFLOP/s` : ''.padEnd(17)}`;
for (const r of gpu.rows) {
  const c = cpuMs.get(r.name) ?? NaN;
  console.log(`${r.name.padEnd(60)} cpu ${fmt(c, r.flop)} | webgpu ${fmt(r.ms, r.flop)} | webgpu/cpu time ${(r.ms / c).toFixed(2)}x`);
}
