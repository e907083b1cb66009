/** Mutators for fuzzing, and the verdict on one try: a typed error is survival, anything else is a crash. */
import type { Rng } from '../../src/backend/rng.js';

export interface TryResult {
  survived: boolean;
  /** Finished work lost or corrupted (a checkpoint, final weights, a residual changed by a skipped step). */
  dataLost: boolean;
  /** What went wrong, for the report. */
  detail?: string;
}

export const int = (rng: Rng, n: number): number => Math.floor(rng.uniform() * n);
export const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[int(rng, xs.length)]!;

/** Byte-level damage: flips, overwrites with boundary bytes, truncation, insertion, a zeroed or 0xff run. */
export function mutateBytes(rng: Rng, src: Uint8Array): Uint8Array {
  let b = Uint8Array.from(src);
  const edits = 1 + int(rng, 4);
  for (let e = 0; e < edits; e++) {
    const at = int(rng, Math.max(1, b.length));
    switch (int(rng, 6)) {
      case 0: b[at] = b[at]! ^ (1 << int(rng, 8)); break;
      case 1: b[at] = pick(rng, [0, 0x7f, 0x80, 0xff, 0x22, 0x2c, 0x0a, 0x5c, 0x30, 0x39]); break;
      case 2: b = b.slice(0, at); break;
      case 3: {
        const ins = Uint8Array.from({ length: 1 + int(rng, 16) }, () => int(rng, 256));
        b = Uint8Array.from([...b.subarray(0, at), ...ins, ...b.subarray(at)]);
        break;
      }
      case 4: b.fill(0, at, at + 1 + int(rng, 8)); break;
      default: b.fill(0xff, at, at + 1 + int(rng, 8));
    }
  }
  return b;
}

/** Values that break assumptions: huge, negative, fractional, non-finite-ish, wrong types. */
export function weirdValue(rng: Rng): unknown {
  return pick(rng, [
    0, -1, 1e9, 2 ** 31, 2 ** 53, -(2 ** 53), 0.5, 1e308, -1e-308, '12', '', 'x'.repeat(1000), null, true, [], {}, [1, 2, 3],
    { nested: { deep: 1 } }, 'NaN', 'Infinity', '__proto__', 1.0000001, 65536, 4096 * 4096,
  ]);
}

/** A copy of a JSON object with 1-3 keys set to weird values, deleted, or added. */
export function mutateObject(rng: Rng, src: Record<string, unknown>, extraKeys: readonly string[] = []): Record<string, unknown> {
  const o: Record<string, unknown> = JSON.parse(JSON.stringify(src));
  const keys = [...Object.keys(o), ...extraKeys];
  const edits = 1 + int(rng, 3);
  for (let e = 0; e < edits; e++) {
    const k = keys.length ? pick(rng, keys) : 'x';
    const r = int(rng, 10);
    if (r === 0) delete o[k];
    else if (r === 1) o[`${k}_typo`] = weirdValue(rng);
    else o[k] = weirdValue(rng);
  }
  return o;
}

/**
 * Runs one try: `typed` lists the error classes that count as a clean refusal. Any other throw (TypeError,
 * RangeError, ...) is a crash; a try longer than `hangMs` is reported as a hang.
 */
export async function verdict(fn: () => unknown, typed: readonly (abstract new (...a: never[]) => Error)[], hangMs = 5000): Promise<TryResult> {
  const t0 = performance.now();
  try {
    await fn();
  } catch (e) {
    if (!typed.some((c) => e instanceof c)) {
      return { survived: false, dataLost: false, detail: `${(e as Error)?.name}: ${String((e as Error)?.message).slice(0, 200)}` };
    }
  }
  const ms = performance.now() - t0;
  if (ms > hangMs) return { survived: false, dataLost: false, detail: `took ${ms.toFixed(0)} ms (hang?)` };
  return { survived: true, dataLost: false };
}
