/** Mixed-precision policy and the dynamic loss scaler. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DynamicLossScaler, resolvePrecision } from '../src/precision/index.js';
import { getBackend } from '../src/backend/index.js';
import { Tensor } from '../src/tensor/tensor.js';
import { ConfigError } from '../src/errors.js';

test('policy: explicit dtypes as asked; auto picks bf16 only on bf16 hardware', () => {
  const portable = getBackend('portable');
  assert.deepEqual([resolvePrecision('fp32', portable).compute, resolvePrecision('bf16', portable).compute, resolvePrecision('fp16', portable).compute], ['f32', 'bf16', 'f16']);
  assert.equal(resolvePrecision('fp16', portable).lossScaling, true);
  // bf16 asked for where its products are emulated: run as asked, and the log says what it costs
  assert.match(resolvePrecision('bf16', portable).reason, /^mixedPrecision 'bf16' as configured \(the .* backend has no bf16 products on this CPU/);
  assert.equal(resolvePrecision('bf16', { ...portable, nativeBf16: true, name: 'native' } as typeof portable).reason, `mixedPrecision 'bf16' as configured`);
  assert.equal(resolvePrecision('auto', portable).compute, 'f32');
  assert.equal(resolvePrecision('auto', { ...portable, nativeBf16: true, name: 'native' } as typeof portable).compute, 'bf16');
  assert.throws(() => resolvePrecision('int4' as never, portable), ConfigError);
});

test('loss scaler: starts at 2^16, halves and skips on overflow, doubles after N clean steps, state round trip', () => {
  const s = new DynamicLossScaler(true, 2 ** 16, 3);
  assert.equal(s.scale, 65536);
  assert.equal(s.update(false), false);
  assert.equal(s.scale, 32768);
  assert.equal(s.skipped, 1);
  for (let i = 0; i < 3; i++) assert.equal(s.update(true), true);
  assert.equal(s.scale, 65536);
  const copy = new DynamicLossScaler(true);
  copy.load(s.state());
  assert.deepEqual(copy.state(), s.state());
  // without scaling (fp32/bf16) it still refuses non-finite gradients
  const plain = new DynamicLossScaler(false);
  assert.equal(plain.scale, 1);
  assert.equal(plain.update(false), false);
  assert.equal(plain.scale, 1);
  const p = new Tensor(new Float32Array([1, 2]), 'f32', [2]).requireGrad();
  p.grad = new Tensor(new Float32Array([1, Infinity]), 'f32', [2]);
  assert.equal(DynamicLossScaler.finite([p]), false);
  p.grad = new Tensor(new Float32Array([1, 3]), 'f32', [2]);
  assert.equal(DynamicLossScaler.finite([p]), true);
});
