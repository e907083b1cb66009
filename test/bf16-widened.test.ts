/**
 * bf16 autocast where the CPU has no bf16 products (the native backend's widening path, `nativeBf16` false): the
 * activations and gradients reach the products rounded to bf16 precision in f32 storage (`roundBf16`, one pass)
 * instead of as bf16 copies that the kernel widened again. The products must be those of the bf16 copies:
 * - `roundBf16` gives the bits of a cast to bf16 then widened (ties, NaN, infinities, subnormals, every tail length);
 * - a Block (full training) gives the same output and gradient bits with it as without it (the earlier path);
 * - LoRA on a frozen base: the same output bits; gradients whose products now take the skinny f32 kernel (rank <= 16)
 *   differ by summation order only.
 * On a CPU with bf16 products `roundBf16` is not used (checked) and the comparisons hold trivially.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Backend } from '../src/backend/backend.js';
import { getBackend, setBackend, backend } from '../src/backend/index.js';
import { Rng } from '../src/backend/rng.js';
import { Tensor } from '../src/tensor/tensor.js';
import * as T from '../src/tensor/index.js';
import { autocast } from '../src/tensor/precision.js';
import { requireNative } from './helpers/ci.js';
import { relErr } from './helpers/backends.js';
import { Block } from '../src/nn/transformer.js';
import { Linear } from '../src/nn/layers.js';
import { LoraLinear } from '../src/peft/lora/layer.js';

const skip = requireNative();

const randn = (n: number, seed: number) => {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.normal());
};

test('roundBf16: the bits of a cast to bf16 widened back, for special values and every tail length', { skip }, () => {
  const native = getBackend('native');
  assert.ok(native.roundBf16);
  const u = new Uint32Array([
    0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001, 0x7fbfffff, // zeros, infinities, NaNs
    0x3f808000, 0x3f818000, 0x3f807fff, 0x3f808001, 0xbf808000, 0xbf818000, // ties to even both ways, either side
    0x7f7fffff, 0x7f7f8000, 0xff7fffff, 0x00000001, 0x80000001, 0x007fffff, 0x00008000, 0x00018000, // overflow, subnormals
  ]);
  const special = new Float32Array(u.buffer);
  const rnd = randn(1 << 17, 3).map((x, i) => x * 2 ** ((i % 60) - 30));
  for (const src of [special, rnd, ...Array.from({ length: 40 }, (_, n) => rnd.subarray(5, 5 + n))]) {
    const h = new Uint16Array(src.length), want = new Float32Array(src.length), got = new Float32Array(src.length);
    native.cast(src, 'f32', h, 'bf16');
    native.cast(h, 'bf16', want, 'f32');
    native.roundBf16!(src, got);
    const a = new Uint32Array(got.buffer, got.byteOffset, got.length), b = new Uint32Array(want.buffer, want.byteOffset, want.length);
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) assert.fail(`n=${src.length} element ${i}: 0x${a[i].toString(16)} vs 0x${b[i].toString(16)}`);
  }
  assert.throws(() => native.roundBf16!(new Float32Array(4), new Float32Array(3)), /dst has 3 elements/);
});

/** The native backend, counting roundBf16's calls; `without` hides roundBf16 (the path before it: bf16 copies). */
function backends(): { counted: Backend; without: Backend; calls: () => number } {
  const native = getBackend('native');
  let n = 0;
  const counted = new Proxy(native, {
    get(t, k, r) {
      const v = Reflect.get(t, k, r);
      if (k !== 'roundBf16' || typeof v !== 'function') return v;
      return (...args: unknown[]) => { n++; return (v as (...a: unknown[]) => unknown).apply(t, args); };
    },
  }) as Backend;
  const without = new Proxy(native, { get: (t, k, r) => (k === 'roundBf16' ? undefined : Reflect.get(t, k, r)) }) as Backend;
  return { counted, without, calls: () => n };
}

function withBackend<R>(be: Backend, fn: () => R): R {
  const prev = backend();
  setBackend(be);
  try {
    return fn();
  } finally {
    setBackend(prev);
  }
}

test('a Block under bf16 autocast (full training): the same output and gradient bits with activations rounded in f32 as with bf16 copies', { skip }, () => {
  const { counted, without, calls } = backends();
  const run = (be: Backend) => withBackend(be, () => {
    // the sizes reach past the vector tails and the skinny kernel's limit (every dimension > 16)
    const blk = new Block({ dim: 48, heads: 3, mlpDim: 136, causal: true });
    for (const [i, p] of blk.parameters().entries()) p.f32().set(randn(p.size, 100 + i));
    const x = new Tensor(randn(3 * 23 * 48, 8), 'f32', [3, 23, 48]).requireGrad();
    const y = autocast('bf16', () => blk.forward(T.mul(x, 1)));
    T.sum(T.mul(y, new Tensor(randn(y.size, 9), 'f32', [...y.shape]))).backward();
    return [y.f32(), x.grad!.f32(), ...blk.parameters().map((p) => p.grad!.f32())];
  });
  const a = run(counted);
  assert.equal(calls() > 0, !getBackend('native').nativeBf16, `roundBf16 called ${calls()} times`);
  const b = run(without);
  a.forEach((v, i) => assert.deepEqual(v, b[i], `tensor ${i}`));
});

test('LoRA on a frozen base under bf16 autocast: the same output bits, gradients within summation order', { skip }, () => {
  const { counted, without } = backends();
  const run = (be: Backend) => withBackend(be, () => {
    const base = new Linear(40, 56);
    base.weight.f32().set(randn(base.weight.size, 1));
    base.bias!.f32().set(randn(56, 2));
    base.weight.requiresGrad = false;
    base.bias!.requiresGrad = false;
    const l = new LoraLinear(base);
    l.addAdapter('default', { r: 4, alpha: 8, dropout: 0, useRslora: false, useDora: false, init: false, seed: 1 });
    for (const [i, p] of l.parameters().filter((p) => p.requiresGrad).entries()) p.f32().set(randn(p.size, 10 + i));
    const x = new Tensor(randn(2 * 19 * 40, 5), 'f32', [2, 19, 40]).requireGrad();
    const y = autocast('bf16', () => l.forward(T.mul(x, 1)));
    T.sum(T.mul(y, new Tensor(randn(y.size, 6), 'f32', [...y.shape]))).backward();
    return [y.f32(), x.grad!.f32(), ...l.parameters().filter((p) => p.requiresGrad).map((p) => p.grad!.f32())];
  });
  const a = run(counted), b = run(without);
  assert.equal(a.length, 4);
  assert.deepEqual(a[0], b[0], 'output');
  a.slice(1).forEach((v, i) => assert.ok(relErr(v, b[i + 1]) <= 1e-5, `gradient ${i}: ${relErr(v, b[i + 1])}`));
});

test('widening products larger than the per-thread scratch: bands of rows and blocks of the weight give the f32 product of the widened operands', { skip }, async () => {
  // AUTOGLM_BF16_PATH=sgemm takes the widening path on any CPU. At the default slot (4M floats) two cases outgrow it
  // (K = 3,000,000; 5,000 rows); at 1M floats every case has an operand larger than its slot: left operands in bands
  // with the right one widened once (cases 0-2, 8) or in blocks for each band (5, 7), right operands in blocks
  const { spawnSync } = await import('node:child_process');
  for (const slot of [undefined, '1048576']) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', new URL('./helpers/bf16-widened-bands.ts', import.meta.url).pathname],
      { encoding: 'utf8', env: { ...process.env, AUTOGLM_BF16_PATH: 'sgemm', ...(slot ? { AUTOGLM_WIDEN_SCRATCH: slot } : {}) } });
    assert.equal(r.status, 0, `exit ${r.status} (signal ${r.signal}): ${r.stderr}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { describe: string; results: { case: number; err: number }[] };
    assert.match(out.describe, /via f32 sgemm/);
    assert.equal(out.results.length, 9);
    // summation order aside (about 1e-7 of the largest value; 7e-5 with K = 3,000,000), a misplaced band is of order 1
    for (const x of out.results) assert.ok(x.err <= 1e-3, `slot ${slot ?? 'default'}, case ${x.case}: largest difference ${x.err} of the largest value`);
  }
});
