/**
 * The block workload (src/bench/block.ts) trained through the tensor layer on the WebGPU backend in headless Chromium
 * (SwiftShader) follows the native backend's loss trajectory (portable where the addon is missing, outside CI). The
 * model is the workload's (d256 h4 ff1024, head to 512 classes) and lr 0.5 as test/block.test.ts, so that the steps
 * move the loss; SwiftShader runs the kernels on the CPU, so the batch is cut to AUTOGLM_WEBGPU_BLOCK_BATCH rows
 * (default 1 of the workload's 8, the same first rows on both sides) and AUTOGLM_WEBGPU_BLOCK_STEPS steps (default 5).
 * Under CI=true a missing Chromium, playwright-core or adapter fails the test.
 */
import { ConfigError } from '../src/errors.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { backend } from '../src/backend/index.js';
import { blockWorkload } from '../src/bench/block.js';
import { skipOrFail } from './helpers/ci.js';
import { browserMissing, runInChromium } from './webgpu/browser.js';
import type { BlockReport } from './webgpu/block-page.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const STEPS = Number(process.env.AUTOGLM_WEBGPU_BLOCK_STEPS ?? 5);
const BATCH = Number(process.env.AUTOGLM_WEBGPU_BLOCK_BATCH ?? 1);
/** AUTOGLM_WEBGPU_PROFILE=1: one more step's dispatches timed one at a time, by kernel (printed). */
const PROFILE = process.env.AUTOGLM_WEBGPU_PROFILE === '1';
/** AUTOGLM_WEBGPU_MATMUL=tiled|direct: the matmul kernel (default: the adapter's, direct on software adapters). */
const MATMUL = process.env.AUTOGLM_WEBGPU_MATMUL;
if (MATMUL !== undefined && MATMUL !== 'tiled' && MATMUL !== 'direct') throw new ConfigError(`AUTOGLM_WEBGPU_MATMUL must be 'tiled' or 'direct'; got '${MATMUL}'`);
const LR = 0.5;

test('block workload: WebGPU (tensor layer on the device) follows the native loss trajectory', { timeout: 900_000 }, async (t) => {
  const missing = await browserMissing();
  if (missing) return skipOrFail(t, 'Chromium with WebGPU', missing);
  const ref = backend();
  const w = blockWorkload(LR, { batch: BATCH });
  const t0 = performance.now();
  const cpu = Array.from({ length: STEPS }, () => w.step('f32'));
  t.diagnostic(`${ref.name}: ${cpu.map((v) => v.toPrecision(9)).join(' ')} (${((performance.now() - t0) / STEPS).toFixed(0)} ms/step)`);
  const r = await runInChromium<BlockReport>(path.join(here, 'webgpu', 'block-page.ts'), 'runBlock', { steps: STEPS, batch: BATCH, lr: LR, profile: PROFILE, matmul: MATMUL }, 840_000);
  if (!r.adapter) return skipOrFail(t, 'a WebGPU adapter', 'navigator.gpu.requestAdapter() gave none in headless Chromium');
  t.diagnostic(`${r.adapter}: ${r.losses.map((v) => v.toPrecision(9)).join(' ')} (ms per step: ${r.ms.join(', ')}; ` +
    `uploads in the last step: ${r.uploadsLastStep})`);
  if (r.profile) {
    const total = r.profile.reduce((s, p) => s + p.ms, 0);
    t.diagnostic(`profile of one step (dispatches timed alone): ${r.profile.reduce((s, p) => s + p.dispatches, 0)} dispatches, ${total.toFixed(0)} ms of kernels; ` +
      r.profile.map((p) => `${p.kernel} ${p.ms.toFixed(0)} ms/${p.dispatches}`).join(', '));
  }
  const deltas = r.losses.map((v, i) => Math.abs(v - cpu[i]) / Math.abs(cpu[i]));
  t.diagnostic(`relative loss deltas: ${deltas.map((d) => d.toExponential(2)).join(' ')}`);
  assert.equal(r.losses.length, STEPS);
  assert.ok(cpu[STEPS - 1] < cpu[0], `the loss goes down on ${ref.name}: ${cpu.join(', ')}`);
  deltas.forEach((d, i) => assert.ok(d <= 1e-4, `step ${i}: webgpu ${r.losses[i]} vs ${ref.name} ${cpu[i]} (relative ${d})`));
  assert.ok(r.onDevice, 'parameters and the loss live on the device');
  assert.equal(r.selected, 'webgpu', 'initBrowserBackend() picks WebGPU where navigator.gpu gives an adapter');
  assert.match(r.syncRead, /^DeviceError: /, 'a synchronous read of a device tensor throws a DeviceError');
  // CPU-only paths on device tensors: a DeviceError naming the op, never values read as zeros or NaN
  const names: Record<string, RegExp> = { toArray: /'toFlatArray' \/ 'toArray' \/ 'item'/, gradNorm: /'sumSquares'/,
    embedding: /'embedding' is a device tensor/, 'Float32Array.from': /iteration of a WebGPU device array/ };
  for (const [what, re] of Object.entries(names)) {
    assert.match(r.cpuOnly[what] ?? 'not tried', new RegExp(`^DeviceError: .*${re.source}`), `${what} on device tensors`);
  }
  // per step: the targets (crossEntropy forward and backward) and small constants; never a weight or an activation
  assert.ok(r.uploadsLastStep <= 8, `uploads in a step: ${r.uploadsLastStep}`);
});
