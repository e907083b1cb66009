/**
 * Task 'multi-task' (config `tasks`): a shared backbone with one classification head per label set
 * (src/multitask), trained jointly (every head on each batch of texts, the default) or one task per batch (a task
 * sampler: proportional, temperature, round-robin), the task losses combined by a task weighting (static,
 * uncertainty, DWA). Its state: every sampler, the task sampler, the position in the epoch and the weighting.
 *
 * One micro-batch: rows (+ which tasks) -> backbone once -> each head's cross-entropy (examples without that
 * task's label are ignored) -> weighting.combine -> the loop's backward and update.
 */
import path from 'node:path';
import { Tensor } from '../tensor/tensor.js';
import { crossEntropy } from '../tensor/ops/nn.js';
import { autocast } from '../tensor/precision.js';
import { manualSeed } from '../nn/init.js';
import type { EvalPace } from './pace.js';
import type { ParamGroup } from '../optim/optimizer.js';
import { saveAdapter, type LoraModel } from '../peft/index.js';
import { BucketSampler, RandomSampler, padIds, type DatasetSplits, type Example, type Sampler } from '../data/index.js';
import { CheckpointError, ConfigError } from '../errors.js';
import {
  MultiTaskClassifier, makeTaskWeighting, makeTaskSampler, primaryLabelSet, resolveTasks, staticTaskWeights, taskTargets,
  encodeExamples, evaluateTasks, predictTasks, scoreTasks, taskLogitsAsync, type TaskSpec, type TaskWeighting, type TaskSampler, type MultiTaskEvalResult, type MultiTaskPrediction,
} from '../multitask/index.js';
import { DECODER_ONLY, DPO_ONLY, SFT_ONLY, evalBatchOf, isDefaultValue, type TrainerConfig } from './config.js';
import type { History, StepLog, TaskMetrics } from './history.js';
import { saveTrainable, loadRunWeights, type RunInfo } from './outputs.js';
import { applyMethod, headLearningRate, learningRate, paramGroups, trainableOf } from './setup.js';
import { loadSplits, runDataSpec, textEncoder } from './classification.js';
import { getNamedDataset } from '../data/registry.js';
import type { DatasetSpec } from '../data/types.js';
import type { DataParallel } from '../distributed/data-parallel.js';
import type { EvalSplit, FinetuneArgs, MicroBatchLoss, TaskContext, TaskDefinition, TaskEval, TrainingTask } from './task.js';

/** Where a micro-batch's rows come from: one sampler over every labelled text (joint), or one per task. */
interface BatchPlan { rows: number[]; tasks: number[] }

/** The data side of a training run (absent when a finished run is loaded for evaluate / predict). */
interface MultiTaskData {
  splits: DatasetSplits;
  ids: number[][];
  targets: Int32Array[];
  /** Joint: one pool (every row with some label); else one pool per task (rows with that task's label). */
  pools: number[][];
  samplers: Sampler[];
  taskSampler: TaskSampler | null;
  batchesPerEpoch: number;
}

export class MultiTaskTask implements TrainingTask<BatchPlan> {
  readonly name = 'multi-task';
  readonly lora: LoraModel | null;
  private data: MultiTaskData | null = null;
  private microInEpoch = 0;
  /** The dataset for the run's autoglm.json (runDataSpec). */
  private dataSpec: Partial<DatasetSpec> | undefined;
  /** Data-parallel: this rank's task losses of the last micro-batch, and the parts that afterBackward fills. */
  private pendingSums: Map<number, [number, number]> | null = null;
  private pendingParts: Map<string, number> | null = null;

  private constructor(private readonly ctx: TaskContext, readonly model: MultiTaskClassifier, readonly tasks: TaskSpec[],
    /** Name of the dataset's primary label set (its labels are `Example.label`; the others are in `extra`). */
    readonly primary: string, readonly weighting: TaskWeighting | null) {
    this.lora = applyMethod(model, ctx.config, { heads: model.headPaths, baseName: model.backbone.name, note: (m) => ctx.note(m) });
  }

  private static async build(ctx: TaskContext, tasks: TaskSpec[], primary: string, weighting: TaskWeighting | null): Promise<MultiTaskTask> {
    manualSeed(ctx.config.seed);
    const enc = await textEncoder(ctx.modelSpec);
    return new MultiTaskTask(ctx, new MultiTaskClassifier(enc, tasks, ctx.config.headDropout), tasks, primary, weighting);
  }

  get baseName(): string {
    return this.model.backbone.name;
  }

  /** The first task's labels (the top-level labels of predictions). */
  get labels(): string[] {
    return this.tasks[0]!.labels;
  }

  private get c(): TrainerConfig {
    return this.ctx.config;
  }

  private get maxLength(): number {
    return Math.min(this.c.maxLength, this.model.backbone.maxLength);
  }

  private get d(): MultiTaskData {
    return this.data as MultiTaskData;
  }

  private prepareData(splits: DatasetSplits): void {
    const c = this.c, enc = this.model.backbone;
    const ids = splits.train.map((e) => enc.encodeText(e.text).slice(0, this.maxLength));
    const targets = this.tasks.map((task) => taskTargets(splits.train, task, this.primary));
    const all = ids.map((_, i) => i);
    const pools = c.taskSampling === 'joint' ? [all.filter((i) => targets.some((tg) => tg[i]! >= 0))] : targets.map((tg) => all.filter((i) => tg[i]! >= 0));
    pools.forEach((p, k) => {
      if (p.length === 0) throw new ConfigError(`config key 'tasks': task '${this.tasks[k]!.name}' has no labelled training example in '${splits.name}'`);
    });
    const samplers = pools.map((p, k) => (c.lengthBucketing ? new BucketSampler(p.map((i) => ids[i]!.length), c.batchSize, c.seed + 7919 * k)
      : new RandomSampler(p.length, c.batchSize, c.seed + 7919 * k)));
    const taskSampler = c.taskSampling === 'joint' ? null : makeTaskSampler(c.taskSampling, { sizes: pools.map((p) => p.length), temperature: c.taskSamplingTemperature, seed: c.seed + 3 });
    this.data = { splits, ids, targets, pools, samplers, taskSampler, batchesPerEpoch: samplers.reduce((a, s) => a + s.batchesPerEpoch, 0) };
    this.ctx.note(`multi-task: ${this.tasks.map((x) => `${x.name} (${x.labels.length} labels)`).join(', ')}; weighting ${c.taskWeighting}; sampling ${c.taskSampling}`);
  }

  /** The model's trainable parameters, then the weighting's own (uncertainty's log-variances, as `weighting.<k>`). */
  trainable(): Array<[string, Tensor]> {
    return [...trainableOf(this.model), ...(this.weighting?.parameters() ?? []).map((t, k): [string, Tensor] => [`weighting.${k}`, t])];
  }

  /** The heads at the head lr (plus layer-wise decay, LoRA+); the weighting's parameters at the head lr without weight decay. */
  paramGroups() {
    const groups = paramGroups(trainableOf(this.model), this.c, { isHead: (p) => p.startsWith('heads.') }) as Array<Partial<ParamGroup> & { params: Tensor[] }>;
    const wp = this.weighting?.parameters() ?? [];
    const lr = learningRate(this.c), headScale = headLearningRate(this.c) / lr;
    if (wp.length) groups.push({ params: wp, lr: lr * headScale, lrScale: headScale, weightDecay: 0 });
    return groups;
  }

  get batchesPerEpoch(): number {
    return this.d.batchesPerEpoch;
  }

  nextBatch(): BatchPlan | null {
    const d = this.d;
    if (!d.taskSampler) {
      const idx = d.samplers[0]!.next();
      return idx && { rows: idx.map((i) => d.pools[0]![i]!), tasks: this.tasks.map((_, k) => k) };
    }
    if (this.microInEpoch >= d.batchesPerEpoch) {
      this.microInEpoch = 0;
      return null;
    }
    this.microInEpoch++;
    const k = d.taskSampler.next();
    const idx = d.samplers[k]!.next() ?? (d.samplers[k]!.next() as number[]); // a task's own epoch ends: start its next
    return { rows: idx.map((i) => d.pools[k]![i]!), tasks: [k] };
  }

  loss(plan: BatchPlan): MicroBatchLoss {
    if (this.ctx.dp) return this.rankLoss(plan, this.ctx.dp);
    const d = this.d, weighting = this.weighting as TaskWeighting;
    const p = padIds(plan.rows.map((r) => d.ids[r]!), this.model.backbone.padId);
    const ids = new Tensor(p.ids, 'i32', [plan.rows.length, p.T]), mask = new Tensor(p.mask, 'f32', [plan.rows.length, p.T]); // (B, T)
    const losses = new Map<number, Tensor>();
    const total = autocast(this.ctx.compute, () => {
      const h = this.model.features(ids, mask); // (B, D)
      for (const k of plan.tasks) {
        const tg = Int32Array.from(plan.rows, (r) => d.targets[k]![r]!);
        if (tg.every((x) => x < 0)) continue; // no text of this batch has the task's label
        const logits = this.model.head(this.tasks[k]!.name, h); // (B, C_k)
        losses.set(k, crossEntropy(logits, new Tensor(tg, 'i32', [tg.length]), { ignoreIndex: -1, labelSmoothing: this.c.labelSmoothing }));
      }
      return weighting.combine(losses);
    });
    const values = new Map([...losses].map(([k, l]) => [k, l.item()]));
    weighting.observe(values);
    return { loss: total, parts: new Map([...values].map(([k, v]) => [this.tasks[k]!.name, v])) };
  }

  /**
   * A data-parallel rank's loss: every rank draws the same global batch and trains on its block of rows. Each task's
   * mean cross-entropy over the rank's labelled rows is scaled by their share of the global batch's labelled rows, and
   * the weighting's own terms by 1 / world size (`combine`'s share), so that the gradients summed over the ranks are
   * the whole batch's. Every task labelled anywhere in the global batch enters the combination on every rank (with a
   * zero loss where this rank's rows lack it), so that uncertainty's s_t terms add up. The task losses that DWA
   * averages and the logs show are the global batch's: summed over the ranks in `afterBackward`.
   */
  private rankLoss(plan: BatchPlan, dp: DataParallel): MicroBatchLoss {
    const d = this.d, weighting = this.weighting as TaskWeighting;
    const rows = dp.shard(plan.rows);
    const labelled = (k: number, rs: readonly number[]) => rs.reduce((a, r) => a + (d.targets[k]![r]! >= 0 ? 1 : 0), 0);
    const global = new Map(plan.tasks.map((k) => [k, labelled(k, plan.rows)]));
    const tasks = plan.tasks.filter((k) => global.get(k)! > 0);
    const sums = new Map<number, [number, number]>(); // task -> [sum of this rank's losses, its labelled rows]
    const parts = new Map<string, number>();
    this.pendingSums = sums;
    this.pendingParts = parts;
    if (tasks.length === 0) return { loss: null, parts };
    const total = autocast(this.ctx.compute, () => {
      let h: Tensor | null = null;
      const losses = new Map<number, Tensor>();
      for (const k of tasks) {
        const mine = labelled(k, rows);
        if (mine === 0) {
          losses.set(k, new Tensor(new Float32Array(1), 'f32', []));
          continue;
        }
        if (!h) {
          const p = padIds(rows.map((r) => d.ids[r]!), this.model.backbone.padId);
          h = this.model.features(new Tensor(p.ids, 'i32', [rows.length, p.T]), new Tensor(p.mask, 'f32', [rows.length, p.T]));
        }
        const tg = Int32Array.from(rows, (r) => d.targets[k]![r]!);
        const ce = crossEntropy(this.model.head(this.tasks[k]!.name, h), new Tensor(tg, 'i32', [tg.length]), { ignoreIndex: -1, labelSmoothing: this.c.labelSmoothing });
        sums.set(k, [ce.item() * mine, mine]);
        losses.set(k, ce.scale(mine / global.get(k)!));
      }
      return weighting.combine(losses, 1 / dp.worldSize);
    });
    return { loss: total, parts };
  }

  /** Data-parallel: the micro-batch's task losses over the global batch (one small all-reduce), for DWA and the logs. */
  async afterBackward(): Promise<void> {
    const dp = this.ctx.dp;
    if (!dp || !this.pendingSums) return;
    const sums = this.pendingSums, parts = this.pendingParts as Map<string, number>;
    const g = await dp.sumNumbers(this.tasks.flatMap((_, k) => sums.get(k) ?? [0, 0]));
    const values = new Map<number, number>();
    this.tasks.forEach((_, k) => {
      if (g[2 * k + 1]! > 0) values.set(k, g[2 * k]! / g[2 * k + 1]!);
    });
    (this.weighting as TaskWeighting).observe(values);
    for (const [k, v] of values) parts.set(this.tasks[k]!.name, v);
    this.pendingSums = this.pendingParts = null;
  }

  /** The weights the step's losses were combined with (read before the update changes learned ones). */
  stepLog(): Partial<StepLog> {
    const w = (this.weighting as TaskWeighting).weights();
    return { task_weight: Object.fromEntries(this.tasks.map((x, k) => [x.name, w[k]!])) };
  }

  afterStep(step: number): void {
    if (this.c.taskWeighting === 'dwa' && this.c.dwaWindow > 0 && step % this.c.dwaWindow === 0) this.weighting?.endWindow();
  }

  endEpoch(): void {
    if (this.c.dwaWindow === 0) this.weighting?.endWindow();
  }

  /** Evaluation; data-parallel ranks each compute every W-th example's logits and share them. */
  private async evaluateExamples(examples: Example[], pace?: EvalPace): Promise<MultiTaskEvalResult> {
    const dp = this.ctx.dp;
    const opts = { batchSize: evalBatchOf(this.c), maxLength: this.maxLength, compute: this.ctx.compute, pace };
    if (!dp) return evaluateTasks(this.model, examples, this.primary, opts);
    const mine = examples.filter((_, i) => i % dp.worldSize === dp.rank);
    const local = await taskLogitsAsync(this.model, encodeExamples(this.model, mine, opts.maxLength), opts.batchSize, opts.compute, pace);
    const logits: Float32Array[] = [];
    for (const [k, t] of this.model.tasks.entries()) logits.push(await dp.gatherStrided(local[k]!, examples.length, t.labels.length));
    return scoreTasks(this.model, examples, this.primary, logits);
  }

  /** Every task's report; the loss is the mean of the tasks' (what plateau and val_loss watch), accuracy and F1 the first task's. */
  async evaluate(split: EvalSplit, pace?: EvalPace): Promise<TaskEval | null> {
    const ex = this.data?.splits[split] ?? [];
    if (ex.length === 0) return null;
    const r = await this.evaluateExamples(ex, pace);
    const tasks: Record<string, TaskMetrics> = Object.fromEntries(Object.entries(r.tasks).map(([k, x]) => [k, { loss: x.loss, accuracy: x.accuracy, macro_f1: x.macro_f1, n: x.n }]));
    if (split === 'test') return { loss: r.loss, accuracy: r.accuracy, macro_f1: r.macro_f1, tasks, report: r };
    const losses = Object.values(tasks).map((x) => x.loss).filter(Number.isFinite);
    const loss = losses.reduce((a, b) => a + b, 0) / Math.max(1, losses.length);
    return { loss, accuracy: r.accuracy, macro_f1: r.macro_f1, tasks };
  }

  async evaluateOn(split: EvalSplit | Example[]): Promise<MultiTaskEvalResult> {
    const ex = typeof split === 'string' ? this.data?.splits[split] : split;
    if (!ex || ex.length === 0) throw new ConfigError(`no examples to evaluate in '${typeof split === 'string' ? split : 'examples'}'`);
    return this.evaluateExamples(ex);
  }

  async predict(texts: string[]): Promise<MultiTaskPrediction[]> {
    return predictTasks(this.model, texts, this.maxLength);
  }

  state(): Record<string, unknown> {
    const d = this.d;
    return { microInEpoch: this.microInEpoch, samplers: d.samplers.map((s) => s.state()), taskSampler: d.taskSampler?.state(), weighting: this.weighting?.state() };
  }

  load(st: Record<string, unknown>, where: string): void {
    const d = this.d;
    const samplers = st['samplers'] as Array<Record<string, unknown>> | undefined;
    if (samplers?.length !== d.samplers.length) throw new CheckpointError(`checkpoint '${where}' holds ${samplers?.length} sampler state(s); this run has ${d.samplers.length} (same 'tasks' and 'taskSampling' needed)`);
    d.samplers.forEach((s, k) => s.load(samplers[k]!));
    if (d.taskSampler && st['taskSampler']) d.taskSampler.load(st['taskSampler'] as Record<string, unknown>);
    if (st['weighting']) this.weighting?.load(st['weighting'] as Record<string, unknown>);
    this.microInEpoch = st['microInEpoch'] as number;
  }

  runInfo(): RunInfo {
    return { model: this.model.backbone.name, method: this.c.method, labels: this.labels, config: this.c, dataset: this.d.splits.name,
      labelSet: this.primary, taskLabels: Object.fromEntries(this.tasks.map((x) => [x.name, x.labels])), ...(this.dataSpec ? { data: this.dataSpec } : {}) };
  }

  finish(h: History): void {
    const w = (this.weighting as TaskWeighting).weights();
    h.taskWeights = Object.fromEntries(this.tasks.map((x, k) => [x.name, w[k]!]));
  }

  async saveOutputs(dir: string): Promise<Record<string, string>> {
    if (this.lora) return { adapter: path.dirname(saveAdapter(this.lora, path.join(dir, 'adapter')).weights) };
    return { model: saveTrainable(this.model, dir, this.c.method === 'head') };
  }

  static async create(ctx: TaskContext, args: FinetuneArgs): Promise<MultiTaskTask> {
    const c = ctx.config;
    if (c.method === 'head' && c.taskSampling !== 'joint') ctx.note('method head with a task sampler recomputes the frozen embeddings per batch');
    // a user file: each task is a label field of its records (the primary one labelField, else the first task)
    const file = typeof args.dataset === 'string' && !getNamedDataset(args.dataset);
    const fileSets: Partial<DatasetSpec> = file && args.labelFields === undefined
      ? { labelFields: c.tasks as string[], labelField: args.labelField ?? (c.tasks as string[])[0] } : {};
    const splits = loadSplits(ctx, { ...args, ...fileSets });
    const primary = primaryLabelSet(splits, { ...args, ...fileSets });
    const tasks = resolveTasks(c.tasks as string[], splits, primary);
    const weights = staticTaskWeights(c.taskWeights, tasks.map((x) => x.name));
    const weighting = makeTaskWeighting(c.taskWeighting, { tasks: tasks.map((x) => x.name), weights, temperature: c.dwaTemperature });
    const task = await MultiTaskTask.build(ctx, tasks, primary, weighting);
    task.dataSpec = runDataSpec(args, fileSets);
    task.prepareData(splits);
    return task;
  }

  /** A finished multi-task run's model from its output folder, in eval mode. */
  static async fromRun(ctx: TaskContext, dir: string, info: RunInfo): Promise<MultiTaskTask> {
    if (!info.taskLabels || !info.labelSet) throw new CheckpointError(`'${dir}/autoglm.json' has config 'tasks' but no 'taskLabels'/'labelSet': not a complete multi-task run`);
    const taskLabels = info.taskLabels;
    const tasks = (ctx.config.tasks as string[]).map((name) => ({ name, labels: taskLabels[name] ?? [] }));
    const task = await MultiTaskTask.build(ctx, tasks, info.labelSet, null);
    loadRunWeights(task.model, task.lora, dir);
    return task;
  }
}

export const multiTaskTask: TaskDefinition = {
  name: 'multi-task',
  description: "several classification heads on one backbone (config 'tasks'), losses combined by a task weighting",
  refuses: {
    ...SFT_ONLY,
    ...DECODER_ONLY,
    ...DPO_ONLY,
    curriculum: 'multi-task training draws its own batches (taskSampling); curriculum learning works with task classification',
    sampling: 'multi-task training draws its own batches (taskSampling); loss-weighted sampling works with task classification',
  },
  monitors: ['val_loss', 'val_accuracy', 'val_macro_f1'],
  dataParallel: true,
  check(c) {
    const refuse = (key: string, why: string) => {
      throw new ConfigError(`config key '${key}' is set, but ${why} (task 'multi-task')`);
    };
    if (c.taskWeighting !== 'dwa' && !isDefaultValue('dwaTemperature', c.dwaTemperature)) refuse('dwaTemperature', `taskWeighting is '${c.taskWeighting}', not 'dwa'`);
    if (c.taskWeighting !== 'dwa' && !isDefaultValue('dwaWindow', c.dwaWindow)) refuse('dwaWindow', `taskWeighting is '${c.taskWeighting}', not 'dwa'`);
    if (c.taskSampling !== 'temperature' && !isDefaultValue('taskSamplingTemperature', c.taskSamplingTemperature)) {
      refuse('taskSamplingTemperature', `taskSampling is '${c.taskSampling}', not 'temperature'`);
    }
  },
  create: (ctx, args) => MultiTaskTask.create(ctx, args),
  load: (ctx, dir, info) => MultiTaskTask.fromRun(ctx, dir, info),
};
