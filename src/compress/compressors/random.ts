/**
 * Per-element uniforms for stochastic rounding: element i of the stream `seed` is exactly
 * `hashUniform(seed, i)` from backend/rng.ts, with the seed's key mixed once instead of per element.
 */
import { mix32 } from '../../backend/rng.js';

export function streamKey(seed: number): number {
  return mix32((seed + 0x9e3779b9) >>> 0);
}
/** Uniform in [0, 1) for element i of the stream with this key. */
export function uniformAt(key: number, i: number): number {
  return (mix32((i ^ key) >>> 0) >>> 8) / 16777216;
}
