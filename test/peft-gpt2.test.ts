/**
 * GPT-2 adapters in PEFT's layout: PEFT writes LoRA on GPT-2's Conv1D layers with `fan_in_fan_out: true`,
 * lora_A (r, in) and lora_B (out, r). An adapter written that way by hand (keys, shapes and flag as PEFT writes
 * them) loads, and base + adapter gives the logits of the checkpoint merged the way PEFT merges a Conv1D layer
 * (W_conv (in, out) + (B A)^T * scaling, in the checkpoint's own layout, loaded through the ordinary loader). A GPT-2
 * adapter saved here says fan_in_fan_out true and reloads to the same logits.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildHFModel, saveHFModel, loadHFModelFromDir, type CausalLM } from '../src/models/hf/index.js';
import { loadSafetensors, saveSafetensors } from '../src/models/safetensors.js';
import { LoraModel, loadAdapter, saveAdapter } from '../src/peft/index.js';
import { Tensor } from '../src/tensor/tensor.js';
import { noGrad } from '../src/tensor/autograd.js';
import { manualSeed } from '../src/nn/init.js';
import { relErr } from './helpers/backends.js';

const E = 16, R = 4, ALPHA = 8, LAYERS = 2;
const root = mkdtempSync(path.join(tmpdir(), 'autoglm-peft-gpt2-'));
const baseDir = path.join(root, 'base');
manualSeed(11);
const base = buildHFModel({ model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], vocab_size: 50, n_positions: 32, n_embd: E, n_head: 2, n_layer: LAYERS, initializer_range: 0.2 });
saveHFModel(base, baseDir);
const ids = new Tensor(Int32Array.from([1, 5, 9, 2, 44, 3, 7, 8, 30, 12]), 'i32', [2, 5]);
const logitsOf = (m: CausalLM) => Float32Array.from(noGrad(() => m.forward(ids)).f32());

function rand(shape: number[], seed: number): Tensor {
  const d = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < d.length; i++) d[i] = Math.sin(seed * 1000 + i * 12.9898) * 0.3;
  return new Tensor(d, 'f32', shape);
}

test('a PEFT-layout GPT-2 adapter (fan_in_fan_out true, Conv1D layers) gives the logits of the PEFT-merged checkpoint', () => {
  // the adapter as PEFT writes it: c_attn (in E, out 3E) and mlp.c_fc (in E, out 4E)
  const targets: [string, number, number][] = [];
  for (let l = 0; l < LAYERS; l++) targets.push([`transformer.h.${l}.attn.c_attn`, E, 3 * E], [`transformer.h.${l}.mlp.c_fc`, E, 4 * E]);
  const tensors = new Map<string, Tensor>();
  targets.forEach(([m, inF, outF], i) => {
    tensors.set(`base_model.model.${m}.lora_A.weight`, rand([R, inF], 2 * i + 1));
    tensors.set(`base_model.model.${m}.lora_B.weight`, rand([outF, R], 2 * i + 2));
  });
  const adapterDir = path.join(root, 'peft-adapter');
  mkdirSync(adapterDir);
  saveSafetensors(path.join(adapterDir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
  writeFileSync(path.join(adapterDir, 'adapter_config.json'), JSON.stringify({
    peft_type: 'LORA', task_type: 'CAUSAL_LM', r: R, lora_alpha: ALPHA, lora_dropout: 0.0, target_modules: ['c_attn', 'c_fc'],
    fan_in_fan_out: true, bias: 'none', base_model_name_or_path: 'gpt2', use_rslora: false, use_dora: false, modules_to_save: null,
  }));
  // PEFT's merge in the checkpoint's layout: Conv1D weight (in, out) += transpose(B @ A) * alpha / r
  const ckpt = loadSafetensors(path.join(baseDir, 'model.safetensors')).tensors;
  const merged = new Map(ckpt);
  for (const [m, inF, outF] of targets) {
    const A = tensors.get(`base_model.model.${m}.lora_A.weight`)!.f32(), B = tensors.get(`base_model.model.${m}.lora_B.weight`)!.f32();
    const W = Float32Array.from(ckpt.get(`${m}.weight`)!.f32());
    assert.deepEqual(ckpt.get(`${m}.weight`)!.shape, [inF, outF], 'the checkpoint holds Conv1D (in, out)');
    for (let i = 0; i < inF; i++) for (let o = 0; o < outF; o++) {
      let s = 0;
      for (let k = 0; k < R; k++) s += B[o * R + k] * A[k * inF + i];
      W[i * outF + o] += s * (ALPHA / R);
    }
    merged.set(`${m}.weight`, new Tensor(W, 'f32', [inF, outF]));
  }
  const mergedDir = path.join(root, 'peft-merged');
  mkdirSync(mergedDir);
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) try { copyFileSync(path.join(baseDir, f), path.join(mergedDir, f)); } catch { /* no tokenizer */ }
  saveSafetensors(path.join(mergedDir, 'model.safetensors'), merged, { format: 'pt' });
  const reference = logitsOf(loadHFModelFromDir(mergedDir) as unknown as CausalLM);

  const model = loadHFModelFromDir(baseDir) as unknown as CausalLM;
  const plain = logitsOf(model);
  const lora = new LoraModel(model, { targetModules: ['c_attn'] }, 'scratch');
  const cfg = loadAdapter(lora, adapterDir, 'peft');
  lora.deleteAdapter('scratch');
  assert.equal(cfg.fanInFanOut, true);
  const ours = logitsOf(model);
  assert.ok(relErr(ours, reference) < 1e-5, `rel err ${relErr(ours, reference)}`);
  assert.ok(relErr(plain, reference) > 1e-2, 'the adapter changes the logits');
});

test('a GPT-2 adapter saved here says fan_in_fan_out true, as PEFT writes it, and reloads to the same logits', () => {
  const model = loadHFModelFromDir(baseDir) as unknown as CausalLM;
  const lora = new LoraModel(model, { r: R, alpha: ALPHA, targetModules: ['c_attn', 'c_proj'], initLoraWeights: false, seed: 3 });
  const want = logitsOf(model);
  const dir = path.join(root, 'ours');
  saveAdapter(lora, dir);
  const j = JSON.parse(readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(j.fan_in_fan_out, true);
  const keys = [...loadSafetensors(path.join(dir, 'adapter_model.safetensors')).tensors.entries()];
  const a = keys.find(([k]) => k === 'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight');
  const b = keys.find(([k]) => k === 'base_model.model.transformer.h.0.attn.c_attn.lora_B.weight');
  assert.deepEqual(a?.[1].shape, [R, E]);
  assert.deepEqual(b?.[1].shape, [3 * E, R]);
  const again = loadHFModelFromDir(baseDir) as unknown as CausalLM;
  const l2 = new LoraModel(again, { targetModules: ['c_attn'] }, 'scratch');
  loadAdapter(l2, dir, 'x');
  l2.deleteAdapter('scratch');
  assert.ok(relErr(logitsOf(again), want) < 1e-6);
  // a Llama adapter stays fan_in_fan_out false
  const llama = buildHFModel({ model_type: 'llama', vocab_size: 40, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2 });
  const ll = new LoraModel(llama, { fanInFanOut: true });
  assert.equal(ll.configs.get('default')!.fanInFanOut, false);
});
