/**
 * Process fault classes: a single-process fine-tune SIGKILLed at a random moment (during steps, evaluation or a
 * checkpoint write) and resumed must end with the uninterrupted run's weights, byte for byte; a 2-rank gloo job
 * under `launch --max-restarts 1` with one rank SIGKILLed at a random moment must too; a run whose output folder is
 * a small tmpfs (root only: not run elsewhere) must fail with a typed error, leave every checkpoint readable, and
 * resume elsewhere to the same weights.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { listCheckpoints, loadCheckpoint } from '../../src/train/checkpoint.js';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Rng } from '../../src/backend/rng.js';
import { glooAvailable } from '../../src/distributed/gloo.js';
import type { FaultClass } from './fuzz-classes.js';
import type { TryResult } from './fuzz.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(ROOT, 'src/cli/launch-entry.ts');
const ENV = { ...process.env, AUTOGLM_NUM_THREADS: '1', OMP_NUM_THREADS: '1' };
const FINETUNE = ['finetune', '--max-train', '96', '--max-eval', '16', '--max-steps', '12', '--save-every', '3', '--batch-size', '16',
  '--max-length', '24', '--head-dropout', '0', '--length-bucketing', 'false', '--seed', '11', '--quiet'];

function start(args: string[]): { child: ChildProcess; done: Promise<{ code: number | null; signal: string | null; out: string }> } {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  return { child, done: new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, out }))) };
}
const adapter = (dir: string): Buffer | null => {
  const f = path.join(dir, 'adapter', 'adapter_model.safetensors');
  return existsSync(f) ? readFileSync(f) : null;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The pid of `launcherPid`'s child that runs `rank` (from /proc). */
function rankPid(launcherPid: number, rank: number): number | null {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]) !== launcherPid) continue;
      if (readFileSync(`/proc/${d}/environ`, 'utf8').split('\0').includes(`AUTOGLM_RANK=${rank}`)) return Number(d);
    } catch { /* gone */ }
  }
  return null;
}

let single: { weights: Buffer; ms: number } | null = null;
/** The uninterrupted single-process run (once per suite run). */
async function singleReference(): Promise<true | string> {
  if (single) return true;
  const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-fk-ref-'));
  const t0 = performance.now();
  const r = await start([...FINETUNE, '--output-dir', dir]).done;
  const w = adapter(dir);
  if (r.code !== 0 || !w) return `the reference run failed: ${r.out.slice(-300)}`;
  single = { weights: w, ms: performance.now() - t0 };
  return true;
}

const singleKill: FaultClass = {
  name: 'SIGKILL of a single-process run at a random moment -> resume',
  weight: 3,
  setup: singleReference,
  async attempt(rng: Rng): Promise<TryResult> {
    const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-fk-'));
    try {
      const run = start([...FINETUNE, '--output-dir', dir]);
      await Promise.race([sleep(rng.uniform() * single!.ms), run.done]);
      run.child.kill('SIGKILL');
      await run.done;
      const r = await start([...FINETUNE, '--output-dir', dir, '--resume', 'true']).done;
      if (r.code !== 0) return { survived: false, dataLost: /Checkpoint/.test(r.out), detail: `resume failed: ${r.out.slice(-300)}` };
      const w = adapter(dir);
      return w && w.equals(single!.weights) ? { survived: true, dataLost: false } : { survived: true, dataLost: true, detail: 'resumed weights differ from the uninterrupted run' };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

let dp: { weights: Buffer; ms: number } | null = null;
const rankKill: FaultClass = {
  name: 'SIGKILL of one rank of a 2-rank gloo job -> launch --max-restarts 1',
  weight: 3,
  async setup() {
    const g = glooAvailable();
    if (!g.ok) return `gloo addon: ${g.reason}`;
    if (!existsSync('/proc/self/environ')) return 'no /proc';
    const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-fr-ref-'));
    const t0 = performance.now();
    const r = await start(['launch', '--nproc', '2', '--backend', 'gloo', ...FINETUNE, '--output-dir', dir]).done;
    const w = adapter(dir);
    if (r.code !== 0 || !w) return `the reference run failed: ${r.out.slice(-300)}`;
    dp = { weights: w, ms: performance.now() - t0 };
    return true;
  },
  async attempt(rng: Rng): Promise<TryResult> {
    const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-fr-'));
    try {
      const victim = rng.uniform() < 0.5 ? 0 : 1;
      const run = start(['launch', '--nproc', '2', '--backend', 'gloo', '--max-restarts', '1', ...FINETUNE, '--output-dir', dir]);
      await Promise.race([sleep(rng.uniform() * dp!.ms), run.done]);
      const pid = run.child.exitCode === null ? rankPid(run.child.pid!, victim) : null;
      if (pid) process.kill(pid, 'SIGKILL');
      const r = await run.done;
      if (r.code !== 0) return { survived: false, dataLost: false, detail: `the job failed: ${r.out.slice(-300)}` };
      const w = adapter(dir);
      return w && w.equals(dp!.weights) ? { survived: true, dataLost: false } : { survived: true, dataLost: true, detail: `rank ${victim} killed: final weights differ` };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

const mnt = path.join(tmpdir(), `autoglm-faults-disk-${process.pid}`);
const sh = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8' });
const fullDisk: FaultClass = {
  name: 'full disk (small tmpfs) during checkpoints -> typed error, checkpoints intact, resume',
  weight: 2,
  optional: true,
  async setup() {
    mkdirSync(mnt, { recursive: true });
    const m = sh('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
    if (m.status !== 0) return `cannot mount a tmpfs here (${m.stderr.trim() || 'not root'})`;
    sh('umount', [mnt]);
    return singleReference();
  },
  async attempt(rng: Rng): Promise<TryResult> {
    const kb = 600 + Math.floor(rng.uniform() * 5000);
    if (sh('mount', ['-t', 'tmpfs', '-o', `size=${kb}k`, 'tmpfs', mnt]).status !== 0) return { survived: false, dataLost: false, detail: 'mount failed' };
    const copy = mkdtempSync(path.join(tmpdir(), 'autoglm-fd-'));
    try {
      const dir = path.join(mnt, 'run');
      const r = await start([...FINETUNE, '--output-dir', dir]).done;
      // exit 0 (it fitted) or 2 (a typed error); 1 is an unexpected error
      if (r.code !== 0 && !(r.code === 2 && /autoglm: \w+Error: .*ENOSPC/.test(r.out))) {
        return { survived: false, dataLost: false, detail: `${kb} KB: exit ${r.code}: ${r.out.slice(-300)}` };
      }
      for (const ck of listCheckpoints(dir)) {
        try { loadCheckpoint(ck); } catch (e) { return { survived: true, dataLost: true, detail: `${kb} KB: ${ck} unreadable: ${(e as Error).message}` }; }
      }
      if (existsSync(dir)) cpSync(dir, copy, { recursive: true });
      const again = await start([...FINETUNE, '--output-dir', copy, '--resume', 'true']).done;
      if (again.code !== 0) return { survived: true, dataLost: true, detail: `${kb} KB: resume failed: ${again.out.slice(-300)}` };
      const w = adapter(copy);
      return w && w.equals(single!.weights) ? { survived: true, dataLost: false } : { survived: true, dataLost: true, detail: `${kb} KB: resumed weights differ` };
    } finally {
      sh('umount', [mnt]);
      rmSync(copy, { recursive: true, force: true });
    }
  },
};

export const KILL_CLASSES: FaultClass[] = [singleKill, rankKill, fullDisk];
