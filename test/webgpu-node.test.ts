/**
 * The WebGPU kernels against the portable backend, the block workload's loss trajectory against native, loading
 * weights while WebGPU is current (against PyTorch's stored outputs and the CPU) and the Node trainer on WebGPU
 * (classification and causal-LM against the CPU backend, refused keys), in Node through the optional `webgpu` package
 * (Dawn), where Dawn finds an adapter. On machines without a GPU that is Mesa's
 * lavapipe (a Vulkan driver on the CPU) from Mesa 25 (Debian 12: bookworm-backports' `mesa-vulkan-drivers`, which
 * .ci/run installs; Debian 12's own Mesa 22.3 is refused by Dawn: "Vulkan shaderUniform*ArrayDynamicIndexing
 * required"). Under CI=true a missing adapter fails the test; elsewhere it skips with the reason.
 *
 * Chromium's SwiftShader Vulkan driver (VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json) also gives Dawn an
 * adapter, but there every kernel with a workgroup barrier (matmul, reductions, norms, attention) never completes
 * (measured with webgpu 0.6.2 and Chromium 156's SwiftShader), so that adapter is skipped unless
 * AUTOGLM_WEBGPU_NODE_SWIFTSHADER=1. AUTOGLM_WEBGPU_FILTER=<text> runs only the kernel cases whose name has it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PortableBackend } from '../src/backend/portable.js';
import { backend, setBackend } from '../src/backend/index.js';
import { blockWorkload } from '../src/bench/block.js';
import { requirePiece } from './helpers/ci.js';
import { ConfigError } from '../src/errors.js';
import { Twin } from './webgpu/twin.js';
import { elementwiseCases } from './webgpu/cases-elementwise.js';
import { nnCases } from './webgpu/cases-nn.js';
import { trainCases } from './webgpu/train-case.js';
import { deviceCases } from './webgpu/cases-device.js';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tensor } from '../src/tensor/tensor.js';
import { noGrad } from '../src/tensor/autograd.js';
import { manualSeed } from '../src/nn/init.js';
import { onCpu } from '../src/backend/placement.js';
import { loadSafetensors, saveSafetensors } from '../src/models/safetensors.js';
import { loadHFModelFromDir } from '../src/models/hf/loader.js';
import { causalLMLoss } from '../src/models/hf/heads.js';
import type { CausalLM } from '../src/models/hf/family.js';
import { loadModel } from '../src/models/registry.js';
import type { USELite } from '../src/models/use-lite/model.js';
import { TinyGPT } from '../src/models/tiny-gpt.js';
import { LoraModel, loadAdapter } from '../src/peft/index.js';
import { relErr } from './helpers/backends.js';
import { DeviceError } from '../src/errors.js';
import { Rng } from '../src/backend/rng.js';
import type { Backend } from '../src/backend/backend.js';
import { WebGpuTensorBackend } from '../src/backend/webgpu/tensor-backend.js';
import { AutoGLMTrainer, type TrainerConfigInput } from '../src/train/index.js';
import type { History } from '../src/train/history.js';
import type { DatasetSplits, Example } from '../src/data/index.js';
import type { TextEncoder } from '../src/models/classifier.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const { loadWebGpuNode, useWebGpu, moveToDevice } = await import('../src/backend/webgpu/node.js');
const found = await loadWebGpuNode();
const swiftshader = found !== null && found.describe().includes('swiftshader') && process.env.AUTOGLM_WEBGPU_NODE_SWIFTSHADER !== '1';
const G = swiftshader ? null : found;
const skip = requirePiece('a WebGPU adapter in Node (Dawn)', G !== null, swiftshader
  ? 'the adapter is SwiftShader, where kernels with workgroup barriers hang under Dawn in Node (Mesa 25 lavapipe works)'
  : 'Dawn found none: install Mesa 25 lavapipe (Debian 12: apt-get install -t bookworm-backports mesa-vulkan-drivers) or a GPU driver');
const P = new PortableBackend();
const filter = process.env.AUTOGLM_WEBGPU_FILTER ?? '';

test('WebGPU kernels equal the portable backend (Node, Dawn)', { skip, timeout: 600_000 }, async (t) => {
  if (!G) return;
  t.diagnostic(`adapter: ${G.describe()}`);
  let seed = 1;
  const variant0 = G.ctx.matmulVariant;
  // as the Chromium test (test/webgpu/page.ts): the matmul cases on both matmul kernels, the rest on the adapter's
  const runs = [...elementwiseCases, ...nnCases, ...trainCases, ...deviceCases].flatMap((c) => c.name.startsWith('matmul')
    ? (['tiled', 'direct'] as const).map((v) => ({ c, name: `${c.name} [${v} kernel]`, v }))
    : [{ c, name: c.name, v: variant0 }]);
  try {
    for (const { c, name, v } of runs) {
      if (filter && !name.includes(filter)) continue;
      G.ctx.matmulVariant = v;
      const twin = new Twin(G, seed++);
      await t.test(name, async (st) => {
        G.ctx.device.pushErrorScope('validation');
        await c.run(twin, P, G);
        const results = await twin.results(name);
        const err = await G.ctx.device.popErrorScope();
        assert.equal(err, null, err?.message);
        for (const r of results) {
          if (r.name.includes('loss trajectory')) st.diagnostic(`${r.name}: ${r.detail}`);
          assert.ok(r.ok, `${r.name}: ${r.detail}`);
        }
      });
    }
  } finally {
    G.ctx.matmulVariant = variant0;
  }
});

/**
 * test/webgpu-block.test.ts's trajectory in Node: the block workload (d256 h4 ff1024, head to 512 classes, SGD at
 * lr 0.5) through the tensor layer on the device, against the CPU backend's steps; as the Chromium test, cut to
 * AUTOGLM_WEBGPU_BLOCK_BATCH rows (default 1 of the workload's 8) and AUTOGLM_WEBGPU_BLOCK_STEPS steps (default 5),
 * since lavapipe runs the kernels on the CPU too.
 */
test('block workload: WebGPU in Node follows the CPU loss trajectory', { skip, timeout: 600_000 }, async (t) => {
  if (!G) return;
  const count = (name: string, d: number): number => {
    const v = process.env[name] ?? String(d);
    if (!/^[1-9][0-9]*$/.test(v)) throw new ConfigError(`${name} must be a positive integer; got '${v}'`);
    return Number(v);
  };
  const STEPS = count('AUTOGLM_WEBGPU_BLOCK_STEPS', 5), BATCH = count('AUTOGLM_WEBGPU_BLOCK_BATCH', 1), LR = 0.5;
  assert.ok(BATCH <= 8, `AUTOGLM_WEBGPU_BLOCK_BATCH is at most the workload's 8 rows; got ${BATCH}`);
  const ref = backend();
  const w = blockWorkload(LR, { batch: BATCH });
  const cpu = Array.from({ length: STEPS }, () => w.step('f32'));
  const b = useWebGpu(G);
  const losses: number[] = [], ms: number[] = [];
  let uploads = 0;
  try {
    const d = blockWorkload(LR, { batch: BATCH });
    moveToDevice([...d.params, d.x]);
    for (let i = 0; i < STEPS; i++) {
      const t0 = performance.now();
      b.uploads = 0;
      const loss = d.stepTensor('f32');
      uploads = b.uploads;
      losses.push(await loss.value());
      ms.push(Math.round(performance.now() - t0));
    }
    assert.ok(d.params.every((p) => p.onDevice), 'the parameters stay on the device');
  } finally {
    setBackend(ref);
  }
  const deltas = losses.map((v, i) => Math.abs(v - cpu[i]) / Math.abs(cpu[i]));
  t.diagnostic(`${ref.name}: ${cpu.map((v) => v.toPrecision(9)).join(' ')}`);
  t.diagnostic(`${G.describe()}: ${losses.map((v) => v.toPrecision(9)).join(' ')} (ms per step: ${ms.join(', ')}; uploads in the last step: ${uploads})`);
  t.diagnostic(`relative loss deltas: ${deltas.map((x) => x.toExponential(2)).join(' ')}`);
  assert.ok(cpu[STEPS - 1] < cpu[0], `the loss goes down on ${ref.name}: ${cpu.join(', ')}`);
  deltas.forEach((x, i) => assert.ok(x <= 1e-4, `step ${i}: webgpu ${losses[i]} vs ${ref.name} ${cpu[i]} (relative ${x})`));
  assert.ok(uploads <= 3, `a step uploads only its small inputs (${uploads} uploads)`);
});

/**
 * Loading while WebGPU is current (src/backend/placement.ts): the loaders build and decode on the CPU and upload the
 * result, so every parameter is on the device. A Hugging Face folder (GPT-2's Conv1D weights transposed while loading)
 * gives PyTorch's stored logits and loss; a bf16 safetensors file decodes to the CPU's values; the embedded default
 * model embeds as on the CPU; a PEFT adapter written by PyTorch loads into a LoRA model and gives PyTorch's logits.
 */
test('loading weights while WebGPU is current: on the device, values as on the CPU and PyTorch', { skip, timeout: 600_000 }, async (t) => {
  if (!G) return;
  const ref = backend();
  const FIX = path.join(ROOT, 'test/fixtures');
  const golden = loadSafetensors(path.join(FIX, 'golden/gpt2/golden.safetensors')).tensors; // on the CPU: ids stay there
  const g = (k: string) => golden.get(k) as Tensor;
  const cpuEmbed = embedOnce((await loadModel('open-autoglm-base')) as USELite);
  const bf16File = path.join(mkdtempSync(path.join(tmpdir(), 'autoglm-wgpu-load-')), 'w.safetensors');
  const w = new Tensor(Float32Array.from({ length: 40 }, (_, i) => Math.sin(i) * 3), 'f32', [5, 8]);
  saveSafetensors(bf16File, new Map([['w', w.to('bf16')]]));
  const bf16OnCpu = loadSafetensors(bf16File).tensors.get('w') as Tensor;
  const peft = JSON.parse(readFileSync(path.join(FIX, 'peft/expected.json'), 'utf8')) as { config: Record<string, number>; ids: number[][]; logits: number[] };
  useWebGpu(G);
  const t0 = performance.now(), at: string[] = [];
  const lap = (what: string) => at.push(`${what} ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
  try {
    const gpt2 = loadHFModelFromDir(path.join(FIX, 'golden/gpt2')) as unknown as CausalLM;
    assert.ok(gpt2.parameters().every((p) => p.onDevice), 'every GPT-2 parameter on the device');
    const logits = noGrad(() => gpt2.forward(g('input_ids'), { attentionMask: g('attention_mask') }));
    const loss = noGrad(() => causalLMLoss(logits, g('labels')));
    const eLogits = relErr(await logits.data() as Float32Array, g('logits').f32());
    const eLoss = Math.abs((await loss.value()) - g('loss').item()) / g('loss').item();
    assert.ok(eLogits < 1e-4 && eLoss < 1e-5, `GPT-2 on the device vs PyTorch: logits ${eLogits}, loss ${eLoss}`);
    lap('gpt2');

    const bf = loadSafetensors(bf16File).tensors.get('w') as Tensor;
    assert.ok(bf.onDevice, 'a loaded tensor is on the device');
    assert.deepEqual(Array.from(await bf.data()), Array.from(bf16OnCpu.f32()), 'bf16 decoded as on the CPU');

    const use = (await loadModel('open-autoglm-base')) as USELite;
    assert.ok(use.parameters().every((p) => p.onDevice), 'every open-autoglm-base parameter on the device');
    const eUse = relErr(await noGrad(() => use.forward(...embedInput(use))).data() as Float32Array, cpuEmbed);
    assert.ok(eUse < 1e-4, `open-autoglm-base embedding on the device vs the CPU: ${eUse}`);
    lap('open-autoglm-base');

    const c = peft.config;
    const base = onCpu(() => {
      manualSeed(0);
      const m = new TinyGPT({ vocabSize: c.vocab, contextLength: c.ctx, dim: c.dim, heads: c.heads, layers: c.layers, mlpDim: c.mlp });
      m.loadStateDict(loadSafetensors(path.join(FIX, 'peft/base.safetensors')).tensors);
      return m.eval();
    });
    const lora = onCpu(() => new LoraModel(base, { targetModules: ['fc2'] }, 'scratch'));
    loadAdapter(lora, path.join(FIX, 'peft/adapter'), 'from_torch');
    assert.ok(base.parameters().every((p) => p.onDevice), 'the LoRA model on the device after loadAdapter');
    const ids = new Tensor(Int32Array.from(peft.ids.flat()), 'i32', [peft.ids.length, peft.ids[0].length]);
    const ePeft = relErr(await noGrad(() => base.forward(ids)).data() as Float32Array, peft.logits);
    assert.ok(ePeft < 1e-4, `PEFT adapter on the device vs PyTorch: ${ePeft}`);
    assert.throws(() => loadAdapter(lora, path.join(FIX, 'peft/adapter'), 'again'), (e: unknown) => e instanceof DeviceError && /loadAdapter/.test(e.message));
    lap('peft');
    t.diagnostic(`until: ${at.join(', ')}`);
    t.diagnostic(`relative errors: gpt2 logits ${eLogits.toExponential(2)}, loss ${eLoss.toExponential(2)}; open-autoglm-base ${eUse.toExponential(2)}; peft ${ePeft.toExponential(2)}`);
  } finally {
    setBackend(ref);
  }
});

function embedInput(m: USELite): [Tensor, Tensor] {
  const b = m.tokenize(['book a table for two tonight', 'what is the weather in paris']);
  return [b.ids, b.attentionMask];
}

function embedOnce(m: USELite): Float32Array {
  return noGrad(() => m.forward(...embedInput(m))).f32().slice();
}

// ---- the trainer on WebGPU in Node (src/train/device.ts) --------------------------------------------------------------

const TOPICS = { weather: ['rain tomorrow', 'snow storm', 'sunny skies'], music: ['new album', 'concert tonight', 'guitar songs'] } as Record<string, string[]>;
function topicExamples(n: number, seed: number): Example[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const topic = rng.int(2) ? 'weather' : 'music';
    return { text: `${rng.int(2) ? 'I love' : 'I hate'} the ${TOPICS[topic]![rng.int(3)]}${i % 2 ? ' today' : ''}`, label: topic };
  });
}
const TOPIC_SPLITS: DatasetSplits = { name: 'topics', train: topicExamples(12, 1), validation: topicExamples(6, 2), test: topicExamples(6, 3), labels: ['music', 'weather'], extraLabels: {}, skipped: [] };

/** A tiny sentence encoder (characters -> 2 blocks of width 32 -> mean pooling), built afresh (seeded) for each run. */
function tinyEncoder(): TextEncoder {
  manualSeed(3);
  const m = new TinyGPT({ vocabSize: 64, contextLength: 24, dim: 32, heads: 2, layers: 2, mlpDim: 64 });
  return { module: m, embedDim: 32, maxLength: 24, padId: 0, name: 'tiny-encoder',
    encodeText: (t) => [...t].map((ch) => 1 + (ch.charCodeAt(0) % 63)), embed: (ids, mask) => m.hidden(ids).mul(mask.unsqueeze(-1)).sum(1).div(mask.sum(1, true)) };
}

/** Runs a fine-tune on `b` (the WebGPU backend, or the CPU one) and restores the backend that was current. */
async function finetuneOn(b: Backend, model: string | TextEncoder, config: TrainerConfigInput, dataset: string | DatasetSplits): Promise<{ h: History; notes: string[]; trainer: AutoGLMTrainer }> {
  const was = backend();
  setBackend(b);
  try {
    const trainer = new AutoGLMTrainer({ model, config: { logEvery: 1, outputDir: mkdtempSync(path.join(tmpdir(), 'autoglm-wgpu-trainer-')), ...config } });
    const notes: string[] = [];
    trainer.on('note', (m: string) => notes.push(m));
    const h = await trainer.finetune({ dataset });
    return { h, notes, trainer };
  } finally {
    setBackend(was);
  }
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

test('the trainer on WebGPU in Node: a LoRA classification fine-tune follows the CPU backend (losses, evaluation)', { skip, timeout: 600_000 }, async (t) => {
  if (!G) return;
  const cpu = backend();
  const config: TrainerConfigInput = { epochs: 2, batchSize: 6, evalBatchSize: 8, learningRate: 1e-2, loraRank: 4 };
  const a = await finetuneOn(cpu, tinyEncoder(), config, TOPIC_SPLITS);
  const t0 = performance.now();
  const g = await finetuneOn(new WebGpuTensorBackend(G), tinyEncoder(), config, TOPIC_SPLITS);
  const ms = performance.now() - t0;
  assert.ok(g.notes.some((n) => n.includes('backend: webgpu')), `trained on webgpu: ${g.notes.join(' | ')}`);
  const la = a.h.steps.map((s) => s.loss), lg = g.h.steps.map((s) => s.loss);
  assert.equal(lg.length, la.length);
  const d = lg.map((v, i) => rel(v, la[i]!));
  const dn = g.h.steps.map((s, i) => rel(s.grad_norm, a.h.steps[i]!.grad_norm));
  t.diagnostic(`${cpu.name}: ${la.map((v) => v.toFixed(6)).join(' ')}`);
  t.diagnostic(`webgpu: ${lg.map((v) => v.toFixed(6)).join(' ')} (${(ms / 1e3).toFixed(1)} s in all)`);
  t.diagnostic(`relative loss deltas ${d.map((x) => x.toExponential(1)).join(' ')}; grad norms ${dn.map((x) => x.toExponential(1)).join(' ')}`);
  d.forEach((x, i) => assert.ok(x < 1e-4, `step ${i + 1}: loss ${lg[i]} vs ${la[i]} (relative ${x})`));
  dn.forEach((x, i) => assert.ok(x < 1e-3, `step ${i + 1}: grad norm (relative ${x})`));
  assert.ok(la[la.length - 1]! < la[0]!, `the loss goes down: ${la.join(', ')}`);
  const va = a.h.evals.map((e) => e.loss), vg = g.h.evals.map((e) => e.loss);
  vg.forEach((v, i) => assert.ok(rel(v, va[i]!) < 1e-4, `validation loss ${i}: ${v} vs ${va[i]}`));
  assert.deepEqual(g.h.evals.map((e) => e.accuracy), a.h.evals.map((e) => e.accuracy));
  assert.ok(rel(g.h.test!.loss, a.h.test!.loss) < 1e-4, `test loss ${g.h.test!.loss} vs ${a.h.test!.loss}`);
  assert.deepEqual([g.h.test!.accuracy, g.h.test!.macro_f1], [a.h.test!.accuracy, a.h.test!.macro_f1]);
  // the finished model is back on the CPU: outputs were written, predictions work
  assert.ok(existsSync(path.join(g.h.outputs.adapter as string, 'adapter_model.safetensors')));
  assert.equal((await g.trainer.predict(['I love the new album'])).length, 1);
});

test('the trainer on WebGPU in Node: causal-LM fine-tune and perplexity follow the CPU backend', { skip, timeout: 600_000 }, async (t) => {
  if (!G) return;
  const cpu = backend();
  const corpus = path.join(mkdtempSync(path.join(tmpdir(), 'autoglm-wgpu-lm-')), 'texts.jsonl');
  const phrases = ['the cat sat on the mat', 'a dog ran in the park', 'the sun is warm today', 'we read a good book'];
  writeFileSync(corpus, Array.from({ length: 24 }, (_, i) => JSON.stringify({ text: phrases[i % phrases.length] })).join('\n'));
  const config: TrainerConfigInput = { task: 'causal-lm', epochs: 1, batchSize: 8, learningRate: 2e-2, warmupRatio: 0, evalEvery: 1 };
  const gpt2 = path.join(ROOT, 'test/fixtures/golden/gpt2');
  const a = await finetuneOn(cpu, gpt2, config, corpus);
  const g = await finetuneOn(new WebGpuTensorBackend(G), gpt2, config, corpus);
  const la = a.h.steps.map((s) => s.loss), lg = g.h.steps.map((s) => s.loss);
  const pa = a.h.evals.map((e) => e.perplexity as number), pg = g.h.evals.map((e) => e.perplexity as number);
  t.diagnostic(`${cpu.name}: losses ${la.map((v) => v.toFixed(6)).join(' ')}; perplexity ${pa.map((v) => v.toFixed(5)).join(' ')}`);
  t.diagnostic(`webgpu: losses ${lg.map((v) => v.toFixed(6)).join(' ')}; perplexity ${pg.map((v) => v.toFixed(5)).join(' ')}`);
  assert.ok(la.length >= 2 && lg.length === la.length && pg.length === pa.length && pa.length >= 2);
  lg.forEach((v, i) => assert.ok(rel(v, la[i]!) < 1e-4, `step ${i + 1}: loss ${v} vs ${la[i]}`));
  pg.forEach((v, i) => assert.ok(rel(v, pa[i]!) < 1e-4, `eval ${i}: perplexity ${v} vs ${pa[i]}`));
  assert.ok(pa[pa.length - 1]! < pa[0]!, `perplexity falls: ${pa.join(', ')}`);
  // a second fine-tune of the same trainer runs on the device again, not on the CPU backend the first one left current
  const was = backend();
  let on = '';
  try {
    await g.trainer.finetune({ dataset: corpus, callbacks: [{ onTrainBegin: () => void (on = backend().name) }] });
  } finally {
    setBackend(was);
  }
  assert.equal(on, 'webgpu');
});

test('the trainer on WebGPU in Node: keys the device path cannot honour are refused by name', { skip }, async () => {
  if (!G) return;
  const was = backend();
  const refused: Array<[TrainerConfigInput, string]> = [
    [{ mixedPrecision: 'bf16' }, 'mixedPrecision'], [{ mixedPrecision: 'fp16' }, 'mixedPrecision'], [{ gradientCompression: true }, 'gradientCompression'],
    [{ saveEvery: 2 }, 'saveEvery'], [{ resume: true }, 'resume'], [{ method: 'head' }, 'method'], [{ earlyStopping: {} }, 'earlyStopping.restoreBest'],
    [{ tasks: ['topics', 'mood'] }, 'task'], [{ baseQuantization: 'int8' }, 'baseQuantization'], [{ curriculum: { scorer: 'length' } }, 'curriculum'], [{ optimizer: 'adamw8bit' }, 'optimizer'],
  ];
  setBackend(new WebGpuTensorBackend(G));
  try {
    for (const [config, key] of refused) {
      assert.throws(() => new AutoGLMTrainer({ config }), (e: unknown) => e instanceof ConfigError && e.message.includes(`'${key}'`) && e.message.includes('webgpu'), JSON.stringify(config));
    }
    // quantising while loading (QLoRA's load) is refused too, before the folder is read
    assert.throws(() => loadHFModelFromDir(path.join(ROOT, 'test/fixtures'), { dtype: 'keep', quantize: { mode: 'nf4' } }),
      (e: unknown) => e instanceof ConfigError && /option 'quantize' needs a CPU backend/.test(e.message));
    new AutoGLMTrainer({ config: { earlyStopping: { restoreBest: false }, optimizer: 'rmsprop' } }); // these are honoured
  } finally {
    setBackend(was);
  }
  // made current after the trainer was built: refused when the fine-tune starts, before any work
  const trainer = new AutoGLMTrainer({ model: tinyEncoder(), config: { saveEvery: 1 } });
  setBackend(new WebGpuTensorBackend(G));
  try {
    await assert.rejects(trainer.finetune({ dataset: TOPIC_SPLITS }), (e: unknown) => e instanceof ConfigError && e.message.includes("'saveEvery'"));
  } finally {
    setBackend(was);
  }
});
