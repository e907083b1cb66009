/**
 * `AutoGLMTrainer`: fine-tuning behind one call, a thin front over the task registry and the loop.
 *
 *   const trainer = new AutoGLMTrainer({ model: 'open-autoglm-base', config: { loraRank: 8 } });
 *   const history = await trainer.finetune({ dataset: 'custom_intent_v2' });
 *
 * The config picks the task (tasks.ts: classification, multi-task, causal-lm, ...) and every key is checked
 * against it when the trainer is built; `finetune` lets the task build its model and data, opens data-parallel
 * communication under `autoglm launch`, and runs the one training loop (loop.ts) over it.
 *
 * Events: 'note' (a message, said once), 'trainBegin', 'step', 'evaluate', 'epoch', 'checkpoint' (folder, step),
 * 'curriculumRefresh', 'trainEnd'.
 */
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { resolvePrecision, type PrecisionPolicy } from '../precision/index.js';
import type { LoraModel } from '../peft/index.js';
import type { SequenceClassifier, TextEncoder } from '../models/classifier.js';
import type { DatasetSplits } from '../data/index.js';
import { DataParallel } from '../distributed/data-parallel.js';
import { createCommunicator, currentRankInfo } from '../distributed/env.js';
import { checkSamplingConfig } from '../curriculum/index.js';
import { checkTaskConfig } from '../multitask/tasks.js';
import { AutoGLMError, ConfigError } from '../errors.js';
import { isDefaultValue, parseTrainerConfig, type TrainerConfig, type TrainerConfigInput } from './config.js';
import type { History } from './history.js';
import type { EvalResult, Prediction } from './evaluate.js';
import type { ChatGenerationOptions, ChatPrediction, SftEvalOptions, SftEvalResult } from '../sft/types.js';
import { readRunInfo } from './outputs.js';
import { learningRate } from './setup.js';
import { checkTaskKeys, taskDefinitions, taskOf } from './tasks.js';
import { ClassificationTask } from './classification.js';
import { TrainingLoop } from './loop.js';
import { checkDeviceConfig, refuseDeviceDataParallel } from './device.js';
import { backend, cpuBackend, setBackend, type Backend } from '../backend/index.js';
import { onCpu } from '../backend/placement.js';
import type { FinetuneArgs, TaskContext, TaskDefinition, TrainingTask } from './task.js';
import type { DpoEvalResult } from './dpo.js';

export type { FinetuneArgs } from './task.js';

/** Whether predictions are an SFT run's answers (else a classification run's labels). */
export function isChatPrediction(p: Prediction | ChatPrediction): p is ChatPrediction {
  return 'completion' in p && !('label' in p);
}

/** Whether an evaluation is an SFT run's (loss, perplexity, exact match), else a classification run's. */
export function isSftEvalResult(r: EvalResult | SftEvalResult | DpoEvalResult): r is SftEvalResult {
  return 'perplexity' in r && !('accuracy' in r);
}

/** Whether an evaluation is a DPO run's (preference loss, reward accuracy, rewards). */
export function isDpoEvalResult(r: EvalResult | SftEvalResult | DpoEvalResult): r is DpoEvalResult {
  return 'rewards' in r;
}

/** Tasks whose runs are decoders: they evaluate on files and answer prompts through the chat template. */
const DECODER_RUNS = new Set(['sft', 'dpo']);

/** How long a rank waits for the others in one collective (a dead peer is reported at once, not after this). */
const DP_TIMEOUT_MS = 10 * 60 * 1000;

export interface TrainerOptions {
  /** A registered model name (default 'open-autoglm-base'), a Hugging Face folder or Hub id (causal-lm), or a TextEncoder. */
  model?: string | TextEncoder;
  config?: TrainerConfigInput;
}

/** How `AutoGLMTrainer.load` rebuilds a run. */
export interface LoadRunOptions {
  /**
   * The frozen base in full precision even where the run trained on a quantised one (`baseQuantization`): what a
   * merge folds the adapter into, as PEFT merges a QLoRA adapter into the unquantised base. Default false: the base
   * as it was trained (its evaluation reproduces the run's figures).
   */
  unquantizedBase?: boolean;
}

export class AutoGLMTrainer extends EventEmitter {
  readonly config: TrainerConfig;
  /** The task the config picks (its refusals and checks already passed). */
  readonly definition: TaskDefinition;
  private readonly modelSpec: string | TextEncoder;
  /** The task of the last fine-tune (or of `load`): its model, data, evaluation. */
  task: TrainingTask | null = null;
  /** Data-parallel communication while a launched run trains (world size > 1), else null. */
  dp: DataParallel | null = null;
  private precision: { policy: PrecisionPolicy };
  private notes = new Set<string>();
  /**
   * The device backend of this trainer's last fine-tune: a run leaves the CPU backend current (the finished model
   * is read back), and the next `finetune` of this trainer runs on the device again rather than falling back.
   */
  private device: Backend | null = null;

  /** `checkKeys` false: a finished run's saved config, rebuilt by `load` (checked when it was trained). */
  constructor(opts: TrainerOptions = {}, checkKeys = true) {
    super();
    this.config = parseTrainerConfig(opts.config ?? {});
    this.modelSpec = opts.model ?? 'open-autoglm-base';
    if (this.config.baseQuantization !== 'none' && this.config.method !== 'lora') {
      throw new ConfigError(`config key 'baseQuantization' is '${this.config.baseQuantization}': a quantised base needs method 'lora' (got '${this.config.method}')`);
    }
    if (!isDefaultValue('baseDoubleQuant', this.config.baseDoubleQuant) && this.config.baseQuantization !== 'nf4') {
      throw new ConfigError(`config key 'baseDoubleQuant' is ${this.config.baseDoubleQuant}: it applies to baseQuantization 'nf4', not '${this.config.baseQuantization}'`);
    }
    this.definition = checkKeys ? checkTaskKeys(this.config) : taskOf(this.config);
    checkTaskConfig(this.config);
    checkSamplingConfig(this.config);
    this.precision = { policy: resolvePrecision(this.config.mixedPrecision) };
    if (checkKeys && backend().device) checkDeviceConfig(this.config, this.definition, backend().name);
  }

  /** Says a thing once per trainer (stderr, or the 'note' event when someone listens). */
  note(msg: string): void {
    if (this.notes.has(msg)) return;
    this.notes.add(msg);
    this.emit('note', msg);
    if (this.listenerCount('note') === 0) process.stderr.write(`autoglm: ${msg}\n`);
  }

  /** False on data-parallel ranks other than 0: they train and evaluate but write no files. */
  get isMain(): boolean {
    return !this.dp || this.dp.rank === 0;
  }

  get learningRate(): number {
    return learningRate(this.config);
  }

  /** The sequence classifier of a classification run, else null. */
  get classifier(): SequenceClassifier | null {
    return this.task instanceof ClassificationTask ? this.task.model : null;
  }

  get lora(): LoraModel | null {
    return this.task?.lora ?? null;
  }

  /** The labels of a classification run (the first task's in a multi-task run). */
  get labels(): string[] {
    return (this.task as { labels?: string[] } | null)?.labels ?? [];
  }

  private context(): TaskContext {
    const self = this;
    return {
      config: this.config, modelSpec: this.modelSpec,
      get dp() { return self.dp; },
      get compute() { return self.precision.policy.compute; },
      note: (m) => this.note(m),
      emit: (e, ...a) => void this.emit(e, ...a),
    };
  }

  /** A classification model for `labels` with the method applied (tests of the setup). */
  private async prepareModel(labels: string[]): Promise<SequenceClassifier> {
    const task = await ClassificationTask.build(this.context(), labels, null);
    this.task = task;
    return task.model;
  }

  /** Fine-tunes on `dataset`; resolves to the History of the run. */
  async finetune(args: FinetuneArgs): Promise<History> {
    const ds = (args as Partial<FinetuneArgs> | undefined)?.dataset;
    if (typeof ds !== 'string' && (typeof ds !== 'object' || ds === null)) {
      throw new ConfigError(`finetune needs { dataset }: a named dataset (e.g. 'custom_intent_v2'), a file, or loaded splits; got ${ds === undefined ? 'none' : JSON.stringify(ds)}`);
    }
    const c = this.config, def = this.definition, rank = currentRankInfo();
    if (rank.worldSize > 1 && !def.dataParallel) {
      const dp = taskDefinitions().filter((d) => d.dataParallel).map((d) => `'${d.name}'`).join(', ');
      throw new ConfigError(`data-parallel training (autoglm launch) supports task ${dp} for now; task '${def.name}' runs in one process`);
    }
    if (this.device && !backend().device) setBackend(this.device);
    const device = (this.device = backend().device ? backend() : null);
    if (device) {
      // the backend may have been made current after the trainer was built
      checkDeviceConfig(c, def, device.name);
      refuseDeviceDataParallel(rank.worldSize, device.name);
    }
    this.precision = { policy: resolvePrecision(c.mixedPrecision) };
    if (rank.worldSize > 1) {
      this.dp = new DataParallel(await createCommunicator(rank, { timeoutMs: DP_TIMEOUT_MS }), { compression: c.gradientCompression, seed: c.seed });
      this.note(`data-parallel: rank ${rank.rank} of ${rank.worldSize} (${rank.backend}), gradients ${this.dp.method === 'dense' ? 'as a dense all-reduce' : `compressed with ${this.dp.method}`}`);
    } else if (c.gradientCompression !== false) {
      this.note('gradientCompression takes effect with data-parallel training (autoglm launch); with one process it changes nothing');
    }
    try {
      // built on the CPU (seeded initialisation, loading, the method applied); the loop uploads it on a device backend
      this.task = await onCpu(() => def.create(this.context(), args));
      let outDir = c.outputDir ?? path.join('runs', new Date().toISOString().replace(/[:.]/g, '-'));
      if (this.dp) outDir = await this.dp.agree(outDir); // one folder for the run, named by rank 0
      const loop = new TrainingLoop(this.task, {
        config: c, dp: this.dp, precision: this.precision, outDir, callbacks: args.callbacks ?? [], stopAfterSteps: args.stopAfterSteps, signal: args.signal,
        note: (m) => this.note(m), emit: (e, ...a) => void this.emit(e, ...a),
      });
      return await loop.run();
    } finally {
      await this.dp?.comm.close();
      this.dp = null;
    }
  }

  /**
   * Evaluates the fine-tuned model on a split of the last dataset ('test' | 'validation'), or on examples
   * (classification, multi-task), or on a dataset file (sft, dpo). Classification runs report an `EvalResult`
   * (accuracy, macro-F1, loss, per-class report; per task in a multi-task run); SFT runs an `SftEvalResult` (loss
   * and perplexity over the scored tokens, and with `opts.exactMatch` the share of prompts answered exactly); DPO runs
   * a `DpoEvalResult` (preference loss, reward accuracy and rewards against the base model; opts: maxEval).
   */
  async evaluate(split: 'test' | 'validation' | DatasetSplits['test'] | string = 'test', opts: SftEvalOptions = {}): Promise<EvalResult | SftEvalResult | DpoEvalResult> {
    if (!this.task) throw new AutoGLMError(`'evaluate' needs a fine-tuned model: call finetune() first (or AutoGLMTrainer.load)`);
    if (!this.task.evaluateOn) throw new ConfigError(`'evaluate' works on classification, multi-task, sft and dpo runs; task '${this.task.name}' reports its evaluation in the history of finetune()`);
    if (!DECODER_RUNS.has(this.task.name)) {
      if (typeof split === 'string' && split !== 'test' && split !== 'validation') throw new ConfigError(`'evaluate' takes 'test', 'validation' or examples for task '${this.task.name}' (got '${split}'; a file: load it with loadDataset and pass its examples)`);
      if (Object.keys(opts).length) throw new ConfigError(`evaluation options ${Object.keys(opts).map((k) => `'${k}'`).join(', ')} apply to sft runs; task '${this.task.name}' takes none`);
    }
    return (await this.task.evaluateOn(split, opts)) as EvalResult | SftEvalResult | DpoEvalResult;
  }

  /**
   * Predictions for texts: a classification run's labels with probabilities (`Prediction`, per task in a
   * multi-task run); an SFT run's answers, each text sent as a user message through the chat template
   * (`ChatPrediction`; greedy unless `opts.doSample`). Narrow with `isChatPrediction`.
   */
  async predict(texts: string[], opts: ChatGenerationOptions = {}): Promise<Prediction[] | ChatPrediction[]> {
    if (!this.task) throw new AutoGLMError(`'predict' needs a fine-tuned model: call finetune() first (or AutoGLMTrainer.load)`);
    if (!this.task.predict) throw new ConfigError(`'predict' works on classification, multi-task and sft runs; task '${this.task.name}' has no labels to predict or chat template to answer through`);
    if (!DECODER_RUNS.has(this.task.name) && Object.keys(opts).length) throw new ConfigError(`generation options ${Object.keys(opts).map((k) => `'${k}'`).join(', ')} apply to sft and dpo runs; task '${this.task.name}' predicts labels`);
    return (await this.task.predict(texts, opts)) as Prediction[] | ChatPrediction[];
  }

  /** Rebuilds a trainer from a finished run's output folder (for eval/predict). */
  static async load(dir: string, opts: LoadRunOptions = {}): Promise<AutoGLMTrainer> {
    const info = readRunInfo(dir);
    const unquantized = opts.unquantizedBase ? { baseQuantization: 'none' as const, baseDoubleQuant: true } : {};
    const t = new AutoGLMTrainer({ model: info.model, config: { ...info.config, resume: false, outputDir: dir, ...unquantized } }, false);
    if (!t.definition.load) throw new ConfigError(`'${dir}' holds a task '${t.definition.name}' run, which AutoGLMTrainer.load cannot rebuild; its adapter or model folder is in '${dir}'`);
    if (backend().device) {
      // as after a fine-tune on the device: a finished model is evaluated and predicts on the CPU backend
      t.note(`AutoGLMTrainer.load: the ${backend().name} backend was current; the loaded model runs on the CPU backend (${cpuBackend().name}), now current`);
      setBackend(cpuBackend());
    }
    t.task = await t.definition.load(t.context(), dir, info);
    return t;
  }
}
