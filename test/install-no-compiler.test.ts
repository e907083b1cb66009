/**
 * `npm ci` on a machine without a compiler: package.json's install script (build-native.mjs, then build-wasm.mjs)
 * runs in a copy of the package with a PATH that holds `node` and nothing else (no g++, clang++, make, wasm-ld).
 * It must exit 0, build nothing, and the library must then pick the wasm backend (the committed wasm/prebuilt
 * module) over the portable one, saying so once on stderr.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

test('install scripts without any compiler on PATH exit 0, build nothing, and the library picks wasm over portable', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'autoglm-nocc-'));
  try {
    for (const p of ['package.json', 'binding.gyp', 'tsconfig.json', 'src', 'scripts', 'wasm', 'native']) cpSync(path.join(ROOT, p), path.join(dir, p), { recursive: true });
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    const bin = path.join(dir, '.bin-only-node');
    mkdirSync(bin);
    symlinkSync(process.execPath, path.join(bin, 'node'));
    // the environment of a machine without build tools: PATH = node alone, no compiler overrides
    const env: Record<string, string> = { PATH: bin, HOME: dir };
    for (const tool of ['g++', 'make', 'clang++', 'wasm-ld']) assert.notEqual(spawnSync(tool, ['--version'], { env }).status, 0, `${tool} is still reachable`);
    const install = (JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { scripts: { install: string } }).scripts.install;
    const r = spawnSync('/bin/sh', ['-c', install], { cwd: dir, env, encoding: 'utf8' });
    assert.equal(r.status, 0, `install script '${install}' failed:\n${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /native backend not built \(no C\+\+ compiler/, r.stdout);
    assert.ok(!existsSync(path.join(dir, 'build', 'Release', 'autoglm_native.node')), 'a native addon was built without a compiler?');
    assert.ok(!existsSync(path.join(dir, 'build', 'wasm', 'autoglm-mt.wasm')), 'a wasm module was built without clang?');
    const code = "import { backend } from './src/backend/index.ts'; const b = backend(); console.log(JSON.stringify({ name: b.name, describe: b.describe() }));";
    const c = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: dir, env: { ...env, AUTOGLM_NUM_THREADS: '2' }, encoding: 'utf8' });
    assert.equal(c.status, 0, c.stderr);
    const chosen = JSON.parse(c.stdout.trim().split('\n').pop()!) as { name: string; describe: string };
    assert.equal(chosen.name, 'wasm', `backend chosen: ${c.stdout}${c.stderr}`);
    assert.match(chosen.describe, /prebuilt/);
    assert.match(c.stderr, /using the wasm/, 'the one-line notice naming the backend');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
