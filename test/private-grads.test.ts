/**
 * Gradients that only the library has held (tensor.ts, privateGrads): zeroGrad hands their buffers back to the pool
 * and a second backward pass accumulates into them in place, while a gradient that user code has read through
 * `p.grad` stays valid however long it is held, and one buffer shared by two leaves is never handed back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { Tensor, peekGrad, setPrivateGrad, releaseGrad } from '../src/tensor/tensor.js';
import { poolStats, uninitF32 } from '../src/tensor/alloc.js';
import { AdamW } from '../src/optim/adam.js';
import { clipGradNorm } from '../src/optim/clip.js';
import { Linear } from '../src/nn/layers.js';
import { manualSeed } from '../src/nn/init.js';

const IN = 256, OUT = 160; // a weight of 160 KiB: pooled sizes start at 64 KiB
const x = T.randn([48, IN], 7);

function layer(): Linear {
  manualSeed(3);
  return new Linear(IN, OUT);
}
const lossOf = (l: Linear) => l.forward(x).tanh().square().sum();

/** `steps` AdamW steps; `read` reads every gradient through `p.grad` before the step (which keeps it). */
function train(steps: number, read: boolean): { weights: number[]; losses: number[]; released: number; held: Float32Array[]; buffers: unknown[] } {
  const l = layer();
  const opt = new AdamW(l.parameters(), { lr: 1e-2, weightDecay: 0.01 });
  const losses: number[] = [], held: Float32Array[] = [], buffers: unknown[] = [];
  const before = poolStats().released;
  for (let s = 0; s < steps; s++) {
    opt.zeroGrad();
    const loss = lossOf(l);
    loss.backward();
    losses.push(loss.item());
    buffers.push(peekGrad(l.weight)!.storage.buffer);
    if (read) held.push(l.weight.grad!.f32()); // user code keeps the gradient's array
    opt.step();
  }
  opt.zeroGrad();
  return { weights: [...l.weight.f32()], losses, released: poolStats().released - before, held, buffers };
}

test('zeroGrad hands a gradient only the library held back to the pool: the same training, bit for bit', () => {
  const quiet = train(4, false);
  const seen = train(4, true);
  assert.ok(quiet.released >= 4, `buffers went back to the pool (${quiet.released} released)`);
  assert.ok(quiet.buffers.slice(1).every((b) => b === quiet.buffers[0]), 'every step\'s weight gradient reused the first one\'s buffer');
  assert.ok(new Set(seen.buffers).size === 4, 'gradients user code read are never reused');
  assert.deepEqual(quiet.losses, seen.losses);
  assert.deepEqual(quiet.weights, seen.weights);
});

test('a gradient read through p.grad stays valid after zeroGrad and later steps', () => {
  const { held } = train(4, true);
  // each held array still has its own step's values: nothing later wrote over it
  const ref = train(4, true).held;
  held.forEach((g, i) => assert.deepEqual([...g], [...ref[i]!], `step ${i}'s gradient`));
  assert.notDeepEqual([...held[0]!], [...held[3]!], 'the steps had different gradients');
  // and the pool never handed one out: fill the pool's sizes, take them, check again
  const taken = Array.from({ length: 8 }, () => uninitF32(OUT * IN).fill(Number.NaN));
  held.forEach((g) => assert.ok(g.every(Number.isFinite), 'a held gradient was reused by the pool'));
  assert.equal(taken.length, 8);
});

test('a second backward pass accumulates into a private gradient in place; a read one is summed out of place', () => {
  const a = layer(), b = layer();
  lossOf(a).backward();
  lossOf(b).backward();
  const first = peekGrad(a.weight)!;
  const seen = b.weight.grad!; // read: user code holds it
  const seenValues = [...seen.f32()];
  lossOf(a).backward();
  lossOf(b).backward();
  assert.ok(peekGrad(a.weight) === first, 'accumulated in place');
  assert.ok(b.weight.grad !== seen, 'a gradient user code holds gets a new sum');
  assert.deepEqual([...seen.f32()], seenValues, 'the held gradient is unchanged');
  assert.deepEqual([...a.weight.grad!.f32()], [...b.weight.grad!.f32()], 'the same sum either way');
  assert.deepEqual([...b.weight.grad!.f32()], seenValues.map((v) => Math.fround(v + v)));
});

test('one gradient buffer shared by two leaves is never handed back', () => {
  const p1 = T.randn([OUT, IN], 1).requireGrad(), p2 = T.randn([OUT, IN], 2).requireGrad();
  p1.add(p2).tanh().sum().backward(); // add's backward gives both leaves tanh's gradient, one buffer
  const g1 = peekGrad(p1)!, g2 = peekGrad(p2)!;
  assert.ok(g1.storage.buffer === g2.storage.buffer, 'the two leaves share one buffer');
  const values = [...g2.f32()];
  const before = poolStats().released;
  releaseGrad(p1);
  releaseGrad(p2);
  assert.equal(poolStats().released, before, 'a shared gradient stays out of the pool');
  uninitF32(OUT * IN).fill(Number.NaN);
  assert.deepEqual([...g2.f32()], values);
});

/** Takes (and drops) pooled buffers of n floats until none is left. */
function drainPool(n: number): void {
  for (;;) {
    poolStats(true);
    uninitF32(n);
    if (poolStats().hits === 0) return;
  }
}

test('a weight read by two ops (tied embeddings): the second contribution goes into the first in place and back to the pool', () => {
  // w (168 x 256: a size no other test pools) is read by two products; its first gradient of the pass takes the
  // second in place, whose buffer is dead at once
  const R = 168, w = T.randn([R, IN], 11).requireGrad(), x2 = T.randn([48, IN], 12);
  const first = () => T.linear(x, w, null).tanh().sum(), second = () => T.linear(x2, w, null).square().sum();
  const parts = [first, second].map((f) => {
    f().backward();
    const g = [...w.grad!.f32()];
    w.grad = null;
    return g;
  });
  drainPool(R * IN);
  first().add(second()).backward();
  const g = peekGrad(w)!;
  assert.deepEqual([...g.f32()], parts[0].map((v, i) => Math.fround(v + parts[1][i])), 'the two contributions summed');
  poolStats(true);
  uninitF32(R * IN).fill(Number.NaN);
  assert.equal(poolStats().hits, 1, 'the dead contribution was in the pool');
  assert.deepEqual([...g.f32()], parts[0].map((v, i) => Math.fround(v + parts[1][i])), 'and is not the gradient');
  // one tensor handed to both of a node's edges (p + p: add's backward gives both the same gradient): still right
  const p = T.randn([R, IN], 13).requireGrad();
  const y = T.randn([R, IN], 14);
  p.add(p).mul(y).sum().backward();
  assert.deepEqual([...p.grad!.f32()], [...y.f32()].map((v) => Math.fround(v + v)));
});

test('a gradient passed in as backward\'s seed, or set by user code, is never handed back', () => {
  const p = T.randn([OUT, IN], 4).requireGrad();
  const seed = T.ones([OUT, IN]);
  p.reshape([IN, OUT]).backward({ gradient: seed.reshape([IN, OUT]) });
  const before = poolStats().released;
  releaseGrad(p);
  const q = T.randn([OUT, IN], 5).requireGrad();
  q.grad = T.ones([OUT, IN]);
  releaseGrad(q);
  assert.equal(poolStats().released, before);
  assert.ok(seed.f32().every((v) => v === 1));
});

test('clipGradNorm replaces a private gradient and hands the old one back; setPrivateGrad does the same', () => {
  const l = layer();
  lossOf(l).backward();
  const old = peekGrad(l.weight)!;
  const before = poolStats().released;
  clipGradNorm(l.parameters(), 1e-3);
  assert.ok(peekGrad(l.weight) !== old);
  assert.ok(poolStats().released > before, 'the unclipped gradient went back to the pool');
  const g = new Tensor(new Float32Array(OUT * IN), 'f32', [OUT, IN]);
  setPrivateGrad(l.weight, g);
  const mid = poolStats().released;
  releaseGrad(l.weight);
  assert.equal(poolStats().released, mid + 1);
  assert.ok(peekGrad(l.weight) === null);
});
