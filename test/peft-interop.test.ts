/**
 * PEFT interop: an adapter written by scripts/make_peft_fixture.py (PyTorch, PEFT's file layout and key names,
 * PEFT's LoRA math) loads here and gives PyTorch's logits; an adapter saved here, read by that script, gives
 * ours there (when /usr/bin/python3 has torch; skipped otherwise).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TinyGPT } from '../src/models/tiny-gpt.js';
import { loadSafetensors } from '../src/models/safetensors.js';
import { LoraModel, loadAdapter, saveAdapter } from '../src/peft/index.js';
import { Tensor } from '../src/tensor/tensor.js';
import { noGrad } from '../src/tensor/autograd.js';
import { manualSeed } from '../src/nn/init.js';
import { relErr, testBackends, withBackend } from './helpers/backends.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FIX = path.join(ROOT, 'test/fixtures/peft');
const expected = JSON.parse(readFileSync(path.join(FIX, 'expected.json'), 'utf8')) as {
  config: { vocab: number; ctx: number; dim: number; heads: number; layers: number; mlp: number }; ids: number[][]; logits: number[];
};

function baseModel(): TinyGPT {
  const c = expected.config;
  manualSeed(0);
  const m = new TinyGPT({ vocabSize: c.vocab, contextLength: c.ctx, dim: c.dim, heads: c.heads, layers: c.layers, mlpDim: c.mlp });
  m.loadStateDict(loadSafetensors(path.join(FIX, 'base.safetensors')).tensors);
  return m.eval();
}
const ids = new Tensor(Int32Array.from(expected.ids.flat()), 'i32', [expected.ids.length, expected.ids[0].length]);

for (const b of testBackends()) {
  test(`an adapter written by PyTorch in PEFT's layout gives PyTorch's logits (${b.name})`, () => withBackend(b, () => {
    const m = baseModel();
    const lora = new LoraModel(m, { targetModules: ['fc2'] }, 'scratch');
    loadAdapter(lora, path.join(FIX, 'adapter'), 'from_torch');
    lora.deleteAdapter('scratch');
    const y = noGrad(() => m.forward(ids)).f32();
    const err = relErr(y, expected.logits);
    assert.ok(err < 1e-5, `rel err ${err}`);
    const plain = noGrad(() => baseModel().forward(ids)).f32();
    assert.ok(relErr(plain, expected.logits) > 1e-3, 'the adapter changes the outputs');
  }));
}

test('an adapter saved here gives the same logits in the PyTorch script', (t) => {
  if (!existsSync('/usr/bin/python3') || spawnSync('/usr/bin/python3', ['-c', 'import torch']).status !== 0) {
    return t.skip('/usr/bin/python3 has no torch (apt-get install -y python3-torch)');
  }
  const m = baseModel();
  const lora = new LoraModel(m, { r: 2, alpha: 6, targetModules: ['qkv', 'fc1'], initLoraWeights: false, seed: 5 });
  const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-peft-interop-'));
  saveAdapter(lora, dir);
  const out = path.join(dir, 'torch.json');
  const r = spawnSync('/usr/bin/python3', [path.join(ROOT, 'scripts/make_peft_fixture.py'), 'check', FIX, dir, out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const theirs = (JSON.parse(readFileSync(out, 'utf8')) as { logits: number[] }).logits;
  const ours = noGrad(() => m.forward(ids)).f32();
  assert.ok(relErr(ours, theirs) < 1e-5, `rel err ${relErr(ours, theirs)}`);
  assert.ok(relErr(noGrad(() => baseModel().forward(ids)).f32(), theirs) > 1e-4, 'the adapter is not a no-op');
});
