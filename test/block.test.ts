/** The block workload on both backends: the same loss trajectory (portable is the reference). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { blockWorkload } from '../src/bench/workloads.js';
import { testBackends, withBackend } from './helpers/backends.js';
import { skipOrFail } from './helpers/ci.js';

/** Losses of `steps` SGD steps of the WORKLOADS.md block (lr 0.5 so that three steps move the loss). */
function trajectory(steps: number): number[] {
  const { step } = blockWorkload(0.5);
  return Array.from({ length: steps }, () => step());
}

test('block workload: native, wasm and portable follow the same loss trajectory', (t) => {
  const backends = testBackends();
  const runs = backends.map((b) => {
    const t0 = performance.now();
    const l = withBackend(b, () => trajectory(3));
    t.diagnostic(`${b.name}: losses ${l.map((v) => v.toFixed(6)).join(' ')} in ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
    return l;
  });
  assert.ok(runs[0][2] < runs[0][0], 'the loss goes down');
  if (!backends.some((b) => b.name === 'native')) skipOrFail(t, 'native addon', 'not built');
  if (runs.length < 2) return t.skip('neither the native nor the wasm backend loads');
  for (let k = 1; k < runs.length; k++) {
    runs[k].forEach((v, i) => assert.ok(Math.abs(v - runs[0][i]) <= 1e-4 * Math.abs(runs[0][i]), `step ${i}: ${backends[k].name} ${v} vs portable ${runs[0][i]}`));
  }
});
