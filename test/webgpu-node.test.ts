/**
 * The WebGPU kernels against the portable backend in Node, through the optional `webgpu` package (Dawn), where the
 * machine has a GPU driver. Skips with the reason where Dawn finds no adapter (the Chromium test,
 * test/webgpu.test.ts, is the one CI requires). Chromium's SwiftShader Vulkan driver
 * (VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json) gives Dawn an adapter, but there every kernel with a
 * workgroup barrier (matmul, reductions, norms, attention) never completes (measured with webgpu 0.6.2 and
 * Chromium 156's SwiftShader), so that adapter is skipped unless AUTOGLM_WEBGPU_NODE_SWIFTSHADER=1.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PortableBackend } from '../src/backend/portable.js';
import { Twin } from './webgpu/twin.js';
import { elementwiseCases } from './webgpu/cases-elementwise.js';
import { nnCases } from './webgpu/cases-nn.js';
import { trainCases } from './webgpu/train-case.js';
import { deviceCases } from './webgpu/cases-device.js';


const { loadWebGpuNode } = await import('../src/backend/webgpu/node.js');
const found = await loadWebGpuNode();
const swiftshader = found !== null && found.describe().includes('swiftshader') && process.env.AUTOGLM_WEBGPU_NODE_SWIFTSHADER !== '1';
const G = swiftshader ? null : found;
const why = swiftshader ? 'the adapter is SwiftShader, where kernels with workgroup barriers hang under Dawn in Node'
  : 'no WebGPU adapter in Node (see the notice above)';
const P = new PortableBackend();
const filter = process.env.AUTOGLM_WEBGPU_FILTER ?? '';

test('WebGPU kernels equal the portable backend (Node, Dawn)', { skip: G ? false : why, timeout: 600_000 }, async (t) => {
  if (!G) return;
  t.diagnostic(`adapter: ${G.describe()}`);
  let seed = 1;
  for (const c of [...elementwiseCases, ...nnCases, ...trainCases, ...deviceCases]) {
    if (filter && !c.name.includes(filter)) continue;
    const twin = new Twin(G, seed++);
    await t.test(c.name, async (st) => {
      G.ctx.device.pushErrorScope('validation');
      await c.run(twin, P, G);
      const results = await twin.results(c.name);
      const err = await G.ctx.device.popErrorScope();
      assert.equal(err, null, err?.message);
      for (const r of results) {
        if (r.name.includes('loss trajectory')) st.diagnostic(`${r.name}: ${r.detail}`);
        assert.ok(r.ok, `${r.name}: ${r.detail}`);
      }
    });
  }
});
