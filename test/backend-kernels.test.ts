/**
 * Backend kernels, through ONE shared table of cases (`CASES`): each case makes seeded inputs, runs one kernel on
 * a backend and names an independent float64 reference written from the definition (naive loops, finite
 * differences, a Simpson-rule erf, a nearest-value search for f16). Every case checks
 *   (a) portable against its reference, and
 *   (b) native against portable, when the native addon loads (skipped otherwise; a failure under CI=true), and
 *   (c) wasm against portable, with the same tolerances as native (skipped when the module does not load; a
 *       failure under CI=true, see helpers/backends.ts).
 * Adding a case is adding one entry. Hand-computed values, cast edge bits and dropout statistics follow the table.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Backend, BinaryOp, DType, ReduceOp, Storage, UnaryOp } from '../src/backend/backend.js';
import { PortableBackend } from '../src/backend/portable.js';
import { hashUniform, Rng } from '../src/backend/rng.js';
import { erf, erfc } from '../src/backend/portable/special.js';
import { requireNative } from './helpers/ci.js';
import { NF4_LEVELS } from '../src/backend/nf4.js';
import { wasmBackendList } from './helpers/backends.js';
import type { WasmBackend } from '../src/backend/wasm/backend.js';

// ---- backends ----------------------------------------------------------------------------------------------

const portable: Backend = new PortableBackend();

/** The native backend when its module exists and the addon loads; null otherwise (its half of each case skips). */
async function loadNative(): Promise<Backend | null> {
  const index = await import('../src/backend/index.js').catch(() => null);
  if (!index) return null;
  try {
    return index.nativeAvailable() ? index.getBackend('native') : null;
  } catch {
    return null;
  }
}
const native = await loadNative();
const nativeSkip = native ? false : requireNative();
const wasm = wasmBackendList()[0] ?? null;
// every size through the wasm kernels (by default, small ones run the portable kernels)
if (wasm) (wasm as WasmBackend).minElements = 0;

// ---- comparison helpers --------------------------------------------------------------------------------------

type Arr = ArrayLike<number>;

function same(a: number, b: number): boolean {
  return a === b || (a !== a && b !== b);
}

/** Elementwise |a - e| <= atol + rtol * |e| (NaN matches NaN, infinities must be equal). */
function assertClose(actual: Arr, expected: Arr, rtol: number, atol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    if (same(a, e)) continue;
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      assert.fail(`${what}: element ${i} is ${a}, expected ${e} (rtol ${rtol}, atol ${atol})`);
    }
  }
}

/** max|a - e| / max(1e-6, max|e|) <= tol: for sums whose terms cancel (matmul, reductions). */
function assertNormClose(actual: Arr, expected: Arr, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let maxErr = 0, maxRef = 0, worst = -1;
  for (let i = 0; i < actual.length; i++) {
    if (same(actual[i], expected[i])) continue;
    const err = Math.abs(actual[i] - expected[i]);
    if (!(err <= maxErr)) { maxErr = err; worst = i; }
    maxRef = Math.max(maxRef, Math.abs(expected[i]));
  }
  for (let i = 0; i < expected.length; i++) if (Number.isFinite(expected[i])) maxRef = Math.max(maxRef, Math.abs(expected[i]));
  const rel = maxErr / Math.max(1e-6, maxRef);
  if (!(rel <= tol)) assert.fail(`${what}: relative max error ${rel} > ${tol} (element ${worst}: ${actual[worst]} vs ${expected[worst]})`);
}

/** Bit-identical (float arrays compared through their bit patterns). */
function bitsOf(x: Arr): Arr {
  return x instanceof Float32Array ? new Uint32Array(x.buffer, x.byteOffset, x.length) : x;
}
function assertBits(actual: Arr, expected: Arr, what: string): void {
  const a = bitsOf(actual), e = bitsOf(expected);
  assert.equal(a.length, e.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) assert.fail(`${what}: element ${i} is ${a[i]} (0x${(a[i] >>> 0).toString(16)}), expected ${e[i]} (0x${(e[i] >>> 0).toString(16)})`);
  }
}

// ---- seeded inputs -------------------------------------------------------------------------------------------

function randn(rng: Rng, n: number, scale = 1, shift = 0): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = rng.normal() * scale + shift;
  return x;
}
function randInts(rng: Rng, n: number, lo: number, hi: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = lo + rng.int(hi - lo + 1);
  return x;
}
/** bf16 bit patterns of random normals (truncated, so the reference decodes them as bits << 16 independently). */
function randBf16(rng: Rng, n: number): Uint16Array {
  const f = randn(rng, n);
  const u = new Uint32Array(f.buffer);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = u[i] >>> 16;
  return out;
}
const BF16_BITS = new Uint32Array(1), BF16_F32 = new Float32Array(BF16_BITS.buffer);
function bf16Value(bits: number): number {
  BF16_BITS[0] = bits << 16;
  return BF16_F32[0]!;
}
function prod(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
/** Element offset of flat row-major index `flat` of `shape` under `strides`. */
function offsetOf(flat: number, shape: number[], strides: number[]): number {
  let off = 0;
  for (let d = shape.length - 1; d >= 0; d--) {
    off += (flat % shape[d]) * strides[d];
    flat = Math.floor(flat / shape[d]);
  }
  return off;
}
/** Smallest buffer length a strided view needs. */
function spanOf(shape: number[], strides: number[]): number {
  return prod(shape) === 0 ? 0 : 1 + shape.reduce((s, n, d) => s + (n - 1) * strides[d], 0);
}

// ---- independent float64 references ---------------------------------------------------------------------------

/** erf by composite Simpson on 2/sqrt(pi) * exp(-t^2) (abs error ~1e-12, independent of the kernel's method). */
function refErf(x: number): number {
  const n = 4000, h = x / n;
  let s = 1 + Math.exp(-x * x);
  for (let i = 1; i < n; i++) s += (i % 2 ? 4 : 2) * Math.exp(-(i * h) * (i * h));
  return (2 / Math.sqrt(Math.PI)) * (h / 3) * s;
}
const Phi = (x: number) => 0.5 * (1 + refErf(x / Math.SQRT2));
const phi = (x: number) => Math.exp(-x * x / 2) / Math.sqrt(2 * Math.PI);
const sig = (x: number) => 1 / (1 + Math.exp(-x));
const GC = Math.sqrt(2 / Math.PI);
const sech2 = (u: number) => 1 / (Math.cosh(u) * Math.cosh(u));

/** [f, f'] for each unary op, from the textbook definitions. */
const UNARY_REF: Record<UnaryOp, [(x: number) => number, (x: number) => number]> = {
  neg: [(x) => -x, () => -1],
  exp: [Math.exp, Math.exp],
  log: [Math.log, (x) => 1 / x],
  sqrt: [Math.sqrt, (x) => 0.5 / Math.sqrt(x)],
  rsqrt: [(x) => 1 / Math.sqrt(x), (x) => -0.5 * Math.pow(x, -1.5)],
  tanh: [Math.tanh, (x) => sech2(x)],
  sigmoid: [sig, (x) => sig(x) * (1 - sig(x))],
  relu: [(x) => (x > 0 ? x : 0), (x) => (x > 0 ? 1 : 0)],
  gelu: [(x) => x * Phi(x), (x) => Phi(x) + x * phi(x)],
  gelu_tanh: [
    (x) => 0.5 * x * (1 + Math.tanh(GC * (x + 0.044715 * x ** 3))),
    (x) => 0.5 * (1 + Math.tanh(GC * (x + 0.044715 * x ** 3))) + 0.5 * x * sech2(GC * (x + 0.044715 * x ** 3)) * GC * (1 + 3 * 0.044715 * x * x),
  ],
  silu: [(x) => x * sig(x), (x) => sig(x) * (1 + x * (1 - sig(x)))],
  abs: [Math.abs, (x) => (x > 0 ? 1 : x < 0 ? -1 : 0)],
  square: [(x) => x * x, (x) => 2 * x],
  reciprocal: [(x) => 1 / x, (x) => -1 / (x * x)],
  sign: [(x) => (x > 0 ? 1 : x < 0 ? -1 : 0), () => 0],
};
const POSITIVE_ONLY: UnaryOp[] = ['log', 'sqrt', 'rsqrt', 'reciprocal'];

const BINARY_REF: Record<BinaryOp, (a: number, b: number) => number> = {
  add: (a, b) => a + b, sub: (a, b) => a - b, mul: (a, b) => a * b, div: (a, b) => a / b, pow: Math.pow,
  max: Math.max, min: Math.min,
  eq: (a, b) => +(a === b), gt: (a, b) => +(a > b), ge: (a, b) => +(a >= b), lt: (a, b) => +(a < b), le: (a, b) => +(a <= b),
};

/** Central finite differences of a scalar function of one array (float64). */
function numGrad(f: (x: Float64Array) => number, x0: Arr, h = 1e-4): Float64Array {
  const x = Float64Array.from(x0);
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    x[i] = v + h; const fp = f(x);
    x[i] = v - h; const fm = f(x);
    x[i] = v;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}
function dotF64(a: Arr, b: Arr): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function refLayerNorm(x: Arr, g: Arr | null, b: Arr | null, rows: number, cols: number, eps: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let mu = 0; for (let c = 0; c < cols; c++) mu += x[r * cols + c] / cols;
    let v = 0; for (let c = 0; c < cols; c++) v += (x[r * cols + c] - mu) ** 2 / cols;
    for (let c = 0; c < cols; c++) out[r * cols + c] = ((x[r * cols + c] - mu) / Math.sqrt(v + eps)) * (g ? g[c] : 1) + (b ? b[c] : 0);
  }
  return out;
}
function refRmsNorm(x: Arr, g: Arr | null, rows: number, cols: number, eps: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let ms = 0; for (let c = 0; c < cols; c++) ms += x[r * cols + c] ** 2 / cols;
    for (let c = 0; c < cols; c++) out[r * cols + c] = (x[r * cols + c] / Math.sqrt(ms + eps)) * (g ? g[c] : 1);
  }
  return out;
}
function refLogSoftmax(x: Arr, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let s = 0; for (let c = 0; c < cols; c++) s += Math.exp(x[r * cols + c]);
    for (let c = 0; c < cols; c++) out[r * cols + c] = x[r * cols + c] - Math.log(s);
  }
  return out;
}
function refCrossEntropy(logits: Arr, t: Int32Array, rows: number, cols: number, ignore: number, ls: number): Float64Array {
  const lp = refLogSoftmax(logits, rows, cols);
  const loss = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    if (t[r] === ignore) continue;
    let mean = 0; for (let c = 0; c < cols; c++) mean += -lp[r * cols + c] / cols;
    loss[r] = (1 - ls) * -lp[r * cols + t[r]] + ls * mean;
  }
  return loss;
}

// f16: the nearest of all finite halves (ties to even mantissa), from the binary16 definition.
function halfValue(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + m / 1024);
}
const HALF_POS = Array.from({ length: 0x7c00 }, (_, h) => halfValue(h)); // 0 .. 65504, increasing
function refF32ToF16(v: number): number {
  if (v !== v) return -1; // NaN: checked separately
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a >= 65520) return sign | 0x7c00; // 65504 + half an ulp (2^4) rounds to inf
  let lo = 0, hi = HALF_POS.length - 1;
  while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (HALF_POS[mid] <= a) lo = mid; else hi = mid; }
  const dl = a - HALF_POS[lo], dh = HALF_POS[hi] - a;
  const h = dl < dh ? lo : dh < dl ? hi : (lo & 1 ? hi : lo);
  return sign | (a === HALF_POS[hi] ? hi : h);
}
// bf16: the nearer of the two bf16 neighbours (truncation and next up), ties to even, from the values.
function refF32ToBf16(v: number): number {
  const bits = new Uint32Array(new Float32Array([v]).buffer)[0];
  if (v !== v) return ((bits >>> 16) & 0x8000) | 0x7fc0;
  const down = bits >>> 16, up = down + 1;
  const dv = Math.abs(v - bf16Value(down)), uv = Math.abs(bf16Value(up) - v);
  if ((down & 0x7fff) === 0x7f80) return down; // inf stays inf
  if ((up & 0x7fff) === 0x7f80) { // next is inf: round up only at or past max + half ulp (= 2^128 - 2^119)
    return Math.abs(v) >= 2 ** 128 - 2 ** 119 ? up : down;
  }
  return dv < uv ? down : uv < dv ? up : (down & 1 ? up : down);
}

// ---- the table ---------------------------------------------------------------------------------------------

type Out = Arr;
interface Case<I> {
  kernel: string;
  name: string;
  make: (rng: Rng) => I;
  /** Runs the kernel on fresh output buffers (inputs are never modified) and returns the outputs to compare. */
  run: (be: Backend, inp: I) => Out[];
  /** Independent float64 (or exact) expected outputs, same order as `run`. */
  ref: (inp: I) => Out[];
  /** Portable vs reference: elementwise tolerance (default rtol 1e-5, atol 1e-6), or 'bits'. */
  tol?: { rtol: number; atol: number } | 'bits';
  /** Native vs portable: 'elem' (rtol 1e-5 + atol 1e-6, default), 'norm' (relative max error <= nativeTol), 'bits'. */
  cmp?: 'elem' | 'norm' | 'bits';
  nativeTol?: number;
  /** Native vs portable, 'elem' mode: absolute tolerance (default 1e-6), for outputs that are differences of large terms. */
  nativeAtol?: number;
}
const CASES: Case<unknown>[] = [];
function add<I>(c: Case<I>): void {
  CASES.push(c as unknown as Case<unknown>);
}

// unary forward and backward: every op, odd size, zeros and large magnitudes mixed in.
for (const op of Object.keys(UNARY_REF) as UnaryOp[]) {
  const make = (rng: Rng) => {
    const x = randn(rng, 37, 2.5);
    if (POSITIVE_ONLY.includes(op)) for (let i = 0; i < x.length; i++) x[i] = Math.abs(x[i]) + 0.05;
    else x.set([0, -0, 30, -30, 100, -100, 8.5, -8.5]);
    if (op === 'exp') x.set([0, 20, -20, -100]);
    return { x, dy: randn(rng, x.length) };
  };
  add({
    kernel: 'unary', name: op, make,
    run: (be, { x }) => { const out = new Float32Array(x.length); be.unary(op, x, out); return [out]; },
    ref: ({ x }) => [Array.from(x, UNARY_REF[op][0])],
    tol: { rtol: 2e-7, atol: 1e-12 }, // atol: the Simpson erf and 1 - tanh^2 lose the far tails (|x| >= 30)
  });
  add({
    kernel: 'unaryBackward', name: op, make,
    run: (be, { x, dy }) => {
      const y = new Float32Array(x.length); be.unary(op, x, y);
      const dx = new Float32Array(x.length); be.unaryBackward(op, x, y, dy, dx); return [dx];
    },
    ref: ({ x, dy }) => [Array.from(x, (v, i) => dy[i] * UNARY_REF[op][1](v))],
    tol: { rtol: 1e-6, atol: 1e-12 },
  });
}

// binary: every op over contiguous, broadcast, transposed (non-contiguous), size-1 and scalar layouts.
const BINARY_LAYOUTS: { name: string; shape: number[]; as: number[]; bs: number[] }[] = [
  { name: 'contiguous 3x5', shape: [3, 5], as: [5, 1], bs: [5, 1] },
  { name: 'row broadcast 4x17 + 17', shape: [4, 17], as: [17, 1], bs: [0, 1] },
  { name: 'column x scalar 3x33', shape: [3, 33], as: [1, 0], bs: [0, 0] },
  { name: 'transposed a 5x3, b 1x3', shape: [5, 3], as: [1, 5], bs: [0, 1] },
  { name: '4-d with size-1 dims', shape: [2, 1, 3, 4], as: [12, 12, 4, 1], bs: [0, 0, 1, 3] },
  { name: 'size 1', shape: [1], as: [1], bs: [1] },
  { name: 'scalar', shape: [], as: [], bs: [] },
];
for (const op of Object.keys(BINARY_REF) as BinaryOp[]) {
  for (const L of BINARY_LAYOUTS) {
    add({
      kernel: 'binary', name: `${op} ${L.name}`,
      make: (rng) => {
        const na = Math.max(1, spanOf(L.shape, L.as)), nb = Math.max(1, spanOf(L.shape, L.bs));
        const cmp = ['eq', 'gt', 'ge', 'lt', 'le', 'max', 'min'].includes(op);
        const a = cmp ? randInts(rng, na, -2, 2) : randn(rng, na);
        const b = cmp ? randInts(rng, nb, -2, 2) : randn(rng, nb);
        if (op === 'pow') for (let i = 0; i < na; i++) a[i] = Math.abs(a[i]) + 0.1;
        if (op === 'div') for (let i = 0; i < nb; i++) b[i] = b[i] >= 0 ? b[i] + 0.1 : b[i] - 0.1;
        return { a, b };
      },
      run: (be, { a, b }) => { const out = new Float32Array(prod(L.shape)); be.binary(op, a, L.as, b, L.bs, L.shape, out); return [out]; },
      ref: ({ a, b }) => [Array.from({ length: prod(L.shape) }, (_, i) =>
        BINARY_REF[op](a[offsetOf(i, L.shape, L.as)], b[offsetOf(i, L.shape, L.bs)]))],
      tol: { rtol: 1e-7, atol: 0 },
    });
  }
}
for (const op of ['max', 'min'] as const) {
  add({
    kernel: 'binary', name: `${op} propagates NaN`,
    make: () => ({ a: new Float32Array([NaN, 1, NaN, -0, 0]), b: new Float32Array([1, NaN, NaN, 0, -0]) }),
    run: (be, { a, b }) => { const out = new Float32Array(5); be.binary(op, a, [1], b, [1], [5], out); return [out]; },
    ref: ({ a, b }) => [Array.from(a, (v, i) => Math[op](v, b[i]))],
  });
}

// where: broadcast condition and operands, strided a.
for (const L of [
  { name: 'contiguous 17', shape: [17], cs: [1], as: [1], bs: [1] },
  { name: 'row cond, scalar b 3x5', shape: [3, 5], cs: [0, 1], as: [5, 1], bs: [0, 0] },
  { name: 'column cond, transposed a 4x3', shape: [4, 3], cs: [1, 0], as: [1, 4], bs: [3, 1] },
]) {
  add({
    kernel: 'where', name: L.name,
    make: (rng) => ({ c: randInts(rng, spanOf(L.shape, L.cs), 0, 1), a: randn(rng, spanOf(L.shape, L.as)), b: randn(rng, Math.max(1, spanOf(L.shape, L.bs))) }),
    run: (be, { c, a, b }) => { const out = new Float32Array(prod(L.shape)); be.where(c, L.cs, a, L.as, b, L.bs, L.shape, out); return [out]; },
    ref: ({ c, a, b }) => [Array.from({ length: prod(L.shape) }, (_, i) =>
      c[offsetOf(i, L.shape, L.cs)] !== 0 ? a[offsetOf(i, L.shape, L.as)] : b[offsetOf(i, L.shape, L.bs)])],
    tol: 'bits', cmp: 'bits',
  });
}

// stridedCopy: every storage type, transposes, slices, broadcasts, size-1 dims.
const COPY_LAYOUTS = [
  { name: 'transpose 3x5', shape: [3, 5], strides: [1, 3] },
  { name: 'every other column 4x3 of 4x6', shape: [4, 3], strides: [6, 2] },
  { name: 'broadcast 3x17 from 17', shape: [3, 17], strides: [0, 1] },
  { name: 'permute 2x1x3x4 with size-1', shape: [2, 1, 3, 4], strides: [1, 99, 8, 2] },
  { name: 'contiguous 33', shape: [33], strides: [1] },
  { name: 'scalar', shape: [], strides: [] },
];
const MAKE_STORAGE: Record<DType, (rng: Rng, n: number) => Storage> = {
  f32: (rng, n) => randn(rng, n),
  bf16: (rng, n) => Uint16Array.from({ length: n }, () => rng.int(65536)),
  f16: (rng, n) => Uint16Array.from({ length: n }, () => rng.int(65536)),
  i32: (rng, n) => Int32Array.from({ length: n }, () => rng.int(2 ** 32) - 2 ** 31),
  i8: (rng, n) => Int8Array.from({ length: n }, () => rng.int(256) - 128),
};
for (const dtype of ['f32', 'bf16', 'i32', 'i8'] as DType[]) {
  for (const L of COPY_LAYOUTS) {
    add({
      kernel: 'stridedCopy', name: `${dtype} ${L.name}`,
      make: (rng) => ({ src: MAKE_STORAGE[dtype](rng, Math.max(1, spanOf(L.shape, L.strides))) }),
      run: (be, { src }) => { const dst = be.alloc(dtype, prod(L.shape)); be.stridedCopy(src, L.shape, L.strides, dst); return [dst]; },
      ref: ({ src }) => [Array.from({ length: prod(L.shape) }, (_, i) => src[offsetOf(i, L.shape, L.strides)])],
      tol: 'bits', cmp: 'bits',
    });
  }
}

// cast: every dtype pair on random values plus specials; the f32 -> 16-bit references are nearest-value searches.
const CAST_SPECIALS = [0, -0, 1, -1, 0.1, 65504, 65519.99, 65520, 1e6, -1e6, 5.960464477539063e-8, 2.98e-8, 1e-40, -1e-45,
  Infinity, -Infinity, 3.3895313892515355e38, 2147483648, -2147483649, 127.9, -128.9, 200, -0.9];
const refCastValue = (v: number, to: DType): number => {
  switch (to) {
    case 'f32': return Math.fround(v);
    case 'bf16': return refF32ToBf16(Math.fround(v));
    case 'f16': return refF32ToF16(Math.fround(v));
    case 'i32': return v !== v ? 0 : Math.max(-2147483648, Math.min(2147483647, Math.trunc(v)));
    case 'i8': return v !== v ? 0 : Math.max(-128, Math.min(127, Math.trunc(v)));
  }
};
const decode = (v: number, from: DType): number => (from === 'bf16' ? bf16Value(v) : from === 'f16' ? halfValue(v) : v);
for (const from of ['f32', 'bf16', 'f16', 'i32', 'i8'] as DType[]) {
  for (const to of ['f32', 'bf16', 'f16', 'i32', 'i8'] as DType[]) {
    add({
      kernel: 'cast', name: `${from} -> ${to}`,
      make: (rng) => {
        let src: Storage;
        if (from === 'f32') src = Float32Array.from([...CAST_SPECIALS, ...randn(rng, 40, 3), ...randn(rng, 20, 1e5)]);
        else if (from === 'i32') src = Int32Array.from([0, 1, -1, 127, 128, -129, 16777217, 2147483647, -2147483648, ...Array.from({ length: 30 }, () => rng.int(2000) - 1000)]);
        else if (from === 'i8') src = Int8Array.from([0, 127, -128, ...Array.from({ length: 30 }, () => rng.int(256) - 128)]);
        else {
          // all non-NaN 16-bit patterns of a random sample (NaN payloads are checked in the edge-case tests)
          const bits = Array.from({ length: 200 }, () => rng.int(65536)).filter((b) => (from === 'bf16' ? (b & 0x7fff) <= 0x7f80 : (b & 0x7fff) <= 0x7c00));
          const specials = from === 'bf16' ? [0, 0x8000, 1, 0x8001, 0x7f, 0x80, 0x7f7f, 0x7f80, 0xff80, 0x3f80, 0x3f81]
            : [0, 0x8000, 1, 0x8001, 0x3ff, 0x400, 0x7bff, 0x7c00, 0xfc00, 0x3c00, 0x3c01];
          src = Uint16Array.from([...specials, ...bits]);
        }
        return { src };
      },
      run: (be, { src }) => { const dst = be.alloc(to, src.length); be.cast(src, from, dst, to); return [dst]; },
      ref: ({ src }) => {
        if (from === to) return [src.slice()];
        const vals = Array.from(src, (v) => decode(v, from));
        if (to === 'f32') return [Float32Array.from(vals)];
        // through f32, as the contract says for every pair
        return [Array.from(vals, (v) => refCastValue(Math.fround(v), to))];
      },
      tol: 'bits', cmp: 'bits',
    });
  }
}

// reductions
for (const [outer, n, inner] of [[1, 1, 1], [1, 33, 1], [3, 17, 1], [2, 5, 3], [4, 1, 7], [1, 257, 2], [1, 1000, 300], [1, 2049, 24]]) {
  for (const op of ['sum', 'max', 'min'] as ReduceOp[]) {
    add({
      kernel: 'reduce', name: `${op} (${outer}, ${n}, ${inner})`,
      make: (rng) => ({ x: randn(rng, outer * n * inner) }),
      run: (be, { x }) => { const out = new Float32Array(outer * inner); be.reduce(op, x, outer, n, inner, out); return [out]; },
      ref: ({ x }) => {
        const out: number[] = [];
        for (let o = 0; o < outer; o++) for (let i = 0; i < inner; i++) {
          const col = Array.from({ length: n }, (_, j) => x[(o * n + j) * inner + i]);
          out.push(op === 'sum' ? col.reduce((s, v) => s + v, 0) : Math[op](...col));
        }
        return [out];
      },
      cmp: op === 'sum' ? 'norm' : 'bits', nativeTol: 1e-5,
    });
  }
  add({
    kernel: 'argmax', name: `(${outer}, ${n}, ${inner}) with ties`,
    make: (rng) => ({ x: randInts(rng, outer * n * inner, -3, 3) }),
    run: (be, { x }) => { const out = new Int32Array(outer * inner); be.argmax(x, outer, n, inner, out); return [out]; },
    ref: ({ x }) => {
      const out: number[] = [];
      for (let o = 0; o < outer; o++) for (let i = 0; i < inner; i++) {
        const col = Array.from({ length: n }, (_, j) => x[(o * n + j) * inner + i]);
        out.push(col.indexOf(Math.max(...col)));
      }
      return [out];
    },
    tol: 'bits', cmp: 'bits',
  });
}
add({
  kernel: 'sumSquares', name: '1001 values',
  make: (rng) => ({ x: randn(rng, 1001, 10) }),
  run: (be, { x }) => [[be.sumSquares(x)]],
  ref: ({ x }) => [[Array.from(x).reduce((s, v) => s + v * v, 0)]],
  tol: { rtol: 1e-12, atol: 0 }, cmp: 'norm', nativeTol: 1e-6,
});

// matmul
interface MM { batch: number; M: number; N: number; K: number; transA: boolean; transB: boolean; strideA: number; strideB: number; alpha: number; beta: number }
const MATMULS: (Omit<MM, 'strideA' | 'strideB'> & { bcastA?: boolean; bcastB?: boolean })[] = [
  { batch: 1, M: 1, N: 1, K: 1, transA: false, transB: false, alpha: 1, beta: 0 },
  { batch: 1, M: 3, N: 7, K: 5, transA: false, transB: false, alpha: 1, beta: 0 },
  { batch: 1, M: 17, N: 1, K: 33, transA: true, transB: false, alpha: 1, beta: 0 },
  { batch: 1, M: 33, N: 65, K: 17, transA: false, transB: true, alpha: 0.5, beta: 0 },
  { batch: 1, M: 9, N: 6, K: 13, transA: true, transB: true, alpha: 1, beta: 1 },
  { batch: 3, M: 5, N: 9, K: 7, transA: false, transB: false, alpha: 1, beta: 0 },
  { batch: 3, M: 6, N: 5, K: 4, transA: false, transB: true, alpha: 1, beta: 0, bcastB: true },
  { batch: 2, M: 7, N: 3, K: 6, transA: true, transB: false, alpha: 2, beta: 0.5, bcastA: true },
  { batch: 1, M: 67, N: 261, K: 300, transA: false, transB: false, alpha: 1, beta: 0 }, // crosses the panel boundary
  { batch: 1, M: 4, N: 4, K: 0, transA: false, transB: false, alpha: 1, beta: 1 },
  // one dimension <= 16, the others large: the skinny kernels (LoRA's factors), every layout, tails included
  ...[false, true].flatMap((transA) => [false, true].flatMap((transB) => [
    { batch: 1, M: 517, N: 8, K: 203, transA, transB, alpha: 1, beta: 0 }, // x A^T
    { batch: 1, M: 301, N: 13, K: 259, transA, transB, alpha: 0.5, beta: 1 },
    { batch: 1, M: 8, N: 519, K: 301, transA, transB, alpha: 1, beta: 0 }, // dA = d(xA^T)^T x
    { batch: 1, M: 11, N: 200, K: 403, transA, transB, alpha: 2, beta: 0.5 },
    { batch: 1, M: 333, N: 389, K: 8, transA, transB, alpha: 2, beta: 1 }, // rank-8 update
    { batch: 1, M: 260, N: 263, K: 16, transA, transB, alpha: 1, beta: 0 },
  ])),
  { batch: 2, M: 300, N: 4, K: 250, transA: false, transB: true, alpha: 1, beta: 0 },
  // rows split over threads (M >= N, enough work): wasm packs op(B) once for all parts (two K blocks, tails in M, N
  // and K); f32 operands pack 4 at a time, through 4x4 transposes in two of the layouts
  ...[false, true].flatMap((transA) => [false, true].map((transB) => ({ batch: 1, M: 301, N: 77, K: 301, transA, transB, alpha: 1, beta: 0 }))),
  { batch: 1, M: 264, N: 64, K: 512, transA: false, transB: true, alpha: 0.5, beta: 1 }, // no tails
  { batch: 3, M: 150, N: 45, K: 270, transA: false, transB: true, alpha: 1, beta: 0, bcastB: true }, // one op(B) for the batch
  { batch: 3, M: 150, N: 45, K: 270, transA: true, transB: false, alpha: 1, beta: 0 }, // one op(B) per item
];
for (const dtype of ['f32', 'bf16'] as const) {
  for (const s of MATMULS) {
    const p: MM = { ...s, strideA: s.bcastA ? 0 : s.M * s.K, strideB: s.bcastB ? 0 : s.K * s.N };
    add({
      kernel: 'matmul', name: `${dtype} b${p.batch} ${p.M}x${p.K}x${p.N}${p.transA ? ' tA' : ''}${p.transB ? ' tB' : ''} alpha=${p.alpha} beta=${p.beta}${s.bcastA ? ' bcastA' : ''}${s.bcastB ? ' bcastB' : ''}`,
      make: (rng) => {
        const na = (s.bcastA ? 1 : p.batch) * p.M * p.K, nb = (s.bcastB ? 1 : p.batch) * p.K * p.N;
        const out0 = randn(rng, p.batch * p.M * p.N);
        if (p.beta === 0) out0.fill(NaN); // beta = 0 must overwrite
        return dtype === 'f32' ? { a: randn(rng, na), b: randn(rng, nb), out0 } : { a: randBf16(rng, na), b: randBf16(rng, nb), out0 };
      },
      run: (be, { a, b, out0 }) => { const out = out0.slice(); be.matmul({ a, b, out, dtype, ...p }); return [out]; },
      ref: ({ a, b, out0 }) => {
        const val = (x: Float32Array | Uint16Array, i: number) => (dtype === 'bf16' ? bf16Value(x[i]) : x[i]);
        const out = new Float64Array(out0.length);
        for (let bi = 0; bi < p.batch; bi++) for (let i = 0; i < p.M; i++) for (let j = 0; j < p.N; j++) {
          let s2 = 0;
          for (let k = 0; k < p.K; k++) {
            const av = val(a, bi * p.strideA + (p.transA ? k * p.M + i : i * p.K + k));
            const bv = val(b, bi * p.strideB + (p.transB ? j * p.K + k : k * p.N + j));
            s2 += av * bv;
          }
          const o = (bi * p.M + i) * p.N + j;
          out[o] = p.alpha * s2 + (p.beta === 0 ? 0 : p.beta * out0[o]);
        }
        return [out];
      },
      tol: { rtol: 1e-5, atol: 1e-5 },
      cmp: 'norm', nativeTol: dtype === 'bf16' ? 1e-2 : 1e-5,
    });
  }
}

// matmulLowp: f32 activations against one bf16, int8 (scales per stored row) or NF4 weight (absmax per 64 elements,
// codes high nibble first), widened in blocks natively.
const LOWP: (Omit<MM, 'strideB'>)[] = [
  { batch: 1, M: 3, N: 7, K: 5, transA: false, transB: true, strideA: 15, alpha: 1, beta: 0 },
  { batch: 1, M: 5, N: 6, K: 9, transA: false, transB: false, strideA: 45, alpha: 0.5, beta: 1 },
  { batch: 2, M: 4, N: 3, K: 6, transA: true, transB: true, strideA: 24, alpha: 1, beta: 0 },
  { batch: 3, M: 2, N: 5, K: 4, transA: false, transB: false, strideA: 0, alpha: 1, beta: 0.5 },
  { batch: 1, M: 3, N: 4000, K: 300, transA: false, transB: true, strideA: 900, alpha: 1, beta: 0 },
  { batch: 1, M: 3, N: 300, K: 5000, transA: true, transB: false, strideA: 15000, alpha: 1, beta: 1 },
  // rows split over threads: wasm widens the weight once, packed for all parts
  { batch: 1, M: 260, N: 37, K: 530, transA: false, transB: true, strideA: 0, alpha: 1, beta: 0 },
  { batch: 1, M: 260, N: 37, K: 530, transA: true, transB: false, strideA: 0, alpha: 1, beta: 0.5 },
];
// NF4 only: 14,100 stored rows of 299 elements span the native kernel's 4M-float blocks, and its blocks of 14,027
// rows start at odd elements (the low nibble of a byte)
const LOWP_NF4: (Omit<MM, 'strideB'>)[] = [
  { batch: 1, M: 2, N: 14100, K: 299, transA: false, transB: true, strideA: 0, alpha: 1, beta: 0 },
  { batch: 1, M: 2, N: 299, K: 14100, transA: false, transB: false, strideA: 0, alpha: 1, beta: 0.5 },
];
for (const bDtype of ['bf16', 'i8', 'nf4'] as const) {
  for (const p of bDtype === 'nf4' ? [...LOWP, ...LOWP_NF4] : LOWP) {
    const rows = p.transB ? p.N : p.K;
    add({
      kernel: 'matmulLowp', name: `${bDtype} b${p.batch} ${p.M}x${p.K}x${p.N}${p.transA ? ' tA' : ''}${p.transB ? ' tB' : ''} alpha=${p.alpha} beta=${p.beta}${p.strideA === 0 ? ' bcastA' : ''}`,
      make: (rng) => {
        const out0 = randn(rng, p.batch * p.M * p.N);
        if (p.beta === 0) out0.fill(NaN);
        const a = randn(rng, (p.strideA === 0 ? 1 : p.batch) * p.M * p.K);
        if (bDtype === 'nf4') {
          const n = p.K * p.N;
          const absmax = Float32Array.from(randn(rng, Math.ceil(n / 64), 0.05), Math.abs);
          return { a, b: Int8Array.from(randInts(rng, Math.ceil(n / 2), -128, 127)), scales: absmax, out0 };
        }
        const b: Uint16Array | Int8Array = bDtype === 'bf16' ? randBf16(rng, p.K * p.N) : Int8Array.from(randInts(rng, p.K * p.N, -127, 127));
        return { a, b, scales: bDtype === 'i8' ? randn(rng, rows, 0.01) : null, out0 };
      },
      run: (be, { a, b, scales, out0 }) => {
        const out = out0.slice();
        be.matmulLowp({ a, b, bDtype, scales, out, ...p });
        return [out];
      },
      ref: ({ a, b, scales, out0 }) => {
        const cols = p.transB ? p.K : p.N;
        const val = (i: number) => (bDtype === 'bf16' ? bf16Value(b[i])
          : bDtype === 'nf4' ? Math.fround(NF4_LEVELS[(i % 2 === 0 ? (b[i >> 1] & 0xff) >> 4 : b[i >> 1] & 15)] * scales![Math.floor(i / 64)])
          : Math.fround(scales![Math.floor(i / cols)] * b[i]));
        const out = new Float64Array(out0.length);
        for (let bi = 0; bi < p.batch; bi++) for (let i = 0; i < p.M; i++) for (let j = 0; j < p.N; j++) {
          let s2 = 0;
          for (let k = 0; k < p.K; k++) s2 += a[bi * p.strideA + (p.transA ? k * p.M + i : i * p.K + k)] * val(p.transB ? j * p.K + k : k * p.N + j);
          const o = (bi * p.M + i) * p.N + j;
          out[o] = p.alpha * s2 + (p.beta === 0 ? 0 : p.beta * out0[o]);
        }
        return [out];
      },
      tol: { rtol: 1e-5, atol: 1e-5 }, cmp: 'norm', nativeTol: 1e-5,
    });
  }
}

// softmax / log-softmax, forward and backward
for (const [rows, cols] of [[1, 1], [3, 17], [2, 33], [5, 3]]) {
  for (const log of [false, true]) {
    const kind = log ? 'log-softmax' : 'softmax';
    const make = (rng: Rng) => ({ x: randn(rng, rows * cols, 3, 50), dy: randn(rng, rows * cols) });
    add({
      kernel: 'softmax', name: `${kind} ${rows}x${cols}`, make,
      run: (be, { x }) => { const out = new Float32Array(x.length); be.softmax(x, rows, cols, out, log); return [out]; },
      ref: ({ x }) => { const lp = refLogSoftmax(Array.from(x, (v) => v - 50), rows, cols); return [log ? lp : lp.map(Math.exp)]; },
      // log-softmax of inputs near 50: a float32 x - (max + log(sum)) is exact only to ulp(50) ~ 4e-6 absolute
      cmp: log ? 'norm' : 'elem', nativeTol: 1e-5,
    });
    add({
      kernel: 'softmaxBackward', name: `${kind} ${rows}x${cols}`, make,
      run: (be, { x, dy }) => {
        const y = new Float32Array(x.length); be.softmax(x, rows, cols, y, log);
        const dx = new Float32Array(x.length); be.softmaxBackward(y, dy, rows, cols, dx, log); return [dx];
      },
      // d/dx of sum(dy * f(x)) by finite differences of the float64 definition
      ref: ({ x, dy }) => [numGrad((z) => dotF64(dy, log ? refLogSoftmax(z, rows, cols) : refLogSoftmax(z, rows, cols).map(Math.exp)), x, 1e-5)],
      tol: { rtol: 1e-4, atol: 2e-5 },
      cmp: log ? 'norm' : 'elem', nativeTol: 1e-5,
    });
  }
}

// layer norm and RMS norm, forward and backward (dgamma/dbeta accumulate onto non-zero buffers)
for (const [rows, cols, affineOn] of [[1, 1, true], [3, 17, true], [4, 33, false], [2, 3, true]] as const) {
  const eps = 1e-5;
  const make = (rng: Rng) => ({
    x: randn(rng, rows * cols, 2, 1), g: randn(rng, cols, 0.5, 1), b: randn(rng, cols), dy: randn(rng, rows * cols),
    dg0: randn(rng, cols), db0: randn(rng, cols),
  });
  const tag = `${rows}x${cols}${affineOn ? '' : ' no affine'}`;
  add({
    kernel: 'layerNorm', name: tag, make,
    run: (be, { x, g, b }) => {
      const out = new Float32Array(x.length), mean = new Float32Array(rows), rstd = new Float32Array(rows);
      be.layerNorm(x, affineOn ? g : null, affineOn ? b : null, rows, cols, eps, out, mean, rstd);
      return [out, mean, rstd];
    },
    ref: ({ x, g, b }) => {
      const mean = Array.from({ length: rows }, (_, r) => Array.from(x.subarray(r * cols, (r + 1) * cols)).reduce((s, v) => s + v, 0) / cols);
      const rstd = mean.map((mu, r) => 1 / Math.sqrt(Array.from(x.subarray(r * cols, (r + 1) * cols)).reduce((s, v) => s + (v - mu) ** 2, 0) / cols + eps));
      return [refLayerNorm(x, affineOn ? g : null, affineOn ? b : null, rows, cols, eps), mean, rstd];
    },
    tol: { rtol: 1e-5, atol: 2e-6 },
  });
  add({
    kernel: 'layerNormBackward', name: tag, make,
    run: (be, { x, g, b, dy, dg0, db0 }) => {
      const out = new Float32Array(x.length), mean = new Float32Array(rows), rstd = new Float32Array(rows);
      be.layerNorm(x, affineOn ? g : null, affineOn ? b : null, rows, cols, eps, out, mean, rstd);
      const dx = new Float32Array(x.length).fill(NaN), dg = dg0.slice(), db = db0.slice();
      be.layerNormBackward(dy, x, affineOn ? g : null, mean, rstd, rows, cols, dx, affineOn ? dg : null, affineOn ? db : null);
      return affineOn ? [dx, dg, db] : [dx];
    },
    nativeAtol: 1e-5, // dx = rstd * (g - mean(g) - xhat * mean(g xhat)) cancels terms of size rstd * |dy| (~300 at cols = 1)
    ref: ({ x, g, b, dy, dg0, db0 }) => {
      const G = affineOn ? g : null, B = affineOn ? b : null;
      const dx = numGrad((z) => dotF64(dy, refLayerNorm(z, G, B, rows, cols, eps)), x, 1e-3);
      if (!affineOn) return [dx];
      const dg = numGrad((z) => dotF64(dy, refLayerNorm(x, z, B, rows, cols, eps)), g, 1e-3).map((v, i) => v + dg0[i]);
      const db = numGrad((z) => dotF64(dy, refLayerNorm(x, G, z, rows, cols, eps)), b, 1e-3).map((v, i) => v + db0[i]);
      return [dx, dg, db];
    },
    tol: { rtol: 1e-4, atol: 1e-4 },
  });
  // the same gradients from the output (xhat = (y - beta) / gamma); gamma kept away from 0, as layerNorm's op ensures
  if (affineOn) add({
    kernel: 'layerNormBackwardFromOutput', name: tag,
    make: (rng: Rng) => {
      const m = make(rng);
      return { ...m, g: m.g.map((v) => (v < 0 ? -0.5 : 0.5) + v) };
    },
    run: (be, { x, g, b, dy, dg0, db0 }) => {
      const out = new Float32Array(x.length), mean = new Float32Array(rows), rstd = new Float32Array(rows);
      be.layerNorm(x, g, b, rows, cols, eps, out, mean, rstd);
      const dx = new Float32Array(x.length).fill(NaN), dg = dg0.slice(), db = db0.slice();
      be.layerNormBackwardFromOutput(dy, out, g, b, rstd, rows, cols, dx, dg, db);
      return [dx, dg, db];
    },
    nativeAtol: 3e-5, // as layerNormBackward: at cols = 1 dx is a rounding residual times rstd (~300); 1.4e-5 seen
    ref: ({ x, g, b, dy, dg0, db0 }) => {
      const dx = numGrad((z) => dotF64(dy, refLayerNorm(z, g, b, rows, cols, eps)), x, 1e-3);
      const dg = numGrad((z) => dotF64(dy, refLayerNorm(x, z, b, rows, cols, eps)), g, 1e-3).map((v, i) => v + dg0[i]);
      const db = numGrad((z) => dotF64(dy, refLayerNorm(x, g, z, rows, cols, eps)), b, 1e-3).map((v, i) => v + db0[i]);
      return [dx, dg, db];
    },
    tol: { rtol: 1e-4, atol: 1e-4 },
  });
  add({
    kernel: 'rmsNorm', name: tag, make,
    run: (be, { x, g }) => {
      const out = new Float32Array(x.length), rstd = new Float32Array(rows);
      be.rmsNorm(x, affineOn ? g : null, rows, cols, eps, out, rstd); return [out, rstd];
    },
    ref: ({ x, g }) => [refRmsNorm(x, affineOn ? g : null, rows, cols, eps),
      Array.from({ length: rows }, (_, r) => 1 / Math.sqrt(Array.from(x.subarray(r * cols, (r + 1) * cols)).reduce((s, v) => s + v * v, 0) / cols + eps))],
  });
  add({
    kernel: 'rmsNormBackward', name: tag, make,
    run: (be, { x, g, dy, dg0 }) => {
      const out = new Float32Array(x.length), rstd = new Float32Array(rows);
      be.rmsNorm(x, affineOn ? g : null, rows, cols, eps, out, rstd);
      const dx = new Float32Array(x.length).fill(NaN), dg = dg0.slice();
      be.rmsNormBackward(dy, x, affineOn ? g : null, rstd, rows, cols, dx, affineOn ? dg : null);
      return affineOn ? [dx, dg] : [dx];
    },
    ref: ({ x, g, dy, dg0 }) => {
      const G = affineOn ? g : null;
      const dx = numGrad((z) => dotF64(dy, refRmsNorm(z, G, rows, cols, eps)), x, 1e-3);
      if (!affineOn) return [dx];
      return [dx, numGrad((z) => dotF64(dy, refRmsNorm(x, z, rows, cols, eps)), g, 1e-3).map((v, i) => v + dg0[i])];
    },
    tol: { rtol: 1e-4, atol: 1e-4 },
  });
  // from the output (xhat = y / gamma); any nonzero gamma, small ones included
  if (affineOn) add({
    kernel: 'rmsNormBackwardFromOutput', name: tag,
    make: (rng: Rng) => {
      const m = make(rng);
      return { ...m, g: m.g.map((v) => (v < 0 ? -0.01 : 0.01) + v) };
    },
    run: (be, { x, g, dy, dg0 }) => {
      const out = new Float32Array(x.length), rstd = new Float32Array(rows);
      be.rmsNorm(x, g, rows, cols, eps, out, rstd);
      const dx = new Float32Array(x.length).fill(NaN), dg = dg0.slice();
      be.rmsNormBackwardFromOutput(dy, out, g, rstd, rows, cols, dx, dg);
      return [dx, dg];
    },
    nativeAtol: 3e-5,
    ref: ({ x, g, dy, dg0 }) => [
      numGrad((z) => dotF64(dy, refRmsNorm(z, g, rows, cols, eps)), x, 1e-3),
      numGrad((z) => dotF64(dy, refRmsNorm(x, z, rows, cols, eps)), g, 1e-3).map((v, i) => v + dg0[i]),
    ],
    tol: { rtol: 1e-4, atol: 1e-4 },
  });
}

// gather / scatterAdd (repeated indices accumulate)
for (const [vocab, cols, n] of [[1, 1, 1], [7, 17, 9], [5, 3, 12]]) {
  const make = (rng: Rng) => ({
    table: randn(rng, vocab * cols), idx: Int32Array.from({ length: n }, () => rng.int(vocab)), src: randn(rng, n * cols), d0: randn(rng, vocab * cols),
  });
  add({
    kernel: 'gather', name: `${vocab}x${cols}, ${n} indices`, make,
    run: (be, { table, idx }) => { const out = new Float32Array(n * cols); be.gather(table, idx, cols, out); return [out]; },
    ref: ({ table, idx }) => [Array.from({ length: n * cols }, (_, i) => table[idx[Math.floor(i / cols)] * cols + (i % cols)])],
    tol: 'bits', cmp: 'bits',
  });
  add({
    kernel: 'scatterAdd', name: `${vocab}x${cols}, ${n} indices`, make,
    run: (be, { idx, src, d0 }) => { const d = d0.slice(); be.scatterAdd(src, idx, cols, d); return [d]; },
    ref: ({ idx, src, d0 }) => {
      const d = Float64Array.from(d0);
      for (let i = 0; i < n; i++) for (let c = 0; c < cols; c++) d[idx[i] * cols + c] += src[i * cols + c];
      return [d];
    },
  });
}

// cross-entropy with label smoothing and ignored rows
for (const [rows, cols, ls] of [[1, 1, 0], [4, 17, 0], [5, 33, 0.1], [3, 3, 0.25]] as const) {
  const ignore = -100;
  const make = (rng: Rng) => {
    const targets = Int32Array.from({ length: rows }, () => rng.int(cols));
    if (rows > 2) targets[1] = ignore;
    return { logits: randn(rng, rows * cols, 2), targets, dloss: randn(rng, rows) };
  };
  add({
    kernel: 'crossEntropy', name: `${rows}x${cols} ls=${ls}`, make,
    run: (be, { logits, targets }) => {
      const loss = new Float32Array(rows), logp = new Float32Array(rows * cols);
      be.crossEntropy(logits, targets, rows, cols, ignore, ls, loss, logp); return [loss, logp];
    },
    ref: ({ logits, targets }) => [refCrossEntropy(logits, targets, rows, cols, ignore, ls), refLogSoftmax(logits, rows, cols)],
  });
  add({
    kernel: 'crossEntropyBackward', name: `${rows}x${cols} ls=${ls}`, make,
    run: (be, { logits, targets, dloss }) => {
      const loss = new Float32Array(rows), logp = new Float32Array(rows * cols);
      be.crossEntropy(logits, targets, rows, cols, ignore, ls, loss, logp);
      const d = new Float32Array(rows * cols).fill(NaN);
      be.crossEntropyBackward(logp, targets, rows, cols, ignore, ls, dloss, d); return [d];
    },
    ref: ({ logits, targets, dloss }) => [numGrad((z) => dotF64(dloss, refCrossEntropy(z, targets, rows, cols, ignore, ls)), logits, 1e-4)],
    tol: { rtol: 1e-4, atol: 2e-5 },
  });
}

// rope: out = x * cat(cos, cos) + rotate_half(x) * cat(sin, sin) on the first rotDim features (the HF formulation)
for (const [rows, T, D, rotDim] of [[1, 1, 2, 2], [2, 5, 8, 8], [3, 4, 6, 4], [2, 3, 17, 8]]) {
  for (const inverse of [false, true]) {
    add({
      kernel: 'rope', name: `(${rows}, ${T}, ${D}) rotDim=${rotDim}${inverse ? ' inverse' : ''}`,
      make: (rng) => {
        const half = rotDim / 2, cos = new Float32Array(T * half), sin = new Float32Array(T * half);
        for (let t = 0; t < T; t++) for (let i = 0; i < half; i++) {
          const th = t / Math.pow(10000, (2 * i) / rotDim);
          cos[t * half + i] = Math.cos(th); sin[t * half + i] = Math.sin(th);
        }
        return { x: randn(rng, rows * T * D), cos, sin };
      },
      run: (be, { x, cos, sin }) => { const out = new Float32Array(x.length); be.rope(x, cos, sin, rows, T, D, rotDim, inverse, out); return [out]; },
      ref: ({ x, cos, sin }) => {
        const half = rotDim / 2, out = new Float64Array(x.length);
        for (let r = 0; r < rows; r++) for (let t = 0; t < T; t++) {
          const o = (r * T + t) * D;
          for (let i = 0; i < D; i++) {
            if (i >= rotDim) { out[o + i] = x[o + i]; continue; }
            const rot = i < half ? -x[o + i + half] : x[o + i - half];
            const cf = cos[t * half + (i % half)], sf = (inverse ? -1 : 1) * sin[t * half + (i % half)];
            out[o + i] = x[o + i] * cf + rot * sf;
          }
        }
        return [out];
      },
    });
  }
}

// dropout mask: the counter-based definition from rng.ts
for (const [seed, p, n] of [[0, 0, 17], [1, 0.1, 1000], [0xdeadbeef, 0.5, 33], [-7, 0.9, 257], [42, 1, 5]]) {
  add({
    kernel: 'dropoutMask', name: `seed ${seed} p=${p} n=${n}`,
    make: () => ({}),
    run: (be) => { const m = new Float32Array(n).fill(NaN); be.dropoutMask(seed, p, m); return [m]; },
    ref: () => [Float32Array.from({ length: n }, (_, i) => (hashUniform(seed, i) >= p ? Math.fround(1 / (1 - p)) : 0))],
    tol: 'bits', cmp: 'bits',
  });
}

// optimizers: three steps from copies, against PyTorch's formulation in float64 (float32 state between steps)
for (const [n, wd, gradScale] of [[1, 0, 1], [17, 0.01, 0.5], [33, 0.1, 1]]) {
  add({
    kernel: 'adamw', name: `n=${n} wd=${wd} gradScale=${gradScale}`,
    make: (rng) => ({ p0: randn(rng, n), grads: [randn(rng, n), randn(rng, n, 1e-3), randn(rng, n, 10)] }),
    run: (be, { p0, grads }) => {
      const param = p0.slice(), m = new Float32Array(n), v = new Float32Array(n);
      grads.forEach((grad, s) => be.adamw({ param, grad, m, v, lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: wd, step: s + 1, gradScale }));
      return [param, m, v];
    },
    ref: ({ p0, grads }) => {
      const param = p0.slice(), m = new Float32Array(n), v = new Float32Array(n);
      grads.forEach((grad, s) => {
        for (let i = 0; i < n; i++) {
          const g = grad[i] * gradScale;
          const pd = param[i] * (1 - 1e-2 * wd); // torch: p.mul_(1 - lr * wd)
          m[i] = 0.9 * m[i] + 0.1 * g;
          v[i] = 0.999 * v[i] + 0.001 * g * g;
          const denom = Math.sqrt(v[i]) / Math.sqrt(1 - 0.999 ** (s + 1)) + 1e-8;
          param[i] = pd - (1e-2 / (1 - 0.9 ** (s + 1))) * (m[i] / denom);
        }
      });
      return [param, m, v];
    },
    tol: { rtol: 1e-6, atol: 1e-7 },
  });
  for (const [momentum, dampening, nesterov] of [[0, 0, false], [0.9, 0, false], [0.9, 0.1, false], [0.9, 0, true]] as const) {
    add({
      kernel: 'sgd', name: `n=${n} wd=${wd} momentum=${momentum} dampening=${dampening}${nesterov ? ' nesterov' : ''}`,
      make: (rng) => ({ p0: randn(rng, n), grads: [randn(rng, n), randn(rng, n), randn(rng, n)] }),
      run: (be, { p0, grads }) => {
        const param = p0.slice(), buf = new Float32Array(momentum ? n : 0);
        grads.forEach((grad, s) => be.sgd({ param, grad, buf, lr: 0.1, momentum, dampening, nesterov, weightDecay: wd, firstStep: s === 0, gradScale }));
        return momentum ? [param, buf] : [param];
      },
      ref: ({ p0, grads }) => {
        const param = p0.slice(), buf = new Float32Array(n);
        grads.forEach((grad, s) => {
          for (let i = 0; i < n; i++) {
            let d = grad[i] * gradScale + wd * param[i];
            if (momentum) {
              buf[i] = s === 0 ? d : momentum * buf[i] + (1 - dampening) * d;
              d = nesterov ? d + momentum * buf[i] : buf[i];
            }
            param[i] -= 0.1 * d;
          }
        });
        return momentum ? [param, buf] : [param];
      },
      tol: { rtol: 1e-6, atol: 1e-7 },
    });
  }
}

// small elementwise and memory kernels
for (const n of [1, 17, 33]) {
  add({
    kernel: 'axpby', name: `n=${n}`,
    make: (rng) => ({ x: randn(rng, n), y: randn(rng, n) }),
    run: (be, { x, y }) => { const out = new Float32Array(n); be.axpby(0.75, x, -2, y, out); const y2 = y.slice(); be.axpby(0.5, x, 3, y2, y2); return [out, y2]; },
    ref: ({ x, y }) => [Array.from(x, (v, i) => 0.75 * v - 2 * y[i]), Array.from(x, (v, i) => 0.5 * v + 3 * y[i])],
    tol: { rtol: 2e-7, atol: 1e-7 },
  });
  add({
    kernel: 'affine', name: `n=${n}`,
    make: (rng) => ({ x: randn(rng, n) }),
    run: (be, { x }) => { const out = new Float32Array(n); be.affine(x, 1.5, -0.25, out); const x2 = x.slice(); be.affine(x2, -2, 1, x2); return [out, x2]; },
    ref: ({ x }) => [Array.from(x, (v) => v * 1.5 - 0.25), Array.from(x, (v) => -2 * v + 1)],
    tol: { rtol: 2e-7, atol: 1e-7 },
  });
  add({
    kernel: 'fill', name: `n=${n}`,
    make: () => ({}),
    run: (be) => { const f = new Float32Array(n); be.fill(f, 0.1); const i = new Int32Array(n); be.fill(i, -7); return [f, i]; },
    ref: () => [new Float32Array(n).fill(0.1), new Int32Array(n).fill(-7)],
    tol: 'bits', cmp: 'bits',
  });
}

// ---- running the table -------------------------------------------------------------------------------------

function seedOf(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h;
}

for (const c of CASES) {
  const label = `${c.kernel}: ${c.name}`;
  test(label, async (t) => {
    const inputs = c.make(new Rng(seedOf(label)));
    const mine = c.run(portable, inputs);
    await t.test('portable vs reference', () => {
      const want = c.ref(inputs);
      assert.equal(mine.length, want.length, 'number of outputs');
      mine.forEach((out, k) => {
        const what = `${label} output ${k}`;
        // float32 outputs are compared with the float64 reference rounded to float32 (overflow -> inf included)
        const ref = out instanceof Float32Array ? Float32Array.from(want[k]) : want[k];
        if (c.tol === 'bits') assertBits(out, ref, what);
        else assertClose(out, ref, c.tol?.rtol ?? 1e-5, c.tol?.atol ?? 1e-6, what);
      });
    });
    for (const [name, other] of [['native', native], ['wasm', wasm]] as const) {
      await t.test(`${name} vs portable`, { skip: name === 'native' ? nativeSkip : false }, (tt) => {
        if (!other) {
          tt.skip(`${name} backend not available`);
          return;
        }
        const theirs = c.run(other, inputs);
        assert.equal(theirs.length, mine.length, 'number of outputs');
        theirs.forEach((out, k) => {
          const what = `${name}: ${label} output ${k}`;
          if (c.cmp === 'bits') assertBits(out, mine[k], what);
          else if (c.cmp === 'norm') assertNormClose(out, mine[k], c.nativeTol ?? 1e-5, what);
          else assertClose(out, mine[k], 1e-5, c.nativeAtol ?? 1e-6, what);
        });
      });
    }
  });
}

// ---- hand-computed values and edge cases ----------------------------------------------------------------------

test('erf/erfc match high-precision values (|error| < 1e-12)', () => {
  const ERF: [number, number][] = [[0.5, 0.52049987781304654], [1, 0.84270079294971487], [2, 0.99532226501895273], [3, 0.99997790950300141]];
  for (const [x, v] of ERF) {
    assert.ok(Math.abs(erf(x) - v) < 1e-15, `erf(${x})`);
    assert.ok(Math.abs(erf(-x) + v) < 1e-15, `erf(-${x})`);
  }
  const ERFC: [number, number][] = [[4, 1.5417257900280019e-8], [5, 1.5374597944280349e-12], [10, 2.0884875837625448e-45]];
  for (const [x, v] of ERFC) assert.ok(Math.abs(erfc(x) / v - 1) < 1e-12, `erfc(${x}) relative`);
  assert.equal(erf(0), 0);
  assert.ok(Number.isNaN(erf(NaN)));
});

test('gelu and gelu_tanh at hand-computed points', () => {
  const x = new Float32Array([1, -1, 2, -3, 0.5, 0]);
  const out = new Float32Array(x.length);
  portable.unary('gelu', x, out);
  assertBits(out, Float32Array.from([0.84134474606854295, -0.15865525393145705, 1.9544997361036416, -0.0040496940948902836, 0.34573123063700655, 0]), 'gelu');
  const t3 = new Float32Array([1, -1, 2]);
  const o3 = new Float32Array(3);
  portable.unary('gelu_tanh', t3, o3);
  assertBits(o3, Float32Array.from([0.84119199060827672, -0.15880800939172328, 1.954597694087775]), 'gelu_tanh');
});

test('sigmoid and silu are finite and exact in the tails', () => {
  const x = new Float32Array([-1000, -100, 100, 1000]);
  const s = new Float32Array(4);
  portable.unary('sigmoid', x, s);
  assertBits(s, Float32Array.from([0, 3.720075976020836e-44, 1, 1]), 'sigmoid'); // 3.7e-44: a float32 subnormal
  portable.unary('silu', x, s);
  assertBits(s, Float32Array.from([-0, -3.720075976020836e-42, 100, 1000]), 'silu');
});

test('cast: bf16 edge bits', () => {
  const f = (bits: number) => new Float32Array(new Uint32Array([bits]).buffer)[0];
  const cases: [number, number][] = [
    [0x00000000, 0x0000], [0x80000000, 0x8000], // +-0
    [0x3f800000, 0x3f80], // 1
    [0x3f808000, 0x3f80], // tie, even below
    [0x3f818000, 0x3f82], // tie, odd below -> up
    [0x3f808001, 0x3f81], // just above the tie
    [0x00000001, 0x0000], [0x00400000, 0x0040], [0x00008000, 0x0000], [0x00018000, 0x0002], // subnormals
    [0x7f7fffff, 0x7f80], // max float rounds to inf
    [0x7f800000, 0x7f80], [0xff800000, 0xff80], // inf
    [0x7fc00000, 0x7fc0], [0xffc00001, 0xffc0], [0x7f800001, 0x7fc0], [0xff812345, 0xffc0], // NaN -> quiet, sign kept
  ];
  const src = Float32Array.from(cases.map(([b]) => f(b)));
  // rebuild bit-exactly (a NaN through a JS number may lose its payload)
  new Uint32Array(src.buffer).set(cases.map(([b]) => b));
  const dst = new Uint16Array(src.length);
  portable.cast(src, 'f32', dst, 'bf16');
  assertBits(dst, cases.map(([, h]) => h), 'f32 -> bf16');
  // every bf16 -> f32 -> bf16 round trip is the identity (except non-canonical NaN payloads)
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const wide = new Float32Array(65536), back = new Uint16Array(65536);
  portable.cast(all, 'bf16', wide, 'f32');
  assertBits(wide, Array.from(all, (h) => (h << 16) >>> 0), 'bf16 -> f32 is bits << 16');
  portable.cast(wide, 'f32', back, 'bf16');
  for (let h = 0; h < 65536; h++) {
    const nan = (h & 0x7fff) > 0x7f80;
    assert.equal(back[h], nan ? (h & 0x8000) | 0x7fc0 : h, `bf16 round trip 0x${h.toString(16)}`);
  }
});

test('cast f32 -> bf16: native and wasm equal portable bit for bit on every high half (vector body, tails, NaN payloads)', { skip: nativeSkip }, () => {
  // every 16-bit high half with low halves around the rounding points (0, below/at/above the tie, all ones, and one
  // random), at odd lengths and offsets so that vector bodies, tails and the parallel blocks' seams all see each case
  const lows = [0x0000, 0x7fff, 0x8000, 0x8001, 0xffff];
  const rng = new Rng(7);
  const bits = new Uint32Array(65536 * (lows.length + 1));
  let n = 0;
  for (let h = 0; h < 65536; h++) {
    for (const l of lows) bits[n++] = ((h << 16) | l) >>> 0;
    bits[n++] = ((h << 16) | rng.int(65536)) >>> 0;
  }
  const src = new Float32Array(bits.buffer);
  const want = new Uint16Array(src.length);
  portable.cast(src, 'f32', want, 'bf16');
  for (const be of [native, wasm]) {
    if (!be) continue;
    for (const [off, len] of [[0, src.length], [3, src.length - 8], [1, 15], [5, 17], [0, 16], [2, 33]]) {
      const got = new Uint16Array(len);
      be.cast(src.subarray(off, off + len), 'f32', got, 'bf16');
      for (let i = 0; i < len; i++) {
        if (got[i] !== want[off + i]) assert.fail(`f32 0x${bits[off + i].toString(16)} -> bf16 0x${got[i].toString(16)}, expected 0x${want[off + i].toString(16)} (offset ${off}, length ${len})`);
      }
    }
  }
});

test('cast: f16 edge bits and exhaustive round trip', () => {
  const cases: [number, number][] = [
    [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65519.99, 0x7bff], [65520, 0x7c00], [1e10, 0x7c00],
    [Infinity, 0x7c00], [-Infinity, 0xfc00],
    [2 ** -24, 0x0001], [2 ** -25, 0x0000], [1.5 * 2 ** -25, 0x0001], [3 * 2 ** -25, 0x0002], // smallest subnormal, ties to even
    [2 ** -14, 0x0400], [2 ** -14 - 2 ** -25, 0x0400], // largest subnormal rounds up into the smallest normal
    [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], // ties to even
    [0.1, 0x2e66], [-65504, 0xfbff],
  ];
  const src = Float32Array.from(cases.map(([v]) => v));
  const dst = new Uint16Array(src.length);
  portable.cast(src, 'f32', dst, 'f16');
  assertBits(dst, cases.map(([, h]) => h), 'f32 -> f16');
  // NaN: quiet bit set, sign and top payload bits kept (F16C)
  const nan = new Float32Array(3);
  new Uint32Array(nan.buffer).set([0x7fc00000, 0xff800001, 0x7fa00000]);
  const nh = new Uint16Array(3);
  portable.cast(nan, 'f32', nh, 'f16');
  assertBits(nh, [0x7e00, 0xfe00, 0x7f00], 'f32 NaN -> f16');
  // every half -> f32 -> half round trip, and the f32 value is the binary16 definition
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const wide = new Float32Array(65536), back = new Uint16Array(65536);
  portable.cast(all, 'f16', wide, 'f32');
  portable.cast(wide, 'f32', back, 'f16');
  for (let h = 0; h < 65536; h++) {
    const isNan = (h & 0x7fff) > 0x7c00;
    if (isNan) {
      assert.ok(Number.isNaN(wide[h]), `f16 0x${h.toString(16)} -> NaN`);
      assert.equal(back[h], h | 0x200, `f16 NaN round trip 0x${h.toString(16)} (quieted)`);
    } else {
      assert.ok(Object.is(wide[h], halfValue(h)), `f16 0x${h.toString(16)} -> ${halfValue(h)}; got ${wide[h]}`);
      assert.equal(back[h], h, `f16 round trip 0x${h.toString(16)}`);
    }
  }
});

test('cast: float -> int truncates and saturates, NaN -> 0', () => {
  const src = new Float32Array([1.9, -1.9, 0.5, -0.5, 3e9, -3e9, NaN, Infinity, -Infinity, 127.5, -128.5, 300]);
  const i32 = new Int32Array(src.length), i8 = new Int8Array(src.length);
  portable.cast(src, 'f32', i32, 'i32');
  portable.cast(src, 'f32', i8, 'i8');
  assert.deepEqual(Array.from(i32), [1, -1, 0, 0, 2147483647, -2147483648, 0, 2147483647, -2147483648, 127, -128, 300]);
  assert.deepEqual(Array.from(i8), [1, -1, 0, 0, 127, -128, 0, 127, -128, 127, -128, 127]);
  const big = new Int32Array([16777217, -16777219, 2147483647]);
  const f = new Float32Array(3);
  portable.cast(big, 'i32', f, 'f32');
  assert.deepEqual(Array.from(f), [16777216, -16777220, 2147483648]);
});

test('dropoutMask: kept fraction ~ 1 - p, scale 1/(1-p), deterministic per seed', () => {
  const n = 100_000;
  for (const p of [0.1, 0.5, 0.9]) {
    const m = new Float32Array(n);
    portable.dropoutMask(1234, p, m);
    const scale = Math.fround(1 / (1 - p));
    let kept = 0;
    for (const v of m) {
      if (v === scale) kept++;
      else assert.equal(v, 0);
    }
    const sd = Math.sqrt(n * p * (1 - p));
    assert.ok(Math.abs(kept - n * (1 - p)) < 5 * sd, `p=${p}: kept ${kept} of ${n}`);
    const again = new Float32Array(n);
    portable.dropoutMask(1234, p, again);
    assertBits(again, m, `p=${p} determinism`);
    const other = new Float32Array(n);
    portable.dropoutMask(1235, p, other);
    assert.ok(other.some((v, i) => v !== m[i]), 'another seed gives another mask');
  }
  const ones = new Float32Array(17);
  portable.dropoutMask(9, 0, ones);
  assert.ok(ones.every((v) => v === 1), 'p = 0 keeps everything with scale 1');
});

test('rope: inverse undoes the rotation', () => {
  const rng = new Rng(5);
  const [rows, T, D, rotDim] = [2, 6, 10, 8];
  const cos = new Float32Array(T * 4), sin = new Float32Array(T * 4);
  for (let i = 0; i < cos.length; i++) { const th = rng.uniform() * 6; cos[i] = Math.cos(th); sin[i] = Math.sin(th); }
  const x = randn(rng, rows * T * D);
  const y = new Float32Array(x.length), z = new Float32Array(x.length);
  portable.rope(x, cos, sin, rows, T, D, rotDim, false, y);
  portable.rope(y, cos, sin, rows, T, D, rotDim, true, z);
  assertClose(z, x, 1e-5, 1e-6, 'rope round trip');
});

test('alloc: zeroed buffers of the right class', () => {
  const kinds: [DType, Function][] = [['f32', Float32Array], ['bf16', Uint16Array], ['f16', Uint16Array], ['i32', Int32Array], ['i8', Int8Array]];
  for (const [dtype, cls] of kinds) {
    const a = portable.alloc(dtype, 5);
    assert.ok(a instanceof cls, dtype);
    assert.equal(a.length, 5);
    assert.ok(Array.from(a).every((v) => v === 0));
  }
  assert.equal(portable.name, 'portable');
  assert.equal(portable.numThreads(), 1);
  assert.equal(portable.describe(), 'portable (TypeScript, 1 thread)');
});
