/**
 * The interleaved comparison (`autoglm bench --vs-torch --interleave`, src/bench/rounds.ts) with stand-ins for the
 * two benchmarks: our side through measure.ts's round server (as `autoglm bench --serve-rounds`), the reference's
 * through scripts/torch-rounds.py wrapping a script shaped as torch_reference.py. Rounds alternate, each measurement
 * gets its rounds, the ratios come from the round medians, the records from the processes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { compareInterleaved, TORCH_ROUNDS } from '../src/bench/rounds.js';
import { requirePiece } from './helpers/ci.js';
import { BenchmarkError } from '../src/errors.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const python = process.env.AUTOGLM_PYTHON || '/usr/bin/python3';
const skip = requirePiece('python3', spawnSync(python, ['-c', 'pass']).status === 0, `${python} does not run`);
const stand = path.join(HERE, 'fixtures', 'rounds_reference.py');
const base = { workload: 'w', dtype: 'fp32', threads: 1, steps: 4, warmup: 1, repeat: 6, torchScript: stand, torchConfig: 'installed' as const };
const ours = { cmd: process.execPath, args: ['--import', 'tsx', path.join(HERE, 'helpers', 'rounds-engine.ts')] };

test('interleaved comparison: alternating rounds per measurement, ratios from the round medians, the records from each process', { skip }, async () => {
  const rows = await compareInterleaved(base, { ours, torch: { cmd: python, args: [TORCH_ROUNDS, stand, 'w', '--steps', '4', '--warmup', '1', '--json'] } });
  assert.deepEqual(rows.map((r) => r.workload), ['a', 'b']);
  for (const r of rows) {
    assert.equal(r.runs, 6);
    assert.equal(r.ours_rounds.length, 6);
    assert.equal(r.torch_rounds.length, 6);
    // a 2 ms step against a 3 ms one, on a loaded machine: ours is faster, within reason
    assert.ok(r.time_ratio > 0.4 && r.time_ratio < 1, `time ratio ${r.time_ratio}`);
    assert.ok(r.paired_ratio > 0.4 && r.paired_ratio < 1, `paired ratio ${r.paired_ratio}`);
    assert.ok(r.ours.ms_per_step >= 2 && r.torch.ms_per_step >= 3);
    assert.equal(r.rss_ratio, 2); // 20 MB against 10, from the records
    assert.equal(r.torch.engine, 'stand-in');
  }
});

test('interleaved comparison: a reference without the timing loop to serve, or a process that dies, fails with its reason', { skip }, async () => {
  const r = spawnSync(python, [TORCH_ROUNDS, path.join(HERE, 'fixtures', 'rounds_reference.py.missing'), 'w'], { encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  const noTimed = spawnSync(python, [TORCH_ROUNDS, path.join(HERE, 'helpers', 'rounds-engine.ts'), 'w'], { encoding: 'utf8' }); // no `def timed(`
  assert.notEqual(noTimed.status, 0);
  assert.match(noTimed.stderr, /expected one 'def timed\(fn, steps, warmup\):'/);
  await assert.rejects(compareInterleaved(base, { ours, torch: { cmd: python, args: ['-c', 'import sys; sys.exit("no such reference")'] } }),
    (e: Error) => e instanceof BenchmarkError && /exited while an interleaved run waited for a measurement.*no such reference/s.test(e.message));
});
