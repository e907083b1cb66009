/**
 * Elementwise kernels on device arrays: unary and its backward, binary and where with broadcasting, axpby, affine,
 * fill, cast, stridedCopy, the dropout mask and rotary embeddings. Semantics as the portable backend's.
 */
import type { BinaryOp, DType, UnaryOp } from '../backend.js';
import { PER_WORD, type GpuArray } from './array.js';
import { Params, type GpuContext } from './device.js';
import { CONVERT, MATH, PARAMS, STRIDED, buf, byte, flatMain, groups256, half } from './wgsl.js';

const UNARY: Record<UnaryOp, string> = {
  neg: '-v', exp: 'exp(v)', log: 'log(v)', sqrt: 'sqrt(v)', rsqrt: '1.0 / sqrt(v)', tanh: 'tanh_(v)', sigmoid: 'sigmoid_(v)',
  relu: 'select(0.0, v, v > 0.0)', gelu: '0.5 * v * erfc_(-v * 0.70710678118654752)',
  gelu_tanh: 'v * sigmoid_(1.5957691216057308 * (v + 0.044715 * v * v * v))', silu: 'v * sigmoid_(v)',
  abs: 'abs(v)', square: 'v * v', reciprocal: '1.0 / v', sign: 'select(select(v, -1.0, v < 0.0), 1.0, v > 0.0)',
};

/** dx from v = x, w = y, g = dy. */
const UNARY_BACKWARD: Record<UnaryOp, string> = {
  neg: '-g', exp: 'g * w', log: 'g / v', sqrt: '(g * 0.5) / w', rsqrt: 'g * -0.5 * w * w * w',
  tanh: 'g * (1.0 - tanh_(v) * tanh_(v))', sigmoid: 'g * sigmoid_(v) * (1.0 - sigmoid_(v))', relu: 'select(0.0, g, v > 0.0)',
  gelu: 'g * (0.5 * erfc_(-v * 0.70710678118654752) + v * 0.3989422804014327 * exp(-0.5 * v * v))',
  gelu_tanh: 'g * geluTanhGrad(v)', silu: 'g * sigmoid_(v) * (1.0 + v * (1.0 - sigmoid_(v)))',
  abs: 'select(select(0.0, -g, v < 0.0), g, v > 0.0)', square: '2.0 * v * g', reciprocal: '-g * w * w', sign: '0.0',
};

const GELU_TANH_GRAD = /* wgsl */ `
fn geluTanhGrad(v: f32) -> f32 {
  // 0.5 (1 + tanh u) = s and 1 - tanh(u)^2 = 4 s (1 - s) with s = sigmoid(2u): no cancellation in the left tail
  let s = sigmoid_(1.5957691216057308 * (v + 0.044715 * v * v * v));
  let du = 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * v * v);
  return s + 2.0 * v * s * (1.0 - s) * du;
}`;

const BINARY: Record<BinaryOp, string> = {
  add: 'a + b', sub: 'a - b', mul: 'a * b', div: 'a / b', pow: 'powJs(a, b)', max: 'max(a, b)', min: 'min(a, b)',
  eq: 'select(0.0, 1.0, a == b)', gt: 'select(0.0, 1.0, a > b)', ge: 'select(0.0, 1.0, a >= b)',
  lt: 'select(0.0, 1.0, a < b)', le: 'select(0.0, 1.0, a <= b)',
};

/** Math.pow on f32: negative bases with integer exponents keep their sign; x^0 = 1. */
const POW = /* wgsl */ `
fn powJs(a: f32, b: f32) -> f32 {
  if (b == 0.0) { return 1.0; }
  if (a >= 0.0) { return pow(a, b); }
  if (floor(b) != b) { return nanF(); }
  let r = pow(-a, b);
  return select(r, -r, (abs(b) % 2.0) == 1.0);
}`;

export function unary(ctx: GpuContext, op: UnaryOp, x: GpuArray, out: GpuArray): void {
  const code = PARAMS + MATH + buf(1, 'x', 'f32') + buf(2, 'o', 'f32', true) +
    flatMain('pu(0u)', `let v = x[pu(1u) + i]; o[pu(2u) + i] = ${UNARY[op]};`);
  ctx.run(code, [{ arr: x }, { arr: out, write: true }], new Params().u32(out.length, x.offset, out.offset), groups256(out.length));
}

export function unaryBackward(ctx: GpuContext, op: UnaryOp, x: GpuArray, y: GpuArray, dy: GpuArray, dx: GpuArray): void {
  const code = PARAMS + MATH + GELU_TANH_GRAD + buf(1, 'x', 'f32') + buf(2, 'y', 'f32') + buf(3, 'dy', 'f32') + buf(4, 'dx', 'f32', true) +
    flatMain('pu(0u)', `let v = x[pu(1u) + i]; let w = y[pu(2u) + i]; let g = dy[pu(3u) + i]; dx[pu(4u) + i] = ${UNARY_BACKWARD[op]};`);
  ctx.run(code, [{ arr: x }, { arr: y }, { arr: dy }, { arr: dx, write: true }],
    new Params().u32(dx.length, x.offset, y.offset, dy.offset, dx.offset), groups256(dx.length));
}

/** Parameters of a broadcast kernel: n, nd, K offsets, then shape and K stride lists (see STRIDED). */
function stridedParams(shape: number[], arrays: GpuArray[], strides: number[][], out: GpuArray): Params {
  const n = shape.reduce((a, b) => a * b, 1);
  const p = new Params().u32(n, shape.length, out.offset, ...arrays.map((a) => a.offset));
  p.u32(...shape);
  for (const s of strides) p.i32(...s);
  return p;
}

export function binary(ctx: GpuContext, op: BinaryOp, a: GpuArray, aStrides: number[], b: GpuArray, bStrides: number[], shape: number[],
  out: GpuArray): void {
  const base = 5; // n, nd, outOff, aOff, bOff
  const code = PARAMS + STRIDED + POW + buf(1, 'A', 'f32') + buf(2, 'B', 'f32') + buf(3, 'o', 'f32', true) +
    flatMain('pu(0u)', `let nd = pu(1u);
  let a = A[i32(pu(3u)) + stridedOffset(i, nd, ${base}u, 0u)];
  let b = B[i32(pu(4u)) + stridedOffset(i, nd, ${base}u, 1u)];
  o[pu(2u) + i] = ${BINARY[op]};`);
  ctx.run(code, [{ arr: a }, { arr: b }, { arr: out, write: true }], stridedParams(shape, [a, b], [aStrides, bStrides], out), groups256(out.length));
}

export function where(ctx: GpuContext, cond: GpuArray, condStrides: number[], a: GpuArray, aStrides: number[], b: GpuArray,
  bStrides: number[], shape: number[], out: GpuArray): void {
  const base = 6;
  const code = PARAMS + STRIDED + buf(1, 'C', 'f32') + buf(2, 'A', 'f32') + buf(3, 'B', 'f32') + buf(4, 'o', 'f32', true) +
    flatMain('pu(0u)', `let nd = pu(1u);
  let c = C[i32(pu(3u)) + stridedOffset(i, nd, ${base}u, 0u)];
  let a = A[i32(pu(4u)) + stridedOffset(i, nd, ${base}u, 1u)];
  let b = B[i32(pu(5u)) + stridedOffset(i, nd, ${base}u, 2u)];
  o[pu(2u) + i] = select(b, a, c != 0.0);`);
  ctx.run(code, [{ arr: cond }, { arr: a }, { arr: b }, { arr: out, write: true }],
    stridedParams(shape, [cond, a, b], [condStrides, aStrides, bStrides], out), groups256(out.length));
}

export function axpby(ctx: GpuContext, alpha: number, x: GpuArray, beta: number, y: GpuArray, out: GpuArray): void {
  const code = PARAMS + buf(1, 'x', 'f32') + buf(2, 'y', 'f32') + buf(3, 'o', 'f32', true) +
    flatMain('pu(0u)', 'o[pu(3u) + i] = pf(4u) * x[pu(1u) + i] + pf(5u) * y[pu(2u) + i];');
  ctx.run(code, [{ arr: x }, { arr: y }, { arr: out, write: true }],
    new Params().u32(out.length, x.offset, y.offset, out.offset).f32(alpha, beta), groups256(out.length));
}

export function affine(ctx: GpuContext, x: GpuArray, scale: number, shift: number, out: GpuArray): void {
  const code = PARAMS + buf(1, 'x', 'f32') + buf(2, 'o', 'f32', true) +
    flatMain('pu(0u)', 'o[pu(2u) + i] = x[pu(1u) + i] * pf(3u) + pf(4u);');
  ctx.run(code, [{ arr: x }, { arr: out, write: true }], new Params().u32(out.length, x.offset, out.offset).f32(scale, shift),
    groups256(out.length));
}

export function fill(ctx: GpuContext, dst: GpuArray, value: number): void {
  const isInt = dst.dtype === 'i32';
  const code = PARAMS + buf(1, 'o', 'u32', true) + flatMain('pu(0u)', 'o[pu(1u) + i] = pu(2u);');
  const p = new Params().u32(dst.length, dst.offset);
  if (isInt) p.i32(value);
  else p.f32(value);
  ctx.run(code, [{ arr: dst, write: true }], p, groups256(dst.length));
}

/** WGSL: element i (offset included) of input `s` of `dtype` as f32 (`srcF32`) or as raw 32-bit bits (`srcBits`). */
function srcAccess(dtype: DType): string {
  switch (dtype) {
    case 'f32': return 'fn srcF32(i: u32) -> f32 { return bitcast<f32>(s[i]); }\nfn srcBits(i: u32) -> u32 { return s[i]; }\n';
    case 'i32': return 'fn srcF32(i: u32) -> f32 { return f32(bitcast<i32>(s[i])); }\nfn srcBits(i: u32) -> u32 { return s[i]; }\n';
    case 'bf16': return half('s') + 'fn srcF32(i: u32) -> f32 { return bf16ToF32(sHalf(i)); }\nfn srcBits(i: u32) -> u32 { return sHalf(i); }\n';
    case 'f16': return half('s') + 'fn srcF32(i: u32) -> f32 { return f16ToF32(sHalf(i)); }\nfn srcBits(i: u32) -> u32 { return sHalf(i); }\n';
    case 'i8': return byte('s') + 'fn srcF32(i: u32) -> f32 { return f32(sByte(i)); }\nfn srcBits(i: u32) -> u32 { return u32(sByte(i)) & 0xffu; }\n';
  }
}

/** WGSL: the bits of an f32 value stored as `dtype`. */
function toBits(dtype: DType, v: string): string {
  switch (dtype) {
    case 'f32': return `bitcast<u32>(${v})`;
    case 'bf16': return `f32ToBf16(${v})`;
    case 'f16': return `f32ToF16(${v})`;
    case 'i32': return `bitcast<u32>(truncSat(${v}, -2147483648.0, 2147483647.0))`;
    case 'i8': return `(bitcast<u32>(truncSat(${v}, -128.0, 127.0)) & 0xffu)`;
  }
}

const TRUNC_SAT = /* wgsl */ `
fn truncSat(v: f32, lo: f32, hi: f32) -> i32 {
  if (isNan(v)) { return 0; }
  if (v <= lo) { return i32(lo); }
  if (v >= hi) { return select(i32(hi), 2147483647, hi > 2147483000.0); }
  return i32(trunc(v));
}`;

/**
 * A kernel over the 32-bit words of the output: each invocation assembles the elements of one output word (1, 2
 * or 4 of them), keeping the bits of elements outside [offset, offset + n) that share the word. `elem(j)` is WGSL
 * for the bits of output element j (0-based, without the output offset).
 */
function wordKernel(dst: DType, decls: string, elem: string): string {
  const per = PER_WORD[dst];
  const bits = 32 / per;
  const mask = per === 1 ? '0xffffffffu' : `${(1 << bits) - 1}u`;
  return PARAMS + CONVERT + TRUNC_SAT + decls + `
const PER: u32 = ${per}u;
fn elemBits(j: u32) -> u32 { return ${elem}; }
` + flatMain('pu(0u)', `
  // p: nwords, n, dstOff, ...
  let n = pu(1u);
  let off = pu(2u);
  let w = off / PER + i;
  var word = select(0u, o[w], PER > 1u);
  for (var k = 0u; k < PER; k = k + 1u) {
    let e = w * PER + k;
    if (e < off || e >= off + n) { continue; }
    let sh = k * ${bits}u;
    word = (word & ~(${mask} << sh)) | ((elemBits(e - off) & ${mask}) << sh);
  }
  o[w] = word;`);
}

function wordParams(dst: GpuArray, ...rest: number[]): [Params, number] {
  const per = PER_WORD[dst.dtype];
  const nwords = dst.length === 0 ? 0 : Math.floor((dst.offset + dst.length - 1) / per) - Math.floor(dst.offset / per) + 1;
  return [new Params().u32(nwords, dst.length, dst.offset, ...rest), nwords];
}

export function cast(ctx: GpuContext, src: GpuArray, srcDtype: DType, dst: GpuArray, dstDtype: DType): void {
  if (src.length !== dst.length) throw new RangeError(`cast: src has ${src.length} elements but dst has ${dst.length}; expected equal lengths`);
  const intPair = (srcDtype === 'i32' || srcDtype === 'i8') && (dstDtype === 'i32' || dstDtype === 'i8');
  const value = srcDtype === dstDtype ? 'srcBits(pu(3u) + j)'
    : intPair ? (dstDtype === 'i8' ? 'u32(clamp(bitcast<i32>(srcBits(pu(3u) + j)), -128, 127)) & 0xffu' : `bitcast<u32>(${srcDtype === 'i8' ? 'sByte(pu(3u) + j)' : 'bitcast<i32>(srcBits(pu(3u) + j))'})`)
    : toBits(dstDtype, 'srcF32(pu(3u) + j)');
  const code = wordKernel(dstDtype, buf(1, 's', 'u32') + buf(2, 'o', 'u32', true) + srcAccess(srcDtype), value);
  const [p, nwords] = wordParams(dst, src.offset);
  ctx.run(code, [{ arr: src }, { arr: dst, write: true }], p, groups256(nwords));
}

/** Copies the strided view of src into dst (contiguous, or at dstStrides), any dtype. */
export function stridedCopy(ctx: GpuContext, src: GpuArray, shape: number[], strides: number[], dst: GpuArray, dstStrides?: number[]): void {
  const nd = shape.length;
  const n = shape.reduce((a, b) => a * b, 1);
  if (dstStrides) {
    // scattered writes: one invocation per element
    const per = PER_WORD[dst.dtype];
    if (per !== 1) {
      // 16/8-bit elements share words: clear then set each element's bits with atomics (disjoint bits, no race)
      const bits = 32 / per, mask = `${(1 << bits) - 1}u`;
      const code = PARAMS + CONVERT + STRIDED + buf(1, 's', 'u32') + srcAccess(src.dtype) +
        '@group(0) @binding(2) var<storage, read_write> o: array<atomic<u32>>;\n' + flatMain('pu(0u)', `let nd = pu(1u);
  let si = u32(i32(pu(3u)) + stridedOffset(i, nd, 4u, 0u));
  let di = u32(i32(pu(2u)) + stridedOffset(i, nd, 4u, 1u));
  let sh = (di % ${per}u) * ${bits}u;
  atomicAnd(&o[di / ${per}u], ~(${mask} << sh));
  atomicOr(&o[di / ${per}u], (srcBits(si) & ${mask}) << sh);`);
      const p = new Params().u32(n, nd, dst.offset, src.offset).u32(...shape).i32(...strides).i32(...dstStrides);
      ctx.run(code, [{ arr: src }, { arr: dst, write: true }], p, groups256(n));
      return;
    }
    const code = PARAMS + STRIDED + buf(1, 's', 'u32') + buf(2, 'o', 'u32', true) +
      flatMain('pu(0u)', `let nd = pu(1u);
  let si = i32(pu(3u)) + stridedOffset(i, nd, 4u, 0u);
  let di = i32(pu(2u)) + stridedOffset(i, nd, 4u, 1u);
  o[di] = s[si];`);
    const p = new Params().u32(n, nd, dst.offset, src.offset).u32(...shape).i32(...strides).i32(...dstStrides);
    ctx.run(code, [{ arr: src }, { arr: dst, write: true }], p, groups256(n));
    return;
  }
  if (dst.length !== n) throw new RangeError(`stridedCopy: dst has ${dst.length} elements; the view has ${n}`);
  const value = 'srcBits(u32(i32(pu(3u)) + stridedOffset(j, pu(4u), 5u, 0u)))';
  const code = wordKernel(dst.dtype, buf(1, 's', 'u32') + buf(2, 'o', 'u32', true) + STRIDED + srcAccess(src.dtype), value);
  const [p, nwords] = wordParams(dst, src.offset, nd);
  p.u32(...shape).i32(...strides);
  ctx.run(code, [{ arr: src }, { arr: dst, write: true }], p, groups256(nwords));
}

export function dropoutMask(ctx: GpuContext, seed: number, prob: number, mask: GpuArray): void {
  // u = (h >> 8) / 2^24 >= p  <=>  (h >> 8) >= ceil(p * 2^24): exact in integers
  const thr = Math.min(2 ** 24, Math.max(0, Math.ceil(prob * 16777216)));
  const key = mixJs((seed + 0x9e3779b9) >>> 0);
  const code = PARAMS + MATH + buf(1, 'o', 'f32', true) +
    flatMain('pu(0u)', 'o[pu(1u) + i] = select(0.0, pf(4u), (mix32(i ^ pu(2u)) >> 8u) >= pu(3u));');
  ctx.run(code, [{ arr: mask, write: true }], new Params().u32(mask.length, mask.offset, key, thr).f32(Math.fround(1 / (1 - prob))),
    groups256(mask.length));
}

function mixJs(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

export function rope(ctx: GpuContext, x: GpuArray, cos: GpuArray, sin: GpuArray, rows: number, T: number, D: number, rotDim: number,
  inverse: boolean, out: GpuArray): void {
  const n = rows * T * D;
  const code = PARAMS + buf(1, 'x', 'f32') + buf(2, 'C', 'f32') + buf(3, 'S', 'f32') + buf(4, 'o', 'f32', true) +
    flatMain('pu(0u)', `
  let T = pu(1u); let D = pu(2u); let half = pu(3u) / 2u; let sg = pf(4u);
  let xo = pu(5u); let co = pu(6u); let so = pu(7u); let oo = pu(8u);
  let d = i % D;
  let t = (i / D) % T;
  if (d >= 2u * half) { o[oo + i] = x[xo + i]; return; }
  let k = d % half;
  let c = C[co + t * half + k];
  let s = sg * S[so + t * half + k];
  if (d < half) { o[oo + i] = x[xo + i] * c - x[xo + i + half] * s; }
  else { o[oo + i] = x[xo + i] * c + x[xo + i - half] * s; }`);
  ctx.run(code, [{ arr: x }, { arr: cos }, { arr: sin }, { arr: out, write: true }],
    new Params().u32(n, T, D, rotDim).f32(inverse ? -1 : 1).u32(x.offset, cos.offset, sin.offset, out.offset), groups256(n));
}
