/**
 * `autoglm finetune`: fine-tunes a model on a dataset. With no arguments it is the main job: LoRA on
 * open-autoglm-base over the embedded custom_intent_v2 dataset, ending with test accuracy, time and memory. A
 * classification run also prints the test accuracy of a bag-of-words baseline (unigram + bigram logistic regression,
 * src/eval/bow-baseline.ts) on the same splits, fitted after training (so it changes neither the time nor the peak
 * RSS reported), so that the fine-tuned accuracy can be read against what word counts alone get.
 */
import { CommanderError, type Command } from 'commander';
import type { DatasetSpec } from '../../data/types.js';
import { addConfigFlags, configFromFlags } from '../config-flags.js';
import { applyThreads, choiceOption, intOption } from '../options.js';
import { ConfigError } from '../../errors.js';

type DataFlags = Pick<DatasetSpec, 'dataset' | 'evalDataset' | 'testDataset' | 'textField' | 'labelField' | 'labelSet' | 'dataDir' | 'onBadLine' | 'maxTrain' | 'maxEval'>;
interface Opts extends Record<string, unknown>, DataFlags {
  model: string;
  threads?: number;
  backend?: 'auto' | 'native' | 'wasm' | 'portable' | 'webgpu';
  json?: boolean;
  quiet?: boolean;
  baseline: boolean;
}

/**
 * Under `autoglm launch --max-restarts N` (AUTOGLM_MAX_RESTARTS > 0): checkpoints must go to a known folder, and
 * a restarted attempt (AUTOGLM_RESTART_COUNT > 0) resumes from the last one there unless `resume` says otherwise.
 */
export function underRestarts(cfg: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  const max = Number(env.AUTOGLM_MAX_RESTARTS ?? 0);
  if (!(max > 0)) return cfg;
  if (typeof cfg.outputDir !== 'string') {
    throw new ConfigError(`'launch --max-restarts ${max}' needs finetune's --output-dir: the folder whose last checkpoint a restart continues from`);
  }
  if (!(typeof cfg.saveEvery === 'number' && cfg.saveEvery > 0)) {
    throw new ConfigError(`'launch --max-restarts ${max}' needs finetune's --save-every N (> 0): without checkpoints a restart would start over`);
  }
  if (Number(env.AUTOGLM_RESTART_COUNT ?? 0) > 0 && cfg.resume === undefined) return { ...cfg, resume: true };
  return cfg;
}

export function registerFinetune(program: Command): void {
  const cmd = program.command('finetune')
    .description('fine-tune a model for text classification (default: LoRA on open-autoglm-base over custom_intent_v2)')
    .option('--model <name>', 'registered model name, or (tasks causal-lm, sft, dpo) a Hugging Face folder or Hub id', 'open-autoglm-base')
    .option('--dataset <name|file>', 'named dataset (custom_intent_v2, clinc150, snips, massive-en, slurp) or a .jsonl/.json/.csv file (tasks sft and dpo: also .parquet; dpo: preference pairs)', 'custom_intent_v2')
    .option('--eval-dataset <file>', 'validation file (default: the dataset\'s own split, or a seeded split)')
    .option('--test-dataset <file>', 'test file')
    .option('--text-field <name>', 'text field of file datasets (default text)')
    .option('--label-field <name>', 'label field of file datasets (default label)')
    .option('--label-set <name>', 'which label set is the target (clinc150: intent|domain; slurp: intent|scenario|action)')
    .option('--data-dir <dir>', 'folder of the named datasets (default AUTOGLM_DATA_DIR, else ../shared/data)')
    .option('--on-bad-line <policy>', 'skip | error', choiceOption('--on-bad-line', ['skip', 'error'] as const))
    .option('--max-train <n>', 'use at most n training examples', intOption('--max-train'))
    .option('--max-eval <n>', 'use at most n validation/test examples', intOption('--max-eval'))
    .option('--threads <n>', 'kernel threads', intOption('--threads'))
    .option('--backend <name>', "where the kernels run: auto (native, else wasm, else portable) | native | wasm | portable | webgpu (Dawn in Node: " +
      "a GPU driver or Mesa's lavapipe; none is an error, not a fall back) (default: AUTOGLM_BACKEND, else auto)",
    choiceOption('--backend', ['auto', 'native', 'wasm', 'portable', 'webgpu'] as const))
    .option('--json', 'print one machine-readable summary line last')
    .option('--quiet', 'no progress output')
    .option('--no-baseline', 'skip the bag-of-words baseline printed beside the test accuracy (classification)');
  addConfigFlags(cmd);
  cmd.action(async (o: Opts) => {
    applyThreads(o.threads);
    // before the trainer is built: WebGPU loads asynchronously (initBackend), and the trainer checks its keys against it
    const { initBackend } = await import('../../backend/init.js');
    await initBackend(o.backend ? { prefer: o.backend } : {});
    const { AutoGLMTrainer } = await import('../../train/trainer.js');
    const { attachProgress } = await import('../progress.js');
    const trainer = new AutoGLMTrainer({ model: o.model, config: underRestarts(configFromFlags(o)) });
    const stop = attachProgress(trainer, !!o.quiet);
    // SIGINT / SIGTERM: the step under way finishes, a checkpoint is written, and the command exits 130 / 143
    const { onInterrupt, signalExitCode } = await import('../interrupt.js');
    const interrupt = onInterrupt();
    let h;
    try {
      h = await trainer.finetune({
        dataset: o.dataset, evalDataset: o.evalDataset, testDataset: o.testDataset, textField: o.textField, labelField: o.labelField,
        labelSet: o.labelSet, dataDir: o.dataDir, onBadLine: o.onBadLine, maxTrain: o.maxTrain, maxEval: o.maxEval, signal: interrupt.signal,
      });
    } finally {
      interrupt.dispose();
      stop();
    }
    if (h.interrupted) {
      // a data-parallel rank may stop because another rank was asked to (the ranks agree): no signal of its own
      const got = interrupt.received(), sig = got ?? 'SIGTERM', by = got ? `by ${got}` : '(another rank was stopped)';
      const ck = h.interrupted.checkpoint;
      if (ck) {
        // a stop during a validation gives it up; resume runs it first
        const when = h.interrupted.validationPending ? `during the validation after step ${h.stepsDone}` : `after step ${h.stepsDone}`;
        console.log(`interrupted ${by} ${when}: checkpoint ${ck}; continue with the same command and --resume ${ck}`
          + ' (or --resume true with the same --output-dir)');
      } else if (h.stepsDone === 0) {
        console.log(`interrupted ${by} before the first step: nothing trained, nothing saved`);
      }
      if (o.json) {
        console.log(JSON.stringify({ command: 'finetune', model: o.model, dataset: o.dataset, method: trainer.config.method, interrupted: got ?? 'another rank', steps: h.stepsDone,
          checkpoint: ck || null, train_time_s: +h.trainTimeS.toFixed(2), peak_rss_mb: h.peakRssMb, outputs: h.outputs }));
      }
      throw new CommanderError(signalExitCode(sig), 'autoglm.interrupted', '');
    }
    const t = h.test;
    const baseline = t && !t.tasks && o.baseline ? await bowBaselineOf(o, trainer.config.seed) : null;
    const lines = [
      `method ${trainer.config.method}, ${h.trainableParams.toLocaleString('en-US')} trainable of ${h.totalParams.toLocaleString('en-US')} parameters, precision ${h.precision}`,
      t ? `test accuracy ${(100 * t.accuracy).toFixed(2)}%  macro-F1 ${(100 * t.macro_f1).toFixed(2)}%  (${t.n} examples)`
        : h.perplexity ? `perplexity: validation ${h.perplexity.validation?.toFixed(3) ?? '-'}, test ${h.perplexity.test?.toFixed(3) ?? '-'}`
        : h.preference ? `preference: ${Object.entries(h.preference).map(([k, p]) => `${k} reward accuracy ${(100 * p.accuracy).toFixed(2)}%, margin ${p.margin.toFixed(4)}${p.kl === undefined ? '' : `, KL ${p.kl.toFixed(4)}`}, loss ${p.loss.toFixed(4)}`).join('; ')}` : 'no test split',
      ...(t && baseline ? [`bag-of-words baseline (unigram+bigram logistic regression): ${(100 * baseline.accuracy).toFixed(1)}% | fine-tuned: ${(100 * t.accuracy).toFixed(1)}%`] : []),
      `train time ${h.trainTimeS.toFixed(1)} s, peak RSS ${h.peakRssMb} MB`,
      Object.keys(h.outputs).length ? `outputs: ${Object.entries(h.outputs).map(([k, v]) => `${k}=${v}`).join('  ')}` : 'outputs: written by rank 0',
    ];
    const cm = h.communication;
    if (cm) lines.splice(3, 0, `data-parallel: ${cm.worldSize} ranks, gradients ${cm.method}: ${(cm.bytes / 2 ** 20).toFixed(1)} MB sent by this rank${cm.method === 'dense' ? '' : ` vs ${(cm.denseBytes / 2 ** 20).toFixed(1)} MB dense (${cm.compressionRatio.toFixed(1)}x fewer)`}, ${cm.commSeconds.toFixed(1)} s in communication`);
    lines.splice(baseline ? 3 : 2, 0, ...Object.entries(t?.tasks ?? {}).map(([name, r]) => `  task ${name}: accuracy ${(100 * r.accuracy).toFixed(2)}%  macro-F1 ${(100 * r.macro_f1).toFixed(2)}%  (${r.n} examples)`));
    for (const l of lines) console.log(l);
    if (o.json) {
      console.log(JSON.stringify({
        command: 'finetune', model: o.model, dataset: o.dataset, method: trainer.config.method,
        accuracy: t?.accuracy ?? null, macro_f1: t?.macro_f1 ?? null, test_loss: t?.loss ?? null, baseline_bow_accuracy: baseline?.accuracy ?? null,
        ...(t?.tasks ? { tasks: Object.fromEntries(Object.entries(t.tasks).map(([k, r]) => [k, { accuracy: r.accuracy, macro_f1: r.macro_f1, loss: r.loss, n: r.n }])), task_weights: h.taskWeights } : {}),
        ...(h.perplexity ? {
          val_perplexity: h.perplexity.validation ?? null, test_perplexity: h.perplexity.test ?? null,
          eval_loss: h.evals.length ? h.evals[h.evals.length - 1].loss : null, perplexity: h.perplexity.validation ?? null,
        } : {}),
        ...(h.preference ? {
          eval_loss: h.preference.validation?.loss ?? null, reward_accuracy: h.preference.validation?.accuracy ?? null, reward_margin: h.preference.validation?.margin ?? null,
          test_reward_accuracy: h.preference.test?.accuracy ?? null,
          ...(h.preference.validation?.kl !== undefined ? { kl: h.preference.validation.kl } : {}),
        } : {}),
        train_time_s: +h.trainTimeS.toFixed(2), peak_rss_mb: h.peakRssMb, trainable_params: h.trainableParams, total_params: h.totalParams,
        steps: h.stepsDone, stopped_early: h.stoppedEarly, precision: h.precision, outputs: h.outputs,
        ...(cm ? { communication: cm } : {}),
      }));
    }
  });
}

/** The bag-of-words baseline on the splits the trainer used (same spec, same seed); on rank 0 only under `launch`. */
async function bowBaselineOf(o: Opts, seed: number) {
  const { currentRankInfo } = await import('../../distributed/env.js');
  if (currentRankInfo().rank !== 0) return null;
  const { loadDataset } = await import('../../data/index.js');
  const { bowBaseline } = await import('../../eval/index.js');
  const splits = loadDataset({
    dataset: o.dataset, evalDataset: o.evalDataset, testDataset: o.testDataset, textField: o.textField, labelField: o.labelField,
    labelSet: o.labelSet, dataDir: o.dataDir, onBadLine: o.onBadLine, maxTrain: o.maxTrain, maxEval: o.maxEval, seed,
  });
  return splits.test.length > 0 ? bowBaseline(splits) : null;
}
