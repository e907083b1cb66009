/**
 * Output buffers. A kernel output that the kernel overwrites completely need not be zero-filled first:
 * `uninitF32` takes uninitialised memory in Node for buffers of 64 KiB and more (Buffer.allocUnsafeSlow, its
 * own ArrayBuffer, so aligned and garbage-collected like any other), saving a memset and the first-touch page
 * faults of fresh zeroed pages on every op. Elsewhere (browsers, small sizes) it is an ordinary Float32Array.
 * Use it only where every element is written before it is read.
 */
import { backend } from '../backend/index.js';

/**
 * On a device-resident backend (WebGPU), tensor storage is a device array, not a typed array. One check per op
 * (never per element): `ArrayBuffer.isView` is true for every typed array and false for a device array.
 */
export function isDeviceStorage(s: { readonly length: number }): boolean {
  return !ArrayBuffer.isView(s);
}

/** A zero-filled f32 buffer: a typed array, or device storage on a device-resident backend. */
export function zerosF32(n: number): Float32Array {
  const b = backend();
  return b.device ? (b.alloc('f32', n) as Float32Array) : new Float32Array(n);
}

const NodeBuffer: { allocUnsafeSlow(n: number): Uint8Array } | undefined =
  (globalThis as unknown as { Buffer?: { allocUnsafeSlow(n: number): Uint8Array } }).Buffer;

const MIN_BYTES = 1 << 16;

/**
 * Buffers handed back once provably dead, reused by the next request of the same byte length (of either dtype: a
 * bf16 cast of (rows, 2n) serves an f32 activation of (rows, n)): in a training loop the same shapes recur every
 * step, so this saves the allocation, the first-touch page faults and the GC pressure of most gradient buffers and
 * of the bf16 copies that products make under autocast. Dead means: the backward pass's own gradients once no
 * pending sum or `.grad` shares them (autograd.ts), and the copies an op made itself and only it holds (a
 * product's bf16 operands, attention's packed q, k, v), once its backward pass has read them on the graph's last
 * pass, or at once where nothing saves them. PyTorch's caching allocator does the same by reference counting.
 */
const pool = new Map<number, ArrayBuffer[]>();
/** The ArrayBuffers now in the pool: a second release of one (two views of it) is a no-op, never a double entry. */
const pooled = new WeakSet<ArrayBuffer>();
let pooledBytes = 0;
/**
 * At most this many bytes in the pool. cls-lora bf16 made 97 MB of fresh buffers a step with 64 MiB here, 64 MB with
 * 128 MiB (no fewer with 256); its peak RSS stayed within run-to-run noise (257-271 MB against main's 264-265), and
 * with 32 MiB it took 185 ms a step against 168 (medians of 3 alternating runs). The cost is on top of the garbage
 * V8 has not collected yet: the main job (`npx autoglm finetune`, one run each) peaked at 333 MB without a pool, 390
 * with 32 MiB, 397 with 64 and 475 with 128, in 16.6, 14.3, 14.6 and 14.4 s of training; dropping sizes no step
 * reused within two steps gave 377 MB but 16.8 s. A pool that sizes itself to the model is still to be built.
 */
const MAX_POOLED = 128 * 2 ** 20;
/**
 * At most this many buffers of one size: a step's gradients and copies of one shape are many at a time (4 layers'
 * worth; cls-lora bf16 made 145 MB of fresh buffers a step with 4 here, 136 MB with 16, no fewer with more).
 */
const MAX_PER_LENGTH = 16;

/** Reuses and fresh allocations of pooled sizes since the last reset (for profiles and tests). */
const poolCounts = { hits: 0, misses: 0, released: 0 };
export function poolStats(reset = false): { hits: number; misses: number; released: number } {
  const c = { ...poolCounts };
  if (reset) poolCounts.hits = poolCounts.misses = poolCounts.released = 0;
  return c;
}

/**
 * Returns a dead buffer to the pool. The caller guarantees that nothing will read or write it again: it was made
 * by uninitF32 / uninitU16 (or is otherwise a whole ArrayBuffer of its own), and no tensor, closure or pending
 * gradient that may still be used references its memory. Device storage, small buffers and views of part of a
 * buffer are ignored.
 */
export function releaseBuffer(buf: Float32Array | Uint16Array): void {
  if (!ArrayBuffer.isView(buf)) return;
  const bytes = buf.byteLength;
  const ab = buf.buffer as ArrayBuffer;
  if (bytes < MIN_BYTES || buf.byteOffset !== 0 || ab.byteLength !== bytes || pooledBytes + bytes > MAX_POOLED || pooled.has(ab)) return;
  const list = pool.get(bytes);
  if (list && list.length >= MAX_PER_LENGTH) return;
  if (list) list.push(ab);
  else pool.set(bytes, [ab]);
  pooled.add(ab);
  pooledBytes += bytes;
  poolCounts.released++;
}

/** releaseBuffer for an f32 buffer (the backward pass's dead gradients). */
export const releaseF32: (buf: Float32Array) => void = releaseBuffer;

/** A pooled ArrayBuffer of exactly `bytes`, or null. */
function takePooled(bytes: number): ArrayBuffer | null {
  const hit = pool.get(bytes);
  const ab = hit?.pop();
  if (!ab) return null;
  pooled.delete(ab);
  pooledBytes -= bytes;
  poolCounts.hits++;
  sinceBackwardCollect += bytes; // a step's size counts its reused buffers too (collectAfterBackward)
  return ab;
}

/** Fresh uninitialised memory of `bytes` (>= MIN_BYTES; Node's Buffer where there is one), counted for the collector. */
function freshBytes(bytes: number): ArrayBuffer | null {
  poolCounts.misses++;
  sinceBackwardCollect += bytes;
  if ((sinceCollect += bytes) >= collectEvery) {
    sinceCollect = 0;
    fullCollection?.();
    trimHeap?.();
  }
  return NodeBuffer ? NodeBuffer.allocUnsafeSlow(bytes).buffer as ArrayBuffer : null;
}

/**
 * Prompt collection of dead activations. V8 frees an ArrayBuffer's memory only when a collection finds it dead,
 * and a training step makes hundreds of MB of short-lived activations while the JS heap itself stays small, so
 * V8's own heuristics let dead buffers pile up (on GPT-2 small, ~0.3 GB at the peak of a LoRA step). PyTorch
 * frees each one at once by reference counting. The runtime's collector (Node: see backend/gc.ts) runs:
 * - at the end of a backward pass that freed its graph, when the step made `afterBackwardBytes` of fresh large
 *   buffers (collectAfterBackward);
 * - before and after the fused LM loss's logits chunk (releaseFreeMemory, collectDeadBuffers);
 * - optionally, after every `everyBytes` of fresh large buffers.
 */
export interface Collector {
  /** A full collection (Node: V8's gc()), or null where the runtime has none. */
  full: (() => void) | null;
  /** Hands the heap's free pages back to the OS (native backend: malloc_trim); null: nothing to do. */
  trim?: (() => void) | null;
  /** Collect (and trim) after every this many bytes of fresh large buffers; 0 or absent: never. */
  everyBytes?: number;
  /**
   * A backward pass that frees its graph ends with a collection when this many bytes of fresh large buffers were
   * made since the previous backward pass. Default 512 MiB.
   */
  afterBackwardBytes?: number;
  /**
   * ... but not within this many milliseconds of the previous one, which bounds its cost on fast steps that make
   * many buffers (a forced collection is 15-20 ms here: at most 2% of the time with the default 1000).
   */
  afterBackwardMinIntervalMs?: number;
}

let fullCollection: (() => void) | null = null;
let trimHeap: (() => void) | null = null;
let collectEvery = Infinity;
let sinceCollect = 0;
const AFTER_BACKWARD_BYTES = 512 * 2 ** 20;
const AFTER_BACKWARD_MIN_INTERVAL_MS = 1000;
let collectAfterBackwardBytes = AFTER_BACKWARD_BYTES;
let sinceBackwardCollect = 0;
let minBackwardIntervalMs = AFTER_BACKWARD_MIN_INTERVAL_MS;
let lastBackwardCollect = -Infinity;

/**
 * `trim`: a collection frees dead buffers into the C heap, where pages between live buffers stay resident until a
 * buffer of the right size reuses them; after a collection that is meant to lower the peak, they are returned.
 */
export function setCollector(c: Collector): void {
  fullCollection = c.full;
  trimHeap = c.trim ?? null;
  collectEvery = c.full && c.everyBytes && c.everyBytes > 0 ? c.everyBytes : Infinity;
  collectAfterBackwardBytes = c.afterBackwardBytes ?? AFTER_BACKWARD_BYTES;
  minBackwardIntervalMs = c.afterBackwardMinIntervalMs ?? AFTER_BACKWARD_MIN_INTERVAL_MS;
  sinceCollect = 0;
  sinceBackwardCollect = 0;
  lastBackwardCollect = -Infinity;
}

/**
 * Called by a backward pass that has freed its graph: every activation of the step is dead at this moment, but V8
 * frees them only at its next collection, so the next forward pass took fresh pages while they waited and its
 * first blocks raised the peak. On gpt2-lora (700 MB of fresh buffers a step), peak RSS went from 657-670 to
 * 625-648 MiB (int8 base) and from 1108-1120 to 1079-1099 (f32 base); one full collection is 15-20 ms here,
 * against a 4-5 s step. Only a large step collects: the count starts again at every backward pass, so small
 * models' steps (cls-full: 164 MB each, 450 ms) are left to V8, where a forced collection every few steps measured
 * 1-5% slower and 5-25 MB higher peaks; and at most one collection a second.
 */
export function collectAfterBackward(): void {
  const large = sinceBackwardCollect >= collectAfterBackwardBytes;
  sinceBackwardCollect = 0;
  if (!large || !fullCollection) return;
  const now = performance.now();
  if (now - lastBackwardCollect < minBackwardIntervalMs) return;
  lastBackwardCollect = now;
  // The pool's buffers go with the dead activations: held through the optimizer step they were its peak's top
  // (gpt2-full bf16: 2859 -> 3128 MB peak RSS with them kept); a step this large pays little for fresh ones.
  dropPool();
  fullCollection();
}

/** Empties the pool: its buffers are freed with the next collection. */
export function dropPool(): void {
  pool.clear();
  pooledBytes = 0;
}

/**
 * Frees dead buffers now where the runtime allows it (Node: a full collection, a few ms on a small JS heap). For
 * ops that drop a large scratch buffer of their own: left to V8, the fused LM loss's 49 MB logits chunk stayed
 * resident into the backward pass, the step's peak (measured on gpt2-lora: +49 MB).
 */
export function collectDeadBuffers(): void {
  if (fullCollection) dropPool();
  fullCollection?.();
}

/**
 * Frees dead buffers and returns the free pages of the heap to the OS: for the moment before a step's largest
 * scratch buffer, when every activation of the forward pass is alive and the garbage of that pass (dead
 * temporaries, not yet collected, and the pages of those already freed) would otherwise sit on top of the peak.
 * On gpt2-lora that garbage was 50-110 MB at the fused loss.
 */
export function releaseFreeMemory(): void {
  if (fullCollection) dropPool(); // pooled buffers are dead memory too, here on top of the peak
  fullCollection?.();
  trimHeap?.();
}

export function uninitF32(n: number): Float32Array {
  const b = backend();
  if (b.device) return b.alloc('f32', n) as Float32Array;
  const bytes = n * 4;
  if (bytes < MIN_BYTES) return new Float32Array(n);
  const ab = takePooled(bytes) ?? freshBytes(bytes);
  return ab ? new Float32Array(ab, 0, n) : new Float32Array(n);
}

/** A Uint16Array for a kernel that overwrites every element (a cast's output): pooled or uninitialised from 64 KiB, as uninitF32. */
export function uninitU16(n: number): Uint16Array {
  const b = backend();
  if (b.device) return b.alloc('bf16', n) as Uint16Array;
  const bytes = n * 2;
  if (bytes < MIN_BYTES) return new Uint16Array(n);
  const ab = takePooled(bytes) ?? freshBytes(bytes);
  return ab ? new Uint16Array(ab, 0, n) : new Uint16Array(n);
}
