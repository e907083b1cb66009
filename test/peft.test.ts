/** LoRA and its variants: one table of adapter configs run through the same checks, plus files and errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Tensor } from '../src/tensor/tensor.js';
import { randint } from '../src/tensor/creation.js';
import { crossEntropy } from '../src/tensor/ops/nn.js';
import { noGrad } from '../src/tensor/autograd.js';
import { manualSeed } from '../src/nn/init.js';
import { Module } from '../src/nn/module.js';
import { Linear } from '../src/nn/layers.js';
import { TinyGPT } from '../src/models/tiny-gpt.js';
import { AdamW } from '../src/optim/adam.js';
import { LoraModel, loraConfig, saveAdapter, loadAdapter, quantizeBase, type LoraConfigInput } from '../src/peft/index.js';
import { loadSafetensors } from '../src/models/safetensors.js';
import { ConfigError, CheckpointError } from '../src/errors.js';
import { buildHFModel } from '../src/models/hf/loader.js';
import { relErr } from './helpers/backends.js';

const CFG = { vocabSize: 40, contextLength: 16, dim: 32, heads: 4, layers: 2, mlpDim: 64 };
function model(seed = 0): TinyGPT {
  manualSeed(seed);
  return new TinyGPT(CFG);
}
const ids = randint([2, 8], 40, 11), targets = randint([2, 8], 40, 12);
const logits = (m: Module) => noGrad(() => (m as TinyGPT).forward(ids).f32());

/** Trains a few steps so that B != 0 (and magnitudes move), then returns the wrapper. */
function trained(cfg: LoraConfigInput, steps = 3): { m: TinyGPT; lora: LoraModel } {
  const m = model();
  const lora = new LoraModel(m, cfg);
  const opt = new AdamW(lora.parameterGroups({ lr: 5e-2 }), { lr: 5e-2, weightDecay: 0 });
  for (let i = 0; i < steps; i++) {
    opt.zeroGrad();
    m.loss(ids, targets).backward();
    opt.step();
  }
  return { m, lora };
}

const CASES: Array<{ name: string; cfg: LoraConfigInput }> = [
  { name: 'lora qkv', cfg: { r: 4, alpha: 8, targetModules: ['qkv'] } },
  { name: 'lora all-linear + head', cfg: { r: 2, alpha: 4, targetModules: 'all-linear', modulesToSave: ['head'] } },
  { name: 'rslora', cfg: { r: 4, alpha: 8, useRslora: true, targetModules: ['qkv', 'fc1'] } },
  { name: 'dora', cfg: { r: 4, alpha: 8, useDora: true, targetModules: ['qkv', 'proj'] } },
  { name: 'gaussian init, rank pattern, layer 1 only', cfg: { r: 4, alpha: 8, initLoraWeights: 'gaussian', targetModules: ['qkv', 'fc2'], rankPattern: { fc2: 2 }, layersToTransform: [1] } },
  { name: 'regex targets + bias all', cfg: { r: 2, alpha: 2, targetModules: '.*mlp\\.fc[12]', bias: 'all' } },
  { name: 'embedding', cfg: { r: 4, alpha: 4, targetModules: ['wte'] } },
];

for (const c of CASES) {
  test(`${c.name}: identity at init, trains only adapters, merge/unmerge/unload keep outputs`, () => {
    const base = logits(model());
    const fresh = model();
    const l0 = new LoraModel(fresh, c.cfg);
    if (c.cfg.initLoraWeights !== 'gaussian') assert.ok(relErr(logits(fresh), base) < 1e-6, 'adapter starts at zero');
    const { trainable, total } = l0.trainableSummary();
    assert.ok(trainable > 0 && trainable < total);

    const { m, lora } = trained(c.cfg);
    const before = new Map([...model().namedParameters()].map(([k, t]) => [k, t.f32().slice()]));
    for (const [k, t] of m.namedParameters()) {
      const orig = before.get(k.replace('.base_layer', ''));
      if (!t.requiresGrad && orig && t.dtype === 'f32') assert.deepEqual(t.f32(), orig, `frozen ${k} changed`);
    }
    const y = logits(m);
    assert.ok(relErr(y, base) > 1e-4, 'training moved the outputs');
    lora.merge();
    assert.ok(relErr(logits(m), y) < 1e-5, `merged: ${relErr(logits(m), y)}`);
    lora.unmerge();
    assert.ok(relErr(logits(m), y) < 1e-5, `unmerged: ${relErr(logits(m), y)}`);
    lora.withAdaptersDisabled(() => { if (!c.cfg.modulesToSave && c.cfg.bias !== 'all') assert.ok(relErr(logits(m), base) < 1e-5, 'disabled = base'); });
    const { model: plain } = lora.mergeAndUnload();
    assert.ok([...plain.namedParameters()].every(([k]) => !k.includes('lora_') && !k.includes('base_layer')));
    assert.ok(relErr(logits(plain), y) < 1e-5, `unloaded: ${relErr(logits(plain), y)}`);
  });

  test(`${c.name}: PEFT files round trip`, () => {
    const { m, lora } = trained(c.cfg);
    const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-lora-'));
    const { config, weights } = saveAdapter(lora, dir);
    const cj = JSON.parse(readFileSync(config, 'utf8'));
    assert.equal(cj.peft_type, 'LORA');
    const keys = [...loadSafetensors(weights).tensors.keys()];
    assert.ok(keys.every((k) => k.startsWith('base_model.model.') && !k.includes('.default')), keys.join(', '));
    assert.ok(keys.some((k) => /\.lora_(embedding_)?A(\.weight)?$/.test(k)));
    if (c.cfg.useDora) assert.ok(keys.some((k) => k.endsWith('.lora_magnitude_vector')));
    // a fresh base model with the adapter loaded gives the trained outputs
    const fresh = model();
    const l2 = new LoraModel(fresh, { ...c.cfg, seed: 99 }, 'scratch');
    loadAdapter(l2, dir, 'loaded');
    assert.ok(relErr(logits(fresh), logits(m)) < 1e-6);
  });
}

test('several adapters on one base: switch, disable, delete; each keeps its own head', () => {
  const m = model();
  const lora = new LoraModel(m, { r: 4, alpha: 8, targetModules: ['qkv'], modulesToSave: ['head'] }, 'task_a');
  lora.addAdapter('task_b', { r: 2, alpha: 2, targetModules: ['fc1'], modulesToSave: ['head'] });
  assert.deepEqual(lora.activeAdapters, ['task_a']);
  const train = (steps: number) => {
    const opt = new AdamW(lora.parameterGroups({ lr: 5e-2 }), { lr: 5e-2, weightDecay: 0 });
    for (let i = 0; i < steps; i++) { opt.zeroGrad(); m.loss(ids, targets).backward(); opt.step(); }
  };
  train(3);
  const ya = logits(m);
  lora.setAdapter('task_b');
  assert.ok([...m.namedParameters()].filter(([k, t]) => t.requiresGrad && k.includes('lora_')).every(([k]) => k.includes('task_b')));
  train(3);
  const yb = logits(m);
  assert.ok(relErr(ya, yb) > 1e-3);
  lora.setAdapter('task_a');
  assert.ok(relErr(logits(m), ya) < 1e-6, 'switching back restores adapter and head');
  lora.setAdapter('task_b');
  assert.ok(relErr(logits(m), yb) < 1e-6);
  lora.deleteAdapter('task_b');
  assert.deepEqual(lora.adapterNames, ['task_a']);
  assert.ok(relErr(logits(m), ya) < 1e-6);
  assert.ok([...m.namedParameters()].every(([k]) => !k.includes('task_b')));
});

test('an adapter added after another was trained starts from the base model\'s head, not the trained one', () => {
  const m = model();
  const base = logits(m);
  const headBefore = [...m.namedParameters()].filter(([k]) => k.startsWith('head.')).map(([k, t]) => [k, t.f32().slice()] as const);
  const lora = new LoraModel(m, { r: 4, alpha: 8, targetModules: ['qkv'], modulesToSave: ['head'] }, 'task_a');
  const opt = new AdamW(lora.parameterGroups({ lr: 5e-2 }), { lr: 5e-2, weightDecay: 0 });
  for (let i = 0; i < 3; i++) { opt.zeroGrad(); m.loss(ids, targets).backward(); opt.step(); }
  const ya = logits(m);
  lora.addAdapter('task_b', { r: 2, alpha: 2, targetModules: ['fc1'], modulesToSave: ['head'] });
  lora.setAdapter('task_b');
  const params = new Map(m.namedParameters());
  for (const [k, v] of headBefore) assert.deepEqual(params.get(k)?.f32(), v, `${k} is the base model's`);
  assert.ok(relErr(logits(m), base) < 1e-6, 'a fresh adapter (B = 0) with the original head gives the base logits');
  lora.setAdapter('task_a');
  assert.ok(relErr(logits(m), ya) < 1e-6, 'task_a keeps its trained head');
});

test('LoRA+ groups give B ratio x the learning rate of A', () => {
  const lora = new LoraModel(model(), { r: 4, targetModules: ['qkv'] });
  const groups = lora.parameterGroups({ lr: 1e-3, loraPlusRatio: 16 }) as Array<{ params: Tensor[]; lr: number }>;
  const b = groups.find((g) => g.lr > 1e-3);
  assert.ok(b && Math.abs(b.lr - 16e-3) < 1e-12 && b.params.length === 2 && b.params.every((p) => p.shape[1] === 4), 'B matrices (out, r) at 16x');
  const a = groups.find((g) => g.params.some((p) => p.shape[0] === 4));
  assert.ok(a && a.lr === 1e-3);
});

test('config and file errors are typed and name the key', () => {
  assert.throws(() => loraConfig({ r: 0 }), (e: unknown) => e instanceof ConfigError && /'r'/.test(e.message));
  assert.throws(() => loraConfig({ rank: 4 } as unknown as LoraConfigInput), (e: unknown) => e instanceof ConfigError && /rank/.test(e.message));
  assert.throws(() => new LoraModel(model(), { targetModules: ['nope'] }), (e: unknown) => e instanceof ConfigError && /matched no/.test(e.message));
  const { lora } = trained({ r: 4, targetModules: ['qkv'] }, 1);
  const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-lora-bad-'));
  saveAdapter(lora, dir);
  // unknown peft_type
  const cfg = JSON.parse(readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
  writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ ...cfg, peft_type: 'IA3' }));
  assert.throws(() => loadAdapter(new LoraModel(model(), { targetModules: ['fc1'] }), dir, 'x'), (e: unknown) => e instanceof ConfigError && /IA3/.test(e.message));
  // wrong base shapes: a model of another width
  writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(cfg));
  manualSeed(0);
  const wide = new TinyGPT({ ...CFG, dim: 48, heads: 4 });
  const lw = new LoraModel(wide, { targetModules: ['fc1'] });
  assert.throws(() => loadAdapter(lw, dir, 'x'), (e: unknown) => e instanceof CheckpointError && /lora_A\.weight/.test(e.message) && /\[4,48\]/.test(e.message));
  assert.deepEqual(lw.adapterNames, ['default'], 'a failed load leaves no half-added adapter');
  // missing keys: the adapter targets layers this model lacks
  manualSeed(0);
  const shallow = new TinyGPT({ ...CFG, layers: 1 });
  assert.throws(() => loadAdapter(new LoraModel(shallow, { targetModules: ['fc1'] }), dir, 'x'), (e: unknown) => e instanceof CheckpointError && /unexpected key/.test(e.message));
});

test('low-precision frozen base: bf16 and int8 with f32 LoRA on top; int8 merge reports its error', () => {
  for (const mode of ['bf16', 'int8'] as const) {
    const m = model();
    const y32 = logits(m);
    const lora = new LoraModel(m, { r: 4, alpha: 8, targetModules: ['qkv', 'fc1', 'fc2', 'proj'] });
    const q = quantizeBase(m, mode, { skip: ['head'] });
    // 8 Linear layers and the 2 frozen embedding tables in bf16, or int8 with a scale per row
    assert.ok(q.layers === 8 && q.embeddings === 2 && q.bytesAfter < q.bytesBefore / (mode === 'bf16' ? 1.9 : 3.5), JSON.stringify(q));
    if (mode === 'int8') assert.equal(m.wte.constructor.name, 'Int8Embedding');
    assert.ok(relErr(logits(m), y32) < (mode === 'bf16' ? 2e-2 : 3e-2), `${mode} base close to f32: ${relErr(logits(m), y32)}`);
    const opt = new AdamW(lora.parameterGroups({ lr: 5e-2 }), { lr: 5e-2, weightDecay: 0 });
    const l0 = m.loss(ids, targets).item();
    for (let i = 0; i < 5; i++) { opt.zeroGrad(); m.loss(ids, targets).backward(); opt.step(); }
    assert.ok(m.loss(ids, targets).item() < l0, `${mode}: LoRA trains on a quantised base`);
    const y = logits(m);
    const { maxError } = lora.merge();
    if (mode === 'int8') assert.ok(maxError > 0 && maxError < 0.05, `re-quantisation error ${maxError}`);
    assert.ok(relErr(logits(m), y) < 5e-2);
  }
});

test('Linear targets of any architecture: a plain module tree', () => {
  class Net extends Module {
    readonly enc = this.module('enc', new Linear(6, 5));
    readonly out = this.module('out', new Linear(5, 3));
    forward(x: Tensor): Tensor { return this.out.forward(this.enc.forward(x).relu()); }
  }
  manualSeed(3);
  const n = new Net();
  const lora = new LoraModel(n, { r: 2, targetModules: ['enc'], modulesToSave: ['out'] });
  assert.ok(n.enc.constructor.name === 'LoraLinear', 'the property is rewired to the LoRA layer');
  const x = new Tensor(new Float32Array(12).fill(0.5), 'f32', [2, 6]);
  const loss = crossEntropy(n.forward(x), new Tensor(Int32Array.from([0, 2]), 'i32', [2]));
  loss.backward();
  assert.ok(lora.trainableSummary().trainable === 2 * 6 + 5 * 2 + 5 * 3 + 3);
});

test('a config without targetModules takes PEFT\'s default for the architecture (c_attn, q_proj/v_proj, query/value, qkv)', () => {
  const cases: Array<[string, Module, string[]]> = [
    ['gpt2', buildHFModel({ model_type: 'gpt2', vocab_size: 40, n_positions: 16, n_embd: 16, n_head: 2, n_layer: 2 }), ['c_attn']],
    ['llama', buildHFModel({ model_type: 'llama', vocab_size: 40, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 2 }), ['q_proj', 'v_proj']],
    ['bert', buildHFModel({ model_type: 'bert', vocab_size: 40, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 2 }), ['query', 'value']],
    ['tiny-gpt', new TinyGPT({ vocabSize: 40, contextLength: 16, dim: 16, heads: 2, layers: 2, mlpDim: 32 }), ['qkv']],
  ];
  for (const [name, m, want] of cases) {
    const lm = new LoraModel(m, { r: 2 });
    const adapted = lm.loraLayers().map(([p]) => p.split('.').pop() as string);
    assert.deepEqual([...new Set(adapted)].sort(), [...want].sort(), name);
    assert.equal(adapted.length, 2 * want.length, `${name}: one per layer of 2`);
    assert.deepEqual(lm.configs.get('default')?.targetModules, want, `${name}: the config records what was chosen (saved as target_modules)`);
  }
});
