/**
 * `open-autoglm-base` (USE-Lite) against the original: the shipped TF.js graph, run by TF.js (its WebAssembly
 * backend: 20x faster than its pure-JS one here, with the same figures), and this project's implementation embed the same sentences; every sentence must reach cosine
 * >= 0.9999. Also: the tokenizer on known ids, batching by padding vs one sentence at a time, a gradient
 * through a classification head, the registry, and the weight reader's errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { Tensor } from '../src/tensor/tensor.js';
import { crossEntropy } from '../src/tensor/ops/nn.js';
import { Linear } from '../src/nn/layers.js';
import { CheckpointError, ConfigError } from '../src/errors.js';
import { loadUSELite, defaultModelDir, USELite, USE_LITE_CONFIG, loadUSELiteState, readTFJSWeights } from '../src/models/use-lite/index.js';
import { loadModel, registerModel, listModels } from '../src/models/registry.js';
import { testBackends, withBackend } from './helpers/backends.js';
import { USE_LITE_SENTENCES } from './fixtures/use-lite-sentences.js';

const DIR = defaultModelDir();
// embeddings 8002*256; layer 0: 2*256 + 256*768+768 + 256*512+512 + 256*512+512 + 2*512 + 512*1536+1536 + 1536*512+512;
// layer 1: the same at width 512 without the residual projection; tanh layer 512*512+512.
const TOTAL_PARAMS = 8002 * 256 +
  (2 * 256 + 256 * 768 + 768 + 256 * 512 + 512 + 256 * 512 + 512 + 2 * 512 + 512 * 1536 + 1536 + 1536 * 512 + 512) +
  (2 * 512 + 512 * 1536 + 1536 + 512 * 512 + 512 + 2 * 512 + 512 * 1536 + 1536 + 1536 * 512 + 512) +
  (512 * 512 + 512);
const model = loadUSELite();
const tokenizer = model.tokenizer!;

/** The original graph, loaded from the shipped files with TF.js's in-memory IO handler. */
async function loadOriginal(): Promise<tf.GraphModel> {
  await tf.setBackend('wasm');
  const json = JSON.parse(readFileSync(join(DIR, 'model.json'), 'utf8'));
  const group = json.weightsManifest[0];
  const bytes = Buffer.concat(group.paths.map((p: string) => readFileSync(join(DIR, p))));
  const weightData = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  return tf.loadGraphModel(tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs: group.weights, weightData }));
}

/** The graph on one sparse batch, fed as its consumers feed it: indices [sentence, position], values = ids. */
async function runOriginal(graph: tf.GraphModel, seqs: number[][]): Promise<number[][]> {
  const indices: number[][] = [], values: number[] = [];
  seqs.forEach((s, i) => s.forEach((id, j) => { indices.push([i, j]); values.push(id); }));
  const inputs = { indices: tf.tensor2d(indices, [indices.length, 2], 'int32'), values: tf.tensor1d(values, 'int32') };
  const out = (await graph.executeAsync(inputs)) as tf.Tensor;
  const rows = out.arraySync() as number[][];
  tf.dispose([out, inputs.indices, inputs.values]);
  assert.equal(rows.length, seqs.length, 'the graph returns one row per sentence (a trailing empty one would be lost)');
  return rows;
}

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { d += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return d / Math.sqrt(na * nb);
}

test('tokenizer: known ids, empty text, merged unks, clipping', () => {
  // Ids as the TF.js consumer of these weights (@energetic-ai/embeddings 0.2.0) produces them.
  assert.deepEqual(tokenizer.encode('I love pizza 🍕🍕 and tacos 🌮!'), [16, 241, 6077, 30, 0, 12, 1456, 359, 7, 30, 0, 78]);
  assert.deepEqual(tokenizer.pieces(tokenizer.encode("It's a beautiful day, isn't it? :)")),
    ['▁It', "'", 's', '▁a', '▁beautiful', '▁day', ',', '▁isn', "'", 't', '▁it', '?', '▁:)']);
  assert.deepEqual(tokenizer.encode(''), []);
  const b = tokenizer.encodeBatch(['hello', '', 'word '.repeat(200)], USE_LITE_CONFIG.maxLength);
  assert.deepEqual(b.ids.shape, [3, 128]);
  assert.deepEqual(b.lengths.slice(0, 2), [2, 0]);
  assert.equal(b.lengths[2], 128);
});

test('USE-Lite matches the original TF.js graph on 50+ sentences', async (t) => {
  const sentences = USE_LITE_SENTENCES;
  assert.ok(sentences.length >= 50);
  const seqs = sentences.map((s) => tokenizer.encode(s).slice(0, USE_LITE_CONFIG.maxLength));
  const graph = await loadOriginal();
  // The graph runs on sparse batches of similar length (its kernels are slow on padding); each batch
  // still pads its shorter sentences, as one large batch would.
  const order = seqs.map((_, i) => i).sort((a, b) => seqs[a].length - seqs[b].length);
  const ref: number[][] = new Array(seqs.length);
  const t0 = performance.now();
  for (let s = 0; s < order.length; s += 8) {
    const idx = order.slice(s, s + 8);
    (await runOriginal(graph, idx.map((i) => seqs[i]))).forEach((row, r) => { ref[idx[r]] = row; });
  }
  t.diagnostic(`TF.js wasm: ${sentences.length} sentences in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  for (const b of testBackends()) {
    withBackend(b, () => {
      const t1 = performance.now();
      const ours = model.embed(sentences, { batchSize: 16 }); // (N, 512)
      const ms = performance.now() - t1;
      assert.deepEqual(ours.shape, [sentences.length, 512]);
      const o = ours.f32();
      let minCos = 1, maxAbs = 0;
      sentences.forEach((s, i) => {
        const row = o.subarray(i * 512, (i + 1) * 512);
        const c = cosine(row, ref[i]);
        for (let j = 0; j < 512; j++) maxAbs = Math.max(maxAbs, Math.abs(row[j] - ref[i][j]));
        minCos = Math.min(minCos, c);
        assert.ok(c >= 0.9999, `${b.name}: sentence ${i} ${JSON.stringify(s.slice(0, 40))}: cosine ${c}`);
      });
      t.diagnostic(`${b.name}: ${sentences.length} sentences, min cosine ${minCos.toFixed(9)} (1 - min = ${(1 - minCos).toExponential(2)}), max abs diff ${maxAbs.toExponential(3)}, embed ${ms.toFixed(0)} ms`);
    });
  }
});

test('padded batches give the same embeddings as one sentence at a time', (t) => {
  const sentences = USE_LITE_SENTENCES;
  const one = model.embed(sentences, { batchSize: 1 }).f32();
  const all = model.embed(sentences, { batchSize: sentences.length }).f32(); // one batch padded to 128
  let maxAbs = 0;
  for (let i = 0; i < one.length; i++) maxAbs = Math.max(maxAbs, Math.abs(one[i] - all[i]));
  t.diagnostic(`max abs diff between batch sizes 1 and ${sentences.length}: ${maxAbs.toExponential(3)}`);
  assert.ok(maxAbs < 1e-5, `max abs diff ${maxAbs}`);
  // forward() with an explicit batch is what embed() computes
  const batch = model.tokenize(sentences.slice(0, 5));
  const f = model.forward(batch.ids, batch.attentionMask).f32();
  for (let i = 0; i < f.length; i++) assert.ok(Math.abs(f[i] - one[i]) < 1e-5);
});

test('gradients through a classification head reach every encoder Linear', () => {
  const enc = loadUSELite().train();
  const head = new Linear(512, 3);
  const batch = enc.tokenize(['turn on the lights', 'what is the weather like today?', 'play some music', 'book a table']);
  const logits = head.forward(enc.forward(batch.ids, batch.attentionMask)); // (4, 3)
  const loss = crossEntropy(logits, new Tensor(Int32Array.from([0, 1, 2, 1]), 'i32', [4]));
  loss.backward();
  const linears = [...enc.namedModules()].filter(([, m]) => m instanceof Linear);
  assert.equal(linears.length, 2 * 4 + 1 + 1); // qkv, output, conv1, conv2 per layer; adjust_residual; tanh_layer
  for (const [name, m] of linears) {
    const g = (m as Linear).weight.grad;
    assert.ok(g, `${name}.weight has a gradient`);
    const d = g.f32();
    let nz = 0;
    for (let i = 0; i < d.length; i++) {
      assert.ok(Number.isFinite(d[i]), `${name}.weight gradient is finite`);
      if (d[i] !== 0) nz++;
    }
    assert.ok(nz > 0, `${name}.weight gradient is non-zero`);
  }
  assert.ok(enc.embeddings.weight.grad, 'the embedding table has a gradient');
});

test('a Linear swapped in by name (as LoRA injection does) is the one forward uses', () => {
  const enc = loadUSELite();
  const base = enc.layers.at(1).mha.qkv_transform;
  let calls = 0;
  class Counting extends Linear {
    override forward(x: Tensor): Tensor {
      calls++;
      return base.forward(x);
    }
  }
  enc.layers.at(1).mha.setChild('qkv_transform', new Counting(512, 1536));
  const before = model.embed(['swap me']).f32();
  const after = enc.embed(['swap me']).f32();
  assert.equal(calls, 1);
  assert.deepEqual(Array.from(after), Array.from(before));
});

test('parameters follow the mapping table and load strictly', () => {
  const names = [...model.namedParameters()].map(([n]) => n);
  assert.ok(names.includes('layers.0.mha.qkv_transform.weight') && names.includes('layers.0.adjust_residual.weight') && names.includes('tanh_layer.bias'));
  const counts = model.parameterCounts();
  assert.equal(counts.total, TOTAL_PARAMS);
  const state = loadUSELiteState(DIR, USE_LITE_CONFIG);
  assert.deepEqual([...state.params.keys()].sort(), [...names].sort());
  assert.deepEqual(state.params.get('layers.1.ffn.conv1.weight')?.shape, [1536, 512]); // (out, in)
});

test('registry: open-autoglm-base loads USE-Lite; duplicate names throw', async () => {
  assert.ok(listModels().includes('open-autoglm-base'));
  const m = await loadModel('open-autoglm-base');
  assert.ok(m instanceof USELite);
  assert.throws(() => registerModel('open-autoglm-base', () => m), ConfigError);
  await assert.rejects(loadModel('no-such-model'), ConfigError);
});

test('weight reader: truncated shard and shape mismatch are CheckpointErrors naming file and tensor', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'use-lite-'));
  try {
    for (const f of readdirSync(DIR)) if (f !== 'group1-shard7of7') symlinkSync(join(DIR, f), join(tmp, f));
    const last = readFileSync(join(DIR, 'group1-shard7of7'));
    writeFileSync(join(tmp, 'group1-shard7of7'), last.subarray(0, last.length - 1000));
    assert.throws(() => readTFJSWeights(tmp), (e: unknown) => e instanceof CheckpointError && /group1-shard7of7/.test(e.message) && /tensor '/.test(e.message));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const wrong = { ...USE_LITE_CONFIG, ffnDim: 1024 };
  assert.throws(() => loadUSELiteState(DIR, wrong), (e: unknown) => e instanceof CheckpointError && /conv1/.test(e.message) && /group1-shard/.test(e.message));
});
