/**
 * Process fault classes: a single-process fine-tune SIGKILLed at a random moment (during steps, evaluation or a
 * checkpoint write) and resumed must end with the uninterrupted run's weights, byte for byte; a 2-rank gloo job
 * under `launch --max-restarts 1` with one rank SIGKILLed at a random moment must too; a run whose output folder is
 * a small tmpfs (root only: not run elsewhere) must fail with a typed error, leave every checkpoint readable, and
 * resume elsewhere to the same weights.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { listCheckpoints, loadCheckpoint } from '../../src/train/checkpoint.js';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Rng } from '../../src/backend/rng.js';
import type { FaultClass } from './fuzz-classes.js';
import type { TryResult } from './fuzz.js';
import { FINETUNE, adapter, dp, dpReference, rankPid, running, sleep, start } from './jobs.js';

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

/** The longest a SIGSTOPped rank may go unnoticed by the others (the heartbeats' promise, #20). */
const STOP_DETECT_MS = 1000;
/** Detection times of SIGSTOPped ranks, for the report (ms). */
export const stopDetections: number[] = [];

/**
 * One rank of a `world`-rank gloo job under `launch --max-restarts 1` gets `signal`: SIGKILL at a random moment
 * (start-up, rendezvous, steps, checkpoints, the end); SIGSTOP at a random moment of the training steps (after the
 * first checkpoint, before the final adapter), where the others must notice within STOP_DETECT_MS (a rank stopped
 * during the rendezvous is waited for until the rendezvous timeout, as torchelastic does). Either way the job must
 * restart from its last checkpoint and end with the uninterrupted run's weights, byte for byte.
 */
function rankFault(world: number, signal: 'SIGKILL' | 'SIGSTOP'): FaultClass {
  return {
    name: `${signal} of one rank of a ${world}-rank gloo job -> launch --max-restarts 1`,
    weight: world === 2 ? 3 : 2,
    ...(world > 2 ? { longOnly: `test/distributed-gloo.test.ts (${signal} of one of 3 gloo ranks noticed by the others in < 1 s)` } : {}),
    setup: () => dpReference(world),
    async attempt(rng: Rng): Promise<TryResult> {
      const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-fr-'));
      const ref = dp.get(world)!;
      const victim = Math.min(world - 1, Math.floor(rng.uniform() * world));
      const run = start(['launch', '--nproc', String(world), '--backend', 'gloo', '--max-restarts', '1', ...FINETUNE, '--output-dir', dir]);
      try {
        let stoppedAt = 0;
        if (signal === 'SIGKILL') {
          await Promise.race([sleep(rng.uniform() * ref.ms), run.done]);
        } else {
          // the training steps: after the step-3 checkpoint, a random delay, and not once the adapter is written
          while (running(run.child) && !existsSync(path.join(dir, 'checkpoint-0000003'))) await sleep(10);
          await sleep(rng.uniform() * 600);
        }
        const pid = running(run.child) && !existsSync(path.join(dir, 'adapter')) ? rankPid(run.child.pid!, victim) : null;
        if (pid) {
          process.kill(pid, signal);
          stoppedAt = performance.now();
        }
        const detected = signal === 'SIGSTOP' && pid ? run.output(/autoglm: CommunicationError/) : null;
        const r = await run.done;
        const what = `rank ${victim} ${pid ? signal : 'not signalled (the job ended first)'}`;
        if (detected) {
          const ms = (await Promise.race([detected, run.done.then(() => NaN)])) - stoppedAt;
          stopDetections.push(ms);
          if (!(ms < STOP_DETECT_MS)) return { survived: false, dataLost: false, detail: `${what}: the others noticed after ${ms.toFixed(0)} ms` };
        }
        if (r.code !== 0) return { survived: false, dataLost: false, detail: `${what}: the job failed (exit ${r.code}): ${r.out.slice(-400)}` };
        const w = adapter(dir);
        return w && w.equals(ref.weights) ? { survived: true, dataLost: false } : { survived: true, dataLost: true, detail: `${what}: final weights differ` };
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

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

export const KILL_CLASSES: FaultClass[] = [singleKill, rankFault(2, 'SIGKILL'), rankFault(2, 'SIGSTOP'), rankFault(3, 'SIGKILL'), rankFault(3, 'SIGSTOP'), fullDisk];
