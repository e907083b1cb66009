/**
 * Storage versions and the cached low-precision copies of weights.
 *
 * Under bf16 autocast every product casts its f32 operands to bf16. For a weight that is a waste: its values change
 * only when something writes its storage in place (an optimizer step, a state-dict load, a LoRA merge or unmerge,
 * restoring the best weights), so the cast is needed once per optimizer step, or once for good for a frozen weight.
 *
 * Every in-place writer of a weight calls `markModified`, which bumps the version of the storage's memory (its
 * ArrayBuffer, so views and aliases share one version) and drops the copies made from it. `Module.param` marks a
 * parameter's memory `cacheable`; `prepare` (linalg.ts) then keeps its bf16 (or f16-rounded) copy, tagged with
 * the version it was made from, and reuses it while the version is unchanged. Activations and gradients are never
 * cached: they are fresh buffers that nothing registers.
 *
 * Memory: a frozen weight's copy is kept for good (a LoRA base is multiplied every step; its copy was held through
 * every forward and backward pass before, for the input gradient). A trainable weight's copy is held only weakly: the
 * backward pass keeps it while the graph lives, as before, and reuses it in a recomputed forward pass or the next
 * micro-batch, but once the graph is freed nothing holds it through the optimizer step (the weight's gradient and
 * the optimizer's state are at their largest then).
 *
 * Code that writes a parameter's storage directly (not through copyInto, an optimizer or loadStateDict) must call
 * `markModified(t)` afterwards, or later products read the old values. `checkCastCache(true)` (or the environment
 * variable AUTOGLM_CHECK_CAST_CACHE=1) compares every reused copy with a fresh cast and throws on a difference: the
 * tests run training, merging and loading under it.
 */
import { AutoGLMError } from '../errors.js';

type Memory = ArrayBufferLike;
interface Region { buffer: Memory; byteOffset: number; length: number }

interface Entry {
  byteStart: number;
  count: number;
  /** What the copy is for: 'bf16' (bf16 storage), or 'f16' (f32 values rounded through f16). */
  kind: string;
  version: number;
  /** Frozen weights: the copy; trainable ones: a weak reference to it. */
  buf: Float32Array | Uint16Array | WeakRef<Float32Array | Uint16Array>;
}

const deref = (e: Entry) => (e.buf instanceof WeakRef ? e.buf.deref() : e.buf);

const versions = new WeakMap<Memory, number>();
const cacheable = new WeakSet<Memory>();
const copies = new WeakMap<Memory, Entry[]>();
let check = typeof process !== 'undefined' && process.env?.AUTOGLM_CHECK_CAST_CACHE === '1';
const counts = { hits: 0, misses: 0 };

/** The version of the memory under `storage`: bumped by every in-place write that calls `markModified`. */
export function storageVersion(t: { storage: Region }): number {
  return versions.get(t.storage.buffer) ?? 0;
}

/** Says that `t`'s storage was written in place: bumps its version and drops the copies made from it. */
export function markModified(t: { storage: Region }): void {
  const m = t.storage.buffer;
  versions.set(m, (versions.get(m) ?? 0) + 1);
  copies.delete(m);
}

/** Lets products keep a low-precision copy of `t` (a parameter) until its storage is next written. */
export function markCacheable(t: { storage: Region }): void {
  cacheable.add(t.storage.buffer);
}

export function isCacheable(storage: Region): boolean {
  return cacheable.has(storage.buffer);
}

/** Turns the stale-copy check on or off (returns the previous setting). */
export function checkCastCache(on: boolean): boolean {
  const prev = check;
  check = on;
  return prev;
}

/** Reused and made copies since the last reset (for profiles and tests). */
export function castCacheCounts(reset = false): { hits: number; misses: number } {
  const c = { ...counts };
  if (reset) counts.hits = counts.misses = 0;
  return c;
}

/**
 * The copy of `src` (a subarray of cacheable storage) of the given kind: the cached one while the storage's version
 * is unchanged (and, when held weakly, still alive), else `make(src)`, kept for next time: strongly when `keep`.
 */
export function cachedCopy<B extends Float32Array | Uint16Array>(src: Float32Array, kind: string, make: (src: Float32Array) => B, keep: boolean): B {
  const m = src.buffer;
  const version = versions.get(m) ?? 0;
  let list = copies.get(m);
  const hit = list?.find((e) => e.byteStart === src.byteOffset && e.count === src.length && e.kind === kind);
  const kept = hit && hit.version === version ? deref(hit) : undefined;
  if (kept) {
    counts.hits++;
    if (check) verify(kept, make(src), kind);
    if (keep) hit!.buf = kept;
    return kept as B;
  }
  counts.misses++;
  const buf = make(src);
  const held = keep ? buf : new WeakRef(buf);
  if (!list) copies.set(m, (list = []));
  if (hit) Object.assign(hit, { version, buf: held });
  else list.push({ byteStart: src.byteOffset, count: src.length, kind, version, buf: held });
  return buf;
}

function verify(kept: Float32Array | Uint16Array, fresh: Float32Array | Uint16Array, kind: string): void {
  for (let i = 0; i < fresh.length; i++) {
    if (kept[i] !== fresh[i] && !(Number.isNaN(kept[i]) && Number.isNaN(fresh[i]))) {
      throw new AutoGLMError(`stale ${kind} copy of a weight (element ${i} of ${fresh.length}): its storage was written in place without markModified`);
    }
  }
}
