/**
 * Output buffers. A kernel output that the kernel overwrites completely need not be zero-filled first:
 * `uninitF32` takes uninitialised memory in Node for buffers of 64 KiB and more (the native backend's freshBuffer,
 * cache-line aligned, else Buffer.allocUnsafeSlow; either its own ArrayBuffer, garbage-collected like any other),
 * saving a memset and the first-touch page faults of fresh zeroed pages on every op. Elsewhere (browsers, small sizes) it is an ordinary Float32Array.
 * Use it only where every element is written before it is read.
 */
import { backend } from '../backend/index.js';
import { ConfigError } from '../errors.js';

/**
 * On a device-resident backend (WebGPU), tensor storage is a device array, not a typed array. One check per op
 * (never per element): `ArrayBuffer.isView` is true for every typed array and false for a device array.
 */
export function isDeviceStorage(s: { readonly length: number }): boolean {
  return !ArrayBuffer.isView(s);
}

/**
 * Whether `t` is a dense tensor over a whole CPU buffer of its own (f32 or 16-bit): writing over it, or handing it to
 * the pool, touches nothing else.
 */
export function ownsWholeBuffer(t: { storage: unknown; spansStorage: boolean }): boolean {
  const s = t.storage;
  return (s instanceof Float32Array || s instanceof Uint16Array) && t.spansStorage && spansBuffer(s);
}

/**
 * Whether the typed array `s` is the whole of its buffer: from its start, as many bytes as the buffer was handed out
 * for (a pooled buffer may be longer than the request it serves; see takePooled).
 */
export function spansBuffer(s: { buffer: ArrayBufferLike; byteOffset: number; byteLength: number }): boolean {
  return s.byteOffset === 0 && s.byteLength === (handedBytes.get(s.buffer) ?? s.buffer.byteLength);
}

/**
 * A zero-filled f32 buffer: a typed array, or device storage on a device-resident backend. From 64 KiB a pooled
 * buffer of the same byte length is zero-filled and reused where there is one (its pages are resident, so a memset
 * costs less than the first-touch faults of fresh zeroed pages: an embedding's dense gradient, 8 MB in the cls
 * workloads, took 5.4 ms a step in scatterAdd's faults); otherwise fresh zeroed memory, touched lazily. From 1 MiB the
 * backend fills it (the native one on its threads: 8 MB in 0.20 ms against TypedArray.fill's 0.40 on 2 threads).
 */
export function zerosF32(n: number): Float32Array {
  const b = backend();
  if (b.device) return b.alloc('f32', n) as Float32Array;
  const bytes = n * 4;
  const ab = bytes >= MIN_BYTES ? takePooled(bytes) : null;
  if (!ab) return new Float32Array(n);
  const out = new Float32Array(ab, 0, n);
  if (bytes >= 1 << 20) b.fill(out, 0);
  else out.fill(0);
  return out;
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
 *
 * The pool sizes itself to the job (poolStepBoundary): at every step boundary each size keeps only the buffers that
 * the step just ended drew on, so a steady-state step reuses everything while one-off sizes (an evaluation's
 * batches, a length bucket that comes round again only much later) do not pin memory.
 *
 * A request of a size that the last step did not ask for takes the smallest free buffer of at least its size and at
 * most twice it (best fit, as PyTorch's caching allocator serves a smaller block from a larger one): batches of
 * varying length (length buckets) then reuse the buffers of the longer batches before them. With exact sizes only,
 * the main job (a bucket per step) made 17 MB of fresh buffers a step, and V8 ran a full collection every one or two
 * steps on that memory, its concurrent marking taking the second core from the kernels' threads (takePooled).
 */
interface PooledSize {
  /** Free buffers of this byte length, oldest first. */
  free: ArrayBuffer[];
  /** The fewest free buffers this size had since the last step boundary: that many were never needed. */
  low: number;
}
const pool = new Map<number, PooledSize>();
/** The sizes that have free buffers, in increasing order: the best-fit search's one lookup. */
const sizes: number[] = [];
/** How many bytes a pooled buffer longer than its request was handed out for (see spansBuffer). */
const handedBytes = new WeakMap<ArrayBufferLike, number>();
/** The sizes of the requests (of at least MIN_BYTES) of the step under way and of the last one (see takePooled). */
let askedThisStep = new Set<number>(), askedLastStep = new Set<number>();
/** A request takes a free buffer of up to this many times its size. */
const BEST_FIT_SLACK = 2;
/** The ArrayBuffers now in the pool: a second release of one (two views of it) is a no-op, never a double entry. */
const pooled = new WeakSet<ArrayBuffer>();
let pooledBytes = 0;
/**
 * At most this many bytes in the pool, a bound for jobs that run long without a step boundary (the pool's own
 * sizing happens at the boundaries). With this as the pool's only limit, the main job (`npx autoglm finetune`, bf16
 * on AVX512-BF16) peaked at 475 MB against 333 MB without a pool: the pool grew to its cap with sizes its steps
 * rarely asked for again (length buckets, evaluation batches; fp32 on Zen 3: 80 MB of 40 sizes after 40 steps).
 * With the boundaries (Zen 3, AVX2, one run each on a loaded host): the whole job in fp32 357 -> 294 MB, its first
 * epoch on 1200 examples 337 -> 288 MB (fp32) and 316 MB (bf16 forced); the pool holds 10-23 MB between steps; block
 * and cls-lora (one shape) reuse exactly as many buffers as before and make as many fresh ones. At 128 MB, GPT-2
 * small's steps (hundreds of MB of activations) took most of theirs fresh every step; 1 GiB, with the pool kept
 * through the collections (collectAfterBackward), measured on Zen 4 (bf16 / fp32 step against 128 MB): gpt2-full
 * 0.80 / 0.85, gpt2-lora 0.90 / 1.00, cls-full 0.92 / 0.96; peak RSS +4% (gpt2-full bf16) to -1%.
 */
const MAX_POOLED = 1024 * 2 ** 20;
/**
 * At most this many buffers of one size: a step's gradients and copies of one shape are many at a time (4 layers'
 * worth; cls-lora bf16 made 145 MB of fresh buffers a step with 4 here, 136 MB with 16, no fewer with more; GPT-2
 * small's 12 layers hand back up to 36 of one size a step).
 */
const MAX_PER_LENGTH = 64;

/** Reuses and fresh allocations of pooled sizes since the last reset (for profiles and tests). */
const poolCounts = { hits: 0, misses: 0, released: 0, dropped: 0 };
export function poolStats(reset = false): { hits: number; misses: number; released: number; dropped: number; bytes: number; buffers: number } {
  let buffers = 0;
  for (const c of pool.values()) buffers += c.free.length;
  const c = { ...poolCounts, bytes: pooledBytes, buffers };
  if (reset) poolCounts.hits = poolCounts.misses = poolCounts.released = poolCounts.dropped = 0;
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
  const ab = buf.buffer as ArrayBuffer;
  if (buf.byteLength < MIN_BYTES || !spansBuffer(buf) || pooled.has(ab)) return;
  const bytes = ab.byteLength; // pooled by the buffer's own size
  let c = pool.get(bytes);
  if (pooledBytes + bytes > MAX_POOLED || (c && c.free.length >= MAX_PER_LENGTH)) {
    refusedBytes += bytes; // dead, and left to the collector: see collectRefused
    return;
  }
  if (!c) pool.set(bytes, c = { free: [], low: 0 });
  if (c.free.length === 0) sizes.splice(firstSizeFrom(bytes), 0, bytes);
  handedBytes.delete(ab);
  c.free.push(ab);
  pooled.add(ab);
  pooledBytes += bytes;
  poolCounts.released++;
}

/**
 * A step boundary (the end of a backward pass that freed its graph; autograd calls it through collectAfterBackward):
 * each size drops the free buffers that stayed unused since the previous boundary (its low-water mark), oldest
 * first, and keeps the rest. A buffer that a step draws on is kept for the next one; one that waits a whole step
 * unused goes to the collector. The buffers handed back late in a step (the backward pass's gradients) are above the
 * low-water mark, so they wait for the next step's forward and backward passes.
 */
export function poolStepBoundary(): void {
  askedLastStep = askedThisStep;
  askedThisStep = new Set();
  for (const [bytes, c] of pool) {
    if (c.low > 0) {
      for (const ab of c.free.splice(0, c.low)) pooled.delete(ab);
      pooledBytes -= c.low * bytes;
      poolCounts.dropped += c.low;
      if (c.free.length === 0) sizes.splice(firstSizeFrom(bytes), 1); // it had free buffers, all dropped now
    }
    if (c.free.length === 0) pool.delete(bytes);
    else c.low = c.free.length;
  }
}

/** Bytes of dead buffers the pool had no room for since the last collection: they wait for V8's collector. */
let refusedBytes = 0;
const REFUSED_COLLECT_BYTES = 64 * 2 ** 20;
let refusedCollectBytes = REFUSED_COLLECT_BYTES;

/**
 * Frees the dead buffers that the pool had no room for, where they are many: zeroGrad hands back every gradient at
 * once, and on a large model they overflow the pool's cap (gpt2-full: 652 MB of gradients onto 633 MB pooled from
 * the backward pass). Left to V8 they stayed resident through the next forward pass, whose buffers came from the
 * pool and so never pushed V8 to collect, and sat on top of the step's peak at the fused loss.
 */
export function collectRefused(): void {
  if (refusedBytes >= refusedCollectBytes) collect(true);
}

/** The index in `sizes` of the first size >= bytes. */
function firstSizeFrom(bytes: number): number {
  let lo = 0, hi = sizes.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sizes[mid] < bytes) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * A pooled ArrayBuffer for `bytes`, or null: one of exactly that size, or, for a size the last step did not ask for (a
 * batch of another length), the smallest free buffer of at least `bytes`, up to BEST_FIT_SLACK times it. Within a step
 * of the same shapes as the last one, and in the first step, no size is lent another's buffers: a lent buffer was
 * missed by a request of its own size later in the step, which then took a fresh one, and the pool kept both (cls-full's
 * peak RSS +25 MB).
 */
function takePooled(bytes: number): ArrayBuffer | null {
  askedThisStep.add(bytes);
  const exact = pool.get(bytes);
  // no step ended yet: every size is new, and lending among them would set a pattern that later steps repeat
  if ((!exact || exact.free.length === 0) && (askedLastStep.size === 0 || askedLastStep.has(bytes))) return null;
  const i = firstSizeFrom(bytes), size = sizes[i];
  if (i === sizes.length || size > bytes * BEST_FIT_SLACK) return null;
  const c = pool.get(size)!;
  const ab = c.free.pop()!;
  if (c.free.length === 0) sizes.splice(i, 1);
  if (c.free.length < c.low) c.low = c.free.length;
  pooled.delete(ab);
  if (size !== bytes) handedBytes.set(ab, bytes);
  pooledBytes -= size;
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
    collect(true);
  }
  const b = backend();
  if (b.freshBuffer && (alignedBuffers ??= readAlignedSwitch())) return b.freshBuffer(bytes);
  return NodeBuffer ? NodeBuffer.allocUnsafeSlow(bytes).buffer as ArrayBuffer : null;
}

/** Whether fresh buffers come from the backend's aligned allocator (AUTOGLM_ALIGNED=0: the runtime's, for A/B timings). */
let alignedBuffers: boolean | undefined;
function readAlignedSwitch(): boolean {
  const raw = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env['AUTOGLM_ALIGNED'];
  if (raw === undefined || raw === '' || raw === '1') return true;
  if (raw === '0') return false;
  throw new ConfigError(`environment variable AUTOGLM_ALIGNED is '${raw}'; expected 1 (aligned tensor buffers, the default) or 0`);
}

/**
 * Prompt collection of dead activations. V8 frees an ArrayBuffer's memory only when a collection finds it dead,
 * and a training step makes hundreds of MB of short-lived activations while the JS heap itself stays small, so
 * V8's own heuristics let dead buffers pile up (on GPT-2 small, ~0.3 GB at the peak of a LoRA step). PyTorch
 * frees each one at once by reference counting. The runtime's collector (Node: see backend/gc.ts) runs:
 * - at the end of a backward pass that freed its graph, when the step made `afterBackwardBytes` of fresh large
 *   buffers (collectAfterBackward);
 * - before and after the fused LM loss's logits chunk (releaseFreeMemory, collectDeadBuffers);
 * - at zeroGrad, when the dead buffers that found the pool full reach `refusedBytes` (collectRefused);
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
  /** zeroGrad collects (and trims) once this many bytes of dead buffers found the pool full (collectRefused). Default 64 MiB. */
  refusedBytes?: number;
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

/** A full collection where the runtime has one (every dead buffer freed, refused ones included), then a trim if asked. */
function collect(trim: boolean): void {
  if (!fullCollection) return;
  refusedBytes = 0;
  fullCollection();
  if (trim) trimHeap?.();
}

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
  refusedCollectBytes = c.refusedBytes ?? REFUSED_COLLECT_BYTES;
  refusedBytes = 0;
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
 * 1-5% slower and 5-25 MB higher peaks; and at most one collection a second. Every such backward pass is also the
 * pool's step boundary (poolStepBoundary).
 */
export function collectAfterBackward(): void {
  poolStepBoundary();
  const large = sinceBackwardCollect >= collectAfterBackwardBytes;
  sinceBackwardCollect = 0;
  if (!large || !fullCollection) return;
  const now = performance.now();
  if (now - lastBackwardCollect < minBackwardIntervalMs) return;
  lastBackwardCollect = now;
  // The pool keeps its buffers (the next forward pass draws on them): dropped here, the next step took them as fresh
  // pages again, and the kernel's zeroing of those pages was a fifth of gpt2-full's bf16 step on Zen 4 (229 thousand
  // minor faults and 871 ms of system time a 3.9 s step; 192 thousand and 473 ms kept, for +88 MB of peak RSS).
  collect(false);
}

/**
 * Frees dead buffers now where the runtime allows it (Node: a full collection, a few ms on a small JS heap). For
 * ops that drop a large scratch buffer of their own: left to V8, the fused LM loss's 49 MB logits chunk stayed
 * resident into the backward pass, the step's peak (measured on gpt2-lora: +49 MB).
 */
export function collectDeadBuffers(): void {
  collect(false);
}

/**
 * Frees dead buffers and returns the free pages of the heap to the OS: for the moment before a step's largest
 * scratch buffer, when every activation of the forward pass is alive and the garbage of that pass (dead
 * temporaries, not yet collected, and the pages of those already freed) would otherwise sit on top of the peak.
 * On gpt2-lora that garbage was 50-110 MB at the fused loss.
 */
export function releaseFreeMemory(): void {
  collect(true);
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
