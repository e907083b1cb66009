/**
 * The WebGPU kernels against the portable backend, in headless Chromium (WebGPU through SwiftShader): every kernel
 * on random inputs (test/webgpu/cases-*.ts). Skips with the reason where Chromium, playwright-core or a WebGPU adapter
 * is missing; under CI=true that is a failure. AUTOGLM_WEBGPU_FILTER=<substring> runs only the matching cases.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { skipOrFail } from './helpers/ci.js';
import { browserMissing, runInChromium } from './webgpu/browser.js';

interface Report {
  adapter: string | null;
  results: { name: string; ok: boolean; detail: string }[];
  ms: number;
}

const here = path.dirname(fileURLToPath(import.meta.url));

test('WebGPU kernels equal the portable backend (headless Chromium)', { timeout: 900_000 }, async (t) => {
  const missing = await browserMissing();
  if (missing) return skipOrFail(t, 'Chromium with WebGPU', missing);
  const report = await runInChromium<Report>(path.join(here, 'webgpu', 'page.ts'), 'runKernelTests',
    process.env.AUTOGLM_WEBGPU_FILTER ?? '', 840_000);
  if (!report.adapter) return skipOrFail(t, 'a WebGPU adapter', 'navigator.gpu.requestAdapter() gave none in headless Chromium');
  t.diagnostic(`adapter: ${report.adapter}; ${report.results.length} checks in ${(report.ms / 1000).toFixed(1)} s`);
  assert.ok(report.results.length > 0, 'no case ran');
  const slow = report.results.filter((r) => r.ok && / ms$/.test(r.detail)).sort((a, b) => parseInt(b.detail) - parseInt(a.detail)).slice(0, 5);
  t.diagnostic(`slowest cases: ${slow.map((r) => `${r.name.replace(': runs without errors', '')} (${r.detail})`).join('; ')}`);
  for (const r of report.results) {
    if (r.name.includes('loss trajectory')) t.diagnostic(`${r.name}: ${r.detail}`);
    await t.test(r.name, () => assert.ok(r.ok, r.detail));
  }
});
