/**
 * The WebGPU kernels against the portable backend, and the block workload's loss trajectory against native, in Node
 * through the optional `webgpu` package (Dawn), where Dawn finds an adapter. On machines without a GPU that is Mesa's
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
import { mkdtempSync, readFileSync } from 'node:fs';
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
  try {
    const gpt2 = loadHFModelFromDir(path.join(FIX, 'golden/gpt2')) as unknown as CausalLM;
    assert.ok(gpt2.parameters().every((p) => p.onDevice), 'every GPT-2 parameter on the device');
    const logits = noGrad(() => gpt2.forward(g('input_ids'), { attentionMask: g('attention_mask') }));
    const loss = noGrad(() => causalLMLoss(logits, g('labels')));
    const eLogits = relErr(await logits.data() as Float32Array, g('logits').f32());
    const eLoss = Math.abs((await loss.value()) - g('loss').item()) / g('loss').item();
    assert.ok(eLogits < 1e-4 && eLoss < 1e-5, `GPT-2 on the device vs PyTorch: logits ${eLogits}, loss ${eLoss}`);

    const bf = loadSafetensors(bf16File).tensors.get('w') as Tensor;
    assert.ok(bf.onDevice, 'a loaded tensor is on the device');
    assert.deepEqual(Array.from(await bf.data()), Array.from(bf16OnCpu.f32()), 'bf16 decoded as on the CPU');

    const use = (await loadModel('open-autoglm-base')) as USELite;
    assert.ok(use.parameters().every((p) => p.onDevice), 'every open-autoglm-base parameter on the device');
    const eUse = relErr(await noGrad(() => use.forward(...embedInput(use))).data() as Float32Array, cpuEmbed);
    assert.ok(eUse < 1e-4, `open-autoglm-base embedding on the device vs the CPU: ${eUse}`);

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
