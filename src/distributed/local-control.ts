/**
 * The shared control block of a local group: one Int32Array over a SharedArrayBuffer that every rank (worker thread)
 * and the parent thread see. Layout (Int32 indices):
 *
 *   [0] abort state (0 none, 1 being written, 2 set)   [1] rank the abort names   [2] reason length (bytes)
 *   [HEADER + r*STRIDE + k] for rank r, with k:
 *     ARRIVE  collective step counter (only grows; a rank stores s+1 when it reaches step s+1)
 *     STATE   0 running, 1 closed its communicator, 2 its thread exited
 *     EXIT    exit code, when STATE is 2
 *     GEN     generation of the rank's data area (grows when the rank posts a bigger SharedArrayBuffer)
 *     LEN     payload length of the current allGather / broadcast / allReduce
 *   then REASON_BYTES bytes of UTF-8 abort reason.
 *
 * Waiters sleep with Atomics.wait on a peer's ARRIVE slot; whoever changes a slot or raises an abort notifies, so
 * a lost peer wakes everyone at once.
 */

export const HEADER = 4;
export const STRIDE = 8;
export const ARRIVE = 0;
export const STATE = 1;
export const EXIT = 2;
export const GEN = 3;
export const LEN = 4;
export const REASON_BYTES = 512;

export const STATE_RUNNING = 0;
export const STATE_CLOSED = 1;
export const STATE_EXITED = 2;

export function controlBytes(worldSize: number): number {
  return (HEADER + worldSize * STRIDE) * 4 + REASON_BYTES;
}

export function slot(rank: number, field: number): number {
  return HEADER + rank * STRIDE + field;
}

/** Wakes every thread waiting on any rank's ARRIVE slot. */
export function wakeAll(ctl: Int32Array, worldSize: number): void {
  for (let r = 0; r < worldSize; r++) Atomics.notify(ctl, slot(r, ARRIVE));
}

/** Raises the group's abort flag naming `rank` and `reason`; the first abort wins. Returns whether this one won. */
export function raiseAbort(ctl: Int32Array, worldSize: number, rank: number, reason: string): boolean {
  if (Atomics.compareExchange(ctl, 0, 0, 1) !== 0) return false;
  const bytes = new TextEncoder().encode(reason).subarray(0, REASON_BYTES);
  new Uint8Array(ctl.buffer, (HEADER + worldSize * STRIDE) * 4, REASON_BYTES).set(bytes);
  Atomics.store(ctl, 1, rank);
  Atomics.store(ctl, 2, bytes.length);
  Atomics.store(ctl, 0, 2);
  wakeAll(ctl, worldSize);
  return true;
}

/** The abort reason, or null while none is set. */
export function abortReason(ctl: Int32Array, worldSize: number): string | null {
  if (Atomics.load(ctl, 0) !== 2) return null;
  const len = Atomics.load(ctl, 2);
  // Copy out of shared memory: TextDecoder refuses views over a SharedArrayBuffer.
  const bytes = new Uint8Array(len);
  bytes.set(new Uint8Array(ctl.buffer, (HEADER + worldSize * STRIDE) * 4, len));
  return new TextDecoder().decode(bytes);
}

/** Marks `rank` closed or exited (with its exit code) and wakes the waiters. */
export function markRank(ctl: Int32Array, worldSize: number, rank: number, state: number, exitCode = 0): void {
  Atomics.store(ctl, slot(rank, EXIT), exitCode);
  Atomics.store(ctl, slot(rank, STATE), state);
  wakeAll(ctl, worldSize);
}
