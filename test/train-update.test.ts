/**
 * The loop's guarded update (src/train/update.ts): clipping through optim/clip.ts with the loss scale undone,
 * skip on a non-finite loss or gradient, and with compressed data parallelism the finite check before any
 * compression (a non-finite gradient on any rank skips the step on every rank and never reaches the
 * error-feedback memory).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor } from '../src/tensor/tensor.js';
import { SGD } from '../src/optim/sgd.js';
import { clipGradNorm } from '../src/optim/clip.js';
import { DynamicLossScaler } from '../src/precision/index.js';
import { DataParallel } from '../src/distributed/data-parallel.js';
import { inProcessGroup } from './helpers/in-process-group.js';
import { guardedUpdate } from '../src/train/update.js';

function param(values: number[], grad: number[]): Tensor {
  const p = new Tensor(Float32Array.from(values), 'f32', [values.length]).requireGrad();
  p.grad = new Tensor(Float32Array.from(grad), 'f32', [grad.length]);
  return p;
}

test('clips by the global norm as clipGradNorm does, with the loss scale undone in the same step', async () => {
  const scale = 1024, g = [3, 4, 12]; // norm 13
  const a = param([1, 1, 1], g.map((x) => x * scale));
  const scaler = new DynamicLossScaler(true, scale);
  const u = await guardedUpdate({ opt: new SGD([a], { lr: 0.1, momentum: 0 }), scaler, named: [['a', a]], loss: 2, lr: 0.1, maxGradNorm: 1, dp: null, step: 0 });
  assert.ok(u.ok && Math.abs(u.norm - 13) < 1e-4);
  const b = param([1, 1, 1], g);
  clipGradNorm([b], 1);
  new SGD([b], { lr: 0.1, momentum: 0 }).step();
  const da = Array.from(a.f32()), db = Array.from(b.f32());
  da.forEach((x, i) => assert.ok(Math.abs(x - db[i]!) < 1e-6, `${x} vs ${db[i]}`));
});

test('a non-finite gradient or loss skips the step (weights untouched, the scaler backs off)', async () => {
  for (const [grad, loss] of [[[1, NaN], 1], [[1, 2], Infinity]] as const) {
    const p = param([1, 2], [...grad]);
    const scaler = new DynamicLossScaler(true, 256);
    const u = await guardedUpdate({ opt: new SGD([p], { lr: 1, momentum: 0 }), scaler, named: [['p', p]], loss, lr: 1, maxGradNorm: 1, dp: null, step: 3 });
    assert.equal(u.ok, false);
    assert.deepEqual(Array.from(p.f32()), [1, 2]);
    assert.equal(scaler.scale, 128);
  }
});

test('compressed data parallelism: the ranks agree on finiteness before compressing; a bad rank skips the step everywhere', async () => {
  const calls: string[] = [];
  const fakeDp = (otherRankBad: boolean) => ({
    method: 'topk',
    sumNumbers: async (xs: number[]) => { calls.push('sumNumbers'); return [xs[0]! * 2, xs[1]! + (otherRankBad ? 1 : 0)]; },
    syncGradients: async () => { calls.push('syncGradients'); },
  }) as unknown as DataParallel;
  const p = param([1, 2], [0.5, 0.5]);
  const u = await guardedUpdate({ opt: new SGD([p], { lr: 1, momentum: 0 }), scaler: new DynamicLossScaler(false), named: [['p', p]], loss: 1, lr: 1, maxGradNorm: 0, dp: fakeDp(true), step: 0 });
  assert.equal(u.ok, false);
  assert.deepEqual(calls, ['sumNumbers'], 'no compression (syncGradients) when a rank is not finite');
  assert.deepEqual(Array.from(p.f32()), [1, 2]);
  calls.length = 0;
  const v = await guardedUpdate({ opt: new SGD([p], { lr: 1, momentum: 0 }), scaler: new DynamicLossScaler(false), named: [['p', p]], loss: 1, lr: 1, maxGradNorm: 0, dp: fakeDp(false), step: 0 });
  assert.ok(v.ok && v.loss === 2);
  assert.deepEqual(calls, ['sumNumbers', 'syncGradients']);
});

test('a graceful stop asked by one rank stops every rank after the same step (dense and compressed all-reduce)', async () => {
  for (const compression of [false, { method: 'topk', errorFeedback: 'residual' }] as const) {
    for (const asks of [[false, false], [true, false], [false, true], [true, true]]) {
      const comms = inProcessGroup(2);
      const us = await Promise.all(comms.map((c, rank) => {
        const p = param([1, 2, 3, 4], [0.5, -0.5, 0.25, rank]);
        const dp = new DataParallel(c, { compression, seed: 3 });
        return guardedUpdate({ opt: new SGD([p], { lr: 0.1, momentum: 0 }), scaler: new DynamicLossScaler(false), named: [['p', p]], loss: 1, lr: 0.1, maxGradNorm: 0, dp, step: 0, stop: asks[rank] });
      }));
      const want = asks.some(Boolean);
      assert.deepEqual(us.map((u) => [u.ok, u.stop]), [[true, want], [true, want]], `${JSON.stringify(compression)}, asked ${asks}`);
      assert.deepEqual(us.map((u) => u.loss), [2, 2], 'the loss is still the sum over the ranks');
    }
  }
  // one process: the step's own request
  const p = param([1], [1]);
  const u = await guardedUpdate({ opt: new SGD([p], { lr: 0.1, momentum: 0 }), scaler: new DynamicLossScaler(false), named: [['p', p]], loss: 1, lr: 0.1, maxGradNorm: 0, dp: null, step: 0, stop: true });
  assert.ok(u.ok && u.stop);
});
