/**
 * 16-bit float compression (fp16, bf16): the backend's own f32 -> f16/bf16 cast (round to nearest even,
 * native when the addon is loaded), two bytes per element. fp16 overflows to +-inf above 65504.
 */
import { backend } from '../../backend/index.js';
import { toF32 } from '../../backend/portable/cast.js';
import { BaseCompressor, addScaled } from './base.js';
import { HEADER_BYTES, checkLength, newPayload, readHeader, u16View } from '../wire.js';

const CHUNK = 1 << 16;
let scratch = new Float32Array(0);

/** Body: u16[numel] (half or bfloat16 bits). */
export class HalfCompressor extends BaseCompressor {
  readonly unbiased = false;
  constructor(readonly name: 'fp16' | 'bf16', readonly methodId: number, private readonly dtype: 'f16' | 'bf16') {
    super();
  }
  compress(grad: Float32Array): Uint8Array {
    const n = grad.length;
    const p = newPayload(this.expectedBytes(n), this.methodId, n);
    backend().cast(grad, 'f32', u16View(p, HEADER_BYTES, n), this.dtype);
    return p;
  }
  decompressAdd(p: Uint8Array, out: Float32Array, alpha = 1): void {
    const n = out.length;
    readHeader(p, this.name, this.methodId, n);
    checkLength(p, this.name, this.expectedBytes(n), `8 + 2 x ${n}`);
    const h = u16View(p, HEADER_BYTES, n);
    if (scratch.length < Math.min(CHUNK, n)) scratch = new Float32Array(Math.min(CHUNK, n));
    for (let s = 0; s < n; s += CHUNK) { // chunked: no full-size f32 temporary
      const e = Math.min(n, s + CHUNK);
      const t = scratch.subarray(0, e - s);
      toF32(h.subarray(s, e), this.dtype, t); // plain TS: no per-call thread start-up of the native cast
      addScaled(out, t, alpha, s);
    }
  }
  expectedBytes(numel: number): number {
    return HEADER_BYTES + 2 * numel;
  }
}
