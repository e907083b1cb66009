/**
 * Gloo all-reduce timing on loopback:
 *   node --import tsx scripts/bench-gloo.ts [--ranks 2] [--mib 16] [--iters 20] [--rendezvous file:///dir|redis://h:p]
 * Spawns one process per rank (this script again, with --rank), rendezvouses through a FileStore in a temp dir unless
 * --rendezvous is given, runs 3 warm-up all-reduces of `mib` MiB of f32 then `iters` timed ones, each after a barrier,
 * and prints rank 0's median and best time and the algorithm bandwidth (bytes / time).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { GlooCommunicator } from '../src/distributed/gloo.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
}
const ranks = Number(arg('ranks', '2'));
const mib = Number(arg('mib', '16'));
const iters = Number(arg('iters', '20'));

async function rankMain(rank: number, rendezvous: string, runId: string): Promise<void> {
  const comm = await GlooCommunicator.create({ rank, worldSize: ranks, rendezvous, runId });
  const x = new Float32Array((mib * 1024 * 1024) / 4).fill(1);
  const times: number[] = [];
  for (let i = 0; i < 3 + iters; i++) {
    await comm.barrier();
    const t0 = performance.now();
    await comm.allReduce(x);
    if (i >= 3) times.push(performance.now() - t0);
  }
  await comm.close();
  if (rank === 0) {
    times.sort((a, b) => a - b);
    const median = times[Math.floor(times.length / 2)]!;
    console.log(`gloo allReduce f32 ${mib} MiB, ${ranks} ranks, loopback (${os.cpus().length} CPUs): ` +
      `median ${median.toFixed(2)} ms, best ${times[0]!.toFixed(2)} ms, ` +
      `${((mib / 1024) / (median / 1000)).toFixed(2)} GiB/s algorithm bandwidth (${iters} iterations)`);
  }
}

const rankArg = process.argv.indexOf('--rank');
if (rankArg >= 0) {
  await rankMain(Number(process.argv[rankArg + 1]), arg('rendezvous', ''), arg('run', ''));
} else {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'autoglm-bench-gloo-'));
  const rendezvous = arg('rendezvous', pathToFileURL(dir).href);
  const runId = `bench-${process.pid}-${Date.now()}`;
  const self = fileURLToPath(import.meta.url);
  const codes = await Promise.all(Array.from({ length: ranks }, (_, r) => new Promise<number | null>((resolve) => {
    const args = ['--import', 'tsx', self, ...process.argv.slice(2), '--rank', String(r), '--rendezvous', rendezvous,
      '--run', runId];
    spawn(process.execPath, args, { stdio: 'inherit' }).on('exit', resolve);
  })));
  rmSync(dir, { recursive: true, force: true });
  if (codes.some((c) => c !== 0)) process.exitCode = 1;
}
