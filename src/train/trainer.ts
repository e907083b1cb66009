/**
 * `AutoGLMTrainer`: the whole fine-tuning loop behind one call.
 *
 *   const trainer = new AutoGLMTrainer({ model: 'open-autoglm-base', config: { loraRank: 8 } });
 *   const history = await trainer.finetune({ dataset: 'custom_intent_v2' });
 *
 * One optimizer step, as data flows: batch from the sampler -> forward under the precision policy -> loss ->
 * backward (scaled for fp16) -> finite check -> clip (global norm) -> optimizer step at the scheduled lr ->
 * callbacks, metrics, evaluation, checkpoint. Each arrow is one call into one module.
 */
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { Tensor } from '../tensor/tensor.js';
import { crossEntropy } from '../tensor/ops/nn.js';
import { autocast } from '../tensor/precision.js';
import { noGrad } from '../tensor/autograd.js';
import { Rng } from '../backend/rng.js';
import { backend } from '../backend/index.js';
import { Module } from '../nn/module.js';
import { setGradientCheckpointing } from '../nn/checkpoint.js';
import { getRng, manualSeed, setRng } from '../nn/init.js';
import { Optimizer, type ParamsInput } from '../optim/optimizer.js';
import { AdamW, Adam } from '../optim/adam.js';
import { SGD } from '../optim/sgd.js';
import { RMSprop } from '../optim/rmsprop.js';
import { SCHEDULES, ReduceLROnPlateau, EarlyStopping, type Schedule } from '../optim/schedule.js';
import { DynamicLossScaler, resolvePrecision, type PrecisionPolicy } from '../precision/index.js';
import { LoraModel, layerIndex, saveAdapter, quantizeBase } from '../peft/index.js';
import { loadModel } from '../models/registry.js';
import { SequenceClassifier, textEncoderOf, type TextEncoder } from '../models/classifier.js';
import { loadDataset, encodeDataset, collate, BucketSampler, RandomSampler, type DatasetSpec, type DatasetSplits, type EncodedDataset, type Sampler } from '../data/index.js';
import { AutoGLMError, ConfigError } from '../errors.js';
import { DEFAULT_HEAD_LR, DEFAULT_LR, parseTrainerConfig, type TrainerConfig, type TrainerConfigInput } from './config.js';
import { emptyHistory, MetricsLog, type Callback, type EpochLog, type EvalLog, type History, type StepLog } from './history.js';
import { evaluateClassifier, exampleLogits, predictTexts, reportFromLogits, type EvalResult, type Prediction } from './evaluate.js';
import { saveCheckpoint, loadCheckpoint, listCheckpoints } from './checkpoint.js';
import { writeRunInfo, writeCurves, saveTrainable, loadTrainable } from './outputs.js';
import { checkTaskConfig } from '../multitask/tasks.js';
import { DataParallel } from '../distributed/data-parallel.js';
import { createCommunicator, currentRankInfo } from '../distributed/env.js';
import { EpochSampler } from '../data/samplers/sampler.js';
import { buildSampler, checkSamplingConfig, type ForwardOutputs } from '../curriculum/index.js';
import type { MultiTaskState } from './multitask.js';

/** How long a rank waits for the others in one collective (a dead peer is reported at once, not after this). */
const DP_TIMEOUT_MS = 10 * 60 * 1000;

export interface FinetuneArgs extends Partial<Omit<DatasetSpec, 'dataset'>> {
  /** A named dataset, a file, or splits already loaded. */
  dataset: string | DatasetSplits;
  callbacks?: Callback[];
  /** Stop after this many optimizer steps of this call (tests of resume). */
  stopAfterSteps?: number;
}

export interface TrainerOptions {
  /** A registered model name (default 'open-autoglm-base'), a TextEncoder, or a prepared SequenceClassifier. */
  model?: string | TextEncoder;
  config?: TrainerConfigInput;
}

interface Run {
  splits: DatasetSplits;
  train: EncodedDataset;
  sampler: Sampler;
  opt: Optimizer;
  schedule: Schedule;
  plateau: ReduceLROnPlateau | null;
  stopper: EarlyStopping | null;
  scaler: DynamicLossScaler;
  policy: PrecisionPolicy;
  baseLr: number;
  totalSteps: number;
  stepsPerEpoch: number;
  outDir: string;
  log: MetricsLog;
  history: History;
  step: number;
  best: Map<string, Float32Array> | null;
  t0: number;
  elapsedBefore: number;
  /** method 'head': the frozen encoder's embeddings of the training set. */
  features?: Float32Array;
}

export class AutoGLMTrainer extends EventEmitter {
  readonly config: TrainerConfig;
  private readonly modelSpec: string | TextEncoder;
  private encoder: TextEncoder | null = null;
  classifier: SequenceClassifier | null = null;
  /** Data-parallel communication while a launched run trains (world size > 1), else null. */
  dp: DataParallel | null = null;
  lora: LoraModel | null = null;
  labels: string[] = [];
  private splits: DatasetSplits | null = null;
  /** Set by a multi-task run (config `tasks`) or by `load` of one: the heads, tasks and evaluation (train/multitask.ts). */
  multitask: MultiTaskState | null = null;
  private notes = new Set<string>();

  constructor(opts: TrainerOptions = {}) {
    super();
    this.config = parseTrainerConfig(opts.config ?? {});
    this.modelSpec = opts.model ?? 'open-autoglm-base';
    if (this.config.baseQuantization !== 'none' && this.config.method !== 'lora') {
      throw new ConfigError(`config key 'baseQuantization' is '${this.config.baseQuantization}': a quantised base needs method 'lora' (got '${this.config.method}')`);
    }
    checkTaskConfig(this.config);
    checkSamplingConfig(this.config);
  }

  /** Says a thing once per trainer (stderr and the 'note' event). @internal (also used by train/multitask.ts) */
  note(msg: string): void {
    if (this.notes.has(msg)) return;
    this.notes.add(msg);
    this.emit('note', msg);
    if (this.listenerCount('note') === 0) process.stderr.write(`autoglm: ${msg}\n`);
  }

  /** @internal */
  async backbone(): Promise<TextEncoder> {
    if (this.encoder) return this.encoder;
    if (typeof this.modelSpec === 'string') {
      const m = await loadModel(this.modelSpec);
      this.encoder = textEncoderOf(m, this.modelSpec);
    } else {
      this.encoder = this.modelSpec;
    }
    return this.encoder;
  }

  /** False on data-parallel ranks other than 0: they train and evaluate but write no files. */
  get isMain(): boolean {
    return !this.dp || this.dp.rank === 0;
  }

  /** Trainable parameters by name, in model order (the same on every rank). */
  private trainableNamed(): Array<[string, Tensor]> {
    return [...(this.classifier as Module).namedParameters()].filter(([, t]) => t.requiresGrad);
  }

  get learningRate(): number {
    return this.config.learningRate ?? DEFAULT_LR[this.config.method];
  }

  /** Builds the classifier for `labels` and applies the method (LoRA injection, freezing). */
  private async prepareModel(labels: string[]): Promise<SequenceClassifier> {
    const c = this.config;
    manualSeed(c.seed);
    const enc = await this.backbone();
    const model = new SequenceClassifier(enc, labels.length, c.headDropout);
    this.applyMethod(model, ['classifier'], enc.name);
    this.classifier = model;
    this.labels = labels;
    return model;
  }

  /** Applies the method to a model with task heads at module paths `heads`: LoRA (heads as modules to save) or freezing. @internal */
  applyMethod(model: Module, heads: string[], baseName: string): void {
    const c = this.config;
    if (c.method === 'lora') {
      this.lora = new LoraModel(model, {
        r: c.loraRank, alpha: c.loraAlpha ?? 2 * c.loraRank, dropout: c.loraDropout, targetModules: c.loraTargets,
        modulesToSave: heads, useRslora: c.useRslora, useDora: c.useDora, seed: c.seed,
        baseModelNameOrPath: baseName,
      });
      if (c.baseQuantization !== 'none') {
        const q = quantizeBase(model, c.baseQuantization, { skip: heads });
        this.note(`frozen base in ${c.baseQuantization}: ${q.layers} layers, ${(q.bytesBefore / 2 ** 20).toFixed(1)} MB -> ${(q.bytesAfter / 2 ** 20).toFixed(1)} MB`);
      }
    } else {
      for (const [p, t] of model.namedParameters()) t.requiresGrad = (c.method === 'full' && t.dtype === 'f32') || heads.some((h) => p.startsWith(`${h}.`));
    }
    this.applyCheckpointing(model, baseName);
  }

  /** `gradientCheckpointing`: on in every layer stack (or MLP, for 'mlp') of the model, or a ConfigError where it has none. */
  private applyCheckpointing(model: Module, name: string): void {
    const mode = this.config.gradientCheckpointing;
    if (!mode) return;
    const n = setGradientCheckpointing(model, mode);
    const what = mode === 'mlp' ? 'MLP' : 'layer stack';
    if (n === 0) throw new ConfigError(`config key 'gradientCheckpointing' is ${JSON.stringify(mode)}, but model '${name}' has no ${what} that supports it`);
    this.note(`gradient checkpointing: ${mode === 'mlp' ? 'MLP pre-activations recomputed' : 'on'} (${n} ${what}${n > 1 ? 's' : ''})`);
  }

  /** Parameter groups: head lr, LoRA+ ratio, layer-wise decay, no weight decay on biases and norms. */
  /** @internal (also used by train/multitask.ts: `isHead` picks the head parameters) */
  paramGroups(model: Module, isHead = (p: string) => p.startsWith('classifier.')): ParamsInput {
    const c = this.config, lr = this.learningRate;
    const headLr = c.headLearningRate ?? (c.method === 'head' ? lr : DEFAULT_HEAD_LR);
    const layers = Math.max(0, ...[...model.namedParameters()].map(([p]) => (layerIndex(p) ?? -1) + 1));
    return this.groupParams(model.namedParameters(), (p) => {
      if (isHead(p)) return headLr / lr;
      const li = layerIndex(p);
      const scale = c.layerwiseLrDecay === 1 ? 1 : c.layerwiseLrDecay ** (li === null ? layers : layers - 1 - li);
      return /\.lora_B\.|\.lora_embedding_B\./.test(p) ? scale * c.loraPlusRatio : scale;
    });
  }

  /** @internal */
  makeOptimizer(groups: ParamsInput): Optimizer {
    const c = this.config, lr = this.learningRate;
    switch (c.optimizer) {
      case 'adamw': return new AdamW(groups, { lr, betas: c.betas, eps: c.eps, weightDecay: c.weightDecay });
      case 'adam': return new Adam(groups, { lr, betas: c.betas, eps: c.eps });
      case 'sgd': return new SGD(groups, { lr, momentum: c.momentum, nesterov: c.nesterov, weightDecay: c.weightDecay });
      case 'rmsprop': return new RMSprop(groups, { lr, momentum: 0, weightDecay: c.weightDecay });
    }
  }

  /** @internal */
  loadSplits(args: FinetuneArgs): DatasetSplits {
    if (typeof args.dataset !== 'string') return args.dataset;
    const { callbacks: _c, stopAfterSteps: _s, ...spec } = args;
    return loadDataset({ ...spec, dataset: args.dataset, seed: spec.seed ?? this.config.seed });
  }

  /** Fine-tunes on `dataset`; resolves to the History of the run. */
  async finetune(args: FinetuneArgs): Promise<History> {
    if ((this.config.task === 'causal-lm' || this.config.tasks) && currentRankInfo().worldSize > 1) {
      throw new ConfigError(`data-parallel training (autoglm launch) supports single-task classification for now; ${this.config.tasks ? `'tasks'` : `task 'causal-lm'`} runs in one process`);
    }
    if (this.config.task === 'causal-lm') return this.finetuneCausalLM(args);
    if (this.config.tasks) return (await import('./multitask.js')).finetuneMultiTask(this, args);
    const c = this.config;
    const splits = this.loadSplits(args);
    if (splits.train.length === 0) throw new ConfigError(`dataset '${splits.name}' has no training examples`);
    if (splits.skipped.length) this.note(`skipped ${splits.skipped.length} bad line(s) in '${splits.name}' (first: ${splits.skipped[0].file}:${splits.skipped[0].line}: ${splits.skipped[0].reason})`);
    this.splits = splits;
    const rank = currentRankInfo();
    if (rank.worldSize > 1) {
      this.dp = new DataParallel(await createCommunicator(rank, { timeoutMs: DP_TIMEOUT_MS }), { compression: c.gradientCompression, seed: c.seed });
      this.note(`data-parallel: rank ${rank.rank} of ${rank.worldSize} (${rank.backend}), gradients ${this.dp.method === 'dense' ? 'as a dense all-reduce' : `compressed with ${this.dp.method}`}`);
    } else if (c.gradientCompression !== false) {
      this.note('gradientCompression takes effect with data-parallel training (autoglm launch); with one process it changes nothing');
    }
    try {
      return await this.finetuneClassifier(args, splits);
    } finally {
      await this.dp?.comm.close();
      this.dp = null;
    }
  }

  private async finetuneClassifier(args: FinetuneArgs, splits: DatasetSplits): Promise<History> {
    const c = this.config;
    const model = await this.prepareModel(splits.labels);
    const enc = this.encoder as TextEncoder;
    const maxLength = Math.min(c.maxLength, enc.maxLength);
    const train = encodeDataset(splits.train, enc.encodeText, splits.labels, { maxLength });
    const lengths = train.ids.map((s) => s.length);
    const sampler: Sampler = buildSampler(c, { batchSize: c.batchSize, seed: c.seed, gradientAccumulation: c.gradientAccumulation, labels: train.labels, lengths,
      forward: (idx) => this.scoreForward(run, idx), scoreBatchSize: c.evalBatchSize, onRefresh: (info) => this.emit('curriculumRefresh', info) })
      ?? (c.lengthBucketing ? new BucketSampler(lengths, c.batchSize, c.seed) : new RandomSampler(lengths.length, c.batchSize, c.seed));
    const stepsPerEpoch = Math.max(1, Math.ceil(sampler.batchesPerEpoch / c.gradientAccumulation));
    const totalSteps = Math.min(c.maxSteps ?? Infinity, c.epochs * stepsPerEpoch);
    sampler.plan?.(totalSteps * c.gradientAccumulation);
    const warmup = c.warmupSteps ?? Math.round(c.warmupRatio * totalSteps);
    const baseLr = this.learningRate;
    const opt = this.makeOptimizer(this.paramGroups(model));
    const scheduleKind = c.scheduler === 'plateau' ? 'constant' : c.scheduler;
    const schedule = SCHEDULES[scheduleKind]({ lr: baseLr, totalSteps, warmupSteps: Math.min(warmup, totalSteps - 1), minLr: c.minLr, tMax: c.tMax });
    const policy = resolvePrecision(c.mixedPrecision);
    this.note(`precision: ${policy.reason}; backend: ${backend().describe()}`);
    let outDir = c.outputDir ?? path.join('runs', new Date().toISOString().replace(/[:.]/g, '-'));
    if (this.dp) outDir = await this.dp.agree(outDir); // one folder for the run, named by rank 0
    const run: Run = {
      splits, train, sampler, opt, schedule, policy, baseLr, totalSteps, stepsPerEpoch, outDir,
      plateau: c.scheduler === 'plateau' ? new ReduceLROnPlateau({ mode: 'min', factor: c.plateauFactor, patience: c.plateauPatience, minLr: c.minLr }) : null,
      stopper: c.earlyStopping ? new EarlyStopping({ mode: c.earlyStopping.monitor === 'val_loss' ? 'min' : 'max', patience: c.earlyStopping.patience, minDelta: c.earlyStopping.minDelta }) : null,
      scaler: new DynamicLossScaler(policy.lossScaling),
      log: new MetricsLog(outDir, this.isMain), history: emptyHistory(), step: 0, best: null, t0: performance.now(), elapsedBefore: 0,
    };
    const counts = model.parameterCounts();
    run.history.trainableParams = counts.trainable;
    run.history.totalParams = counts.total;
    run.history.precision = policy.compute;
    setRng(new Rng(c.seed + 1));
    if (c.resume) this.resume(run);
    if (this.isMain) writeRunInfo(outDir, { model: enc.name, method: c.method, labels: splits.labels, config: c, dataset: splits.name });
    const callbacks = args.callbacks ?? [];
    for (const cb of callbacks) await cb.onTrainBegin?.({ totalSteps, stepsPerEpoch });
    this.emit('trainBegin', { totalSteps, stepsPerEpoch, trainable: counts.trainable, total: counts.total });
    await this.loop(run, callbacks, args.stopAfterSteps);
    return this.finish(run, callbacks);
  }

  /** Restores the loop state from a checkpoint (exact continuation). */
  private resume(run: Run): void {
    const c = this.config;
    const dir = typeof c.resume === 'string' ? c.resume : listCheckpoints(run.outDir).pop();
    if (!dir) {
      this.note(`resume: no checkpoint in ${run.outDir}; starting fresh`);
      return;
    }
    const ck = loadCheckpoint(dir);
    loadTrainable(this.classifier as Module, ck.weights, dir);
    const st = ck.state as { step: number; sampler: Record<string, unknown>; rng: { seed: number; counter: number }; optimizer: Parameters<Optimizer['loadStateDict']>[0]['meta'];
      scaler: ReturnType<DynamicLossScaler['state']>; plateau?: Record<string, number>; stopper?: Record<string, number>; history: History; elapsed: number };
    run.opt.loadStateDict({ tensors: ck.optimizer, meta: st.optimizer });
    run.sampler.load(st.sampler);
    setRng(new Rng(st.rng.seed, st.rng.counter));
    run.scaler.load(st.scaler);
    if (run.plateau && st.plateau) run.plateau.load(st.plateau);
    if (run.stopper && st.stopper) run.stopper.load(st.stopper);
    run.history = { ...st.history, outputs: {} };
    run.step = st.step;
    run.elapsedBefore = st.elapsed;
    this.note(`resumed from ${dir} at step ${st.step}`);
  }

  private checkpoint(run: Run): string {
    if (!this.isMain) return '';
    const trainable = new Map<string, Tensor>();
    for (const [k, t] of (this.classifier as Module).namedParameters()) if (t.requiresGrad) trainable.set(k, t);
    const opt = run.opt.stateDict();
    const rng = getRng().state();
    return saveCheckpoint(run.outDir, run.step, {
      weights: trainable, optimizer: opt.tensors,
      state: {
        step: run.step, sampler: run.sampler.state(), rng, optimizer: opt.meta, scaler: run.scaler.state(),
        plateau: run.plateau?.state(), stopper: run.stopper?.state(), history: run.history, elapsed: this.elapsed(run),
      },
    }, this.config.keepLast);
  }

  private elapsed(run: Run): number {
    return run.elapsedBefore + (performance.now() - run.t0) / 1e3;
  }

  private async loop(run: Run, callbacks: Callback[], stopAfter?: number): Promise<void> {
    const c = this.config;
    const model = this.classifier as SequenceClassifier;
    const params = model.trainableParameters();
    const enc = this.encoder as TextEncoder;
    let micro = 0, lossSum = 0, lossCount = 0, epochLoss = 0, epochBatches = 0;
    const stopAt = stopAfter ? run.step + stopAfter : Infinity;
    model.train();
    let epoch = run.sampler.epoch;
    for (const cb of callbacks) await cb.onEpochBegin?.(epoch);
    while (run.step < run.totalSteps && run.step < stopAt) {
      const idx = run.sampler.next();
      if (idx === null) {
        await this.endEpoch(run, callbacks, epoch, epochBatches ? epochLoss / epochBatches : NaN);
        if (run.history.stoppedEarly) break;
        epoch = run.sampler.epoch;
        epochLoss = 0;
        epochBatches = 0;
        for (const cb of callbacks) await cb.onEpochBegin?.(epoch);
        continue;
      }
      // Data-parallel: this rank trains on its block of the global batch, and its loss is the block's share of the
      // global mean, so the gradients summed over ranks are the global batch's.
      const rows = this.dp ? this.dp.shard(idx) : idx;
      let lv = 0, sampleLoss: Float32Array = new Float32Array(0);
      if (rows.length) {
        const perSample = autocast(run.policy.compute, () => crossEntropy(this.batchLogits(run, rows), this.batchLabels(run, rows), { reduction: 'none', labelSmoothing: c.labelSmoothing }));
        const wAll = run.sampler.weights?.(idx) ?? null; // importance weights of a loss-weighted sampler
        const w = wAll && this.dp ? Float32Array.from(this.dp.shard(Array.from(wAll))) : wAll;
        const weighted = w ? perSample.mul(new Tensor(w, 'f32', [rows.length]).to(perSample.dtype)) : perSample;
        const loss = this.dp ? weighted.sum().scale(1 / idx.length) : weighted.mean();
        loss.scale(run.scaler.scale / c.gradientAccumulation).backward();
        lv = loss.item();
        sampleLoss = perSample.f32();
      }
      // Shuffled epochs ignore per-sample losses: only samplers that use them cost a collective per micro-batch.
      if (!(run.sampler instanceof EpochSampler)) run.sampler.update(idx, { loss: this.dp ? await this.dp.gatherBlocks(sampleLoss) : sampleLoss });
      lossSum += lv;
      lossCount++;
      epochLoss += lv;
      epochBatches++;
      if (++micro % c.gradientAccumulation !== 0) continue;
      await this.optimizerStep(run, params, lossSum / lossCount, epoch, callbacks);
      lossSum = 0;
      lossCount = 0;
      if (run.history.stoppedEarly) break;
    }
    if (!run.history.stoppedEarly && run.step >= run.totalSteps && epochBatches > 0 && run.history.epochs.every((e) => e.epoch !== epoch)) {
      await this.endEpoch(run, callbacks, epoch, epochLoss / epochBatches);
    }
  }

  /**
   * Logits of a batch. With method 'head' the frozen encoder's embeddings are computed once for the whole
   * training set (a linear probe) and only dropout + the head run per step.
   */
  private batchLogits(run: Run, idx: number[]): Tensor {
    const model = this.classifier as SequenceClassifier;
    const enc = this.encoder as TextEncoder;
    if (this.config.method === 'head') {
      if (!run.features) run.features = this.embedAll(run.train);
      const D = enc.embedDim;
      const f = new Float32Array(idx.length * D);
      idx.forEach((i, r) => f.set((run.features as Float32Array).subarray(i * D, (i + 1) * D), r * D));
      return model.classifier.forward(model.dropout.forward(new Tensor(f, 'f32', [idx.length, D])));
    }
    const batch = collate(run.train, idx, enc.padId);
    const ids = new Tensor(batch.ids, 'i32', [batch.batchSize, batch.seqLen]);
    const mask = new Tensor(batch.mask, 'f32', [batch.batchSize, batch.seqLen]);
    return model.forward(ids, mask);
  }

  private batchLabels(run: Run, idx: number[]): Tensor {
    return new Tensor(Int32Array.from(idx, (i) => run.train.labels[i]), 'i32', [idx.length]);
  }

  /** Encoder embeddings (N, D) of an encoded dataset, without gradients, in eval mode. */
  private embedAll(ds: EncodedDataset): Float32Array {
    const enc = this.encoder as TextEncoder;
    const D = enc.embedDim, n = ds.ids.length;
    const out = new Float32Array(n * D);
    const order = ds.ids.map((_, i) => i).sort((a, b) => ds.ids[a].length - ds.ids[b].length);
    enc.module.eval();
    noGrad(() => {
      for (let s = 0; s < n; s += 128) {
        const idx = order.slice(s, s + 128);
        const b = collate(ds, idx, enc.padId);
        const e = enc.embed(new Tensor(b.ids, 'i32', [b.batchSize, b.seqLen]), new Tensor(b.mask, 'f32', [b.batchSize, b.seqLen])).f32();
        idx.forEach((i, r) => out.set(e.subarray(r * D, (r + 1) * D), i * D));
      }
    });
    return out;
  }

  /** The scoring pass of curriculum samplers: logits and the head's input (B, D) of rows `idx`, eval mode, no gradients. */
  private scoreForward(run: Run, idx: number[]): ForwardOutputs {
    const model = this.classifier as SequenceClassifier;
    const enc = this.encoder as TextEncoder;
    const D = enc.embedDim;
    if (this.config.method === 'head') run.features ??= this.embedAll(run.train);
    model.eval();
    try {
      return noGrad(() => autocast(run.policy.compute, () => {
        let h: Tensor;
        if (run.features) {
          const f = new Float32Array(idx.length * D);
          idx.forEach((i, r) => f.set((run.features as Float32Array).subarray(i * D, (i + 1) * D), r * D));
          h = new Tensor(f, 'f32', [idx.length, D]);
        } else {
          const b = collate(run.train, idx, enc.padId);
          h = enc.embed(new Tensor(b.ids, 'i32', [b.batchSize, b.seqLen]), new Tensor(b.mask, 'f32', [b.batchSize, b.seqLen]));
        }
        return { logits: model.classifier.forward(h).f32(), numClasses: model.numLabels, features: h.f32(), featureDim: D };
      }));
    } finally {
      model.train();
    }
  }

  /**
   * One guarded optimizer update, shared by every loop: gradients and loss must be finite (else the step is
   * skipped, the fp16 loss scale lowered, and after 5 overflows in a row fp16 falls back); the global norm is
   * clipped and the loss scale undone through the step's gradient scale. @internal (the multi-task loop calls it too)
   */
  applyUpdate(opt: Optimizer, scaler: DynamicLossScaler, policy: PrecisionPolicy, params: Tensor[], loss: number, lr: number,
    step: number): { ok: boolean; norm: number; policy: PrecisionPolicy } {
    const c = this.config;
    const scale = scaler.scale;
    let ss = 0;
    for (const p of params) if (p.grad) ss += backend().sumSquares(p.grad.f32());
    const ok = scaler.update(Number.isFinite(ss) && Number.isFinite(loss));
    const norm = Math.sqrt(ss) / scale;
    if (ok) {
      const clip = c.maxGradNorm > 0 ? Math.min(1, c.maxGradNorm / (norm + 1e-6)) : 1;
      opt.setLearningRate(lr);
      opt.step(clip / scale);
    } else {
      this.note(`step ${step}: non-finite loss or gradients; the step was skipped${scaler.enabled ? ` and the loss scale lowered to ${scaler.scale}` : ''}`);
      if (policy.compute === 'f16' && scaler.overflows >= 5) {
        policy = { compute: backend().nativeBf16 ? 'bf16' : 'f32', lossScaling: false, reason: 'fp16 overflowed 5 steps in a row' };
        this.note(`fp16 overflowed 5 steps in a row: falling back to ${policy.compute === 'bf16' ? 'bf16' : 'fp32'}`);
      }
    }
    return { ok, norm, policy };
  }

  /** Optimizer groups by (lr scale, weight decay): no weight decay on biases and norm weights (ndim < 2). */
  /** @internal */
  groupParams(named: Iterable<[string, Tensor]>, scaleOf: (path: string) => number): ParamsInput {
    const lr = this.learningRate;
    const groups = new Map<string, { params: Tensor[]; lrScale: number; weightDecay: number }>();
    for (const [p, t] of named) {
      if (!t.requiresGrad) continue;
      const scale = scaleOf(p);
      const wd = t.ndim < 2 ? 0 : this.config.weightDecay;
      const g = groups.get(`${scale}|${wd}`) ?? { params: [], lrScale: scale, weightDecay: wd };
      g.params.push(t);
      groups.set(`${scale}|${wd}`, g);
    }
    return [...groups.values()].map((g) => ({ ...g, lr: lr * g.lrScale }));
  }

  private async optimizerStep(run: Run, params: Tensor[], loss: number, epoch: number, callbacks: Callback[]): Promise<void> {
    const c = this.config;
    const lr = run.schedule(run.step) * (run.plateau ? run.plateau.scale : 1);
    if (this.dp) {
      await this.dp.syncGradients(this.trainableNamed(), run.step);
      [loss] = await this.dp.sumNumbers([loss]); // the shares of the global-batch loss
    }
    const { ok, norm, policy } = this.applyUpdate(run.opt, run.scaler, run.policy, params, loss, lr, run.step);
    run.policy = policy;
    run.opt.zeroGrad();
    run.step++;
    const log: StepLog = { step: run.step, epoch, loss, lr, grad_norm: norm, time_s: this.elapsed(run), ...(ok ? {} : { skipped: true }) };
    if (run.step % c.logEvery === 0 || run.step === 1) {
      run.history.steps.push(log);
      run.log.write('step', log);
    }
    for (const cb of callbacks) await cb.onBatchEnd?.(run.step, log);
    this.emit('step', log, run.totalSteps);
    if (c.evalEvery > 0 && run.step % c.evalEvery === 0) await this.validate(run, callbacks, epoch);
    if (c.saveEvery > 0 && run.step % c.saveEvery === 0) this.emit('checkpoint', this.checkpoint(run), run.step);
  }

  private async endEpoch(run: Run, callbacks: Callback[], epoch: number, trainLoss: number): Promise<void> {
    const e: EpochLog = { epoch, step: run.step, train_loss: trainLoss, lr: run.schedule(Math.max(0, run.step - 1)), time_s: this.elapsed(run) };
    if (this.config.evalEvery === 0) {
      const v = await this.validate(run, callbacks, epoch);
      if (v) Object.assign(e, { val_loss: v.loss, val_accuracy: v.accuracy, val_macro_f1: v.macro_f1 });
    }
    run.history.epochs.push(e);
    run.log.write('epoch', e);
    for (const cb of callbacks) await cb.onEpochEnd?.(epoch, e);
    this.emit('epoch', e);
  }

  /** Validation pass: logs, plateau scheduler, early stopping (keeps the best weights in memory). */
  private async validate(run: Run, callbacks: Callback[], epoch: number): Promise<EvalLog | null> {
    if (run.splits.validation.length === 0) return null;
    const r = await this.evalExamples(run.splits.validation);
    const log: EvalLog = { step: run.step, epoch, split: 'validation', loss: r.loss, accuracy: r.accuracy, macro_f1: r.macro_f1, time_s: this.elapsed(run) };
    run.history.evals.push(log);
    run.log.write('eval', log);
    for (const cb of callbacks) await cb.onEvaluate?.(log);
    this.emit('evaluate', log);
    if (run.plateau && run.plateau.step(r.loss, run.baseLr)) this.note(`ReduceLROnPlateau: learning rate scale now ${run.plateau.scale}`);
    const es = this.config.earlyStopping;
    if (run.stopper && es) {
      const value = es.monitor === 'val_loss' ? r.loss : es.monitor === 'val_accuracy' ? r.accuracy : r.macro_f1;
      const { improved, stop } = run.stopper.check(value, run.step);
      if (improved) {
        run.history.best = { step: run.step, metric: es.monitor, value };
        if (es.restoreBest) run.best = new Map([...(this.classifier as Module).namedParameters()].filter(([, t]) => t.requiresGrad).map(([k, t]) => [k, t.f32().slice()]));
      }
      if (stop) {
        run.history.stoppedEarly = true;
        this.note(`early stopping at step ${run.step}: ${es.monitor} did not improve for ${es.patience} evaluations (best ${run.stopper.best.toFixed(4)} at step ${run.stopper.bestStep})`);
      }
    }
    (this.classifier as Module).train();
    return log;
  }

  /** Evaluation; data-parallel ranks each compute every W-th example and share the logits. */
  private async evalExamples(examples: DatasetSplits['test']): Promise<EvalResult> {
    const model = this.classifier as SequenceClassifier, enc = this.encoder as TextEncoder;
    const opts = {
      batchSize: this.config.evalBatchSize, maxLength: Math.min(this.config.maxLength, enc.maxLength),
      compute: resolvePrecision(this.config.mixedPrecision).compute,
    };
    if (!this.dp) return evaluateClassifier(model, enc, examples, this.labels, opts);
    const { rank, worldSize } = this.dp;
    const mine = examples.filter((_, i) => i % worldSize === rank);
    const logits = await this.dp.gatherStrided(exampleLogits(model, enc, mine, opts), examples.length, this.labels.length);
    return reportFromLogits(logits, examples, this.labels);
  }

  private async finish(run: Run, callbacks: Callback[]): Promise<History> {
    const h = run.history;
    const model = this.classifier as SequenceClassifier;
    if (run.best) {
      for (const [k, t] of model.namedParameters()) {
        const v = run.best.get(k);
        if (v) (t.storage as Float32Array).set(v);
      }
      this.note(`restored the best weights (step ${h.best?.step})`);
    }
    h.trainTimeS = this.elapsed(run);
    h.stepsDone = run.step;
    if (run.splits.test.length) {
      const r = await this.evalExamples(run.splits.test);
      h.test = r;
      run.log.write('test', { step: run.step, loss: r.loss, accuracy: r.accuracy, macro_f1: r.macro_f1 });
    }
    if (this.config.saveEvery > 0 || this.config.resume) this.checkpoint(run);
    if (this.dp) h.communication = this.dp.summary();
    if (this.isMain) {
      h.outputs = this.saveOutputs(run.outDir);
      h.outputs.metrics = run.log.file;
      const curves = await writeCurves(run.outDir, h);
      if (curves) h.outputs.curves = curves;
    }
    h.peakRssMb = Math.round(process.resourceUsage().maxRSS / 1024);
    for (const cb of callbacks) await cb.onTrainEnd?.(h);
    this.emit('trainEnd', h);
    return h;
  }

  /** Saves the adapter (PEFT layout) or the trained weights, and the label map. */
  private saveOutputs(outDir: string): Record<string, string> {
    const out: Record<string, string> = { dir: outDir };
    if (this.lora) {
      out.adapter = path.dirname(saveAdapter(this.lora, path.join(outDir, 'adapter')).weights);
    } else {
      out.model = saveTrainable(this.classifier as Module, outDir, this.config.method === 'head');
    }
    return out;
  }

  /** Evaluates the fine-tuned model on a split of the last dataset, or on examples. */
  async evaluate(split: 'test' | 'validation' | DatasetSplits['test'] = 'test'): Promise<EvalResult> {
    if (this.multitask) return this.multitask.evaluate(split);
    if (!this.classifier) throw new AutoGLMError(`'evaluate' needs a fine-tuned model: call finetune() first (or AutoGLMTrainer.load)`);
    const ex = typeof split === 'string' ? this.splits?.[split] : split;
    if (!ex || ex.length === 0) throw new ConfigError(`no examples to evaluate in '${typeof split === 'string' ? split : 'examples'}'`);
    return await this.evalExamples(ex);
  }

  /** Predicted labels (with probabilities) for texts. */
  async predict(texts: string[]): Promise<Prediction[]> {
    if (this.multitask) return this.multitask.predict(texts);
    if (!this.classifier) throw new AutoGLMError(`'predict' needs a fine-tuned model: call finetune() first (or AutoGLMTrainer.load)`);
    return predictTexts(this.classifier, this.encoder as TextEncoder, texts, this.labels, Math.min(this.config.maxLength, (this.encoder as TextEncoder).maxLength));
  }

  /** Rebuilds a trainer from a finished run's output folder (for eval/predict). */
  static async load(dir: string): Promise<AutoGLMTrainer> {
    const { readRunInfo } = await import('./outputs.js');
    const info = readRunInfo(dir);
    const t = new AutoGLMTrainer({ model: info.model, config: { ...info.config, resume: false, outputDir: dir } });
    if (t.config.tasks) return (await import('./multitask.js')).loadMultiTask(t, dir);
    await t.prepareModel(info.labels);
    if (t.lora) {
      const { loadAdapter } = await import('../peft/index.js');
      const cfgName = t.lora.activeAdapters[0];
      loadAdapter(t.lora, path.join(dir, 'adapter'), 'trained');
      t.lora.deleteAdapter(cfgName);
      t.lora.setAdapter('trained');
    } else {
      const { loadSafetensors } = await import('../models/safetensors.js');
      loadTrainable(t.classifier as Module, loadSafetensors(path.join(dir, 'model.safetensors')).tensors, dir);
    }
    (t.classifier as Module).eval();
    return t;
  }

  /** task 'causal-lm': a Hugging Face decoder on texts, LoRA or full, evaluated by perplexity (see causal-lm.ts). */
  private async finetuneCausalLM(args: FinetuneArgs): Promise<History> {
    const c = this.config;
    const lm = await import('./causal-lm.js');
    if (typeof this.modelSpec !== 'string') throw new ConfigError(`task 'causal-lm' takes a model folder or Hub id as 'model'`);
    if (typeof args.dataset !== 'string') throw new ConfigError(`task 'causal-lm' takes a text file as 'dataset' (.txt lines, or JSONL/JSON/CSV with textField)`);
    if (c.method === 'head') throw new ConfigError(`config key 'method' is 'head': task 'causal-lm' trains with 'lora' or 'full'`);
    manualSeed(c.seed);
    const { loadHFModel } = await import('../models/hf/loader.js');
    const model = lm.requireCausalLM(await loadHFModel(this.modelSpec), this.modelSpec);
    const tok = model.hf?.tokenizer as NonNullable<NonNullable<typeof model.hf>['tokenizer']>;
    const padId = tok.padTokenId ?? 0;
    const splits = lm.loadTextSplits({ ...args, dataset: args.dataset, seed: c.seed });
    if (splits.skipped.length) this.note(`skipped ${splits.skipped.length} bad line(s) (first: ${splits.skipped[0].file}:${splits.skipped[0].line}: ${splits.skipped[0].reason})`);
    if (c.method === 'lora') {
      this.lora = new LoraModel(model, { r: c.loraRank, alpha: c.loraAlpha ?? 2 * c.loraRank, dropout: c.loraDropout, targetModules: c.loraTargets,
        useRslora: c.useRslora, useDora: c.useDora, seed: c.seed, taskType: 'CAUSAL_LM', baseModelNameOrPath: this.modelSpec });
      if (c.baseQuantization !== 'none') quantizeBase(model, c.baseQuantization, { skip: ['lm_head'] });
    } else {
      for (const p of model.parameters()) p.requiresGrad = p.dtype === 'f32';
    }
    this.applyCheckpointing(model, this.modelSpec);
    model.train();
    const maxLength = Math.min(c.maxLength, model.maxPositions ?? Infinity);
    const train = lm.tokenizeTexts(tok, splits.train, maxLength);
    const val = lm.tokenizeTexts(tok, splits.validation, maxLength);
    const test = lm.tokenizeTexts(tok, splits.test, maxLength);
    if (train.length === 0) throw new ConfigError(`no training text of 2 or more tokens in '${splits.name}'`);
    const sampler = new RandomSampler(train.length, c.batchSize, c.seed);
    const stepsPerEpoch = Math.max(1, Math.ceil(sampler.batchesPerEpoch / c.gradientAccumulation));
    const totalSteps = Math.min(c.maxSteps ?? Infinity, c.epochs * stepsPerEpoch);
    const lr = this.learningRate;
    const opt = this.makeOptimizer(this.groupParams(model.namedParameters(), (p) => (/\.lora_B\.|\.lora_embedding_B\./.test(p) ? c.loraPlusRatio : 1)));
    const warmup = c.warmupSteps ?? Math.round(c.warmupRatio * totalSteps);
    const schedule = SCHEDULES[c.scheduler === 'plateau' ? 'constant' : c.scheduler]({ lr, totalSteps, warmupSteps: Math.min(warmup, totalSteps - 1), minLr: c.minLr, tMax: c.tMax });
    let policy = resolvePrecision(c.mixedPrecision);
    const scaler = new DynamicLossScaler(policy.lossScaling);
    this.note(`precision: ${policy.reason}; backend: ${backend().describe()}`);
    const outDir = c.outputDir ?? path.join('runs', new Date().toISOString().replace(/[:.]/g, '-'));
    const log = new MetricsLog(outDir);
    const h = emptyHistory();
    const counts = model.parameterCounts();
    h.trainableParams = counts.trainable;
    h.totalParams = counts.total;
    h.precision = policy.compute;
    setRng(new Rng(c.seed + 1));
    const params = model.trainableParameters();
    const t0 = performance.now();
    const elapsed = () => (performance.now() - t0) / 1e3;
    const evalVal = (epoch: number, step: number) => {
      if (val.length === 0) return;
      const r = lm.perplexity(model, val, padId, c.evalBatchSize, policy.compute);
      const e: EvalLog = { step, epoch, split: 'validation', loss: r.loss, accuracy: NaN, macro_f1: NaN, perplexity: r.perplexity, time_s: elapsed() };
      h.evals.push(e);
      h.perplexity = { ...h.perplexity, validation: r.perplexity };
      log.write('eval', e);
      this.emit('evaluate', e);
    };
    for (const cb of args.callbacks ?? []) await cb.onTrainBegin?.({ totalSteps, stepsPerEpoch });
    this.emit('trainBegin', { totalSteps, stepsPerEpoch, trainable: counts.trainable, total: counts.total });
    let step = 0, micro = 0, lossSum = 0, lossCount = 0, epochLoss = 0, epochBatches = 0;
    while (step < totalSteps) {
      const idx = sampler.next();
      if (idx === null) {
        evalVal(sampler.epoch - 1, step);
        const e: EpochLog = { epoch: sampler.epoch - 1, step, train_loss: epochLoss / Math.max(epochBatches, 1), lr: schedule(Math.max(0, step - 1)), time_s: elapsed() };
        h.epochs.push(e);
        log.write('epoch', e);
        this.emit('epoch', e);
        epochLoss = 0;
        epochBatches = 0;
        continue;
      }
      const loss = autocast(policy.compute, () => lm.lmBatchLoss(model, idx.map((i) => train[i]), padId));
      loss.scale(scaler.scale / c.gradientAccumulation).backward();
      const lv = loss.item();
      lossSum += lv; lossCount++; epochLoss += lv; epochBatches++;
      if (++micro % c.gradientAccumulation !== 0) continue;
      const stepLr = schedule(step);
      const upd = this.applyUpdate(opt, scaler, policy, params, lossSum / lossCount, stepLr, step);
      const { ok, norm } = upd;
      policy = upd.policy;
      opt.zeroGrad();
      step++;
      const sl: StepLog = { step, epoch: sampler.epoch, loss: lossSum / lossCount, lr: stepLr, grad_norm: norm, time_s: elapsed(), ...(ok ? {} : { skipped: true }) };
      lossSum = 0; lossCount = 0;
      if (step % c.logEvery === 0 || step === 1) { h.steps.push(sl); log.write('step', sl); }
      this.emit('step', sl, totalSteps);
      for (const cb of args.callbacks ?? []) await cb.onBatchEnd?.(step, sl);
      if (c.evalEvery > 0 && step % c.evalEvery === 0) evalVal(sampler.epoch, step);
    }
    if (h.evals.length === 0 || h.evals[h.evals.length - 1].step !== step) evalVal(sampler.epoch, step);
    if (test.length) {
      const r = lm.perplexity(model, test, padId, c.evalBatchSize, policy.compute);
      h.perplexity = { ...h.perplexity, test: r.perplexity };
      log.write('test', { step, loss: r.loss, perplexity: r.perplexity, tokens: r.tokens });
    }
    h.stepsDone = step;
    h.trainTimeS = elapsed();
    h.outputs = { dir: outDir, metrics: log.file };
    if (this.lora) h.outputs.adapter = path.dirname(saveAdapter(this.lora, path.join(outDir, 'adapter')).weights);
    else {
      const { saveHFModel } = await import('../models/hf/save.js');
      saveHFModel(model, path.join(outDir, 'model'));
      h.outputs.model = path.join(outDir, 'model');
    }
    const curves = await writeCurves(outDir, h);
    if (curves) h.outputs.curves = curves;
    h.peakRssMb = Math.round(process.resourceUsage().maxRSS / 1024);
    for (const cb of args.callbacks ?? []) await cb.onTrainEnd?.(h);
    this.emit('trainEnd', h);
    return h;
  }
}
