/** No compression: the f32 values as they are (the reference every other method is measured against). */
import { BaseCompressor, addScaled } from './base.js';
import { HEADER_BYTES, checkLength, f32View, newPayload, readHeader } from '../wire.js';

/** Body: f32[numel]. */
export class NoneCompressor extends BaseCompressor {
  readonly name = 'none';
  readonly methodId = 0;
  readonly unbiased = true;
  compress(grad: Float32Array): Uint8Array {
    const p = newPayload(this.expectedBytes(grad.length), this.methodId, grad.length);
    f32View(p, HEADER_BYTES, grad.length).set(grad);
    return p;
  }
  decompressAdd(p: Uint8Array, out: Float32Array, alpha = 1): void {
    readHeader(p, this.name, this.methodId, out.length);
    checkLength(p, this.name, this.expectedBytes(out.length), `8 + 4 x ${out.length}`);
    addScaled(out, f32View(p, HEADER_BYTES, out.length), alpha);
  }
  expectedBytes(numel: number): number {
    return HEADER_BYTES + 4 * numel;
  }
}
