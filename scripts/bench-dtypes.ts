/**
 * Our bf16 against our own fp32 on one workload, side by side: ours fp32, ours bf16 and (with --vs-torch) PyTorch's
 * fp32 and bf16 autocast, each in its own process, alternated `--repeat` times; medians per measurement across runs.
 *
 *   node --import tsx scripts/bench-dtypes.ts <workload> [--repeat 3] [--steps 5] [--warmup 2] [--threads n] [--vs-torch]
 *     [--other <dir>] [--dtypes fp32,bf16]
 *
 * Prints one line per measurement: ours bf16 / ours fp32 (< 1: bf16 faster) and, with --vs-torch, ours / torch per dtype.
 * --other <dir>: another checkout of the project (built: dist/ and build/), its fp32 and bf16 alternated with ours in the
 * same run (before / after a change on a loaded machine).
 * --dtypes bf16 (or fp32): one dtype only, so that an alternation's runs lie closer together in time. Each ratio is
 * given twice: of the medians, and as the median of the ratios within each alternation ("paired"), which a slow
 * stretch of a loaded machine moves less when it hits one alternation's runs alike.
 */
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { defaultTorchScript, runOurs, runTorch, type CompareOptions } from '../src/bench/compare.js';
import { median, type BenchRecord } from '../src/bench/measure.js';

const args = process.argv.slice(2);
const workload = args[0];
if (!workload || workload.startsWith('--')) {
  console.error('usage: bench-dtypes.ts <workload> [--repeat n] [--steps n] [--warmup n] [--threads n] [--vs-torch]');
  process.exit(2);
}
const opt = (name: string, dflt: number): number => {
  const i = args.indexOf(name);
  return i < 0 ? dflt : Number(args[i + 1]);
};
const repeat = opt('--repeat', 3), steps = opt('--steps', 5), warmup = opt('--warmup', 2);
const threads = opt('--threads', os.availableParallelism());
const vsTorch = args.includes('--vs-torch');
const other = args.includes('--other') ? path.resolve(args[args.indexOf('--other') + 1]) : null;
const base: CompareOptions = { workload, dtype: 'fp32', threads, steps, warmup, repeat, torchScript: defaultTorchScript(workload), torchConfig: 'best' };

const dtypes = (args.includes('--dtypes') ? args[args.indexOf('--dtypes') + 1] : 'fp32,bf16').split(',');
if (!dtypes.length || dtypes.some((d) => d !== 'fp32' && d !== 'bf16')) {
  console.error(`--dtypes takes fp32, bf16 or both (comma-separated); got '${dtypes.join(',')}'`);
  process.exit(2);
}
const engines = [...(other ? ['other'] : []), 'ours', ...(vsTorch ? ['torch'] : [])].flatMap((e) => dtypes.map((d) => `${e} ${d}`));

function runOther(o: CompareOptions): BenchRecord[] {
  const r = spawnSync(process.execPath, [path.join(other as string, 'bin', 'autoglm.js'), 'bench', o.workload, '--dtype', o.dtype,
    '--threads', String(o.threads), '--steps', String(o.steps), '--warmup', String(o.warmup), '--json'], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`the other checkout's benchmark failed (exit ${r.status}): ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as BenchRecord);
}
const runs: Record<string, BenchRecord[][]> = Object.fromEntries(engines.map((e) => [e, []]));
for (let i = 0; i < repeat; i++) {
  for (const e of engines) {
    const o = { ...base, dtype: e.endsWith('bf16') ? 'bf16' : 'fp32' };
    runs[e].push(e.startsWith('ours') ? runOurs(o) : e.startsWith('other') ? runOther(o) : runTorch(o));
  }
}
const r3 = (x: number) => Math.round(x * 1000) / 1000;
const times = (e: string, k: number) => runs[e].map((r) => r[k].ms_per_step);
const ms = (e: string, k: number) => median(times(e, k));
const all = (e: string, k: number) => times(e, k).join('/');
const rss = (e: string, k: number) => Math.round(median(runs[e].map((r) => r[k].peak_rss_mb)) * 10) / 10;
/** a / b of the medians, and the median of a / b within each alternation */
const ratio = (a: string, b: string, k: number) => {
  const ta = times(a, k), tb = times(b, k);
  return `x${r3(ms(a, k) / ms(b, k))} (paired x${r3(median(ta.map((t, i) => t / tb[i])))})`;
};
runs[engines[0]][0].forEach((rec, k) => {
  const parts: string[] = [];
  for (const e of engines) parts.push(`${e} ${r3(ms(e, k))} ms (${all(e, k)})`);
  for (const d of dtypes) {
    if (vsTorch) parts.push(`ours/torch ${d} ${ratio(`ours ${d}`, `torch ${d}`, k)}`);
    if (other) parts.push(`ours/other ${d} ${ratio(`ours ${d}`, `other ${d}`, k)}`);
  }
  if (dtypes.length === 2) {
    for (const e of [...(other ? ['other'] : []), 'ours', ...(vsTorch ? ['torch'] : [])]) parts.push(`${e} bf16/fp32 ${ratio(`${e} bf16`, `${e} fp32`, k)}`);
  }
  parts.push(`peak RSS MB: ${engines.map((e) => `${e} ${rss(e, k)}`).join(', ')}`);
  console.log(`${rec.workload}${rec.shape ? ` ${rec.shape}` : ''}: ${parts.join('; ')}`);
});
console.log(`(${repeat} alternations of ${engines.join(', ')}; ${steps} timed steps after ${warmup} warm-up each, ${threads} threads; medians)`);
