/**
 * Ranks started by Open MPI's mpirun (2 gloo ranks, file:// rendezvous) train to the same weights, bit for bit,
 * as `autoglm launch --backend gloo` on the same command. Needs mpirun (apt-get install openmpi-bin) and the
 * gloo addon: skipped without them, a failure under CI=true.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { requireGloo, requirePiece } from './helpers/ci.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'src/cli/launch-entry.ts');
const mpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' });
const skip = requirePiece('mpirun', mpirun.status === 0, 'apt-get install -y openmpi-bin') || requireGloo();
const tmp = (p: string) => mkdtempSync(path.join(tmpdir(), p));

/** A few steps of a small LoRA fine-tune, no dropout, one kernel thread per rank. */
const FINETUNE = ['finetune', '--max-train', '64', '--max-eval', '16', '--max-steps', '3', '--batch-size', '16', '--max-length', '24',
  '--head-dropout', '0', '--length-bucketing', 'false', '--seed', '7', '--quiet'];

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, AUTOGLM_NUM_THREADS: '1', OMP_NUM_THREADS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}:\n${out.slice(-4000)}`))));
  });
}

test('mpirun -np 2 trains to the same weights as autoglm launch --nproc 2 --backend gloo', { skip, timeout: 300_000 }, async () => {
  const a = tmp('autoglm-launch-'), b = tmp('autoglm-mpirun-');
  const outA = await run(process.execPath, ['--import', 'tsx', CLI, 'launch', '--nproc', '2', '--backend', 'gloo', ...FINETUNE, '--output-dir', a]);
  const outB = await run('mpirun', ['--allow-run-as-root', '--oversubscribe', '-np', '2', '-x', 'AUTOGLM_NUM_THREADS', '-x', 'OMP_NUM_THREADS',
    process.execPath, '--import', 'tsx', CLI, '--rdzv', pathToFileURL(tmp('autoglm-rdzv-')).href, '--run-id', `mpi${process.pid}`, ...FINETUNE, '--output-dir', b]);
  for (const out of [outA, outB]) assert.match(out, /data-parallel: 2 ranks/);
  const weights = (dir: string) => readFileSync(path.join(dir, 'adapter', 'adapter_model.safetensors'));
  assert.ok(weights(a).equals(weights(b)), 'the adapters differ');
});
