/** A training step must not grow memory without bound: 200 steps of the block workload, RSS stable. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backend, nativeAvailable } from '../src/backend/index.js';
import { skipOrFail } from './helpers/ci.js';
import { blockWorkload } from '../src/bench/workloads.js';
import { collectNow, installCollector } from '../src/backend/gc.js';
import { poolStepBoundary, releaseBuffer, setCollector, uninitF32 } from '../src/tensor/alloc.js';
import { SGD } from '../src/optim/sgd.js';
import { checkpoint } from '../src/nn/checkpoint.js';
import { Linear } from '../src/nn/layers.js';
import * as T from '../src/tensor/index.js';

test('200 training steps of the block workload keep RSS within 15% after the first 50', (t) => {
  if (backend().name !== 'native') {
    // AUTOGLM_BACKEND=portable by choice: 200 block steps take minutes there; a missing addon is another matter
    if (nativeAvailable()) return t.skip('portable backend: 200 block steps take minutes; covered on native');
    return skipOrFail(t, 'native addon', 'not built');
  }
  const { step } = blockWorkload();
  // "Stable": after 50 warm-up steps RSS never exceeds the warm-up's high-water mark by more than 15% (garbage
  // between GCs makes single readings swing by ~10 MB; a 20-step warm-up saw too few collection cycles, and its
  // high-water mark alone varied from 192 to 208 MB between runs), and shows no upward trend (last 50 vs 21-70).
  let rss50 = 0, maxAfter = 0, firstLoss = 0, lastLoss = 0;
  const readings: number[] = [];
  for (let i = 1; i <= 200; i++) {
    const loss = step();
    if (i === 1) firstLoss = loss;
    lastLoss = loss;
    const rss = process.memoryUsage.rss();
    readings.push(rss);
    if (i <= 50) rss50 = Math.max(rss50, rss);
    if (i > 50) maxAfter = Math.max(maxAfter, rss);
  }
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  const early = mean(readings.slice(20, 70)), late = mean(readings.slice(150));
  t.diagnostic(`RSS max in the first 50 steps ${(rss50 / 2 ** 20).toFixed(0)} MB, max after ${(maxAfter / 2 ** 20).toFixed(0)} MB; ` +
    `mean steps 21-70 ${(early / 2 ** 20).toFixed(0)} MB, mean steps 151-200 ${(late / 2 ** 20).toFixed(0)} MB; loss ${firstLoss.toFixed(3)} -> ${lastLoss.toFixed(3)}`);
  // 15%: single readings swing by 10-20 MB with GC timing, whatever the level; since the warm-up's high-water mark
  // fell from 205-207 MB to 182-190 MB (2026-12-01), identical runs put the later maximum 4-12% above it (a leak
  // shows in the window means below, which stayed within 5%)
  assert.ok(maxAfter <= rss50 * 1.15, `RSS grew from ${rss50} to ${maxAfter}`);
  // 10%: window means moved by up to 6% between identical runs (GC timing); a leak of even 0.15 MB per step
  // (one small activation) would add 20 MB over the 130 steps between the windows
  assert.ok(late <= early * 1.1, `RSS trends upward: ${early} -> ${late}`);
  assert.ok(lastLoss < firstLoss, 'the block learns');
});

test('a backward pass that frees a large graph ends with one full collection; a retained graph or a small step does not', () => {
  let calls = 0;
  backend(); // its first use installs the runtime's collector, which this test replaces for a while
  // threshold 1 MiB: a (512, 1024) f32 activation is 2 MiB, made fresh by the ops below (not from the pool)
  setCollector({ full: () => { calls++; }, afterBackwardBytes: 2 ** 20, afterBackwardMinIntervalMs: 0 });
  try {
    const big = T.randn([1024, 1024]).requireGrad(), small = T.randn([64, 64]).requireGrad();
    const step = (rows: number, retainGraph: boolean) => {
      const W = rows > 4 ? big : small;
      const loss = T.linear(T.randn([rows, W.shape[1]]), W, null).tanh().sum();
      loss.backward({ retainGraph });
      return loss;
    };
    step(512, true);
    assert.equal(calls, 0, 'a retained graph is still alive: no collection for it');
    step(512, false);
    assert.equal(calls, 1, 'the graph was freed after 2+ MiB of fresh buffers: one collection');
    step(512, false);
    assert.equal(calls, 2, 'each large step collects');
    step(4, false);
    step(4, false);
    assert.equal(calls, 2, 'a small step (1 KiB activations and gradient) does not collect');
    // checkpointed segments run backward passes of their own inside the outer one: only the outer one collects
    const lin = new Linear(1024, 1024);
    const seg = (h: T.Tensor) => lin.forward(h).tanh();
    checkpoint(lin, seg, checkpoint(lin, seg, T.randn([512, 1024]))).sum().backward();
    assert.equal(calls, 3, 'one collection for a pass with two recomputed segments');
    // at most one collection per interval: a second large step right after the first is left to V8
    setCollector({ full: () => { calls++; }, afterBackwardBytes: 2 ** 20, afterBackwardMinIntervalMs: 60_000 });
    step(512, false);
    step(512, false);
    assert.equal(calls, 4, 'two large steps within the interval: one collection');
  } finally {
    installCollector();
  }
});

test('zeroGrad collects once the gradients that found the pool full reach the threshold; not before', () => {
  backend(); // its first use installs the runtime's collector, which this test replaces for a while
  // 16,400 floats (65,600 bytes): a size no other test pools; the pool keeps at most 64 buffers of one size
  const n = 16_400;
  const params = Array.from({ length: 4 }, (_, i) => T.randn([n], 90 + i).requireGrad());
  const all = new SGD(params, { lr: 0.1 }), two = new SGD(params.slice(0, 2), { lr: 0.1 });
  let calls = 0;
  // a backward pass (four private gradients of n floats), then the pool filled up to its 64 buffers of that size
  const stepUntilZeroGrad = () => {
    params.map((p) => p.square().sum()).reduce((a, b) => a.add(b)).backward();
    const fill = Array.from({ length: 64 }, () => uninitF32(n));
    for (const b of fill) releaseBuffer(b);
    setCollector({ full: () => { calls++; }, afterBackwardBytes: Infinity, refusedBytes: 3 * n * 4 }); // counts from 0
  };
  try {
    stepUntilZeroGrad();
    two.zeroGrad();
    assert.equal(calls, 0, 'two gradients the full pool refused: under the threshold, no collection');
    all.zeroGrad();
    assert.equal(calls, 1, 'four: one collection');
    stepUntilZeroGrad();
    all.zeroGrad();
    assert.equal(calls, 2, 'again the next step');
  } finally {
    installCollector();
    poolStepBoundary();
    poolStepBoundary(); // the filler buffers waited a whole step unused: dropped
  }
});

/**
 * What the backward pass holds. An activation that no backward needs must be freed as soon as the forward pass
 * drops it (V8 frees a buffer only when nothing reaches it, a closure included). Each case builds a small graph,
 * keeps a weak reference to one intermediate's buffer, drops every strong one and runs a full collection.
 */
async function heldAfterForward(build: (h: T.Tensor) => T.Tensor): Promise<{ held: boolean; loss: T.Tensor }> {
  const make = () => {
    const x = T.randn([16, 64]).requireGrad();
    const h = x.mul(2); // an intermediate whose own backward needs nothing
    return { ref: new WeakRef(h.storage as object), loss: build(h).sum() };
  };
  const { ref, loss } = make();
  await new Promise((r) => setTimeout(r, 0));
  collectNow();
  return { held: ref.deref() !== undefined, loss };
}

test('LayerNorm and RMSNorm keep their output, not their input, for the backward pass', async () => {
  const W = T.randn([32, 64]).requireGrad(); // a trainable Linear after it holds the output anyway
  const g = T.ones([64]).requireGrad(), b = T.zeros([64]).requireGrad();
  const r = await heldAfterForward((h) => T.linear(T.layerNorm(h, g, b), W, null));
  assert.equal(r.held, false, 'the input of LayerNorm is still reachable after the forward pass');
  r.loss.backward();
  assert.ok(g.grad && W.grad && Number.isFinite(g.grad.sum().item()));
  // gamma near 0 (next to beta = 1): xhat cannot be rebuilt from the output well, the input is kept instead
  const small = T.full([64], 0.01).requireGrad(), one = T.ones([64]).requireGrad();
  const k = await heldAfterForward((h) => T.linear(T.layerNorm(h, small, one), W, null));
  assert.equal(k.held, true, 'with gamma near 0 LayerNorm should keep its input');
  // RMSNorm (Llama's): xhat = y / gamma, exact to rounding for any nonzero gamma
  const rg = T.full([64], 0.01).requireGrad();
  const rms = await heldAfterForward((h) => T.linear(T.rmsNorm(h, rg), W, null));
  assert.equal(rms.held, false, 'the input of RMSNorm is still reachable after the forward pass');
  rms.loss.backward();
  assert.ok(rg.grad && Number.isFinite(rg.grad.sum().item()));
});

test('a frozen Linear and a residual add do not hold their inputs', async () => {
  const frozen = T.randn([32, 64]);
  assert.equal((await heldAfterForward((h) => T.linear(h, frozen, null).tanh())).held, false, 'frozen Linear');
  const W = T.randn([64, 64]).requireGrad();
  assert.equal((await heldAfterForward((h) => T.linear(h.add(T.ones([64])), W, null))).held, false, 'add (its output feeds a trainable Linear)');
});

test('ops whose backward does not need an input do not hold it', async () => {
  const c = T.randn([64], 3), frozenW = T.randn([32, 64], 4);
  const loraIn = T.randn([16, 4], 6).requireGrad(), loraB = T.randn([64, 4], 7).requireGrad();
  const ids = new T.Tensor(Int32Array.from({ length: 16 }, (_, i) => i % 64), 'i32', [16]);
  const ids32 = new T.Tensor(Int32Array.from({ length: 16 }, (_, i) => i % 32), 'i32', [16]);
  const cases: Array<[string, (h: T.Tensor) => T.Tensor]> = [
    ['add', (h) => h.add(T.ones([64]))],
    ['sub', (h) => h.sub(c)],
    ['scalar mul + add', (h) => h.mul(3).add(1)],
    ['mul by a constant tensor', (h) => h.mul(c)],
    ['sum', (h) => h.sum(0)],
    ['mean', (h) => h.mean(1)],
    ['concat', (h) => T.concat([h, T.ones([16, 8])], 1)],
    ['split', (h) => h.split([32, 32], 1)[1]],
    ['contiguous copy of a transpose', (h) => h.transpose(0, 1).contiguous()],
    ['softmax (keeps its output)', (h) => h.softmax(-1)],
    ['dropout (keeps its mask)', (h) => T.dropout(h, 0.25, 7)],
    ['frozen Linear', (h) => T.linear(h, frozenW, null)],
    ['addLinear (a LoRA update onto a layer output)', (h) => T.addLinear(h, loraIn, loraB, 0.5)],
    ['exp (keeps its output)', (h) => h.exp()],
    ['sqrt (keeps its output; NaNs here do not matter)', (h) => h.sqrt()],
    ['rope', (h) => T.rope(h.reshape([1, 1, 16, 64]), T.randn([16, 32], 8), T.randn([16, 32], 9))],
    ['matmul by a frozen matrix', (h) => h.matmul(frozenW.transpose(0, 1))],
    ['crossEntropy of logits', (h) => T.crossEntropy(h, ids)],
    ['embedding (the table is the input)', (h) => T.embedding(ids, h)],
    ['stack', (h) => T.stack([h, T.ones([16, 64])], 0)],
    ['cast to bf16', (h) => h.to('bf16')],
    ['fused linear cross-entropy, frozen head', (h) => T.linearCrossEntropy(h, frozenW, null, ids32)],
  ];
  const held: string[] = [];
  for (const [name, f] of cases) {
    if ((await heldAfterForward(f)).held) held.push(name);
  }
  assert.deepEqual(held, [], `these ops keep their input alive until backward: ${held.join(', ')}`);
});

test("layerNorm's privateOutput: the last pass writes dx over the output's buffer, with the same bits; never on a retained pass", () => {
  const x = T.randn([64, 96]).requireGrad(), g = T.randn([96]).mul(0.5).add(1).requireGrad(), b = T.randn([96]).mul(0.1).requireGrad();
  const W = T.randn([40, 96]).requireGrad();
  const run = (privateOutput: boolean, retain: boolean) => {
    for (const p of [x, g, b, W]) p.grad = null;
    const y = T.layerNorm(x, g, b, 1e-5, { privateOutput });
    const yBuf = y.storage.buffer;
    const loss = T.linear(y, W, null).square().sum();
    loss.backward({ retainGraph: retain });
    return { dx: [...x.grad!.f32()], dg: [...g.grad!.f32()], db: [...b.grad!.f32()], dW: [...W.grad!.f32()], overY: x.grad!.storage.buffer === yBuf };
  };
  const plain = run(false, false), own = run(true, false), kept = run(true, true);
  assert.equal(plain.overY, false);
  assert.equal(own.overY, true, 'the last pass writes dx over y');
  assert.equal(kept.overY, false, 'a retained graph keeps y');
  for (const k of ['dx', 'dg', 'db', 'dW'] as const) {
    assert.deepEqual(own[k], plain[k], `${k}: the same bits`);
    assert.deepEqual(kept[k], plain[k], `${k}: the same bits (retained)`);
  }
});
