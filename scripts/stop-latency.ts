/**
 * How long a graceful stop takes when it comes during a validation: a LoRA fine-tune on 800 clinc150 training texts
 * with the first 3,000 validation texts evaluated every 10 steps; after step 10's update a timer aborts the run's
 * signal 200 ms later (inside the validation that follows), as SIGINT does under `autoglm finetune`. Prints one JSON
 * line: the time from the abort to `finetune` returning, and where the run stopped. Run it in two checkouts to
 * compare (a worktree of another commit, its node_modules linked and build/ copied):
 *
 *   node --import tsx scripts/stop-latency.ts [--repeat 3]
 *
 * Needs ../shared/data (clinc150); says so and exits 0 where it is missing.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { tmpdir } from 'node:os';
import { AutoGLMTrainer } from '../src/train/index.js';
import { loadDataset } from '../src/data/index.js';
import { resolveDataDir } from '../src/data/paths.js';

const { values: a } = parseArgs({ options: { repeat: { type: 'string', default: '1' } } });
const dataDir = resolveDataDir();
if (!existsSync(path.join(dataDir, 'clinc150'))) {
  console.error(`stop-latency: no clinc150 under ${dataDir} (../shared/data); skipped`);
  process.exit(0);
}
const ds = loadDataset({ dataset: 'clinc150', dataDir });
const splits = { ...ds, train: ds.train.slice(0, 800), validation: ds.validation.slice(0, 3000) };
for (let i = 0; i < Number(a.repeat); i++) {
  const t = new AutoGLMTrainer({ config: { maxSteps: 40, batchSize: 16, evalEvery: 10, evalBatchSize: 32, logEvery: 5, outputDir: path.join(tmpdir(), `autoglm-stop-latency-${process.pid}-${i}`) } });
  t.on('note', () => {});
  const ctl = new AbortController();
  let due = 0;
  const h = await t.finetune({
    dataset: splits, signal: ctl.signal,
    callbacks: [{ onBatchEnd: (step: number) => { if (step === 10) { due = performance.now() + 200; setTimeout(() => ctl.abort(), 200); } } }],
  });
  console.log(JSON.stringify({ stop_latency_ms: Math.round(performance.now() - due), interrupted: h.interrupted, validations_logged: h.evals.length }));
}
