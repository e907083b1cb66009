/**
 * The sparse body shared by top-k, threshold and the std-scaled mask: which elements were kept and their
 * values. Indices (ascending) are written as u32 or as delta-coded varints, whichever is smaller (flag bit 0).
 * Values are f32 or scaled f16 (flag bit 1, values.ts).
 *
 * Body: u32 k | u32 index bytes | values | indices (4k bytes of u32, or varints).
 *   values 'f32': f32[k]                                  size 16 + 4k + index bytes
 *   values 'f16': f32 scale | f16[k] | pad to 4 bytes      size 20 + 4 ceil(k / 2) + index bytes
 */
import { BaseCompressor } from './base.js';
import {
  FLAG_F16, FLAG_VARINT, HEADER_BYTES, checkLength, deltaVarintBytes, fail, getU32, newPayload, readDeltaVarints,
  readHeader, setU32, u32View, writeDeltaVarints,
} from '../wire.js';
import { type ValueDtype, valueBytes, valueReader, writeValues } from './values.js';

const BODY = HEADER_BYTES + 8;

/** Reused buffers for the selected indices and values (one compression at a time per thread). */
export const scratch = { idx: new Uint32Array(0), val: new Float32Array(0), abs: new Float32Array(0) };
export function ensureScratch(n: number): void {
  if (scratch.idx.length < n) {
    scratch.idx = new Uint32Array(n);
    scratch.val = new Float32Array(n);
  }
}

/** The payload of scratch.idx/val[0..k). */
export function encodeSparse(methodId: number, numel: number, k: number, values: ValueDtype): Uint8Array {
  const idx = scratch.idx;
  const vb = deltaVarintBytes(idx, k);
  const varint = vb < 4 * k;
  const ib = varint ? vb : 4 * k;
  const valBytes = valueBytes(values, k);
  const p = newPayload(BODY + valBytes + ib, methodId, numel, (varint ? FLAG_VARINT : 0) | (values === 'f16' ? FLAG_F16 : 0));
  setU32(p, HEADER_BYTES, k);
  setU32(p, HEADER_BYTES + 4, ib);
  writeValues(p, BODY, values, scratch.val, k);
  const off = BODY + valBytes;
  if (varint) writeDeltaVarints(p, off, idx, k);
  else u32View(p, off, k).set(idx.subarray(0, k));
  return p;
}

/** Keeps every element with |g| > tau (in index order) into the scratch; returns how many. */
export function selectAbove(g: Float32Array, tau: number): number {
  ensureScratch(g.length);
  const idx = scratch.idx, val = scratch.val;
  let k = 0;
  for (let i = 0; i < g.length; i++) {
    const v = g[i];
    if (v > tau || v < -tau) {
      idx[k] = i;
      val[k++] = v;
    }
  }
  return k;
}

/** The value dtype recorded in the flags; throws on flag bits other than `allowed`. */
export function valueDtypeOf(flags: number, who: string, allowed: number): ValueDtype {
  if (flags & ~allowed) fail(who, 'flags', `0x${flags.toString(16)}`, `only bits 0x${allowed.toString(16)}`);
  return flags & FLAG_F16 ? 'f16' : 'f32';
}

/** Checks the sparse body of `p`: k, the index-section size, whether it is varint-coded, the value dtype. */
function readSparse(p: Uint8Array, who: string, methodId: number, numel: number): { k: number; ib: number; varint: boolean; values: ValueDtype } {
  const flags = readHeader(p, who, methodId, numel);
  const values = valueDtypeOf(flags, who, FLAG_VARINT | FLAG_F16);
  if (p.length < BODY) fail(who, 'length', `${p.length} bytes`, `at least ${BODY} (header, k, index bytes)`);
  const k = getU32(p, HEADER_BYTES), ib = getU32(p, HEADER_BYTES + 4);
  if (k > numel) fail(who, 'k', k, `<= numel ${numel}`);
  const varint = (flags & FLAG_VARINT) !== 0;
  if (!varint && ib !== 4 * k) fail(who, 'index bytes', ib, `4 x k = ${4 * k} for u32 indices`);
  if (varint && (ib < k || ib > 5 * k)) fail(who, 'index bytes', ib, `between k and 5k (${k}..${5 * k}) for varint indices`);
  const what = values === 'f16' ? `16 + 4 + 4 x ceil(k(${k}) / 2) (f16 values)` : `16 + 4 x k(${k}) (f32 values)`;
  checkLength(p, who, BODY + valueBytes(values, k) + ib, `${what} + index bytes(${ib})`);
  return { k, ib, varint, values };
}

export function sparseBytes(p: Uint8Array): number {
  return BODY + valueBytes(p[3] & FLAG_F16 ? 'f16' : 'f32', getU32(p, HEADER_BYTES)) + getU32(p, HEADER_BYTES + 4);
}

let decodeIdx = new Uint32Array(0);

/** out[idx] += alpha * values, validating every index. */
export function decodeSparseAdd(p: Uint8Array, who: string, methodId: number, out: Float32Array, alpha: number): void {
  const numel = out.length;
  const { k, ib, varint, values } = readSparse(p, who, methodId, numel);
  const off = BODY + valueBytes(values, k);
  let idx: Uint32Array;
  if (varint) {
    if (decodeIdx.length < k) decodeIdx = new Uint32Array(k);
    idx = decodeIdx;
    readDeltaVarints(p, off, off + ib, k, numel, idx, who);
  } else {
    idx = u32View(p, off, k);
    for (let i = 0; i < k; i++) if (idx[i] >= numel) fail(who, 'indices', `index ${idx[i]} at position ${i}`, `indices < numel ${numel}`);
  }
  const val = valueReader(p, BODY, values, k, who);
  for (let i = 0; i < k; i++) out[idx[i]] += alpha * val(i);
}

/** A sparsifier: subclasses choose the elements; the wire format is shared. */
export abstract class SparseCompressor extends BaseCompressor {
  /** The dtype the kept values are sent in (decompression reads it from each payload's flags). */
  constructor(readonly values: ValueDtype) {
    super();
  }
  decompressAdd(p: Uint8Array, out: Float32Array, alpha = 1): void {
    decodeSparseAdd(p, this.name, this.methodId, out, alpha);
  }
  /** Exact with `payload`; else the size for `nominalK(numel)` elements with u32 indices. */
  expectedBytes(numel: number, payload?: Uint8Array): number {
    if (payload) return sparseBytes(payload);
    const k = this.nominalK(numel);
    return BODY + valueBytes(this.values, k) + 4 * k;
  }
  protected abstract nominalK(numel: number): number;
}
