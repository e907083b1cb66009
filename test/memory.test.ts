/** A training step must not grow memory without bound: 200 steps of the block workload, RSS stable. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backend } from '../src/backend/index.js';
import { randn, randint } from '../src/tensor/creation.js';
import { crossEntropy } from '../src/tensor/ops/nn.js';
import { Block } from '../src/nn/transformer.js';
import { Linear } from '../src/nn/layers.js';
import { manualSeed } from '../src/nn/init.js';
import { SGD } from '../src/optim/sgd.js';

test('200 training steps of the block workload keep RSS within 10% after the first 20', (t) => {
  if (backend().name !== 'native') return t.skip('portable backend: 200 block steps take minutes; covered on native');
  const B = 8, T = 128, d = 256;
  manualSeed(0);
  const blk = new Block({ dim: d, heads: 4, mlpDim: 1024, causal: true });
  const head = new Linear(d, 512);
  const x = randn([B, T, d], 1), y = randint([B * T], 512, 2);
  const opt = new SGD([...blk.parameters(), ...head.parameters()], { lr: 1e-3 });
  // "Stable": after 20 warm-up steps RSS never exceeds the warm-up's high-water mark by more than 10% (garbage
  // between GCs makes single readings swing by ~10 MB), and shows no upward trend (last 50 vs steps 21-70).
  let rss20 = 0, maxAfter = 0, firstLoss = 0, lastLoss = 0;
  const readings: number[] = [];
  for (let i = 1; i <= 200; i++) {
    opt.zeroGrad();
    const loss = crossEntropy(head.forward(blk.forward(x)).reshape([B * T, 512]), y);
    loss.backward();
    opt.step();
    if (i === 1) firstLoss = loss.item();
    lastLoss = loss.item();
    const rss = process.memoryUsage.rss();
    readings.push(rss);
    if (i <= 20) rss20 = Math.max(rss20, rss);
    if (i > 20) maxAfter = Math.max(maxAfter, rss);
  }
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  const early = mean(readings.slice(20, 70)), late = mean(readings.slice(150));
  t.diagnostic(`RSS max in the first 20 steps ${(rss20 / 2 ** 20).toFixed(0)} MB, max after ${(maxAfter / 2 ** 20).toFixed(0)} MB; ` +
    `mean steps 21-70 ${(early / 2 ** 20).toFixed(0)} MB, mean steps 151-200 ${(late / 2 ** 20).toFixed(0)} MB; loss ${firstLoss.toFixed(3)} -> ${lastLoss.toFixed(3)}`);
  assert.ok(maxAfter <= rss20 * 1.1, `RSS grew from ${rss20} to ${maxAfter}`);
  assert.ok(late <= early * 1.05, `RSS trends upward: ${early} -> ${late}`);
  assert.ok(lastLoss < firstLoss, 'the block learns');
});
