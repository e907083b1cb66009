/** What a run records (History), the Keras-style callbacks it calls, and the metrics log. */
import { accessSync, appendFileSync, constants, mkdirSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import path from 'node:path';
import type { ClassificationReport } from './metrics.js';

export interface StepLog { step: number; epoch: number; loss: number; lr: number; grad_norm: number; time_s: number; skipped?: boolean;
  /** Multi-task runs: each task's loss in the step's batches and its weight. */
  task_loss?: Record<string, number>; task_weight?: Record<string, number>;
  /** DPO runs: the step's rewards (means over its pairs). */
  rewards?: PreferenceRewards }
/**
 * A preference-tuning run's rewards, as TRL logs them: the means over pairs of β(log π − log π_ref) of the chosen and
 * the rejected answers, their difference, and the share of pairs whose chosen reward is the larger.
 */
export interface PreferenceRewards { chosen: number; rejected: number; margin: number; accuracy: number;
  /** KTO: the KL estimate (its reference point); accuracy is then the share of examples on their label's side of it. */
  kl?: number }
/** One task's numbers in a multi-task evaluation. */
export interface TaskMetrics { loss: number; accuracy: number; macro_f1: number; n: number }
/** One validation pass. accuracy and macro_f1: classification and multi-task runs (absent where the task has no labels to
 * score: causal-LM and SFT runs, which report perplexity). */
export interface EvalLog { step: number; epoch: number; split: string; loss: number; accuracy?: number; macro_f1?: number; time_s: number; perplexity?: number;
  /** Multi-task runs: every task (the top-level accuracy/macro_f1 are the first task's, loss the mean over tasks). */
  tasks?: Record<string, TaskMetrics>;
  /** DPO runs: the split's rewards (accuracy above is their reward accuracy). */
  rewards?: PreferenceRewards }
export interface EpochLog { epoch: number; step: number; train_loss: number; val_loss?: number; val_accuracy?: number; val_macro_f1?: number; lr: number; time_s: number }

export interface History {
  epochs: EpochLog[];
  evals: EvalLog[];
  steps: StepLog[];
  /** The test split's report at the end (when the dataset has one). */
  test?: ClassificationReport & { loss: number; tasks?: Record<string, ClassificationReport & { loss: number }> };
  /** Multi-task runs: the final weight of each task's loss. */
  taskWeights?: Record<string, number>;
  best?: { step: number; metric: string; value: number };
  /** DPO runs: preference loss and rewards of the last validation pass and of the test split (when there is one). */
  preference?: { validation?: PreferenceRewards & { loss: number }; test?: PreferenceRewards & { loss: number } };
  /** Causal-LM runs: perplexity of the last validation pass and of the test split (when there is one). */
  perplexity?: { validation?: number; test?: number };
  stoppedEarly: boolean;
  /**
   * Set when `finetune`'s signal stopped the run (SIGINT or SIGTERM under `autoglm finetune`): the last step done and
   * the checkpoint written after it ('' on data-parallel ranks other than 0), from which `resume` continues exactly.
   * Such a run has no test evaluation and no final outputs. `validationPending`: the stop came during the validation
   * after that step, which was given up; resume runs it first.
   */
  interrupted?: { step: number; checkpoint: string; validationPending?: true };
  /** Optimizer steps taken. */
  stepsDone: number;
  trainTimeS: number;
  peakRssMb: number;
  /** Data-parallel runs: gradient bytes this rank sent vs dense f32, and the time spent on them. */
  communication?: import('../distributed/data-parallel.js').CommunicationSummary;
  trainableParams: number;
  totalParams: number;
  outputs: Record<string, string>;
  precision: string;
}

export interface Callback {
  onTrainBegin?(logs: { totalSteps: number; stepsPerEpoch: number }): void | Promise<void>;
  onTrainEnd?(history: History): void | Promise<void>;
  onEpochBegin?(epoch: number): void | Promise<void>;
  onEpochEnd?(epoch: number, logs: EpochLog): void | Promise<void>;
  onBatchEnd?(step: number, logs: StepLog): void | Promise<void>;
  onEvaluate?(logs: EvalLog): void | Promise<void>;
}

export function emptyHistory(): History {
  return { epochs: [], evals: [], steps: [], stoppedEarly: false, stepsDone: 0, trainTimeS: 0, peakRssMb: 0, trainableParams: 0, totalParams: 0, outputs: {}, precision: 'fp32' };
}

/** Appends one JSON line per event to <dir>/metrics.jsonl. */
export class MetricsLog {
  readonly file: string;
  /** enabled false: a data-parallel rank other than 0, which writes nothing. */
  constructor(dir: string, readonly enabled = true) {
    // before training: a folder that cannot be made or written is a ConfigError now, not a lost run at its end
    if (enabled) {
      try {
        mkdirSync(dir, { recursive: true });
        accessSync(dir, constants.W_OK);
      } catch (e) {
        throw new ConfigError(`outputDir '${dir}' cannot hold the run's files: ${(e as Error).message}`);
      }
    }
    this.file = path.join(dir, 'metrics.jsonl');
  }
  write(kind: string, data: object): void {
    if (this.enabled) appendFileSync(this.file, `${JSON.stringify({ kind, ...data })}\n`);
  }
}
