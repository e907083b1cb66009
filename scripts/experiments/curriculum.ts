/**
 * Curriculum and loss-weighted sampling against uniform sampling on CLINC150 (open-autoglm-base + LoRA): the same
 * budget of optimizer steps for every condition, validation accuracy every --eval-every steps (on a seeded
 * --max-eval subset), steps to reach --target validation accuracy, final test accuracy; a markdown table of mean
 * and min-max over seeds per condition.
 *
 *   node --import tsx scripts/experiments/curriculum.ts [--seeds 1,2,3] [--steps 250]
 *     [--conditions random,loss,grad-norm,confidence,length,loss-weighted,loss-weighted-iw] [--json out.json]
 *     [--eval-every 25] [--max-eval 1000] [--max-test 0 (= all)] [--max-train 0 (= all)] [--batch-size 32] [--refresh-every 50]
 *     [--score-subset 2000 (0 = all)] [--target 0.85] [--pacing sqrt] [--start-fraction 0.3] [--full-at 0.8]
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { AutoGLMTrainer, type TrainerConfigInput } from '../../src/train/index.js';
import { loadDataset, resolveDataDir, type DatasetSplits } from '../../src/data/index.js';
import { Rng } from '../../src/backend/rng.js';
import type { RefreshInfo } from '../../src/curriculum/index.js';

const { values: a } = parseArgs({
  options: {
    seeds: { type: 'string', default: '1,2,3' },
    steps: { type: 'string', default: '250' },
    conditions: { type: 'string', default: 'random,loss,grad-norm,confidence,length,loss-weighted' },
    json: { type: 'string' },
    'eval-every': { type: 'string', default: '25' },
    'max-eval': { type: 'string', default: '1000' },
    'max-test': { type: 'string', default: '0' },
    'max-train': { type: 'string', default: '0' },
    'batch-size': { type: 'string', default: '32' },
    'refresh-every': { type: 'string', default: '50' },
    'score-subset': { type: 'string', default: '2000' },
    target: { type: 'string', default: '0.85' },
    pacing: { type: 'string', default: 'sqrt' },
    'start-fraction': { type: 'string', default: '0.3' },
    'full-at': { type: 'string', default: '0.8' },
  },
});
const num = (k: keyof typeof a) => Number(a[k]);
const seeds = String(a.seeds).split(',').map(Number);
const conditions = String(a.conditions).split(',');
const steps = num('steps'), target = num('target');

/** The trainer-config keys of each condition. */
function conditionConfig(name: string): TrainerConfigInput {
  const curriculum = (scorer: string) => ({
    curriculum: {
      scorer, pacing: String(a.pacing), startFraction: num('start-fraction'), fullAt: num('full-at'),
      refreshEvery: num('refresh-every'), ...(num('score-subset') > 0 ? { scoreSubset: num('score-subset') } : {}),
    },
  });
  switch (name) {
    case 'random': return {};
    case 'loss': case 'grad-norm': case 'confidence': case 'length': return curriculum(name);
    case 'loss-weighted': return { sampling: { method: 'loss-weighted', temperature: 1, floor: 0.1 } };
    case 'loss-weighted-iw': return { sampling: { method: 'loss-weighted', temperature: 1, floor: 0.1, importanceWeights: true } };
    default: throw new Error(`unknown condition '${name}'; expected random, loss, grad-norm, confidence, length, loss-weighted, loss-weighted-iw`);
  }
}

/** A seeded subset of `n` examples (all when n <= 0 or n >= the split). */
function subset<T>(xs: T[], n: number, seed: number): T[] {
  if (n <= 0 || n >= xs.length) return xs;
  const rng = new Rng(seed), idx = xs.map((_, i) => i);
  for (let i = idx.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [idx[i], idx[j]] = [idx[j]!, idx[i]!];
  }
  return idx.slice(0, n).sort((x, y) => x - y).map((i) => xs[i]!);
}

interface RunResult {
  condition: string; seed: number; stepsToTarget: number | null; finalValAcc: number; testAcc: number;
  trainS: number; msPerStep: number; refreshes: number; firstRefreshMs: number; firstRefreshRows: number; laterRefreshMsMean: number; laterRefreshRows: number;
}

async function runOne(splits: DatasetSplits, condition: string, seed: number): Promise<RunResult> {
  const out = mkdtempSync(path.join(tmpdir(), `autoglm-cur-${condition}-`));
  const trainer = new AutoGLMTrainer({
    model: 'open-autoglm-base',
    config: { method: 'lora', seed, maxSteps: steps, epochs: 1000, batchSize: num('batch-size'), evalEvery: num('eval-every'), logEvery: 10, outputDir: out, ...conditionConfig(condition) },
  });
  trainer.on('note', () => {});
  const refreshes: RefreshInfo[] = [];
  const stepTimes: number[] = [];
  let last = 0;
  trainer.on('curriculumRefresh', (r: RefreshInfo) => refreshes.push(r));
  trainer.on('step', (s: { step: number; time_s: number }) => {
    stepTimes.push(s.time_s - last);
    last = s.time_s;
    if (s.step % 10 === 0) process.stderr.write(`  ${condition} seed ${seed}: step ${s.step}/${steps} (${s.time_s.toFixed(0)} s)\n`);
  });
  trainer.on('evaluate', (e: { step: number; accuracy: number }) => process.stderr.write(`  ${condition} seed ${seed}: step ${e.step} val acc ${e.accuracy.toFixed(4)}\n`));
  const h = await trainer.finetune({ dataset: splits });
  rmSync(out, { recursive: true, force: true });
  const hit = h.evals.find((e) => e.split === 'validation' && (e.accuracy ?? 0) >= target);
  const sorted = stepTimes.slice().sort((x, y) => x - y);
  const later = refreshes.slice(1);
  return {
    condition, seed, stepsToTarget: hit ? hit.step : null, finalValAcc: h.evals.at(-1)?.accuracy ?? NaN, testAcc: h.test?.accuracy ?? NaN,
    trainS: h.trainTimeS, msPerStep: 1000 * (sorted[Math.floor(sorted.length / 2)] ?? NaN), refreshes: refreshes.length,
    firstRefreshMs: refreshes[0]?.ms ?? 0, firstRefreshRows: refreshes[0]?.rows ?? 0,
    laterRefreshMsMean: later.length ? later.reduce((s, r) => s + r.ms, 0) / later.length : 0, laterRefreshRows: later[0]?.rows ?? 0,
  };
}

/** "mean (min-max)" of the finite values; "-" when none. */
function spread(xs: Array<number | null>, digits: number, scale = 1): string {
  const v = xs.filter((x): x is number => x !== null && Number.isFinite(x)).map((x) => x * scale);
  if (!v.length) return '-';
  const mean = v.reduce((s, x) => s + x, 0) / v.length;
  return v.length === 1 ? mean.toFixed(digits) : `${mean.toFixed(digits)} (${Math.min(...v).toFixed(digits)}-${Math.max(...v).toFixed(digits)})`;
}

async function main(): Promise<void> {
  const dataDir = resolveDataDir();
  if (!existsSync(path.join(dataDir, 'clinc150'))) {
    console.log(`CLINC150 not found under ${dataDir} (set AUTOGLM_DATA_DIR); skipping the curriculum experiment.`);
    return;
  }
  for (const c of conditions) conditionConfig(c);
  const full = loadDataset({ dataset: 'clinc150', seed: 42 });
  const splits: DatasetSplits = { ...full, train: subset(full.train, num('max-train'), 6), validation: subset(full.validation, num('max-eval'), 7), test: subset(full.test, num('max-test'), 8) };
  console.error(`clinc150: ${splits.train.length} train, ${splits.validation.length} validation (of ${full.validation.length}), ${splits.test.length} test; ${splits.labels.length} labels; ${steps} steps, batch ${a['batch-size']}`);
  const results: RunResult[] = [];
  for (const condition of conditions) {
    for (const seed of seeds) {
      const r = await runOne(splits, condition, seed);
      results.push(r);
      console.error(`${condition} seed ${seed}: ${JSON.stringify(r)}`);
    }
  }
  const rows = conditions.map((c) => {
    const rs = results.filter((r) => r.condition === c);
    const reached = rs.filter((r) => r.stepsToTarget !== null).length;
    return `| ${c} | ${spread(rs.map((r) => r.stepsToTarget), 0)} | ${reached}/${rs.length} | ${spread(rs.map((r) => r.finalValAcc), 2, 100)} | ${spread(rs.map((r) => r.testAcc), 2, 100)} | ${spread(rs.map((r) => r.msPerStep), 0)} | ${spread(rs.map((r) => r.firstRefreshMs), 0)} | ${spread(rs.map((r) => r.laterRefreshMsMean), 0)} |`;
  });
  console.log(`\nCLINC150, open-autoglm-base + LoRA, ${steps} steps, batch ${a['batch-size']}, seeds ${seeds.join(',')}; mean (min-max) over seeds\n`);
  console.log(`| condition | steps to ${(target * 100).toFixed(0)}% val acc | reached | final val acc % | test acc % | ms/step (median) | ms first scoring (all rows) | ms per later refresh |`);
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
  if (a.json) writeFileSync(String(a.json), JSON.stringify({ args: a, results }, null, 2));
}

await main();
