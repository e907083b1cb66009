/**
 * Our bf16 against our own fp32 on one workload, side by side: ours fp32, ours bf16 and (with --vs-torch) PyTorch's
 * fp32 and bf16 autocast, each in its own process, alternated `--repeat` times; medians per measurement across runs.
 *
 *   node --import tsx scripts/bench-dtypes.ts <workload> [--repeat 3] [--steps 5] [--warmup 2] [--threads n] [--vs-torch]
 *     [--other <dir>]
 *
 * Prints one line per measurement: ours bf16 / ours fp32 (< 1: bf16 faster) and, with --vs-torch, ours / torch per dtype.
 * --other <dir>: another checkout of the project (built: dist/ and build/), its fp32 and bf16 alternated with ours in the
 * same run (before / after a change on a loaded machine).
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

const engines = [...(other ? ['other fp32', 'other bf16'] : []), 'ours fp32', 'ours bf16', ...(vsTorch ? ['torch fp32', 'torch bf16'] : [])];

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
const ms = (e: string, k: number) => median(runs[e].map((r) => r[k].ms_per_step));
const all = (e: string, k: number) => runs[e].map((r) => r[k].ms_per_step).join('/');
const rss = (e: string, k: number) => median(runs[e].map((r) => r[k].peak_rss_mb));
runs['ours fp32'][0].forEach((rec, k) => {
  const name = `${rec.workload}${rec.shape ? ` ${rec.shape}` : ''}`;
  const f = ms('ours fp32', k), b = ms('ours bf16', k);
  let line = `${name}: ours fp32 ${r3(f)} ms (${all('ours fp32', k)}), ours bf16 ${r3(b)} ms (${all('ours bf16', k)}); bf16/fp32 x${r3(b / f)}`;
  if (vsTorch) {
    const tf = ms('torch fp32', k), tb = ms('torch bf16', k);
    line += `; torch fp32 ${r3(tf)} ms, torch bf16 ${r3(tb)} ms; ours/torch fp32 x${r3(f / tf)}, bf16 x${r3(b / tb)}`;
  }
  if (other) {
    const of = ms('other fp32', k), ob = ms('other bf16', k);
    line += `; other fp32 ${r3(of)} ms (${all('other fp32', k)}), other bf16 ${r3(ob)} ms (${all('other bf16', k)}); other bf16/fp32 x${r3(ob / of)}; ours/other fp32 x${r3(f / of)}`;
  }
  line += `; peak RSS MB: ${engines.map((e) => `${e} ${rss(e, k)}`).join(', ')}`;
  console.log(line);
});
console.log(`(${repeat} alternations, ${steps} timed steps after ${warmup} warm-up each, ${threads} threads; medians)`);
