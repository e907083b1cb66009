/**
 * One rank of a gloo test run (spawned by test/distributed-gloo.test.ts). Usage:
 *   gloo-worker.ts <scenario> <rank> <worldSize> <rendezvous> <runId> [timeoutMs]
 * Prints one JSON object per line on stdout: {event: ...}. Scenarios:
 *   ops      allReduce (sum, mean), allGather with per-rank lengths (rank 0 empty), an all-empty allGather,
 *            broadcast from the last rank, barrier; prints {event:'done', failures, stats}.
 *   loop     all-reduces 1 MiB in a loop, printing {event:'looping'} once; on error prints {event:'error'} and exits.
 *   stall    rank 0 calls barrier and reports the error; the other ranks connect and then never call.
 *   oversize maxGatherBytes 1024; the last rank gathers 4096 bytes, the others 10: every rank reports its error,
 *            then checks the communicator refuses further ops; prints {event:'error', ...}.
 */
import { GlooCommunicator } from '../../src/distributed/gloo.js';

const [scenario, rankS, worldS, rendezvous, runId, timeoutS] = process.argv.slice(2);
const rank = Number(rankS);
const worldSize = Number(worldS);
const say = (o: object): void => void process.stdout.write(`${JSON.stringify({ rank, ...o })}\n`);
const describe = (e: unknown): object => ({ name: (e as Error).name, message: (e as Error).message });

async function ops(comm: GlooCommunicator): Promise<string[]> {
  const failures: string[] = [];
  const check = (ok: boolean, what: string): void => void (ok || failures.push(what));
  const W = worldSize;

  const x = Float32Array.from({ length: 1000 }, (_, i) => rank + 1 + i * 0.5);
  await comm.allReduce(x);
  check(x.every((v, i) => v === (W * (W + 1)) / 2 + W * i * 0.5), `allReduce sum: got ${x.slice(0, 3)}`);
  const m = new Float32Array(7).fill(rank * 2);
  await comm.allReduce(m, 'mean');
  check(m.every((v) => Math.abs(v - (W - 1)) < 1e-6), `allReduce mean: got ${m.slice(0, 3)}`);

  const mine = new Uint8Array(rank * 3).fill(rank + 10); // rank 0 sends nothing
  const all = await comm.allGather(mine);
  check(all.length === W, `allGather: ${all.length} payloads`);
  for (let r = 0; r < W; r++) {
    check(all[r]!.length === r * 3 && all[r]!.every((b) => b === r + 10), `allGather payload ${r}: ${all[r]}`);
  }
  const none = await comm.allGather(new Uint8Array(0));
  check(none.length === W && none.every((p) => p.length === 0), 'allGather of empty payloads');

  const root = W - 1;
  const b = rank === root ? Uint8Array.from([1, 2, 3, 4, 5]) : new Uint8Array(5);
  await comm.broadcast(b, root);
  check(b.join() === '1,2,3,4,5', `broadcast: got ${b.join()}`);

  await comm.barrier();
  return failures;
}

async function main(): Promise<void> {
  const timeoutMs = timeoutS ? Number(timeoutS) : undefined;
  const maxGatherBytes = scenario === 'oversize' ? 1024 : undefined;
  const comm = await GlooCommunicator.create({ rank, worldSize, rendezvous: rendezvous!, runId, timeoutMs, maxGatherBytes });
  say({ event: 'connected' });
  if (scenario === 'ops') {
    const failures = await ops(comm);
    say({ event: 'done', failures, stats: comm.stats });
  } else if (scenario === 'loop') {
    const x = new Float32Array(1 << 18);
    for (let i = 0; ; i++) {
      try {
        await comm.allReduce(x);
      } catch (e) {
        say({ event: 'error', iterations: i, ...describe(e) });
        break;
      }
      if (i === 20) say({ event: 'looping' });
    }
  } else if (scenario === 'oversize') {
    try {
      await comm.allGather(new Uint8Array(rank === worldSize - 1 ? 4096 : 10));
      say({ event: 'done' });
    } catch (e) {
      say({ event: 'error', ...describe(e) });
    }
  } else if (scenario === 'stall') {
    if (rank !== 0) {
      setInterval(() => undefined, 1000); // alive, connected, never calls; the parent kills it
      return;
    }
    const t0 = performance.now();
    try {
      await comm.barrier();
      say({ event: 'done' });
    } catch (e) {
      say({ event: 'error', elapsedMs: performance.now() - t0, ...describe(e) });
    }
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }
  await comm.close();
  await comm.close(); // safe twice
}

main().catch((e: unknown) => {
  say({ event: 'fatal', ...describe(e) });
  process.exitCode = 1;
});
