/** `autoglm eval RUN_DIR` and `autoglm predict RUN_DIR "text" ...`: use a finished fine-tune. */
import type { Command } from 'commander';
import { applyThreads, intOption } from '../options.js';
import { ConfigError } from '../../errors.js';
import type { EvalResult } from '../../train/evaluate.js';
import type { SftEvalResult } from '../../sft/types.js';
import type { DpoEvalResult } from '../../train/dpo.js';

interface EvalOpts { dataset?: string; split: string; dataDir?: string; maxEval?: number; exactMatch?: boolean; maxNewTokens?: number; threads?: number; json?: boolean }

/**
 * An SFT run: loss and perplexity over the scored tokens (the answers, under completion-only loss) of the run's
 * validation / test split (re-read from the files autoglm.json names) or of every record of --dataset; with
 * --exact-match, greedy answers compared with the references.
 */
async function evalSft(dir: string, o: EvalOpts): Promise<void> {
  if (o.dataDir) throw new ConfigError(`option '--data-dir' names the folder of the classification datasets; an SFT run takes --dataset <file>`);
  const { AutoGLMTrainer } = await import('../../train/trainer.js');
  const trainer = await AutoGLMTrainer.load(dir);
  const what = o.dataset ?? o.split;
  const r = (await trainer.evaluate(what, { exactMatch: o.exactMatch, maxEval: o.maxEval, maxNewTokens: o.maxNewTokens })) as SftEvalResult;
  const em = r.exact_match !== undefined ? `  exact match ${(100 * r.exact_match).toFixed(2)}% of ${r.answered}` : '';
  console.log(`${what}: loss ${r.loss.toFixed(4)}  perplexity ${r.perplexity.toFixed(3)}  (${r.n} examples, ${r.tokens} scored tokens)${em}`);
  for (const s of r.samples ?? []) console.log(`  ${JSON.stringify(s.prompt)} -> ${JSON.stringify(s.generated)} (reference ${JSON.stringify(s.reference)})`);
  if (o.json) {
    console.log(JSON.stringify({ command: 'eval', task: 'sft', split: o.dataset ? null : o.split, dataset: o.dataset ?? null, loss: r.loss, perplexity: r.perplexity,
      tokens: r.tokens, n: r.n, ...(r.exact_match !== undefined ? { exact_match: r.exact_match, answered: r.answered } : {}) }));
  }
}

/**
 * A DPO run: preference loss, reward accuracy and rewards against the base model (adapters off, or the base model
 * loaded) on the run's validation / test pairs or on every pair of --dataset.
 */
async function evalDpo(dir: string, o: EvalOpts): Promise<void> {
  if (o.dataDir) throw new ConfigError(`option '--data-dir' names the folder of the classification datasets; a DPO run takes --dataset <file>`);
  if (o.exactMatch || o.maxNewTokens !== undefined) throw new ConfigError(`options '--exact-match' and '--max-new-tokens' apply to SFT runs; '${dir}' is a task 'dpo' run`);
  const { AutoGLMTrainer } = await import('../../train/trainer.js');
  const trainer = await AutoGLMTrainer.load(dir);
  const what = o.dataset ?? o.split;
  const r = (await trainer.evaluate(what, { maxEval: o.maxEval })) as DpoEvalResult;
  const kto = r.rewards.kl !== undefined; // KTO: unpaired examples, scored against its KL estimate
  console.log(`${what}: reward accuracy ${(100 * r.accuracy).toFixed(2)}%  margin ${r.rewards.margin.toFixed(4)}  (chosen ${r.rewards.chosen.toFixed(4)}, rejected ${r.rewards.rejected.toFixed(4)}${kto ? `, KL ${r.rewards.kl!.toFixed(4)}` : ''})  loss ${r.loss.toFixed(4)}  (${r.n} ${kto ? 'examples' : 'pairs'})`);
  if (o.json) console.log(JSON.stringify({ command: 'eval', task: 'dpo', split: o.dataset ? null : o.split, dataset: o.dataset ?? null, loss: r.loss, accuracy: r.accuracy, rewards: r.rewards, n: r.n }));
}

export function registerEvaluate(program: Command): void {
  program.command('eval')
    .description('evaluate a fine-tuned run folder on a dataset split (an SFT run: loss, perplexity and optionally exact match of greedy answers; a DPO run: preference loss, reward accuracy and margin against the base)')
    .argument('<run-dir>', 'output folder of autoglm finetune')
    .option('--dataset <name|file>', 'dataset (default: the one it was trained on; an SFT or DPO run: a file whose every record is evaluated)')
    .option('--split <split>', 'test | validation', 'test')
    .option('--data-dir <dir>', 'folder of the named datasets')
    .option('--max-eval <n>', 'use at most n examples', intOption('--max-eval'))
    .option('--exact-match', 'SFT runs: answer each prompt greedily and compare with the reference answer (last assistant turn / completion)')
    .option('--max-new-tokens <n>', 'SFT runs with --exact-match: tokens generated at most (default: twice the reference length + 8)', intOption('--max-new-tokens'))
    .option('--threads <n>', 'kernel threads', intOption('--threads'))
    .option('--json', 'one JSON summary line')
    .action(async (dir: string, o: EvalOpts) => {
      applyThreads(o.threads);
      if (o.split !== 'test' && o.split !== 'validation') throw new ConfigError(`option '--split' is '${o.split}'; expected test or validation`);
      const { AutoGLMTrainer } = await import('../../train/trainer.js');
      const { readRunInfo } = await import('../../train/outputs.js');
      const info = readRunInfo(dir);
      if ((info.config as { task?: string }).task === 'sft') return evalSft(dir, o);
      if ((info.config as { task?: string }).task === 'dpo') return evalDpo(dir, o);
      if (o.exactMatch || o.maxNewTokens !== undefined) throw new ConfigError(`options '--exact-match' and '--max-new-tokens' apply to SFT runs; '${dir}' is a task '${(info.config as { task?: string }).task ?? 'classification'}' run`);
      const { loadDataset } = await import('../../data/index.js');
      const trainer = await AutoGLMTrainer.load(dir);
      // the run's own dataset (autoglm.json 'data': files by absolute path, its fields and splits), or --dataset read with
      // the run's fields and label sets
      const d = info.data ?? {};
      const fields = { textField: d.textField, labelField: d.labelField, labelFields: d.labelFields, labelMap: d.labelMap, includeOos: d.includeOos };
      const spec = o.dataset !== undefined ? { ...fields, dataset: o.dataset } : info.data ? { ...d, dataset: d.dataset ?? info.dataset } : { dataset: info.dataset };
      const splits = loadDataset({ ...spec, dataDir: o.dataDir ?? d.dataDir, maxEval: o.maxEval, seed: d.seed ?? info.config.seed, labelSet: info.labelSet });
      const r = (await trainer.evaluate(splits[o.split as 'test' | 'validation'])) as EvalResult;
      const tasks = 'tasks' in r ? (r as typeof r & { tasks: Record<string, typeof r> }).tasks : null;
      console.log(`${o.split}: accuracy ${(100 * r.accuracy).toFixed(2)}%  macro-F1 ${(100 * r.macro_f1).toFixed(2)}%  loss ${r.loss.toFixed(4)}  (${r.n} examples)`);
      for (const [name, x] of Object.entries(tasks ?? {})) console.log(`  task ${name}: accuracy ${(100 * x.accuracy).toFixed(2)}%  macro-F1 ${(100 * x.macro_f1).toFixed(2)}%  loss ${x.loss.toFixed(4)}  (${x.n} examples)`);
      const perTask = tasks ? { tasks: Object.fromEntries(Object.entries(tasks).map(([k, x]) => [k, { accuracy: x.accuracy, macro_f1: x.macro_f1, loss: x.loss, n: x.n }])) } : {};
      if (o.json) console.log(JSON.stringify({ command: 'eval', split: o.split, accuracy: r.accuracy, macro_f1: r.macro_f1, loss: r.loss, n: r.n, ...perTask }));
    });

  program.command('predict')
    .description('predict labels for texts with a fine-tuned run folder (an SFT or DPO run answers each text as a user message)')
    .argument('<run-dir>', 'output folder of autoglm finetune')
    .argument('<texts...>', 'texts to classify')
    .option('--max-new-tokens <n>', 'SFT runs: tokens generated at most per answer (default 128)', intOption('--max-new-tokens'))
    .option('--json', 'JSON lines')
    .action(async (dir: string, texts: string[], o: { json?: boolean; maxNewTokens?: number }) => {
      const { AutoGLMTrainer, isChatPrediction } = await import('../../train/trainer.js');
      const trainer = await AutoGLMTrainer.load(dir);
      for (const p of await trainer.predict(texts, o.maxNewTokens !== undefined ? { maxNewTokens: o.maxNewTokens } : {})) {
        if (isChatPrediction(p)) { // an SFT run: each text answered as a user message through the chat template
          console.log(o.json ? JSON.stringify(p) : p.completion);
          continue;
        }
        const tasks = 'tasks' in p ? (p as typeof p & { tasks: Record<string, { label: string; score: number }> }).tasks : null;
        const labels = tasks ? Object.entries(tasks).map(([k, x]) => `${k}=${x.label}\t${x.score.toFixed(3)}`).join('\t') : `${p.label}\t${p.score.toFixed(3)}`;
        console.log(o.json ? JSON.stringify(p) : `${labels}\t${p.text}`);
      }
    });
}
