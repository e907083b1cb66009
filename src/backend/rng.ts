/**
 * Counter-based random numbers shared by both backends: value i of a stream depends only on (seed, i), so the
 * native and the portable kernels produce bit-identical dropout masks, and a stream can be resumed or split
 * without state. All arithmetic is unsigned 32-bit; native/ implements exactly the same functions.
 */

/** A 32-bit avalanche mix (the "lowbias32" integer hash). */
export function mix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return x;
}

/** The 32-bit hash of element `i` (0 <= i < 2^32) of the stream `seed` (any 32-bit integer). */
export function hash32(seed: number, i: number): number {
  const key = mix32((seed + 0x9e3779b9) >>> 0);
  return mix32((i ^ key) >>> 0);
}

/** Uniform in [0, 1) with 24 bits of resolution: exactly representable in float32. */
export function hashUniform(seed: number, i: number): number {
  return (hash32(seed, i) >>> 8) / 16777216;
}

/**
 * A small seeded generator for the tensor layer (initialisation, shuffles): a counter over `hashUniform`.
 * Its state is two integers, so it can be saved in a checkpoint and restored exactly.
 */
export class Rng {
  constructor(public seed: number, public counter = 0) {
    if (!Number.isInteger(seed)) throw new TypeError(`Rng seed must be an integer; got ${seed}`);
    this.seed = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  uniform(): number {
    const u = hashUniform(this.seed, this.counter >>> 0);
    this.counter++;
    return u;
  }
  /** Standard normal (Box-Muller on two uniforms). */
  normal(): number {
    const u1 = 1 - this.uniform(); // (0, 1]
    const u2 = this.uniform();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }
  /** A fresh 32-bit seed for a kernel stream (dropout) drawn from this generator. */
  nextSeed(): number {
    const s = hash32(this.seed ^ 0x5bd1e995, this.counter >>> 0);
    this.counter++;
    return s;
  }
  state(): { seed: number; counter: number } {
    return { seed: this.seed, counter: this.counter };
  }
}
