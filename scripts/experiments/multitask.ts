// Multi-task vs single-task intent classification: open-autoglm-base + LoRA, the same number of optimizer steps.
//
//   node --import tsx scripts/experiments/multitask.ts [--seeds 1,2,3] [--steps N] [--datasets clinc150,slurp]
//        [--batch-size 32] [--max-train N] [--max-eval N] [--weighting static|uncertainty|dwa]
//        [--setups single,multi] [--dwa-window N] [--json out.json]
//
// `--setups multi` skips the single-task baseline (e.g. when comparing weightings against a baseline already run).
// DWA compares average task losses of consecutive windows: epochs by default (Liu et al.), so a run shorter than
// two epochs keeps the initial weights; `--dwa-window N` uses windows of N optimizer steps.
//
// CLINC150 (Larson et al., EMNLP 2019): intent + domain; SLURP (Bastianelli et al., EMNLP 2020): scenario + action
// + intent. Reports intent test accuracy (mean and sample standard deviation over seeds) and a markdown table.
// The data is read from ../shared/data (or AUTOGLM_DATA_DIR); a dataset that is missing is skipped with a message.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AutoGLMTrainer } from '../../src/train/index.js';
import { resolveDataDir } from '../../src/data/index.js';
import type { History } from '../../src/train/history.js';

const SETUPS: Record<string, { multi: string[]; file: string }> = {
  clinc150: { multi: ['intent', 'domain'], file: 'clinc150/data_full.json' },
  slurp: { multi: ['intent', 'scenario', 'action'], file: 'slurp/devel.jsonl' },
};

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const int = (name: string, d?: number) => (arg(name) === undefined ? d : Number(arg(name)));
const seeds = (arg('seeds') ?? '1,2,3').split(',').map(Number);
const steps = int('steps', 300) as number;
const datasets = (arg('datasets') ?? 'clinc150,slurp').split(',');
const batchSize = int('batch-size', 32) as number;
const maxTrain = int('max-train'), maxEval = int('max-eval');
const weighting = (arg('weighting') ?? 'static') as 'static' | 'uncertainty' | 'dwa';
const jsonOut = arg('json');
const setups = (arg('setups') ?? 'single,multi').split(',');
const dwaWindow = int('dwa-window', 0) as number;
for (const s of setups) if (s !== 'single' && s !== 'multi') throw new Error(`--setups: '${s}' is not 'single' or 'multi'`);

interface Row { dataset: string; setup: string; seed: number; intent: number; other: Record<string, number>; sPerStep: number; trainS: number }
const rows: Row[] = [];
const dataDir = resolveDataDir();

/** Seconds per optimizer step from the step logs (first logged step to last, so the final evaluation is not counted). */
function secondsPerStep(h: History): number {
  const s = h.steps;
  return s.length > 1 ? (s[s.length - 1]!.time_s - s[0]!.time_s) / (s[s.length - 1]!.step - s[0]!.step) : NaN;
}

for (const ds of datasets) {
  const setup = SETUPS[ds];
  if (!setup) { console.log(`skipping '${ds}': no setup (known: ${Object.keys(SETUPS).join(', ')})`); continue; }
  if (!existsSync(path.join(dataDir, setup.file))) { console.log(`skipping '${ds}': ${path.join(dataDir, setup.file)} not found (set AUTOGLM_DATA_DIR)`); continue; }
  for (const seed of seeds) {
    for (const kind of setups as Array<'single' | 'multi'>) {
      const out = mkdtempSync(path.join(tmpdir(), `autoglm-mtx-${ds}-${kind}-`));
      const tasks = kind === 'multi' ? setup.multi : undefined;
      const trainer = new AutoGLMTrainer({ config: {
        method: 'lora', seed, maxSteps: steps, epochs: 1000, batchSize, logEvery: 1, evalEvery: 0, outputDir: out,
        ...(tasks ? { tasks, taskWeighting: weighting, ...(weighting === 'dwa' ? { dwaWindow } : {}) } : {}),
      } });
      trainer.on('note', () => {});
      const h = await trainer.finetune({ dataset: ds, labelSet: 'intent', maxTrain, maxEval, seed });
      const test = h.test as (History['test'] & { tasks?: Record<string, { accuracy: number }> }) | undefined;
      const intent = test?.tasks ? test.tasks['intent']!.accuracy : test?.accuracy ?? NaN;
      const other = Object.fromEntries(Object.entries(test?.tasks ?? {}).filter(([k]) => k !== 'intent').map(([k, v]) => [k, v.accuracy]));
      const row: Row = { dataset: ds, setup: tasks ? tasks.join('+') : 'intent', seed, intent, other, sPerStep: secondsPerStep(h), trainS: h.trainTimeS };
      rows.push(row);
      console.log(`${ds} ${row.setup} seed ${seed}: intent test accuracy ${(100 * intent).toFixed(2)}%` +
        `${Object.entries(other).map(([k, v]) => `, ${k} ${(100 * v).toFixed(2)}%`).join('')}; ${row.sPerStep.toFixed(3)} s/step, train ${h.trainTimeS.toFixed(1)} s`);
      rmSync(out, { recursive: true, force: true });
    }
  }
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]) => (xs.length > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1)) : 0);
const pct = (x: number) => (100 * x).toFixed(2);

console.log(`\nopen-autoglm-base + LoRA, ${steps} steps of batch ${batchSize}, weighting ${weighting}${weighting === 'dwa' ? ` (window ${dwaWindow || 'epoch'})` : ''}, seeds ${seeds.join(',')}` +
  `${maxTrain ? `, maxTrain ${maxTrain}` : ''}${maxEval ? `, maxEval ${maxEval}` : ''}\n`);
console.log('| dataset | tasks | intent test acc. % (mean ± sd) | other tasks' + ' test acc. % | s/step |');
console.log('|---|---|---|---|---|');
const summary: Array<Record<string, unknown>> = [];
for (const key of [...new Set(rows.map((r) => `${r.dataset}|${r.setup}`))]) {
  const g = rows.filter((r) => `${r.dataset}|${r.setup}` === key);
  const acc = g.map((r) => r.intent);
  const others = Object.keys(g[0]!.other).map((k) => `${k} ${pct(mean(g.map((r) => r.other[k]!)))}`).join(', ') || '-';
  const sps = mean(g.map((r) => r.sPerStep));
  console.log(`| ${g[0]!.dataset} | ${g[0]!.setup} | ${pct(mean(acc))} ± ${pct(sd(acc))} (n=${g.length}) | ${others} | ${sps.toFixed(3)} |`);
  summary.push({ dataset: g[0]!.dataset, tasks: g[0]!.setup, intent_mean: mean(acc), intent_sd: sd(acc), n: g.length, s_per_step: sps });
}
if (jsonOut) {
  writeFileSync(jsonOut, `${JSON.stringify({ steps, batchSize, seeds, weighting, maxTrain: maxTrain ?? null, maxEval: maxEval ?? null, runs: rows, summary }, null, 2)}\n`);
  console.log(`\nwrote ${jsonOut}`);
}
