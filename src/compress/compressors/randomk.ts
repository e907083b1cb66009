/**
 * Random-k: k = ceil(ratio * numel) elements chosen uniformly without replacement, scaled by numel / k so
 * that E[decompress(compress(g))] = g. The indices are not sent: the payload carries the 32-bit seed they
 * are drawn from (from the caller's Rng), and the receiver draws the same ones.
 *
 * Body: u32 k | u32 seed | values. Values are f32[k] (size 16 + 4k) or, with flag bit 1, scaled f16:
 * f32 scale | f16[k] | pad to 4 bytes (size 20 + 4 ceil(k / 2)); see values.ts.
 */
import { hash32 } from '../../backend/rng.js';
import type { CompressContext } from '../types.js';
import { sparsityWarmup } from '../schedule.js';
import { BaseCompressor } from './base.js';
import { FLAG_F16, HEADER_BYTES, checkLength, fail, getU32, newPayload, readHeader, setU32 } from '../wire.js';
import { valueDtypeOf } from './sparse.js';
import { type ValueDtype, valueBytes, valueReader, writeValues } from './values.js';

const BODY = HEADER_BYTES + 8;
let mark = new Uint8Array(0);
let idxBuf = new Uint32Array(0);
let gathered = new Float32Array(0);

/** The k distinct indices (ascending) of `seed` in [0, numel): rejection on a bitmap, then one scan. */
export function randomIndices(numel: number, k: number, seed: number): Uint32Array {
  if (mark.length < numel) mark = new Uint8Array(numel);
  if (idxBuf.length < k) idxBuf = new Uint32Array(k);
  const m = mark.subarray(0, numel);
  const pickOut = k > numel / 2; // draw the complement when it is smaller
  const draws = pickOut ? numel - k : k;
  m.fill(pickOut ? 1 : 0);
  const want = pickOut ? 0 : 1;
  let c = 0;
  for (let got = 0; got < draws; c++) {
    const i = Math.floor((hash32(seed, c) / 4294967296) * numel);
    if (m[i] !== want) {
      m[i] = want;
      got++;
    }
  }
  let j = 0;
  for (let i = 0; i < numel; i++) if (m[i] === 1) idxBuf[j++] = i;
  return idxBuf;
}

export class RandomKCompressor extends BaseCompressor {
  readonly name = 'randomk';
  readonly methodId = 4;
  readonly unbiased = true;
  /** The dtype the values are sent in (decompression reads it from each payload's flags). */
  readonly values: ValueDtype;
  constructor(readonly opts: { ratio: number; warmupSteps: number; values?: ValueDtype }) {
    super();
    this.values = opts.values ?? 'f16';
  }
  kAt(numel: number, step: number): number {
    return Math.max(1, Math.min(numel, Math.ceil(sparsityWarmup(step, this.opts.ratio, this.opts.warmupSteps) * numel)));
  }
  compress(g: Float32Array, ctx: CompressContext): Uint8Array {
    const n = g.length;
    const k = n === 0 ? 0 : this.kAt(n, ctx.step);
    const seed = ctx.rng.nextSeed();
    const p = newPayload(BODY + valueBytes(this.values, k), this.methodId, n, this.values === 'f16' ? FLAG_F16 : 0);
    setU32(p, HEADER_BYTES, k);
    setU32(p, HEADER_BYTES + 4, seed);
    const idx = randomIndices(n, k, seed);
    if (gathered.length < k) gathered = new Float32Array(k);
    for (let i = 0; i < k; i++) gathered[i] = g[idx[i]];
    writeValues(p, BODY, this.values, gathered, k, k > 0 ? n / k : 0);
    return p;
  }
  decompressAdd(p: Uint8Array, out: Float32Array, alpha = 1): void {
    const n = out.length;
    const values = valueDtypeOf(readHeader(p, this.name, this.methodId, n), this.name, FLAG_F16);
    if (p.length < BODY) fail(this.name, 'length', `${p.length} bytes`, `at least ${BODY} (header, k, seed)`);
    const k = getU32(p, HEADER_BYTES);
    if (k > n) fail(this.name, 'k', k, `<= numel ${n}`);
    checkLength(p, this.name, BODY + valueBytes(values, k), values === 'f16' ? `20 + 4 x ceil(k(${k}) / 2) (f16 values)` : `16 + 4 x k(${k}) (f32 values)`);
    const idx = randomIndices(n, k, getU32(p, HEADER_BYTES + 4));
    const val = valueReader(p, BODY, values, k, this.name);
    for (let i = 0; i < k; i++) out[idx[i]] += alpha * val(i);
  }
  expectedBytes(numel: number, payload?: Uint8Array): number {
    if (payload) return BODY + valueBytes(payload[3] & FLAG_F16 ? 'f16' : 'f32', getU32(payload, HEADER_BYTES));
    return BODY + valueBytes(this.values, this.kAt(numel, Infinity));
  }
}
