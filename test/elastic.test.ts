/**
 * Elastic restarts (`autoglm launch --max-restarts N`): a 2-rank gloo fine-tune with one rank SIGKILLed mid-run
 * restarts all ranks from the last checkpoint and ends with the same weights as an uninterrupted run; a rank that
 * fails on every attempt makes the launcher give up after N restarts with one clear line. Needs the gloo addon
 * (skipped without it; a failure under CI=true) and Linux's /proc to find the rank to kill.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../src/errors.js';
import { underRestarts } from '../src/cli/commands/finetune.js';
import { requireGloo } from './helpers/ci.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'src/cli/launch-entry.ts');
const skip = requireGloo() || (existsSync('/proc/self/environ') ? false : 'no /proc to find a rank process');
const tmp = (p: string) => mkdtempSync(path.join(tmpdir(), p));
const FINETUNE = ['finetune', '--max-train', '96', '--max-eval', '16', '--max-steps', '12', '--save-every', '4', '--batch-size', '16',
  '--max-length', '24', '--head-dropout', '0', '--length-bucketing', 'false', '--seed', '7', '--quiet'];

function launch(args: string[]): { child: ChildProcess; done: Promise<{ code: number | null; out: string }> } {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'launch', '--nproc', '2', '--backend', 'gloo', ...args],
    { cwd: ROOT, env: { ...process.env, AUTOGLM_NUM_THREADS: '1', OMP_NUM_THREADS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  return { child, done: new Promise((resolve) => child.on('exit', (code) => resolve({ code, out }))) };
}

/** The pid of the launcher's child process that runs `rank`, from /proc. */
function rankPid(launcherPid: number, rank: number): number | null {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const ppid = Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
      if (ppid !== launcherPid) continue;
      if (readFileSync(`/proc/${d}/environ`, 'utf8').split('\0').includes(`AUTOGLM_RANK=${rank}`)) return Number(d);
    } catch { /* the process is gone */ }
  }
  return null;
}

const adapter = (dir: string) => readFileSync(path.join(dir, 'adapter', 'adapter_model.safetensors'));

test('--max-restarts 1: rank 1 SIGKILLed after the step-4 checkpoint; all ranks restart and end with the uninterrupted weights', { skip, timeout: 600_000 }, async (t) => {
  const ref = tmp('autoglm-el-ref-'), hit = tmp('autoglm-el-hit-');
  const r = await launch([...FINETUNE, '--output-dir', ref]).done;
  assert.equal(r.code, 0, r.out);
  const run = launch(['--max-restarts', '1', ...FINETUNE, '--output-dir', hit]);
  // wait for the first checkpoint, then kill rank 1 (it is somewhere in steps 5..12, or writing nothing: rank 0 writes)
  let killed = false;
  while (!killed) {
    if (run.child.exitCode !== null) break;
    if (existsSync(path.join(hit, 'checkpoint-0000004'))) {
      const pid = rankPid(run.child.pid!, 1);
      if (pid) { process.kill(pid, 'SIGKILL'); killed = true; }
    }
    await new Promise((res) => setTimeout(res, 20));
  }
  const { code, out } = await run.done;
  assert.ok(killed, `the run ended before rank 1 could be killed:\n${out}`);
  assert.equal(code, 0, out);
  assert.match(out, /rank 1 failed .*killed by SIGKILL; restarting all ranks from the last checkpoint \(restart 1 of 1\)/);
  assert.match(out, /resumed from .*checkpoint-00000(04|08) at step [48]/);
  t.diagnostic(out.split('\n').filter((l) => /restarting|resumed/.test(l)).join(' | '));
  assert.ok(adapter(hit).equals(adapter(ref)), 'the restarted run ends with other weights than the uninterrupted one');
});

test('--max-restarts 2: a rank that fails on every attempt makes the launcher give up after 2 restarts', { skip, timeout: 120_000 }, async () => {
  const { code, out } = await launch(['--max-restarts', '2', 'dist-selftest', '--fail-rank', '1']).done;
  assert.notEqual(code, 0);
  assert.equal(out.match(/restarting all ranks/g)?.length, 2, out);
  assert.match(out, /rank 1 failed \(exit code 2\): .*gave up after 2 restarts \(--max-restarts 2\)/);
});

test('finetune under --max-restarts needs --output-dir and --save-every; a restarted attempt resumes', () => {
  const env = { AUTOGLM_MAX_RESTARTS: '1', AUTOGLM_RESTART_COUNT: '0' };
  assert.throws(() => underRestarts({ saveEvery: 4 }, env), (e: unknown) => e instanceof ConfigError && /--output-dir/.test(e.message));
  assert.throws(() => underRestarts({ outputDir: 'x' }, env), (e: unknown) => e instanceof ConfigError && /--save-every/.test(e.message));
  assert.deepEqual(underRestarts({ outputDir: 'x', saveEvery: 4 }, env), { outputDir: 'x', saveEvery: 4 });
  assert.deepEqual(underRestarts({ outputDir: 'x', saveEvery: 4 }, { ...env, AUTOGLM_RESTART_COUNT: '1' }), { outputDir: 'x', saveEvery: 4, resume: true });
  assert.deepEqual(underRestarts({ outputDir: 'x', saveEvery: 4, resume: false }, { ...env, AUTOGLM_RESTART_COUNT: '1' }).resume, false);
  assert.deepEqual(underRestarts({}, {}), {});
});
