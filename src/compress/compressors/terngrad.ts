/**
 * TernGrad (Wen et al. 2017): scale s = max|g|, each element becomes s * sign(g) with probability |g| / s and 0
 * otherwise: unbiased. Codes of 2 bits (0: zero, 1: +s, 2: -s), four per byte, least significant first.
 *
 * Body: f32 scale | codes (ceil(n / 4) bytes).
 */
import { streamKey, uniformAt } from './random.js';
import type { CompressContext } from '../types.js';
import { BaseCompressor } from './base.js';
import { HEADER_BYTES, checkLength, fail, getF32, newPayload, readHeader, setF32 } from '../wire.js';

const BODY = HEADER_BYTES + 4;

export class TernGradCompressor extends BaseCompressor {
  readonly name = 'terngrad';
  readonly methodId = 8;
  readonly unbiased = true;
  expectedBytes(numel: number): number {
    return BODY + Math.ceil(numel / 4);
  }
  compress(g: Float32Array, ctx: CompressContext): Uint8Array {
    const n = g.length;
    const p = newPayload(this.expectedBytes(n), this.methodId, n);
    let max = 0;
    for (let i = 0; i < n; i++) {
      const a = Math.abs(g[i]);
      if (a > max) max = a;
    }
    const scale = Math.fround(max);
    setF32(p, HEADER_BYTES, scale);
    const inv = scale > 0 ? 1 / scale : 0;
    const key = streamKey(ctx.rng.nextSeed());
    for (let b = 0, i = 0; i < n; b++) { // one byte of four 2-bit codes at a time
      let byte = 0;
      for (let j = 0; j < 8 && i < n; j += 2, i++) {
        const v = g[i];
        if (uniformAt(key, i) < Math.abs(v) * inv) byte |= (v < 0 ? 2 : 1) << j;
      }
      p[BODY + b] = byte;
    }
    return p;
  }
  decompressAdd(p: Uint8Array, out: Float32Array, alpha = 1): void {
    const n = out.length;
    readHeader(p, this.name, this.methodId, n);
    checkLength(p, this.name, this.expectedBytes(n), `12 + ceil(${n} / 4)`);
    const s = alpha * getF32(p, HEADER_BYTES);
    for (let b = 0, i = 0; i < n; b++) {
      const byte = p[BODY + b];
      if (byte === 0) { // four zeros
        i += 4;
        continue;
      }
      for (let j = 0; j < 8 && i < n; j += 2, i++) {
        const c = (byte >>> j) & 3;
        if (c === 1) out[i] += s;
        else if (c === 2) out[i] -= s;
        else if (c === 3) fail(this.name, 'codes', `code 3 at element ${i}`, 'codes 0 (zero), 1 (+scale) or 2 (-scale)');
      }
    }
  }
}
