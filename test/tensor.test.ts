/** Tensor basics, autograd mechanics and typed errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { Tensor } from '../src/tensor/tensor.js';
import { ShapeError, DTypeError, IndexError, AutoGLMError } from '../src/errors.js';
import { testBackends, withBackend } from './helpers/backends.js';

for (const b of testBackends()) {
  test(`creation, views and conversion (${b.name})`, () => withBackend(b, () => {
    const x = T.tensor([[1, 2, 3], [4, 5, 6]]);
    assert.deepEqual(x.shape, [2, 3]);
    assert.deepEqual(x.T.toArray(), [[1, 4], [2, 5], [3, 6]]);
    assert.equal(x.T.storage, x.storage, 'transpose is a view');
    assert.deepEqual(x.slice(1, 1).toArray(), [[2, 3], [5, 6]]);
    assert.deepEqual(x.reshape([3, -1]).toArray(), [[1, 2], [3, 4], [5, 6]]);
    assert.deepEqual(T.arange(0, 5, 2).toFlatArray(), [0, 2, 4]);
    assert.deepEqual(T.zeros([2]).toFlatArray(), [0, 0]);
    assert.equal(T.tensor([2.5]).item(), 2.5);
    assert.deepEqual(x.to('bf16').to('f32').toArray(), x.toArray());
    assert.deepEqual(x.to('f16').toArray(), x.toArray());
    assert.deepEqual(T.tensor([1.7, -2.2]).to('i32').toFlatArray(), [1, -2]);
    assert.deepEqual(T.concat([x, x], 0).shape, [4, 3]);
    assert.deepEqual(x.sum(0).toFlatArray(), [5, 7, 9]);
    assert.deepEqual(x.argmax(1).toFlatArray(), [2, 2]);
    const r1 = T.randn([4], 3).toFlatArray(), r2 = T.randn([4], 3).toFlatArray();
    assert.deepEqual(r1, r2, 'seeded random is reproducible');
  }));

  test(`autograd mechanics (${b.name})`, () => withBackend(b, () => {
    const w = T.tensor([1, 2, 3], { requiresGrad: true });
    w.mul(2).sum().backward();
    w.mul(3).sum().backward(); // accumulates
    assert.deepEqual(w.grad?.toFlatArray(), [5, 5, 5]);
    const y = T.noGrad(() => w.mul(2));
    assert.equal(y.requiresGrad, false);
    assert.equal(w.detach().requiresGrad, false);
    // a tensor used twice gets both contributions
    const a = T.tensor([3], { requiresGrad: true });
    a.mul(a).sum().backward();
    assert.deepEqual(a.grad?.toFlatArray(), [6]);
    // shared gradient buffers are not corrupted by later accumulation
    const p = T.tensor([1, 1], { requiresGrad: true }), q = T.tensor([1, 1], { requiresGrad: true });
    p.add(q).sum().backward();
    p.mul(5).sum().backward();
    assert.deepEqual(q.grad?.toFlatArray(), [1, 1]);
    assert.deepEqual(p.grad?.toFlatArray(), [6, 6]);
    const c = T.tensor([1.1, 2.2], { requiresGrad: true });
    c.to('bf16').to('f32').mul(T.tensor([3, 4])).sum().backward(); // casts pass the gradient straight through
    assert.deepEqual(c.grad?.toFlatArray(), [3, 4]);
    assert.throws(() => T.tensor([1, 2]).sum().backward(), AutoGLMError);
    assert.throws(() => w.mul(2).backward(), /scalar/);
  }));

  test(`typed errors name the op, the argument and the shapes (${b.name})`, () => withBackend(b, () => {
    const a = T.zeros([2, 3]), c = T.zeros([4, 5]);
    assert.throws(() => a.matmul(c), (e: unknown) => e instanceof ShapeError && /matmul/.test(e.message) && /\[4,5\]/.test(e.message) && /\[2,3\]/.test(e.message));
    assert.throws(() => a.add(T.zeros([4])), (e: unknown) => e instanceof ShapeError && /\[2,3\]/.test(e.message) && /\[4\]/.test(e.message));
    assert.throws(() => a.reshape([5]), ShapeError);
    assert.throws(() => a.sum(2), (e: unknown) => e instanceof ShapeError && /axis/.test(e.message));
    assert.throws(() => T.embedding(T.tensor([0, 7], { dtype: 'i32' }), T.zeros([5, 2])), (e: unknown) => e instanceof IndexError && /7/.test(e.message) && /embedding/.test(e.message));
    assert.throws(() => T.embedding(T.tensor([0, 1]), T.zeros([5, 2])), DTypeError);
    assert.throws(() => T.crossEntropy(T.zeros([2, 3]), T.tensor([0, 3], { dtype: 'i32' })), IndexError);
    assert.throws(() => T.crossEntropy(T.zeros([2, 3]), T.tensor([0, 1, 2], { dtype: 'i32' })), ShapeError);
    assert.throws(() => T.tensor([1, 2], { dtype: 'i32' }).matmul(T.zeros([2, 2])), DTypeError);
    assert.throws(() => T.tensor([[1, 2], [3]] as unknown as number[][]), ShapeError);
    assert.throws(() => T.linear(T.zeros([2, 3]), T.zeros([4, 5]), null), (e: unknown) => e instanceof ShapeError && /linear/.test(e.message));
  }));

  test(`fused kernels equal their compositions (${b.name})`, () => withBackend(b, () => {
    const x = T.randn([4, 9], 5);
    const sm = x.softmax(-1).f32();
    const e = x.sub(x.max(-1, true)).exp();
    const comp = e.div(e.sum(-1, true)).f32();
    sm.forEach((v, i) => assert.ok(Math.abs(v - comp[i]) < 1e-6));
    const ln = T.layerNorm(x, null, null, 1e-5).f32();
    const mu = x.mean(-1, true), va = x.var(-1, true);
    const lc = x.sub(mu).div(va.add(1e-5).sqrt()).f32();
    ln.forEach((v, i) => assert.ok(Math.abs(v - lc[i]) < 1e-5));
    const logits = T.randn([3, 5], 6), tg = T.tensor([1, 0, 4], { dtype: 'i32' });
    const ce = T.crossEntropy(logits, tg).item();
    const lp = logits.logSoftmax(-1).toArray() as number[][];
    const manual = -(lp[0][1] + lp[1][0] + lp[2][4]) / 3;
    assert.ok(Math.abs(ce - manual) < 1e-6);
  }));
}

test('embedding on a 16-bit table converts only the rows it looks up', () => {
  const table = T.randn([1000, 8], 3);
  const ids = T.tensor([5, 999, 5], { dtype: 'i32' });
  for (const dt of ['bf16', 'f16'] as const) {
    const e = T.embedding(ids, table.to(dt)).f32();
    const ref = T.embedding(ids, table.to(dt).to('f32')).f32();
    assert.deepEqual(Array.from(e), Array.from(ref));
  }
});

test("a leaf that is also a residual input keeps its gradient: x.add(f(x)) (the buffer both edges get is never pooled)", () => {
  // add hands the same gradient to the leaf and to the branch; when the branch was done with it, the buffer went
  // back to the pool while x.grad still pointed at it, and the next gradient of that size overwrote it
  for (const be of testBackends()) withBackend(be, () => {
    const n = 128 * 256; // >= 64 KiB: pooled sizes
    const xv = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
    const wv = Float32Array.from({ length: n }, (_, i) => Math.cos(i));
    const x = new Tensor(xv.slice(), 'f32', [128, 256]).requireGrad();
    const w = new Tensor(wv, 'f32', [128, 256]);
    const u = new Tensor(Float32Array.from({ length: n }, (_, i) => 1 + (i % 5)), 'f32', [128, 256]);
    x.add(x.tanh().mul(w)).mul(u).sum().backward();
    const g = (x.grad as Tensor).f32();
    let err = 0;
    for (let i = 0; i < n; i++) {
      const t = Math.tanh(xv[i]);
      err = Math.max(err, Math.abs(g[i] - (1 + (i % 5)) * (1 + wv[i] * (1 - t * t))));
    }
    assert.ok(err < 1e-4, `${be.name}: max error ${err}`);
  });
});

test('backward sums a node\'s gradients in place only where no one else holds the pending sum (same bits as retainGraph)', () => {
  for (const be of testBackends()) withBackend(be, () => {
    const n = 128 * 256; // >= 64 KiB: pooled sizes
    const xv = Float32Array.from({ length: n }, (_, i) => Math.sin(i) / 2);
    const u = new Tensor(Float32Array.from({ length: n }, (_, i) => 1 + (i % 7) / 3), 'f32', [128, 256]);
    const graph = () => {
      const x = new Tensor(xv.slice(), 'f32', [128, 256]).requireGrad();
      const h = x.mul(1.5);               // a node with four consumers: three gradients are summed into its pending slot
      const a = h.mul(2), b = h.mul(3);
      const c = a.add(b);                 // add hands one buffer to both a and b: a shared pending gradient
      const y = c.add(a.tanh()).add(h.exp()).add(h.mul(h)).add(h);
      return { x, loss: y.mul(u).sum() };
    };
    const ref = graph();
    ref.loss.backward({ retainGraph: true }); // never sums in place: the reference bits
    for (let step = 0; step < 3; step++) {    // again and again, so pooled buffers come back dirty
      const run = graph();
      run.loss.backward();
      assert.deepEqual(Array.from((run.x.grad as Tensor).f32()), Array.from((ref.x.grad as Tensor).f32()), `${be.name} step ${step}`);
    }
    // and against the analytic gradient
    const g = (ref.x.grad as Tensor).f32(), uv = u.f32();
    let err = 0;
    for (let i = 0; i < n; i++) {
      const h = 1.5 * xv[i], t = Math.tanh(2 * h);
      const dh = 2 + 3 + 2 * (1 - t * t) + Math.exp(h) + 2 * h + 1;
      err = Math.max(err, Math.abs(g[i] - uv[i] * dh * 1.5) / (1 + Math.abs(g[i])));
    }
    assert.ok(err < 1e-5, `${be.name}: max error ${err}`);
  });
});

test('backward never writes into the gradient passed as its seed, nor into a leaf\'s .grad', () => {
  for (const be of testBackends()) withBackend(be, () => {
    const n = 128 * 256;
    const x = new Tensor(Float32Array.from({ length: n }, (_, i) => Math.cos(i)), 'f32', [128, 256]).requireGrad();
    const z = x.mul(2);
    const root = z.add(z).add(z.mul(3)); // the root's gradient reaches z three times, the first being the seed itself
    const seed = new Tensor(Float32Array.from({ length: n }, (_, i) => 1 + (i % 3)), 'f32', [128, 256]);
    const before = Array.from(seed.f32());
    root.backward({ gradient: seed });
    assert.deepEqual(Array.from(seed.f32()), before, `${be.name}: the seed was modified`);
    const g = (x.grad as Tensor).f32();
    for (let i = 0; i < n; i += 997) assert.ok(Math.abs(g[i] - before[i] * 5 * 2) < 1e-5, `${be.name}: x.grad[${i}] = ${g[i]}`);
    // a second backward accumulates into x.grad, and the first one's .grad object is left as it was
    const first = x.grad as Tensor, firstBits = Array.from(first.f32());
    x.mul(4).add(x).sum().backward();
    assert.deepEqual(Array.from(first.f32()), firstBits, `${be.name}: the earlier .grad was written in place`);
    assert.ok(Math.abs((x.grad as Tensor).f32()[10] - (firstBits[10] + 5)) < 1e-5);
  });
});
