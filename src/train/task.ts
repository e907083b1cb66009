/**
 * The task interface: what varies between kinds of training. The loop (loop.ts) is written once and owns
 * micro-batch accumulation, the guarded update (loss scale, finite check, clipping through optim/, skip on
 * overflow), schedules (plateau included), evaluation with early stopping and best-weights restore, history,
 * events and callbacks, checkpoints and resume, and the data-parallel hooks. A task supplies the rest: its model,
 * its batches, its loss, its evaluation, its own state and its outputs (HF Trainer's `compute_loss` /
 * `training_step` split, nanoGPT's `get_batch` / `estimate_loss`).
 *
 * How a new task plugs in (one file + one line in tasks.ts):
 *   1. Write `src/train/<name>.ts` exporting a `TaskDefinition`: its `name`, the config keys it cannot give a
 *      meaning to (`refuses`: key -> why; refused when set to anything but the schema default), any value-level
 *      checks (`check`), the early-stopping monitors it reports (`monitors`), whether it runs data-parallel, and
 *      `create(ctx)`, which builds the model (setup.ts has the method: LoRA / full / head, parameter groups) and
 *      loads the data, and returns a `TrainingTask`.
 *   2. Register it: `registerTask(def)` in tasks.ts (the registry throws on a duplicate name).
 *   3. The `TrainingTask` it returns:
 *      - batches: `batchesPerEpoch`, `nextBatch()` (null ends an epoch), optional `plan(totalMicroBatches)`;
 *      - loss: `loss(batch)` -> the micro-batch objective (a scalar Tensor; the loop scales it and calls
 *        backward) + optional named parts (logged per step as `task_loss`); `afterBackward` for per-sample
 *        feedback (loss-weighted and curriculum samplers), `afterStep`, `endEpoch`, `stepLog` for extra step fields;
 *      - evaluation: `evaluate('validation' | 'test')` -> loss and whatever metrics it has (accuracy, macro_f1,
 *        perplexity, per task); the loop logs it, runs plateau / early stopping on it, keeps the best weights;
 *      - state: `state()` / `load()` of everything besides weights and optimizer that an exact resume needs
 *        (samplers, task weighting, ...). It is serialised losslessly (serialize.ts: typed arrays, NaN, ±Infinity);
 *      - outputs: `runInfo()` (autoglm.json), `saveOutputs(dir)` (adapter or weights), `finish(history)` for
 *        task-specific history fields; optional `evaluateOn` / `predict` for `AutoGLMTrainer.evaluate/predict`.
 * Every other config key is the loop's and means the same for every task; a key a task cannot honour must be in
 * its `refuses` (the key x task table test in test/train-keys.test.ts holds every key to this).
 *
 * A task built on another composes it: supervised fine-tuning of a decoder is causal-LM with other data, so its
 * definition can be `create: (ctx, args) => CausalLMTask.create(ctx, args, sftData, 'sft')` where `sftData` is an
 * `LMDataLoader` yielding `LMExample`s whose labels are IGNORE_INDEX on the prompt, with `refuses:
 * CAUSAL_LM_REFUSES` and `check: (c) => checkCausalLM(c, 'sft')` (all in causal-lm.ts).
 */
import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';
import type { ComputeDType } from '../tensor/precision.js';
import type { ParamsInput } from '../optim/optimizer.js';
import type { LoraModel } from '../peft/index.js';
import type { TextEncoder } from '../models/classifier.js';
import type { BadLine, DatasetSpec, DatasetSplits } from '../data/index.js';
import type { DataParallel } from '../distributed/data-parallel.js';
import type { TrainerConfig } from './config.js';
import type { Callback, History, PreferenceRewards, StepLog, TaskMetrics } from './history.js';
import type { RunInfo } from './outputs.js';
import type { EvalPace } from './pace.js';

export interface FinetuneArgs extends Partial<Omit<DatasetSpec, 'dataset'>> {
  /** A named dataset, a file, or splits already loaded. */
  dataset: string | DatasetSplits;
  callbacks?: Callback[];
  /** Stop after this many optimizer steps of this call (tests of resume). */
  stopAfterSteps?: number;
  /**
   * Stops the run gracefully once aborted: the optimizer step under way finishes, a checkpoint of it is written to the
   * output folder (whatever `saveEvery` says), and `finetune` resolves to the history with `interrupted` set, without
   * the test evaluation and the final outputs; `resume` continues it exactly. With data parallelism every rank stops
   * after the same step (the ranks agree in the step's all-reduce), so one rank's signal stops them all.
   * `autoglm finetune` aborts it on SIGINT and SIGTERM.
   */
  signal?: AbortSignal;
}

/** The run's controls in FinetuneArgs; everything else is the dataset's (DatasetSpec's fields). */
type RunControls = 'callbacks' | 'stopAfterSteps' | 'signal';

/** Says how many bad lines (records) a run's data skipped under onBadLine 'skip', and the first one, file:line and why. */
export function noteSkipped(ctx: Pick<TaskContext, 'note'>, skipped: readonly BadLine[], unit: 'line' | 'record', where = ''): void {
  const f = skipped[0];
  if (f) ctx.note(`skipped ${skipped.length} bad ${unit}(s)${where} (first: ${f.file}:${f.line}: ${f.reason})`);
}

/** FinetuneArgs without the run's controls: the dataset as `loadDataset` takes it (with `dataset` still possibly splits). */
export function datasetArgs(args: FinetuneArgs): Omit<FinetuneArgs, RunControls> {
  const { callbacks: _c, stopAfterSteps: _s, signal: _a, ...spec } = args;
  return spec;
}

/** What a task gets from the trainer when it is created. */
export interface TaskContext {
  readonly config: TrainerConfig;
  /** The trainer's `model` option: a registered name, a folder / Hub id, or a TextEncoder. */
  readonly modelSpec: string | TextEncoder;
  /** Data-parallel communication when launched with world size > 1, else null (tasks shard batches and evaluation with it). */
  readonly dp: DataParallel | null;
  /** The autocast dtype right now (the loop may fall back from fp16 after repeated overflows). */
  readonly compute: ComputeDType;
  /** Says a thing once per trainer (stderr, or the trainer's 'note' event). */
  note(msg: string): void;
  /** Emits a trainer event (e.g. 'curriculumRefresh'). */
  emit(event: string, ...args: unknown[]): void;
}

/** One micro-batch's objective. */
export interface MicroBatchLoss {
  /**
   * The scalar whose gradient is taken (the loop multiplies it by the loss scale / gradientAccumulation and calls
   * backward); null when this data-parallel rank has no rows in the micro-batch. With data parallelism it is this
   * rank's share of the global batch's mean, so that the ranks' gradients sum to the global batch's.
   */
  loss: Tensor | null;
  /** Named parts (e.g. each task's loss), averaged per optimizer step into StepLog.task_loss. */
  parts?: ReadonlyMap<string, number>;
}

/** A split's evaluation: the loss (what plateau and early stopping on 'val_loss' watch) and the task's metrics. */
export interface TaskEval {
  loss: number;
  accuracy?: number;
  macro_f1?: number;
  perplexity?: number;
  /** Tokens scored (causal-LM). */
  tokens?: number;
  tasks?: Record<string, TaskMetrics>;
  /** Preference tuning: the rewards (accuracy is their reward accuracy). */
  rewards?: PreferenceRewards;
  /** The full report that the history keeps for the test split. */
  report?: History['test'];
}

export type EvalSplit = 'validation' | 'test';

/** A task after `create`: its model, data and the hooks the loop calls. */
export interface TrainingTask<B = unknown> {
  readonly name: string;
  /** The trained module (train/eval mode, parameter counts). */
  readonly model: Module;
  /** LoRA state when the method is 'lora' (outputs, merge), else null. */
  readonly lora: LoraModel | null;
  /** The name of the base model (run info, notes). */
  readonly baseName: string;
  /**
   * Every trainable tensor by a stable name, in an order that is the same on every rank: what the optimizer
   * steps, checkpoints save, data-parallel training syncs and early stopping restores.
   */
  trainable(): Array<[string, Tensor]>;
  /** Optimizer parameter groups over `trainable()` (learning-rate scales, weight decay). */
  paramGroups(): ParamsInput;

  // ---- batches --------------------------------------------------------------------------------------------
  /** Micro-batches in one epoch. */
  readonly batchesPerEpoch: number;
  /** Told once before training: how many micro-batches the run will draw (step-paced samplers). */
  plan?(totalMicroBatches: number): void;
  /**
   * Called once before the first step, after a resume has loaded `state()` (so that what a checkpoint holds is not
   * computed again): e.g. DPO's reference log-probabilities. May communicate (every rank calls it).
   */
  prepare?(): Promise<void>;
  /** The next micro-batch, or null at the end of an epoch (the next call starts the next epoch). */
  nextBatch(): B | null;

  // ---- loss -------------------------------------------------------------------------------------------------
  /** Forward pass and objective of a micro-batch, in train mode; the task runs its forward under `autocast(ctx.compute, ...)`. */
  loss(batch: B): MicroBatchLoss;
  /** After the micro-batch's backward (per-sample feedback to samplers; may communicate). */
  afterBackward?(batch: B): void | Promise<void>;
  /** Extra fields of the step's log, read before the update (e.g. the task weights the step used). */
  stepLog?(): Partial<StepLog>;
  /** After each optimizer step (step = steps done). */
  afterStep?(step: number): void;
  /** At the end of each epoch, before its validation. */
  endEpoch?(epoch: number): void;

  // ---- evaluation -----------------------------------------------------------------------------------------------
  /** Loss and metrics on a split of the run's data, or null where the split is empty. Restores train mode itself. */
  /**
   * A split's loss and metrics. During training (validation) the loop passes `pace`, to await before each batch: it
   * lets a graceful stop's signal through and throws EvaluationAbandoned to give the evaluation up (pace.ts).
   */
  evaluate(split: EvalSplit, pace?: EvalPace): Promise<TaskEval | null>;

  // ---- state ------------------------------------------------------------------------------------------------------
  /** Everything but weights and optimizer state that an exact resume needs (serialised losslessly). */
  state(): Record<string, unknown>;
  /** Restores `state()`; `where` names the checkpoint for errors. */
  load(state: Record<string, unknown>, where: string): void;

  // ---- outputs ------------------------------------------------------------------------------------------------------
  /** What autoglm.json records to rebuild the run (null: nothing to write). */
  runInfo(): RunInfo | null;
  /** Saves the trained adapter or weights under `dir`; returns what was written (name -> path). */
  saveOutputs(dir: string): Promise<Record<string, string>>;
  /** Task-specific fields of the final history (e.g. the final task weights). */
  finish?(history: History): void;
  /**
   * `AutoGLMTrainer.evaluate`: a split of the run's data, examples, or a dataset file (tasks that read files); `opts`
   * are the task's own evaluation options (the trainer refuses them for tasks that take none).
   */
  evaluateOn?(split: EvalSplit | DatasetSplits['test'] | string, opts?: object): Promise<unknown>;
  /** `AutoGLMTrainer.predict`; `opts` as for evaluateOn (generation settings of task sft). */
  predict?(texts: string[], opts?: object): Promise<unknown[]>;
}

/** A registered kind of training. */
export interface TaskDefinition {
  readonly name: string;
  /** One line for help texts. */
  readonly description: string;
  /**
   * Config keys this task cannot give a meaning to, with the reason: a ConfigError when set to anything other
   * than the schema default (a key at its default changes nothing).
   */
  readonly refuses: Readonly<Partial<Record<keyof TrainerConfig, string>>>;
  /** Early-stopping monitors this task's evaluation reports. */
  readonly monitors: ReadonlyArray<'val_loss' | 'val_accuracy' | 'val_macro_f1'>;
  /** Whether it runs under `autoglm launch` with more than one rank. */
  readonly dataParallel: boolean;
  /** Value-level checks (e.g. a method the task cannot train with); throw ConfigError naming the key and the task. */
  check?(c: TrainerConfig): void;
  /** Builds the model and the data for a fine-tune. */
  create(ctx: TaskContext, args: FinetuneArgs): Promise<TrainingTask>;
  /** Rebuilds a finished run's model from its output folder, for evaluate / predict. */
  load?(ctx: TaskContext, dir: string, info: RunInfo): Promise<TrainingTask>;
}
