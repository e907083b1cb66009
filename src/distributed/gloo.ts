/**
 * The `gloo` communicator: collectives over Gloo's tcp transport through the addon build/Release/autoglm_gloo.node
 * (native/gloo/gloo.cc, built from Debian's libgloo-dev). Ranks meet through Gloo's own stores: `redis://host:port`
 * (RedisStore, for several machines) or `file:///dir` (FileStore, one machine, no service), with every key prefixed
 * by the run id so reruns against the same store do not collide.
 *
 * Each collective runs on the communicator's own native thread, one at a time in call order, and returns a Promise;
 * the event loop keeps running meanwhile. A peer that dies closes its TCP connections, which Gloo notices at once
 * (measured ~1 ms on loopback, see test/distributed-gloo.test.ts); a peer that stays alive but never calls fails the
 * operation after `timeoutMs`. A peer that is alive but stopped (SIGSTOP, a hung host) is found by the heartbeats
 * beside the collectives (heartbeat.ts) within `heartbeatMs` plus a beat (default 700 ms). Either way the promise
 * rejects with a `CommunicationError` naming the op and the rank, and the communicator is unusable afterwards (Gloo
 * pairs cannot recover): close it and rendezvous again.
 *
 * Algorithms (Gloo's): allReduce is a ring (reduce-scatter then all-gather, 1 MiB segments); allGather is an
 * all-gather of the 8-byte lengths then a ring all-gatherv of the bytes; broadcast is a binomial tree.
 */
import { createRequire } from 'node:module';
import { existsSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommunicationError, ConfigError } from '../errors.js';
import { emptyStats } from './communicator.js';
import type { CommStats, Communicator } from './communicator.js';
import { packageRoot } from '../package-root.js';
import { Heartbeats, type LostPeer } from './heartbeat.js';
import { pingRedis } from './redis-ping.js';

export interface GlooOptions {
  rank: number;
  worldSize: number;
  /** `redis://host:port` (port defaults to 6379) or `file:///absolute/dir` (created if missing). */
  rendezvous: string;
  /** Prefix for the store keys; every rank of one run must pass the same. Default: env AUTOGLM_RUN_ID, else 'autoglm'. */
  runId?: string;
  /** Rendezvous and per-operation timeout. Default 30 000 ms. */
  timeoutMs?: number;
  /**
   * The address or interface name this rank listens on for its peers. Default: env AUTOGLM_GLOO_HOST; else 127.0.0.1
   * for a file store or a Redis on loopback (one machine), otherwise this machine's hostname.
   */
  host?: string;
  /**
   * The largest allGather payload a rank may announce, in bytes. A larger length fails the op on every rank with a
   * CommunicationError before anything is allocated. Default 1 GiB (a 1-bit payload of an 8-billion-parameter model).
   */
  maxGatherBytes?: number;
  /**
   * How long a peer may send no heartbeat before it counts as lost and every pending and later operation fails
   * (ms; 0 turns heartbeats off). Default: env AUTOGLM_DP_HEARTBEAT_MS, else 700.
   */
  heartbeatMs?: number;
}

/** The addon's exports (native/gloo/gloo.cc). */
interface GlooAddon {
  version: string;
  GlooContext: new (o: NativeOptions) => NativeContext;
}
interface NativeOptions {
  rank: number;
  size: number;
  storeKind: 'file' | 'redis';
  storePath: string;
  redisHost: string;
  redisPort: number;
  prefix: string;
  hostname: string;
  iface: string;
  timeoutMs: number;
}
interface NativeContext {
  connect(): Promise<void>;
  allReduce(data: Float32Array): Promise<void>;
  allGather(payload: Uint8Array, maxBytes: number, announce?: bigint): Promise<{ data: Uint8Array; lengths: number[] }>;
  broadcast(data: Uint8Array, root: number): Promise<void>;
  barrier(): Promise<void>;
  close(): Promise<void>;
  /** Drops the context without waiting for a stuck operation (after a peer was lost); the process may exit. */
  abandon(): void;
}

export const GLOO_HINT = 'apt-get install -y libgloo-dev && npm rebuild open-autoglm';
const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_GATHER_BYTES = 2 ** 30;
const DEFAULT_HEARTBEAT_MS = 700;

let exitOnLostPeer = false;

/**
 * What a process that IS a rank does when its heartbeats lose a peer: with `true` (the CLI sets it) it prints one
 * line naming the lost rank and ends at once (SIGKILL to itself, so no exit handler can hang on the stuck
 * collective), even in the middle of a step, an evaluation or a checkpoint write (checkpoints are written
 * atomically), so the launcher restarts the job without waiting for this rank's next collective. With `false` (the
 * library default) only the pending and later operations fail.
 */
export function setExitOnLostPeer(on: boolean): void {
  exitOnLostPeer = on;
}

/** The heartbeat silence from AUTOGLM_DP_HEARTBEAT_MS, or undefined when unset. */
function envHeartbeatMs(): number | undefined {
  const v = process.env.AUTOGLM_DP_HEARTBEAT_MS;
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new ConfigError(`environment variable AUTOGLM_DP_HEARTBEAT_MS is '${v}'; expected a number of milliseconds >= 0 (0: no heartbeats)`);
  return n;
}

let addon: GlooAddon | null = null;
let loadError: string | null = null;


function loadAddon(): GlooAddon | null {
  if (addon || loadError) return addon;
  // AUTOGLM_ADDON_DIR: where the .node files are (default <package>/build/Release), as for the native backend
  const file = path.join(process.env.AUTOGLM_ADDON_DIR || path.join(packageRoot(), 'build', 'Release'), 'autoglm_gloo.node');
  if (!existsSync(file)) {
    loadError = `${file} is missing`;
    return null;
  }
  try {
    addon = createRequire(import.meta.url)(file) as GlooAddon;
  } catch (e) {
    loadError = `${file} failed to load: ${(e as Error).message}`;
  }
  return addon;
}

/** Whether the gloo addon is built and loads; `reason` says why not. */
export function glooAvailable(): { ok: true; version: string } | { ok: false; reason: string } {
  const a = loadAddon();
  return a ? { ok: true, version: a.version } : { ok: false, reason: loadError ?? 'unknown' };
}

type Store = { kind: 'file'; dir: string } | { kind: 'redis'; host: string; port: number };

function parseRendezvous(url: string): Store {
  const bad = (why: string): never => {
    throw new ConfigError(`Option 'rendezvous' passed to 'GlooCommunicator.create' is '${url}'; ${why}`);
  };
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return bad("expected 'redis://host:port' or 'file:///absolute/dir'");
  }
  if (u.protocol === 'file:') {
    const dir = fileURLToPath(u);
    if (!dir || dir === '/') bad('expected a directory such as file:///tmp/autoglm-run');
    return { kind: 'file', dir };
  }
  if (u.protocol === 'redis:') {
    const port = u.port === '' ? 6379 : Number(u.port);
    if (!u.hostname) bad('expected a host, as in redis://127.0.0.1:6379');
    return { kind: 'redis', host: u.hostname.replace(/^\[|\]$/g, ''), port };
  }
  return bad("expected the scheme 'redis:' or 'file:'");
}

const isLoopback = (host: string): boolean => host === 'localhost' || host === '::1' || host.startsWith('127.');

/** Bytes rank `rank` sends in Gloo's binomial-tree broadcast (see gloo/broadcast.cc). */
function broadcastSends(rank: number, root: number, world: number): number {
  const vrank = (rank - root + world) % world;
  const dim = Math.ceil(Math.log2(world));
  let mask = (1 << dim) - 1;
  let sends = 0;
  for (let i = 0; i < dim; i++) {
    mask ^= 1 << i;
    if ((vrank & mask) !== 0) continue;
    if ((vrank ^ (1 << i)) < world && (vrank & (1 << i)) === 0) sends++;
  }
  return sends;
}

export class GlooCommunicator implements Communicator {
  readonly backend = 'gloo' as const;
  readonly stats: CommStats = emptyStats();
  private closed = false;
  private heartbeats: Heartbeats | null = null;
  /** Set when a peer was lost: every pending and later operation fails with it. */
  private lostPeer: LostPeer | null = null;
  private lostWaiters: ((p: LostPeer) => void)[] = [];

  private constructor(
    readonly rank: number,
    readonly worldSize: number,
    private readonly ctx: NativeContext,
    private readonly maxGatherBytes: number,
  ) {}

  /** The peer the heartbeats found lost, if any. */
  get lost(): LostPeer | null {
    return this.lostPeer;
  }

  /** Validates the options, then meets the other ranks through the store and connects to each of them. */
  static async create(opts: GlooOptions): Promise<GlooCommunicator> {
    const where = 'GlooCommunicator.create';
    const { rank, worldSize } = opts;
    if (!Number.isInteger(worldSize) || worldSize < 1) {
      throw new ConfigError(`Option 'worldSize' passed to '${where}' is ${worldSize}; expected an integer >= 1`);
    }
    if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
      throw new ConfigError(`Option 'rank' passed to '${where}' is ${rank}; expected an integer in [0, ${worldSize})`);
    }
    const maxGatherBytes = opts.maxGatherBytes ?? DEFAULT_MAX_GATHER_BYTES;
    if (!Number.isSafeInteger(maxGatherBytes) || maxGatherBytes < 1) {
      throw new ConfigError(`Option 'maxGatherBytes' passed to '${where}' is ${maxGatherBytes}; expected a positive integer`);
    }
    const heartbeatMs = opts.heartbeatMs ?? envHeartbeatMs() ?? DEFAULT_HEARTBEAT_MS;
    if (!Number.isFinite(heartbeatMs) || heartbeatMs < 0) {
      throw new ConfigError(`Option 'heartbeatMs' passed to '${where}' is ${heartbeatMs}; expected a number of milliseconds >= 0 (0: no heartbeats)`);
    }
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
      throw new ConfigError(`Option 'timeoutMs' passed to '${where}' is ${timeoutMs}; expected a positive number`);
    }
    const runId = opts.runId ?? process.env.AUTOGLM_RUN_ID ?? 'autoglm';
    if (!/^[\w.-]+$/.test(runId)) {
      throw new ConfigError(`Option 'runId' passed to '${where}' is '${runId}'; expected letters, digits, '_', '.', '-'`);
    }
    const store = parseRendezvous(opts.rendezvous);
    const a = loadAddon();
    if (!a) {
      throw new CommunicationError(`The gloo communicator needs the autoglm_gloo addon (${loadError}); ` +
        `build it with: ${GLOO_HINT}`);
    }
    if (store.kind === 'file') mkdirSync(store.dir, { recursive: true });
    else {
      await pingRedis(opts.rendezvous, store.host, store.port, Math.min(timeoutMs, 30_000)).catch((e: Error) => {
        throw new CommunicationError(`gloo connect on rank ${rank} of ${worldSize}: ${e.message}`, { cause: e });
      });
    }

    const local = store.kind === 'file' || isLoopback(store.host);
    const host = opts.host ?? process.env.AUTOGLM_GLOO_HOST ?? (local ? '127.0.0.1' : os.hostname());
    const isIface = host in os.networkInterfaces();
    const ctx = new a.GlooContext({
      rank, size: worldSize, timeoutMs: Math.ceil(timeoutMs),
      storeKind: store.kind,
      storePath: store.kind === 'file' ? store.dir : '',
      redisHost: store.kind === 'redis' ? store.host : '',
      redisPort: store.kind === 'redis' ? store.port : 0,
      prefix: runId,
      hostname: isIface ? '' : host,
      iface: isIface ? host : '',
    });
    try {
      await ctx.connect();
    } catch (e) {
      await ctx.close().catch(() => undefined);
      const msg = (e as Error).message;
      const hint = /already set/.test(msg) ? ` (keys of run '${runId}' are already in the store: pass a fresh runId)` : '';
      throw new CommunicationError(`${msg}${hint} [rendezvous store ${opts.rendezvous}, host ${host}, ` +
        `timeout ${timeoutMs} ms]`, { cause: e });
    }
    const comm = new GlooCommunicator(rank, worldSize, ctx, maxGatherBytes);
    if (heartbeatMs > 0 && worldSize > 1) {
      try {
        // the address exchange is the communicator's own business: not counted in `stats`
        const exchange = async (mine: Uint8Array): Promise<Uint8Array[]> => {
          const { data, lengths } = await comm.call('allGather', () => ctx.allGather(mine, 4096));
          let off = 0;
          return lengths.map((n) => data.subarray(off, (off += n)));
        };
        comm.heartbeats = await Heartbeats.start(rank, worldSize, exchange, { silenceMs: heartbeatMs, host, timeoutMs });
      } catch (e) {
        comm.closed = true;
        comm.ctx.abandon();
        throw e;
      }
      comm.heartbeats.onLost((p) => {
        comm.lostPeer = p;
        for (const f of comm.lostWaiters.splice(0)) f(p);
        if (exitOnLostPeer && !comm.closed) {
          // stderr is synchronous on a pipe or a file; then SIGKILL, not process.exit: exit() runs the libraries'
          // destructors while this rank's gloo thread is stuck in the collective, and once in the fault suite's 3-rank
          // runs a rank never got out of it (the launcher then waited for the hang limit)
          process.stderr.write(`autoglm: CommunicationError: rank ${rank} of ${worldSize}: rank ${p.rank} ${p.reason}; exiting so the launcher can restart the job\n`);
          process.kill(process.pid, 'SIGKILL');
        }
      });
    }
    return comm;
  }

  async allReduce(data: Float32Array, op: 'sum' | 'mean' = 'sum'): Promise<void> {
    this.stats.calls++;
    if (data.length === 0) return;
    const W = this.worldSize;
    await this.call('allReduce', () => this.ctx.allReduce(data));
    this.stats.allReduceBytes += Math.round((2 * (W - 1) * data.byteLength) / W);
    if (op === 'mean') for (let i = 0; i < data.length; i++) data[i]! /= W;
  }

  /**
   * The returned arrays are views into one buffer that holds every rank's payload in rank order. A rank announcing
   * more than `maxGatherBytes` fails the op on every rank (CommunicationError naming that rank).
   */
  async allGather(payload: Uint8Array): Promise<Uint8Array[]> {
    return this.gather(payload);
  }

  /**
   * @internal For the fault suite's fuzzer only: this rank announces `announce` bytes instead of its payload's length
   * (as a hostile or broken peer would) and sends that many (its payload, cut or zero-padded).
   */
  async allGatherAnnouncing(payload: Uint8Array, announce: bigint): Promise<Uint8Array[]> {
    return this.gather(payload, announce);
  }

  private async gather(payload: Uint8Array, announce?: bigint): Promise<Uint8Array[]> {
    this.stats.calls++;
    const { data, lengths } = await this.call('allGather', () => this.ctx.allGather(payload, this.maxGatherBytes, announce));
    const W = this.worldSize;
    const out: Uint8Array[] = [];
    let off = 0;
    for (const n of lengths) {
      out.push(data.subarray(off, off + n));
      off += n;
    }
    // Ring: the lengths (8 bytes each), then every payload but the next rank's.
    if (W > 1) this.stats.allGatherBytes += 8 * (W - 1) + off - lengths[(this.rank + 1) % W]!;
    return out;
  }

  async broadcast(data: Uint8Array, root = 0): Promise<void> {
    this.stats.calls++;
    if (!Number.isInteger(root) || root < 0 || root >= this.worldSize) {
      throw new ConfigError(`Argument 'root' passed to 'GlooCommunicator.broadcast' is ${root}; ` +
        `expected an integer in [0, ${this.worldSize})`);
    }
    if (data.byteLength === 0) return;
    await this.call('broadcast', () => this.ctx.broadcast(data, root));
    this.stats.broadcastBytes += broadcastSends(this.rank, root, this.worldSize) * data.byteLength;
  }

  async barrier(): Promise<void> {
    this.stats.calls++;
    await this.call('barrier', () => this.ctx.barrier());
  }

  /**
   * Waits for the operations already queued (a stalled one for up to `timeoutMs`), then drops the connections.
   * After a lost peer it returns at once: the stuck operation is abandoned, and the process can exit.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.lostPeer) {
      this.ctx.abandon();
      await this.heartbeats?.abort();
      return;
    }
    await this.heartbeats?.close();
    await this.ctx.close();
  }

  /** Runs one native operation, turning its rejection (or a lost peer, whichever comes first) into a CommunicationError. */
  private async call<T>(op: string, fn: () => Promise<T>): Promise<T> {
    const lostError = (p: LostPeer): CommunicationError => new CommunicationError(
      `gloo ${op} on rank ${this.rank} of ${this.worldSize}: rank ${p.rank} ${p.reason}; the job must restart (autoglm launch --max-restarts)`);
    if (this.lostPeer) throw lostError(this.lostPeer);
    const native = fn();
    let onLost: ((p: LostPeer) => void) | null = null;
    const lost = new Promise<never>((_resolve, reject) => {
      onLost = (p) => reject(lostError(p));
      this.lostWaiters.push(onLost);
    });
    native.catch(() => undefined); // when the lost peer wins the race, the native op may still fail later
    try {
      return await Promise.race([native, lost]);
    } catch (e) {
      if (e instanceof CommunicationError) throw e;
      throw new CommunicationError((e as Error).message, { cause: e });
    } finally {
      this.lostWaiters = this.lostWaiters.filter((f) => f !== onLost);
    }
  }
}
