/**
 * 4-bit NormalFloat (NF4, Dettmers et al. 2023, "QLoRA"), as bitsandbytes stores it: a weight's elements in their
 * storage order, in blocks of 64, each block one f32 absmax and each element a 4-bit index into the 16 levels
 * below (the quantiles of a standard normal scaled to [-1, 1], with an exact zero), two to a byte, the first
 * element of a pair in the high nibble. An element's value is `NF4_LEVELS[code] * absmax[element / 64]`.
 * This module holds the format's constants and the reference widening that the CPU kernels are tested against
 * (the native and wasm kernels implement the same arithmetic: one f32 product per element).
 */

/** bitsandbytes' NF4 levels (the f32 values of its `nf4` code book). */
export const NF4_LEVELS: Float32Array = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
  -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
  0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
  0.7229568362236023, 1.0,
]);

/** Elements per absmax block (bitsandbytes' default blocksize for 4-bit weights, QLoRA's setting). */
export const NF4_BLOCK = 64;

/** Bytes that hold n packed NF4 codes. */
export const nf4Bytes = (n: number): number => Math.ceil(n / 2);
/** Absmax blocks of n elements. */
export const nf4Blocks = (n: number): number => Math.ceil(n / NF4_BLOCK);

/** The 4-bit code of element e (packed two per byte, high nibble first; the bytes read as unsigned). */
export function nf4Code(packed: Int8Array | Uint8Array, e: number): number {
  const byte = packed[e >> 1] & 0xff;
  return (e & 1) === 0 ? byte >> 4 : byte & 15;
}

/** dst[e] = the value of element e, for e < n (f32 arithmetic: one rounding, as the kernels). */
export function widenNf4(packed: Int8Array | Uint8Array, absmax: Float32Array, n: number, dst: Float32Array): void {
  for (let e = 0; e < n; e++) dst[e] = Math.fround(NF4_LEVELS[nf4Code(packed, e)] * absmax[Math.floor(e / NF4_BLOCK)]);
}

/** Refuses NF4 operands too short for n elements (the packed codes and the absmax blocks). */
export function checkNf4(b: Int8Array, absmax: Float32Array | null, n: number): void {
  if (b.length < nf4Bytes(n)) throw new RangeError(`matmulLowp: nf4 b has ${b.length} bytes; ${n} elements need ${nf4Bytes(n)}`);
  if (!absmax || absmax.length < nf4Blocks(n)) {
    throw new RangeError(`matmulLowp: nf4 needs ${nf4Blocks(n)} absmax values (one per 64 elements); got ${absmax ? absmax.length : 'none'}`);
  }
}
