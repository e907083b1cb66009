// Compressed vs dense gradients in 2-rank data-parallel fine-tuning on CLINC150 (open-autoglm-base), the same steps
// for every method: bytes each rank sent, test accuracy, wall time. Each run is `autoglm launch ... finetune --json`.
//
//   node --import tsx scripts/experiments/compression.ts [--method lora|full] [--steps 300] [--nproc 2]
//        [--backend local|gloo] [--methods dense,topk,...] [--seed 42] [--json out.json]
//
// Needs the built CLI (npm run build) and CLINC150 under ../shared/data (skipped with a message when missing).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveDataDir } from '../../src/data/index.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const method = arg('method') ?? 'lora';
const steps = Number(arg('steps') ?? 300);
const nproc = Number(arg('nproc') ?? 2);
const backend = arg('backend') ?? 'local';
const seed = Number(arg('seed') ?? 42);
const jsonOut = arg('json');

/** The compression settings compared (the list; QSGD at 4 bits = 7 levels + sign). */
const SPECS: Record<string, unknown> = {
  dense: false,
  fp16: { method: 'fp16' },
  bf16: { method: 'bf16' },
  topk: { method: 'topk', ratio: 0.1, errorFeedback: true },
  randomk: { method: 'randomk', ratio: 0.1 },
  threshold: { method: 'threshold' },
  'std-mask': { method: 'std-mask', errorFeedback: true },
  qsgd: { method: 'qsgd', levels: 7 },
  terngrad: { method: 'terngrad' },
  onebit: { method: 'onebit', errorFeedback: true },
  powersgd: { method: 'powersgd', rank: 4, errorFeedback: true },
};
const methods = (arg('methods') ?? Object.keys(SPECS).join(',')).split(',');
if (!existsSync(path.join(resolveDataDir(), 'clinc150'))) {
  console.log(`skipping: CLINC150 not found under ${resolveDataDir()} (set AUTOGLM_DATA_DIR)`);
  process.exit(0);
}

interface Row { name: string; accuracy: number; bytes: number; denseBytes: number; ratio: number; trainS: number; commS: number; wallS: number }
const rows: Row[] = [];
for (const name of methods) {
  if (!(name in SPECS)) throw new Error(`unknown method '${name}' (known: ${Object.keys(SPECS).join(', ')})`);
  const out = mkdtempSync(path.join(tmpdir(), `autoglm-cx-${name}-`));
  const argv = [path.join(ROOT, 'bin/autoglm.js'), 'launch', '--nproc', String(nproc), '--backend', backend, 'finetune', '--dataset', 'clinc150',
    '--method', method, '--max-steps', String(steps), '--seed', String(seed), '--output-dir', out, '--quiet', '--json',
    '--gradient-compression', JSON.stringify(SPECS[name])];
  const t0 = performance.now();
  const r = spawnSync(process.execPath, argv, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  const wallS = (performance.now() - t0) / 1e3;
  const line = (r.stdout ?? '').split('\n').find((l) => l.startsWith('[rank 0] {'));
  if (r.status !== 0 || !line) {
    console.log(`${name}: failed (exit ${r.status}): ${(r.stderr || r.stdout || '').split('\n').slice(-5).join(' | ')}`);
    continue;
  }
  const j = JSON.parse(line.slice('[rank 0] '.length));
  const c = j.communication ?? { bytes: 0, denseBytes: 0, compressionRatio: 1, commSeconds: 0 };
  const row: Row = { name, accuracy: j.accuracy, bytes: c.bytes, denseBytes: c.denseBytes, ratio: c.compressionRatio, trainS: j.train_time_s, commS: c.commSeconds, wallS };
  rows.push(row);
  console.log(`${name}: test accuracy ${(100 * row.accuracy).toFixed(2)}%, ${(row.bytes / 2 ** 20).toFixed(1)} MB sent vs ${(row.denseBytes / 2 ** 20).toFixed(1)} MB dense (${row.ratio.toFixed(1)}x), train ${row.trainS.toFixed(1)} s (comm ${row.commS.toFixed(1)} s)`);
  rmSync(out, { recursive: true, force: true });
}

const dense = rows.find((r) => r.name === 'dense');
console.log(`\nCLINC150, open-autoglm-base, ${method}, ${nproc} ranks (${backend}), ${steps} steps of global batch 32, seed ${seed}\n`);
console.log('| method | bytes sent per rank | fewer bytes than dense | test accuracy | vs dense (points) | train time | of which gradient exchange |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) {
  const d = dense ? `${(100 * (r.accuracy - dense.accuracy)).toFixed(2)}` : '-';
  console.log(`| ${r.name} | ${(r.bytes / 2 ** 20).toFixed(2)} MB | ${r.ratio.toFixed(1)}x | ${(100 * r.accuracy).toFixed(2)}% | ${d} | ${r.trainS.toFixed(0)} s | ${r.commS.toFixed(1)} s |`);
}
if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ method, steps, nproc, backend, seed, rows }, null, 2));
