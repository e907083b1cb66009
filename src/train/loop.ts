/**
 * The training loop, once for every task (task.ts says what a task supplies). One optimizer step:
 *
 *   gradientAccumulation x [ task.nextBatch -> task.loss (forward under the precision policy) -> backward of
 *   loss x lossScale / accumulation -> task.afterBackward (sampler feedback) ]
 *   -> guarded update (update.ts: data-parallel sync, finite check, clip through optim/, step or skip)
 *   -> step log, callbacks, events -> evaluation every evalEvery steps (plateau, early stopping, best weights)
 *   -> checkpoint every saveEvery steps.
 *
 * An epoch ends when the task's batches run out (evaluation there when evalEvery is 0). The loop's state, the
 * task's state, the RNG, the optimizer, scheduler, loss scaler, early stopping (with its best weights), the
 * history and the data-parallel error-feedback memories go into each checkpoint, so a resumed run continues
 * bit for bit.
 *
 * On a device backend (WebGPU; device.ts says what it refuses) the same loop runs: the task's model is uploaded once,
 * each micro-batch's loss is read with `await loss.value()`, the guarded update decides the step on the device, and
 * after the test split the model is read back and the CPU backend made current for the outputs.
 */
import { Tensor } from '../tensor/tensor.js';
import { markModified } from '../tensor/versions.js';
import { Rng } from '../backend/rng.js';
import { backend, cpuBackend, setBackend } from '../backend/index.js';
import { moveToCPU, moveToDevice } from '../backend/placement.js';
import { getRng, setRng } from '../nn/init.js';
import type { Optimizer } from '../optim/optimizer.js';
import { SCHEDULES, ReduceLROnPlateau, EarlyStopping, type Schedule } from '../optim/schedule.js';
import { DynamicLossScaler, type PrecisionPolicy } from '../precision/index.js';
import type { DataParallel } from '../distributed/data-parallel.js';
import { CheckpointError, ConfigError } from '../errors.js';
import type { TrainerConfig } from './config.js';
import { emptyHistory, MetricsLog, type Callback, type EpochLog, type EvalLog, type History, type StepLog } from './history.js';
import { saveCheckpoint, loadCheckpoint, listCheckpoints } from './checkpoint.js';
import { writeRunInfo, writeCurves, loadNamed } from './outputs.js';
import { learningRate, makeOptimizer } from './setup.js';
import { guardedUpdate } from './update.js';
import { parseState, stringifyState } from './serialize.js';
import type { TrainingTask } from './task.js';
import { EvaluationAbandoned, EvaluationCut, type EvalPace } from './pace.js';

/** How often a paced validation gives the event loop a turn (pace.ts). */
const PACE_MS = 100;

/** Resolves on a later turn of the event loop (after pending I/O and signal events). */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => (typeof setImmediate === 'function' ? setImmediate(resolve) : setTimeout(resolve, 0)));
}

/** The trainer side of a run: config, events, data parallelism, the precision policy (shared with the task). */
export interface LoopHost {
  readonly config: TrainerConfig;
  readonly dp: DataParallel | null;
  /** The run's precision policy; the loop replaces `policy` when fp16 keeps overflowing. */
  readonly precision: { policy: PrecisionPolicy };
  readonly outDir: string;
  readonly callbacks: Callback[];
  /** Stop after this many optimizer steps of this call (tests of resume). */
  readonly stopAfterSteps?: number;
  /** Aborted: stop after the step under way, with a checkpoint (FinetuneArgs.signal). */
  readonly signal?: AbortSignal;
  note(msg: string): void;
  emit(event: string, ...args: unknown[]): void;
}

/**
 * A validation given up for a graceful stop (pace.ts), which resume runs first: the one after a step (evalEvery), or
 * the one that ends an epoch (evalEvery 0) with the epoch's train loss, whose log is written after it.
 */
type PendingValidation = { kind: 'step' } | { kind: 'epoch'; trainLoss: number };

/** The loop's own part of a checkpoint (trainer_state.json 'loop'). */
interface LoopState { step: number; epoch: number; epochLoss: number; epochBatches: number; elapsed: number; policy: PrecisionPolicy; pending?: PendingValidation | null }

export class TrainingLoop {
  private readonly c: TrainerConfig;
  private readonly named: Array<[string, Tensor]>;
  private readonly opt: Optimizer;
  private readonly schedule: Schedule;
  private readonly plateau: ReduceLROnPlateau | null;
  private readonly stopper: EarlyStopping | null;
  private readonly scaler: DynamicLossScaler;
  private readonly log: MetricsLog;
  private readonly baseLr: number;
  readonly totalSteps: number;
  readonly stepsPerEpoch: number;
  private history: History = emptyHistory();
  private step = 0;
  private epoch = 0;
  private epochLoss = 0;
  private epochBatches = 0;
  /** Early stopping's best weights so far (restoreBest), by trainable name. */
  private best: Map<string, Float32Array> | null = null;
  private t0 = performance.now();
  private elapsedBefore = 0;
  /** The step of the last checkpoint written or resumed from, and its folder ('' on ranks other than 0). */
  private savedAt = -1;
  private savedDir = '';
  /** The signal stopped the run (every rank agreed at the same step). */
  private interrupted = false;
  /** The validation that the signal made the run give up (one process), kept in the checkpoint; resume runs it first. */
  private pending: PendingValidation | null = null;
  /** This rank cut the validation under way short for a stop (data-parallel; see evalPace). */
  private evalCut = false;

  constructor(private readonly task: TrainingTask, private readonly host: LoopHost) {
    const c = (this.c = host.config);
    this.named = task.trainable();
    this.stepsPerEpoch = Math.max(1, Math.ceil(task.batchesPerEpoch / c.gradientAccumulation));
    this.totalSteps = Math.min(c.maxSteps ?? Infinity, c.epochs * this.stepsPerEpoch);
    task.plan?.(this.totalSteps * c.gradientAccumulation);
    this.baseLr = learningRate(c);
    this.opt = makeOptimizer(task.paramGroups(), c);
    const warmup = c.warmupSteps ?? Math.round(c.warmupRatio * this.totalSteps);
    // plateau: the constant schedule (with its warm-up) times ReduceLROnPlateau's scale
    this.schedule = SCHEDULES[c.scheduler === 'plateau' ? 'constant' : c.scheduler]!({
      lr: this.baseLr, totalSteps: this.totalSteps, warmupSteps: Math.min(warmup, this.totalSteps - 1), minLr: c.minLr, tMax: c.tMax });
    this.plateau = c.scheduler === 'plateau' ? new ReduceLROnPlateau({ mode: 'min', factor: c.plateauFactor, patience: c.plateauPatience, minLr: c.minLr }) : null;
    const es = c.earlyStopping;
    this.stopper = es ? new EarlyStopping({ mode: es.monitor === 'val_loss' ? 'min' : 'max', patience: es.patience, minDelta: es.minDelta }) : null;
    this.scaler = new DynamicLossScaler(host.precision.policy.lossScaling);
    this.log = new MetricsLog(host.outDir, this.isMain);
  }

  private get isMain(): boolean {
    return !this.host.dp || this.host.dp.rank === 0;
  }

  private get policy(): PrecisionPolicy {
    return this.host.precision.policy;
  }

  private elapsed(): number {
    return this.elapsedBefore + (performance.now() - this.t0) / 1e3;
  }

  /** Trains to the end (or `stopAfterSteps`), evaluates the test split, writes the outputs; resolves to the history. */
  async run(): Promise<History> {
    const c = this.c, h = this.host;
    const counts = this.task.model.parameterCounts();
    Object.assign(this.history, { trainableParams: counts.trainable, totalParams: counts.total, precision: this.policy.compute });
    h.note(`precision: ${this.policy.reason}; backend: ${backend().describe()}`);
    // on a device backend (device.ts): the model the task built on the CPU is uploaded once; the step stays there
    if (backend().device) moveToDevice(this.task.model.parameters());
    setRng(new Rng(c.seed + 1));
    if (c.resume) await this.resume();
    // what the task computes once before training, after a resume has restored its state (DPO's reference)
    await this.task.prepare?.();
    const info = this.task.runInfo();
    if (this.isMain && info) writeRunInfo(h.outDir, info);
    for (const cb of h.callbacks) await cb.onTrainBegin?.({ totalSteps: this.totalSteps, stepsPerEpoch: this.stepsPerEpoch });
    h.emit('trainBegin', { totalSteps: this.totalSteps, stepsPerEpoch: this.stepsPerEpoch, trainable: counts.trainable, total: counts.total });
    await this.loop();
    return this.finish();
  }

  private async loop(): Promise<void> {
    const c = this.c, task = this.task, cbs = this.host.callbacks;
    const stopAt = this.host.stopAfterSteps ? this.step + this.host.stopAfterSteps : Infinity;
    let micro = 0, lossSum = 0, lossCount = 0;
    const parts = new Map<string, { sum: number; n: number }>();
    task.model.train();
    const first = this.step;
    if (this.pending) await this.resumePending();
    // stopped before its first step (Ctrl-C while the model or data loaded): no step, nothing new to save. With data
    // parallelism the ranks agree in the first step's all-reduce instead.
    if (this.host.signal?.aborted && !this.host.dp && this.step < this.totalSteps) this.interrupted = true;
    for (const cb of cbs) await cb.onEpochBegin?.(this.epoch);
    while (!this.interrupted && !this.history.stoppedEarly && this.step < this.totalSteps && this.step < stopAt) {
      const batch = task.nextBatch();
      if (batch === null) {
        await this.endEpoch(this.epochBatches ? this.epochLoss / this.epochBatches : NaN);
        if (this.history.stoppedEarly) break;
        if (this.pending) { // its validation given up: the checkpoint keeps the epoch open, resume ends it
          this.interrupted = true;
          break;
        }
        this.epoch++;
        this.epochLoss = 0;
        this.epochBatches = 0;
        for (const cb of cbs) await cb.onEpochBegin?.(this.epoch);
        continue;
      }
      const r = task.loss(batch);
      let lv = 0;
      if (r.loss) {
        r.loss.scale(this.scaler.scale / c.gradientAccumulation).backward();
        lv = r.loss.onDevice ? await r.loss.value() : r.loss.item();
      }
      await task.afterBackward?.(batch);
      for (const [k, v] of r.parts ?? []) {
        const p = parts.get(k) ?? { sum: 0, n: 0 };
        p.sum += v;
        p.n++;
        parts.set(k, p);
      }
      lossSum += lv;
      lossCount++;
      this.epochLoss += lv;
      this.epochBatches++;
      if (++micro % c.gradientAccumulation !== 0) continue;
      const taskLoss = parts.size ? Object.fromEntries([...parts].map(([k, p]) => [k, p.sum / p.n])) : null;
      // with a signal, the event loop gets a turn each step: the step's awaits resolve at once (microtasks), so a
      // SIGINT handler (autoglm finetune) would otherwise not run until the next evaluation
      if (this.host.signal) await nextTurn();
      // a stop asked for in the last step is no interruption: the run ends as it would have
      const stop = await this.optimizerStep(lossSum / lossCount, taskLoss);
      this.interrupted = this.pending !== null || (stop && this.step < this.totalSteps && !this.history.stoppedEarly);
      lossSum = 0;
      lossCount = 0;
      parts.clear();
      if (this.history.stoppedEarly || this.interrupted) break;
    }
    // The last state of training (before the end-of-run evaluation and the best weights): resuming it with more
    // steps continues as one longer run would. An interrupted run always gets one; one that gave its validation up
    // gets one with the validation pending (also at a step that has a checkpoint: it was written before).
    if (((c.saveEvery > 0 || c.resume || (this.interrupted && this.step > first)) && this.savedAt !== this.step) || this.pending) await this.checkpoint();
    if (this.interrupted) {
      const pending = this.pending ? { validationPending: true as const } : {};
      this.history.interrupted = { step: this.step, checkpoint: this.savedDir, ...pending };
      this.log.write('interrupted', { step: this.step, checkpoint: this.savedDir, ...pending, time_s: this.elapsed() });
      const where = !this.isMain ? ' (rank 0 wrote the checkpoint)' : this.savedDir
        ? `: checkpoint ${this.savedDir} (resume ${this.pending ? 'runs the validation, then continues' : 'continues from it'})` : ': no checkpoint (nothing trained)';
      const when = this.pending ? `during the validation after step ${this.step}` : this.step > first ? `after step ${this.step}` : `before step ${this.step + 1}`;
      this.host.note(`interrupted ${when} of ${this.totalSteps}${where}`);
      return;
    }
    if (!this.history.stoppedEarly && this.step >= this.totalSteps && this.epochBatches > 0 && this.history.epochs.every((e) => e.epoch !== this.epoch)) {
      await this.endEpoch(this.epochLoss / this.epochBatches);
    }
  }

  /** One optimizer step and what follows it; true when the run is to stop after it (the signal, agreed by every rank). */
  private async optimizerStep(loss: number, taskLoss: Record<string, number> | null): Promise<boolean> {
    const c = this.c, h = this.host;
    const lr = this.schedule(this.step) * (this.plateau ? this.plateau.scale : 1);
    const extra = this.task.stepLog?.() ?? {};
    const g = await guardedUpdate({ opt: this.opt, scaler: this.scaler, named: this.named, loss, lr, maxGradNorm: c.maxGradNorm, dp: h.dp, step: this.step,
      stop: h.signal?.aborted ?? false });
    // decided on a device (ok null): this loop logs every step's outcome, so it reads the gate now
    const u = g.ok === null ? { ...g, ...(await g.settled) } : g;
    this.opt.zeroGrad();
    this.step++;
    if (!u.ok) this.overflow(); // after the count, so the note names the step as the logs and checkpoints do
    const log: StepLog = { step: this.step, epoch: this.epoch, loss: u.loss, lr, grad_norm: u.norm, time_s: this.elapsed(), ...(u.ok ? {} : { skipped: true }),
      ...(taskLoss ? { task_loss: taskLoss } : {}), ...extra };
    if (this.step % c.logEvery === 0 || this.step === 1) {
      this.history.steps.push(log);
      this.log.write('step', log);
    }
    for (const cb of h.callbacks) await cb.onBatchEnd?.(this.step, log);
    h.emit('step', log, this.totalSteps);
    this.task.afterStep?.(this.step);
    if (c.evalEvery > 0 && this.step % c.evalEvery === 0) {
      await this.validate({ kind: 'step' });
      if (this.pending) return true; // given up for the stop: no checkpoint of the step before its validation
    }
    if (c.saveEvery > 0 && this.step % c.saveEvery === 0) {
      const dir = await this.checkpoint();
      h.emit('checkpoint', dir, this.step);
    }
    return g.stop;
  }

  /** A skipped step: say so; after 5 fp16 overflows in a row, fall back to bf16 (or fp32). */
  private overflow(): void {
    const h = this.host;
    h.note(`step ${this.step}: non-finite loss or gradients; the step was skipped${this.scaler.enabled ? ` and the loss scale lowered to ${this.scaler.scale}` : ''}`);
    if (this.policy.compute === 'f16' && this.scaler.overflows >= 5) {
      const compute = backend().nativeBf16 ? 'bf16' : 'f32';
      h.precision.policy = { compute, lossScaling: false, reason: 'fp16 overflowed 5 steps in a row' };
      h.note(`fp16 overflowed 5 steps in a row: falling back to ${compute === 'bf16' ? 'bf16' : 'fp32'}`);
    }
  }

  private async endEpoch(trainLoss: number): Promise<void> {
    const h = this.host;
    // data-parallel: a rank's micro-batch losses are its shares of the global batches' means, so the epoch's train loss
    // is their sum over the ranks (every rank ends its epochs at the same batch)
    if (h.dp) [trainLoss] = (await h.dp.sumNumbers([trainLoss])) as [number];
    this.task.endEpoch?.(this.epoch);
    await this.epochLog(trainLoss);
  }

  /** An epoch's log: its train loss and, with evalEvery 0, its validation (given up for a stop: no log yet). */
  private async epochLog(trainLoss: number): Promise<void> {
    const h = this.host;
    const e: EpochLog = { epoch: this.epoch, step: this.step, train_loss: trainLoss,
      lr: this.schedule(Math.max(0, this.step - 1)) * (this.plateau ? this.plateau.scale : 1), time_s: this.elapsed() };
    if (this.c.evalEvery === 0) {
      const v = await this.validate({ kind: 'epoch', trainLoss });
      if (this.pending) return;
      if (v) Object.assign(e, { val_loss: v.loss, val_accuracy: v.accuracy, val_macro_f1: v.macro_f1 });
    }
    this.history.epochs.push(e);
    this.log.write('epoch', e);
    for (const cb of h.callbacks) await cb.onEpochEnd?.(this.epoch, e);
    h.emit('epoch', e);
  }

  /**
   * Validation: logs, the plateau scheduler, early stopping (keeping the best weights in memory). Given up when the
   * run's signal asks for a stop before the last step (one process; see evalPace): then `pending` says which, and it
   * returns null.
   */
  private async validate(which: PendingValidation): Promise<EvalLog | null> {
    const h = this.host, es = this.c.earlyStopping;
    let r: Awaited<ReturnType<TrainingTask['evaluate']>>;
    this.evalCut = false;
    try {
      r = await this.task.evaluate('validation', this.evalPace());
    } catch (e) {
      if (!(e instanceof EvaluationAbandoned)) throw e;
      this.pending = which;
      return null;
    } finally {
      this.task.model.train();
    }
    // data-parallel: whether any rank cut its part short for a stop (one all-reduce a validation, on every rank, with
    // or without a signal); if one did, the figures are partial and every rank gives the validation up
    if (h.dp && (await h.dp.sumNumbers([this.evalCut ? 1 : 0]))[0] > 0) {
      this.pending = which;
      return null;
    }
    if (!r) return null;
    // only the metrics the task measures (an SFT or causal-LM pass has no accuracy: no NaN in the logs)
    const log: EvalLog = { step: this.step, epoch: this.epoch, split: 'validation', loss: r.loss,
      ...(r.accuracy !== undefined ? { accuracy: r.accuracy } : {}), ...(r.macro_f1 !== undefined ? { macro_f1: r.macro_f1 } : {}),
      ...(r.perplexity !== undefined ? { perplexity: r.perplexity } : {}), time_s: this.elapsed(), ...(r.tasks ? { tasks: r.tasks } : {}),
      ...(r.rewards ? { rewards: r.rewards } : {}) };
    if (r.perplexity !== undefined) this.history.perplexity = { ...this.history.perplexity, validation: r.perplexity };
    if (r.rewards) this.history.preference = { ...this.history.preference, validation: { loss: r.loss, ...r.rewards } };
    this.history.evals.push(log);
    this.log.write('eval', log);
    for (const cb of h.callbacks) await cb.onEvaluate?.(log);
    h.emit('evaluate', log);
    if (this.plateau && this.plateau.step(r.loss, this.baseLr)) h.note(`ReduceLROnPlateau: learning rate scale now ${this.plateau.scale}`);
    if (this.stopper && es) {
      // the task's `monitors` list what it measures (config validation refuses the others)
      const value = es.monitor === 'val_loss' ? r.loss : (es.monitor === 'val_accuracy' ? log.accuracy : log.macro_f1) ?? NaN;
      const { improved, stop } = this.stopper.check(value, this.step);
      if (improved) {
        this.history.best = { step: this.step, metric: es.monitor, value };
        if (es.restoreBest) this.best = new Map(this.named.map(([k, t]) => [k, t.f32().slice()]));
      }
      if (stop) {
        this.history.stoppedEarly = true;
        h.note(`early stopping at step ${this.step}: ${es.monitor} did not improve for ${es.patience} evaluations (best ${this.stopper.best.toFixed(4)} at step ${this.stopper.bestStep})`);
      }
    }
    return log;
  }

  /**
   * What validation awaits before each batch when the run has a signal: a turn of the event loop every PACE_MS (so
   * that the signal's handler runs, and a second signal can end the process), and EvaluationAbandoned once the stop
   * is asked for before the last step. A data-parallel rank instead cuts its part short (EvaluationCut: its loops end,
   * its collectives still run) and `validate` agrees with the other ranks to give the validation up. After the last
   * step the run finishes its evaluations and outputs, as a stop asked for then always did.
   */
  private evalPace(): EvalPace | undefined {
    const signal = this.host.signal;
    if (!signal) return undefined;
    const abandonable = this.step < this.totalSteps, dp = !!this.host.dp;
    let last = performance.now();
    return async () => {
      if (performance.now() - last >= PACE_MS) {
        await nextTurn();
        last = performance.now();
      }
      if (!abandonable || !signal.aborted) return;
      if (!dp) throw new EvaluationAbandoned('validation given up for a graceful stop');
      this.evalCut = true;
      throw new EvaluationCut('validation cut short for a graceful stop');
    };
  }

  /** A resumed run's first act when its checkpoint holds a validation given up for a stop: that validation. */
  private async resumePending(): Promise<void> {
    const p = this.pending!, c = this.c;
    this.pending = null;
    this.host.note(`resume: the validation ${p.kind === 'step' ? `after step ${this.step}` : `ending epoch ${this.epoch}`}, given up when the run stopped, runs first`);
    if (p.kind === 'step') {
      await this.validate(p);
      if (!this.pending && c.saveEvery > 0 && this.step % c.saveEvery === 0) {
        const dir = await this.checkpoint();
        this.host.emit('checkpoint', dir, this.step);
      }
    } else {
      await this.epochLog(p.trainLoss);
      if (!this.pending && !this.history.stoppedEarly) {
        this.epoch++;
        this.epochLoss = 0;
        this.epochBatches = 0;
      }
    }
    if (this.pending) this.interrupted = true;
  }

  private async finish(): Promise<History> {
    const h = this.history, host = this.host;
    if (this.interrupted) return this.finishInterrupted();
    if (this.best) {
      for (const [k, t] of this.named) {
        const v = this.best.get(k);
        if (!v) continue;
        (t.storage as Float32Array).set(v);
        markModified(t);
      }
      host.note(`restored the best weights (step ${h.best?.step})`);
    }
    h.trainTimeS = this.elapsed();
    h.stepsDone = this.step;
    this.task.finish?.(h);
    let r: Awaited<ReturnType<TrainingTask['evaluate']>>;
    try {
      r = await this.task.evaluate('test');
    } catch (e) {
      // the trained model is finished work: it is written before the evaluation's error goes up
      await this.saveAfterFailedTest(e);
      throw e;
    }
    if (r) {
      if (r.report) h.test = r.report;
      if (r.perplexity !== undefined) h.perplexity = { ...h.perplexity, test: r.perplexity };
      if (r.rewards) h.preference = { ...h.preference, test: { loss: r.loss, ...r.rewards } };
      this.log.write('test', { step: this.step, loss: r.loss, accuracy: r.accuracy, macro_f1: r.macro_f1, perplexity: r.perplexity, tokens: r.tokens, tasks: r.tasks, rewards: r.rewards });
    }
    const device = await this.modelToCPU();
    if (device) host.note(`trained on ${device}; the finished model is on the CPU backend (${backend().name}), now current`);
    if (host.dp) h.communication = host.dp.summary();
    if (this.isMain) {
      h.outputs = { dir: host.outDir, ...(await this.task.saveOutputs(host.outDir)), metrics: this.log.file };
      const curves = await writeCurves(host.outDir, h);
      if (curves) h.outputs.curves = curves;
    }
    h.peakRssMb = Math.round(process.resourceUsage().maxRSS / 1024);
    for (const cb of host.callbacks) await cb.onTrainEnd?.(h);
    host.emit('trainEnd', h);
    return h;
  }

  /**
   * A device-resident model goes back to the CPU backend, made current (for the outputs, evaluate and predict);
   * returns the device's name, or null when training ran on the CPU.
   */
  private async modelToCPU(): Promise<string | null> {
    const device = backend().device ? backend() : null;
    if (!device) return null;
    await moveToCPU(this.task.model.parameters());
    setBackend(cpuBackend());
    return device.name;
  }

  /** The finished model's outputs when the test evaluation threw (rank 0; the error goes up after this). */
  private async saveAfterFailedTest(e: unknown): Promise<void> {
    if (!this.isMain) return;
    try {
      await this.modelToCPU();
      const out = await this.task.saveOutputs(this.host.outDir);
      this.host.note(`the test evaluation failed (${e instanceof Error ? e.message : String(e)}); the trained model is saved: ${Object.values(out).join(', ')}`);
    } catch (e2) {
      this.host.note(`the test evaluation failed, and so did saving the trained model: ${e2 instanceof Error ? e2.message : String(e2)}`);
    }
  }

  /**
   * The end of an interrupted run: its counts and timings, no best weights restored, no test evaluation, no outputs
   * but the checkpoint (written by loop) and the metrics log; the model stays as trained (on the CPU backend).
   */
  private async finishInterrupted(): Promise<History> {
    const h = this.history, host = this.host;
    h.trainTimeS = this.elapsed();
    h.stepsDone = this.step;
    this.task.finish?.(h);
    await this.modelToCPU();
    if (host.dp) h.communication = host.dp.summary();
    if (this.isMain) h.outputs = { dir: host.outDir, checkpoint: this.savedDir, metrics: this.log.file };
    h.peakRssMb = Math.round(process.resourceUsage().maxRSS / 1024);
    for (const cb of host.callbacks) await cb.onTrainEnd?.(h);
    host.emit('trainEnd', h);
    return h;
  }

  /** Writes a checkpoint (rank 0; every rank contributes its error-feedback memory); returns its folder ('' on other ranks). */
  private async checkpoint(): Promise<string> {
    const dp = this.host.dp;
    let dpStates: unknown[] | null = null;
    if (dp && dp.method !== 'dense') {
      const parts = await dp.comm.allGather(new TextEncoder().encode(stringifyState(dp.state())));
      dpStates = parts.map((b) => parseState(new TextDecoder().decode(b)));
    }
    this.savedAt = this.step;
    this.savedDir = '';
    if (!this.isMain) return '';
    const opt = this.opt.stateDict();
    const loop: LoopState = { step: this.step, epoch: this.epoch, epochLoss: this.epochLoss, epochBatches: this.epochBatches, elapsed: this.elapsed(), policy: this.policy,
      pending: this.pending };
    const best = this.best && new Map([...this.best].map(([k, v]) => [k, new Tensor(v, 'f32', [v.length])]));
    return (this.savedDir = saveCheckpoint(this.host.outDir, this.step, {
      weights: new Map(this.named), optimizer: opt.tensors, best,
      state: {
        format: 2, task: this.task.name, loop, rng: getRng().state(), optimizer: opt.meta, scaler: this.scaler.state(),
        plateau: this.plateau?.state(), stopper: this.stopper?.state(), taskState: this.task.state(), history: this.history,
        dp: dpStates ? { worldSize: dpStates.length, ranks: dpStates } : undefined,
      },
    }, this.c.keepLast));
  }

  /** Restores everything a checkpoint holds (exact continuation). */
  private async resume(): Promise<void> {
    const c = this.c, h = this.host;
    const dir = typeof c.resume === 'string' ? c.resume : listCheckpoints(h.outDir).pop();
    if (!dir) {
      h.note(`resume: no checkpoint in ${h.outDir}; starting fresh`);
      return;
    }
    const ck = loadCheckpoint(dir);
    const st = ck.state as { format?: number; task?: string; loop: LoopState; rng: { seed: number; counter: number }; optimizer: Parameters<Optimizer['loadStateDict']>[0]['meta'];
      scaler: ReturnType<DynamicLossScaler['state']>; plateau?: Record<string, number>; stopper?: Record<string, number>; taskState: Record<string, unknown>; history: History;
      dp?: { worldSize: number; ranks: unknown[] } };
    if (st.format !== 2 || !st.loop) throw new CheckpointError(`checkpoint '${dir}' was written by an older version of the trainer (no loop state); start the run afresh or resume from a newer checkpoint`);
    if (st.task !== this.task.name) throw new CheckpointError(`checkpoint '${dir}' is of task '${st.task}'; this run is task '${this.task.name}'`);
    const missing = this.named.find(([k]) => !ck.weights.has(k));
    if (missing) throw new CheckpointError(`checkpoint '${dir}' has no weights for trainable '${missing[0]}' (same model, method and task needed)`);
    // the task's state first (its data order): a checkpoint written with other data settings is refused before any
    // weight of this run is overwritten
    try {
      this.task.load(st.taskState, dir);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      throw new CheckpointError(`checkpoint '${dir}' was written with other data settings than this run's (${e.message}); `
        + 'resume with the settings it was written with (packing, sampler, curriculum, batch size), or start afresh');
    }
    loadNamed(this.named, ck.weights, dir);
    this.opt.loadStateDict({ tensors: ck.optimizer, meta: st.optimizer });
    setRng(new Rng(st.rng.seed, st.rng.counter));
    this.scaler.load(st.scaler);
    if (this.plateau && st.plateau) this.plateau.load(st.plateau);
    if (this.stopper && st.stopper) this.stopper.load(st.stopper);
    if (ck.best && c.earlyStopping && c.earlyStopping.restoreBest) this.best = new Map([...ck.best].map(([k, t]) => [k, t.f32().slice()]));
    h.precision.policy = st.loop.policy;
    this.history = { ...st.history, outputs: {} };
    ({ step: this.step, epoch: this.epoch, epochLoss: this.epochLoss, epochBatches: this.epochBatches, elapsed: this.elapsedBefore } = st.loop);
    this.pending = st.loop.pending ?? null;
    const dp = h.dp;
    if (dp && dp.method !== 'dense') {
      if (st.dp && st.dp.worldSize === dp.worldSize) dp.load(st.dp.ranks[dp.rank]);
      else h.note(`resume: checkpoint '${dir}' has no error-feedback memory for ${dp.worldSize} ranks${st.dp ? ` (it was written by ${st.dp.worldSize})` : ''}; the memories start at zero`);
    }
    this.savedAt = this.step;
    this.savedDir = this.isMain ? dir : '';
    h.note(`resumed from ${dir} at step ${this.step}`);
  }
}
