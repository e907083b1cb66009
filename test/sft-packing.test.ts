/**
 * Packing keeps examples apart: a packed batch (several examples per row, positions restarting per example, a
 * per-document causal mask) gives each example the same loss, and the batch the same gradients, as the examples
 * run alone, on every decoder family the loader reads (gpt2, llama, qwen2 with grouped-query attention and q/k/v
 * biases, mistral, glm with its interleaved partial rotary). Padded batches too. And the packer itself: best fit
 * decreasing, no row over maxLength, every example once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildHFModel, type CausalLM } from '../src/models/hf/index.js';
import { crossEntropy } from '../src/tensor/ops/nn.js';
import { Tensor } from '../src/tensor/tensor.js';
import { manualSeed } from '../src/nn/init.js';
import { packRows, packedBatch, padBatch, type SftBatch } from '../src/sft/batch.js';
import { IGNORE_INDEX, type TokenizedExample } from '../src/sft/tokenize.js';
import { relErr, testBackends, withBackend } from './helpers/backends.js';

const V = 37;
const INIT = { initializer_range: 0.3 }; // attention far from uniform, so a leak between examples shows
const CONFIGS: [string, Record<string, unknown>][] = [
  ['gpt2', { model_type: 'gpt2', vocab_size: V, n_positions: 64, n_embd: 16, n_head: 2, n_layer: 2, embd_pdrop: 0, resid_pdrop: 0, attn_pdrop: 0 }],
  ['llama', { model_type: 'llama', vocab_size: V, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 }],
  ['qwen2', { model_type: 'qwen2', vocab_size: V, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 1, tie_word_embeddings: true }],
  ['mistral', { model_type: 'mistral', vocab_size: V, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1, num_attention_heads: 2, sliding_window: 4 }],
  ['glm', { model_type: 'glm', vocab_size: V, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2, head_dim: 8 }],
];

function example(len: number, seed: number, promptLen: number): TokenizedExample {
  const ids = Array.from({ length: len }, (_, i) => (seed * 7 + i * 5 + 1) % V);
  return { ids, labels: ids.map((id, i) => (i < promptLen ? IGNORE_INDEX : id)) };
}
const EXAMPLES = [example(9, 1, 4), example(5, 2, 2), example(12, 3, 0), example(3, 4, 1), example(7, 5, 3)];

/** Summed next-token loss of each example in a batch (rows hold one example, or several packed ones) and its total. */
function perExample(model: CausalLM, batch: SftBatch, owner: (b: number, t: number) => number, n: number): { each: number[]; total: Tensor } {
  const logits = model.forward(batch.ids, { attentionMask: batch.attentionMask, positionIds: batch.positionIds, documentIds: batch.documentIds });
  const [B, T] = batch.ids.shape;
  const shifted = logits.slice(1, 0, T - 1).reshape([B * (T - 1), V]);
  const lab = batch.labels.i32();
  const next = new Int32Array(B * (T - 1));
  for (let b = 0; b < B; b++) next.set(lab.subarray(b * T + 1, (b + 1) * T), b * (T - 1));
  const nll = crossEntropy(shifted, new Tensor(next, 'i32', [B * (T - 1)]), { reduction: 'none', ignoreIndex: IGNORE_INDEX });
  const v = nll.f32();
  const each = new Array<number>(n).fill(0);
  for (let b = 0; b < B; b++) for (let t = 0; t < T - 1; t++) if (next[b * (T - 1) + t] !== IGNORE_INDEX) each[owner(b, t + 1)] += v[b * (T - 1) + t];
  return { each, total: nll.sum() };
}

function grads(model: CausalLM): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [k, p] of model.namedParameters()) if (p.grad) out.set(k, Float32Array.from(p.grad.f32()));
  return out;
}

for (const b of testBackends()) {
  for (const [name, cfg] of CONFIGS) {
    test(`${name}: packed and padded batches give each example its loss and gradients alone (${b.name})`, () => withBackend(b, () => {
      manualSeed(3);
      const model = buildHFModel({ ...cfg, ...INIT }) as unknown as CausalLM;
      // alone
      const alone: number[] = [];
      model.zeroGrad();
      for (const e of EXAMPLES) {
        const r = perExample(model, padBatch([e], 0), () => 0, 1);
        alone.push(r.each[0]);
        r.total.backward();
      }
      const gAlone = grads(model);
      // packed into rows of at most 16 tokens
      const rows = packRows(EXAMPLES.map((e) => e.ids.length), 16);
      const packed = packedBatch(rows.map((r) => r.map((i) => EXAMPLES[i])), 0);
      const T = packed.ids.shape[1];
      const docs = packed.documentIds!.i32();
      const owner = (row: number, t: number) => rows[row][docs[row * T + t]];
      model.zeroGrad();
      const p = perExample(model, packed, owner, EXAMPLES.length);
      p.total.backward();
      assert.ok(relErr(p.each, alone) < 1e-5, `${name} packed losses ${p.each} vs ${alone}`);
      for (const [k, g] of grads(model)) assert.ok(relErr(g, gAlone.get(k)!) < 1e-5, `${name} packed grad ${k}: ${relErr(g, gAlone.get(k)!)}`);
      // padded: one example per row
      model.zeroGrad();
      const q = perExample(model, padBatch(EXAMPLES, 0), (row) => row, EXAMPLES.length);
      q.total.backward();
      assert.ok(relErr(q.each, alone) < 1e-5, `${name} padded losses ${q.each} vs ${alone}`);
      for (const [k, g] of grads(model)) assert.ok(relErr(g, gAlone.get(k)!) < 1e-5, `${name} padded grad ${k}`);
      // without the document mask the examples would see each other: the check above is not vacuous
      const leaky = perExample(model, { ...packed, documentIds: null }, owner, EXAMPLES.length);
      assert.ok(relErr(leaky.each, alone) > 1e-2, `${name}: a packed row without documentIds should differ (${relErr(leaky.each, alone)})`);
    }));
  }
}

test('packRows: best fit decreasing, rows within maxLength, every example once', () => {
  const lengths = [9, 5, 12, 3, 7, 16, 1];
  const rows = packRows(lengths, 16);
  assert.deepEqual(rows.flat().sort((a, b) => a - b), lengths.map((_, i) => i));
  for (const r of rows) assert.ok(r.reduce((a, i) => a + lengths[i], 0) <= 16);
  assert.equal(rows.length, 4); // 16 | 12+3+1 | 9+7 | 5
  const batch = packedBatch(rows.map((r) => r.map((i) => example(lengths[i], i, 0))), 0);
  assert.equal(batch.tokens, lengths.reduce((a, x) => a + x, 0));
  // first label of each packed example is ignored: scored = sum(len - 1)
  assert.equal(batch.scored, lengths.reduce((a, x) => a + x - 1, 0));
});
