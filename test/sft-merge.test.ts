/**
 * `autoglm merge` of a decoder adapter: a complete Hugging Face folder whose logits, reloaded, equal base + adapter
 * (max abs diff <= 1e-5) on Llama (the tiny chat model) and GPT-2 (Conv1D layers, fan_in_fan_out adapters); and
 * `autoglm generate --chat` on it renders the prompt with the model's chat template.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildHFModel, loadHFModelFromDir, saveHFModel, type CausalLM } from '../src/models/hf/index.js';
import { LoraModel, saveAdapter } from '../src/peft/index.js';
import { Tensor } from '../src/tensor/tensor.js';
import { noGrad } from '../src/tensor/autograd.js';
import { manualSeed } from '../src/nn/init.js';
import { makeTinyChatModel } from '../src/sft/tiny-chat-model.js';
import { mergeAdapterToHF } from '../src/sft/merge.js';
import { chatTemplateOf } from '../src/sft/template.js';
import { encodeChatPrompt } from '../src/sft/chat.js';
import { main } from '../src/cli/main.js';

const root = mkdtempSync(path.join(tmpdir(), 'autoglm-sft-merge-'));
const ids = new Tensor(Int32Array.from([1, 7, 12, 30, 4, 9, 22, 5, 18, 2]), 'i32', [2, 5]);
const logitsOf = (m: CausalLM) => Float32Array.from(noGrad(() => m.forward(ids)).f32());
const maxAbs = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

/** An adapter with random B (so it changes the logits), saved with its base's path; returns base + adapter logits. */
function adapterOn(baseDir: string, targets: string | string[], out: string): Float32Array {
  const model = loadHFModelFromDir(baseDir) as unknown as CausalLM;
  const lora = new LoraModel(model, { r: 4, alpha: 8, targetModules: targets, initLoraWeights: false, seed: 7, taskType: 'CAUSAL_LM', baseModelNameOrPath: baseDir });
  // PEFT's init_lora_weights=false draws B small; make it large enough to matter
  for (const [k, p] of model.namedParameters()) if (k.includes('lora_B')) p.f32().forEach((_, i, a) => (a[i] = Math.sin(i + k.length) * 0.2));
  saveAdapter(lora, out);
  return logitsOf(model);
}

test('merged Llama chat model: a complete folder, same logits as base + adapter (<= 1e-5), loads in generate --chat', async () => {
  const base = path.join(root, 'tiny');
  makeTinyChatModel(base, { hiddenSize: 32, layers: 2, heads: 4, seed: 1 });
  const adapter = path.join(root, 'run', 'adapter');
  const want = adapterOn(base, 'all-linear', adapter);
  const plain = logitsOf(loadHFModelFromDir(base) as unknown as CausalLM);
  assert.ok(maxAbs(want, plain) > 1e-3, 'the adapter changes the logits');
  const out = path.join(root, 'merged');
  const r = await mergeAdapterToHF(path.join(root, 'run'), out); // a run folder: its adapter/
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) assert.ok(existsSync(path.join(out, f)), f);
  assert.ok(r.maxLogitDiff <= 1e-5, `merge check ${r.maxLogitDiff}`);
  const merged = loadHFModelFromDir(out) as unknown as CausalLM;
  assert.ok(maxAbs(logitsOf(merged), want) <= 1e-5, `max abs diff ${maxAbs(logitsOf(merged), want)}`);
  assert.equal([...merged.namedParameters()].some(([k]) => k.includes('lora')), false);
  assert.ok(JSON.parse(readFileSync(path.join(out, 'tokenizer_config.json'), 'utf8')).chat_template.includes('<|im_start|>'));

  // the CLI: merge again from the adapter folder, then generate --chat on the merged folder
  const logs: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => logs.push(a.join(' '));
  try {
    assert.equal(await main(['merge', adapter, '--out', path.join(root, 'merged-cli'), '--json']), 0);
    assert.equal(await main(['generate', '--model', path.join(root, 'merged-cli'), 'what is 1+2?', '--chat', '--max-new-tokens', '3', '--json']), 0);
  } finally {
    console.log = log;
  }
  const summary = JSON.parse(logs.find((l) => l.includes('"command":"merge"'))!) as { max_logit_diff: number };
  assert.ok(summary.max_logit_diff <= 1e-5);
  const gen = JSON.parse(logs[logs.length - 1]) as { ids: number[]; chat_template: string };
  const tok = merged.hf!.tokenizer!;
  const prompt = encodeChatPrompt(tok, chatTemplateOf(tok), [{ role: 'user', content: 'what is 1+2?' }]);
  assert.deepEqual(gen.ids.slice(0, prompt.length), prompt);
  assert.equal(tok.decode(prompt, { skipSpecialTokens: false }), '<|im_start|>user\nwhat is 1+2?<|im_end|>\n<|im_start|>assistant\n');
  assert.equal(gen.chat_template, 'tokenizer_config.json');
});

test('merged GPT-2 (Conv1D layers, fan_in_fan_out adapter): same logits as base + adapter', async () => {
  manualSeed(5);
  const base = path.join(root, 'gpt2');
  saveHFModel(buildHFModel({ model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], vocab_size: 40, n_positions: 16, n_embd: 16, n_head: 2, n_layer: 2, initializer_range: 0.2, eos_token_id: 0 }), base);
  const adapter = path.join(root, 'gpt2-adapter');
  const want = adapterOn(base, ['c_attn', 'c_proj', 'c_fc'], adapter);
  assert.equal(JSON.parse(readFileSync(path.join(adapter, 'adapter_config.json'), 'utf8')).fan_in_fan_out, true);
  const out = path.join(root, 'gpt2-merged');
  await mergeAdapterToHF(adapter, out);
  assert.ok(maxAbs(logitsOf(loadHFModelFromDir(out) as unknown as CausalLM), want) <= 1e-5);
  assert.deepEqual(JSON.parse(readFileSync(path.join(out, 'generation_config.json'), 'utf8')), { eos_token_id: 0 });
});
