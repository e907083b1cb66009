/**
 * Tensor-layer cases on the device (#22 item 2), run by the kernel test page (Chromium) and test/webgpu-node.test.ts
 * (Dawn): the same steps on the portable backend and on WebGPU through the tensor layer, compared.
 *  - the step gate: `guardedUpdate` on the device (norm, finite check, clipping, the fp16 loss scaler's update,
 *    the optimizer's gated kernels; no read back inside a step) equals the CPU path, skipped step included, for
 *    AdamW, Adam with L2 decay, SGD with Nesterov momentum and RMSprop (the fused RMSprop kernel against the
 *    TypeScript loop);
 *  - evaluation on the device (`evaluateClassifierAsync`: forward, loss and argmax there, only the batch loss sums and
 *    the predictions read back) equals `evaluateClassifier` on the CPU, and leaves the weights on the device;
 *  - the fused LM loss (`linearCrossEntropy`, chunked) on the device: loss and the gradients of h, W and b equal the
 *    portable backend's;
 *  - saving from the device: `adapterFilesAsync` / `readBack` give the CPU's bytes; the synchronous encoder refuses
 *    a device tensor with a DeviceError naming the asynchronous forms.
 */
import type { PortableBackend } from '../../src/backend/portable.js';
import type { WebGpuBackend } from '../../src/backend/webgpu/index.js';
import { setBackend } from '../../src/backend/index.js';
import { useWebGpu, moveToDevice } from '../../src/backend/webgpu/tensors.js';
import { Rng } from '../../src/backend/rng.js';
import { Tensor } from '../../src/tensor/tensor.js';
import { AdamW, Adam } from '../../src/optim/adam.js';
import { SGD } from '../../src/optim/sgd.js';
import { RMSprop } from '../../src/optim/rmsprop.js';
import type { Optimizer } from '../../src/optim/optimizer.js';
import { DynamicLossScaler } from '../../src/precision/index.js';
import { guardedUpdate } from '../../src/train/update.js';
import { Module } from '../../src/nn/module.js';
import { Embedding, Linear } from '../../src/nn/layers.js';
import { manualSeed } from '../../src/nn/init.js';
import { SequenceClassifier, type TextEncoder } from '../../src/models/classifier.js';
import { evaluateClassifier, evaluateClassifierAsync } from '../../src/train/evaluate.js';
import { LoraModel } from '../../src/peft/lora/model.js';
import { adapterFiles, adapterFilesAsync } from '../../src/peft/lora/state.js';
import { encodeSafetensors, readBack } from '../../src/models/safetensors-encode.js';
import { linearCrossEntropy } from '../../src/tensor/ops/linear-ce.js';
import type { Case } from './cases-elementwise.js';
import { compare } from './twin.js';

const SIZES = [300, 7, 5000];
const STEPS = 5;
/** The step whose gradients hold an Inf (skipped on both sides). */
const BAD_STEP = 2;

const OPTIMIZERS: Record<string, (p: Tensor[]) => Optimizer> = {
  AdamW: (p) => new AdamW(p, { lr: 1e-2, weightDecay: 0.1 }),
  'Adam (L2 decay)': (p) => new Adam(p, { lr: 1e-2, weightDecay: 0.1 }),
  'SGD (Nesterov momentum)': (p) => new SGD(p, { lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 0.01 }),
  'RMSprop (momentum)': (p) => new RMSprop(p, { lr: 1e-2, momentum: 0.5, weightDecay: 0.01 }),
  RMSprop: (p) => new RMSprop(p, { lr: 1e-2 }),
};

interface Run { norms: number[]; oks: boolean[]; params: Float32Array[]; stepCount: number; scaler: string; readsInSteps: number }

/** `logged`: every step's `settled` is awaited after it (a log line a step); else only at the end (the gates are then read by the next update). */
async function train(opt: string, fp16: boolean, onDevice: { G: WebGpuBackend } | null, logged = true): Promise<Run> {
  const rng = new Rng(11);
  const rand = (n: number, s: number): Float32Array => Float32Array.from({ length: n }, () => (rng.uniform() * 2 - 1) * s);
  const params = SIZES.map((n) => new Tensor(rand(n, 1), 'f32', [n]));
  for (const p of params) p.requiresGrad = true;
  if (onDevice) moveToDevice(params);
  const o = OPTIMIZERS[opt](params);
  const scaler = new DynamicLossScaler(fp16, 2 ** 4, 2, 0.5, 2); // growth after 2 clean steps: the growth path runs too
  const named = params.map((p, i): [string, Tensor] => [`p${i}`, p]);
  const settled: PromiseLike<{ ok: boolean; norm: number }>[] = [];
  let reads = 0;
  const ctx = onDevice?.G.ctx;
  const read0 = ctx?.read.bind(ctx);
  for (let s = 0; s < STEPS; s++) {
    for (const [i, p] of params.entries()) {
      const g = rand(SIZES[i], 3 * scaler.scale);
      if (s === BAD_STEP && i === 1) g[3] = Infinity;
      p.grad = new Tensor(g, 'f32', [g.length]);
      if (onDevice) moveToDevice([p.grad]);
    }
    if (ctx && read0) ctx.read = ((a) => { reads++; return read0(a); }) as typeof ctx.read;
    const u = await guardedUpdate({ opt: o, scaler, named, loss: 1, lr: o.groups[0].lr, maxGradNorm: 4, dp: null, step: s });
    if (ctx && read0) ctx.read = read0;
    settled.push(u.settled);
    o.zeroGrad();
    // on the CPU the scale is known now; on the device it is read with the gate, so the next gradients use the CPU's
    // replay of it: wait for it (a test of the scale's value, not of the timing)
    if (logged) await u.settled;
  }
  const st = await Promise.all(settled);
  const out = await Promise.all(params.map((p) => p.data()));
  return { norms: st.map((x) => x.norm), oks: st.map((x) => x.ok), params: out.map((a) => Float32Array.from(a as Float32Array)), stepCount: o.stepCount,
    scaler: JSON.stringify(scaler.state()), readsInSteps: reads };
}

const VARIANTS = Object.keys(OPTIMIZERS).flatMap((opt) => [{ opt, fp16: false, logged: true }, { opt, fp16: true, logged: true }])
  .concat([{ opt: 'AdamW', fp16: false, logged: false }, { opt: 'SGD (Nesterov momentum)', fp16: false, logged: false }]);

export const deviceCases: Case[] = VARIANTS.map(({ opt, fp16, logged }): Case => ({
  name: `step gate on the device: ${opt}${fp16 ? ', fp16 loss scaler' : ''}${logged ? '' : ', no log lines'} (clipping, a skipped step)`,
  async run(t, P: PortableBackend, G: WebGpuBackend) {
    setBackend(P);
    const cpu = await train(opt, fp16, null);
    useWebGpu(G);
    try {
      const gpu = await train(opt, fp16, { G }, logged);
      t.report(compare('norms', Float32Array.from(gpu.norms.map((v, i) => (cpu.oks[i] ? v : 0))), Float32Array.from(cpu.norms.map((v, i) => (cpu.oks[i] ? v : 0))),
        'f32', 1e-5, 1e-6), `cpu ${cpu.norms.map((v) => v.toPrecision(6)).join(' ')}`);
      const same = (name: string, a: unknown, b: unknown): void => t.report({ name, ok: JSON.stringify(a) === JSON.stringify(b), detail: `webgpu ${JSON.stringify(a)}, cpu ${JSON.stringify(b)}` });
      same('steps applied', gpu.oks, cpu.oks);
      same('optimizer step count', gpu.stepCount, cpu.stepCount);
      same('loss scaler state', gpu.scaler, cpu.scaler);
      // a log line a step reads each gate; without, each update reads the previous step's gate (24 bytes), never its own
      same('reads back inside guardedUpdate', gpu.readsInSteps, logged ? 0 : STEPS - 1);
      if (cpu.oks[BAD_STEP] !== false || cpu.oks.filter((x) => x).length !== STEPS - 1) t.report({ name: 'the bad step is skipped on the CPU', ok: false, detail: String(cpu.oks) });
      cpu.params.forEach((p, i) => t.report(compare(`parameter ${i} after ${STEPS} steps`, gpu.params[i], p, 'f32', 1e-4, 1e-6)));
    } finally {
      setBackend(P);
    }
  },
}));

/** A small text classifier: character ids -> embedding -> Linear 'proj' -> masked sum over positions -> head. */
class Toy extends Module {
  readonly emb: Embedding;
  readonly proj: Linear;
  constructor() {
    super();
    this.emb = this.module('emb', new Embedding(40, 16));
    this.proj = this.module('proj', new Linear(16, 16));
  }
}

function toyClassifier(seed: number): SequenceClassifier {
  manualSeed(seed);
  const toy = new Toy();
  const enc: TextEncoder = {
    module: toy, embedDim: 16, maxLength: 24, padId: 0, name: 'toy',
    encodeText: (t) => [...t].map((ch) => 1 + (ch.charCodeAt(0) % 39)),
    embed: (ids, mask) => toy.proj.forward(toy.emb.forward(ids)).mul(mask.reshape([...mask.shape, 1])).sum(1),
  };
  return new SequenceClassifier(enc, 5, 0);
}

const LABELS = ['a', 'b', 'c', 'd', 'e'];
const examples = Array.from({ length: 37 }, (_, i) => ({ text: 'xyz'.repeat(1 + (i % 5)) + String.fromCharCode(65 + ((i * 7) % 26)) + 'q'.repeat(i % 3),
  label: LABELS[(i * 3) % 5] }));

deviceCases.push({
  name: 'evaluation on the device equals the CPU (evaluateClassifierAsync: loss, predictions, accuracy; weights stay there)',
  async run(t, P: PortableBackend, G: WebGpuBackend) {
    const opts = { batchSize: 8, maxLength: 24, compute: 'f32' as const };
    setBackend(P);
    const mc = toyClassifier(5);
    const cpu = evaluateClassifier(mc, mc.backbone, examples, LABELS, opts);
    const cpuAsync = await evaluateClassifierAsync(mc, mc.backbone, examples, LABELS, opts);
    const b = useWebGpu(G);
    try {
      const m = toyClassifier(5);
      const params = m.parameters();
      moveToDevice(params);
      b.uploads = 0;
      const gpu = await evaluateClassifierAsync(m, m.backbone, examples, LABELS, opts);
      const same = (name: string, a: unknown, c: unknown): void => t.report({ name, ok: JSON.stringify(a) === JSON.stringify(c), detail: `webgpu ${JSON.stringify(a)}, cpu ${JSON.stringify(c)}` });
      t.report(compare('loss', Float32Array.of(gpu.loss), Float32Array.of(cpu.loss), 'f32', 1e-5, 1e-6), `cpu ${cpu.loss}, webgpu ${gpu.loss}`);
      same('predictions', [...gpu.predictions], [...cpu.predictions]);
      same('accuracy and macro F1', [gpu.accuracy, gpu.macro_f1], [cpu.accuracy, cpu.macro_f1]);
      same('the async form on a CPU backend is evaluateClassifier', [cpuAsync.loss, [...cpuAsync.predictions]], [cpu.loss, [...cpu.predictions]]);
      same('weights still on the device', params.every((p) => p.onDevice), true);
      // per batch: ids are gathered from the CPU, the mask and targets uploaded; never a weight (5 batches)
      t.report({ name: 'uploads: inputs only', ok: b.uploads <= 4 * Math.ceil(examples.length / 8), detail: `${b.uploads} uploads` });
      if (!(cpu.accuracy > 0 && cpu.accuracy < 1)) t.report({ name: 'a case with right and wrong predictions', ok: false, detail: String(cpu.accuracy) });
    } finally {
      setBackend(P);
    }
  },
});

deviceCases.push({
  name: 'saving from the device: adapterFilesAsync and readBack give the CPU bytes; the synchronous encoder refuses',
  async run(t, P: PortableBackend, G: WebGpuBackend) {
    const lora = (): LoraModel => new LoraModel(toyClassifier(9), { targetModules: ['proj'], r: 4, modulesToSave: ['classifier'], initLoraWeights: 'gaussian' });
    setBackend(P);
    const cpuLora = lora();
    const want = adapterFiles(cpuLora);
    const bf = new Tensor(Uint16Array.from({ length: 6 }, (_, i) => 0x3f80 + i), 'bf16', [2, 3]);
    const wantBf = encodeSafetensors(new Map([['x', bf]]));
    useWebGpu(G);
    try {
      const m = lora();
      moveToDevice(m.model.parameters());
      const got = await adapterFilesAsync(m);
      const eq = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((v, i) => v === b[i]);
      t.report({ name: 'adapter_model.safetensors bytes', ok: eq(got['adapter_model.safetensors'], want['adapter_model.safetensors']),
        detail: `${got['adapter_model.safetensors'].length} bytes vs ${want['adapter_model.safetensors'].length}` });
      t.report({ name: 'adapter_config.json', ok: got['adapter_config.json'] === want['adapter_config.json'], detail: '' });
      const dbf = new Tensor(bf.storage, 'bf16', [2, 3]);
      moveToDevice([dbf]);
      t.report({ name: 'bf16 tensor read back bit for bit', ok: eq(encodeSafetensors(await readBack(new Map([['x', dbf]]))), wantBf), detail: '' });
      let thrown = 'nothing thrown';
      try {
        adapterFiles(m);
      } catch (e) {
        thrown = `${(e as Error).name}: ${(e as Error).message}`;
      }
      t.report({ name: 'adapterFiles on device tensors: a DeviceError naming the async forms', ok: /^DeviceError: tensor '.*' to save lives on the webgpu device.*adapterFilesAsync/.test(thrown), detail: thrown });
    } finally {
      setBackend(P);
    }
  },
});

deviceCases.push(...(['mean', 'sum'] as const).map((reduction): Case => ({
  name: `fused LM loss on the device: linearCrossEntropy (${reduction}, chunks of 5 rows, ignoreIndex, label smoothing, bias)`,
  async run(t, P: PortableBackend, G: WebGpuBackend) {
    const R = 13, D = 24, V = 70;
    const rng = new Rng(3);
    const rand = (n: number): Float32Array => Float32Array.from({ length: n }, () => rng.uniform() * 2 - 1);
    const hv = rand(R * D), wv = rand(V * D), bv = rand(V);
    const tv = Int32Array.from({ length: R }, (_, i) => (i % 4 === 3 ? -100 : rng.int(V)));
    const run = async (dev: boolean): Promise<Float32Array[]> => {
      const h = new Tensor(hv.slice(), 'f32', [R, D]), W = new Tensor(wv.slice(), 'f32', [V, D]), b = new Tensor(bv.slice(), 'f32', [V]);
      for (const x of [h, W, b]) x.requiresGrad = true;
      if (dev) moveToDevice([h, W, b]);
      const loss = linearCrossEntropy(h, W, b, new Tensor(tv, 'i32', [R]), { reduction, labelSmoothing: 0.1, chunkRows: 5 });
      loss.scale(3).backward();
      return Promise.all([loss, h.grad as Tensor, W.grad as Tensor, b.grad as Tensor].map(async (x) => Float32Array.from(await x.data() as Float32Array)));
    };
    setBackend(P);
    const cpu = await run(false);
    useWebGpu(G);
    try {
      const gpu = await run(true);
      ['loss', 'dh', 'dW', 'db'].forEach((n, i) => t.report(compare(n, gpu[i], cpu[i], 'f32', 2e-5, 1e-6), i === 0 ? `cpu ${cpu[0][0]}, webgpu ${gpu[0][0]}` : ''));
    } finally {
      setBackend(P);
    }
  },
})));
