/**
 * dtype conversions. f32 -> bf16 rounds to nearest even on the float32 bit pattern (NaN -> quiet NaN 0x7fc0 with
 * its sign); bf16 -> f32 is `bits << 16`. f32 <-> f16 is IEEE binary16 with round-to-nearest-even, subnormals,
 * inf and NaN, bit-identical to F16C (vcvtps2ph with rounding mode 0 / vcvtph2ps). Float -> integer truncates
 * toward zero and saturates (NaN -> 0); integer -> f32 rounds to nearest (Math.fround). Every other pair goes
 * through f32.
 */
import type { DType, Storage } from '../backend.js';

/** Rounds the float32 bit pattern `x` (unsigned) to bf16 bits. */
export function f32BitsToBf16(x: number): number {
  if ((x & 0x7fffffff) >>> 0 > 0x7f800000) return ((x >>> 16) & 0x8000) | 0x7fc0;
  const lsb = (x >>> 16) & 1;
  return ((x + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** Rounds the float32 bit pattern `x` (unsigned) to IEEE half bits (round to nearest even). */
export function f32BitsToF16(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13); // inf; quieted NaN
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00; // overflow
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal
    const m = mant | 0x800000;
    const shift = 14 - e; // 14..24
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (h & 1) !== 0)) h++; // may carry into the smallest normal
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++; // may carry into the exponent (up to inf)
  return sign | h;
}

/** IEEE half bits -> float32 bits (exact; NaN quieted, payload kept). */
export function f16ToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant === 0 ? 0 : 0x400000 | (mant << 13))) >>> 0;
  if (exp === 0) {
    if (mant === 0) return sign >>> 0;
    let e = 113;
    while ((mant & 0x400) === 0) {
      mant <<= 1;
      e--;
    }
    return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
  }
  return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
}

let f16Table: Uint32Array | null = null;
/** float32 bits of every half value, built on first use (256 KiB). */
function f16ToF32Table(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16ToF32Bits(h);
  }
  return f16Table;
}

function bitsView(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

/** Converts any storage to a float32 buffer of the same length. */
export function toF32(src: Storage, srcDtype: DType, dst: Float32Array): void {
  const n = dst.length;
  switch (srcDtype) {
    case 'f32':
    case 'i32':
    case 'i8':
      for (let i = 0; i < n; i++) dst[i] = src[i]; // Float32Array store = Math.fround
      return;
    case 'bf16': {
      const s = src as Uint16Array;
      const d = bitsView(dst);
      for (let i = 0; i < n; i++) d[i] = s[i] << 16;
      return;
    }
    case 'f16': {
      const s = src as Uint16Array;
      const d = bitsView(dst);
      const t = f16ToF32Table();
      for (let i = 0; i < n; i++) d[i] = t[s[i]];
      return;
    }
  }
}

/** Converts a float32 buffer to any storage of the same length. */
export function fromF32(src: Float32Array, dst: Storage, dstDtype: DType): void {
  const n = src.length;
  switch (dstDtype) {
    case 'f32':
      (dst as Float32Array).set(src);
      return;
    case 'bf16': {
      const s = bitsView(src);
      const d = dst as Uint16Array;
      for (let i = 0; i < n; i++) d[i] = f32BitsToBf16(s[i]);
      return;
    }
    case 'f16': {
      const s = bitsView(src);
      const d = dst as Uint16Array;
      for (let i = 0; i < n; i++) d[i] = f32BitsToF16(s[i]);
      return;
    }
    case 'i32':
    case 'i8': {
      const lo = dstDtype === 'i32' ? -2147483648 : -128;
      const hi = dstDtype === 'i32' ? 2147483647 : 127;
      for (let i = 0; i < n; i++) {
        const v = src[i];
        dst[i] = v !== v ? 0 : v <= lo ? lo : v >= hi ? hi : Math.trunc(v);
      }
      return;
    }
  }
}

/** dst = src converted from srcDtype to dstDtype (same element count). */
export function cast(src: Storage, srcDtype: DType, dst: Storage, dstDtype: DType): void {
  const n = src.length;
  if (dst.length !== n) throw new RangeError(`cast: src has ${n} elements but dst has ${dst.length}; expected equal lengths`);
  if (srcDtype === dstDtype) {
    (dst as Float32Array).set(src as Float32Array);
    return;
  }
  if (srcDtype === 'f32') return fromF32(src as Float32Array, dst, dstDtype);
  if (dstDtype === 'f32') return toF32(src, srcDtype, dst as Float32Array);
  if ((srcDtype === 'i32' || srcDtype === 'i8') && (dstDtype === 'i32' || dstDtype === 'i8')) {
    for (let i = 0; i < n; i++) {
      const v = src[i];
      dst[i] = v < -128 ? -128 : v > 127 ? 127 : v; // only i32 -> i8 can clamp
    }
    return;
  }
  // Through f32 in chunks, so a large cast never allocates a full-size temporary.
  const CHUNK = 4096;
  const tmp = new Float32Array(Math.min(CHUNK, n));
  for (let start = 0; start < n; start += CHUNK) {
    const end = Math.min(n, start + CHUNK);
    const t = end - start === tmp.length ? tmp : tmp.subarray(0, end - start);
    toF32(src.subarray(start, end), srcDtype, t);
    fromF32(t, dst.subarray(start, end), dstDtype);
  }
}
