/**
 * Hugging Face models against PyTorch reference implementations (fixtures made by scripts/make_golden.py):
 * logits, loss and gradients on every backend; generation with a KV cache; load -> save -> load round trips
 * (single file, shards, 16-bit storage); heads; the tokenizer; typed errors on bad inputs; the Hub offline.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { testBackends, withBackend, relErr } from './helpers/backends.js';
import { loadSafetensors, saveSafetensors } from '../src/models/safetensors.js';
import { Tensor } from '../src/tensor/tensor.js';
import { noGrad } from '../src/tensor/autograd.js';
import { CheckpointError, ConfigError } from '../src/errors.js';
import {
  loadHFModel, loadHFModelFromDir, buildHFModel, saveHFModel, causalLMLoss, sequenceClassificationLoss, sentenceEmbeddings,
  generate, familyByName, lmLabels, pool, SequenceClassifier, HFTokenizer, checkpointState, KVCache,
  type CausalLM, type HFModel,
} from '../src/models/hf/index.js';
import { BertForSequenceClassification } from '../src/models/bert/model.js';
import { checkpointShape } from '../src/models/hf/shape-check.js';
import type { HFFamily } from '../src/models/hf/family.js';
import { loadModel } from '../src/models/registry.js';

const ROOT = path.dirname(fileURLToPath(import.meta.url));
const GOLDEN = path.join(ROOT, 'fixtures', 'golden');
const tmp = mkdtempSync(path.join(tmpdir(), 'autoglm-hf-'));
const DECODERS = ['gpt2', 'llama', 'qwen2', 'glm'];

function golden(arch: string): Map<string, Tensor> {
  return loadSafetensors(path.join(GOLDEN, arch, 'golden.safetensors')).tensors;
}
const g = (m: Map<string, Tensor>, k: string): Tensor => {
  const t = m.get(k);
  assert.ok(t, `golden tensor '${k}'`);
  return t;
};

/** The gradient of `key` in the checkpoint's layout (GPT-2's Conv1D weights transposed back). */
function checkpointGrad(model: HFModel, key: string): Float32Array {
  const p = [...model.namedParameters()].find(([n]) => n === key)?.[1];
  assert.ok(p?.grad, `gradient of ${key}`);
  const fam = familyByName(model.hf?.family as string);
  return (fam.toCheckpoint ? fam.toCheckpoint(key, p.grad) : p.grad).f32();
}

function compareGrads(model: HFModel, ref: Map<string, Tensor>, label: string, errs: Record<string, number>): void {
  for (const [k, t] of ref) {
    if (!k.startsWith('grad.')) continue;
    const e = relErr(checkpointGrad(model, k.slice(5)), t.f32());
    errs[k] = e;
    assert.ok(e < 1e-3, `${label}: ${k} rel err ${e}`);
  }
}

for (const b of testBackends()) {
  for (const arch of DECODERS) {
    test(`golden ${arch} (${b.name}): logits and loss within 1e-4, gradients within 1e-3`, (t) => withBackend(b, () => {
      const ref = golden(arch);
      const model = loadHFModelFromDir(path.join(GOLDEN, arch)) as unknown as CausalLM;
      model.eval();
      const logits = model.forward(g(ref, 'input_ids'), { attentionMask: g(ref, 'attention_mask') });
      const loss = causalLMLoss(logits, g(ref, 'labels'));
      loss.backward();
      const errs: Record<string, number> = {
        logits: relErr(logits.f32(), g(ref, 'logits').f32()),
        loss: Math.abs(loss.item() - g(ref, 'loss').item()) / Math.abs(g(ref, 'loss').item()),
      };
      assert.ok(errs.logits < 1e-4, `logits rel err ${errs.logits}`);
      assert.ok(errs.loss < 1e-4, `loss rel err ${errs.loss}`);
      compareGrads(model, ref, arch, errs);
      t.diagnostic(`${arch} ${b.name} max rel errors: ${Object.entries(errs).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}`);
    }));

    test(`golden ${arch} (${b.name}): greedy generation with a KV cache matches the reference`, () => withBackend(b, () => {
      const ref = golden(arch);
      const model = loadHFModelFromDir(path.join(GOLDEN, arch)) as unknown as CausalLM;
      const prompt = Array.from(g(ref, 'greedy_prompt').i32());
      const want = Array.from(g(ref, 'greedy_out').i32());
      const n = want.length - prompt.length;
      assert.deepEqual(generate(model, prompt, { maxNewTokens: n }), want);
      assert.deepEqual(generate(model, prompt, { maxNewTokens: n, useCache: false }), want);
    }));
  }

  test(`golden bert (${b.name}): sequence classification logits, loss, gradients; mean-pooled embeddings`, (t) => withBackend(b, () => {
    const ref = golden('bert');
    const model = loadHFModelFromDir(path.join(GOLDEN, 'bert')) as unknown as BertForSequenceClassification & { loadReport: { ignored: string[] } };
    assert.ok(model instanceof BertForSequenceClassification);
    assert.equal(model.numLabels, 3);
    assert.deepEqual(model.loadReport.ignored, ['bert.embeddings.position_ids']);
    model.eval();
    const opts = { attentionMask: g(ref, 'attention_mask'), tokenTypeIds: g(ref, 'token_type_ids') };
    const logits = model.forward(g(ref, 'input_ids'), opts);
    const loss = sequenceClassificationLoss(logits, g(ref, 'labels'));
    loss.backward();
    const errs: Record<string, number> = {
      logits: relErr(logits.f32(), g(ref, 'logits').f32()),
      loss: Math.abs(loss.item() - g(ref, 'loss').item()) / g(ref, 'loss').item(),
    };
    const emb = noGrad(() => sentenceEmbeddings(model.bert, g(ref, 'input_ids'), { ...opts, pooling: 'mean', normalize: false }));
    errs.hidden_mean = relErr(emb.f32(), g(ref, 'hidden_mean').f32());
    for (const k of ['logits', 'loss', 'hidden_mean']) assert.ok(errs[k] < 1e-4, `${k} rel err ${errs[k]}`);
    compareGrads(model, ref, 'bert', errs);
    t.diagnostic(`bert ${b.name} max rel errors: ${Object.entries(errs).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}`);
  }));
}

test('KV cache: logits of a step-by-step pass equal those of one full pass (gpt2, llama, glm)', () => {
  for (const arch of ['gpt2', 'llama', 'glm']) {
    const model = loadHFModelFromDir(path.join(GOLDEN, arch)) as unknown as CausalLM;
    const ids = Array.from(g(golden(arch), 'input_ids').i32().subarray(0, 8));
    noGrad(() => {
      const full = model.forward(new Tensor(Int32Array.from(ids), 'i32', [1, 8])).f32();
      const cache = new KVCache(model.numLayers);
      const first = model.forward(new Tensor(Int32Array.from(ids.slice(0, 5)), 'i32', [1, 5]), { cache }).f32();
      const parts = [first];
      for (let i = 5; i < 8; i++) parts.push(model.forward(new Tensor(Int32Array.from([ids[i]]), 'i32', [1, 1]), { cache }).f32());
      const stepped = Float32Array.from(parts.flatMap((p) => Array.from(p)));
      assert.ok(relErr(stepped, full) < 1e-5, `${arch}: ${relErr(stepped, full)}`);
    });
  }
});

test('sampling: seeded, reproducible; top-k 1 is greedy; stops at eos', () => {
  const model = loadHFModelFromDir(path.join(GOLDEN, 'llama')) as unknown as CausalLM;
  const prompt = [5, 6, 7];
  const a = generate(model, prompt, { maxNewTokens: 8, doSample: true, temperature: 0.8, topK: 20, topP: 0.9, seed: 3 });
  const b = generate(model, prompt, { maxNewTokens: 8, doSample: true, temperature: 0.8, topK: 20, topP: 0.9, seed: 3 });
  const c = generate(model, prompt, { maxNewTokens: 8, doSample: true, temperature: 1.5, seed: 4 });
  assert.deepEqual(a, b);
  assert.equal(a.length, 11);
  assert.notDeepEqual(a, c);
  assert.deepEqual(generate(model, prompt, { maxNewTokens: 6, doSample: true, topK: 1, seed: 9 }), generate(model, prompt, { maxNewTokens: 6 }));
  const greedy = generate(model, prompt, { maxNewTokens: 6 });
  assert.deepEqual(generate(model, prompt, { maxNewTokens: 6, eosTokenId: greedy[4] }), greedy.slice(0, 5));
  assert.throws(() => generate(model, prompt, { temperature: 0 }), ConfigError);
});

test('round trip: load -> save -> load gives identical tensors (f32, sharded, bf16 and f16 storage)', () => {
  const cases: [string, 'f32' | 'keep', number | undefined][] = [['gpt2', 'f32', undefined], ['llama', 'f32', 40000], ['glm', 'keep', undefined], ['qwen2', 'keep', 30000]];
  for (const [arch, dtype, maxShardBytes] of cases) {
    const a = loadHFModelFromDir(path.join(GOLDEN, arch), { dtype });
    const out = path.join(tmp, `rt-${arch}`);
    saveHFModel(a, out, { maxShardBytes });
    assert.equal(existsSync(path.join(out, 'model.safetensors.index.json')), maxShardBytes !== undefined, arch);
    assert.ok(existsSync(path.join(out, 'tokenizer.json')) && existsSync(path.join(out, 'config.json')));
    const b = loadHFModelFromDir(out, { dtype });
    const pa = new Map(a.namedParameters()), pb = new Map(b.namedParameters());
    assert.deepEqual([...pa.keys()], [...pb.keys()]);
    for (const [k, t] of pa) {
      const u = pb.get(k) as Tensor;
      assert.equal(u.dtype, t.dtype, `${arch} ${k}`);
      assert.deepEqual(u.shape, t.shape);
      assert.deepEqual(Buffer.from(u.dense().buffer, u.dense().byteOffset, u.nbytes), Buffer.from(t.dense().buffer, t.dense().byteOffset, t.nbytes), `${arch} ${k}`);
    }
    // The saved keys are the checkpoint's (same names, same layout) as the original file.
    const orig = loadHFModelFromDir(path.join(GOLDEN, arch), { dtype: 'keep' });
    const sa = checkpointState(orig), sb = checkpointState(b);
    for (const [k, t] of sa) assert.deepEqual(Array.from(sb.get(k)?.f32() ?? []), Array.from(t.f32()), `${arch} checkpoint ${k}`);
  }
});

test('16-bit storage: bf16/f16 weights stay 16-bit and frozen, and give the f32 logits', () => {
  for (const [arch, dt] of [['glm', 'bf16'], ['qwen2', 'f16']] as const) {
    const ref = golden(arch);
    const m16 = loadHFModelFromDir(path.join(GOLDEN, arch), { dtype: 'keep' }) as unknown as CausalLM;
    for (const [k, p] of m16.namedParameters()) {
      assert.equal(p.dtype, dt, k);
      assert.equal(p.requiresGrad, false, k);
    }
    const logits = noGrad(() => m16.forward(g(ref, 'input_ids'), { attentionMask: g(ref, 'attention_mask') }));
    assert.ok(relErr(logits.f32(), g(ref, 'logits').f32()) < 1e-4, `${arch} ${relErr(logits.f32(), g(ref, 'logits').f32())}`);
    const gen = generate(m16, Array.from(g(ref, 'greedy_prompt').i32()), { maxNewTokens: 6 });
    assert.deepEqual(gen, Array.from(g(ref, 'greedy_out').i32()));
  }
});

test('heads: causal-LM labels ignore padding; pooling cls / mean / last; decoder sequence classifier', () => {
  const ref = golden('gpt2');
  const labels = lmLabels(g(ref, 'input_ids'), g(ref, 'attention_mask'));
  assert.deepEqual(Array.from(labels.i32()), Array.from(g(ref, 'labels').i32()));
  const h = new Tensor(Float32Array.from({ length: 2 * 3 * 2 }, (_, i) => i), 'f32', [2, 3, 2]);
  const mask = new Tensor(Int32Array.from([1, 1, 0, 1, 1, 1]), 'i32', [2, 3]);
  assert.deepEqual(pool(h, mask, 'cls').toArray(), [[0, 1], [6, 7]]);
  assert.deepEqual(pool(h, mask, 'last').toArray(), [[2, 3], [10, 11]]);
  assert.deepEqual((pool(h, mask, 'mean').toArray() as number[][]).map((r) => r.map((x) => Math.round(x * 1e4) / 1e4)), [[1, 2], [8, 9]]);

  const cls = loadHFModelFromDir(path.join(GOLDEN, 'llama'), { task: 'sequence-classification', numLabels: 4 });
  assert.ok(cls instanceof SequenceClassifier);
  assert.deepEqual(cls.loadReport.initialized, ['score.weight']);
  assert.deepEqual(cls.loadReport.unexpected, ['lm_head.weight']);
  const ids = g(ref, 'input_ids'), am = g(ref, 'attention_mask');
  const logits = cls.forward(ids, { attentionMask: am });
  assert.deepEqual(logits.shape, [2, 4]);
  // last non-padding token: row 1 is padded after position 4
  const hRow = noGrad(() => cls.backbone.forward(ids.slice(0, 1, 2).slice(1, 0, 5).contiguous()));
  const manual = noGrad(() => cls.score.forward(hRow.slice(1, 4, 5).reshape([1, -1])));
  assert.ok(relErr(logits.slice(0, 1, 2).f32(), manual.f32()) < 1e-5);
  const loss = sequenceClassificationLoss(logits, new Tensor(Int32Array.from([1, 3]), 'i32', [2]));
  loss.backward();
  assert.ok(cls.score.weight.grad && cls.score.weight.grad.f32().some((x) => x !== 0));
  // saved as LlamaForSequenceClassification with num_labels, reloads with the trained head
  const out = path.join(tmp, 'llama-cls');
  saveHFModel(cls, out);
  const cfg = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
  assert.deepEqual(cfg.architectures, ['LlamaForSequenceClassification']);
  assert.equal(cfg.num_labels, 4);
  const again = loadHFModelFromDir(out);
  assert.ok(again instanceof SequenceClassifier && again.numLabels === 4);
  assert.deepEqual(Array.from(again.score.weight.f32()), Array.from(cls.score.weight.f32()));
  // bare backbone from an LM checkpoint: keys lose the 'transformer.' prefix
  const base = loadHFModelFromDir(path.join(GOLDEN, 'gpt2'), { task: 'base' });
  assert.ok([...base.namedParameters()].some(([k]) => k === 'wte.weight'));
});

test('tokenizers: byte-level BPE and WordPiece from tokenizer.json, batching with padding', () => {
  const gpt = HFTokenizer.fromDir(path.join(GOLDEN, 'gpt2')) as HFTokenizer;
  const ids = gpt.encode(' the cat sat on the mat');
  assert.deepEqual(ids.slice(0, 2), [gpt.tokenToId('Ġthe'), gpt.tokenToId('Ġcat')], 'merges apply');
  assert.equal(gpt.decode(ids), ' the cat sat on the mat');
  assert.equal(gpt.eosTokenId, gpt.tokenToId('<|endoftext|>'));
  const bert = HFTokenizer.fromDir(path.join(GOLDEN, 'bert')) as HFTokenizer;
  const e = bert.encodeWithTypes('The cat sat.', { pair: 'good movie' });
  assert.equal(e.ids[0], bert.tokenToId('[CLS]'));
  assert.deepEqual(e.ids.slice(1, 4), ['the', 'cat', 'sat'].map((w) => bert.tokenToId(w)));
  assert.equal(e.typeIds[e.typeIds.length - 1], 1);
  const batch = bert.batch(['the cat', 'a very good movie'], {});
  assert.deepEqual(batch.inputIds.shape, [2, 6]);
  assert.deepEqual(Array.from(batch.attentionMask.i32()), [1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1]);
  assert.ok(batch.tokenTypeIds);
  const model = loadHFModelFromDir(path.join(GOLDEN, 'bert'));
  assert.ok(model.hf?.tokenizer);
  const left = gpt.batch(['the', 'the cat sat'], { side: 'left' });
  const T = left.inputIds.shape[1];
  const n0 = gpt.encode('the').length;
  assert.equal(T, gpt.encode('the cat sat').length);
  assert.deepEqual(Array.from(left.attentionMask.i32()), [...Array(T - n0).fill(0), ...Array(n0 + T).fill(1)]);
  assert.deepEqual(Array.from(left.inputIds.i32().subarray(T - n0, T)), gpt.encode('the'));
});

/** A copy of a fixture with `edit` applied, for the error cases. */
function variant(arch: string, name: string, edit: (dir: string) => void): string {
  const dir = path.join(tmp, `bad-${name}`);
  rmSync(dir, { recursive: true, force: true });
  cpSync(path.join(GOLDEN, arch), dir, { recursive: true });
  edit(dir);
  return dir;
}
const editConfig = (dir: string, f: (c: Record<string, unknown>) => void) => {
  const c = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
  f(c);
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(c));
};

test('bad inputs: typed errors naming the file, the key and what was expected', () => {
  const expectErr = (dir: string, cls: typeof ConfigError | typeof CheckpointError, ...parts: (string | RegExp)[]) => {
    assert.throws(() => loadHFModelFromDir(dir), (e: unknown) => {
      assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
      for (const p of parts) assert.match((e as Error).message, typeof p === 'string' ? new RegExp(p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : p);
      return true;
    });
  };
  expectErr(variant('gpt2', 'nokey', (d) => editConfig(d, (c) => delete c.n_embd)), ConfigError, 'config.json', "'n_embd'", 'expected an integer');
  expectErr(variant('gpt2', 'badtype', (d) => editConfig(d, (c) => (c.model_type = 't5'))), ConfigError, "'t5'", 'not supported', 'gpt2');
  expectErr(variant('llama', 'badheads', (d) => editConfig(d, (c) => (c.num_key_value_heads = 3))), ConfigError, 'num_key_value_heads 3');
  expectErr(variant('gpt2', 'noweights', (d) => rmSync(path.join(d, 'model.safetensors'))), CheckpointError, 'model.safetensors');
  expectErr(variant('llama', 'noshard', (d) => rmSync(path.join(d, 'model-00002-of-00002.safetensors'))), CheckpointError, 'model-00002-of-00002.safetensors', 'missing');
  const dropKey = (d: string) => {
    const f = path.join(d, 'model.safetensors');
    const { tensors } = loadSafetensors(f, { floatDType: 'keep' });
    tensors.delete('transformer.h.1.mlp.c_fc.weight');
    saveSafetensors(f, tensors);
  };
  expectErr(variant('gpt2', 'missing', dropKey), CheckpointError, 'transformer.h.1.mlp.c_fc.weight', '[64,32]');
  const badShape = (d: string) => {
    const f = path.join(d, 'model.safetensors');
    const { tensors } = loadSafetensors(f, { floatDType: 'keep' });
    tensors.set('transformer.ln_f.weight', new Tensor(new Float32Array(31), 'f32', [31]));
    saveSafetensors(f, tensors);
  };
  expectErr(variant('gpt2', 'shape', badShape), CheckpointError, 'model.safetensors', "'transformer.ln_f.weight'", '[31]', 'expects [32]');
  // a declared size that disagrees with the checkpoint header names the config key, before anything is allocated
  expectErr(variant('gpt2', 'hugevocab', (d) => editConfig(d, (c) => (c.vocab_size = 1_000_000_000))), CheckpointError,
    "'transformer.wte.weight' has shape [288,32]", 'expects [1000000000,32]', "config key 'vocab_size'");
  expectErr(variant('gpt2', 'inner', (d) => editConfig(d, (c) => (c.n_inner = 48))), CheckpointError,
    "'transformer.h.0.mlp.c_fc.bias' has shape [64]", 'expects [48]', "dimension 0 is 48 (config key 'n_inner')");
  // a GPT-2 Conv1D weight is [in, out] in the checkpoint: expected shapes are given in checkpoint order, found on a probe
  assert.deepEqual(checkpointShape(familyByName('gpt2') as HFFamily<unknown>, 'transformer.h.0.mlp.c_fc.weight', [48, 32]), [32, 48]);
  assert.deepEqual(checkpointShape(familyByName('gpt2') as HFFamily<unknown>, 'transformer.wte.weight', [1e9, 32]), [1e9, 32]);
  assert.throws(() => loadHFModelFromDir(path.join(tmp, 'nowhere')), (e: unknown) => e instanceof ConfigError && /config\.json/.test((e as Error).message));
  assert.throws(() => loadHFModelFromDir(path.join(GOLDEN, 'bert'), { task: 'causal-lm' }), ConfigError);
});

test('a config.json declaring a parameter larger than one tensor can hold is a ConfigError naming the key, not a RangeError', () => {
  const cfg = { model_type: 'gpt2', vocab_size: 1_000_000_000, n_positions: 32, n_embd: 32, n_layer: 1, n_head: 4 };
  assert.throws(() => buildHFModel(cfg), (e: unknown) => e instanceof ConfigError &&
    /parameter 'transformer\.wte\.weight' of shape \[1000000000,32\].*check key 'vocab_size' = 1000000000/.test((e as Error).message));
});

test('config.json sizes past a sane bound are ConfigErrors before the skeleton allocates norms and biases (found by the fault suite)', () => {
  for (const [key, v] of [['n_embd', 1_000_000_000], ['n_layer', 16_777_216], ['n_inner', 2 ** 31]] as const) {
    const dir = variant('gpt2', `sane-${key}`, (d) => editConfig(d, (c) => (c[key] = v)));
    assert.throws(() => loadHFModelFromDir(dir), (e: unknown) => e instanceof ConfigError && new RegExp(`key '${key}' is ${v}; expected an integer in \\[1, \\d+\\]`).test((e as Error).message), key);
  }
});

test('Hub ids: offline, a clear error naming the id and how to use a local folder; a cached snapshot loads offline', async () => {
  const cacheDir = path.join(tmp, 'hub-cache');
  const failing = (async () => { throw new TypeError('fetch failed (no network in this test)'); }) as unknown as typeof fetch;
  await assert.rejects(loadHFModel('some-org/tiny-model', { cacheDir, fetch: failing }), (e: unknown) => {
    assert.ok(e instanceof CheckpointError);
    const m = (e as Error).message;
    assert.match(m, /some-org\/tiny-model/);
    assert.match(m, /local|folder/i);
    assert.match(m, /fetch failed/);
    return true;
  });
  await assert.rejects(loadHFModel('some-org/tiny-model', { cacheDir, offline: true }), /offline/);
  await assert.rejects(loadHFModel('not a path or id'), ConfigError);
  // A snapshot already in the cache needs no network.
  const snap = path.join(cacheDir, 'models--some-org--tiny-gpt2', 'snapshots', 'abc123');
  mkdirSync(path.join(cacheDir, 'models--some-org--tiny-gpt2', 'refs'), { recursive: true });
  cpSync(path.join(GOLDEN, 'gpt2'), snap, { recursive: true });
  writeFileSync(path.join(cacheDir, 'models--some-org--tiny-gpt2', 'refs', 'main'), 'abc123');
  const m = await loadHFModel('some-org/tiny-gpt2', { cacheDir, fetch: failing });
  assert.equal(m.hf?.family, 'gpt2');
});

test('registry: loadModel by family name, from a folder or a config', async () => {
  const m = await loadModel('gpt2', { path: path.join(GOLDEN, 'gpt2') });
  assert.equal((m as HFModel).architectureName, 'GPT2LMHeadModel');
  const r = await loadModel('llama', { config: { vocab_size: 50, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2 } });
  assert.equal((r as HFModel).architectureName, 'LlamaForCausalLM');
  await assert.rejects(loadModel('bert', { path: path.join(GOLDEN, 'gpt2') }), ConfigError);
  const q = buildHFModel({ model_type: 'qwen2', vocab_size: 40, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, tie_word_embeddings: true });
  assert.deepEqual([...q.namedParameters()].map(([k]) => k).filter((k) => k.includes('bias')).sort(),
    ['model.layers.0.self_attn.k_proj.bias', 'model.layers.0.self_attn.q_proj.bias', 'model.layers.0.self_attn.v_proj.bias']);
  assert.ok(![...q.namedParameters()].some(([k]) => k === 'lm_head.weight'), 'tied: no lm_head');
  assert.ok(readdirSync(tmp).length > 0);
});

test('Mistral sliding window: with one layer, the last position sees exactly the last `window` tokens', () => {
  const cfg = { model_type: 'mistral', vocab_size: 64, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 4,
    num_key_value_heads: 2, sliding_window: 3 };
  const m = buildHFModel(cfg) as unknown as CausalLM;
  m.eval();
  const ids = [3, 9, 27, 18, 54, 35, 42, 1];
  const run = (xs: number[]) => noGrad(() => m.forward(new Tensor(Int32Array.from(xs), 'i32', [1, xs.length]))).f32();
  const full = run(ids), tail = run(ids.slice(-3));
  // RoPE scores depend on relative positions only, so the window alone gives the same last row.
  assert.ok(relErr(full.subarray(7 * 64), tail.subarray(2 * 64)) < 1e-5);
  const noWindow = buildHFModel({ ...cfg, sliding_window: null }) as unknown as CausalLM;
  assert.equal((noWindow as unknown as { cfg: { slidingWindow: number | null } }).cfg.slidingWindow, null);
});

test('CLI: autoglm generate --model DIR "prompt" prints the greedy continuation', async () => {
  const { main } = await import('../src/cli/main.js');
  const lines: string[] = [];
  const log = console.log;
  console.log = (s: string) => lines.push(s);
  try {
    assert.equal(await main(['generate', '--model', path.join(GOLDEN, 'gpt2'), ' the cat', '--max-new-tokens', '5', '--json']), 0);
  } finally {
    console.log = log;
  }
  const out = JSON.parse(lines[lines.length - 1]) as { prompt: string; completion: string; ids: number[] };
  const model = loadHFModelFromDir(path.join(GOLDEN, 'gpt2')) as unknown as CausalLM;
  const tok = model.hf?.tokenizer as HFTokenizer;
  const prompt = tok.encode(' the cat');
  assert.deepEqual(out.ids, generate(model, prompt, { maxNewTokens: 5, eosTokenId: tok.eosTokenId }));
  assert.equal(out.completion, tok.decode(out.ids.slice(prompt.length)));
});

test('causal-LM loss from hidden states (fused, chunked) equals the logits path: GPT-2 tied, Llama untied, int8 base', async () => {
  const { causalLMLossFromHidden } = await import('../src/models/hf/heads.js');
  const { quantizeBase } = await import('../src/peft/quant.js');
  const gpt2 = (await loadModel('gpt2', { path: path.join(GOLDEN, 'gpt2') })) as unknown as CausalLM;
  const llama = buildHFModel({ model_type: 'llama', vocab_size: 50, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2 }) as unknown as CausalLM;
  for (const [name, m] of [['gpt2', gpt2], ['llama', llama]] as const) {
    const V = m.vocabSize;
    const ids = new Tensor(Int32Array.from({ length: 2 * 7 }, (_, i) => (i * 13 + 5) % V), 'i32', [2, 7]);
    const mask = new Tensor(Float32Array.from({ length: 14 }, (_, i) => (i === 13 || i === 12 ? 0 : 1)), 'f32', [2, 7]);
    const labels = lmLabels(ids, mask);
    for (const quant of [false, true]) {
      if (quant) quantizeBase(m, 'int8');
      const head = m.headWeights();
      assert.ok(head, `${name}: a plain head`);
      const fused = noGrad(() => causalLMLossFromHidden(m.hidden(ids, { attentionMask: mask }), head, labels)).item();
      const plain = noGrad(() => causalLMLoss(m.forward(ids, { attentionMask: mask }), labels)).item();
      assert.ok(Math.abs(fused - plain) < 1e-5 * Math.abs(plain), `${name}${quant ? ' int8' : ''}: ${fused} vs ${plain}`);
    }
  }
});

test('causal-LM loss from hidden states with prompts and padding ignored: only the scored rows go through the head, the same loss and gradients as the logits path', async () => {
  const { causalLMLossFromHidden, IGNORE_INDEX } = await import('../src/models/hf/heads.js');
  const m = (await loadModel('gpt2', { path: path.join(GOLDEN, 'gpt2') })) as unknown as CausalLM;
  const V = m.vocabSize;
  const ids = new Tensor(Int32Array.from({ length: 3 * 9 }, (_, i) => (i * 17 + 3) % V), 'i32', [3, 9]);
  const mask = new Tensor(Float32Array.from({ length: 27 }, (_, i) => (i % 9 >= 9 - (i / 9 | 0) * 2 ? 0 : 1)), 'f32', [3, 9]);
  // each row's first 4 tokens a prompt (not scored), its padding not scored
  const l = Int32Array.from(lmLabels(ids, mask).i32('labels'));
  for (let i = 0; i < l.length; i++) if (i % 9 < 4) l[i] = IGNORE_INDEX;
  const labels = new Tensor(l, 'i32', [3, 9]);
  const params = [...m.namedParameters()];
  for (const [, p] of params) p.requiresGrad = true;
  const grads = (loss: () => Tensor) => {
    for (const [, p] of params) p.grad = null;
    const v = loss();
    v.backward();
    return { v: v.item(), g: params.map(([, p]) => Float32Array.from(p.grad?.f32() ?? [])) };
  };
  const fused = grads(() => causalLMLossFromHidden(m.hidden(ids, { attentionMask: mask }), m.headWeights()!, labels));
  const plain = grads(() => causalLMLoss(m.forward(ids, { attentionMask: mask }), labels));
  assert.ok(Math.abs(fused.v - plain.v) < 1e-5 * Math.abs(plain.v), `${fused.v} vs ${plain.v}`);
  params.forEach(([k], j) => {
    const a = fused.g[j]!, b = plain.g[j]!;
    let scale = 1e-6, d = 0;
    for (let i = 0; i < b.length; i++) {
      scale = Math.max(scale, Math.abs(b[i]!));
      d = Math.max(d, Math.abs(a[i]! - b[i]!));
    }
    assert.ok(d < 1e-4 * scale, `${k}: gradient difference ${d} (scale ${scale})`);
  });
});
