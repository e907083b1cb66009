/**
 * The local communicator (worker threads over SharedArrayBuffer), runLocal, rank discovery and `autoglm launch`.
 * Ranks run test/helpers/dist-worker.ts and report `RESULT <json>` lines.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CommunicationError, ConfigError } from '../src/errors.js';
import { skipOrFail } from './helpers/ci.js';
import { RankFailedError, SingleCommunicator, currentRankInfo, glooAvailable, runLocal, LocalGroup } from '../src/distributed/index.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const WORKER = path.join(ROOT, 'test/helpers/dist-worker.ts');
const CLI = path.join(ROOT, 'src/cli/launch-entry.ts');

interface Result { rank: number; [k: string]: unknown }

/** Runs the helper on `nproc` ranks; returns its RESULT lines by rank, the captured output and the outcome. */
async function run(nproc: number, args: object, opts: { timeoutMs?: number } = {}) {
  let out = '';
  const sink = new Writable({ write(chunk, _enc, cb) { out += chunk; cb(); } });
  let error: unknown = null;
  try {
    await runLocal(nproc, WORKER, { args, stdout: sink, stderr: sink, threadsPerRank: 1, timeoutMs: opts.timeoutMs });
  } catch (e) {
    error = e;
  }
  const results: Result[] = [];
  for (const m of out.matchAll(/^\[rank (\d+)\] RESULT (.*)$/gm)) {
    const r = JSON.parse(m[2]!) as Result;
    assert.equal(r.rank, Number(m[1]), 'the prefix names the rank that wrote the line');
    results[r.rank] = r;
  }
  return { results, out, error };
}

/** Runs the CLI in a child process. */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - t0 }));
  });
}

// The launcher runs start now, in child processes, and overlap the in-process tests below (the slow part is startup).
const GLOO = glooAvailable().ok;
const LAUNCH_LOCAL = [
  cli(['launch', '--nproc', '2', '--backend', 'local', 'dist-selftest']),
  cli(['launch', '--nproc', '2', 'dist-selftest', '--fail-rank', '1', '--hang-ms', '60000']),
];
const LAUNCH_GLOO = [
  cli(['launch', '--nproc', '2', '--backend', 'gloo', '--run-id', 'job-1', 'dist-selftest', ...(GLOO ? [] : ['--info-only'])]),
  cli(['launch', '--nproc', '2', '--backend', 'gloo', 'dist-selftest', '--info-only', '--fail-rank', '0', '--hang-ms', '60000']),
];

for (const nproc of [2, 3]) {
  test(`allReduce (sum, mean; up to 4M floats), allGather (uneven, empty, growing), broadcast, barrier on ${nproc} ranks`, async () => {
    const { results, error, out } = await run(nproc, { scenario: 'collectives' });
    assert.equal(error, null, `runLocal failed: ${String(error)}\n${out}`);
    assert.equal(results.length, nproc);
    for (const r of results) {
      assert.deepEqual(r.checks, [], `rank ${r.rank}`);
      assert.equal(r.ok, true);
      const stats = r.stats as { allGatherBytes: number; calls: number };
      assert.equal(stats.allGatherBytes, r.rank * 3 + r.rank * 100_000, 'allGather counts the bytes this rank wrote');
    }
  });
}

test('a rank that exits mid-allReduce: the others throw CommunicationError within 1 s, runLocal rejects naming it', async () => {
  const { results, error } = await run(2, { scenario: 'exit', failRank: 1 });
  assert.ok(error instanceof RankFailedError, String(error));
  assert.equal(error.rank, 1);
  assert.equal(error.exitCode, 3);
  const r0 = results[0]!;
  assert.equal(r0.caught, 'CommunicationError');
  assert.match(String(r0.message), /rank 1 exited \(code 3\) during allReduce/);
  assert.ok((r0.ms as number) < 1000, `noticed after ${r0.ms} ms`);
});

test('a rank that throws mid-allReduce on 3 ranks: both others fail fast, runLocal names the rank and its error', async () => {
  const { results, error } = await run(3, { scenario: 'throw', failRank: 1 });
  assert.ok(error instanceof RankFailedError, String(error));
  assert.equal(error.rank, 1);
  assert.match(error.message, /boom from the failing rank/);
  for (const r of [results[0]!, results[2]!]) {
    assert.match(String(r.message), /rank 1 failed \(Error: boom from the failing rank\) during allReduce/);
    assert.ok((r.ms as number) < 1000, `rank ${r.rank} noticed after ${r.ms} ms`);
  }
});

test('a collective that waits past timeoutMs throws naming the op and the missing rank; the late rank fails too', async () => {
  const { results, error } = await run(2, { scenario: 'timeout' });
  assert.equal(error, null);
  const [r0, r1] = results as [Result, Result];
  assert.equal(r0.isComm, true);
  assert.match(String(r0.message), /barrier timed out after 300 ms on rank 0: rank 1 did not arrive/);
  assert.ok((r0.ms as number) >= 290 && (r0.ms as number) < 1200, `timed out after ${r0.ms} ms`);
  assert.match(String(r1.message), /rank 0 gave up/);
});

test('the native addon loads in 2 worker threads and runs f32/bf16 matmuls concurrently, matching portable', async (t) => {
  const { results, error, out } = await run(2, { scenario: 'native' });
  assert.equal(error, null, `${String(error)}\n${out}`);
  for (const r of results) {
    if (!r.native) return skipOrFail(t, 'native addon', `not loaded in the worker of rank ${r.rank as number}`);
    assert.ok((r.maxErr as number) < 1e-3, `rank ${r.rank}: max error ${r.maxErr}`);
    assert.equal(r.threads, 1, 'AUTOGLM_NUM_THREADS from runLocal sets the kernel threads');
  }
});

test('LocalGroup, SingleCommunicator and currentRankInfo validate and behave', async () => {
  assert.throws(() => new LocalGroup(0), CommunicationError);
  const g = new LocalGroup(2);
  g.take(0);
  assert.throws(() => g.take(0), /already taken/);
  assert.throws(() => g.take(2), /expected an integer in \[0, 2\)/);
  const s = new SingleCommunicator();
  const x = new Float32Array([1, 2]);
  await s.allReduce(x, 'mean');
  assert.deepEqual([...x], [1, 2]);
  const p = new Uint8Array([7]);
  const all = await s.allGather(p);
  assert.deepEqual(all.map((a) => [...a]), [[7]]);
  assert.notEqual(all[0], p);
  await assert.rejects(s.broadcast(p, 1), CommunicationError);
  await s.close();
  await assert.rejects(s.barrier(), /after close/);
  assert.deepEqual(currentRankInfo({}), { rank: 0, localRank: 0, worldSize: 1, backend: 'single', launcher: 'none' });
  assert.deepEqual(currentRankInfo({ AUTOGLM_RANK: '3', AUTOGLM_LOCAL_RANK: '1', AUTOGLM_WORLD_SIZE: '4', AUTOGLM_RDZV: 'redis://h:6379', AUTOGLM_RUN_ID: 'x' }),
    { rank: 3, localRank: 1, worldSize: 4, backend: 'gloo', launcher: 'autoglm', rdzv: 'redis://h:6379', runId: 'x' });
  assert.throws(() => currentRankInfo({ AUTOGLM_RANK: '4', AUTOGLM_WORLD_SIZE: '4', AUTOGLM_RDZV: 'file:///tmp/x' }), ConfigError);
  assert.throws(() => currentRankInfo({ AUTOGLM_RANK: 'a', AUTOGLM_WORLD_SIZE: '2' }), /AUTOGLM_RANK is 'a'/);
});

test('autoglm launch validates its flags with one-line errors', async () => {
  const { main } = await import('../src/cli/main.js');
  const write = process.stderr.write;
  const lines: string[] = [];
  process.stderr.write = ((s: string) => { lines.push(String(s)); return true; }) as typeof process.stderr.write;
  try {
    assert.equal(await main(['launch', '--nproc', '0', 'dist-selftest']), 2);
    assert.equal(await main(['launch', '--nproc', '2', '--backend', 'local', '--nnodes', '2', '--rdzv', 'redis://h:1', 'dist-selftest']), 2);
    assert.equal(await main(['launch', '--nproc', '2', '--nnodes', '2', 'dist-selftest']), 2);
    assert.equal(await main(['launch', '--nproc', '2', '--rdzv', 'http://h', 'dist-selftest']), 2);
    assert.equal(await main(['launch', '--nproc', '2', '--nnodes', '2', '--node-rank', '2', '--rdzv', 'redis://h:1', 'x']), 2);
  } finally {
    process.stderr.write = write;
  }
  const errs = lines.filter((l) => l.startsWith('autoglm: ConfigError'));
  assert.equal(errs.length, 5, lines.join(''));
  assert.match(errs[0]!, /option '--nproc' is '0'; expected an integer >= 1/);
  assert.match(errs[1]!, /'--backend' is 'local'; expected gloo/);
  assert.match(errs[2]!, /'--rdzv' is missing/);
  assert.match(errs[3]!, /'--rdzv' is 'http:\/\/h'/);
  assert.match(errs[4]!, /'--node-rank' is 2; expected below --nnodes \(2\)/);
});

test('autoglm launch --backend local: both ranks talk, lines are prefixed, exit 0; a failing rank stops the other', async () => {
  const [ok, bad] = await Promise.all(LAUNCH_LOCAL);
  assert.equal(ok.code, 0, ok.stderr);
  for (const r of [0, 1]) assert.match(ok.stdout, new RegExp(`^\\[rank ${r}\\] rank ${r}/2 \\(local ${r}, backend local\\) allReduce 3 allGather r0,r1$`, 'm'));
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /^\[rank 1\] autoglm: CommunicationError: rank 1\/2 .* fails on purpose$/m);
  assert.match(bad.stderr, /^autoglm: RankFailedError: rank 1 failed \(exit code 2\)/m);
  assert.ok(bad.ms < 30_000, `the hanging rank was stopped (launcher took ${bad.ms} ms)`);
  assert.doesNotMatch(bad.stdout, /allReduce/);
});

test('autoglm launch --backend gloo: child processes get AUTOGLM_* rank variables (and talk when gloo is built); a failing rank stops the others', async () => {
  const [ok, bad] = await Promise.all(LAUNCH_GLOO);
  if (GLOO) {
    for (const r of [0, 1]) assert.match(ok.stdout, new RegExp(`^\\[rank ${r}\\] rank ${r}/2 \\(local ${r}, backend gloo\\) allReduce 3 allGather r0,r1$`, 'm'));
  } else {
    console.log('# gloo addon not built: launcher checked without collectives');
  }
  assert.equal(ok.code, 0, ok.stderr);
  for (const r of [0, 1]) {
    assert.match(ok.stdout, new RegExp(`^\\[rank ${r}\\] rank ${r}/2 \\(local ${r}, backend gloo\\) rdzv file:///\\S+autoglm-rdzv-\\S+ run job-1 threads \\d+$`, 'm'));
  }
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /^autoglm: RankFailedError: rank 0 failed \(exit code 2\)/m);
  assert.ok(bad.ms < 30_000, `the hanging rank was stopped (launcher took ${bad.ms} ms)`);
});

test('a peer that leaves the barrier and closes at once does not fail the ranks still in it (2000 groups of 4 ranks)', async () => {
  const { Worker } = await import('node:worker_threads');
  const W = 4, rounds = 2000;
  const groups = Array.from({ length: rounds }, () => new LocalGroup(W));
  const results = await Promise.all(Array.from({ length: W }, (_, r) => {
    const taken = groups.map((g) => g.take(r));
    const entry = pathToFileURL(path.join(ROOT, 'test/helpers/barrier-close-worker.ts')).href;
    const code = `(await import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})).register();\nawait import(${JSON.stringify(entry)});\n`;
    const w = new Worker(code, {
      eval: true, execArgv: [], workerData: { parts: taken.map((t) => t.data) }, transferList: taken.flatMap((t) => t.transferList),
    });
    return new Promise<{ failures: number; first: string }>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    }).finally(() => w.terminate());
  }));
  for (const [r, res] of results.entries()) assert.equal(res.failures, 0, `rank ${r}: ${res.failures} of ${rounds} barriers failed; first: ${res.first}`);
});
