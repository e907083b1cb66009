/**
 * `local`: N ranks as worker threads of one process, exchanging data through SharedArrayBuffers (no service).
 *
 * The parent thread makes a `LocalGroup` (the shared control block, see local-control.ts, one data area per rank
 * and a MessagePort per ordered pair of ranks) and hands `take(rank)` to each worker; the worker builds
 * `LocalCommunicator.fromWorkerData(data)`. A rank only ever writes its own data area and reads the others'. When a
 * payload outgrows its area, the rank allocates a bigger SharedArrayBuffer, posts it to every peer and bumps its
 * generation counter; a peer that sees a new generation takes the buffer off its port synchronously
 * (`receiveMessageOnPort`) before reading. So any size works and the common case costs no messages.
 *
 * Every collective is a few steps separated by `sync` (all ranks reach step s): write own area | sync | read | sync.
 * allReduce is reduce-scatter then all-gather through shared memory: rank r sums chunk r over all ranks (in rank
 * order, so every rank ends with bit-identical sums), then everyone copies every chunk. Waits are Atomics.wait
 * slices of at most 20 ms that check the abort flag, so a dead peer (the parent raises the flag from the worker's
 * 'exit'/'error' events) or a timeout surfaces as a CommunicationError instead of a hang.
 *
 * `stats` counts the bytes a rank writes into shared memory for others to read.
 */
import { MessageChannel, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { CommunicationError } from '../errors.js';
import { emptyStats, type CommStats, type Communicator } from './communicator.js';
import {
  ARRIVE, GEN, LEN, STATE, EXIT, STATE_CLOSED, STATE_EXITED, STATE_RUNNING,
  abortReason, controlBytes, markRank, raiseAbort, slot,
} from './local-control.js';

/** Defaults, in one place. */
export const LOCAL_DEFAULTS = {
  /** A collective that waits longer than this for a peer throws. */
  timeoutMs: 60_000,
  /** First size of each rank's data area; it grows on demand. */
  initialBytes: 1 << 16,
  /** Longest single Atomics.wait; bounds how late an abort is seen if a notify is missed. */
  waitSliceMs: 20,
} as const;

export interface LocalGroupOptions {
  timeoutMs?: number;
  initialBytes?: number;
}

/** What one worker needs to join the group (structured-cloneable; the ports go in the transfer list). */
export interface LocalGroupData {
  kind: 'autoglm-local-group';
  rank: number;
  worldSize: number;
  timeoutMs: number;
  control: SharedArrayBuffer;
  areas: SharedArrayBuffer[];
  /** toPeers[j]: port on which this rank posts its grown data area to rank j (null for itself). */
  toPeers: (MessagePort | null)[];
  /** fromPeers[j]: port on which rank j's grown data areas arrive (null for itself). */
  fromPeers: (MessagePort | null)[];
}

/** The shared state of one local group, made on the parent thread. Each rank's part can be taken once. */
export class LocalGroup {
  readonly worldSize: number;
  readonly timeoutMs: number;
  readonly control: Int32Array;
  private readonly areas: SharedArrayBuffer[];
  /** ports[w][r]: the channel on which rank w posts to rank r. */
  private readonly channels: (MessageChannel | null)[][];
  private readonly taken = new Set<number>();

  constructor(worldSize: number, opts: LocalGroupOptions = {}) {
    if (!Number.isInteger(worldSize) || worldSize < 1) {
      throw new CommunicationError(`Argument 'worldSize' passed to 'LocalGroup' is ${worldSize}; expected an integer >= 1`);
    }
    const timeoutMs = opts.timeoutMs ?? LOCAL_DEFAULTS.timeoutMs;
    if (!(timeoutMs > 0)) throw new CommunicationError(`Option 'timeoutMs' passed to 'LocalGroup' is ${timeoutMs}; expected > 0`);
    const initial = opts.initialBytes ?? LOCAL_DEFAULTS.initialBytes;
    this.worldSize = worldSize;
    this.timeoutMs = timeoutMs;
    this.control = new Int32Array(new SharedArrayBuffer(controlBytes(worldSize)));
    this.areas = Array.from({ length: worldSize }, () => new SharedArrayBuffer(Math.max(64, initial)));
    this.channels = Array.from({ length: worldSize }, (_, w) =>
      Array.from({ length: worldSize }, (_, r) => (w === r ? null : new MessageChannel())));
  }

  /** Rank `rank`'s part: pass `data` as (part of) the worker's workerData and `transferList` as its transferList. */
  take(rank: number): { data: LocalGroupData; transferList: MessagePort[] } {
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.worldSize) {
      throw new CommunicationError(`Argument 'rank' passed to 'LocalGroup.take' is ${rank}; expected an integer in [0, ${this.worldSize})`);
    }
    if (this.taken.has(rank)) throw new CommunicationError(`rank ${rank} of this LocalGroup was already taken; make a new group per run`);
    this.taken.add(rank);
    const toPeers = this.channels[rank]!.map((c) => c?.port1 ?? null);
    const fromPeers = this.channels.map((row) => row[rank]?.port2 ?? null);
    const data: LocalGroupData = {
      kind: 'autoglm-local-group', rank, worldSize: this.worldSize, timeoutMs: this.timeoutMs,
      control: this.control.buffer as SharedArrayBuffer, areas: this.areas, toPeers, fromPeers,
    };
    const transferList = [...toPeers, ...fromPeers].filter((p): p is MessagePort => p !== null);
    return { data, transferList };
  }

  /** Makes every waiting rank throw a CommunicationError naming `reason` (the first abort wins). */
  abort(rank: number, reason: string): boolean {
    return raiseAbort(this.control, this.worldSize, rank, reason);
  }

  /** Records that rank's thread ended (peers waiting for it then throw instead of waiting for the timeout). */
  markExited(rank: number, exitCode: number): void {
    markRank(this.control, this.worldSize, rank, STATE_EXITED, exitCode);
  }

  /** The abort reason, or null. */
  abortReason(): string | null {
    return abortReason(this.control, this.worldSize);
  }
}

/** A rank of a local group, living in a worker thread. */
export class LocalCommunicator implements Communicator {
  readonly backend = 'local' as const;
  readonly rank: number;
  readonly worldSize: number;
  readonly stats: CommStats = emptyStats();
  private readonly ctl: Int32Array;
  private readonly timeoutMs: number;
  private readonly areas: SharedArrayBuffer[];
  private readonly gens: number[];
  private readonly toPeers: (MessagePort | null)[];
  private readonly fromPeers: (MessagePort | null)[];
  private step = 0;
  private closed = false;
  private scratch = new Float32Array(0);

  private constructor(d: LocalGroupData, timeoutMs: number) {
    this.rank = d.rank;
    this.worldSize = d.worldSize;
    this.timeoutMs = timeoutMs;
    this.ctl = new Int32Array(d.control);
    this.areas = [...d.areas];
    this.gens = d.areas.map(() => 0);
    this.toPeers = d.toPeers;
    this.fromPeers = d.fromPeers;
    // The ports are only read synchronously; they must not keep the worker alive.
    for (const p of [...this.toPeers, ...this.fromPeers]) p?.unref();
    this.step = Atomics.load(this.ctl, slot(this.rank, ARRIVE));
  }

  /**
   * Joins the group from inside a worker, given the `data` of `LocalGroup.take(rank)`; `timeoutMs` overrides the
   * group's collective timeout for this rank.
   */
  static fromWorkerData(data: LocalGroupData, opts: { timeoutMs?: number } = {}): LocalCommunicator {
    if (data?.kind !== 'autoglm-local-group' || !(data.control instanceof SharedArrayBuffer)) {
      throw new CommunicationError(`Argument 'data' passed to 'LocalCommunicator.fromWorkerData' is not a LocalGroup part; pass LocalGroup.take(rank).data through workerData`);
    }
    const timeoutMs = opts.timeoutMs ?? data.timeoutMs;
    if (!(timeoutMs > 0)) throw new CommunicationError(`Option 'timeoutMs' passed to 'LocalCommunicator.fromWorkerData' is ${timeoutMs}; expected > 0`);
    return new LocalCommunicator(data, timeoutMs);
  }

  async allReduce(data: Float32Array, op: 'sum' | 'mean' = 'sum'): Promise<void> {
    this.enter('allReduce');
    if (!(data instanceof Float32Array)) throw new CommunicationError(`Argument 'data' passed to 'allReduce' is not a Float32Array`);
    if (op !== 'sum' && op !== 'mean') throw new CommunicationError(`Argument 'op' passed to 'allReduce' is '${String(op)}'; expected 'sum' or 'mean'`);
    const n = data.length, W = this.worldSize;
    if (W === 1) return;
    this.ensureCapacity(n * 4);
    new Float32Array(this.areas[this.rank]!, 0, n).set(data);
    Atomics.store(this.ctl, slot(this.rank, LEN), n);
    this.sync('allReduce');
    this.checkSameLength('allReduce', n);
    const views = this.peerViews('allReduce', n);
    // Reduce-scatter: this rank sums its chunk over all ranks, in rank order, into its own area.
    const [lo, hi] = chunk(n, W, this.rank);
    if (this.scratch.length < hi - lo) this.scratch = new Float32Array(hi - lo);
    const acc = this.scratch.subarray(0, hi - lo);
    acc.set(views[0]!.subarray(lo, hi));
    for (let j = 1; j < W; j++) {
      const v = views[j]!;
      for (let i = 0; i < acc.length; i++) acc[i]! += v[lo + i]!;
    }
    views[this.rank]!.set(acc, lo);
    this.sync('allReduce');
    // All-gather: every chunk from the rank that reduced it.
    for (let j = 0; j < W; j++) {
      const [l, h] = chunk(n, W, j);
      data.set(views[j]!.subarray(l, h), l);
    }
    if (op === 'mean') for (let i = 0; i < n; i++) data[i]! /= W;
    this.sync('allReduce'); // nobody overwrites its area before everyone has read it
    this.stats.allReduceBytes += (n + hi - lo) * 4;
  }

  async allGather(payload: Uint8Array): Promise<Uint8Array[]> {
    this.enter('allGather');
    if (!(payload instanceof Uint8Array)) throw new CommunicationError(`Argument 'payload' passed to 'allGather' is not a Uint8Array`);
    if (this.worldSize === 1) return [payload.slice()];
    this.ensureCapacity(payload.length);
    new Uint8Array(this.areas[this.rank]!, 0, payload.length).set(payload);
    Atomics.store(this.ctl, slot(this.rank, LEN), payload.length);
    this.sync('allGather');
    const out: Uint8Array[] = [];
    for (let j = 0; j < this.worldSize; j++) {
      if (j === this.rank) { out.push(payload.slice()); continue; }
      const len = Atomics.load(this.ctl, slot(j, LEN));
      out.push(new Uint8Array(this.peerArea('allGather', j, len), 0, len).slice());
    }
    this.sync('allGather');
    this.stats.allGatherBytes += payload.length;
    return out;
  }

  async broadcast(data: Uint8Array, root = 0): Promise<void> {
    this.enter('broadcast');
    if (!(data instanceof Uint8Array)) throw new CommunicationError(`Argument 'data' passed to 'broadcast' is not a Uint8Array`);
    if (!Number.isInteger(root) || root < 0 || root >= this.worldSize) {
      throw new CommunicationError(`Argument 'root' passed to 'broadcast' is ${root}; expected an integer in [0, ${this.worldSize})`);
    }
    if (this.worldSize === 1) return;
    if (this.rank === root) {
      this.ensureCapacity(data.length);
      new Uint8Array(this.areas[this.rank]!, 0, data.length).set(data);
      Atomics.store(this.ctl, slot(this.rank, LEN), data.length);
    }
    this.sync('broadcast');
    let mismatch: number | null = null;
    if (this.rank !== root) {
      const len = Atomics.load(this.ctl, slot(root, LEN));
      if (len === data.length) data.set(new Uint8Array(this.peerArea('broadcast', root, len), 0, len));
      else mismatch = len;
    }
    this.sync('broadcast');
    if (mismatch !== null) {
      throw new CommunicationError(`Argument 'data' passed to 'broadcast' on rank ${this.rank} has ${data.length} bytes; root ${root} sent ${mismatch}`);
    }
    if (this.rank === root) this.stats.broadcastBytes += data.length;
  }

  async barrier(): Promise<void> {
    this.enter('barrier');
    if (this.worldSize > 1) this.sync('barrier');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    markRank(this.ctl, this.worldSize, this.rank, STATE_CLOSED);
    for (const p of [...this.toPeers, ...this.fromPeers]) p?.close();
  }

  private enter(op: string): void {
    if (this.closed) throw new CommunicationError(`'${op}' called on rank ${this.rank} after close()`);
    const reason = abortReason(this.ctl, this.worldSize);
    if (reason !== null) throw new CommunicationError(`${reason}; rank ${this.rank} cannot start ${op}`);
    this.stats.calls++;
  }

  /** Announces step s+1 and waits until every rank has reached it (or throws on abort, a lost peer, a timeout). */
  private sync(op: string): void {
    const target = ++this.step;
    const ctl = this.ctl, W = this.worldSize;
    Atomics.store(ctl, slot(this.rank, ARRIVE), target);
    Atomics.notify(ctl, slot(this.rank, ARRIVE));
    const deadline = Date.now() + this.timeoutMs;
    for (let j = 0; j < W; j++) {
      for (;;) {
        const seen = Atomics.load(ctl, slot(j, ARRIVE));
        if (seen >= target) break;
        const reason = abortReason(ctl, W);
        if (reason !== null) throw new CommunicationError(`${reason} during ${op} (seen by rank ${this.rank})`);
        const state = Atomics.load(ctl, slot(j, STATE));
        // A peer marks its arrival before it can close or exit: one that arrived between the two loads above and
        // then left (the last barrier of a run) has done its part of this step.
        if (state !== STATE_RUNNING && Atomics.load(ctl, slot(j, ARRIVE)) >= target) break;
        if (state !== STATE_RUNNING) {
          const what = state === STATE_CLOSED ? 'closed its communicator' : `exited (code ${Atomics.load(ctl, slot(j, EXIT))})`;
          throw new CommunicationError(`rank ${j} ${what} during ${op} (seen by rank ${this.rank})`);
        }
        const left = deadline - Date.now();
        if (left <= 0) {
          const missing: number[] = [];
          for (let k = 0; k < W; k++) if (Atomics.load(ctl, slot(k, ARRIVE)) < target) missing.push(k);
          const msg = `${op} timed out after ${this.timeoutMs} ms on rank ${this.rank}: rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} did not arrive`;
          raiseAbort(ctl, W, this.rank, `rank ${this.rank} gave up: ${msg}`);
          throw new CommunicationError(msg);
        }
        Atomics.wait(ctl, slot(j, ARRIVE), seen, Math.min(left, LOCAL_DEFAULTS.waitSliceMs));
      }
    }
  }

  private checkSameLength(op: string, n: number): void {
    for (let j = 0; j < this.worldSize; j++) {
      const m = Atomics.load(this.ctl, slot(j, LEN));
      if (m !== n) {
        throw new CommunicationError(`Argument 'data' passed to '${op}' has ${n} elements on rank ${this.rank} but ${m} on rank ${j}; expected the same length on every rank`);
      }
    }
  }

  /** Grows this rank's data area to hold `bytes` and tells the peers (before the next sync). */
  private ensureCapacity(bytes: number): void {
    if (bytes > 0x7fffffff) throw new CommunicationError(`payload of ${bytes} bytes is over the local communicator's 2 GiB limit`);
    const cur = this.areas[this.rank]!;
    if (bytes <= cur.byteLength) return;
    const size = Math.min(0x7fffffff, Math.max(bytes, 2 * cur.byteLength));
    const sab = new SharedArrayBuffer(Math.ceil(size / 64) * 64);
    const gen = ++this.gens[this.rank]!;
    this.areas[this.rank] = sab;
    for (const p of this.toPeers) p?.postMessage({ gen, sab });
    Atomics.store(this.ctl, slot(this.rank, GEN), gen);
  }

  /** Rank j's current data area, taking a grown one off its port when its generation moved. */
  private peerArea(op: string, j: number, needBytes: number): SharedArrayBuffer {
    const want = Atomics.load(this.ctl, slot(j, GEN));
    const port = this.fromPeers[j];
    const deadline = Date.now() + Math.min(this.timeoutMs, 5000);
    while (this.gens[j] !== want && port) {
      const m = receiveMessageOnPort(port)?.message as { gen: number; sab: SharedArrayBuffer } | undefined;
      if (m) { this.gens[j] = m.gen; this.areas[j] = m.sab; continue; }
      if (Date.now() > deadline) throw new CommunicationError(`${op}: rank ${j}'s data area (generation ${want}) never arrived on rank ${this.rank}`);
      Atomics.wait(this.ctl, slot(j, GEN), want, 1);
    }
    const area = this.areas[j]!;
    if (area.byteLength < needBytes) throw new CommunicationError(`${op}: rank ${j} announced ${needBytes} bytes but its area holds ${area.byteLength}`);
    return area;
  }

  private peerViews(op: string, n: number): Float32Array[] {
    return Array.from({ length: this.worldSize }, (_, j) => new Float32Array(j === this.rank ? this.areas[j]! : this.peerArea(op, j, n * 4), 0, n));
  }
}

/** [lo, hi) of chunk `i` when `n` elements are split into `parts` nearly equal chunks. */
function chunk(n: number, parts: number, i: number): [number, number] {
  const base = Math.floor(n / parts), extra = n % parts;
  const lo = i * base + Math.min(i, extra);
  return [lo, lo + base + (i < extra ? 1 : 0)];
}
