/**
 * The value section of the sparse payloads (top-k, threshold, std-mask, random-k), in one of two dtypes,
 * recorded in header flag bit 1 (FLAG_F16):
 *
 *   'f32': f32 values[k]                                            4k bytes
 *   'f16': f32 scale | f16 values[k] | 2 zero bytes when k is odd    4 + 4 * ceil(k / 2) bytes
 *
 * An f16 value h stands for f16(h) * scale. The sender picks scale = 2^(e - 14) with 2^e <= max|v| < 2^(e+1)
 * (over the finite kept values), so the largest value lands in [2^14, 2^15): far from the half overflow at
 * 65504, with normal half precision (relative error <= 2^-11, round to nearest even) down to 2^-28 of the
 * largest value. Scaling by a power of two is exact, so the decoded value is exactly what was sent, and for
 * error feedback residual = input - sent is exact in f32 (sent is within 2^-11 of input or 0: Sterbenz), so
 * residual + sent = input holds bit for bit. Infinities and NaNs pass through as half inf/NaN.
 *
 * Conversion: the project's scalar f32 -> f16 rounding (portable/cast.ts, bit-identical to F16C), one element at
 * a time while scaling (no temporary), and a 64 Ki-entry f16 -> f32 table for decoding.
 */
import { f32BitsToF16, toF32 } from '../../backend/portable/cast.js';
import { f32View, fail, getF32, setF32 } from '../wire.js';

export type ValueDtype = 'f32' | 'f16';
export const VALUE_DTYPES: readonly ValueDtype[] = ['f32', 'f16'];

/** Bytes of the value section for k values. */
export function valueBytes(dtype: ValueDtype, k: number): number {
  return dtype === 'f32' ? 4 * k : 4 + 4 * Math.ceil(k / 2);
}

/** The power-of-two scale of the f16 section for values whose largest finite magnitude is m. */
export function halfScale(m: number): number {
  if (!(m > 0) || m === Infinity) return 1;
  let e = Math.floor(Math.log2(m));
  if (2 ** e > m) e--;
  else if (2 ** (e + 1) <= m) e++;
  return 2 ** Math.max(-149, e - 14); // f32 can hold 2^-149 .. 2^127; e - 14 <= 113
}

const f32Box = new Float32Array(1);
const u32Box = new Uint32Array(f32Box.buffer);

/** Writes vals[0..k) * mul (mul = 1 unless random-k's numel / k) as a value section at p[off]. */
export function writeValues(p: Uint8Array, off: number, dtype: ValueDtype, vals: ArrayLike<number>, k: number, mul = 1): void {
  if (dtype === 'f32') {
    const out = f32View(p, off, k);
    for (let i = 0; i < k; i++) out[i] = vals[i] * mul;
    return;
  }
  let m = 0;
  for (let i = 0; i < k; i++) {
    f32Box[0] = vals[i] * mul; // the f32 value that would be sent as f32
    const a = Math.abs(f32Box[0]);
    if (a > m && a !== Infinity) m = a;
  }
  const scale = halfScale(m), inv = 1 / scale; // exact: powers of two
  setF32(p, off, scale);
  let o = off + 4;
  for (let i = 0; i < k; i++) {
    f32Box[0] = vals[i] * mul;
    f32Box[0] *= inv; // exact unless it leaves the f32 range below 2^-126, where f16 gives 0 anyway
    const h = f32BitsToF16(u32Box[0]);
    p[o++] = h & 0xff;
    p[o++] = h >>> 8;
  }
  if (k & 1) {
    p[o++] = 0;
    p[o] = 0;
  }
}

let halfTable: Float32Array | null = null;
/** f32 value of every half bit pattern (256 KiB, built on first use by the project's converter). */
function halfToF32(): Float32Array {
  if (!halfTable) {
    const all = new Uint16Array(65536);
    for (let h = 0; h < 65536; h++) all[h] = h;
    halfTable = new Float32Array(65536);
    toF32(all, 'f16', halfTable);
  }
  return halfTable;
}

/**
 * A reader of a value section: value(i) is the i-th value as sent. Checks the f16 scale (finite, > 0) and,
 * when k is odd, that the padding is zero.
 */
export function valueReader(p: Uint8Array, off: number, dtype: ValueDtype, k: number, who: string): (i: number) => number {
  if (dtype === 'f32') {
    const vals = f32View(p, off, k);
    return (i) => vals[i];
  }
  const scale = getF32(p, off);
  if (!(scale > 0 && scale < Infinity)) fail(who, 'scale', scale, 'a finite number > 0 (f16 values)');
  if (k & 1 && (p[off + 4 + 2 * k] !== 0 || p[off + 5 + 2 * k] !== 0)) fail(who, 'padding', 'non-zero', 'two zero bytes after an odd number of f16 values');
  const t = halfToF32(), base = off + 4;
  return (i) => t[p[base + 2 * i] | (p[base + 2 * i + 1] << 8)] * scale;
}
