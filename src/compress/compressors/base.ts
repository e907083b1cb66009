/** The part every compressor shares: `decompress` is `decompressAdd` into a fresh zero array. */
import type { CompressContext, Compressor } from '../types.js';

export abstract class BaseCompressor implements Compressor {
  abstract readonly name: string;
  abstract readonly methodId: number;
  abstract readonly unbiased: boolean;
  abstract compress(grad: Float32Array, ctx: CompressContext): Uint8Array;
  abstract decompressAdd(payload: Uint8Array, out: Float32Array, alpha?: number): void;
  abstract expectedBytes(numel: number, payload?: Uint8Array): number;
  decompress(payload: Uint8Array, numel: number): Float32Array {
    const out = new Float32Array(numel);
    this.decompressAdd(payload, out, 1);
    return out;
  }
}

/** out += alpha * v. */
export function addScaled(out: Float32Array, v: Float32Array, alpha: number, outOffset = 0): void {
  const n = v.length;
  if (alpha === 1) for (let i = 0; i < n; i++) out[outOffset + i] += v[i];
  else for (let i = 0; i < n; i++) out[outOffset + i] += alpha * v[i];
}
