/** Activation checkpointing gives the same loss and gradients as the ordinary backward pass (dropout replayed). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TinyGPT } from '../src/models/tiny-gpt.js';
import { LoraModel } from '../src/peft/index.js';
import { manualSeed, setRng } from '../src/nn/init.js';
import { Rng } from '../src/backend/rng.js';
import { randint } from '../src/tensor/creation.js';

function grads(ckpt: boolean, lora: boolean): { loss: number; g: Map<string, Float32Array> } {
  manualSeed(3);
  const m = new TinyGPT({ vocabSize: 50, contextLength: 16, dim: 32, heads: 4, layers: 3, mlpDim: 64, dropout: 0.1 });
  if (lora) new LoraModel(m, { r: 4, alpha: 8, targetModules: ['qkv', 'fc1'] });
  m.gradientCheckpointing = ckpt;
  setRng(new Rng(11));
  const loss = m.loss(randint([2, 12], 50, 1), randint([2, 12], 50, 2));
  loss.backward();
  const g = new Map<string, Float32Array>();
  for (const [k, p] of m.namedParameters()) if (p.requiresGrad) g.set(k, p.grad ? p.grad.f32().slice() : new Float32Array(p.size));
  return { loss: loss.item(), g };
}

for (const lora of [false, true]) {
  test(`checkpointed blocks: same loss and gradients (${lora ? 'LoRA, frozen embeddings' : 'full'})`, () => {
    const a = grads(false, lora), b = grads(true, lora);
    assert.equal(a.loss, b.loss);
    assert.deepEqual([...a.g.keys()], [...b.g.keys()]);
    for (const [k, ga] of a.g) {
      const gb = b.g.get(k) as Float32Array;
      let m = 0, s = 0;
      for (let i = 0; i < ga.length; i++) { m = Math.max(m, Math.abs(ga[i] - gb[i])); s = Math.max(s, Math.abs(ga[i])); }
      assert.ok(m <= 1e-6 * Math.max(1, s), `${k}: max diff ${m}`);
      if (lora && k.includes('lora_B')) assert.ok(s > 0, `${k} got no gradient`);
    }
  });
}
