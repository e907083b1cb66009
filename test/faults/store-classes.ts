/**
 * The rendezvous store fails: a throwaway redis-server on a free port per try, killed
 *   - during the rendezvous (some ranks waiting for one that never comes): every waiting rank must fail with a
 *     CommunicationError naming the store within STORE_FAIL_MS of the kill, never wait for the rendezvous timeout;
 *   - in the middle of a 2-rank fine-tune (`launch --rdzv redis://...`): the ranks no longer need the store, so the
 *     job must finish with the uninterrupted run's weights; when, in addition, a rank is then SIGKILLed, the restart
 *     cannot meet: the launcher must give up with the store named, promptly, and the checkpoints left must resume
 *     (with a fresh store) to the uninterrupted run's weights.
 * Needs redis-server (Debian's redis-server package) and the gloo addon.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Rng } from '../../src/backend/rng.js';
import { CommunicationError } from '../../src/errors.js';
import { GlooCommunicator, glooAvailable } from '../../src/distributed/gloo.js';
import { pingRedis } from '../../src/distributed/redis-ping.js';
import type { FaultClass } from './fuzz-classes.js';
import type { TryResult } from './fuzz.js';
import { FINETUNE, adapter, dp, dpReference, rankPid, running, sleep, start } from './jobs.js';

/** How soon after the store dies a waiting rank must fail (ms). */
const STORE_FAIL_MS = 5000;

const freePort = (): Promise<number> => new Promise((resolve, reject) => {
  const s = net.createServer();
  s.on('error', reject);
  s.listen(0, '127.0.0.1', () => {
    const { port } = s.address() as net.AddressInfo;
    s.close(() => resolve(port));
  });
});

/** A redis-server of its own on a free loopback port, answering. */
export async function startRedis(): Promise<{ url: string; proc: ChildProcess; kill(): Promise<void> }> {
  for (let tries = 0; ; tries++) {
    const port = await freePort();
    const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
    for (let i = 0; i < 100 && running(proc); i++) {
      // a PONG, not just a connection: the port may have been taken by another process between freePort and the bind
      const up = await pingRedis(`redis://127.0.0.1:${port}`, '127.0.0.1', port, 1000).then(() => true, () => false);
      if (up) return { url: `redis://127.0.0.1:${port}`, proc, kill: async () => { if (running(proc)) proc.kill('SIGKILL'); await exited; } };
      await sleep(50);
    }
    proc.kill('SIGKILL');
    if (tries >= 3) throw new Error(`redis-server did not start on port ${port}`);
  }
}

async function redisReady(): Promise<true | string> {
  const g = glooAvailable();
  if (!g.ok) return `gloo addon: ${g.reason}`;
  if (spawnSync('redis-server', ['--version']).status !== 0) return 'redis-server is not installed (apt-get install redis-server)';
  return true;
}

const duringRendezvous: FaultClass = {
  name: 'Redis store killed during the rendezvous -> CommunicationError naming it',
  weight: 1,
  setup: redisReady,
  async attempt(rng: Rng): Promise<TryResult> {
    const redis = await startRedis();
    const world = 2 + Math.floor(rng.uniform() * 2);
    try {
      // every rank but the last: they register and wait for it, polling the store
      const ranks = Array.from({ length: world - 1 }, (_, rank) => GlooCommunicator.create({ rank, worldSize: world, rendezvous: redis.url, runId: 'rz', timeoutMs: 60_000 })
        .then(async (c) => { await c.close(); return new Error('connected without the last rank'); }, (e: unknown) => e as Error));
      await sleep(50 + rng.uniform() * 700);
      const t0 = performance.now();
      await redis.kill();
      const errs = await Promise.race([Promise.all(ranks), sleep(STORE_FAIL_MS).then(() => null)]);
      const ms = performance.now() - t0;
      if (!errs) return { survived: false, dataLost: false, detail: `${world} ranks: still waiting ${STORE_FAIL_MS} ms after the store died (hang)` };
      for (const e of errs) {
        if (!(e instanceof CommunicationError) || !e.message.includes(redis.url)) {
          return { survived: false, dataLost: false, detail: `${world} ranks, after ${ms.toFixed(0)} ms: ${e.name}: ${e.message}` };
        }
      }
      return { survived: true, dataLost: false };
    } finally {
      await redis.kill();
    }
  },
};

const midRun: FaultClass = {
  name: 'Redis store killed mid-run (and then a rank) -> finishes, or fails naming it and resumes',
  weight: 2,
  setup: async () => (await redisReady()) === true ? dpReference(2) : redisReady(),
  async attempt(rng: Rng): Promise<TryResult> {
    const ref = dp.get(2)!;
    const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-fs-'));
    const redis = await startRedis();
    const alsoKillRank = rng.uniform() < 0.5;
    const what = alsoKillRank ? 'store and then rank 1 killed' : 'store killed';
    const run = start(['launch', '--nproc', '2', '--backend', 'gloo', '--rdzv', redis.url, '--run-id', 'fs', '--max-restarts', '1', ...FINETUNE, '--output-dir', dir]);
    try {
      while (running(run.child) && !existsSync(path.join(dir, 'checkpoint-0000003'))) await sleep(10);
      await sleep(rng.uniform() * 300);
      await redis.kill();
      let killedAt = 0;
      if (alsoKillRank) {
        const pid = running(run.child) && !existsSync(path.join(dir, 'adapter')) ? rankPid(run.child.pid!, 1) : null;
        if (pid) { process.kill(pid, 'SIGKILL'); killedAt = performance.now(); }
      }
      const r = await run.done;
      if (!killedAt) {
        if (r.code !== 0) return { survived: false, dataLost: false, detail: `${what}: the job failed (exit ${r.code}): ${r.out.slice(-400)}` };
      } else {
        const ms = performance.now() - killedAt;
        if (r.code === 0 || !r.out.includes(redis.url) || !/CommunicationError/.test(r.out)) {
          return { survived: false, dataLost: false, detail: `${what}: exit ${r.code} without naming the store: ${r.out.slice(-400)}` };
        }
        if (ms > 60_000) return { survived: false, dataLost: false, detail: `${what}: gave up only after ${ms.toFixed(0)} ms` };
        // what was finished survives: resume with a fresh store
        const fresh = await startRedis();
        try {
          const again = await start(['launch', '--nproc', '2', '--backend', 'gloo', '--rdzv', fresh.url, '--run-id', 'fs2', ...FINETUNE, '--output-dir', dir, '--resume', 'true']).done;
          if (again.code !== 0) return { survived: true, dataLost: true, detail: `${what}: resume failed: ${again.out.slice(-400)}` };
        } finally {
          await fresh.kill();
        }
      }
      const w = adapter(dir);
      return w && w.equals(ref.weights) ? { survived: true, dataLost: false } : { survived: true, dataLost: true, detail: `${what}: final weights differ` };
    } finally {
      await redis.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

export const STORE_CLASSES: FaultClass[] = [duringRendezvous, midRun];
