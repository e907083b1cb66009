/**
 * Optimizer semantics against float64 references written from PyTorch's documented update rules: Adam's weight
 * decay is an L2 term in the gradient (torch.optim.Adam), AdamW's is decoupled (torch.optim.AdamW); both with bias
 * correction. Two steps each, so moments and step counts are exercised.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor } from '../src/tensor/tensor.js';
import { Adam, AdamW } from '../src/optim/adam.js';

const w0 = [0.5, -1.25, 2, 0.1], grads = [[0.3, -0.2, 0.05, 1.5], [-0.1, 0.4, 0.2, -0.7]];

function reference(decoupled: boolean, lr: number, wd: number): number[] {
  const [b1, b2, eps] = [0.9, 0.999, 1e-8];
  const w = [...w0], m = [0, 0, 0, 0], v = [0, 0, 0, 0];
  grads.forEach((g, s) => {
    const t = s + 1;
    for (let i = 0; i < w.length; i++) {
      let gi = g[i];
      if (decoupled) w[i] *= 1 - lr * wd;
      else gi += wd * w[i];
      m[i] = b1 * m[i] + (1 - b1) * gi;
      v[i] = b2 * v[i] + (1 - b2) * gi * gi;
      const mh = m[i] / (1 - b1 ** t), vh = v[i] / (1 - b2 ** t);
      w[i] -= lr * mh / (Math.sqrt(vh) + eps);
    }
  });
  return w;
}

for (const [name, decoupled] of [['Adam (L2 in the gradient)', false], ['AdamW (decoupled)', true]] as const) {
  test(`${name}: two steps match the reference, also with the decay set per group`, () => {
    for (const perGroup of [false, true]) {
      const p = new Tensor(Float32Array.from(w0), 'f32', [4]);
      p.requiresGrad = true;
      const params = perGroup ? [{ params: [p], weightDecay: 0.1 }] : [p];
      const opts = { lr: 0.05, weightDecay: perGroup ? 0 : 0.1 };
      const opt = decoupled ? new AdamW(params, opts) : new Adam(params, opts);
      for (const g of grads) {
        p.grad = new Tensor(Float32Array.from(g), 'f32', [4]);
        opt.step();
      }
      const want = reference(decoupled, 0.05, 0.1), got = p.f32();
      want.forEach((x, i) => assert.ok(Math.abs(got[i] - x) < 1e-6, `${name}${perGroup ? ' (group)' : ''} [${i}]: ${got[i]} vs ${x}`));
    }
  });
}

test('Adam and AdamW with the same decay give different weights (the trainer sets decay per group)', () => {
  const run = (Opt: typeof Adam | typeof AdamW) => {
    const p = new Tensor(Float32Array.from(w0), 'f32', [4]);
    p.requiresGrad = true;
    const opt = new Opt([{ params: [p], weightDecay: 0.1 }], { lr: 0.05 });
    for (const g of grads) { p.grad = new Tensor(Float32Array.from(g), 'f32', [4]); opt.step(); }
    return p.f32();
  };
  const a = run(Adam), w = run(AdamW);
  assert.ok(a.some((x, i) => Math.abs(x - w[i]) > 1e-4), `${a} vs ${w}`);
});
