/**
 * loraLinear (LoRA's base + adapter product as one op) against the composition it replaces under autocast
 * (linear, lora_A's linear, addLinear), forward and backward, and against finite differences.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loraLinear } from '../src/tensor/ops/lora-linear.js';
import { addLinear, linear } from '../src/tensor/ops/linalg.js';
import { autocast, type ComputeDType } from '../src/tensor/precision.js';
import { randn } from '../src/tensor/creation.js';
import { gradcheck } from '../src/tensor/gradcheck.js';
import { Tensor } from '../src/tensor/tensor.js';
import { ShapeError } from '../src/errors.js';
import { manualSeed } from '../src/nn/init.js';
import { Linear } from '../src/nn/layers.js';
import { LoraLinear } from '../src/peft/lora/layer.js';

const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const maxAbs = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

function setup(o: { trainW: boolean; sep: boolean; bias: boolean }) {
  const x = randn([3, 5, 24], 1).requireGrad();
  const W = randn([20, 24], 2).scale(0.2).requireGrad(o.trainW);
  const b = o.bias ? randn([20], 3).requireGrad() : null;
  const A = randn([4, 24], 4).scale(0.2).requireGrad();
  const B = randn([20, 4], 5).scale(0.2).requireGrad();
  const mask = randn([3, 5, 24], 6).gt(0).to('f32').scale(2); // a dropout of 1/2, as a fixed mask
  return { x, W, b, A, B, xa: (x: Tensor) => (o.sep ? x.mul(mask) : x) };
}

for (const compute of ['bf16', 'f32'] as ComputeDType[]) {
  for (const o of [{ trainW: false, sep: false, bias: true }, { trainW: true, sep: false, bias: false }, { trainW: false, sep: true, bias: true }]) {
    test(`loraLinear = linear + lora_A + addLinear (${compute}, W ${o.trainW ? 'trained' : 'frozen'}, ${o.sep ? 'dropout' : 'no dropout'}, ${o.bias ? 'bias' : 'no bias'})`, () => {
      const run = (fused: boolean) => {
        const s = setup(o);
        const gy = randn([3, 5, 20], 7);
        const y = autocast(compute, () => {
          const xa = s.xa(s.x);
          if (fused) return loraLinear(s.x, s.W, s.b, s.A, s.B, 2, xa);
          return addLinear(linear(s.x, s.W, s.b), linear(xa, s.A, null), s.B, 2, { inPlace: true });
        });
        y.backward({ gradient: gy });
        return { y: y.f32(), grads: [s.x, s.W, s.b, s.A, s.B].map((t) => (t && t.grad ? t.grad.f32() : null)) };
      };
      const f = run(true), c = run(false);
      assert.deepEqual(Array.from(f.y), Array.from(c.y), 'forward: the same products, the same bits');
      f.grads.forEach((g, i) => {
        const want = c.grads[i];
        assert.equal(g === null, want === null, `gradient ${i} present in both or neither`);
        if (g && want) assert.ok(maxDiff(g, want) <= 1e-5 * Math.max(1, maxAbs(want)), `gradient ${i}: max diff ${maxDiff(g, want)}`);
      });
    });
  }
}

test('loraLinear: gradients against finite differences (f32)', () => {
  const x = randn([2, 3, 6], 11).requireGrad(), W = randn([5, 6], 12).requireGrad(), b = randn([5], 13).requireGrad();
  const A = randn([2, 6], 14).requireGrad(), B = randn([5, 2], 15).requireGrad();
  const r = gradcheck((x, W, b, A, B) => loraLinear(x, W, b, A, B, 1.5), [x, W, b, A, B], { eps: 1e-2, atol: 1e-2, rtol: 1e-2 });
  assert.ok(r.ok, JSON.stringify(r.details));
});

test('loraLinear: shapes are checked, naming the argument', () => {
  const x = randn([2, 6], 1), W = randn([5, 6], 2), A = randn([2, 6], 3), B = randn([5, 2], 4);
  assert.throws(() => loraLinear(x, W, null, randn([2, 7], 5), B, 1), (e: unknown) => e instanceof ShapeError && /'A'/.test(e.message));
  assert.throws(() => loraLinear(x, W, null, A, randn([4, 2], 6), 1), (e: unknown) => e instanceof ShapeError && /'B'/.test(e.message));
  assert.throws(() => loraLinear(randn([2, 5], 7), W, null, A, B, 1), (e: unknown) => e instanceof ShapeError && /'x'/.test(e.message));
});

test('LoraLinear under bf16 autocast takes the fused op, with the composition\'s outputs', () => {
  manualSeed(3);
  const layer = new LoraLinear(new Linear(24, 20));
  layer.addAdapter('default', { r: 4, alpha: 8, dropout: 0, useRslora: false, useDora: false, init: false, seed: 1 });
  const x = randn([6, 24], 9);
  const fused = autocast('bf16', () => layer.forward(x));
  assert.equal(fused.node?.op, 'loraLinear');
  const xg = x.detach().requireGrad();
  assert.equal(autocast('bf16', () => layer.forward(xg)).node?.op, 'loraLinear');
  assert.notEqual(autocast('f32', () => layer.forward(xg)).node?.op, 'loraLinear', 'fp32 keeps the composition');
  const A = (layer.lora_A.get('default') as Linear).weight, B = (layer.lora_B.get('default') as Linear).weight;
  const comp = autocast('bf16', () => addLinear(linear(x, layer.weight, layer.bias), linear(x, A, null), B, 2));
  assert.deepEqual(Array.from(fused.f32()), Array.from(comp.f32()));
});
