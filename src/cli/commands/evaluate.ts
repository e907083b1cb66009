/** `autoglm eval RUN_DIR` and `autoglm predict RUN_DIR "text" ...`: use a finished fine-tune. */
import type { Command } from 'commander';
import { applyThreads, intOption } from '../options.js';
import { ConfigError } from '../../errors.js';

export function registerEvaluate(program: Command): void {
  program.command('eval')
    .description('evaluate a fine-tuned run folder on a dataset split')
    .argument('<run-dir>', 'output folder of autoglm finetune')
    .option('--dataset <name|file>', 'dataset (default: the one it was trained on)')
    .option('--split <split>', 'test | validation', 'test')
    .option('--data-dir <dir>', 'folder of the named datasets')
    .option('--max-eval <n>', 'use at most n examples', intOption('--max-eval'))
    .option('--threads <n>', 'kernel threads', intOption('--threads'))
    .option('--json', 'one JSON summary line')
    .action(async (dir: string, o: { dataset?: string; split: string; dataDir?: string; maxEval?: number; threads?: number; json?: boolean }) => {
      applyThreads(o.threads);
      if (o.split !== 'test' && o.split !== 'validation') throw new ConfigError(`option '--split' is '${o.split}'; expected test or validation`);
      const { AutoGLMTrainer } = await import('../../train/trainer.js');
      const { readRunInfo } = await import('../../train/outputs.js');
      const { loadDataset } = await import('../../data/index.js');
      const info = readRunInfo(dir);
      const trainer = await AutoGLMTrainer.load(dir);
      const splits = loadDataset({ dataset: o.dataset ?? info.dataset, dataDir: o.dataDir, maxEval: o.maxEval, seed: info.config.seed, labelSet: info.labelSet });
      const r = await trainer.evaluate(splits[o.split as 'test' | 'validation']);
      const tasks = 'tasks' in r ? (r as typeof r & { tasks: Record<string, typeof r> }).tasks : null;
      console.log(`${o.split}: accuracy ${(100 * r.accuracy).toFixed(2)}%  macro-F1 ${(100 * r.macro_f1).toFixed(2)}%  loss ${r.loss.toFixed(4)}  (${r.n} examples)`);
      for (const [name, x] of Object.entries(tasks ?? {})) console.log(`  task ${name}: accuracy ${(100 * x.accuracy).toFixed(2)}%  macro-F1 ${(100 * x.macro_f1).toFixed(2)}%  loss ${x.loss.toFixed(4)}  (${x.n} examples)`);
      const perTask = tasks ? { tasks: Object.fromEntries(Object.entries(tasks).map(([k, x]) => [k, { accuracy: x.accuracy, macro_f1: x.macro_f1, loss: x.loss, n: x.n }])) } : {};
      if (o.json) console.log(JSON.stringify({ command: 'eval', split: o.split, accuracy: r.accuracy, macro_f1: r.macro_f1, loss: r.loss, n: r.n, ...perTask }));
    });

  program.command('predict')
    .description('predict labels for texts with a fine-tuned run folder (an SFT run answers each text as a user message)')
    .argument('<run-dir>', 'output folder of autoglm finetune')
    .argument('<texts...>', 'texts to classify')
    .option('--json', 'JSON lines')
    .action(async (dir: string, texts: string[], o: { json?: boolean }) => {
      const { AutoGLMTrainer } = await import('../../train/trainer.js');
      const trainer = await AutoGLMTrainer.load(dir);
      for (const p of await trainer.predict(texts)) {
        if ('completion' in p) { // an SFT run: each text answered as a user message through the chat template
          const c = p as unknown as { prompt: string; completion: string };
          console.log(o.json ? JSON.stringify(c) : c.completion);
          continue;
        }
        const tasks = 'tasks' in p ? (p as typeof p & { tasks: Record<string, { label: string; score: number }> }).tasks : null;
        const labels = tasks ? Object.entries(tasks).map(([k, x]) => `${k}=${x.label}\t${x.score.toFixed(3)}`).join('\t') : `${p.label}\t${p.score.toFixed(3)}`;
        console.log(o.json ? JSON.stringify(p) : `${labels}\t${p.text}`);
      }
    });
}
