/**
 * Quantisation while a checkpoint loads (loadHFModel's `quantize`, what QLoRA's decoder tasks use) and the base
 * Linear layers quantised before the adapters are injected (`quantizeLinears`, applyMethod):
 * - the same bits as loading the checkpoint and quantising afterwards, in every mode, from bf16, f16 and f32
 *   checkpoints, also where a layer's bias arrives in a later shard than its weight;
 * - 16-bit weights widened a chunk at a time give the bits of quantising their f32 copy;
 * - DoRA on a quantised base starts at the quantised base's outputs (PEFT's order: LoRA wraps quantised layers).
 * The load's peak memory is in test/hf-memory.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildHFModel, loadHFModelFromDir, saveHFModel, type HFModel } from '../src/models/hf/index.js';
import { checkpointState } from '../src/models/hf/save.js';
import { saveSafetensors } from '../src/models/safetensors.js';
import { manualSeed } from '../src/nn/init.js';
import { Tensor } from '../src/tensor/tensor.js';
import { noGrad } from '../src/tensor/autograd.js';
import { Rng } from '../src/backend/rng.js';
import { backend } from '../src/backend/index.js';
import { Int8Linear, Nf4Linear, quantizeBase, quantizeLinears, type BaseQuantization } from '../src/peft/index.js';
import { quantizeInt8 } from '../src/peft/quant.js';
import { WIDEN_CHUNK, quantizeNf4, quantizeNf4Stored } from '../src/peft/nf4.js';
import { applyMethod, quantizeRunBase } from '../src/train/setup.js';
import { parseTrainerConfig } from '../src/train/config.js';
import { ConfigError, DTypeError } from '../src/errors.js';

/** A 2-layer Qwen2 (q/k/v biases), hidden 128, MLP 320 (rows of 320 split NF4's blocks), untied head. */
const CONFIG = {
  model_type: 'qwen2', vocab_size: 300, hidden_size: 128, intermediate_size: 320, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: false, max_position_embeddings: 64,
};

function bytesOf(t: Tensor): Buffer {
  const s = t.dense();
  return Buffer.from(s.buffer, s.byteOffset, s.byteLength);
}

/** The model's parameters, buffers compared byte for byte (dtype, shape and bits). */
function assertSameState(a: HFModel, b: HFModel, what: string): void {
  const pa = new Map(a.namedParameters()), pb = new Map(b.namedParameters());
  assert.deepEqual([...pa.keys()].sort(), [...pb.keys()].sort(), `${what}: parameter names`);
  for (const [k, t] of pa) {
    const u = pb.get(k) as Tensor;
    assert.equal(t.dtype, u.dtype, `${what}: dtype of ${k}`);
    assert.deepEqual(t.shape, u.shape, `${what}: shape of ${k}`);
    assert.ok(bytesOf(t).equals(bytesOf(u)), `${what}: bits of ${k}`);
  }
}

const logits = (m: HFModel, ids: number[]): Float32Array =>
  noGrad(() => (m as HFModel & { forward(x: Tensor): Tensor }).forward(new Tensor(Int32Array.from(ids), 'i32', [1, ids.length])).f32().slice());

/** Saves `model` with its biases in a second shard, listed after the weights' shard: each bias arrives after its weight. */
function saveBiasesLast(model: HFModel, dir: string, dtype: 'bf16' | 'f32'): void {
  saveHFModel(model, dir, { dtype }); // config, tokenizer-less folder
  rmSync(path.join(dir, 'model.safetensors'));
  const state = checkpointState(model, dtype);
  const first = new Map([...state].filter(([k]) => !k.endsWith('.bias'))), second = new Map([...state].filter(([k]) => k.endsWith('.bias')));
  saveSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), first, { format: 'pt' });
  saveSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), second, { format: 'pt' });
  const weightMap: Record<string, string> = {};
  for (const k of first.keys()) weightMap[k] = 'model-00001-of-00002.safetensors';
  for (const k of second.keys()) weightMap[k] = 'model-00002-of-00002.safetensors';
  writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
}

test('quantising while loading gives the bits of quantising after loading: nf4 (double-quantised or not), int8, bf16; bf16, f16 and f32 checkpoints; biases in a later shard', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'autoglm-qload-'));
  try {
    manualSeed(3);
    const model = buildHFModel(CONFIG, { task: 'causal-lm' });
    const dirs: Array<[string, string]> = [];
    for (const dtype of ['bf16', 'f16', 'f32'] as const) {
      const dir = path.join(root, dtype);
      saveHFModel(model, dir, { dtype });
      dirs.push([dtype, dir]);
    }
    for (const dtype of ['bf16', 'f32'] as const) {
      const dir = path.join(root, `${dtype}-biases-last`);
      saveBiasesLast(model, dir, dtype);
      dirs.push([`${dtype}, biases in a later shard`, dir]);
    }
    const ids = [5, 17, 250, 3, 99, 42, 7];
    const modes: Array<{ mode: BaseQuantization; doubleQuant?: boolean }> = [{ mode: 'nf4' }, { mode: 'nf4', doubleQuant: false }, { mode: 'int8' }, { mode: 'bf16' }];
    for (const [ckpt, dir] of dirs) {
      for (const q of modes) {
        const what = `${q.mode}${q.doubleQuant === false ? ' (single)' : ''} from ${ckpt}`;
        const opts = { skip: ['lm_head'], ...(q.doubleQuant === undefined ? {} : { doubleQuant: q.doubleQuant }) };
        const a = loadHFModelFromDir(dir, { dtype: 'keep', quantize: { mode: q.mode, ...opts } });
        const b = loadHFModelFromDir(dir, { dtype: 'keep' });
        const rb = quantizeLinears(b, q.mode, opts);
        assertSameState(a, b, what);
        const report = a.loadReport.quantized;
        assert.equal(report?.layers, 14, `${what}: 7 Linear layers a block`);
        if (q.mode === 'bf16' && ckpt.startsWith('bf16')) {
          // already bf16: the load counts them (nothing to convert), quantizeLinears leaves them
          assert.equal(report?.bytesAfter, report?.bytesBefore, `${what}: bytes`);
          assert.equal(rb.layers, 0, `${what}: quantizeLinears leaves bf16 layers`);
        } else {
          assert.deepEqual(report, rb, `${what}: report`);
        }
        const cls = q.mode === 'nf4' ? Nf4Linear : q.mode === 'int8' ? Int8Linear : null;
        if (cls) assert.ok(new Map(a.namedModules()).get('model.layers.1.self_attn.q_proj') instanceof cls, `${what}: q_proj converted`);
        assert.equal((new Map(a.namedModules()).get('lm_head') as unknown as { weight: Tensor }).weight.dtype, ckpt.startsWith('f32') ? 'f32' : ckpt.slice(0, 4), `${what}: lm_head as loaded`);
        assert.deepEqual(logits(a, ids), logits(b, ids), `${what}: logits`);
        // nothing is left for quantizeLinears after a quantising load
        assert.equal(quantizeLinears(a, q.mode, opts).layers, 0, `${what}: nothing left`);
      }
    }
    // the run's note counts the layers converted while loading
    const a = loadHFModelFromDir(dirs[0][1], { dtype: 'keep', quantize: { mode: 'nf4', skip: ['lm_head'] } });
    const notes: string[] = [];
    quantizeRunBase(a, parseTrainerConfig({ method: 'lora', baseQuantization: 'nf4' }), ['lm_head'], (m) => notes.push(m));
    assert.match(notes[0] ?? '', /^frozen base in nf4 \(double-quantised absmax\): 14 layers, /);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('quantising while loading: a bad mode or option is a ConfigError before any weight is read', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-qload-'));
  try {
    manualSeed(0);
    saveHFModel(buildHFModel(CONFIG, { task: 'causal-lm' }), dir, { dtype: 'bf16' });
    assert.throws(() => loadHFModelFromDir(dir, { dtype: 'keep', quantize: { mode: 'int4' as BaseQuantization } }), (e: unknown) => e instanceof ConfigError && /'bf16', 'int8' or 'nf4'; got 'int4'/.test(e.message));
    assert.throws(() => loadHFModelFromDir(dir, { dtype: 'keep', quantize: { mode: 'int8', doubleQuant: true } }), (e: unknown) => e instanceof ConfigError && /doubleQuant applies to base quantization 'nf4'/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('16-bit weights widened a chunk at a time: the bits of quantising their f32 copy (NF4 and int8); a non-finite element named by its index (both)', () => {
  const rng = new Rng(11);
  const n = 2 * WIDEN_CHUNK + 100; // two whole chunks and a tail with a partial NF4 block
  const f = Float32Array.from({ length: n }, () => (rng.uniform() - 0.5) * 0.2);
  for (const dtype of ['bf16', 'f16'] as const) {
    const stored = new Uint16Array(n);
    backend().cast(f, 'f32', stored, dtype);
    const wide = new Float32Array(n);
    backend().cast(stored, dtype, wide, 'f32');
    const a = quantizeNf4Stored(stored, dtype), b = quantizeNf4(wide);
    assert.deepEqual(a.codes, b.codes, `${dtype}: NF4 codes`);
    assert.deepEqual(a.absmax, b.absmax, `${dtype}: NF4 absmax`);
    // int8: rows of 300 (218 rows a chunk), 437 rows
    const rows = 437, cols = 300;
    const t = new Tensor(stored.slice(0, rows * cols), dtype, [rows, cols]);
    const qa = quantizeInt8(t), qb = quantizeInt8(t.to('f32'));
    assert.deepEqual(qa.q.dense(), qb.q.dense(), `${dtype}: int8 values`);
    assert.deepEqual(qa.scales.f32(), qb.scales.f32(), `${dtype}: int8 scales`);
    const bad = stored.slice();
    bad[WIDEN_CHUNK + 77] = 0x7fc0; // NaN in bf16 and f16 alike
    assert.throws(() => quantizeNf4Stored(bad, dtype, 'the weight of x'), (e: unknown) => e instanceof DTypeError && e.message.includes(`element ${WIDEN_CHUNK + 77} is NaN`) && e.message.includes('the weight of x'));
    // int8 refuses it too (a NaN made its row's scale 1 and the row zero, silently)
    const badRows = new Tensor(bad.slice(0, rows * cols), dtype, [rows, cols]);
    bad[1234] = 0x7fc0;
    const badRows2 = new Tensor(bad.slice(0, rows * cols), dtype, [rows, cols]);
    assert.throws(() => quantizeInt8(badRows), (e: unknown) => e instanceof DTypeError && e.message === `cannot quantise weight to int8: element ${WIDEN_CHUNK + 77} is NaN`);
    assert.throws(() => quantizeInt8(badRows2, 'the weight of y'), (e: unknown) => e instanceof DTypeError && e.message === 'cannot quantise the weight of y to int8: element 1234 is NaN');
  }
});

test('DoRA on a quantised base starts at the quantised base: applyMethod quantises the Linear layers before LoRA wraps them (as PEFT wraps a bitsandbytes model)', () => {
  const ids = [1, 2, 3, 4, 5, 6, 7, 8];
  for (const mode of ['nf4', 'int8'] as const) {
    manualSeed(5);
    const run = buildHFModel(CONFIG, { task: 'causal-lm' });
    manualSeed(5);
    const base = buildHFModel(CONFIG, { task: 'causal-lm' });
    quantizeLinears(base, mode, { skip: ['lm_head'] });
    for (const p of base.parameters()) p.requiresGrad = false;
    quantizeBase(base, mode, { skip: ['lm_head'] }); // the embedding table, as applyMethod does after the injection
    const c = parseTrainerConfig({ method: 'lora', useDora: true, baseQuantization: mode, loraDropout: 0 });
    applyMethod(run, c, { heads: [], baseName: 'qwen2-test', taskType: 'CAUSAL_LM', keepPrecision: ['lm_head'], note: () => {} });
    run.eval();
    base.eval();
    const got = logits(run, ids), want = logits(base, ids);
    let err = 0;
    for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
    assert.equal(err, 0, `${mode}: DoRA's start differs from the quantised base by ${err}`); // before: 0.017 (nf4), 7.7e-4 (int8)
  }
});
