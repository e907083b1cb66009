/**
 * Backend choice in Node (#22 item 5): WebGPU only where asked for (`initBackend({ prefer: 'webgpu' })` or
 * AUTOGLM_BACKEND=webgpu with `await initBackend()`), a ConfigError naming why where Dawn has no adapter, never
 * picked by default. Each case in a child process (the choice is made once per process).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const probe = fileURLToPath(new URL('./helpers/init-backend-probe.ts', import.meta.url));

function run(prefer: string, env: Record<string, string> = {}, how = 'init'): { name?: string; current?: string; error?: string; message?: string } {
  const e: NodeJS.ProcessEnv = { ...process.env, ...env };
  if (!('AUTOGLM_BACKEND' in env)) delete e.AUTOGLM_BACKEND;
  const out = execFileSync(process.execPath, ['--import', 'tsx', probe, prefer, how], { env: e, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return JSON.parse(out.trim().split('\n').at(-1) as string);
}

test('default and auto: a CPU backend, never WebGPU', () => {
  for (const prefer of ['-', 'auto']) {
    const r = run(prefer);
    assert.ok(['native', 'wasm', 'portable'].includes(r.name as string), JSON.stringify(r));
  }
  assert.equal(run('portable').name, 'portable');
});

test('a bad preference is a ConfigError naming the values', () => {
  const r = run('cuda');
  assert.equal(r.error, 'ConfigError');
  assert.match(r.message as string, /initBackend's 'prefer' must be 'auto', 'native', 'wasm', 'portable' or 'webgpu'; got 'cuda'/);
  const e = run('-', { AUTOGLM_BACKEND: 'gpu' });
  assert.equal(e.error, 'ConfigError');
  assert.match(e.message as string, /AUTOGLM_BACKEND must be/);
});

test("AUTOGLM_BACKEND=webgpu: backend() refuses (it is synchronous) and points at initBackend", () => {
  const r = run('-', { AUTOGLM_BACKEND: 'webgpu' }, 'sync');
  assert.equal(r.error, 'ConfigError');
  assert.match(r.message as string, /await initBackend\(\)/);
});

test("prefer 'webgpu' where Dawn has no adapter: a ConfigError saying why, no fall back", () => {
  // no Vulkan driver at all: Dawn finds no adapter
  for (const [prefer, env] of [['webgpu', {}], ['-', { AUTOGLM_BACKEND: 'webgpu' }]] as const) {
    const r = run(prefer, { ...env, VK_ICD_FILENAMES: '/nonexistent/icd.json', VK_DRIVER_FILES: '/nonexistent/icd.json' });
    if (r.name === 'webgpu') continue; // a platform whose Dawn does not go through Vulkan (macOS, Windows)
    assert.equal(r.error, 'ConfigError', JSON.stringify(r));
    assert.match(r.message as string, /backend 'webgpu' was asked for.*no WebGPU in this Node process: /);
    if (prefer === '-') assert.match(r.message as string, /AUTOGLM_BACKEND=webgpu/);
  }
});

test("prefer 'webgpu' where Dawn has an adapter: the WebGPU backend is current", (t) => {
  const r = run('webgpu');
  if (r.error) {
    // no adapter on this machine (no GPU driver Dawn accepts): the refusal above is all there is to check
    assert.equal(r.error, 'ConfigError');
    t.skip(`no WebGPU adapter in Node here: ${r.message}`);
    return;
  }
  assert.equal(r.name, 'webgpu');
  assert.equal(r.current, 'webgpu');
});
