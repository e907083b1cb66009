/**
 * Std-scaled dynamic mask: keeps |g| > lambda * std(g), a threshold that follows the gradient's scale
 * (lambda 1.645 keeps about 10% of a normal distribution).
 */
import { ThresholdCompressor } from './threshold.js';
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

/** A threshold compressor whose cut is lambda * std(g), recomputed for every tensor. */
export class StdMaskCompressor extends ThresholdCompressor {
  override readonly name: string = 'std-mask';
  override readonly methodId: number = 6;
  constructor(readonly lambda: number, values: ValueDtype = 'f16') {
    super(0, values);
  }
  protected override cutOf(g: Float32Array): number {
    return this.lambda * stdOf(g);
  }
}
