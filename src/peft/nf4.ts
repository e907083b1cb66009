/**
 * QLoRA's storage of a frozen weight (Dettmers et al. 2023), with bitsandbytes' arithmetic:
 * - 4-bit NormalFloat: each block of 64 elements (storage order) keeps its absmax, and each element the nearest of
 *   the 16 NF4 levels to element x (1 / absmax), the first of a pair in a byte's high nibble (`quantizeNf4`);
 * - double quantisation (`bnb_4bit_use_double_quant`): the absmaxes less their mean, in blocks of 256, as 8-bit codes
 *   of bitsandbytes' signed dynamic map with one f32 absmax a block (`quantizeAbsmax`), 1 byte per 64 weights
 *   instead of 4.
 * The format's constants and the kernels' widening are in src/backend/nf4.ts.
 */
import { NF4_BLOCK, NF4_LEVELS, nf4Blocks, nf4Bytes, widenNf4 } from '../backend/nf4.js';
import { DTypeError } from '../errors.js';
import { backend } from '../backend/index.js';

/** Levels' midpoints as f32: element x goes to level i + 1 when x > NF4_MIDS[i] (bitsandbytes' decision tree). */
const NF4_MIDS = Float32Array.from({ length: 15 }, (_, i) => (NF4_LEVELS[i] + NF4_LEVELS[i + 1]) / 2);

/** The NF4 code of a value already divided by its block's absmax (in [-1, 1]). */
export function nf4CodeOf(x: number): number {
  let lo = 0, hi = 15; // the first i with x <= mid[i] is the code (ties go to the lower level)
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if (x > NF4_MIDS[m]) lo = m + 1;
    else hi = m;
  }
  return lo;
}

/**
 * The code of x in [-1, 1] without a search: cell (x + 1) * 2048 of a table holds the code of its lower edge, and a
 * cell is narrower than the gap between two midpoints, so at most one midpoint lies inside it (the one comparison).
 * The same codes as `nf4CodeOf` (a test), with one predictable branch instead of four that random weights mispredict.
 */
const CELLS = 4096;
const CELL_CODE = Uint8Array.from({ length: CELLS + 1 }, (_, i) => nf4CodeOf(Math.fround(-1 + (2 * i) / CELLS)));
const MIDS_OR_INF = Float32Array.from([-Infinity, ...NF4_MIDS, Infinity]); // MIDS_OR_INF[c] = the midpoint below code c
function fastCode(x: number): number {
  let cell = Math.floor((x + 1) * (CELLS / 2));
  cell = cell < 0 ? 0 : cell > CELLS ? CELLS : cell;
  const c = CELL_CODE[cell];
  // one midpoint may lie in the cell; and x within an ulp below a cell's edge may have been rounded into it
  return x > MIDS_OR_INF[c + 1] ? c + 1 : x <= MIDS_OR_INF[c] ? c - 1 : c;
}

/**
 * NF4 codes and absmaxes of `w` (any shape, storage order). A block whose absmax is 0 stores code 7 (the level 0.0).
 * Non-finite weights are refused: they would make their block's every value NaN.
 */
export function quantizeNf4(w: Float32Array, what = 'weight', out?: { codes: Int8Array; absmax: Float32Array }): { codes: Int8Array; absmax: Float32Array } {
  const be = backend();
  if (!be.quantizeNf4 || be.device) return quantizeNf4Reference(w, what, out);
  const codes = out?.codes ?? new Int8Array(nf4Bytes(w.length)), absmax = out?.absmax ?? new Float32Array(nf4Blocks(w.length));
  const bad = be.quantizeNf4(w, codes, absmax);
  if (bad >= 0) throw new DTypeError(`cannot quantise ${what} to NF4: element ${bad} is ${w[bad]}`);
  return { codes, absmax };
}

/** Elements a quantiser widens from 16-bit storage at a time (`quantizeNf4Stored`, `quantizeInt8`): a multiple of NF4's block and even, so chunks split no block or byte. */
export const WIDEN_CHUNK = 1 << 16;

let scratch = new Float32Array(0);

/**
 * n floats of one scratch array that the quantisers widen 16-bit chunks into (reused: quantising a checkpoint's
 * layers one after another leaves no per-layer garbage). Valid until the next call.
 */
export function widenScratch(n: number): Float32Array {
  if (scratch.length < n) scratch = new Float32Array(Math.max(n, WIDEN_CHUNK));
  return scratch.subarray(0, n);
}

/**
 * `quantizeNf4` of a weight in its stored float format (f32, or bf16/f16 widened WIDEN_CHUNK elements at a time into
 * a reused scratch array, the codes written in place): no f32 copy of a 16-bit weight is made, which is what
 * quantising while a checkpoint loads needs. The same bits as `quantizeNf4` of the widened weight (blocks are
 * independent; a test).
 */
export function quantizeNf4Stored(storage: Float32Array | Uint16Array, dtype: 'f32' | 'bf16' | 'f16', what = 'weight'): { codes: Int8Array; absmax: Float32Array } {
  if (dtype === 'f32') return quantizeNf4(storage as Float32Array, what);
  const n = storage.length;
  const codes = new Int8Array(nf4Bytes(n)), absmax = new Float32Array(nf4Blocks(n));
  for (let s = 0; s < n; s += WIDEN_CHUNK) {
    const w = widenScratch(Math.min(WIDEN_CHUNK, n - s));
    backend().cast(storage.subarray(s, s + w.length), dtype, w, 'f32');
    try {
      quantizeNf4(w, what, { codes: codes.subarray(s / 2, s / 2 + nf4Bytes(w.length)), absmax: absmax.subarray(s / NF4_BLOCK, s / NF4_BLOCK + nf4Blocks(w.length)) });
    } catch (e) {
      const bad = w.findIndex((v) => !Number.isFinite(v));
      throw bad < 0 ? e : new DTypeError(`cannot quantise ${what} to NF4: element ${s + bad} is ${w[bad]}`);
    }
  }
  return { codes, absmax };
}

/** `quantizeNf4` in TypeScript (the backends' kernels give the same bits: a test). */
export function quantizeNf4Reference(w: Float32Array, what = 'weight', out?: { codes: Int8Array; absmax: Float32Array }): { codes: Int8Array; absmax: Float32Array } {
  const n = w.length;
  const codes = out ? new Uint8Array(out.codes.buffer, out.codes.byteOffset, nf4Bytes(n)) : new Uint8Array(nf4Bytes(n));
  const absmax = out?.absmax ?? new Float32Array(nf4Blocks(n));
  codes.fill(0, 0, nf4Bytes(n));
  for (let blk = 0; blk < absmax.length; blk++) {
    const s = blk * NF4_BLOCK, t = Math.min(n, s + NF4_BLOCK);
    let mx = 0;
    for (let e = s; e < t; e++) {
      const v = w[e];
      if (!Number.isFinite(v)) throw new DTypeError(`cannot quantise ${what} to NF4: element ${e} is ${v}`);
      mx = Math.max(mx, Math.abs(v));
    }
    absmax[blk] = mx;
    const inv = Math.fround(1 / mx);
    for (let e = s; e < t; e++) {
      const c = mx === 0 ? 7 : fastCode(Math.fround(w[e] * inv));
      codes[e >> 1] |= (e & 1) === 0 ? c << 4 : c;
    }
  }
  return { codes: new Int8Array(codes.buffer), absmax };
}

/** The f32 values of NF4 codes (n elements). */
export function dequantizeNf4(codes: Int8Array, absmax: Float32Array, n: number): Float32Array {
  const out = new Float32Array(n);
  widenNf4(codes, absmax, n, out);
  return out;
}

// ---- double quantisation: bitsandbytes' 8-bit blockwise quantisation with its signed dynamic map --------------

/** Elements per block of the absmaxes' own quantisation (bitsandbytes' blocksize for the nested state). */
export const NESTED_BLOCK = 256;

let dynamicMap: Float32Array | null = null;

/**
 * bitsandbytes' `create_dynamic_map(signed=True)`: 256 sorted values in [-1, 1], for each exponent i of 0..6 the
 * means of 2^i + 1 evenly spaced points in [0.1, 1] times 10^(i - 6), with both signs, and 0 and 1 (in f32, as
 * torch computes them).
 */
export function signedDynamicMap(): Float32Array {
  if (dynamicMap) return dynamicMap;
  const data: number[] = [];
  for (let i = 0; i < 7; i++) {
    const items = 2 ** i + 1;
    const bounds = linspaceF32(0.1, 1, items);
    const scale = 10 ** (i - 6);
    for (let j = 0; j + 1 < items; j++) {
      const mean = Math.fround(Math.fround(bounds[j] + bounds[j + 1]) / 2);
      data.push(Math.fround(scale * mean), Math.fround(-scale * mean));
    }
  }
  data.push(0, 1);
  dynamicMap = Float32Array.from(data).sort();
  return dynamicMap;
}

let unsignedMap: Float32Array | null = null;

/**
 * bitsandbytes' `create_dynamic_map(signed=False)` (the second moment's map of its 8-bit optimizers): 256 sorted
 * values in [0, 1], for each exponent i of 0..6 the means of 2^(i+1) + 1 evenly spaced points in [0.1, 1] times
 * 10^(i - 6), and 0 and 1 (in f32, as torch computes them).
 */
export function unsignedDynamicMap(): Float32Array {
  if (unsignedMap) return unsignedMap;
  const data: number[] = [];
  for (let i = 0; i < 7; i++) {
    const items = 2 ** (i + 1) + 1;
    const bounds = linspaceF32(0.1, 1, items);
    const scale = 10 ** (i - 6);
    for (let j = 0; j + 1 < items; j++) data.push(Math.fround(scale * Math.fround(Math.fround(bounds[j] + bounds[j + 1]) / 2)));
  }
  data.push(0, 1);
  unsignedMap = Float32Array.from(data).sort();
  return unsignedMap;
}

/** torch.linspace(start, end, steps) in f32 (the first half counted from start, the second from end). */
function linspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  start = Math.fround(start);
  end = Math.fround(end);
  const step = Math.fround(Math.fround(end - start) / (steps - 1));
  const half = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) out[i] = i < half ? Math.fround(start + step * i) : Math.fround(end - step * (steps - i - 1));
  return out;
}

/** The index of the map value nearest x (the map is sorted; ties go to the lower value): a binary search. */
export function nearestCode(map: Float32Array, x: number): number {
  let lo = 0, hi = map.length - 1;
  while (hi - lo > 1) {
    const m = (lo + hi) >> 1;
    if (map[m] <= x) lo = m;
    else hi = m;
  }
  return Math.abs(x - map[lo]) <= Math.abs(map[hi] - x) ? lo : hi;
}

/** An NF4 weight's absmaxes, double-quantised. */
export interface NestedAbsmax {
  /** 8-bit codes into `signedDynamicMap()` (read as unsigned), one per 64-element block of the weight. */
  codes: Int8Array;
  /** One f32 absmax per 256 codes. */
  absmax: Float32Array;
  /** The mean of the absmaxes, subtracted before quantising them. */
  offset: number;
}

/** bitsandbytes' `quantize_4bit(..., compress_statistics=True)` for the absmaxes: offset by their mean, then 8-bit. */
export function quantizeAbsmax(absmax: Float32Array): NestedAbsmax {
  const map = signedDynamicMap();
  let sum = 0;
  for (const v of absmax) sum += v;
  const offset = Math.fround(absmax.length ? sum / absmax.length : 0);
  const codes = new Uint8Array(absmax.length), scales = new Float32Array(Math.ceil(absmax.length / NESTED_BLOCK));
  for (let blk = 0; blk < scales.length; blk++) {
    const s = blk * NESTED_BLOCK, t = Math.min(absmax.length, s + NESTED_BLOCK);
    let mx = 0;
    for (let i = s; i < t; i++) mx = Math.max(mx, Math.abs(Math.fround(absmax[i] - offset)));
    scales[blk] = mx;
    const inv = Math.fround(1 / mx);
    for (let i = s; i < t; i++) codes[i] = mx === 0 ? nearestCode(map, 0) : nearestCode(map, Math.fround(Math.fround(absmax[i] - offset) * inv));
  }
  return { codes: new Int8Array(codes.buffer), absmax: scales, offset };
}

/** The f32 absmaxes of a double-quantised state (into `out` when given). */
export function dequantizeAbsmax(q: NestedAbsmax, out = new Float32Array(q.codes.length)): Float32Array {
  const map = signedDynamicMap(), codes = q.codes, scales = q.absmax, offset = q.offset;
  const tmp = new Float32Array(1); // the product rounded to f32 before the offset is added (f32 arithmetic throughout)
  for (let b = 0; b < scales.length; b++) {
    const s = scales[b], end = Math.min(codes.length, (b + 1) * NESTED_BLOCK);
    for (let i = b * NESTED_BLOCK; i < end; i++) {
      tmp[0] = map[codes[i] & 0xff] * s;
      out[i] = tmp[0] + offset;
    }
  }
  return out;
}
