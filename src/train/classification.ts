/**
 * Task 'classification': a classifier head on a sentence encoder (open-autoglm-base or any TextEncoder), trained
 * with cross-entropy (label smoothing, importance weights of a loss-weighted sampler), batches from a shuffled,
 * length-bucketed, curriculum or loss-weighted sampler, evaluated by loss, accuracy and macro-F1. With method
 * 'head' the frozen encoder's embeddings are computed once (a linear probe). Runs data-parallel: each rank trains
 * on its block of every global batch and evaluates every W-th example.
 */
import path from 'node:path';
import { Tensor } from '../tensor/tensor.js';
import { crossEntropy } from '../tensor/ops/nn.js';
import { autocast } from '../tensor/precision.js';
import { noGrad } from '../tensor/autograd.js';
import { manualSeed } from '../nn/init.js';
import { saveAdapter, type LoraModel } from '../peft/index.js';
import { loadModel } from '../models/registry.js';
import { SequenceClassifier, textEncoderOf, type TextEncoder } from '../models/classifier.js';
import { loadDataset, encodeDataset, collate, BucketSampler, RandomSampler, type DatasetSplits, type EncodedDataset, type Sampler } from '../data/index.js';
import { EpochSampler } from '../data/samplers/sampler.js';
import { getNamedDataset } from '../data/registry.js';
import type { DatasetSpec } from '../data/types.js';
import { buildSampler, type ForwardOutputs } from '../curriculum/index.js';
import { CheckpointError, ConfigError } from '../errors.js';
import { evaluateClassifierAsync, exampleLogitsAsync, predictTexts, reportFromLogits, type EvalResult, type Prediction } from './evaluate.js';
import type { EvalPace } from './pace.js';
import { saveTrainable, loadRunWeights, type RunInfo } from './outputs.js';
import { applyMethod, paramGroups, trainableOf } from './setup.js';
import { DECODER_ONLY, DPO_ONLY, SFT_ONLY, evalBatchOf, type TrainerConfig } from './config.js';
import { datasetArgs, noteSkipped, type EvalSplit, type FinetuneArgs, type MicroBatchLoss, type TaskContext, type TaskDefinition, type TaskEval, type TrainingTask } from './task.js';

/** The trainer's encoder: a registered model by name, or the TextEncoder given. */
export async function textEncoder(spec: string | TextEncoder): Promise<TextEncoder> {
  return typeof spec === 'string' ? textEncoderOf(await loadModel(spec), spec) : spec;
}

/** Dataset splits of a fine-tune (a named dataset, a file, or splits given), with its bad lines said once. */
export function loadSplits(ctx: TaskContext, args: FinetuneArgs): DatasetSplits {
  let splits: DatasetSplits;
  if (typeof args.dataset !== 'string') splits = args.dataset;
  else {
    splits = loadDataset({ ...datasetArgs(args), dataset: args.dataset, seed: args.seed ?? ctx.config.seed });
  }
  if (splits.train.length === 0) throw new ConfigError(`dataset '${splits.name}' has no training examples`);
  noteSkipped(ctx, splits.skipped, 'line', ` in '${splits.name}'`);
  return splits;
}

/**
 * The dataset of a run as `loadDataset` takes it, for the run's autoglm.json (RunInfo.data): files by absolute path,
 * no caps (maxTrain, maxEval), so that `autoglm eval` loads the same splits from anywhere; undefined for splits given
 * in memory.
 */
export function runDataSpec(args: FinetuneArgs, extra: Partial<DatasetSpec> = {}): Partial<DatasetSpec> | undefined {
  if (typeof args.dataset !== 'string') return undefined;
  const { maxTrain: _t, maxEval: _e, dataset, ...spec } = { ...datasetArgs(args), ...extra };
  const abs = (f: string | undefined) => (f === undefined || getNamedDataset(f) ? f : path.resolve(f));
  return JSON.parse(JSON.stringify({ ...spec, dataset: abs(dataset as string), evalDataset: abs(spec.evalDataset), testDataset: abs(spec.testDataset),
    dataDir: spec.dataDir === undefined ? undefined : path.resolve(spec.dataDir) })) as Partial<DatasetSpec>;
}

export class ClassificationTask implements TrainingTask<number[]> {
  readonly name = 'classification';
  readonly lora: LoraModel | null;
  private train: EncodedDataset | null = null;
  private sampler: Sampler | null = null;
  /** method 'head': the frozen encoder's embeddings of the training set. */
  private features: Float32Array | null = null;
  /** The dataset for the run's autoglm.json (runDataSpec). */
  private dataSpec: Partial<DatasetSpec> | undefined;
  /** Per-sample losses of the last micro-batch (sampler feedback). */
  private sampleLoss: Float32Array = new Float32Array(0);

  private constructor(private readonly ctx: TaskContext, readonly model: SequenceClassifier, readonly encoder: TextEncoder, readonly labels: string[],
    private readonly splits: DatasetSplits | null) {
    this.lora = applyMethod(model, ctx.config, { heads: ['classifier'], baseName: encoder.name, note: (m) => ctx.note(m) });
  }

  /** The classifier for `labels` with the method applied (LoRA injection or freezing). */
  static async build(ctx: TaskContext, labels: string[], splits: DatasetSplits | null): Promise<ClassificationTask> {
    manualSeed(ctx.config.seed);
    const enc = await textEncoder(ctx.modelSpec);
    return new ClassificationTask(ctx, new SequenceClassifier(enc, labels.length, ctx.config.headDropout), enc, labels, splits);
  }

  get baseName(): string {
    return this.encoder.name;
  }

  private get c(): TrainerConfig {
    return this.ctx.config;
  }

  private get maxLength(): number {
    return Math.min(this.c.maxLength, this.encoder.maxLength);
  }

  /** Encodes the training split and builds the sampler (called once by `create`). */
  private prepareData(splits: DatasetSplits): void {
    const c = this.c;
    const train = (this.train = encodeDataset(splits.train, this.encoder.encodeText, splits.labels, { maxLength: this.maxLength }));
    const lengths = train.ids.map((s) => s.length);
    this.sampler = buildSampler(c, { batchSize: c.batchSize, seed: c.seed, gradientAccumulation: c.gradientAccumulation, labels: train.labels, lengths,
      forward: (idx) => this.scoreForward(idx), scoreBatchSize: evalBatchOf(c), onRefresh: (info) => this.ctx.emit('curriculumRefresh', info) })
      ?? (c.lengthBucketing ? new BucketSampler(lengths, c.batchSize, c.seed) : new RandomSampler(lengths.length, c.batchSize, c.seed));
  }

  trainable() {
    return trainableOf(this.model);
  }

  paramGroups() {
    return paramGroups(this.trainable(), this.c, { isHead: (p) => p.startsWith('classifier.') });
  }

  get batchesPerEpoch(): number {
    return (this.sampler as Sampler).batchesPerEpoch;
  }

  plan(totalMicroBatches: number): void {
    this.sampler?.plan?.(totalMicroBatches);
  }

  nextBatch(): number[] | null {
    return (this.sampler as Sampler).next();
  }

  loss(idx: number[]): MicroBatchLoss {
    const dp = this.ctx.dp, sampler = this.sampler as Sampler;
    // Data-parallel: this rank trains on its block of the global batch, and its loss is the block's share of the
    // global mean, so the gradients summed over ranks are the global batch's.
    const rows = dp ? dp.shard(idx) : idx;
    this.sampleLoss = new Float32Array(0);
    if (!rows.length) return { loss: null };
    const perSample = autocast(this.ctx.compute, () => crossEntropy(this.batchLogits(rows), this.batchLabels(rows), { reduction: 'none', labelSmoothing: this.c.labelSmoothing }));
    const wAll = sampler.weights?.(idx) ?? null; // importance weights of a loss-weighted sampler
    const w = wAll && dp ? Float32Array.from(dp.shard(Array.from(wAll))) : wAll;
    const weighted = w ? perSample.mul(new Tensor(w, 'f32', [rows.length]).to(perSample.dtype)) : perSample;
    this.sampleLoss = perSample.f32();
    return { loss: dp ? weighted.sum().scale(1 / idx.length) : weighted.mean() };
  }

  async afterBackward(idx: number[]): Promise<void> {
    const sampler = this.sampler as Sampler, dp = this.ctx.dp;
    // Shuffled epochs ignore per-sample losses: only samplers that use them cost a collective per micro-batch.
    if (!(sampler instanceof EpochSampler)) sampler.update(idx, { loss: dp ? await dp.gatherBlocks(this.sampleLoss) : this.sampleLoss });
  }

  /** Logits of rows: the encoder and head, or with method 'head' the cached embeddings through dropout + head. */
  private batchLogits(idx: number[]): Tensor {
    const model = this.model, enc = this.encoder, train = this.train as EncodedDataset;
    if (this.c.method === 'head') {
      const f = this.featureRows(idx);
      return model.classifier.forward(model.dropout.forward(f));
    }
    const batch = collate(train, idx, enc.padId);
    return model.forward(new Tensor(batch.ids, 'i32', [batch.batchSize, batch.seqLen]), new Tensor(batch.mask, 'f32', [batch.batchSize, batch.seqLen]));
  }

  private batchLabels(idx: number[]): Tensor {
    const train = this.train as EncodedDataset;
    return new Tensor(Int32Array.from(idx, (i) => train.labels[i]!), 'i32', [idx.length]);
  }

  /** Cached encoder embeddings (B, D) of training rows (method 'head'). */
  private featureRows(idx: number[]): Tensor {
    this.features ??= this.embedAll(this.train as EncodedDataset);
    const D = this.encoder.embedDim, all = this.features;
    const f = new Float32Array(idx.length * D);
    idx.forEach((i, r) => f.set(all.subarray(i * D, (i + 1) * D), r * D));
    return new Tensor(f, 'f32', [idx.length, D]);
  }

  /** Encoder embeddings (N, D) of an encoded dataset, without gradients, in eval mode. */
  private embedAll(ds: EncodedDataset): Float32Array {
    const enc = this.encoder;
    const D = enc.embedDim, n = ds.ids.length;
    const out = new Float32Array(n * D);
    const order = ds.ids.map((_, i) => i).sort((a, b) => ds.ids[a]!.length - ds.ids[b]!.length);
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
  private scoreForward(idx: number[]): ForwardOutputs {
    const model = this.model, enc = this.encoder, D = enc.embedDim;
    if (this.c.method === 'head') this.features ??= this.embedAll(this.train as EncodedDataset);
    model.eval();
    try {
      return noGrad(() => autocast(this.ctx.compute, () => {
        let h: Tensor;
        if (this.c.method === 'head') h = this.featureRows(idx);
        else {
          const b = collate(this.train as EncodedDataset, idx, enc.padId);
          h = enc.embed(new Tensor(b.ids, 'i32', [b.batchSize, b.seqLen]), new Tensor(b.mask, 'f32', [b.batchSize, b.seqLen]));
        }
        return { logits: model.classifier.forward(h).f32(), numClasses: model.numLabels, features: h.f32(), featureDim: D };
      }));
    } finally {
      model.train();
    }
  }

  async evaluate(split: EvalSplit, pace?: EvalPace): Promise<TaskEval | null> {
    const ex = this.splits?.[split] ?? [];
    if (ex.length === 0) return null;
    const r = await this.evalExamples(ex, pace);
    return { loss: r.loss, accuracy: r.accuracy, macro_f1: r.macro_f1, report: r };
  }

  /** Evaluation; data-parallel ranks each compute every W-th example and share the logits. */
  private async evalExamples(examples: DatasetSplits['test'], pace?: EvalPace): Promise<EvalResult> {
    const opts = { batchSize: evalBatchOf(this.c), maxLength: this.maxLength, compute: this.ctx.compute, pace };
    const dp = this.ctx.dp;
    if (!dp) return evaluateClassifierAsync(this.model, this.encoder, examples, this.labels, opts); // the CPU's evaluateClassifier on a CPU backend
    const mine = examples.filter((_, i) => i % dp.worldSize === dp.rank);
    const logits = await dp.gatherStrided(await exampleLogitsAsync(this.model, this.encoder, mine, opts), examples.length, this.labels.length);
    return reportFromLogits(logits, examples, this.labels);
  }

  async evaluateOn(split: EvalSplit | DatasetSplits['test']): Promise<EvalResult> {
    const ex = typeof split === 'string' ? this.splits?.[split] : split;
    if (!ex || ex.length === 0) throw new ConfigError(`no examples to evaluate in '${typeof split === 'string' ? split : 'examples'}'`);
    return this.evalExamples(ex);
  }

  async predict(texts: string[]): Promise<Prediction[]> {
    return predictTexts(this.model, this.encoder, texts, this.labels, this.maxLength);
  }

  state(): Record<string, unknown> {
    return { sampler: this.sampler?.state() };
  }

  load(state: Record<string, unknown>, where: string): void {
    if (!state || typeof state['sampler'] !== 'object') throw new CheckpointError(`checkpoint '${where}' has no sampler state for task 'classification'`);
    (this.sampler as Sampler).load(state['sampler'] as Record<string, unknown>);
  }

  runInfo(): RunInfo | null {
    const s = this.splits as DatasetSplits;
    return { model: this.encoder.name, method: this.c.method, labels: s.labels, config: this.c, dataset: s.name, ...(this.dataSpec ? { data: this.dataSpec } : {}) };
  }

  /** The adapter (PEFT layout) or the trained weights. */
  async saveOutputs(dir: string): Promise<Record<string, string>> {
    if (this.lora) return { adapter: path.dirname(saveAdapter(this.lora, path.join(dir, 'adapter')).weights) };
    return { model: saveTrainable(this.model, dir, this.c.method === 'head') };
  }

  static async create(ctx: TaskContext, args: FinetuneArgs): Promise<ClassificationTask> {
    const splits = loadSplits(ctx, args);
    const task = await ClassificationTask.build(ctx, splits.labels, splits);
    task.dataSpec = runDataSpec(args);
    task.prepareData(splits);
    return task;
  }

  /** A finished run's classifier from its output folder (adapter or weights), in eval mode. */
  static async fromRun(ctx: TaskContext, dir: string, info: RunInfo): Promise<ClassificationTask> {
    const task = await ClassificationTask.build(ctx, info.labels, null);
    loadRunWeights(task.model, task.lora, dir);
    return task;
  }
}

export const classificationTask: TaskDefinition = {
  name: 'classification',
  description: 'a classifier head on a sentence encoder; loss, accuracy and macro-F1',
  refuses: {
    ...SFT_ONLY,
    ...DECODER_ONLY,
    ...DPO_ONLY,
    taskWeighting: "it weighs the losses of several tasks; set 'tasks' (label sets) to train several heads",
    taskWeights: "it weighs the losses of several tasks; set 'tasks' (label sets) to train several heads",
    dwaTemperature: "it belongs to taskWeighting 'dwa' of a multi-task run ('tasks')",
    dwaWindow: "it belongs to taskWeighting 'dwa' of a multi-task run ('tasks')",
    taskSampling: "it draws one task per batch in a multi-task run ('tasks')",
    taskSamplingTemperature: "it belongs to taskSampling 'temperature' of a multi-task run ('tasks')",
  },
  monitors: ['val_loss', 'val_accuracy', 'val_macro_f1'],
  dataParallel: true,
  create: (ctx, args) => ClassificationTask.create(ctx, args),
  load: (ctx, dir, info) => ClassificationTask.fromRun(ctx, dir, info),
};
