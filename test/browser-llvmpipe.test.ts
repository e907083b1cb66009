/**
 * Chromium's WebGPU on Mesa's llvmpipe (src/web/llvmpipe.ts): the launch options, the environment switch that the
 * kernel tests read, and Xvfb itself. The page on llvmpipe is exercised by `scripts/browser-main-job.ts
 * --chromium-llvmpipe` and `AUTOGLM_CHROMIUM_ADAPTER=llvmpipe node --import tsx --test test/webgpu.test.ts`.
 * Where Xvfb or Mesa's GL is missing the Xvfb checks skip with the reason, and fail under CI=true (scripts/setup.sh
 * installs xvfb): the page on llvmpipe is how a machine without a GPU runs the page's WebGPU path at a usable pace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../src/errors.js';
import { requirePiece } from './helpers/ci.js';
import { runInChromium } from './webgpu/browser.js';
import { chromiumAdapterFromEnv, webgpuLaunchOptions } from '../src/web/headless.js';
import { LLVMPIPE_CHROMIUM_FLAGS, llvmpipeUnavailable, startXvfb } from '../src/web/llvmpipe.js';

function withEnv<T>(value: string | undefined, f: () => T): T {
  const old = process.env.AUTOGLM_CHROMIUM_ADAPTER;
  if (value === undefined) delete process.env.AUTOGLM_CHROMIUM_ADAPTER;
  else process.env.AUTOGLM_CHROMIUM_ADAPTER = value;
  try {
    return f();
  } finally {
    if (old === undefined) delete process.env.AUTOGLM_CHROMIUM_ADAPTER;
    else process.env.AUTOGLM_CHROMIUM_ADAPTER = old;
  }
}

test('AUTOGLM_CHROMIUM_ADAPTER: unset, empty or default is the default adapter; llvmpipe is llvmpipe; anything else is refused', () => {
  assert.equal(withEnv(undefined, chromiumAdapterFromEnv), 'default');
  assert.equal(withEnv('', chromiumAdapterFromEnv), 'default');
  assert.equal(withEnv('default', chromiumAdapterFromEnv), 'default');
  assert.equal(withEnv('llvmpipe', chromiumAdapterFromEnv), 'llvmpipe');
  assert.throws(() => withEnv('lavapipe', chromiumAdapterFromEnv), (e: unknown) => e instanceof ConfigError && /AUTOGLM_CHROMIUM_ADAPTER.*'lavapipe'/.test(e.message));
});

test('webgpuLaunchOptions: headless SwiftShader by default; llvmpipe runs on the given display with the GL-ES flags', () => {
  const d = webgpuLaunchOptions('default', null, ['disable_robustness']);
  assert.equal(d.headless, true);
  assert.deepEqual(d.args, ['--enable-unsafe-webgpu', '--enable-dawn-features=disable_robustness']);
  assert.equal(d.env, undefined);

  const l = webgpuLaunchOptions('llvmpipe', ':7');
  assert.equal(l.headless, false);
  assert.equal(l.env?.DISPLAY, ':7');
  assert.deepEqual(l.args, ['--enable-unsafe-webgpu', ...LLVMPIPE_CHROMIUM_FLAGS]);
  for (const f of ['--use-webgpu-adapter=opengles', '--force-webgpu-compat', '--use-angle=gl', '--ozone-platform=x11']) assert.ok(l.args.includes(f), f);
  assert.deepEqual(l.ignoreDefaultArgs, ['--use-angle=swiftshader-webgl']);

  assert.throws(() => webgpuLaunchOptions('llvmpipe', null), (e: unknown) => e instanceof ConfigError && /X display/.test(e.message));
  assert.throws(() => webgpuLaunchOptions('vulkan' as 'default', null), (e: unknown) => e instanceof ConfigError && /'vulkan'/.test(e.message));
});

const why = llvmpipeUnavailable();
const skip = requirePiece('Xvfb and Mesa llvmpipe', why === null, why ?? '');
test('startXvfb gives a display of its own and stops it', { skip }, async () => {
  const x = await startXvfb();
  try {
    assert.match(x.display, /^:\d+$/);
    assert.ok(existsSync(`/tmp/.X11-unix/X${x.display.slice(1)}`), `no socket for display ${x.display}`);
  } finally {
    await x.close();
  }
  await x.close(); // a second close is harmless
});

interface KernelReport {
  adapter: string | null;
  results: { name: string; ok: boolean; detail: string }[];
}

test('Chromium on llvmpipe: the page gets the llvmpipe adapter (not SwiftShader) and a device-resident training run equals portable',
  { skip, timeout: 300_000 }, async (t) => {
    const page = path.join(path.dirname(fileURLToPath(import.meta.url)), 'webgpu', 'page.ts');
    const old = process.env.AUTOGLM_CHROMIUM_ADAPTER;
    process.env.AUTOGLM_CHROMIUM_ADAPTER = 'llvmpipe'; // read by runInChromium after its first await
    let r: KernelReport;
    try {
      r = await runInChromium<KernelReport>(page, 'runKernelTests', 'a device-resident training run', 280_000);
    } finally {
      if (old === undefined) delete process.env.AUTOGLM_CHROMIUM_ADAPTER;
      else process.env.AUTOGLM_CHROMIUM_ADAPTER = old;
    }
    assert.ok(r.adapter, 'navigator.gpu.requestAdapter() gave no adapter under Xvfb');
    t.diagnostic(`adapter: ${r.adapter}`);
    assert.match(r.adapter, /llvmpipe/i);
    assert.doesNotMatch(r.adapter, /swiftshader/i);
    assert.ok(r.results.length > 1, 'the case did not run');
    for (const x of r.results) assert.ok(x.ok, `${x.name}: ${x.detail}`);
  });
