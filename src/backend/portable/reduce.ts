/**
 * Reductions over the middle axis of (outer, n, inner). Sums accumulate in float64; max/min propagate NaN (as
 * torch.amax does); argmax returns the first index of the maximum, a NaN counting as the maximum.
 */
import type { ReduceOp } from '../backend.js';

export function reduce(op: ReduceOp, x: Float32Array, outer: number, n: number, inner: number, out: Float32Array): void {
  if (op !== 'sum' && op !== 'max' && op !== 'min') throw new Error(`reduce: unknown op '${op as string}'`);
  const acc = new Float64Array(inner);
  for (let o = 0; o < outer; o++) {
    const base = o * n * inner;
    if (op === 'sum') {
      acc.fill(0);
      for (let j = 0; j < n; j++) {
        const row = base + j * inner;
        for (let i = 0; i < inner; i++) acc[i] += x[row + i];
      }
    } else if (op === 'max') {
      acc.fill(-Infinity);
      for (let j = 0; j < n; j++) {
        const row = base + j * inner;
        for (let i = 0; i < inner; i++) {
          const v = x[row + i];
          if (v > acc[i] || v !== v) acc[i] = v; // once NaN, nothing compares greater
        }
      }
    } else {
      acc.fill(Infinity);
      for (let j = 0; j < n; j++) {
        const row = base + j * inner;
        for (let i = 0; i < inner; i++) {
          const v = x[row + i];
          if (v < acc[i] || v !== v) acc[i] = v;
        }
      }
    }
    const ob = o * inner;
    for (let i = 0; i < inner; i++) out[ob + i] = acc[i];
  }
}

export function argmax(x: Float32Array, outer: number, n: number, inner: number, out: Int32Array): void {
  const best = new Float64Array(inner);
  const arg = new Int32Array(inner);
  for (let o = 0; o < outer; o++) {
    const base = o * n * inner;
    best.fill(-Infinity);
    arg.fill(0);
    for (let j = 0; j < n; j++) {
      const row = base + j * inner;
      for (let i = 0; i < inner; i++) {
        const v = x[row + i];
        const b = best[i];
        if (v > b || (v !== v && b === b)) {
          best[i] = v;
          arg[i] = j;
        }
      }
    }
    out.set(arg, o * inner);
  }
}

/** sum of x[i]^2, accumulated in float64. */
export function sumSquares(x: Float32Array): number {
  let s = 0;
  const n = x.length;
  for (let i = 0; i < n; i++) {
    const v = x[i];
    s += v * v;
  }
  return s;
}
