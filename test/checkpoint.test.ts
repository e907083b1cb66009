/** Activation checkpointing gives the same loss and gradients as the ordinary backward pass (dropout replayed). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TinyGPT } from '../src/models/tiny-gpt.js';
import { LoraModel, quantizeBase } from '../src/peft/index.js';
import { manualSeed, setRng } from '../src/nn/init.js';
import { Rng } from '../src/backend/rng.js';
import { randint } from '../src/tensor/creation.js';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tensor } from '../src/tensor/tensor.js';
import { crossEntropy } from '../src/tensor/ops/nn.js';
import { Linear } from '../src/nn/layers.js';
import type { Module } from '../src/nn/module.js';
import { setGradientCheckpointing, type GradientCheckpointing } from '../src/nn/checkpoint.js';
import { loadHFModelFromDir, causalLMLoss, sequenceClassificationLoss } from '../src/models/hf/index.js';
import { loadUSELite } from '../src/models/use-lite/index.js';
import { loadSafetensors } from '../src/models/safetensors.js';
import { AutoGLMTrainer } from '../src/train/trainer.js';
import { ConfigError } from '../src/errors.js';
import { autocast } from '../src/tensor/precision.js';

function grads(ckpt: GradientCheckpointing, lora: boolean, compute: 'f32' | 'bf16' = 'f32'): { loss: number; g: Map<string, Float32Array> } {
  manualSeed(3);
  const m = new TinyGPT({ vocabSize: 50, contextLength: 16, dim: 32, heads: 4, layers: 3, mlpDim: 64, dropout: 0.1 });
  if (lora) new LoraModel(m, { r: 4, alpha: 8, targetModules: ['qkv', 'fc1'] });
  setGradientCheckpointing(m, ckpt);
  setRng(new Rng(11));
  // backward() outside autocast, as a training loop calls it
  const loss = autocast(compute, () => m.loss(randint([2, 12], 50, 1), randint([2, 12], 50, 2)));
  loss.backward();
  const g = new Map<string, Float32Array>();
  for (const [k, p] of m.namedParameters()) if (p.requiresGrad) g.set(k, p.grad ? p.grad.f32().slice() : new Float32Array(p.size));
  return { loss: loss.item(), g };
}

for (const [lora, compute, mode] of [[false, 'f32', 'full'], [true, 'f32', 'full'], [true, 'bf16', 'full'], [false, 'f32', 'mlp'], [true, 'f32', 'mlp'], [true, 'bf16', 'mlp']] as const) {
  test(`${mode === 'mlp' ? 'recomputed MLP pre-activations' : 'checkpointed blocks'}: same loss and gradients (${lora ? 'LoRA, frozen embeddings' : 'full'}, ${compute} autocast)`, () => {
    const a = grads(false, lora, compute), b = grads(mode, lora, compute);
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

/** Loss and trainable gradients of `run` on a fresh model from `build`, with checkpointing on or off. */
function lossAndGrads(build: () => Module, run: (m: Module) => Tensor, ckpt: GradientCheckpointing): { loss: number; g: Map<string, Float32Array>; stacks: number } {
  const m = build();
  const stacks = setGradientCheckpointing(m, ckpt);
  m.train();
  setRng(new Rng(5));
  const loss = run(m);
  loss.backward();
  const g = new Map<string, Float32Array>();
  for (const [k, p] of m.namedParameters()) if (p.requiresGrad) g.set(k, p.grad ? p.grad.f32().slice() : new Float32Array(p.size));
  return { loss: loss.item(), g, stacks };
}

function assertSame(a: ReturnType<typeof lossAndGrads>, b: ReturnType<typeof lossAndGrads>, what: string): void {
  assert.ok(b.stacks >= 1, `${what}: no checkpointable layer stack found`);
  assert.equal(a.loss, b.loss, `${what}: loss`);
  assert.ok(a.g.size > 0);
  for (const [k, ga] of a.g) {
    const gb = b.g.get(k) as Float32Array;
    let d = 0, s = 0;
    for (let i = 0; i < ga.length; i++) { d = Math.max(d, Math.abs(ga[i] - gb[i])); s = Math.max(s, Math.abs(ga[i])); }
    assert.ok(d <= 1e-6 * Math.max(1, s), `${what} ${k}: max diff ${d}`);
  }
}

const GOLDEN = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'golden');
const golden = (arch: string, key: string): Tensor => loadSafetensors(path.join(GOLDEN, arch, 'golden.safetensors')).tensors.get(key) as Tensor;

for (const arch of ['gpt2', 'llama', 'qwen2', 'glm', 'bert']) {
  test(`gradient checkpointing in ${arch}: same loss and gradients (LoRA with dropout, padding mask)`, () => {
    const build = () => {
      manualSeed(7);
      const m = loadHFModelFromDir(path.join(GOLDEN, arch)) as unknown as Module;
      new LoraModel(m, { r: 4, alpha: 8, dropout: 0.2, targetModules: 'all-linear', seed: 1 });
      return m;
    };
    const ids = golden(arch, 'input_ids'), mask = golden(arch, 'attention_mask');
    const run = (m: Module) => {
      const model = m as unknown as { forward(ids: Tensor, o: object): Tensor };
      if (arch === 'bert') return sequenceClassificationLoss(model.forward(ids, { attentionMask: mask, tokenTypeIds: golden(arch, 'token_type_ids') }), golden(arch, 'labels'));
      return causalLMLoss(model.forward(ids, { attentionMask: mask }), golden(arch, 'labels'));
    };
    const plain = lossAndGrads(build, run, false);
    assertSame(plain, lossAndGrads(build, run, true), arch);
    assertSame(plain, lossAndGrads(build, run, 'mlp'), `${arch} (recomputed MLP pre-activations)`);
  });
}

test('gradient checkpointing in open-autoglm-base (USE-lite): same loss and gradients, full fine-tuning', () => {
  const build = () => {
    manualSeed(7);
    const enc = loadUSELite();
    const head = new Linear(512, 3);
    return Object.assign(enc, { head }) as unknown as Module;
  };
  const run = (m: Module) => {
    const enc = m as unknown as ReturnType<typeof loadUSELite> & { head: Linear };
    const batch = enc.tokenize(['turn on the lights', 'what is the weather like today?', 'play some music']);
    return crossEntropy(enc.head.forward(enc.forward(batch.ids, batch.attentionMask)), new Tensor(Int32Array.from([0, 1, 2]), 'i32', [3]));
  };
  const a = lossAndGrads(build, run, false), b = lossAndGrads(build, run, true);
  assertSame(a, b, 'use-lite');
  assertSame(a, lossAndGrads(build, run, 'mlp'), 'use-lite (recomputed MLP pre-activations)');
});

for (const base of ['f32', 'nf4'] as const) test(`gradient checkpointing in open-autoglm-base with LoRA on a 32 x 12 padded batch${base === 'nf4' ? ", on an NF4 base (QLoRA's recipe)" : ''}: same loss and gradients`, () => {
  // pooled gradient sizes (>= 64 KiB): this caught a leaf gradient (the layer input, a residual) whose buffer went
  // back to the pool while still in use
  const build = () => {
    manualSeed(7);
    const enc = loadUSELite();
    new LoraModel(enc, { r: 8, alpha: 16, targetModules: 'all-linear', seed: 1 });
    if (base === 'nf4') quantizeBase(enc, 'nf4');
    return Object.assign(enc, { head: new Linear(512, 3) }) as unknown as Module;
  };
  const B = 32, T = 12;
  const ids = new Tensor(Int32Array.from({ length: B * T }, (_, i) => 5 + ((i * 7919) % 900)), 'i32', [B, T]);
  const mask = new Tensor(Float32Array.from({ length: B * T }, (_, i) => (i % T < T - (i % 3) ? 1 : 0)), 'f32', [B, T]);
  const run = (m: Module) => {
    const enc = m as unknown as ReturnType<typeof loadUSELite> & { head: Linear };
    return crossEntropy(enc.head.forward(enc.forward(ids, mask)), new Tensor(Int32Array.from({ length: B }, (_, i) => i % 3), 'i32', [B]));
  };
  const plain = lossAndGrads(build, run, false);
  assertSame(plain, lossAndGrads(build, run, true), 'use-lite lora');
  assertSame(plain, lossAndGrads(build, run, 'mlp'), 'use-lite lora (recomputed MLP pre-activations)');
});

test("trainer config key 'gradientCheckpointing': on in the backbone, false by default", async () => {
  const on = new AutoGLMTrainer({ model: 'open-autoglm-base', config: { gradientCheckpointing: true, method: 'lora' } });
  const m = await (on as unknown as { prepareModel(labels: string[]): Promise<Module> }).prepareModel(['a', 'b']);
  const flags = [...m.namedModules()].map(([, x]) => (x as { gradientCheckpointing?: boolean }).gradientCheckpointing).filter((f) => f !== undefined);
  assert.deepEqual(flags, [true]);
  assert.throws(() => new AutoGLMTrainer({ model: 'open-autoglm-base', config: { gradientCheckpointing: 'yes' as unknown as boolean } }), ConfigError);
  const off = new AutoGLMTrainer({ model: 'open-autoglm-base', config: {} });
  const m2 = await (off as unknown as { prepareModel(labels: string[]): Promise<Module> }).prepareModel(['a', 'b']);
  assert.ok([...m2.namedModules()].every(([, x]) => (x as { gradientCheckpointing?: boolean }).gradientCheckpointing !== true));
  // 'mlp': every MLP recomputes its pre-activation, the layer stack is not checkpointed
  const sel = new AutoGLMTrainer({ model: 'open-autoglm-base', config: { gradientCheckpointing: 'mlp', method: 'lora' } });
  const m3 = await (sel as unknown as { prepareModel(labels: string[]): Promise<Module> }).prepareModel(['a', 'b']);
  const rec = [...m3.namedModules()].map(([, x]) => (x as { recomputeActivation?: boolean }).recomputeActivation).filter((f) => f !== undefined);
  assert.ok(rec.length > 0 && rec.every((f) => f === true));
  assert.ok([...m3.namedModules()].every(([, x]) => (x as { gradientCheckpointing?: boolean }).gradientCheckpointing !== true));
});

test('setGradientCheckpointing from plain JavaScript: an unknown mode is a ConfigError naming it, not silently off', () => {
  manualSeed(3);
  const m = new TinyGPT({ vocabSize: 16, contextLength: 8, dim: 16, heads: 2, layers: 1, mlpDim: 32 });
  for (const bad of ['MLP', 'yes', 1, null, undefined] as unknown[]) {
    assert.throws(() => setGradientCheckpointing(m, bad as GradientCheckpointing), (e: unknown) =>
      e instanceof ConfigError && /setGradientCheckpointing/.test(e.message) && /'mlp'/.test(e.message), String(bad));
  }
  assert.equal(setGradientCheckpointing(m, 'mlp') > 0, true);
});
