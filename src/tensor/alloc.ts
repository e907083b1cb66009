/**
 * Output buffers. A kernel output that the kernel overwrites completely need not be zero-filled first:
 * `uninitF32` takes uninitialised memory in Node for buffers of 64 KiB and more (Buffer.allocUnsafeSlow, its
 * own ArrayBuffer, so aligned and garbage-collected like any other), saving a memset and the first-touch page
 * faults of fresh zeroed pages on every op. Elsewhere (browsers, small sizes) it is an ordinary Float32Array.
 * Use it only where every element is written before it is read.
 */
const NodeBuffer: { allocUnsafeSlow(n: number): Uint8Array } | undefined =
  (globalThis as unknown as { Buffer?: { allocUnsafeSlow(n: number): Uint8Array } }).Buffer;

const MIN_BYTES = 1 << 16;

/**
 * Buffers handed back by the backward pass once a gradient is provably dead (see autograd.ts), reused by the
 * next request of the same length: in a training loop the same shapes recur every step, so this saves the
 * allocation, the first-touch page faults and the GC pressure of most gradient buffers.
 */
const pool = new Map<number, Float32Array[]>();
let pooledBytes = 0;
const MAX_POOLED = 64 * 2 ** 20;
/** At most this many buffers of one length (shapes that recur every step need only a few). */
const MAX_PER_LENGTH = 4;

/** Returns a dead buffer (its own ArrayBuffer, nothing else references it) to the pool. */
export function releaseF32(buf: Float32Array): void {
  const bytes = buf.byteLength;
  if (bytes < MIN_BYTES || buf.byteOffset !== 0 || buf.buffer.byteLength !== bytes || pooledBytes + bytes > MAX_POOLED) return;
  const list = pool.get(buf.length);
  if (list && list.length >= MAX_PER_LENGTH) return;
  if (list) list.push(buf);
  else pool.set(buf.length, [buf]);
  pooledBytes += bytes;
}

/**
 * Prompt collection of dead activations. V8 frees an ArrayBuffer's memory only when a collection finds it dead,
 * and a training step makes hundreds of MB of short-lived activations while the JS heap itself stays small, so
 * V8's own heuristics let dead buffers pile up (on GPT-2 small, ~0.3 GB at the peak of a LoRA step). PyTorch
 * frees each one at once by reference counting. With a collector set (Node: see backend/gc.ts), a full
 * collection runs after every `everyBytes` of fresh large allocations: a few ms each, about 1% of a step.
 */
let collector: (() => void) | null = null;
let collectEvery = Infinity;
let sinceCollect = 0;

let fullCollection: (() => void) | null = null;
let trimHeap: (() => void) | null = null;

/**
 * `trim` hands the heap's free pages back to the OS (native backend: malloc_trim). A collection frees dead
 * buffers into the C heap, where pages between live buffers stay resident until a buffer of the right size reuses
 * them; after a collection that is meant to lower the peak, they are returned as well.
 */
export function setCollector(fn: (() => void) | null, everyBytes: number, full: (() => void) | null = fn, trim: (() => void) | null = null): void {
  collector = fn;
  collectEvery = fn && everyBytes > 0 ? everyBytes : Infinity;
  sinceCollect = 0;
  fullCollection = full;
  trimHeap = trim;
}

/**
 * Frees dead buffers now where the runtime allows it (Node: a full collection, a few ms on a small JS heap). For
 * ops that drop a large scratch buffer of their own: left to V8, the fused LM loss's 49 MB logits chunk stayed
 * resident into the backward pass, the step's peak (measured on gpt2-lora: +49 MB).
 */
export function collectDeadBuffers(): void {
  fullCollection?.();
}

/**
 * Frees dead buffers and returns the free pages of the heap to the OS: for the moment before a step's largest
 * scratch buffer, when every activation of the forward pass is alive and the garbage of that pass (dead
 * temporaries, not yet collected, and the pages of those already freed) would otherwise sit on top of the peak.
 * On gpt2-lora that garbage was 50-110 MB at the fused loss.
 */
export function releaseFreeMemory(): void {
  fullCollection?.();
  trimHeap?.();
}

export function uninitF32(n: number): Float32Array {
  const hit = pool.get(n);
  if (hit && hit.length) {
    pooledBytes -= n * 4;
    return hit.pop() as Float32Array;
  }
  if (collector && n * 4 >= MIN_BYTES && (sinceCollect += n * 4) >= collectEvery) {
    sinceCollect = 0;
    collector();
    trimHeap?.();
  }
  if (NodeBuffer && n * 4 >= MIN_BYTES) {
    const b = NodeBuffer.allocUnsafeSlow(n * 4);
    return new Float32Array(b.buffer, b.byteOffset, n);
  }
  return new Float32Array(n);
}
