/**
 * Fuzzing of the gloo allGather's payload lengths: 2-3 gloo ranks in this process (a file store in a temp dir);
 * one rank announces a hostile length (0, the limit and its neighbours, 2^31, 2^32, 2^53 + 1, 2^63, 2^64 - 1, or
 * random) instead of its payload's, the others gather compressed step frames. Over `maxGatherBytes` every rank must
 * fail with a CommunicationError naming the lying rank and the limit, before allocating anything (the process's
 * RSS may not grow by the announced size); within it every rank must get exactly the announced bytes, and decoding
 * the gathered frames must succeed or raise a CommunicationError. No crash, no hang.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Rng } from '../../src/backend/rng.js';
import { CommunicationError } from '../../src/errors.js';
import { GlooCommunicator, glooAvailable } from '../../src/distributed/gloo.js';
import { COMPRESSION_METHODS, GradientCompression } from '../../src/compress/index.js';
import type { FaultClass } from './fuzz-classes.js';
import { int, pick, type TryResult } from './fuzz.js';

/** How much the process may grow during one gather (bytes): far below any hostile length over the limit. */
const RSS_SLACK = 64 * 2 ** 20;
let tryNo = 0;

async function attempt(rng: Rng): Promise<TryResult> {
  const world = 2 + int(rng, 2);
  const max = pick(rng, [64, 4096, 65536]);
  const liar = int(rng, world);
  const n = 1 + int(rng, 2000);
  const announce = pick(rng, [0n, 1n, BigInt(max - 1), BigInt(max), BigInt(max + 1), 2n ** 31n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n, BigInt(int(rng, 2 * max))]);
  const method = pick(rng, COMPRESSION_METHODS);
  const what = `${world} ranks, rank ${liar} announces ${announce} bytes (limit ${max}), ${method} frames of ${n} values`;
  const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-gf-'));
  const comms: GlooCommunicator[] = [];
  const runId = `gf${tryNo++}`;
  try {
    comms.push(...await Promise.all(Array.from({ length: world }, (_, rank) => GlooCommunicator.create({
      rank, worldSize: world, rendezvous: pathToFileURL(dir).href, runId, timeoutMs: 5000, maxGatherBytes: max, heartbeatMs: 0,
    }))));
    const gc = (seed: number) => new GradientCompression({ method }, { seed, shapes: new Map([['g', [n]]]) });
    const frames = comms.map((_, r) => gc(1).encode(new Map([['g', Float32Array.from({ length: n }, () => rng.normal())]]), r).subarray(0, max));
    const rss0 = process.memoryUsage().rss;
    const t0 = performance.now();
    const results = await Promise.allSettled(comms.map((c, r) => (r === liar ? c.allGatherAnnouncing(frames[r]!, announce) : c.allGather(frames[r]!))));
    const ms = performance.now() - t0;
    const grew = process.memoryUsage().rss - rss0;
    if (ms > 5000) return { survived: false, dataLost: false, detail: `${what}: took ${ms.toFixed(0)} ms (hang?)` };
    if (grew > RSS_SLACK) return { survived: false, dataLost: false, detail: `${what}: RSS grew by ${(grew / 2 ** 20).toFixed(0)} MB` };
    for (const [r, res] of results.entries()) {
      if (announce > BigInt(max)) {
        const ok = res.status === 'rejected' && res.reason instanceof CommunicationError &&
          (res.reason.message as string).includes(`rank ${liar} announced a payload of ${announce} bytes; the limit is ${max} bytes`);
        if (!ok) return { survived: false, dataLost: false, detail: `${what}: rank ${r}: ${res.status === 'rejected' ? `${res.reason?.name}: ${res.reason?.message}` : 'no error'}` };
        continue;
      }
      if (res.status === 'rejected') return { survived: false, dataLost: false, detail: `${what}: rank ${r}: ${res.reason?.name}: ${res.reason?.message}` };
      const got = res.value;
      if (got[liar]!.length !== Number(announce) || got.some((p, q) => q !== liar && !Buffer.from(p).equals(Buffer.from(frames[q]!)))) {
        return { survived: false, dataLost: false, detail: `${what}: rank ${r} gathered other bytes than were sent` };
      }
      try {
        gc(1).decodeSum(got, new Map([['g', new Float32Array(n)]]), true);
      } catch (e) {
        if (!(e instanceof CommunicationError)) return { survived: false, dataLost: false, detail: `${what}: decoding on rank ${r}: ${(e as Error).name}: ${(e as Error).message}` };
      }
    }
    return { survived: true, dataLost: false };
  } catch (e) {
    return { survived: false, dataLost: false, detail: `${what}: ${(e as Error).name}: ${(e as Error).message}` };
  } finally {
    await Promise.all(comms.map((c) => c.close()));
    rmSync(dir, { recursive: true, force: true });
  }
}

export const glooLengths: FaultClass = {
  name: 'fuzz: gloo allGather payload lengths (a peer announcing a hostile length)',
  weight: 1,
  async setup() {
    const g = glooAvailable();
    return g.ok ? true : `gloo addon: ${g.reason}`;
  },
  attempt,
};
