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
 * Products cache only frozen weights' copies (requiresGrad false when multiplied). A trainable weight changes every
 * step; where the backend's optimizer kernels write bf16 (`Backend.optimizerWritesBf16`), a trainable weight that a
 * bf16 product read (`trainableCopy` notes it) gets its copy from the optimizer: AdamW and SGD write the updated
 * values' bf16 copy with the update, into one buffer per weight kept for good (`trainableCopyBuffer`), and
 * `markModified(t, copy)` makes it the copy of the new version, which the next forward pass's products read instead of
 * casting (a pass over the f32 weight saved per weight per step). Elsewhere the copy is made once per forward pass and
 * held by the backward pass while the graph lives.
 *
 * Code that writes a parameter's storage directly (not through copyInto, an optimizer or loadStateDict) must call
 * `markModified(t)` afterwards, or later products read the old values. `checkCastCache(true)` (or the environment
 * variable AUTOGLM_CHECK_CAST_CACHE=1) compares every reused copy with a fresh cast and throws on a difference: the
 * tests run training, merging and loading under it.
 */
import { AutoGLMError } from '../errors.js';
import { spansBuffer } from './alloc.js';

type Memory = ArrayBufferLike;
interface Region { buffer: Memory; byteOffset: number; byteLength: number; length: number }

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
/** Other things made from a memory's values (derivedOf), by kind: dropped with its copies. */
const derived = new WeakMap<Memory, Map<string, unknown>>();
let check = typeof process !== 'undefined' && process.env?.AUTOGLM_CHECK_CAST_CACHE === '1';
const counts = { hits: 0, misses: 0 };

/** The version of the memory under `storage`: bumped by every in-place write that calls `markModified`. */
export function storageVersion(t: { storage: Region }): number {
  return versions.get(t.storage.buffer) ?? 0;
}

/**
 * Says that `t`'s storage was written in place: bumps its version and drops the copies made from it. `bf16`, from an
 * optimizer that wrote it with the update (`trainableCopyBuffer`), is the bf16 copy of the new values (of t's whole
 * storage).
 */
export function markModified(t: { storage: Region }, bf16?: Uint16Array | null): void {
  const m = t.storage.buffer;
  const version = (versions.get(m) ?? 0) + 1;
  versions.set(m, version);
  copies.delete(m);
  derived.delete(m);
  if (bf16) copies.set(m, [{ byteStart: t.storage.byteOffset, count: t.storage.length, kind: 'bf16', version, buf: bf16 }]);
}

/** Trainable weights' memories whose bf16 copy a product asked for since their last update. */
const wanted = new WeakSet<Memory>();
/** The buffer each such weight's copy is written into, kept from one update to the next. */
const trainableBuffers = new WeakMap<Memory, Uint16Array>();

/** Whether `src` is a whole cacheable storage (a parameter's own memory): the trainable copies' condition. */
function wholeParameter(src: Region): boolean {
  return cacheable.has(src.buffer) && src.length * 4 === src.byteLength && spansBuffer(src);
}

/**
 * For bf16 products: the bf16 copy of a trainable weight's f32 values that an optimizer wrote with its last update
 * (`markModified(t, copy)`), or null: then the caller casts, and the next update is asked to write one.
 */
export function trainableCopy(src: Float32Array, cast: (src: Float32Array) => Uint16Array): Uint16Array | null {
  if (!wholeParameter(src)) return null;
  wanted.add(src.buffer);
  const hit = entryOf(src, 'bf16');
  return hit && hit.version === (versions.get(src.buffer) ?? 0) ? reused(hit, src, 'bf16', cast) : null;
}

/**
 * For optimizers whose backend writes bf16 with the update: the buffer to write the updated `t`'s bf16 copy into,
 * where a product asked for one since the last update (null otherwise: nothing is written, and a weight that bf16
 * products stop reading loses its copy at its next update).
 */
export function trainableCopyBuffer(t: { storage: Region }): Uint16Array | null {
  const m = t.storage.buffer;
  if (!wanted.has(m) || !wholeParameter(t.storage)) {
    trainableBuffers.delete(m); // no longer read in bf16: its buffer goes (markModified drops the copy)
    return null;
  }
  wanted.delete(m);
  let b = trainableBuffers.get(m);
  if (!b || b.length !== t.storage.length) trainableBuffers.set(m, (b = new Uint16Array(t.storage.length)));
  return b;
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

/**
 * What `make()` made for `t`'s memory under this kind since the memory was last written (markModified drops it, as it
 * drops the copies), made now where there is none; null where the memory is not a parameter's (cacheable), whose
 * writers need not say so. For holders of larger things made from a weight's values than a copy (LoRA's wider copies
 * of a frozen base weight, ops/lora-linear.ts), which compare them themselves under the check (castCacheChecked,
 * verifyCopy).
 */
export function derivedOf<T>(t: { storage: Region }, kind: string, make: () => T): T | null {
  const m = t.storage.buffer;
  if (!cacheable.has(m)) return null;
  let byKind = derived.get(m);
  if (!byKind) derived.set(m, byKind = new Map());
  const key = `${kind}@${t.storage.byteOffset}:${t.storage.length}`;
  let v = byKind.get(key) as T | undefined;
  if (v === undefined) byKind.set(key, v = make());
  return v;
}

/** Whether the stale-copy check is on (copies kept elsewhere, as LoRA's wider layouts of a frozen weight, honour it too). */
export function castCacheChecked(): boolean {
  return check;
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
  const hit = entryOf(src, kind);
  if (hit && hit.version === version) return reused(hit, src, kind, make);
  counts.misses++;
  const buf = make(src);
  if (hit) Object.assign(hit, { version, buf });
  else {
    const e = { byteStart: src.byteOffset, count: src.length, kind, version, buf };
    const list = copies.get(m);
    if (list) list.push(e);
    else copies.set(m, [e]);
  }
  return buf;
}

/** The entry of `src`'s copy of this kind, of whatever version. */
function entryOf(src: Float32Array, kind: string): Entry | undefined {
  return copies.get(src.buffer)?.find((e) => e.byteStart === src.byteOffset && e.count === src.length && e.kind === kind);
}

/** A kept copy handed out: counted, and compared with a fresh one under the check. */
function reused<B extends Float32Array | Uint16Array>(e: Entry, src: Float32Array, kind: string, make: (src: Float32Array) => B): B {
  counts.hits++;
  if (check) verifyCopy(e.buf, make(src), kind);
  return e.buf as B;
}

/** Throws where a kept copy differs from a fresh one (the stale-copy check's comparison; NaN equals NaN). */
export function verifyCopy(kept: Float32Array | Uint16Array, fresh: Float32Array | Uint16Array, kind: string): void {
  for (let i = 0; i < fresh.length; i++) {
    if (kept[i] !== fresh[i] && !(Number.isNaN(kept[i]) && Number.isNaN(fresh[i]))) {
      throw new AutoGLMError(`stale ${kind} copy of a weight (element ${i} of ${fresh.length}): its storage was written in place without markModified`);
    }
  }
}
