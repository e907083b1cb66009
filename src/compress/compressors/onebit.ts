/**
 * 1-bit sign compression with a scale (1-bit SGD, EF-signSGD): each element becomes scale * sign(g) with
 * scale = mean |g| per tensor. Biased: use it with error feedback (the default). Bit i of the sign section is
 * 1 for a negative element, least significant bit first.
 *
 * Body: f32 scale | signs (ceil(n / 8) bytes).
 */
import { BaseCompressor } from './base.js';
import { HEADER_BYTES, checkLength, getF32, newPayload, readHeader, setF32 } from '../wire.js';

const BODY = HEADER_BYTES + 4;

export class OneBitCompressor extends BaseCompressor {
  readonly name = 'onebit';
  readonly methodId = 9;
  readonly unbiased = false;
  expectedBytes(numel: number): number {
    return BODY + Math.ceil(numel / 8);
  }
  compress(g: Float32Array): Uint8Array {
    const n = g.length;
    const p = newPayload(this.expectedBytes(n), this.methodId, n);
    let sum = 0;
    for (let i = 0; i < n; i++) sum += Math.abs(g[i]);
    setF32(p, HEADER_BYTES, n > 0 ? sum / n : 0);
    for (let b = 0, i = 0; i < n; b++) { // one byte of 8 signs at a time
      let byte = 0;
      for (let j = 0; j < 8 && i < n; j++, i++) if (g[i] < 0) byte |= 1 << j;
      p[BODY + b] = byte;
    }
    return p;
  }
  decompressAdd(p: Uint8Array, out: Float32Array, alpha = 1): void {
    const n = out.length;
    readHeader(p, this.name, this.methodId, n);
    checkLength(p, this.name, this.expectedBytes(n), `12 + ceil(${n} / 8)`);
    const s = alpha * getF32(p, HEADER_BYTES);
    for (let b = 0, i = 0; i < n; b++) {
      const byte = p[BODY + b];
      for (let j = 0; j < 8 && i < n; j++, i++) out[i] += (byte >>> j) & 1 ? -s : s;
    }
  }
}
