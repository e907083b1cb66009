/**
 * LoRA with rsLoRA scaling (alpha / sqrt(r)) and DoRA against an independent reference: PEFT's formulas written out
 * in torch (scripts/make_dora_refs.py -> test/fixtures/lora-torch.json, float64), forward and backward: the output
 * of a LoraLinear with given W, b, A, B (and magnitude m) and the gradients of sum(y * G) with respect to x, A, B
 * and m. Before this, rsLoRA and DoRA were only checked against themselves (merge = forward, save = load).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Tensor } from '../src/tensor/tensor.js';
import { copyInto } from '../src/tensor/creation.js';
import { Linear } from '../src/nn/layers.js';
import { LoraLinear, scalingOf } from '../src/peft/lora/layer.js';

interface Case {
  useRslora: boolean; useDora: boolean; n: number; in: number; out: number; r: number; alpha: number; scaling: number;
  W: number[]; b: number[]; A: number[]; B: number[]; m: number[]; x: number[]; G: number[]; y: number[];
  gradX: number[]; gradA: number[]; gradB: number[]; gradM: number[] | null;
}
const REF = JSON.parse(readFileSync(new URL('./fixtures/lora-torch.json', import.meta.url), 'utf8')) as { cases: Case[] };
const t = (xs: number[], shape: number[]) => new Tensor(Float32Array.from(xs), 'f32', shape);

function near(got: Float32Array | number[], want: number[], what: string, tol = 2e-5): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const scale = Math.max(1, ...want.map(Math.abs));
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  assert.ok(worst <= tol * scale, `${what}: max abs error ${worst.toExponential(2)} (scale ${scale.toFixed(2)})`);
}

for (const c of REF.cases) {
  const name = `${c.useDora ? 'DoRA' : 'LoRA'}${c.useRslora ? ' + rsLoRA (alpha / sqrt r)' : ' (alpha / r)'}`;
  test(`${name}: output and gradients (x, A, B${c.useDora ? ', magnitude' : ''}) = PEFT's formulas in torch`, () => {
    const base = new Linear(c.in, c.out);
    copyInto(base.weight, t(c.W, [c.out, c.in]));
    copyInto(base.bias!, t(c.b, [c.out]));
    base.weight.requiresGrad = false;
    base.bias!.requiresGrad = false;
    const layer = new LoraLinear(base);
    const spec = { r: c.r, alpha: c.alpha, dropout: 0, useRslora: c.useRslora, useDora: c.useDora, init: true as const, seed: 1 };
    layer.addAdapter('default', spec);
    assert.ok(Math.abs(scalingOf(spec) - c.scaling) < 1e-12, `scaling ${scalingOf(spec)} vs ${c.scaling}`);
    const A = (layer.lora_A.get('default') as Linear).weight, B = (layer.lora_B.get('default') as Linear).weight;
    copyInto(A, t(c.A, [c.r, c.in]));
    copyInto(B, t(c.B, [c.out, c.r]));
    const m = layer.lora_magnitude_vector.get('default');
    if (c.useDora) copyInto(m!, t(c.m, [c.out]));
    const x = t(c.x, [c.n, c.in]);
    x.requiresGrad = true;
    const y = layer.forward(x);
    near(y.f32(), c.y, `${name}: y`);
    y.mul(t(c.G, [c.n, c.out])).sum().backward();
    near(x.grad!.f32(), c.gradX, `${name}: dL/dx`);
    near(A.grad!.f32(), c.gradA, `${name}: dL/dA`);
    near(B.grad!.f32(), c.gradB, `${name}: dL/dB`);
    if (c.useDora) near(m!.grad!.f32(), c.gradM!, `${name}: dL/dm`);
  });
}
