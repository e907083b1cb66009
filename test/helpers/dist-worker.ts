/**
 * A rank for test/distributed-local.test.ts, run by runLocal. workerData.args.scenario picks what it does; it
 * reports through stdout lines `RESULT <json>` (the test reads them back, prefixed by rank).
 */
import { performance } from 'node:perf_hooks';
import { CommunicationError } from '../../src/errors.js';
import { createCommunicator, currentRankInfo } from '../../src/distributed/index.js';

const info = currentRankInfo();
const args = info.args as { scenario: string; failRank?: number };
const comm = await createCommunicator(info, { timeoutMs: args.scenario === 'timeout' ? 300 : undefined });
const { rank, worldSize: W } = comm;
const report = (o: object): void => { process.stdout.write(`RESULT ${JSON.stringify({ rank, ...o })}\n`); };

/** Value of element i on rank r: exact in f32 so sums compare exactly. */
const val = (r: number, i: number): number => ((i * 7 + r * 13) % 101) - 50;

async function collectives(): Promise<void> {
  const checks: string[] = [];
  const timings: number[] = [];
  for (const n of [0, 1, 5, 1000, 4 << 20]) {
    const a = new Float32Array(n).map((_, i) => val(rank, i));
    await comm.barrier();
    const t0 = performance.now();
    await comm.allReduce(a, 'sum');
    if (n === 4 << 20) timings.push(performance.now() - t0);
    for (let i = 0; i < n; i += n > 1000 ? 997 : 1) {
      let s = 0;
      for (let r = 0; r < W; r++) s += val(r, i);
      if (a[i] !== s) { checks.push(`sum n=${n} i=${i}: ${a[i]} != ${s}`); break; }
    }
    if (n === 4 << 20) {
      const b = a.slice();
      await comm.barrier();
      const t1 = performance.now();
      await comm.allReduce(b, 'sum'); // steady state: areas already grown
      timings.push(performance.now() - t1);
    }
    if (n === 4 << 20) { let s = 0; for (let r = 0; r < W; r++) s += val(r, n - 1); if (a[n - 1] !== s) checks.push('last element'); }
  }
  const m = new Float32Array(7).fill(rank + 1);
  await comm.allReduce(m, 'mean');
  const want = (W + 1) / 2;
  if (m.some((x) => Math.abs(x - want) > 1e-6)) checks.push(`mean ${m[0]} != ${want}`);
  // allGather: rank r sends r*3 bytes (rank 0 sends nothing), then one big payload to force growth.
  for (const scale of [3, 100_000]) {
    const mine = new Uint8Array(rank * scale).map((_, i) => (i + rank) & 255);
    const all = await comm.allGather(mine);
    for (let r = 0; r < W; r++) {
      const p = all[r]!;
      if (p.length !== r * scale || p.some((x, i) => x !== ((i + r) & 255))) checks.push(`allGather scale ${scale} from rank ${r}`);
    }
  }
  for (let root = 0; root < W; root++) {
    const b = new Uint8Array(300).fill(rank === root ? 200 + root : 0);
    await comm.broadcast(b, root);
    if (b.some((x) => x !== 200 + root)) checks.push(`broadcast root ${root}`);
  }
  await comm.barrier();
  report({ ok: checks.length === 0, checks, stats: comm.stats, allReduce16MiBMs: timings.map((t) => +t.toFixed(1)) });
}

async function failing(): Promise<void> {
  await comm.barrier();
  if (rank === args.failRank) {
    // Die while the others wait in allReduce.
    setTimeout(() => { if (args.scenario === 'exit') process.exit(3); else throw new Error('boom from the failing rank'); }, 200);
    await new Promise(() => {});
  }
  const t0 = performance.now();
  try {
    await comm.allReduce(new Float32Array(10), 'sum');
    report({ caught: null });
  } catch (e) {
    report({ caught: (e as Error).name, message: (e as Error).message, ms: performance.now() - t0 - 200 });
    throw e;
  }
}

async function timeout(): Promise<void> {
  if (rank === W - 1) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500); // arrives late
  }
  const t0 = performance.now();
  try {
    await comm.barrier();
    report({ caught: null });
  } catch (e) {
    report({ caught: (e as Error).name, message: (e as Error).message, isComm: e instanceof CommunicationError, ms: performance.now() - t0 });
  }
}

/** The native addon in this worker: loads, runs f32 and bf16 matmuls concurrently with the other ranks, matches portable. */
async function native(): Promise<void> {
  const { getBackend, nativeAvailable } = await import('../../src/backend/index.js');
  if (!nativeAvailable()) { report({ native: false }); return; }
  const nb = getBackend('native'), pb = getBackend('portable');
  const M = 96, N = 80, K = 64;
  const a = new Float32Array(M * K).map((_, i) => ((i * 31 + rank) % 17) / 8 - 1);
  const b = new Float32Array(K * N).map((_, i) => ((i * 7) % 13) / 6 - 1);
  const bf = (x: Float32Array): Uint16Array => new Uint16Array(new Float32Array(x).buffer.slice(0)).filter((_, i) => i % 2 === 1);
  const args = (out: Float32Array, dtype: 'f32' | 'bf16') => ({
    a: dtype === 'f32' ? a : bf(a), b: dtype === 'f32' ? b : bf(b), out, dtype, batch: 1, M, N, K,
    transA: false, transB: false, strideA: 0, strideB: 0, alpha: 1, beta: 0,
  });
  let maxErr = 0;
  await comm.barrier();
  for (let it = 0; it < 30; it++) {
    for (const dtype of ['f32', 'bf16'] as const) {
      const want = new Float32Array(M * N), got = new Float32Array(M * N);
      pb.matmul(args(want, dtype));
      nb.matmul(args(got, dtype));
      for (let i = 0; i < want.length; i++) maxErr = Math.max(maxErr, Math.abs(want[i]! - got[i]!));
    }
  }
  await comm.barrier();
  report({ native: true, maxErr, threads: nb.numThreads(), env: process.env.AUTOGLM_NUM_THREADS, describe: nb.describe() });
}

const scenarios: Record<string, () => Promise<void>> = { collectives, exit: failing, throw: failing, timeout, native };
await scenarios[args.scenario]!();
await comm.close();
