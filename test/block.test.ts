/** The block workload on both backends: the same loss trajectory (portable is the reference). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randn, randint } from '../src/tensor/creation.js';
import { crossEntropy } from '../src/tensor/ops/nn.js';
import { Block } from '../src/nn/transformer.js';
import { Linear } from '../src/nn/layers.js';
import { manualSeed } from '../src/nn/init.js';
import { SGD } from '../src/optim/sgd.js';
import { testBackends, withBackend } from './helpers/backends.js';

/** Losses of `steps` SGD steps of the WORKLOADS.md block (B8 T128 d256 h4 ff1024, head to 512 classes). */
function trajectory(steps: number): number[] {
  const B = 8, T = 128, d = 256;
  manualSeed(0);
  const blk = new Block({ dim: d, heads: 4, mlpDim: 1024, causal: true });
  const head = new Linear(d, 512);
  const x = randn([B, T, d], 1), y = randint([B * T], 512, 2);
  const opt = new SGD([...blk.parameters(), ...head.parameters()], { lr: 0.5 });
  const losses: number[] = [];
  for (let i = 0; i < steps; i++) {
    opt.zeroGrad();
    const loss = crossEntropy(head.forward(blk.forward(x)).reshape([B * T, 512]), y);
    loss.backward();
    opt.step();
    losses.push(loss.item());
  }
  return losses;
}

test('block workload: native and portable follow the same loss trajectory', (t) => {
  const backends = testBackends();
  const runs = backends.map((b) => {
    const t0 = performance.now();
    const l = withBackend(b, () => trajectory(3));
    t.diagnostic(`${b.name}: losses ${l.map((v) => v.toFixed(6)).join(' ')} in ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
    return l;
  });
  assert.ok(runs[0][2] < runs[0][0], 'the loss goes down');
  if (runs.length < 2) return t.skip('native backend not built');
  runs[1].forEach((v, i) => assert.ok(Math.abs(v - runs[0][i]) <= 1e-4 * Math.abs(runs[0][i]), `step ${i}: native ${v} vs portable ${runs[0][i]}`));
});
