/**
 * Fine-tuning a classifier in a browser: the same recipe as the Node trainer's classification task (src/train/
 * classification.ts run by src/train/loop.ts), step for step and draw for draw: the seed set before the encoder
 * and head are built, the method applied by setup.ts (LoRA injection, parameter groups, the optimizer), the
 * length-bucketed or shuffled sampler, the loss scaled and back-propagated per micro-batch, the guarded update of
 * update.ts (clipping, finite check) at the schedule's learning rate, validation at each epoch's end, the test
 * split at the end. So a page given the Node run's data and config reaches the Node run's accuracy.
 *
 * What the browser run does not do yet is refused by name (ConfigError), never ignored: checkpoints to disk and
 * resume, early stopping, ReduceLROnPlateau, curriculum and loss-weighted sampling, multi-task, data-parallel
 * training, method 'head', fp16/bf16 compute (the wasm kernels compute in fp32), and a quantised base (QLoRA's
 * NF4, int8, bf16) on the WebGPU backend: on the wasm (or portable) backend it trains as in Node, the products
 * widening the frozen weights inside the wasm kernels.
 *
 * On the WebGPU backend (chosen by initBrowserBackend where navigator.gpu gives an adapter) the model's parameters,
 * activations, gradients and optimizer state stay on the device for the training steps and for evaluation: the loss
 * is read back once a micro-batch, the gradient norm and the step's skip flag (decided on the device by the step gate)
 * once a step for its log line, and evaluation reads back each batch's summed loss and predicted labels only
 * (evaluateClassifierAsync; on a software adapter the CPU kernels evaluate instead, over the weights read back:
 * `evaluateOn`). After the test split the finished model is moved to the CPU backend (wasm, else portable), for
 * predictions and the adapter download.
 */
import { Tensor } from '../tensor/tensor.js';
import { crossEntropy } from '../tensor/ops/nn.js';
import { autocast } from '../tensor/precision.js';
import { Rng } from '../backend/rng.js';
import { manualSeed, setRng } from '../nn/init.js';
import { SCHEDULES } from '../optim/schedule.js';
import { DynamicLossScaler } from '../precision/index.js';
import { SequenceClassifier, textEncoderOf, type TextEncoder } from '../models/classifier.js';
import { buildUSELite } from '../models/use-lite/build.js';
import type { WeightSource } from '../models/use-lite/weights.js';
import type { LoraModel } from '../peft/lora/model.js';
import { encodeDataset, collate, type EncodedDataset } from '../data/encode.js';
import { BucketSampler } from '../data/samplers/bucket.js';
import { RandomSampler } from '../data/samplers/random.js';
import type { Sampler } from '../data/samplers/sampler.js';
import type { DatasetSplits } from '../data/types.js';
import { parseTrainerConfig, isDefaultValue, evalBatchOf, type TrainerConfig, type TrainerConfigInput } from '../train/config.js';
import { applyMethod, learningRate, makeOptimizer, paramGroups, trainableOf } from '../train/setup.js';
import { guardedUpdate } from '../train/update.js';
import { evaluateClassifier, evaluateClassifierAsync, predictTexts, type EvalResult, type Prediction } from '../train/evaluate.js';
import type { EpochLog, EvalLog, StepLog } from '../train/history.js';
import { ConfigError } from '../errors.js';
import { backend, getBackend, setBackend, type Backend } from '../backend/index.js';
import { moveToCPU, moveToDevice } from '../backend/webgpu/tensors.js';
import type { WebGpuTensorBackend } from '../backend/webgpu/tensor-backend.js';

/** The encoder's name in logs and adapter_config.json, as in Node. */
export const BASE_MODEL = 'open-autoglm-base';

/** Keys the browser run cannot honour yet, with why: refused when set to anything but the default. */
const BROWSER_REFUSES: Partial<Record<keyof TrainerConfig, string>> = {
  task: "the browser trains task 'classification'",
  tasks: 'multi-task training runs in Node',
  gradientCheckpointing: 'activation recomputation runs in Node',
  curriculum: 'curriculum sampling runs in Node',
  sampling: 'loss-weighted sampling runs in Node',
  earlyStopping: 'early stopping runs in Node',
  evalEvery: 'the browser validates at the end of each epoch',
  saveEvery: 'checkpoints to a folder are written in Node; the page keeps the finished adapter',
  resume: 'resuming from a checkpoint folder runs in Node',
  outputDir: 'the page offers the adapter as a download',
  gradientCompression: 'data-parallel training runs in Node',
};
const ALLOWED_METHODS = ['lora', 'full'];

/** The config of a browser run: validated as in Node, then the keys the browser cannot honour refused. */
export function browserConfig(input: TrainerConfigInput = {}): TrainerConfig {
  const c = parseTrainerConfig(input);
  for (const [k, why] of Object.entries(BROWSER_REFUSES) as Array<[keyof TrainerConfig, string]>) {
    if (k in c && !isDefaultValue(k, c[k])) throw new ConfigError(`config key '${k}' is set (${JSON.stringify(c[k])}), but the browser run cannot honour it: ${why}`);
  }
  if (!ALLOWED_METHODS.includes(c.method)) throw new ConfigError(`config key 'method' is '${c.method}'; the browser trains ${ALLOWED_METHODS.map((m) => `'${m}'`).join(' or ')}`);
  if (c.scheduler === 'plateau') throw new ConfigError("config key 'scheduler' is 'plateau'; the browser run has 'constant', 'linear' and 'cosine'");
  if (c.mixedPrecision === 'bf16' || c.mixedPrecision === 'fp16') throw new ConfigError(`config key 'mixedPrecision' is '${c.mixedPrecision}'; the browser computes in fp32 ('fp32' or 'auto')`);
  return c;
}

export interface BrowserFinetuneOptions {
  /** The base model's files (model.json, shards, vocab.json). */
  weights: WeightSource;
  splits: DatasetSplits;
  config?: TrainerConfigInput;
  onStep?(log: StepLog, totalSteps: number): void | Promise<void>;
  onEvaluate?(log: EvalLog): void | Promise<void>;
  onEpoch?(log: EpochLog): void | Promise<void>;
  /** Asked after each step: true stops the run (it still evaluates the test split). */
  shouldStop?(): boolean;
  /**
   * On a device backend (WebGPU), where validation and the test split are evaluated: 'device' (forward, loss and
   * argmax there; only the batch losses and predictions read back) or 'cpu' (the wasm kernels, else portable, over
   * the weights read back). Default: 'device', except on a software adapter (SwiftShader, lavapipe: the GPU emulated
   * on the CPU), where the CPU kernels are much faster (measured in the page: ~100 s on SwiftShader against about a
   * second on wasm for 50 examples).
   */
  evaluateOn?: 'device' | 'cpu';
}

export interface BrowserFinetuneResult {
  config: TrainerConfig;
  labels: string[];
  steps: number;
  trainTimeS: number;
  trainableParams: number;
  totalParams: number;
  /** The test split's report (accuracy, macro-F1, per-class, confusion matrix, predictions), or null without one. */
  test: EvalResult | null;
  model: SequenceClassifier;
  encoder: TextEncoder;
  lora: LoraModel | null;
}

/** The device backend of the last run (a run leaves the model on the CPU backend; the next one trains on the device again). */
let lastDevice: Backend | null = null;

/** The CPU backend for evaluation next to a device one: wasm where it loaded, else portable. */
function cpuBackend(): Backend {
  try {
    return getBackend('wasm');
  } catch {
    return getBackend('portable');
  }
}

/** True for a WebGPU backend on a software adapter (SwiftShader, lavapipe, a fallback adapter). */
function softwareAdapter(b: Backend): boolean {
  return b.name === 'webgpu' && (b as WebGpuTensorBackend).gpu.ctx.software;
}

/** Trains (see the module comment) and evaluates the test split. */
export async function finetuneInBrowser(o: BrowserFinetuneOptions): Promise<BrowserFinetuneResult> {
  const c = browserConfig(o.config);
  if (o.evaluateOn !== undefined && o.evaluateOn !== 'device' && o.evaluateOn !== 'cpu') {
    throw new ConfigError(`option 'evaluateOn' is '${String(o.evaluateOn)}'; expected 'device' or 'cpu'`);
  }
  if (!backend().device && lastDevice) setBackend(lastDevice);
  const device = backend().device ? backend() : null;
  if (device && c.optimizer === 'adamw8bit') {
    throw new ConfigError("config key 'optimizer' is 'adamw8bit', but the page's backend is WebGPU; the 8-bit states are updated on the CPU kernels (initBrowserBackend({ prefer: 'wasm' }), or the page's ?backend=wasm)");
  }
  if (device && c.baseQuantization !== 'none') {
    throw new ConfigError(`config key 'baseQuantization' is '${c.baseQuantization}', but the page's backend is WebGPU, whose kernels have no quantised weights; a quantised base trains on the wasm kernels (initBrowserBackend({ prefer: 'wasm' }), or the page's ?backend=wasm)`);
  }
  lastDevice = device;
  const { splits } = o;
  if (splits.train.length === 0) throw new ConfigError(`dataset '${splits.name}' has no training examples`);
  const labels = splits.labels;
  // as ClassificationTask.build: the seed, then the encoder and the head (both draw initial values)
  manualSeed(c.seed);
  const encoder = textEncoderOf(buildUSELite(o.weights), BASE_MODEL);
  const model = new SequenceClassifier(encoder, labels.length, c.headDropout);
  const lora = applyMethod(model, c, { heads: ['classifier'], baseName: encoder.name, note: (m) => console.info(`autoglm: ${m}`) });
  const maxLength = Math.min(c.maxLength, encoder.maxLength);
  const train: EncodedDataset = encodeDataset(splits.train, encoder.encodeText, labels, { maxLength });
  const lengths = train.ids.map((s) => s.length);
  const sampler: Sampler = c.lengthBucketing ? new BucketSampler(lengths, c.batchSize, c.seed) : new RandomSampler(lengths.length, c.batchSize, c.seed);

  // as TrainingLoop's constructor
  const named = trainableOf(model);
  const stepsPerEpoch = Math.max(1, Math.ceil(sampler.batchesPerEpoch / c.gradientAccumulation));
  const totalSteps = Math.min(c.maxSteps ?? Infinity, c.epochs * stepsPerEpoch);
  sampler.plan?.(totalSteps * c.gradientAccumulation);
  const opt = makeOptimizer(paramGroups(named, c, { isHead: (p) => p.startsWith('classifier.') }), c);
  const warmup = c.warmupSteps ?? Math.round(c.warmupRatio * totalSteps);
  const schedule = SCHEDULES[c.scheduler]!({ lr: learningRate(c), totalSteps, warmupSteps: Math.min(warmup, totalSteps - 1), minLr: c.minLr, tMax: c.tMax });
  const scaler = new DynamicLossScaler(false);
  const evalOpts = { batchSize: evalBatchOf(c), maxLength, compute: 'f32' as const };
  const evalOnDevice = !!device && (o.evaluateOn ?? (softwareAdapter(device) ? 'cpu' : 'device')) === 'device';
  const counts = model.parameterCounts();
  const params = model.parameters();
  if (device) moveToDevice(params);
  /** Evaluates `examples` where `evaluateOn` says; `stay`: on the CPU path, leave the model on the CPU backend. */
  const evaluate = async (examples: DatasetSplits['test'], stay = false): Promise<EvalResult> => {
    if (!device || evalOnDevice) return evaluateClassifierAsync(model, encoder, examples, labels, evalOpts);
    await moveToCPU(params);
    setBackend(cpuBackend());
    try {
      return evaluateClassifier(model, encoder, examples, labels, evalOpts);
    } finally {
      if (!stay) {
        setBackend(device);
        moveToDevice(params);
      }
    }
  };

  setRng(new Rng(c.seed + 1));
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1e3;
  let step = 0, epoch = 0, epochLoss = 0, epochBatches = 0, micro = 0, lossSum = 0, lossCount = 0;
  const endEpoch = async () => {
    const e: EpochLog = { epoch, step, train_loss: epochBatches ? epochLoss / epochBatches : NaN, lr: schedule(Math.max(0, step - 1)), time_s: elapsed() };
    if (splits.validation.length) {
      const v = await evaluate(splits.validation);
      const log: EvalLog = { step, epoch, split: 'validation', loss: v.loss, accuracy: v.accuracy, macro_f1: v.macro_f1, time_s: elapsed() };
      await o.onEvaluate?.(log);
      Object.assign(e, { val_loss: v.loss, val_accuracy: v.accuracy, val_macro_f1: v.macro_f1 });
    }
    model.train();
    await o.onEpoch?.(e);
  };
  let stopped = false;
  model.train();
  while (step < totalSteps && !stopped) {
    const idx = sampler.next();
    if (idx === null) {
      await endEpoch();
      epoch++;
      epochLoss = 0;
      epochBatches = 0;
      continue;
    }
    // as ClassificationTask.loss, then the loop's backward of loss x scale / accumulation
    const batch = collate(train, idx, encoder.padId);
    const y = new Tensor(Int32Array.from(idx, (i) => train.labels[i]!), 'i32', [idx.length]);
    const loss = autocast('f32', () => crossEntropy(
      model.forward(new Tensor(batch.ids, 'i32', [batch.batchSize, batch.seqLen]), new Tensor(batch.mask, 'f32', [batch.batchSize, batch.seqLen])),
      y, { reduction: 'none', labelSmoothing: c.labelSmoothing })).mean();
    scaler.scaleLoss(loss, c.gradientAccumulation).backward();
    const lv = device ? await loss.value() : loss.item();
    lossSum += lv;
    lossCount++;
    epochLoss += lv;
    epochBatches++;
    if (++micro % c.gradientAccumulation !== 0) continue;
    const lr = schedule(step);
    const u = await guardedUpdate({ opt, scaler, named, loss: lossSum / lossCount, lr, maxGradNorm: c.maxGradNorm, dp: null, step });
    opt.zeroGrad();
    step++;
    lossSum = 0;
    lossCount = 0;
    // on the device the norm and the skip were decided there: read back here, for the log line
    const s = await u.settled;
    await o.onStep?.({ step, epoch, loss: u.loss, lr, grad_norm: s.norm, time_s: elapsed(), ...(s.ok ? {} : { skipped: true }) }, totalSteps);
    stopped = o.shouldStop?.() ?? false;
  }
  if (!stopped && epochBatches > 0) await endEpoch();
  const trainTimeS = elapsed();
  const test = splits.test.length ? await evaluate(splits.test, true) : null;
  if (device && backend() === device) {
    // the model stays on the CPU backend from here (predictions read values in JavaScript; the adapter download)
    await moveToCPU(params);
    setBackend(cpuBackend());
  }
  return { config: c, labels, steps: step, trainTimeS, trainableParams: counts.trainable, totalParams: counts.total, test, model, encoder, lora };
}

/** Predictions of a trained classifier for typed sentences. */
export function predictInBrowser(r: Pick<BrowserFinetuneResult, 'model' | 'encoder' | 'labels' | 'config'>, texts: string[]): Prediction[] {
  return predictTexts(r.model, r.encoder, texts, r.labels, Math.min(r.config.maxLength, r.encoder.maxLength));
}
