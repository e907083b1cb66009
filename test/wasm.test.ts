/**
 * The wasm backend beyond its kernels (those run against the portable backend in backend-kernels.test.ts and
 * ops.test.ts): the committed module is what the sources build, selection and its notice, threads give the same
 * bits as one thread. Under CI=true a module that does not load, or no clang to check the committed one, fails.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { wasmBackendList } from './helpers/backends.js';
import { PortableBackend } from '../src/backend/portable.js';
import { WasmBackend } from '../src/backend/wasm/backend.js';
import { instantiateKernels } from '../src/backend/wasm/instantiate.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CI = process.env.CI === 'true';
const wasm = wasmBackendList()[0] ?? null;

function hasClang(): boolean {
  return spawnSync('clang++', ['--version'], { stdio: 'ignore' }).status === 0 && spawnSync('wasm-ld', ['--version'], { stdio: 'ignore' }).status === 0;
}

test('wasm/prebuilt holds exactly what wasm/*.cc builds (rebuild with node scripts/build-wasm.mjs --prebuilt)', (t) => {
  if (!hasClang()) {
    if (CI) assert.fail('CI=true and clang++ / wasm-ld are missing (apt-get install -y clang lld)');
    return t.skip('clang++ or wasm-ld missing');
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'autoglm-wasm-'));
  try {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'build-wasm.mjs'), '--out', dir, '--strict'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const mine = readFileSync(path.join(dir, 'clang-version.txt'), 'utf8').trim();
    const theirs = readFileSync(path.join(ROOT, 'wasm', 'prebuilt', 'clang-version.txt'), 'utf8').trim();
    // another compiler makes other (equally valid) bytes: only the same one can check the committed build
    if (mine !== theirs) return t.skip(`wasm/prebuilt was built by '${theirs}', this machine has '${mine}'`);
    for (const f of ['autoglm-mt.wasm', 'autoglm-st.wasm']) {
      const fresh = readFileSync(path.join(dir, f)), committed = readFileSync(path.join(ROOT, 'wasm', 'prebuilt', f));
      assert.ok(fresh.equals(committed), `${f}: wasm/prebuilt is stale; run node scripts/build-wasm.mjs --prebuilt`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Runs a snippet in a fresh process (its own backend choice), from the repo root through tsx. */
function child(code: string, env: Record<string, string>): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code],
    { encoding: 'utf8', cwd: ROOT, env: { ...process.env, ...env } });
}

test('AUTOGLM_BACKEND=wasm selects the wasm backend; a bad value is a ConfigError naming the choices', (t) => {
  if (!wasm) return t.skip('wasm backend not available');
  const ok = child("const { backend } = await import('./src/backend/index.ts'); console.log(backend().name, '|', backend().describe());",
    { AUTOGLM_BACKEND: 'wasm', AUTOGLM_NUM_THREADS: '2' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /^wasm \| wasm \(SIMD128, (prebuilt|built at install)\), 2 threads/);
  const bad = child("const { backend } = await import('./src/backend/index.ts'); backend();", { AUTOGLM_BACKEND: 'gpu' });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /ConfigError.*AUTOGLM_BACKEND must be 'native', 'wasm', 'portable' or 'webgpu'; got 'gpu'/);
});

test('a bad AUTOGLM_NUM_THREADS is a ConfigError, not a silent fall back to a slower backend', () => {
  for (const bad of ['0', 'two', '-1']) {
    const r = child("const { backend } = await import('./src/backend/index.ts'); console.log(backend().name);", { AUTOGLM_NUM_THREADS: bad });
    assert.notEqual(r.status, 0, `AUTOGLM_NUM_THREADS=${bad} picked '${r.stdout.trim()}'`);
    assert.match(r.stderr, new RegExp(`ConfigError.*AUTOGLM_NUM_THREADS is '${bad}'; expected a positive integer`));
  }
});

test('wasm kernels give the same bits on 1 and 2 threads (matmul, attention, layer norm, softmax)', (t) => {
  if (!wasm) return t.skip('wasm backend not available');
  const code = `
    const { backend } = await import('./src/backend/index.ts');
    const { createHash } = await import('node:crypto');
    const b = backend();
    let s = 7;
    const rnd = (n) => Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5);
    const h = createHash('sha256');
    const mm = new Float32Array(2 * 130 * 70);
    b.matmul({ a: rnd(2 * 130 * 300), b: rnd(300 * 70), out: mm, dtype: 'f32', batch: 2, M: 130, N: 70, K: 300, transA: false, transB: false, strideA: 130 * 300, strideB: 0, alpha: 1, beta: 0 });
    h.update(new Uint8Array(mm.buffer));
    const B = 2, H = 4, T = 40, D = 16, st = [H * T * D, T * D, D];
    const q = rnd(B * H * T * D), k = rnd(B * H * T * D), v = rnd(B * H * T * D), o = new Float32Array(q.length), stats = new Float32Array(B * H * T * 2);
    const shape = { B, H, Hkv: H, Tq: T, Tk: T, D, Dv: D, qStrides: st, kStrides: st, vStrides: st, outStrides: st, scale: 0.25, causal: true };
    b.attention(shape, q, k, v, null, null, o, stats);
    const dq = new Float32Array(q.length), dk = new Float32Array(q.length), dv = new Float32Array(q.length);
    b.attentionBackward(shape, q, k, v, null, null, stats, rnd(q.length), st, dq, dk, dv);
    for (const a of [o, stats, dq, dk, dv]) h.update(new Uint8Array(a.buffer));
    const rows = 300, cols = 256, x = rnd(rows * cols), y = new Float32Array(rows * cols), mean = new Float32Array(rows), rstd = new Float32Array(rows);
    b.layerNorm(x, rnd(cols), rnd(cols), rows, cols, 1e-5, y, mean, rstd);
    const dx = new Float32Array(rows * cols), dg = new Float32Array(cols), db = new Float32Array(cols);
    b.layerNormBackward(rnd(rows * cols), x, rnd(cols), mean, rstd, rows, cols, dx, dg, db);
    b.softmax(x, rows, cols, y, false);
    for (const a of [y, dx, dg, db]) h.update(new Uint8Array(a.buffer));
    console.log(b.numThreads(), h.digest('hex'));`;
  const one = child(code, { AUTOGLM_BACKEND: 'wasm', AUTOGLM_NUM_THREADS: '1' });
  const two = child(code, { AUTOGLM_BACKEND: 'wasm', AUTOGLM_NUM_THREADS: '2' });
  assert.equal(one.status, 0, one.stderr);
  assert.equal(two.status, 0, two.stderr);
  const [n1, h1] = one.stdout.trim().split(' '), [n2, h2] = two.stdout.trim().split(' ');
  assert.equal(n1, '1');
  assert.equal(n2, '2', 'the second thread started');
  assert.equal(h2, h1);
});

test('the single-threaded build (pages without SharedArrayBuffer) on a plain memory agrees with portable', () => {
  const file = path.join(ROOT, 'wasm', 'prebuilt', 'autoglm-st.wasm');
  const st = new WasmBackend(instantiateKernels(new WebAssembly.Module(readFileSync(file)), false, 4), 'wasm (single-threaded build)');
  st.minElements = 0;
  assert.equal(st.numThreads(), 1);
  const p = new PortableBackend();
  let s = 11;
  const rnd = (n: number) => Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5);
  const a = rnd(70 * 90), b = rnd(90 * 50);
  const run = (be: WasmBackend | PortableBackend) => {
    const out = new Float32Array(70 * 50);
    be.matmul({ a, b, out, dtype: 'f32', batch: 1, M: 70, N: 50, K: 90, transA: false, transB: false, strideA: 0, strideB: 0, alpha: 1, beta: 0 });
    const y = new Float32Array(70 * 90), mean = new Float32Array(70), rstd = new Float32Array(70);
    be.layerNorm(a, null, null, 70, 90, 1e-5, y, mean, rstd);
    return [out, y];
  };
  const [m1, y1] = run(st), [m2, y2] = run(p);
  for (let i = 0; i < m1.length; i++) assert.ok(Math.abs(m1[i] - m2[i]) <= 1e-5 * (1 + Math.abs(m2[i])), `matmul ${i}`);
  for (let i = 0; i < y1.length; i++) assert.ok(Math.abs(y1[i] - y2[i]) <= 1e-5 * (1 + Math.abs(y2[i])), `layerNorm ${i}`);
});
