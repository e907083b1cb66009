/**
 * Task 'causal-lm': a Hugging Face decoder (gpt2, llama, qwen2, mistral, glm) trained with the shifted
 * next-token loss (padding ignored, optional label smoothing), with LoRA or full fine-tuning, and evaluated by
 * perplexity = exp(mean next-token NLL over every predicted token). Batches from a shuffled or length-bucketed
 * sampler; the loop gives it checkpoints, resume, plateau and early stopping on the validation loss.
 *
 * Texts come from a .txt file (one text per line), or a JSONL/JSON/CSV file's `textField`; missing splits are
 * carved from the training texts with a seeded shuffle. Other data (e.g. supervised fine-tuning: prompts masked
 * out of the loss) plugs in as a `LMDataLoader` given to `CausalLMTask.create`, which yields `LMExample`s with
 * per-token labels.
 *
 * Data-parallel (`autoglm launch`): every rank draws the same global batch and trains on its block of rows, its loss
 * scaled to its tokens' share of the global mean; evaluation is split over the ranks (shardedPerplexity).
 */
import path from 'node:path';
import { Tensor } from '../tensor/tensor.js';
import { autocast, type ComputeDType } from '../tensor/precision.js';
import { Rng } from '../backend/rng.js';
import { backend } from '../backend/index.js';
import { readFileSync, existsSync } from 'node:fs';
import { AutoGLMError, DatasetError, ConfigError, CheckpointError } from '../errors.js';
import { manualSeed } from '../nn/init.js';
import { saveAdapter, type LoraModel } from '../peft/index.js';
import { BucketSampler, RandomSampler, type Sampler } from '../data/index.js';
import { readRecords } from '../data/readers.js';
import { BadLineSink } from '../data/bad-lines.js';
import { shuffleInPlace } from '../data/split.js';
import { padIds } from '../data/encode.js';
import type { BadLine } from '../data/types.js';
import { causalLMLoss, causalLMLossFromHidden, IGNORE_INDEX } from '../models/hf/heads.js';
import type { CausalLM } from '../models/hf/family.js';
import type { DataParallel } from '../distributed/data-parallel.js';
import type { HFTokenizer } from '../models/hf/tokenizer.js';
import type { RunInfo } from './outputs.js';
import { applyMethod, paramGroups, trainableOf } from './setup.js';
import { DPO_ONLY, SFT_ONLY, evalBatchOf, type TrainerConfig } from './config.js';
import { datasetArgs, noteSkipped, type EvalSplit, type FinetuneArgs, type MicroBatchLoss, type TaskContext, type TaskDefinition, type TaskEval, type TrainingTask } from './task.js';
import { evalBatches, type EvalPace } from './pace.js';

export interface TextSplits {
  name: string;
  train: string[];
  validation: string[];
  test: string[];
  skipped: BadLine[];
}

/** Texts of one file: a .txt file's non-empty lines, or the `field` of each record of a JSONL/JSON/CSV file. */
export function readTexts(file: string, field: string, sink: BadLineSink): string[] {
  if (!existsSync(file)) throw new DatasetError(`dataset file '${file}' does not exist`);
  if (file.endsWith('.txt')) return readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  const out: string[] = [];
  for (const r of readRecords(file, sink)) {
    const v = (r.value as Record<string, unknown> | null)?.[field];
    if (typeof v !== 'string') sink.report(r.file, r.line, `field '${field}' is ${v === undefined ? 'missing' : `not a string (${typeof v})`}`);
    else if (v.length > 0) out.push(v);
  }
  return out;
}

export function loadTextSplits(spec: { dataset: string; evalDataset?: string; testDataset?: string; textField?: string; onBadLine?: 'skip' | 'error'; seed: number;
  validationFraction?: number; maxTrain?: number; maxEval?: number }): TextSplits {
  const sink = new BadLineSink(spec.onBadLine ?? 'error');
  const field = spec.textField ?? 'text';
  let train = readTexts(spec.dataset, field, sink);
  let validation = spec.evalDataset ? readTexts(spec.evalDataset, field, sink) : [];
  const test = spec.testDataset ? readTexts(spec.testDataset, field, sink) : [];
  if (!spec.evalDataset) {
    const shuffled = shuffleInPlace([...train], new Rng(spec.seed));
    const nVal = Math.max(1, Math.round(shuffled.length * (spec.validationFraction ?? 0.1)));
    validation = shuffled.slice(0, nVal);
    train = shuffled.slice(nVal);
  }
  const cap = (a: string[], n?: number) => (n !== undefined ? a.slice(0, n) : a);
  if (train.length === 0) throw new DatasetError(`dataset '${spec.dataset}' has no training texts (field '${field}')`);
  return { name: spec.dataset, train: cap(train, spec.maxTrain), validation: cap(validation, spec.maxEval), test: cap(test, spec.maxEval), skipped: sink.skipped };
}

/** Token ids of texts (with the tokenizer's special tokens), cut to maxLength; texts shorter than 2 tokens are dropped. */
export function tokenizeTexts(tok: HFTokenizer, texts: string[], maxLength: number): number[][] {
  return texts.map((t) => tok.encode(t).slice(0, maxLength)).filter((s) => s.length >= 2);
}

/**
 * One training sequence: token ids and, optionally, the label of each position (IGNORE_INDEX = not predicted,
 * e.g. a prompt in supervised fine-tuning); without labels every token after the first is predicted.
 */
export interface LMExample {
  ids: number[];
  labels?: number[];
}

export interface LMSplits {
  name: string;
  train: LMExample[];
  validation: LMExample[];
  test: LMExample[];
}

/** Produces a causal-LM task's token sequences (the default reads texts; SFT renders conversations). */
export type LMDataLoader = (ctx: TaskContext, args: FinetuneArgs, tok: HFTokenizer, maxLength: number) => LMSplits | Promise<LMSplits>;

/** Right-padded ids and mask (1 = token) of some sequences. */
export function padSequences(seqs: number[][], padId: number): { ids: Tensor; mask: Tensor } {
  const p = padIds(seqs, padId, 2);
  return { ids: new Tensor(p.ids, 'i32', [seqs.length, p.T]), mask: new Tensor(p.mask, 'f32', [seqs.length, p.T]) };
}

const asExample = (x: number[] | LMExample): LMExample => (Array.isArray(x) ? { ids: x } : x);

/** Labels (B, T): each example's labels (or its ids), IGNORE_INDEX on padding. */
function batchLabels(batch: LMExample[], T: number): Tensor {
  const l = new Int32Array(batch.length * T).fill(IGNORE_INDEX);
  batch.forEach((e, b) => l.set(e.labels ?? e.ids, b * T));
  return new Tensor(l, 'i32', [batch.length, T]);
}

/** Next-token predictions a sequence contributes to the loss. */
function predicted(e: LMExample): number {
  if (!e.labels) return e.ids.length - 1;
  let n = 0;
  for (let i = 1; i < e.labels.length; i++) if (e.labels[i] !== IGNORE_INDEX) n++;
  return n;
}

/** Mean next-token loss of a batch (padding and IGNORE_INDEX labels ignored). */
export function lmBatchLoss(model: CausalLM, seqs: ReadonlyArray<number[] | LMExample>, padId: number, opts: { labelSmoothing?: number } = {}): Tensor {
  const batch = seqs.map(asExample);
  const { ids, mask } = padSequences(batch.map((e) => e.ids), padId);
  const labels = batchLabels(batch, ids.shape[1] as number);
  const head = model.headWeights();
  if (head) return causalLMLossFromHidden(model.hidden(ids, { attentionMask: mask }), head, labels, opts);
  return causalLMLoss(model.forward(ids, { attentionMask: mask }), labels, opts);
}

/**
 * Perplexity over sequences: exp of the mean NLL of every predicted token (token-weighted across batches). On a device
 * backend (WebGPU) each batch's mean loss stays on the device until every batch is queued, then the scalars are read
 * back together (no synchronous read); on the CPU backends each is read as it is computed. The same sums either way.
 */
export async function perplexity(model: CausalLM, seqs: ReadonlyArray<number[] | LMExample>, padId: number, batchSize: number, compute: ComputeDType,
  pace?: EvalPace): Promise<{ loss: number; perplexity: number; tokens: number }> {
  const device = !!backend().device;
  const batches: Array<{ n: number; loss: number | Promise<number> }> = [];
  function* steps(): Generator<void> {
    for (let s = 0; s < seqs.length; s += batchSize) {
      const batch = seqs.slice(s, s + batchSize).map(asExample);
      const n = batch.reduce((a, e) => a + predicted(e), 0);
      if (n === 0) continue;
      const l = autocast(compute, () => lmBatchLoss(model, batch, padId));
      batches.push({ n, loss: device ? l.value() : l.item() });
      yield;
    }
  }
  await evalBatches(model, steps(), pace); // pace: training's validation (pace.ts)
  const losses = await Promise.all(batches.map((b) => b.loss));
  let nll = 0, tokens = 0;
  batches.forEach((b, i) => {
    nll += losses[i] * b.n;
    tokens += b.n;
  });
  const loss = tokens ? nll / tokens : NaN;
  return { loss, perplexity: Math.exp(loss), tokens };
}

/**
 * Perplexity over sequences with data parallelism: each rank scores every W-th sequence and the token-weighted sums
 * are added over the ranks (so every rank gets the whole split's figure); one process scores them all.
 */
export async function shardedPerplexity(dp: DataParallel | null, model: CausalLM, seqs: ReadonlyArray<number[] | LMExample>, padId: number, batchSize: number,
  compute: ComputeDType, pace?: EvalPace): Promise<{ loss: number; perplexity: number; tokens: number }> {
  if (!dp) return perplexity(model, seqs, padId, batchSize, compute, pace);
  const r = await perplexity(model, seqs.filter((_, i) => i % dp.worldSize === dp.rank), padId, batchSize, compute, pace);
  const [nll, tokens] = await dp.sumNumbers([r.tokens ? r.loss * r.tokens : 0, r.tokens]);
  const loss = tokens ? nll / tokens : NaN;
  return { loss, perplexity: Math.exp(loss), tokens };
}

/** The default data of task 'causal-lm': texts of a file, tokenized with the model's special tokens. */
export const textData: LMDataLoader = (ctx, args, tok, maxLength) => {
  if (typeof args.dataset !== 'string') throw new ConfigError(`task 'causal-lm' takes a text file as 'dataset' (.txt lines, or JSONL/JSON/CSV with textField)`);
  const splits = loadTextSplits({ ...datasetArgs(args), dataset: args.dataset, seed: ctx.config.seed });
  noteSkipped(ctx, splits.skipped, 'line');
  const enc = (texts: string[]) => tokenizeTexts(tok, texts, maxLength).map((ids) => ({ ids }));
  return { name: splits.name, train: enc(splits.train), validation: enc(splits.validation), test: enc(splits.test) };
};

/** The decoder layers a quantised base leaves in their precision: the LM head (the fused loss reads it). */
export const DECODER_KEEP_PRECISION = ['lm_head'];

/**
 * A loaded decoder set up for training (causal-LM, SFT and DPO): the method applied (LoRA injected, or everything
 * trainable) and NEFTune's alpha set on its backbone. Returns the LoRA model, or null for 'full'.
 */
export function decoderForTraining(model: CausalLM, ctx: TaskContext, baseName: string): LoraModel | null {
  const lora = applyMethod(model, ctx.config, { heads: [], baseName, taskType: 'CAUSAL_LM', keepPrecision: DECODER_KEEP_PRECISION, note: (m) => ctx.note(m) });
  model.backbone.neftuneAlpha = ctx.config.neftuneNoiseAlpha;
  return lora;
}

/**
 * The batches of a decoder task over examples (or packed rows) of these lengths: length-bucketed under
 * `lengthBucketing` (less padding) unless `bucketing` says otherwise, else uniformly shuffled; null without examples
 * (a run loaded for predict / evaluate).
 */
export function samplerOf(lengths: number[], c: TrainerConfig, bucketing = c.lengthBucketing): Sampler | null {
  if (lengths.length === 0) return null;
  return bucketing ? new BucketSampler(lengths, c.batchSize, c.seed) : new RandomSampler(lengths.length, c.batchSize, c.seed);
}

/** Decoder parameters above the layer stack (final norm, LM head): no layer-wise decay. */
export const TOP = /^(lm_head|ln_f|norm|final_layernorm|transformer\.ln_f|model\.norm|transformer\.final_layernorm)\./;

/**
 * What the decoder tasks (causal-lm, sft, dpo) share: their trainable tensors and parameter groups (no layer-wise decay
 * above the layer stack), and batches from their sampler (null when the run was loaded for predict / evaluate).
 */
export abstract class DecoderTask {
  abstract readonly name: string;
  abstract readonly model: CausalLM;
  protected abstract readonly ctx: TaskContext;
  protected abstract readonly sampler: Sampler | null;

  protected get c(): TrainerConfig {
    return this.ctx.config;
  }

  trainable() {
    return trainableOf(this.model);
  }

  paramGroups() {
    return paramGroups(this.trainable(), this.c, { isTop: (p) => TOP.test(p) });
  }

  get batchesPerEpoch(): number {
    return this.sampler?.batchesPerEpoch ?? 0;
  }

  nextBatch(): number[] | null {
    if (!this.sampler) throw new AutoGLMError(`task '${this.name}' was loaded for prediction and has no training data`);
    return this.sampler.next();
  }
}

export class CausalLMTask extends DecoderTask implements TrainingTask<number[]> {
  readonly lora: LoraModel | null;
  protected readonly sampler: Sampler;
  private readonly padId: number;

  private constructor(readonly name: string, protected readonly ctx: TaskContext, readonly model: CausalLM, readonly baseName: string,
    readonly tokenizer: HFTokenizer, readonly data: LMSplits) {
    super();
    this.lora = decoderForTraining(model, ctx, baseName);
    model.train();
    this.padId = tokenizer.padTokenId ?? 0;
    this.sampler = samplerOf(data.train.map((e) => e.ids.length), ctx.config)!; // create() refuses an empty training set
  }

  /**
   * Loads the decoder named by the trainer's model (a folder or Hub id), applies the method and reads the data
   * with `loadData` (texts by default). `name` is the task's registered name (checkpoints and messages carry it).
   */
  static async create(ctx: TaskContext, args: FinetuneArgs, loadData: LMDataLoader = textData, name = 'causal-lm'): Promise<CausalLMTask> {
    const c = ctx.config, spec = ctx.modelSpec;
    if (typeof spec !== 'string') throw new ConfigError(`task '${name}' takes a model folder or Hub id as 'model'`);
    manualSeed(c.seed);
    const model = await loadDecoder(spec, name, c);
    const tok = model.hf?.tokenizer as HFTokenizer;
    const data = await loadData(ctx, args, tok, Math.min(c.maxLength, model.maxPositions ?? Infinity));
    if (data.train.length === 0) throw new ConfigError(`no training text of 2 or more tokens in '${data.name}'`);
    return new CausalLMTask(name, ctx, model, spec, tok, data);
  }

  /**
   * The mean next-token loss of the batch. Data-parallel: every rank draws the same global batch, trains on its block
   * of rows and returns its tokens' share of the global mean (its mean x its predicted tokens / the global batch's),
   * so that the gradients summed over the ranks are the global batch's.
   */
  loss(idx: number[]): MicroBatchLoss {
    const dp = this.ctx.dp, train = this.data.train;
    const mine = dp ? dp.shard(idx) : idx;
    const tokens = (rows: number[]) => rows.reduce((a, i) => a + predicted(asExample(train[i]!)), 0);
    const own = dp ? tokens(mine) : 1;
    if (mine.length === 0 || own === 0) return { loss: null };
    const loss = autocast(this.ctx.compute, () => lmBatchLoss(this.model, mine.map((i) => train[i]!), this.padId, { labelSmoothing: this.c.labelSmoothing }));
    return { loss: dp ? loss.scale(own / tokens(idx)) : loss };
  }

  async evaluate(split: EvalSplit, pace?: EvalPace): Promise<TaskEval | null> {
    const seqs = this.data[split];
    if (seqs.length === 0) return null;
    return shardedPerplexity(this.ctx.dp, this.model, seqs, this.padId, evalBatchOf(this.c, true), this.ctx.compute, pace);
  }

  state(): Record<string, unknown> {
    return { sampler: this.sampler.state() };
  }

  load(state: Record<string, unknown>, where: string): void {
    if (!state || typeof state['sampler'] !== 'object') throw new CheckpointError(`checkpoint '${where}' has no sampler state for task '${this.name}'`);
    this.sampler.load(state['sampler'] as Record<string, unknown>);
  }

  runInfo(): RunInfo {
    return { model: this.baseName, method: this.c.method, labels: [], config: this.c, dataset: this.data.name };
  }

  /** The adapter (PEFT layout, task type CAUSAL_LM) or the whole model as a Hugging Face folder. */
  async saveOutputs(dir: string): Promise<Record<string, string>> {
    if (this.lora) return { adapter: path.dirname(saveAdapter(this.lora, path.join(dir, 'adapter')).weights) };
    const { saveHFModel } = await import('../models/hf/save.js');
    saveHFModel(this.model, path.join(dir, 'model'));
    return { model: path.join(dir, 'model') };
  }
}

/** Config keys that mean nothing without a classification head, shared with tasks built on causal-LM (SFT). */
export const CAUSAL_LM_REFUSES: TaskDefinition['refuses'] = {
  headDropout: 'a decoder has no classification head to put dropout before',
  headLearningRate: 'a causal LM has no new head: its LM head is the pretrained output layer (often tied to the input embeddings), trained at learningRate',
  tasks: 'a causal-LM head in a multi-task run is not supported yet; multi-task training takes task classification',
  taskWeighting: "it weighs the losses of several classification heads ('tasks')",
  taskWeights: "it weighs the losses of several classification heads ('tasks')",
  dwaTemperature: "it belongs to taskWeighting 'dwa' of a multi-task run ('tasks')",
  dwaWindow: "it belongs to taskWeighting 'dwa' of a multi-task run ('tasks')",
  taskSampling: "it draws one task per batch in a multi-task run ('tasks')",
  taskSamplingTemperature: "it belongs to taskSampling 'temperature' of a multi-task run ('tasks')",
  curriculum: 'causal-LM batches are drawn uniformly (or by length); curriculum learning works with task classification',
  sampling: 'causal-LM batches are drawn uniformly (or by length); loss-weighted sampling works with task classification',
};

/** Checks shared with tasks built on causal-LM. */
export function checkCausalLM(c: TrainerConfig, name: string): void {
  if (c.method === 'head') throw new ConfigError(`config key 'method' is 'head': task '${name}' trains with 'lora' or 'full'`);
}

export const causalLMTask: TaskDefinition = {
  name: 'causal-lm',
  description: 'a Hugging Face decoder on texts, next-token loss, evaluated by perplexity',
  refuses: { ...CAUSAL_LM_REFUSES, ...SFT_ONLY, ...DPO_ONLY },
  monitors: ['val_loss'],
  dataParallel: true,
  check: (c) => checkCausalLM(c, 'causal-lm'),
  create: (ctx, args) => CausalLMTask.create(ctx, args),
};

/**
 * A decoder task's model (a Hugging Face folder or Hub id) loaded, or a ConfigError naming the task. With `c` a LoRA run
 * on a quantised base, the checkpoint's 16-bit tensors stay 16-bit and each Linear layer is quantised as soon as it
 * is read (QLoRA's base is never whole in the checkpoint's precision, let alone f32: the load's peak is the
 * quantised base and one tensor); the LM head stays as it is (DECODER_KEEP_PRECISION).
 */
export async function loadDecoder(spec: string, task: string, c?: Pick<TrainerConfig, 'method' | 'baseQuantization' | 'baseDoubleQuant'>): Promise<CausalLM> {
  if (spec === 'open-autoglm-base') {
    throw new ConfigError(`task '${task}' takes a Hugging Face decoder as its model (--model path/to/folder, or a Hub id); 'open-autoglm-base', the default model, is the sentence encoder of task classification`);
  }
  const { loadHFModel } = await import('../models/hf/loader.js');
  if (!c || c.method !== 'lora' || c.baseQuantization === 'none') return requireCausalLM(await loadHFModel(spec), spec, task);
  const mode = c.baseQuantization;
  const quantize = { mode, skip: DECODER_KEEP_PRECISION, ...(mode === 'nf4' ? { doubleQuant: c.baseDoubleQuant } : {}) };
  return requireCausalLM(await loadHFModel(spec, { dtype: 'keep', quantize }), spec, task);
}

/** The loaded model as a decoder with an LM head and a tokenizer, else a ConfigError naming the task that needs one. */
export function requireCausalLM(m: unknown, name: string, task = 'causal-lm'): CausalLM {
  const c = m as Partial<CausalLM>;
  if (!c || c.task !== 'causal-lm' || typeof c.forward !== 'function') {
    throw new ConfigError(`task '${task}' needs a decoder with an LM head; model '${name}' is not one (load a Hugging Face causal-LM folder: --model path/to/dir)`);
  }
  if (!c.hf?.tokenizer) throw new ConfigError(`model '${name}' has no tokenizer.json; task '${task}' needs one`);
  return c as CausalLM;
}

export { IGNORE_INDEX };
