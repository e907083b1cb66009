/**
 * Std-scaled dynamic mask: keeps |g| > lambda * std(g), a threshold that follows the gradient's scale
 * (lambda 1.645 keeps about 10% of a normal distribution).
 */
import { SparseCompressor, encodeSparse, selectAbove } from './sparse.js';
import type { ValueDtype } from './values.js';

/** Population standard deviation, accumulated in doubles. */
export function stdOf(g: Float32Array): number {
  const n = g.length;
  if (n === 0) return 0;
  let s = 0, s2 = 0;
  for (let i = 0; i < n; i++) {
    const v = g[i];
    s += v;
    s2 += v * v;
  }
  const mean = s / n;
  return Math.sqrt(Math.max(0, s2 / n - mean * mean));
}

export class StdMaskCompressor extends SparseCompressor {
  readonly name = 'std-mask';
  readonly methodId = 6;
  readonly unbiased = false;
  constructor(readonly lambda: number, values: ValueDtype = 'f16') {
    super(values);
  }
  protected nominalK(numel: number): number {
    return numel;
  }
  compress(g: Float32Array): Uint8Array {
    return encodeSparse(this.methodId, g.length, selectAbove(g, this.lambda * stdOf(g)), this.values);
  }
}
