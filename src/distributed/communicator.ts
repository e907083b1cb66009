/**
 * The collective operations data-parallel training needs, behind one interface. Implementations: `single`
 * (world size 1, every call a no-op copy), `local` (worker threads over SharedArrayBuffer, no service needed) and
 * `gloo` (an N-API addon over Debian's libgloo, rendezvous through a Redis or file store).
 *
 * Every call is collective: all ranks make the same calls in the same order. A peer that dies or stops answering
 * surfaces on the other ranks as a `CommunicationError` (lost peer within about a second; otherwise after
 * `timeoutMs`), never as a hang.
 */

export type CommunicatorBackend = 'single' | 'local' | 'gloo';

/** Bytes this rank put on the wire, by operation, since the communicator was made. */
export interface CommStats {
  allReduceBytes: number;
  allGatherBytes: number;
  broadcastBytes: number;
  calls: number;
}

export interface Communicator {
  readonly backend: CommunicatorBackend;
  readonly rank: number;
  readonly worldSize: number;
  /** Sums `data` element-wise over all ranks, in place (op 'mean' divides by worldSize afterwards). */
  allReduce(data: Float32Array, op?: 'sum' | 'mean'): Promise<void>;
  /** Every rank's payload (of any length, possibly different per rank), indexed by rank. */
  allGather(payload: Uint8Array): Promise<Uint8Array[]>;
  /** Root's bytes to every rank: `data` is filled in place on the others (same length on every rank). */
  broadcast(data: Uint8Array, root?: number): Promise<void>;
  barrier(): Promise<void>;
  readonly stats: CommStats;
  /** Releases sockets, threads and shared memory. Safe to call twice. */
  close(): Promise<void>;
}

export function emptyStats(): CommStats {
  return { allReduceBytes: 0, allGatherBytes: 0, broadcastBytes: 0, calls: 0 };
}
