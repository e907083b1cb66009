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
 * Only frozen weights (requiresGrad false when multiplied) are cached. A trainable weight changes every step, and its
 * copy is already made once per forward pass and held by the backward pass while the graph lives; keeping it past
 * the graph would hold a bf16 copy of every weight through the optimizer step, when the gradients and the optimizer's
 * state are at their largest (gpt2-full: +500 MB peak RSS, measured with a weakly held copy, which a synchronous
 * training loop keeps alive anyway).
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
  buf: Float32Array | Uint16Array;
}

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
 * is unchanged, else `make(src)`, kept for next time.
 */
export function cachedCopy<B extends Float32Array | Uint16Array>(src: Float32Array, kind: string, make: (src: Float32Array) => B): B {
  const m = src.buffer;
  const version = versions.get(m) ?? 0;
  let list = copies.get(m);
  const hit = list?.find((e) => e.byteStart === src.byteOffset && e.count === src.length && e.kind === kind);
  if (hit && hit.version === version) {
    counts.hits++;
    if (check) verify(hit.buf, make(src), kind);
    return hit.buf as B;
  }
  counts.misses++;
  const buf = make(src);
  if (!list) copies.set(m, (list = []));
  if (hit) Object.assign(hit, { version, buf });
  else list.push({ byteStart: src.byteOffset, count: src.length, kind, version, buf });
  return buf;
}

function verify(kept: Float32Array | Uint16Array, fresh: Float32Array | Uint16Array, kind: string): void {
  for (let i = 0; i < fresh.length; i++) {
    if (kept[i] !== fresh[i] && !(Number.isNaN(kept[i]) && Number.isNaN(fresh[i]))) {
      throw new AutoGLMError(`stale ${kind} copy of a weight (element ${i} of ${fresh.length}): its storage was written in place without markModified`);
    }
  }
}
