/**
 * `autoglm merge <run | adapter> --out DIR`: folds a LoRA adapter into its base model.
 *
 * - A causal-LM / SFT run folder (its `adapter/`), or a PEFT adapter folder (adapter_config.json +
 *   adapter_model.safetensors, from this library or from Python PEFT): the result is a complete Hugging Face folder
 *   (config.json, model.safetensors, tokenizer files with the chat template, generation_config.json) that
 *   `autoglm generate` and transformers load. The base is the adapter's base_model_name_or_path unless --base
 *   names it. Reports the largest logit change between base + adapter and the merged folder reloaded (~1e-6).
 * - A classification run folder (autoglm.json, method lora): a plain model (`model.safetensors` with every weight,
 *   `autoglm.json` with method 'full') usable by eval/predict; reports the largest change of a predicted
 *   probability on a few probe texts. A run trained on a quantised base (int8, nf4) is merged into the full-precision
 *   base, as PEFT merges a QLoRA adapter: the drift it reports is against the run on its quantised base.
 */
import type { Command } from 'commander';
import { mkdirSync, copyFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../../errors.js';
import { choiceOption } from '../options.js';
import type { Prediction } from '../../train/evaluate.js';

interface MergeOpts { out: string; base?: string; dtype: 'f32' | 'bf16' | 'f16'; json?: boolean }

async function mergeClassifier(dir: string, o: MergeOpts): Promise<void> {
  const { AutoGLMTrainer } = await import('../../train/trainer.js');
  const { readRunInfo, writeRunInfo, saveTrainable } = await import('../../train/outputs.js');
  const info = readRunInfo(dir);
  if (info.method !== 'lora') throw new ConfigError(`'${dir}' was trained with method '${info.method}'; merge needs a LoRA run`);
  if (info.config.tasks) throw new ConfigError(`'${dir}' is a multi-task run (config 'tasks'); merge of a multi-task run is not supported yet`);
  const probes = ['set an alarm for seven', 'what is the weather like', 'play some jazz', 'how do I say hello in french'];
  // the run as it was trained (on its quantised base, if any) gives the reference predictions; the adapter is folded
  // into the full-precision base (as PEFT merges a QLoRA adapter), so the merged folder is a plain f32 model
  const quantized = info.config.baseQuantization !== undefined && info.config.baseQuantization !== 'none';
  const asTrained = await AutoGLMTrainer.load(dir);
  const before = (await asTrained.predict(probes)) as Prediction[];
  const trainer = quantized ? await AutoGLMTrainer.load(dir, { unquantizedBase: true }) : asTrained;
  const { maxError } = (trainer.lora as NonNullable<typeof trainer.lora>).mergeAndUnload();
  const after = (await trainer.predict(probes)) as Prediction[];
  let drift = 0;
  before.forEach((p, i) => p.top.forEach((t) => {
    const q = after[i].top.find((x) => x.label === t.label);
    drift = Math.max(drift, q ? Math.abs(q.score - t.score) : 1);
  }));
  mkdirSync(o.out, { recursive: true });
  const model = trainer.classifier as NonNullable<typeof trainer.classifier>;
  for (const p of model.parameters()) p.requiresGrad = p.dtype === 'f32';
  const file = saveTrainable(model, o.out, false);
  writeRunInfo(o.out, { ...info, method: 'full', config: { ...info.config, method: 'full', baseQuantization: 'none' } });
  copyFileSync(path.join(dir, 'metrics.jsonl'), path.join(o.out, 'metrics.jsonl'));
  const against = quantized ? ` (against the run on its ${info.config.baseQuantization} base; merged into the full-precision base)` : '';
  console.log(`merged ${dir} into ${file}; largest change of a predicted probability on probe texts: ${drift.toExponential(2)}${against}${maxError ? `; storage re-quantisation error ${maxError.toExponential(2)}` : ''}`);
  if (o.json) console.log(JSON.stringify({ command: 'merge', model: file, prob_drift: drift, storage_error: maxError }));
}

/** A classification run: autoglm.json whose task is classification (the default) and no decoder adapter. */
async function isClassificationRun(dir: string): Promise<boolean> {
  if (!existsSync(path.join(dir, 'autoglm.json'))) return false;
  const { readRunInfo } = await import('../../train/outputs.js');
  const task = (readRunInfo(dir).config as { task?: string }).task ?? 'classification';
  return task === 'classification';
}

export function registerMerge(program: Command): void {
  program.command('merge')
    .description('merge a LoRA adapter (a run folder or a PEFT adapter folder) into its base weights and save a plain model')
    .argument('<run-or-adapter>', 'output folder of autoglm finetune --method lora, or an adapter folder (adapter_config.json + adapter_model.safetensors)')
    .requiredOption('--out <dir>', 'where to write the merged model')
    .option('--base <model>', "the base model folder or Hub id (default: the adapter's base_model_name_or_path)")
    .option('--dtype <d>', 'weights in the merged folder: f32 | bf16 | f16', choiceOption('--dtype', ['f32', 'bf16', 'f16'] as const), 'f32')
    .option('--json', 'one JSON summary line')
    .action(async (dir: string, o: MergeOpts) => {
      if (await isClassificationRun(dir)) {
        if (o.base) throw new ConfigError(`option '--base' applies to decoder adapters; '${dir}' is a classification run, whose base is recorded in autoglm.json`);
        return mergeClassifier(dir, o);
      }
      const { mergeAdapterToHF } = await import('../../sft/merge.js');
      const r = await mergeAdapterToHF(dir, o.out, { base: o.base, dtype: o.dtype });
      console.log(`merged the adapter of ${dir} into ${r.base}: ${o.out} (config.json, model.safetensors, tokenizer files, generation_config.json); largest logit change, base + adapter vs merged folder: ${r.maxLogitDiff.toExponential(2)}`);
      if (o.json) console.log(JSON.stringify({ command: 'merge', model: o.out, base: r.base, max_logit_diff: r.maxLogitDiff, storage_error: r.storageError }));
    });
}
