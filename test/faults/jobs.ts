/**
 * The small fine-tune the process fault classes run (single process or `autoglm launch` over gloo), its
 * uninterrupted references, and helpers to start it, find a rank's pid and read its final weights.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { glooAvailable } from '../../src/distributed/gloo.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(ROOT, 'src/cli/launch-entry.ts');
const ENV = { ...process.env, AUTOGLM_NUM_THREADS: '1', OMP_NUM_THREADS: '1' };
export const FINETUNE = ['finetune', '--max-train', '96', '--max-eval', '16', '--max-steps', '12', '--save-every', '3', '--batch-size', '16',
  '--max-length', '24', '--head-dropout', '0', '--length-bucketing', 'false', '--seed', '11', '--quiet'];

export interface Started {
  child: ChildProcess;
  done: Promise<{ code: number | null; signal: string | null; out: string }>;
  /** When the output first matched `re` (performance.now()); never resolves if it does not. */
  output(re: RegExp): Promise<number>;
}
/**
 * Starts the CLI with `args`. A run still going after `limitMs` is a hang: it and its ranks are SIGKILLed (a
 * stopped rank included) and its output ends with a line saying so, so a hang fails the try instead of the suite.
 */
export function start(args: string[], limitMs = 300_000): Started {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  const limit = setTimeout(() => {
    out += `\nfaults: HANG: still running after ${limitMs} ms; killed\n`;
    spawnSync('pkill', ['-KILL', '-P', String(child.pid)]);
    child.kill('SIGKILL');
  }, limitMs);
  child.on('exit', () => clearTimeout(limit));
  let out = '';
  const watchers: { re: RegExp; resolve: (t: number) => void }[] = [];
  const onData = (d: Buffer): void => {
    out += d;
    if (process.env.FAULTS_VERBOSE) process.stderr.write(d);
    const t = performance.now();
    for (const w of watchers.splice(0)) if (w.re.test(out)) w.resolve(t); else watchers.push(w);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  return {
    child,
    done: new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, out }))),
    output: (re) => new Promise((resolve) => watchers.push({ re, resolve })),
  };
}
export const adapter = (dir: string): Buffer | null => {
  const f = path.join(dir, 'adapter', 'adapter_model.safetensors');
  return existsSync(f) ? readFileSync(f) : null;
};
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The pid of `launcherPid`'s child that runs `rank` (from /proc). */
export function rankPid(launcherPid: number, rank: number): number | null {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]) !== launcherPid) continue;
      if (readFileSync(`/proc/${d}/environ`, 'utf8').split('\0').includes(`AUTOGLM_RANK=${rank}`)) return Number(d);
    } catch { /* gone */ }
  }
  return null;
}

export const dp = new Map<number, { weights: Buffer; ms: number }>();
/** The uninterrupted `world`-rank gloo run (once per suite run and world size). */
export async function dpReference(world: number): Promise<true | string> {
  if (dp.has(world)) return true;
  const g = glooAvailable();
  if (!g.ok) return `gloo addon: ${g.reason}`;
  if (!existsSync('/proc/self/environ')) return 'no /proc';
  const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-fr-ref-'));
  try {
    const t0 = performance.now();
    const r = await start(['launch', '--nproc', String(world), '--backend', 'gloo', ...FINETUNE, '--output-dir', dir]).done;
    const w = adapter(dir);
    if (r.code !== 0 || !w) return `the ${world}-rank reference run failed: ${r.out.slice(-300)}`;
    dp.set(world, { weights: w, ms: performance.now() - t0 });
    return true;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Still running: neither exited nor ended by a signal (a child killed by a signal keeps exitCode null). */
export const running = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;
