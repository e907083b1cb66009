/**
 * QSGD (Alistarh et al. 2017): per bucket of `bucketSize` elements, the L2 norm and, per element, a sign and
 * a level l in [0, s] rounded stochastically so that E[norm * l / s] = |g|: unbiased. Codes (level << 1 | sign)
 * of b = 1 + ceil(log2(s + 1)) bits are bit-packed, least significant bit first.
 *
 * Body: u32 s | u32 bucketSize | f32 norms[ceil(n / bucketSize)] | codes (ceil(n * b / 8) bytes).
 */
import { streamKey, uniformAt } from './random.js';
import type { CompressContext } from '../types.js';
import { BaseCompressor } from './base.js';
import { HEADER_BYTES, checkLength, f32View, fail, getU32, newPayload, readHeader, setU32 } from '../wire.js';

const BODY = HEADER_BYTES + 8;

export class QSGDCompressor extends BaseCompressor {
  readonly name = 'qsgd';
  readonly methodId = 7;
  readonly unbiased = true;
  readonly bits: number;
  constructor(readonly levels: number, readonly bucketSize: number) {
    super();
    this.bits = 1 + Math.ceil(Math.log2(levels + 1));
  }
  expectedBytes(numel: number): number {
    return BODY + 4 * Math.ceil(numel / this.bucketSize) + Math.ceil((numel * this.bits) / 8);
  }
  compress(g: Float32Array, ctx: CompressContext): Uint8Array {
    const n = g.length, s = this.levels, B = this.bucketSize, bits = this.bits;
    const nb = Math.ceil(n / B);
    const p = newPayload(this.expectedBytes(n), this.methodId, n);
    setU32(p, HEADER_BYTES, s);
    setU32(p, HEADER_BYTES + 4, B);
    const norms = f32View(p, BODY, nb);
    const key = streamKey(ctx.rng.nextSeed());
    let off = BODY + 4 * nb, acc = 0, nacc = 0;
    for (let b = 0; b < nb; b++) {
      const lo = b * B, hi = Math.min(n, lo + B);
      let ss = 0;
      for (let i = lo; i < hi; i++) ss += g[i] * g[i];
      const norm = Math.fround(Math.sqrt(ss));
      norms[b] = norm;
      const inv = norm > 0 ? s / norm : 0;
      for (let i = lo; i < hi; i++) {
        const v = g[i];
        const r = Math.min(s, Math.abs(v) * inv);
        let l = Math.floor(r);
        if (uniformAt(key, i) < r - l) l++; // stochastic rounding: E[l] = r
        acc |= ((l << 1) | (v < 0 ? 1 : 0)) << nacc;
        nacc += bits;
        while (nacc >= 8) {
          p[off++] = acc & 0xff;
          acc >>>= 8;
          nacc -= 8;
        }
      }
    }
    if (nacc > 0) p[off] = acc & 0xff;
    return p;
  }
  decompressAdd(p: Uint8Array, out: Float32Array, alpha = 1): void {
    const n = out.length, who = this.name;
    readHeader(p, who, this.methodId, n);
    if (p.length < BODY) fail(who, 'length', `${p.length} bytes`, `at least ${BODY} (header, levels, bucket size)`);
    const s = getU32(p, HEADER_BYTES), B = getU32(p, HEADER_BYTES + 4);
    if (s !== this.levels) fail(who, 'levels', s, `${this.levels}`);
    if (B !== this.bucketSize) fail(who, 'bucketSize', B, `${this.bucketSize}`);
    checkLength(p, who, this.expectedBytes(n), `16 + 4 x buckets + ceil(${n} x ${this.bits} bits / 8)`);
    const nb = Math.ceil(n / B), bits = this.bits, mask = (1 << bits) - 1;
    const norms = f32View(p, BODY, nb);
    let off = BODY + 4 * nb, acc = 0, nacc = 0;
    for (let b = 0; b < nb; b++) {
      const lo = b * B, hi = Math.min(n, lo + B);
      const unit = (alpha * norms[b]) / s;
      for (let i = lo; i < hi; i++) {
        while (nacc < bits) {
          acc |= p[off++] << nacc;
          nacc += 8;
        }
        const code = acc & mask;
        acc >>>= bits;
        nacc -= bits;
        const l = code >>> 1;
        if (l > s) fail(who, 'codes', `level ${l} at element ${i}`, `levels <= ${s}`);
        out[i] += (code & 1 ? -l : l) * unit;
      }
    }
  }
}
