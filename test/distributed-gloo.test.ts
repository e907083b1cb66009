/**
 * The gloo communicator across real processes: each rank is a child (test/helpers/gloo-worker.ts) that rendezvouses
 * through a FileStore in a temp dir, or through Redis (AUTOGLM_TEST_REDIS, else redis://127.0.0.1:6379 when one
 * answers). Checks the collectives' results on 2 and 3 ranks, that a peer killed (SIGKILL) or stopped (SIGSTOP: found by the heartbeats) mid-all-reduce surfaces on the others as a CommunicationError
 * within 1 s, and that a peer that never calls fails the op after the configured timeout.
 * Skipped when the addon is not built, and Redis cases when no Redis answers, except under CI=true.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CommunicationError, ConfigError } from '../src/errors.js';
import { GLOO_HINT, GlooCommunicator, glooAvailable } from '../src/distributed/gloo.js';

const CI = process.env.CI === 'true';
const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'gloo-worker.ts');
const available = glooAvailable();
const skipAll = available.ok || CI ? false : `gloo addon not built (${available.reason}); to run: ${GLOO_HINT}`;

interface Event { rank: number; event: string; [k: string]: unknown }

/** `world` worker processes of one run; `next(rank, event)` resolves with that rank's next matching line. */
function spawnRanks(scenario: string, world: number, rendezvous: string, timeoutMs?: number) {
  const runId = `t${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const seen: Event[][] = Array.from({ length: world }, () => []);
  const waiters: (() => void)[] = [];
  const stderr: string[] = Array.from({ length: world }, () => '');
  const children: ChildProcess[] = [];
  for (let r = 0; r < world; r++) {
    const args = ['--import', 'tsx', WORKER, scenario, String(r), String(world), rendezvous, runId];
    if (timeoutMs !== undefined) args.push(String(timeoutMs));
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stderr!.on('data', (d) => (stderr[r] += String(d)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      seen[r]!.push(JSON.parse(line) as Event);
      for (const w of waiters.splice(0)) w();
    });
    child.on('exit', () => { for (const w of waiters.splice(0)) w(); });
    children.push(child);
  }
  const next = (rank: number, event: string, withinMs = 60_000): Promise<Event> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`rank ${rank}: no '${event}' within ${withinMs} ms; ` +
        `saw ${JSON.stringify(seen[rank])}; stderr ${stderr[rank]}`)), withinMs);
      const look = (): void => {
        const hit = seen[rank]!.find((e) => e.event === event || e.event === 'fatal');
        if (hit) {
          clearTimeout(timer);
          if (hit.event === 'fatal') reject(new Error(`rank ${rank} failed: ${hit.name}: ${hit.message}`));
          else resolve(hit);
        } else if (children[rank]!.exitCode !== null || children[rank]!.signalCode !== null) {
          clearTimeout(timer);
          reject(new Error(`rank ${rank} exited without '${event}'; stderr ${stderr[rank]}`));
        } else {
          waiters.push(look);
        }
      };
      look();
    });
  const killAll = (): void => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL'); };
  return { children, next, killAll };
}

function tempStore(): { url: string; dispose: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'autoglm-gloo-'));
  return { url: pathToFileURL(dir).href, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The Redis to test against, or the reason there is none. */
async function findRedis(): Promise<{ url: string } | { skip: string }> {
  if (process.env.AUTOGLM_TEST_REDIS) return { url: process.env.AUTOGLM_TEST_REDIS };
  const up = await new Promise<boolean>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: 6379 });
    s.setTimeout(500, () => { s.destroy(); resolve(false); });
    s.on('connect', () => { s.end(); resolve(true); });
    s.on('error', () => resolve(false));
  });
  return up ? { url: 'redis://127.0.0.1:6379' }
    : { skip: 'no Redis on 127.0.0.1:6379 and AUTOGLM_TEST_REDIS unset (start one: redis-server --daemonize yes, after apt-get install redis-server; bash .ci/run starts its own)' };
}
const redis = await findRedis();
const redisSkip = 'skip' in redis && !CI ? redis.skip : false;

test('gloo: the addon loads (CI requires it)', { skip: skipAll }, () => {
  assert.ok(available.ok, `gloo addon unavailable under CI=true: ${available.ok ? '' : available.reason}`);
});

test('gloo: options are validated before any connection', { skip: skipAll }, async () => {
  const base = { rank: 0, worldSize: 2, rendezvous: 'file:///tmp/x' };
  await assert.rejects(GlooCommunicator.create({ ...base, rank: 2 }), ConfigError);
  await assert.rejects(GlooCommunicator.create({ ...base, worldSize: 0 }), ConfigError);
  await assert.rejects(GlooCommunicator.create({ ...base, rendezvous: 'tcp://h:1' }), /expected the scheme/);
  await assert.rejects(GlooCommunicator.create({ ...base, timeoutMs: -1 }), ConfigError);
  await assert.rejects(GlooCommunicator.create({ ...base, runId: 'a/b' }), ConfigError);
  await assert.rejects(GlooCommunicator.create({ ...base, heartbeatMs: -5 }), /heartbeatMs.*>= 0/);
  process.env.AUTOGLM_DP_HEARTBEAT_MS = 'soon';
  try {
    await assert.rejects(GlooCommunicator.create(base), /AUTOGLM_DP_HEARTBEAT_MS is 'soon'/);
  } finally {
    delete process.env.AUTOGLM_DP_HEARTBEAT_MS;
  }
});

test('gloo: world size 1 in this process; close twice; calls after close reject', { skip: skipAll }, async () => {
  const store = tempStore();
  try {
    const comm = await GlooCommunicator.create({ rank: 0, worldSize: 1, rendezvous: store.url, runId: 'solo' });
    const x = Float32Array.from([1, 2, 3]);
    await comm.allReduce(x);
    assert.deepEqual([...x], [1, 2, 3]);
    const all = await comm.allGather(Uint8Array.from([7, 8]));
    assert.deepEqual(all.map((p) => [...p]), [[7, 8]]);
    await comm.barrier();
    await comm.close();
    await comm.close();
    await assert.rejects(comm.barrier(), CommunicationError);
  } finally {
    store.dispose();
  }
});

for (const world of [2, 3]) {
  for (const kind of ['file', 'redis'] as const) {
    const skip = skipAll || (kind === 'redis' ? redisSkip : false);
    test(`gloo: collectives over ${world} ranks, ${kind} rendezvous`, { skip }, async () => {
      if (kind === 'redis' && 'skip' in redis) assert.fail(`${redis.skip}; CI=true requires the Redis case`);
      const store = kind === 'file' ? tempStore() : { url: (redis as { url: string }).url, dispose: () => undefined };
      const run = spawnRanks('ops', world, store.url);
      try {
        const done = await Promise.all(Array.from({ length: world }, (_, r) => run.next(r, 'done')));
        for (const d of done) assert.deepEqual(d.failures, [], `rank ${d.rank}`);
        const stats = done.map((d) => d.stats as { allReduceBytes: number; calls: number });
        assert.ok(stats.every((s) => s.calls === 6 && s.allReduceBytes > 0));
      } finally {
        run.killAll();
        store.dispose();
      }
    });
  }
}

for (const [signal, how] of [['SIGKILL', 'killed'], ['SIGSTOP', 'stopped']] as const) for (const world of [2, 3]) {
  test(`gloo: a peer ${how} (${signal}) mid-all-reduce is reported on the ${world - 1} others within 1 s`, { skip: skipAll },
    async (t) => {
      const store = tempStore();
      const run = spawnRanks('loop', world, store.url, 30_000);
      try {
        await Promise.all(Array.from({ length: world }, (_, r) => run.next(r, 'looping')));
        const victim = world - 1;
        const t0 = performance.now();
        run.children[victim]!.kill(signal);
        for (let r = 0; r < victim; r++) {
          const e = await run.next(r, 'error', 10_000);
          const ms = performance.now() - t0;
          const msg = `rank ${r} saw the ${signal} of rank ${victim} after ${ms.toFixed(1)} ms: ${e.message}`;
          t.diagnostic(msg);
          assert.equal(e.name, 'CommunicationError');
          assert.match(String(e.message), new RegExp(`allReduce on rank ${r} of ${world}`));
          assert.ok(ms < 1000, `detected after ${ms} ms; expected < 1000`);
        }
      } finally {
        run.killAll();
        store.dispose();
      }
    });
}

test('gloo: a payload length over maxGatherBytes fails allGather on every rank, naming the rank, before allocating', { skip: skipAll }, async () => {
  const store = tempStore();
  const run = spawnRanks('oversize', 2, store.url, 10_000);
  try {
    for (const r of [0, 1]) {
      const e = await run.next(r, 'error', 20_000);
      assert.equal(e.name, 'CommunicationError');
      assert.match(String(e.message), /allGather on rank \d of 2: rank 1 announced a payload of 4096 bytes; the limit is 1024 bytes/);
    }
  } finally {
    run.killAll();
    store.dispose();
  }
});

test('gloo: a peer that never calls fails the op after the configured timeout', { skip: skipAll }, async (t) => {
  const store = tempStore();
  const run = spawnRanks('stall', 2, store.url, 800);
  try {
    const e = await run.next(0, 'error', 20_000);
    t.diagnostic(`barrier failed after ${(e.elapsedMs as number).toFixed(0)} ms: ${e.message}`);
    assert.equal(e.name, 'CommunicationError');
    assert.match(String(e.message), /barrier on rank 0 of 2: .*Timed out/);
    assert.ok((e.elapsedMs as number) >= 700 && (e.elapsedMs as number) < 5000, `after ${e.elapsedMs} ms`);
  } finally {
    run.killAll();
    store.dispose();
  }
});

test('gloo: a process that exits without closing its communicators exits cleanly (no abort at teardown)', { skip: skipAll }, async () => {
  const store = tempStore();
  const gloo = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'distributed', 'gloo.ts')).href;
  const code = `import { GlooCommunicator } from ${JSON.stringify(gloo)};
    const cs = await Promise.all([0, 1].map((rank) => GlooCommunicator.create({ rank, worldSize: 2, rendezvous: ${JSON.stringify(store.url)}, runId: 'noclose', timeoutMs: 10000 })));
    const x = new Float32Array([1]); await Promise.all(cs.map((c) => c.allReduce(x.slice())));
    console.log('done');`;
  try {
    const r = await new Promise<{ code: number | null; signal: string | null; out: string }>((resolve) => {
      const c = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      c.stdout!.on('data', (d) => (out += d));
      c.stderr!.on('data', (d) => (out += d));
      c.on('exit', (code, signal) => resolve({ code, signal, out }));
    });
    assert.equal(r.signal, null, r.out);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /done/);
  } finally {
    store.dispose();
  }
});

test('gloo: a Redis URL where something else listens, or a Redis that refuses us, fails at once naming the store (no hang)', { skip: skipAll }, async () => {
  const servers: net.Server[] = [];
  const listen = (onConn: (s: net.Socket) => void): Promise<number> => new Promise((resolve) => {
    const srv = net.createServer(onConn);
    servers.push(srv);
    srv.listen(0, '127.0.0.1', () => resolve((srv.address() as net.AddressInfo).port));
  });
  try {
    const silent = await listen(() => undefined); // accepts, never answers (hiredis would wait forever)
    const denied = await listen((s) => s.end('-DENIED Redis is running in protected mode\r\n'));
    const http = await listen((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    const t0 = performance.now();
    await assert.rejects(GlooCommunicator.create({ rank: 0, worldSize: 2, rendezvous: `redis://127.0.0.1:${silent}`, timeoutMs: 800 }),
      (e: unknown) => e instanceof CommunicationError && /rank 0 of 2: the rendezvous store redis:\/\/127\.0\.0\.1:\d+ did not answer PING within 800 ms/.test(e.message));
    assert.ok(performance.now() - t0 < 5000);
    await assert.rejects(GlooCommunicator.create({ rank: 0, worldSize: 2, rendezvous: `redis://127.0.0.1:${denied}` }), /refused us: DENIED Redis is running in protected mode/);
    await assert.rejects(GlooCommunicator.create({ rank: 0, worldSize: 2, rendezvous: `redis://127.0.0.1:${http}` }), /answered PING with something that is not Redis \("HTTP/);
  } finally {
    for (const s of servers) s.close();
  }
});
