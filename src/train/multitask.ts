/**
 * The multi-task loop (config `tasks`): a shared backbone with one classification head per task
 * (src/multitask), trained jointly (every head on each batch of texts, the default) or one task per batch (a
 * task sampler: proportional, temperature, round-robin), the task losses combined by a task weighting (static,
 * uncertainty, DWA). It reuses the trainer's pieces rather than copying them: dataset loading, the method
 * (LoRA with every head a module to save, or freezing), parameter groups, the optimizer, the guarded update
 * (`applyUpdate`: finite check, loss scaling, clipping), schedules, precision policy, checkpoint files, outputs.
 *
 * One optimizer step: batch rows (+ which tasks) -> backbone once -> each head's cross-entropy (examples
 * without that task's label are ignored) -> weighting.combine -> backward -> applyUpdate -> schedule, logs.
 */
import path from 'node:path';
import { Tensor } from '../tensor/tensor.js';
import { crossEntropy } from '../tensor/ops/nn.js';
import { autocast } from '../tensor/precision.js';
import { Rng } from '../backend/rng.js';
import { backend } from '../backend/index.js';
import { getRng, manualSeed, setRng } from '../nn/init.js';
import type { Optimizer, ParamGroup } from '../optim/optimizer.js';
import { SCHEDULES, ReduceLROnPlateau, EarlyStopping, type Schedule } from '../optim/schedule.js';
import { DynamicLossScaler, resolvePrecision, type PrecisionPolicy } from '../precision/index.js';
import { loadAdapter, saveAdapter } from '../peft/index.js';
import { loadSafetensors } from '../models/safetensors.js';
import { BucketSampler, RandomSampler, padIds, type DatasetSplits, type Example, type Sampler } from '../data/index.js';
import { CheckpointError, ConfigError } from '../errors.js';
import {
  MultiTaskClassifier, makeTaskWeighting, makeTaskSampler, primaryLabelSet, resolveTasks, staticTaskWeights, taskTargets,
  evaluateTasks, predictTasks, type TaskSpec, type TaskWeighting, type TaskSampler, type MultiTaskEvalResult, type MultiTaskPrediction,
} from '../multitask/index.js';
import type { AutoGLMTrainer, FinetuneArgs } from './trainer.js';
import { DEFAULT_HEAD_LR } from './config.js';
import { emptyHistory, MetricsLog, type Callback, type EpochLog, type EvalLog, type History, type StepLog, type TaskMetrics } from './history.js';
import { saveCheckpoint, loadCheckpoint, listCheckpoints } from './checkpoint.js';
import { writeRunInfo, readRunInfo, writeCurves, saveTrainable, loadTrainable, type RunInfo } from './outputs.js';

/** What a trainer holds after a multi-task run (or `AutoGLMTrainer.load` of one): the model and its tasks. */
export class MultiTaskState {
  constructor(private readonly trainer: AutoGLMTrainer, readonly model: MultiTaskClassifier, readonly tasks: TaskSpec[],
    /** Name of the dataset's primary label set (its labels are `Example.label`; the others are in `extra`). */
    readonly primary: string, public splits: DatasetSplits | null = null, public weighting: TaskWeighting | null = null) {}

  get maxLength(): number {
    return Math.min(this.trainer.config.maxLength, this.model.backbone.maxLength);
  }

  evaluateExamples(examples: Example[]): MultiTaskEvalResult {
    const c = this.trainer.config;
    return evaluateTasks(this.model, examples, this.primary, { batchSize: c.evalBatchSize, maxLength: this.maxLength, compute: resolvePrecision(c.mixedPrecision).compute });
  }

  /** Every task's report on a split of the run's dataset, or on examples; top-level numbers are the first task's. */
  async evaluate(split: 'test' | 'validation' | Example[] = 'test'): Promise<MultiTaskEvalResult> {
    const ex = typeof split === 'string' ? this.splits?.[split] : split;
    if (!ex || ex.length === 0) throw new ConfigError(`no examples to evaluate in '${typeof split === 'string' ? split : 'examples'}'`);
    return this.evaluateExamples(ex);
  }

  /** Each task's label for each text (the top-level label is the first task's). */
  async predict(texts: string[]): Promise<MultiTaskPrediction[]> {
    return predictTasks(this.model, texts, this.maxLength);
  }
}

/** Builds the multi-task model and applies the method (the trainer's `applyMethod`: LoRA with each head saved, or freezing). */
async function buildModel(t: AutoGLMTrainer, tasks: TaskSpec[]): Promise<MultiTaskClassifier> {
  manualSeed(t.config.seed);
  const enc = await t.backbone();
  const model = new MultiTaskClassifier(enc, tasks, t.config.headDropout);
  t.applyMethod(model, model.headPaths, enc.name);
  return model;
}

/** Runs a multi-task fine-tune for `t` (called by `AutoGLMTrainer.finetune` when config `tasks` is set). */
export async function finetuneMultiTask(t: AutoGLMTrainer, args: FinetuneArgs): Promise<History> {
  const c = t.config;
  if (c.method === 'head' && c.taskSampling !== 'joint') t.note('method head with a task sampler recomputes the frozen embeddings per batch');
  const splits = t.loadSplits(args);
  if (splits.train.length === 0) throw new ConfigError(`dataset '${splits.name}' has no training examples`);
  if (splits.skipped.length) t.note(`skipped ${splits.skipped.length} bad line(s) in '${splits.name}' (first: ${splits.skipped[0]!.file}:${splits.skipped[0]!.line}: ${splits.skipped[0]!.reason})`);
  const primary = primaryLabelSet(splits, args);
  const tasks = resolveTasks(c.tasks as string[], splits, primary);
  const weights = staticTaskWeights(c.taskWeights, tasks.map((x) => x.name));
  const weighting = makeTaskWeighting(c.taskWeighting, { tasks: tasks.map((x) => x.name), weights, temperature: c.dwaTemperature });
  const model = await buildModel(t, tasks);
  t.labels = tasks[0]!.labels;
  t.multitask = new MultiTaskState(t, model, tasks, primary, splits, weighting);
  const run = new MultiTaskRun(t, t.multitask, args.callbacks ?? []);
  return run.train(args.stopAfterSteps);
}

/** Rebuilds a multi-task run's model from its output folder into `t` (called by `AutoGLMTrainer.load`). */
export async function loadMultiTask(t: AutoGLMTrainer, dir: string): Promise<AutoGLMTrainer> {
  const info = readRunInfo(dir);
  if (!info.taskLabels || !info.labelSet) throw new CheckpointError(`'${dir}/autoglm.json' has config 'tasks' but no 'taskLabels'/'labelSet': not a complete multi-task run`);
  const taskLabels = info.taskLabels;
  const tasks = (t.config.tasks as string[]).map((name) => ({ name, labels: taskLabels[name] ?? [] }));
  const model = await buildModel(t, tasks);
  if (t.lora) {
    const cfgName = t.lora.activeAdapters[0]!;
    loadAdapter(t.lora, path.join(dir, 'adapter'), 'trained');
    t.lora.deleteAdapter(cfgName);
    t.lora.setAdapter('trained');
  } else {
    loadTrainable(model, loadSafetensors(path.join(dir, 'model.safetensors')).tensors, dir);
  }
  model.eval();
  t.labels = tasks[0]!.labels;
  t.multitask = new MultiTaskState(t, model, tasks, info.labelSet);
  return t;
}

/** Where a micro-batch's rows come from: one sampler over every labelled text (joint), or one per task. */
interface BatchPlan { rows: number[]; tasks: number[] }

class MultiTaskRun {
  private readonly c: AutoGLMTrainer['config'];
  private readonly model: MultiTaskClassifier;
  private readonly tasks: TaskSpec[];
  private readonly weighting: TaskWeighting;
  private readonly ids: number[][];
  private readonly targets: Int32Array[];
  /** Joint: one pool (every row with some label); else one pool per task (rows with that task's label). */
  private readonly pools: number[][];
  private readonly samplers: Sampler[];
  private readonly taskSampler: TaskSampler | null;
  private readonly batchesPerEpoch: number;
  private readonly opt: Optimizer;
  private readonly params: Tensor[];
  private readonly schedule: Schedule;
  private readonly plateau: ReduceLROnPlateau | null;
  private readonly stopper: EarlyStopping | null;
  private readonly scaler: DynamicLossScaler;
  private policy: PrecisionPolicy;
  private readonly baseLr: number;
  readonly totalSteps: number;
  readonly stepsPerEpoch: number;
  private readonly outDir: string;
  private readonly log: MetricsLog;
  private history: History = emptyHistory();
  private step = 0;
  private epoch = 0;
  private microInEpoch = 0;
  private best: Map<string, Float32Array> | null = null;
  private t0 = performance.now();
  private elapsedBefore = 0;

  constructor(private readonly t: AutoGLMTrainer, private readonly state: MultiTaskState, private readonly callbacks: Callback[]) {
    const c = (this.c = t.config);
    this.model = state.model;
    this.tasks = state.tasks;
    this.weighting = state.weighting as TaskWeighting;
    const splits = state.splits as DatasetSplits;
    const enc = this.model.backbone;
    this.ids = splits.train.map((e) => enc.encodeText(e.text).slice(0, state.maxLength));
    this.targets = this.tasks.map((task) => taskTargets(splits.train, task, state.primary));
    const all = this.ids.map((_, i) => i);
    this.pools = c.taskSampling === 'joint'
      ? [all.filter((i) => this.targets.some((tg) => tg[i]! >= 0))]
      : this.targets.map((tg) => all.filter((i) => tg[i]! >= 0));
    this.pools.forEach((p, k) => {
      if (p.length === 0) throw new ConfigError(`config key 'tasks': task '${this.tasks[k]!.name}' has no labelled training example in '${splits.name}'`);
    });
    this.samplers = this.pools.map((p, k) => (c.lengthBucketing ? new BucketSampler(p.map((i) => this.ids[i]!.length), c.batchSize, c.seed + 7919 * k)
      : new RandomSampler(p.length, c.batchSize, c.seed + 7919 * k)));
    this.taskSampler = c.taskSampling === 'joint' ? null : makeTaskSampler(c.taskSampling, { sizes: this.pools.map((p) => p.length), temperature: c.taskSamplingTemperature, seed: c.seed + 3 });
    this.batchesPerEpoch = this.samplers.reduce((a, s) => a + s.batchesPerEpoch, 0);
    this.stepsPerEpoch = Math.max(1, Math.ceil(this.batchesPerEpoch / c.gradientAccumulation));
    this.totalSteps = Math.min(c.maxSteps ?? Infinity, c.epochs * this.stepsPerEpoch);
    this.baseLr = t.learningRate;
    // the trainer's groups (heads at the head lr, layer-wise decay, LoRA+), plus the weighting's own parameters
    // (uncertainty's s_t) at the head lr with no weight decay
    const groups = t.paramGroups(this.model, (p) => p.startsWith('heads.')) as Array<Partial<ParamGroup> & { params: Tensor[] }>;
    const wp = this.weighting.parameters();
    const headScale = (c.headLearningRate ?? (c.method === 'head' ? this.baseLr : DEFAULT_HEAD_LR)) / this.baseLr;
    if (wp.length) groups.push({ params: wp, lr: this.baseLr * headScale, lrScale: headScale, weightDecay: 0 });
    this.opt = t.makeOptimizer(groups);
    this.params = [...this.model.trainableParameters(), ...wp];
    const warmup = c.warmupSteps ?? Math.round(c.warmupRatio * this.totalSteps);
    this.schedule = SCHEDULES[c.scheduler === 'plateau' ? 'constant' : c.scheduler]({ lr: this.baseLr, totalSteps: this.totalSteps, warmupSteps: Math.min(warmup, this.totalSteps - 1), minLr: c.minLr, tMax: c.tMax });
    this.policy = resolvePrecision(c.mixedPrecision);
    this.scaler = new DynamicLossScaler(this.policy.lossScaling);
    this.plateau = c.scheduler === 'plateau' ? new ReduceLROnPlateau({ mode: 'min', factor: c.plateauFactor, patience: c.plateauPatience, minLr: c.minLr }) : null;
    this.stopper = c.earlyStopping ? new EarlyStopping({ mode: c.earlyStopping.monitor === 'val_loss' ? 'min' : 'max', patience: c.earlyStopping.patience, minDelta: c.earlyStopping.minDelta }) : null;
    this.outDir = c.outputDir ?? path.join('runs', new Date().toISOString().replace(/[:.]/g, '-'));
    this.log = new MetricsLog(this.outDir);
    t.note(`precision: ${this.policy.reason}; backend: ${backend().describe()}`);
    t.note(`multi-task: ${this.tasks.map((x) => `${x.name} (${x.labels.length} labels)`).join(', ')}; weighting ${c.taskWeighting}; sampling ${c.taskSampling}`);
  }

  private elapsed(): number {
    return this.elapsedBefore + (performance.now() - this.t0) / 1e3;
  }

  async train(stopAfter?: number): Promise<History> {
    const c = this.c;
    const counts = this.model.parameterCounts();
    Object.assign(this.history, { trainableParams: counts.trainable, totalParams: counts.total, precision: this.policy.compute });
    setRng(new Rng(c.seed + 1));
    if (c.resume) this.resume();
    const info: RunInfo = { model: this.model.backbone.name, method: c.method, labels: this.tasks[0]!.labels, config: c, dataset: (this.state.splits as DatasetSplits).name,
      labelSet: this.state.primary, taskLabels: Object.fromEntries(this.tasks.map((x) => [x.name, x.labels])) };
    writeRunInfo(this.outDir, info);
    for (const cb of this.callbacks) await cb.onTrainBegin?.({ totalSteps: this.totalSteps, stepsPerEpoch: this.stepsPerEpoch });
    this.t.emit('trainBegin', { totalSteps: this.totalSteps, stepsPerEpoch: this.stepsPerEpoch, trainable: counts.trainable, total: counts.total });
    await this.loop(stopAfter);
    return this.finish();
  }

  /** The next micro-batch, or null at the end of an epoch. */
  private nextBatch(): BatchPlan | null {
    if (!this.taskSampler) {
      const idx = this.samplers[0]!.next();
      return idx && { rows: idx.map((i) => this.pools[0]![i]!), tasks: this.tasks.map((_, k) => k) };
    }
    if (this.microInEpoch >= this.batchesPerEpoch) {
      this.microInEpoch = 0;
      return null;
    }
    this.microInEpoch++;
    const k = this.taskSampler.next();
    const idx = this.samplers[k]!.next() ?? (this.samplers[k]!.next() as number[]); // a task's own epoch ends: start its next
    return { rows: idx.map((i) => this.pools[k]![i]!), tasks: [k] };
  }

  /** Forward + weighted loss + backward of one micro-batch; returns the objective and each task's loss value. */
  private microStep(plan: BatchPlan): { objective: number; losses: Map<number, number> } {
    const p = padIds(plan.rows.map((r) => this.ids[r]!), this.model.backbone.padId);
    const ids = new Tensor(p.ids, 'i32', [plan.rows.length, p.T]), mask = new Tensor(p.mask, 'f32', [plan.rows.length, p.T]); // (B, T)
    const losses = new Map<number, Tensor>();
    const total = autocast(this.policy.compute, () => {
      const h = this.model.features(ids, mask); // (B, D)
      for (const k of plan.tasks) {
        const tg = Int32Array.from(plan.rows, (r) => this.targets[k]![r]!);
        if (tg.every((x) => x < 0)) continue; // no text of this batch has the task's label
        const logits = this.model.head(this.tasks[k]!.name, h); // (B, C_k)
        losses.set(k, crossEntropy(logits, new Tensor(tg, 'i32', [tg.length]), { ignoreIndex: -1, labelSmoothing: this.c.labelSmoothing }));
      }
      return this.weighting.combine(losses);
    });
    total.scale(this.scaler.scale / this.c.gradientAccumulation).backward();
    const values = new Map([...losses].map(([k, l]) => [k, l.item()]));
    this.weighting.observe(values);
    return { objective: total.item(), losses: values };
  }

  private async loop(stopAfter?: number): Promise<void> {
    const c = this.c;
    const stopAt = stopAfter ? this.step + stopAfter : Infinity;
    let micro = 0, objSum = 0, objCount = 0, epochObj = 0, epochBatches = 0;
    const taskSum = this.tasks.map(() => 0), taskCount = this.tasks.map(() => 0);
    this.model.train();
    for (const cb of this.callbacks) await cb.onEpochBegin?.(this.epoch);
    while (this.step < this.totalSteps && this.step < stopAt) {
      const plan = this.nextBatch();
      if (plan === null) {
        await this.endEpoch(epochBatches ? epochObj / epochBatches : NaN);
        if (this.history.stoppedEarly) break;
        this.epoch++;
        epochObj = 0;
        epochBatches = 0;
        for (const cb of this.callbacks) await cb.onEpochBegin?.(this.epoch);
        continue;
      }
      const { objective, losses } = this.microStep(plan);
      objSum += objective; objCount++; epochObj += objective; epochBatches++;
      for (const [k, v] of losses) { taskSum[k]! += v; taskCount[k]!++; }
      if (++micro % c.gradientAccumulation !== 0) continue;
      const taskLoss = Object.fromEntries(this.tasks.flatMap((x, k) => (taskCount[k] ? [[x.name, taskSum[k]! / taskCount[k]!]] : [])));
      await this.optimizerStep(objSum / objCount, taskLoss);
      objSum = 0; objCount = 0;
      taskSum.fill(0); taskCount.fill(0);
      if (this.history.stoppedEarly) break;
    }
    if (!this.history.stoppedEarly && this.step >= this.totalSteps && epochBatches > 0 && this.history.epochs.every((e) => e.epoch !== this.epoch)) {
      await this.endEpoch(epochObj / epochBatches);
    }
  }

  private async optimizerStep(loss: number, taskLoss: Record<string, number>): Promise<void> {
    const c = this.c;
    const lr = this.schedule(this.step) * (this.plateau ? this.plateau.scale : 1);
    const weights = this.weighting.weights();
    const { ok, norm, policy } = this.t.applyUpdate(this.opt, this.scaler, this.policy, this.params, loss, lr, this.step);
    this.policy = policy;
    this.opt.zeroGrad();
    this.step++;
    const log: StepLog = { step: this.step, epoch: this.epoch, loss, lr, grad_norm: norm, time_s: this.elapsed(), ...(ok ? {} : { skipped: true }),
      task_loss: taskLoss, task_weight: Object.fromEntries(this.tasks.map((x, k) => [x.name, weights[k]!])) };
    if (this.step % c.logEvery === 0 || this.step === 1) {
      this.history.steps.push(log);
      this.log.write('step', log);
    }
    for (const cb of this.callbacks) await cb.onBatchEnd?.(this.step, log);
    this.t.emit('step', log, this.totalSteps);
    if (c.taskWeighting === 'dwa' && c.dwaWindow > 0 && this.step % c.dwaWindow === 0) this.weighting.endWindow();
    if (c.evalEvery > 0 && this.step % c.evalEvery === 0) await this.validate();
    if (c.saveEvery > 0 && this.step % c.saveEvery === 0) this.t.emit('checkpoint', this.checkpoint(), this.step);
  }

  private async endEpoch(trainLoss: number): Promise<void> {
    if (this.c.dwaWindow === 0) this.weighting.endWindow();
    const e: EpochLog = { epoch: this.epoch, step: this.step, train_loss: trainLoss, lr: this.schedule(Math.max(0, this.step - 1)), time_s: this.elapsed() };
    if (this.c.evalEvery === 0) {
      const v = await this.validate();
      if (v) Object.assign(e, { val_loss: v.loss, val_accuracy: v.accuracy, val_macro_f1: v.macro_f1 });
    }
    this.history.epochs.push(e);
    this.log.write('epoch', e);
    for (const cb of this.callbacks) await cb.onEpochEnd?.(this.epoch, e);
    this.t.emit('epoch', e);
  }

  /** Validation of every task: logs, plateau (on the mean task loss), early stopping (keeps the best weights). */
  private async validate(): Promise<EvalLog | null> {
    const val = (this.state.splits as DatasetSplits).validation;
    if (val.length === 0) return null;
    const r = this.state.evaluateExamples(val);
    const tasks: Record<string, TaskMetrics> = Object.fromEntries(Object.entries(r.tasks).map(([k, x]) => [k, { loss: x.loss, accuracy: x.accuracy, macro_f1: x.macro_f1, n: x.n }]));
    const losses = Object.values(tasks).map((x) => x.loss).filter(Number.isFinite);
    const loss = losses.reduce((a, b) => a + b, 0) / Math.max(1, losses.length);
    const log: EvalLog = { step: this.step, epoch: this.epoch, split: 'validation', loss, accuracy: r.accuracy, macro_f1: r.macro_f1, time_s: this.elapsed(), tasks };
    this.history.evals.push(log);
    this.log.write('eval', log);
    for (const cb of this.callbacks) await cb.onEvaluate?.(log);
    this.t.emit('evaluate', log);
    if (this.plateau && this.plateau.step(loss, this.baseLr)) this.t.note(`ReduceLROnPlateau: learning rate scale now ${this.plateau.scale}`);
    const es = this.c.earlyStopping;
    if (this.stopper && es) {
      const value = es.monitor === 'val_loss' ? loss : es.monitor === 'val_accuracy' ? r.accuracy : r.macro_f1;
      const { improved, stop } = this.stopper.check(value, this.step);
      if (improved) {
        this.history.best = { step: this.step, metric: es.monitor, value };
        if (es.restoreBest) this.best = new Map([...this.model.namedParameters()].filter(([, p]) => p.requiresGrad).map(([k, p]) => [k, p.f32().slice()]));
      }
      if (stop) {
        this.history.stoppedEarly = true;
        this.t.note(`early stopping at step ${this.step}: ${es.monitor} did not improve for ${es.patience} evaluations`);
      }
    }
    this.model.train();
    return log;
  }

  /** The trainer's checkpoint files: trainable weights, optimizer state, and the loop state (samplers, weighting, RNG). */
  private checkpoint(): string {
    const weights = new Map([...this.model.namedParameters()].filter(([, p]) => p.requiresGrad));
    const opt = this.opt.stateDict();
    return saveCheckpoint(this.outDir, this.step, {
      weights, optimizer: opt.tensors,
      state: {
        step: this.step, epoch: this.epoch, microInEpoch: this.microInEpoch, samplers: this.samplers.map((s) => s.state()), taskSampler: this.taskSampler?.state(),
        weighting: this.weighting.state(), rng: getRng().state(), optimizer: opt.meta, scaler: this.scaler.state(),
        plateau: this.plateau?.state(), stopper: this.stopper?.state(), history: this.history, elapsed: this.elapsed(),
      },
    }, this.c.keepLast);
  }

  private resume(): void {
    const dir = typeof this.c.resume === 'string' ? this.c.resume : listCheckpoints(this.outDir).pop();
    if (!dir) {
      this.t.note(`resume: no checkpoint in ${this.outDir}; starting fresh`);
      return;
    }
    const ck = loadCheckpoint(dir);
    loadTrainable(this.model, ck.weights, dir);
    const st = ck.state as { step: number; epoch: number; microInEpoch: number; samplers: Array<Record<string, unknown>>; taskSampler?: Record<string, unknown>;
      weighting: Record<string, unknown>; rng: { seed: number; counter: number }; optimizer: Parameters<Optimizer['loadStateDict']>[0]['meta'];
      scaler: ReturnType<DynamicLossScaler['state']>; plateau?: Record<string, number>; stopper?: Record<string, number>; history: History; elapsed: number };
    if (st.samplers?.length !== this.samplers.length) throw new CheckpointError(`checkpoint '${dir}' holds ${st.samplers?.length} sampler state(s); this run has ${this.samplers.length} (same 'tasks' and 'taskSampling' needed)`);
    this.opt.loadStateDict({ tensors: ck.optimizer, meta: st.optimizer });
    this.samplers.forEach((s, k) => s.load(st.samplers[k]!));
    if (this.taskSampler && st.taskSampler) this.taskSampler.load(st.taskSampler);
    this.weighting.load(st.weighting);
    setRng(new Rng(st.rng.seed, st.rng.counter));
    this.scaler.load(st.scaler);
    if (this.plateau && st.plateau) this.plateau.load(st.plateau);
    if (this.stopper && st.stopper) this.stopper.load(st.stopper);
    this.history = { ...st.history, outputs: {} };
    Object.assign(this, { step: st.step, epoch: st.epoch, microInEpoch: st.microInEpoch, elapsedBefore: st.elapsed });
    this.t.note(`resumed from ${dir} at step ${st.step}`);
  }

  private async finish(): Promise<History> {
    const h = this.history, c = this.c;
    if (this.best) {
      for (const [k, p] of this.model.namedParameters()) {
        const v = this.best.get(k);
        if (v) (p.storage as Float32Array).set(v);
      }
      this.t.note(`restored the best weights (step ${h.best?.step})`);
    }
    h.trainTimeS = this.elapsed();
    h.stepsDone = this.step;
    h.taskWeights = Object.fromEntries(this.tasks.map((x, k) => [x.name, this.weighting.weights()[k]!]));
    const test = (this.state.splits as DatasetSplits).test;
    if (test.length) {
      const r = this.state.evaluateExamples(test);
      h.test = r;
      this.log.write('test', { step: this.step, loss: r.loss, accuracy: r.accuracy, macro_f1: r.macro_f1,
        tasks: Object.fromEntries(Object.entries(r.tasks).map(([k, x]) => [k, { loss: x.loss, accuracy: x.accuracy, macro_f1: x.macro_f1, n: x.n }])) });
    }
    if (c.saveEvery > 0 || c.resume) this.checkpoint();
    h.outputs = { dir: this.outDir, metrics: this.log.file };
    if (this.t.lora) h.outputs.adapter = path.dirname(saveAdapter(this.t.lora, path.join(this.outDir, 'adapter')).weights);
    else h.outputs.model = saveTrainable(this.model, this.outDir, c.method === 'head');
    const curves = await writeCurves(this.outDir, h);
    if (curves) h.outputs.curves = curves;
    h.peakRssMb = Math.round(process.resourceUsage().maxRSS / 1024);
    for (const cb of this.callbacks) await cb.onTrainEnd?.(h);
    this.t.emit('trainEnd', h);
    return h;
  }
}

