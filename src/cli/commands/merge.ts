/**
 * `autoglm merge RUN_DIR --out DIR`: folds a LoRA run's adapter into the base model and saves a plain model
 * (`model.safetensors` with every weight, `autoglm.json` with method 'full'), usable by eval/predict without
 * the adapter machinery. Reports the largest change of any output logit on a few probe texts (should be ~1e-6).
 */
import type { Command } from 'commander';
import { mkdirSync, copyFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../../errors.js';

export function registerMerge(program: Command): void {
  program.command('merge')
    .description('merge a LoRA run\'s adapter into the base weights and save a plain model')
    .argument('<run-dir>', 'output folder of autoglm finetune --method lora')
    .requiredOption('--out <dir>', 'where to write the merged model')
    .option('--json', 'one JSON summary line')
    .action(async (dir: string, o: { out: string; json?: boolean }) => {
      const { AutoGLMTrainer } = await import('../../train/trainer.js');
      const { readRunInfo, writeRunInfo, saveTrainable } = await import('../../train/outputs.js');
      const info = readRunInfo(dir);
      if (info.method !== 'lora') throw new ConfigError(`'${dir}' was trained with method '${info.method}'; merge needs a LoRA run`);
      if (info.config.tasks) throw new ConfigError(`'${dir}' is a multi-task run (config 'tasks'); merge of a multi-task run is not supported yet`);
      const trainer = await AutoGLMTrainer.load(dir);
      const probes = ['set an alarm for seven', 'what is the weather like', 'play some jazz', 'how do I say hello in french'];
      const before = await trainer.predict(probes);
      const { maxError } = (trainer.lora as NonNullable<typeof trainer.lora>).mergeAndUnload();
      const after = await trainer.predict(probes);
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
      console.log(`merged ${dir} into ${file}; largest change of a predicted probability on probe texts: ${drift.toExponential(2)}${maxError ? `; storage re-quantisation error ${maxError.toExponential(2)}` : ''}`);
      if (o.json) console.log(JSON.stringify({ command: 'merge', model: file, prob_drift: drift, storage_error: maxError }));
    });
}
