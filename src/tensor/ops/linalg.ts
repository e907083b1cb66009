/**
 * Matrix products: `matmul` (batched, broadcast, transposed views without copies) and `linear`
 * (x @ W^T + b, the layer's fused form), both under the autocast policy (bf16 operands, f32 results).
 */
import { backend } from '../../backend/index.js';
import { DTypeError, ShapeError, fmtShape } from '../../errors.js';
import { isDeviceStorage, releaseBuffer, uninitF32, uninitU16, zerosF32 } from '../alloc.js';
import { Tensor } from '../tensor.js';
import { isGradEnabled, record } from '../autograd.js';
import { releasable } from './elementwise.js';
import { broadcastShapes, numel } from '../shape.js';
import { autocastDType, type ComputeDType } from '../precision.js';
import { contiguous, reshape } from './movement.js';
import { cachedCopy, isCacheable, trainableCopy } from '../versions.js';
import { sumTo } from './reduce.js';

/** A matrix operand as the kernel reads it: logical (rows, cols), stored transposed when `trans`. */
export interface Operand {
  buf: Float32Array | Uint16Array | Int8Array;
  /**
   * 'i8' only for a quantised weight (`linearInt8`), with one scale per stored row; 'nf4' only for a 4-bit one
   * (`linearNf4`: packed codes, `scales` = the absmax of every 64 elements).
   */
  dtype: 'f32' | 'bf16' | 'i8' | 'nf4';
  scales?: Float32Array;
  rows: number;
  cols: number;
  trans: boolean;
  batchStride: number;
  /**
   * True when `buf` is a copy that `prepare` made for this operand alone (a bf16 cast of an activation, a gradient
   * or a trainable weight; never a kept copy of a frozen weight, never the tensor's own storage): whoever holds the
   * operand last hands it back with `releaseOperands`.
   */
  fresh?: boolean;
}

export const transposed = (o: Operand): Operand => ({ ...o, rows: o.cols, cols: o.rows, trans: !o.trans });

/**
 * Returns the fresh copies among `ops` to the pool (alloc.ts), each buffer once, except those that an operand in
 * `keep` still uses. Call it when nothing will multiply these operands again: right after the forward product for
 * the ones no gradient reads, at the end of the backward closure for its own gradient's cast, and on the graph's
 * last backward pass (`last`) for the ones the closure kept.
 */
export function releaseOperands(ops: (Operand | null)[], keep: (Operand | null)[] = []): void {
  for (let i = 0; i < ops.length; i++) {
    const o = ops[i];
    if (!o?.fresh) continue;
    let seen = false;
    for (let j = 0; j < i && !seen; j++) seen = ops[j]?.buf === o.buf;
    for (const k of keep) if (k?.buf === o.buf) seen = true;
    if (!seen) releaseBuffer(o.buf as Float32Array | Uint16Array);
  }
}


export function checkFloat(t: Tensor, op: string, arg: string): void {
  if (t.dtype === 'i32' || t.dtype === 'i8') {
    throw new DTypeError(`Argument '${arg}' passed to '${op}' has dtype ${t.dtype}; expected a float tensor (f32, bf16, f16)`);
  }
}

/**
 * Reads the last two dims of `t` as a matrix operand with one uniform batch stride over `batch` matrices
 * (0 when t has no batch dims of its own). Transposed views pass as a flag; other layouts are copied once.
 */
export function prepare(t: Tensor, batch: number, compute: ComputeDType): Operand {
  const nd = t.ndim;
  const R = t.shape[nd - 2], C = t.shape[nd - 1];
  const sR = t.strides[nd - 2], sC = t.strides[nd - 1];
  const own = numel(t.shape.slice(0, nd - 2));
  let trans: boolean | null = null;
  if (sC === 1 && (sR === C || R === 1)) trans = false;
  else if (sR === 1 && (sC === R || C === 1)) trans = true;
  let uniform = trans !== null;
  if (uniform) {
    let expect = R * C;
    for (let i = nd - 3; i >= 0; i--) {
      if (t.shape[i] !== 1 && t.strides[i] !== expect) { uniform = false; break; }
      expect *= t.shape[i];
    }
  }
  let src: Tensor = t;
  if (!uniform) {
    src = contiguous(t);
    trans = false;
  }
  const count = own * R * C;
  let buf = src.storage.subarray(src.offset, src.offset + count) as Float32Array | Uint16Array;
  let dtype: 'f32' | 'bf16';
  let fresh = false;
  if (src.dtype === 'bf16') {
    dtype = 'bf16';
  } else if (src.dtype === 'f16') {
    const f = zerosF32(count);
    backend().cast(buf, 'f16', f, 'f32');
    buf = f;
    dtype = 'f32';
  } else {
    dtype = 'f32';
  }
  if (dtype === 'f32' && compute !== 'f32') {
    // a frozen weight's copy is kept until its storage is next written (versions.ts); other operands are cast each time
    const keep = src === t && src.dtype === 'f32' && !t.requiresGrad && isCacheable(src.storage);
    const be = backend();
    // Where bf16 products widen their operands to f32 (no bf16 hardware), an activation or a gradient is rounded to
    // bf16 precision in f32 storage, in one pass: the kernel multiplies it as it is (sgemm), the same values as a
    // bf16 copy widened inside the product. Weights (a kept frozen copy, a parameter) stay bf16, half the memory
    // while held for the backward pass; the product widens them a block at a time (matmulLowp). Small parameters
    // (LoRA's factors) are rounded like activations: their products then take the f32 kernels' skinny path.
    const trainable = t.requiresGrad && !t.node, parameter = trainable && count > SMALL_PARAMETER;
    if (compute === 'bf16' && !keep && !parameter && !be.nativeBf16 && be.roundBf16 && !isDeviceStorage(buf)) {
      const f = uninitF32(count);
      be.roundBf16(buf as Float32Array, f);
      buf = f; // stays f32
      fresh = true;
    } else {
      const lowp: (s: Float32Array) => Float32Array | Uint16Array = compute === 'bf16' ? toBf16 : roundF16;
      // a trainable weight's copy written by the optimizer with its last update (versions.ts), kept like a frozen one's;
      // with bf16 products in hardware a small one's too (the block workload's 256 x 256 projection was cast each step)
      const made = compute === 'bf16' && (be.nativeBf16 ? trainable : parameter) && src === t && be.optimizerWritesBf16 && !isDeviceStorage(buf)
        ? trainableCopy(buf as Float32Array, toBf16) : null;
      buf = made ?? (keep ? cachedCopy(buf as Float32Array, compute, lowp) : lowp(buf as Float32Array));
      fresh = !keep && !made;
      if (compute === 'bf16') dtype = 'bf16';
    }
  }
  return { buf, dtype, rows: R, cols: C, trans: trans as boolean, batchStride: own === 1 && batch > 1 ? 0 : R * C, fresh };
}

/** Parameters up to this many elements reach the widening bf16 product rounded in f32 storage (see `prepare`). */
const SMALL_PARAMETER = 1 << 16;

/** A bf16 copy of f32 values (the cast every bf16 operand gets). */
export function toBf16(src: Float32Array): Uint16Array {
  const h = uninitU16(src.length);
  backend().cast(src, 'f32', h, 'bf16');
  return h;
}

/** f32 values rounded through f16 (f16 autocast: the kernels multiply f32). */
function roundF16(src: Float32Array): Float32Array {
  const h = new Uint16Array(src.length);
  backend().cast(src, 'f32', h, 'f16');
  const f = new Float32Array(src.length);
  backend().cast(h, 'f16', f, 'f32');
  return f;
}

/**
 * out (batch, a.rows, b.cols) = alpha * a @ b + beta * out. An f32 `a` against one bf16 or int8 matrix `b` (a
 * frozen weight) goes to the backend's blocked-widening product, so no f32 copy of the weight is made; other
 * mixed dtypes are brought to f32.
 */
export function gemm(a: Operand, b: Operand, batch: number, out: Float32Array, alpha = 1, beta = 0, bias: Float32Array | null = null): Float32Array {
  if (bias && a.dtype !== b.dtype) {
    // the mixed-dtype kernels take no bias: out starts as it, the product accumulates (beta = 1)
    backend().stridedCopy(bias, [batch * a.rows, b.cols], [0, 1], out);
    bias = null;
    beta = 1;
  }
  // an int8 or NF4 weight meets f32 activations: a bf16 one (an activation made in bf16 for its product) is widened first
  const a0 = a, b0 = b;
  if ((b.dtype === 'i8' || b.dtype === 'nf4') && a.dtype === 'bf16') a = widened(a);
  if (a.dtype === 'f32' && b.dtype !== 'f32' && (batch === 1 || b.batchStride === 0)) {
    backend().matmulLowp({
      a: a.buf as Float32Array, b: b.buf as Uint16Array | Int8Array, bDtype: b.dtype, scales: b.scales ?? null, out, batch,
      M: a.rows, N: b.cols, K: a.cols, transA: a.trans, transB: b.trans, strideA: a.batchStride, alpha, beta,
    });
  } else {
    if (a.dtype !== b.dtype) {
      a = widened(a);
      b = widened(b);
    }
    backend().matmul({
      a: a.buf as Float32Array | Uint16Array, b: b.buf as Float32Array | Uint16Array, out, dtype: a.dtype as 'f32' | 'bf16',
      batch, M: a.rows, N: b.cols, K: a.cols,
      transA: a.trans, transB: b.trans, strideA: a.batchStride, strideB: b.batchStride, alpha, beta, bias,
    });
  }
  // the widened copies are this call's own
  if (a !== a0) releaseBuffer(a.buf as Float32Array);
  if (b !== b0) releaseBuffer(b.buf as Float32Array);
  return out;
}

/** A bf16 operand widened to f32 (exact); f32 ones pass; int8 ones are refused (they take the low-precision kernels). */
function widened(o: Operand): Operand {
  if (o.dtype === 'f32') return o;
  if (o.dtype === 'i8' || o.dtype === 'nf4') throw new DTypeError(`an ${o.dtype === 'i8' ? 'int8' : 'NF4'} weight multiplies only f32 activations, one matrix at a time`);
  const f = uninitF32(o.buf.length);
  backend().cast(o.buf, 'bf16', f, 'f32');
  return { ...o, buf: f, dtype: 'f32', fresh: false };
}

/** The gradient (a dense f32 tensor of logical (rows, cols) per batch) as an operand. */
function gradOperand(g: Tensor, batch: number, compute: ComputeDType): Operand {
  return prepare(g, batch, compute);
}

/**
 * x W^T + b into a fresh (rows, nOut) buffer. The backend adds the bias (oneDNN's bf16 product in its epilogue;
 * elsewhere out starts as the bias and the product accumulates onto it).
 */
export function affine(ox: Operand, ow: Operand, b: Tensor | null, rows: number, nOut: number): Float32Array {
  return gemm(ox, transposed(ow), 1, uninitF32(rows * nOut), 1, 0, b ? b.f32() : null);
}

/** Whether a product of these operands can write its output in bf16 (Backend.matmulToBf16): both bf16, on the CPU. */
export function toBf16Able(a: Operand, b: Operand): boolean {
  return !!backend().matmulToBf16 && a.dtype === 'bf16' && b.dtype === 'bf16' && !isDeviceStorage(a.buf);
}

/** alpha * a @ b (+ bias) rounded to bf16 into a fresh buffer (Backend.matmulToBf16; toBf16Able operands). */
export function gemmToBf16(a: Operand, b: Operand, batch: number, alpha = 1, bias: Float32Array | null = null): Uint16Array {
  const out = uninitU16(batch * a.rows * b.cols);
  backend().matmulToBf16!({
    a: a.buf as Uint16Array, b: b.buf as Uint16Array, out, batch, M: a.rows, N: b.cols, K: a.cols,
    transA: a.trans, transB: b.trans, strideA: a.batchStride, strideB: b.batchStride, alpha, bias,
  });
  return out;
}

/**
 * A Linear's output gradient gy as its products' operand, and its bias gradient where `needGb`. Where the operand is a
 * bf16 copy of an f32 gy (bf16 autocast with bf16 products in hardware: `prepare` would cast it), the copy and the
 * column sums come from one pass over gy (Backend.castColumnSums, the bits of the cast and the sum apart).
 */
function gradAndBiasGrad(gy: Tensor, rows: number, nOut: number, compute: ComputeDType, needGb: boolean): { g: Operand; gb: Tensor | null } {
  const be = backend();
  if (needGb && compute === 'bf16' && be.nativeBf16 && be.castColumnSums && gy.dtype === 'f32' && gy.isContiguous &&
      !gy.requiresGrad && !isDeviceStorage(gy.storage) && !isCacheable(gy.storage)) {
    const buf = uninitU16(rows * nOut), sums = zerosF32(nOut);
    be.castColumnSums(gy.f32(), rows, nOut, buf, sums);
    return { g: { buf, dtype: 'bf16', rows, cols: nOut, trans: false, batchStride: rows * nOut, fresh: true }, gb: new Tensor(sums, 'f32', [nOut]) };
  }
  const g = gradOperand(reshape(gy, [rows, nOut]), 1, compute);
  // the bias gradient while gy is still in cache from the cast that has just read it, not after the products
  return { g, gb: needGb ? biasGrad(gy, rows, nOut) : null };
}

/** The bias gradient of a linear layer: the column sums of gy viewed as (rows, nOut), f32 or bf16. */
export function biasGrad(gy: Tensor, rows: number, nOut: number): Tensor {
  const s = zerosF32(nOut);
  const be = backend();
  if (gy.dtype === 'bf16' && gy.isContiguous && be.sumRowsBf16 && !isDeviceStorage(gy.storage)) {
    be.sumRowsBf16(gy.dense() as Uint16Array, rows, nOut, s);
  } else {
    be.reduce('sum', gy.f32(), 1, rows, nOut, s);
  }
  return new Tensor(s, 'f32', [nOut]);
}

/**
 * Batched matrix product with NumPy broadcasting of the batch dims: (..., M, K) @ (..., K, N) -> (..., M, N).
 * 1-D operands are promoted as in NumPy. `alpha` scales the product (attention's 1/sqrt(d) at no cost).
 */
export function matmul(a: Tensor, b: Tensor, alpha = 1): Tensor {
  checkFloat(a, 'matmul', 'a');
  checkFloat(b, 'matmul', 'b');
  if (a.ndim === 0 || b.ndim === 0) throw new ShapeError(`'matmul' needs operands with at least 1 dim; got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
  if (a.ndim === 1) return reshape(matmul(reshape(a, [1, a.shape[0]]), b, alpha), b.ndim === 1 ? [] : [...b.shape.slice(0, -2), b.shape[b.ndim - 1]]);
  if (b.ndim === 1) return reshape(matmul(a, reshape(b, [b.shape[0], 1]), alpha), a.shape.slice(0, -1));
  const M = a.shape[a.ndim - 2], K = a.shape[a.ndim - 1];
  const K2 = b.shape[b.ndim - 2], N = b.shape[b.ndim - 1];
  if (K !== K2) {
    throw new ShapeError(`Argument 'b' passed to 'matmul' has shape ${fmtShape(b.shape)}; expected [.., ${K}, N] to match 'a' of shape ${fmtShape(a.shape)}`);
  }
  const compute = autocastDType();
  // A 2-D right operand folds a's batch into its rows: one large product instead of many small ones.
  if (b.ndim === 2 && a.ndim > 2) {
    const a2 = reshape(a, [-1, K]);
    const y2 = matmul(a2, b, alpha);
    return reshape(y2, [...a.shape.slice(0, -1), N]);
  }
  const aB = a.shape.slice(0, -2), bB = b.shape.slice(0, -2);
  const batchShape = broadcastShapes(aB, bB, 'matmul');
  const batch = numel(batchShape);
  const fullA = aB.length === batchShape.length && aB.every((d, i) => d === batchShape[i]) || numel(aB) === 1;
  const fullB = bB.length === batchShape.length && bB.every((d, i) => d === batchShape[i]) || numel(bB) === 1;
  const A = fullA ? a : contiguous(a.expand([...batchShape, M, K]));
  const B = fullB ? b : contiguous(b.expand([...batchShape, K, N]));
  const oa = prepare(A, batch, compute), ob = prepare(B, batch, compute);
  const out = gemm(oa, ob, batch, uninitF32(batch * M * N), alpha);
  const y = new Tensor(out, 'f32', [...batchShape, M, N]);
  // Each gradient keeps only the other operand: a product with a frozen matrix does not hold its input.
  const recording = isGradEnabled() && (a.requiresGrad || b.requiresGrad);
  const forA = recording && a.requiresGrad ? ob : null, forB = recording && b.requiresGrad ? oa : null;
  releaseOperands([oa, ob], [forA, forB]);
  if (!recording) return y;
  return record('matmul', [a, b], y, matmulBackward({
    batch, batchShape, M, K, N, alpha, compute, aShape: [...a.shape], bShape: [...b.shape],
    forA, forB: forB ? { oa: forB, A, broadcast: ob.batchStride === 0 } : null,
  }));
}

function matmulBackward(s: {
  batch: number; batchShape: number[]; M: number; K: number; N: number; alpha: number; compute: ComputeDType;
  aShape: number[]; bShape: number[]; forA: Operand | null; forB: { oa: Operand; A: Tensor; broadcast: boolean } | null;
}): (gy: Tensor, last?: boolean) => (Tensor | null)[] {
  const { batch, batchShape, M, K, N, alpha, compute } = s;
  return (gy, last) => {
    const g = gradOperand(gy, batch, compute);
    let ga: Tensor | null = null, gb: Tensor | null = null;
    if (s.forA) {
      // dA = alpha * dY @ B^T
      const d = gemm(g, transposed(s.forA), batch, uninitF32(batch * M * K), alpha);
      ga = sumTo(new Tensor(d, 'f32', [...batchShape, M, K]), s.aShape);
    }
    if (s.forB) {
      const { oa, A, broadcast } = s.forB;
      // dB = alpha * A^T @ dY; a broadcast B sums its gradient over the batch
      if (batch > 1 && broadcast) {
        // B was broadcast over the batch: dB = sum_i A_i^T @ G_i = (A stacked by rows)^T @ (G stacked by rows).
        const dense = (o: Operand, t: () => Tensor): Operand => (o.trans || o.batchStride === 0 ? prepare(contiguous(t()), batch, compute) : o);
        const sa = dense(oa, () => A.expand([...batchShape, M, K]));
        const sg = dense(g, () => gy);
        const d = gemm(transposed({ ...sa, rows: batch * M, batchStride: 0 }), { ...sg, rows: batch * M, batchStride: 0 }, 1,
          uninitF32(K * N), alpha);
        releaseOperands([sa, sg], [oa, g]);
        gb = reshape(new Tensor(d, 'f32', [K, N]), [...s.bShape]);
      } else {
        const d = gemm(transposed(oa), g, batch, uninitF32(batch * K * N), alpha);
        gb = sumTo(new Tensor(d, 'f32', [...batchShape, K, N]), s.bShape);
      }
    }
    releaseOperands([g]);
    if (last) releaseOperands([s.forA, s.forB?.oa ?? null]);
    return [ga, gb];
  };
}

/** Options of the products that read an activation x (linear, loraLinear). */
export interface ConsumeOptions {
  /**
   * The caller reads x no more and hands it to this op alone: where x's buffer may go (see `releasable`), it goes back
   * to the pool once read for the last time (after the forward pass when the op reads a copy of x, else after the
   * graph's last backward pass). The same bits either way.
   */
  consume?: boolean;
}

/**
 * Takes over x's buffer for a consuming op (ConsumeOptions): `ox` is the operand made from x. A copy (fresh): x's
 * own buffer is done with, and goes now. x's storage itself: the operand becomes the op's own, handed back with
 * the op's other operands (releaseOperands).
 */
export function takeConsumed(x: Tensor, ox: Operand, opts: ConsumeOptions): void {
  if (!opts.consume || !releasable(x)) return;
  const s = x.storage as Float32Array | Uint16Array;
  if (ox.buf.buffer === s.buffer) {
    if (ox.buf.byteLength === s.byteLength) ox.fresh = true; // x's whole storage (a view of it)
  } else if (ox.fresh) releaseBuffer(s);
}

/** Options of `linear`. */
export interface LinearOptions extends ConsumeOptions {
  /**
   * The caller's readers take a bf16 y as well as an f32 one (an MLP's first Linear, read by its activation alone):
   * under bf16 autocast, where the backend writes products in bf16 (Backend.matmulToBf16), y is made in bf16, as
   * PyTorch's autocast makes it: the product rounded once, half the bytes written and read. Elsewhere y is f32.
   */
  bf16Output?: boolean;
}

/**
 * y = x @ W^T + b for x (..., in), W (out, in), b (out) or null: the Linear layer's product with the bias
 * added by the GEMM itself (beta = 1 over a broadcast bias). The gradient of a bf16 x is bf16 where the backend
 * writes it (PyTorch's rule: a gradient has its tensor's dtype): x is then a bf16 activation, whose backward pass
 * reads bf16 (elementwise.ts unaryForBf16Product).
 */
export function linear(x: Tensor, W: Tensor, b: Tensor | null, opts: LinearOptions = {}): Tensor {
  checkFloat(x, 'linear', 'x');
  checkFloat(W, 'linear', 'weight');
  if (W.ndim !== 2) throw new ShapeError(`Argument 'weight' passed to 'linear' has shape ${fmtShape(W.shape)}; expected [out, in]`);
  const [nOut, nIn] = W.shape;
  if (x.ndim < 1 || x.shape[x.ndim - 1] !== nIn) {
    throw new ShapeError(`Argument 'x' passed to 'linear' has shape ${fmtShape(x.shape)}; expected [.., ${nIn}] to match weight ${fmtShape(W.shape)}`);
  }
  if (b && (b.ndim !== 1 || b.shape[0] !== nOut)) {
    throw new ShapeError(`Argument 'bias' passed to 'linear' has shape ${fmtShape(b.shape)}; expected [${nOut}]`);
  }
  const compute = autocastDType();
  const rows = x.size / nIn;
  const x2 = x.ndim === 2 ? x : reshape(x, [rows, nIn]);
  const ox = prepare(x2, 1, compute);
  const ow = prepare(W, 1, compute);
  const yShape = [...x.shape.slice(0, -1), nOut];
  const y = opts.bf16Output && compute === 'bf16' && toBf16Able(ox, ow)
    ? new Tensor(gemmToBf16(ox, transposed(ow), 1, 1, b ? b.f32() : null), 'bf16', yShape)
    : new Tensor(affine(ox, ow, b, rows, nOut), 'f32', yShape);
  takeConsumed(x, ox, opts);
  const inputs = b ? [x, W, b] : [x, W];
  if (!isGradEnabled() || !inputs.some((t) => t.requiresGrad)) {
    releaseOperands([ox, ow]);
    return y;
  }
  // The backward pass keeps the input only when the weight learns: a frozen Linear (LoRA's base, a frozen
  // encoder) needs just W for dx, so its input activation is not held until backward.
  const xShape = [...x.shape], needGx = x.requiresGrad, needGw = W.requiresGrad, needGb = !!b && b.requiresGrad;
  const xBf16 = x.dtype === 'bf16' && compute === 'bf16';
  const savedX = needGw ? ox : null;
  const savedW = needGx ? ow : null;
  releaseOperands([ox, ow], [savedX, savedW]);
  return record('linear', inputs, y, (gy, last) => {
    const { g, gb } = gradAndBiasGrad(gy, rows, nOut, compute, needGb);
    const gx = !savedW ? null : xBf16 && toBf16Able(g, savedW)
      ? new Tensor(gemmToBf16(g, savedW, 1), 'bf16', xShape)
      : new Tensor(gemm(g, savedW, 1, uninitF32(rows * nIn)), 'f32', xShape);
    const gw = savedX ? new Tensor(gemm(transposed(g), savedX, 1, uninitF32(nOut * nIn)), 'f32', [nOut, nIn]) : null;
    releaseOperands([g]);
    if (last) releaseOperands([savedX, savedW]);
    return b ? [gx, gw, gb] : [gx, gw];
  });
}

/**
 * y + alpha * (x @ W^T) in one GEMM (beta = 1 over a copy of y): the LoRA update added to the base output
 * without separate scale and add passes. x (..., in), W (out, in), y (..., out).
 */
export function addLinear(y: Tensor, x: Tensor, W: Tensor, alpha = 1, opts: { inPlace?: boolean } = {}): Tensor {
  checkFloat(x, 'addLinear', 'x');
  const [nOut, nIn] = W.shape;
  if (W.ndim !== 2 || x.shape[x.ndim - 1] !== nIn || y.shape[y.ndim - 1] !== nOut || y.size / nOut !== x.size / nIn) {
    throw new ShapeError(`'addLinear' needs y (.., ${nOut}) and x (.., ${nIn}) with the same rows for W ${fmtShape(W.shape)}; got y ${fmtShape(y.shape)}, x ${fmtShape(x.shape)}`);
  }
  const compute = autocastDType();
  const rows = x.size / nIn;
  const ox = prepare(x.ndim === 2 ? x : reshape(x, [rows, nIn]), 1, compute);
  const ow = prepare(W, 1, compute);
  // inPlace: the caller owns y (a fresh layer output nothing else reads), so the update accumulates into its
  // buffer and no second activation of that size is kept for the backward pass.
  const own = opts.inPlace && y.dtype === 'f32' && y.spansStorage;
  const out = own ? (y.storage as Float32Array) : uninitF32(rows * nOut);
  if (!own) {
    const yd = y.f32();
    if (isDeviceStorage(out)) backend().stridedCopy(yd, [yd.length], [1], out);
    else out.set(yd);
  }
  gemm(ox, transposed(ow), 1, out, alpha, 1);
  const result = new Tensor(out, 'f32', [...y.shape]);
  const recording = isGradEnabled() && (y.requiresGrad || x.requiresGrad || W.requiresGrad);
  const forX = recording && x.requiresGrad ? ow : null, forW = recording && W.requiresGrad ? ox : null;
  releaseOperands([ox, ow], [forX, forW]);
  if (!recording) return result;
  // The gradients read W (for x's) and x (for W's), never y: y (a layer's whole output) is not kept for them.
  return record('addLinear', [y, x, W], result, addLinearBackward({
    rows, nIn, nOut, alpha, compute, needY: y.requiresGrad, xShape: [...x.shape], forX, forW,
  }));
}
function addLinearBackward(s: {
  rows: number; nIn: number; nOut: number; alpha: number; compute: ComputeDType; needY: boolean; xShape: number[];
  forX: Operand | null; forW: Operand | null;
}): (gy: Tensor, last?: boolean) => (Tensor | null)[] {
  const { rows, nIn, nOut, alpha, compute } = s;
  return (gy, last) => {
    const g = gradOperand(reshape(gy, [rows, nOut]), 1, compute);
    const gx = s.forX ? new Tensor(gemm(g, s.forX, 1, uninitF32(rows * nIn), alpha), 'f32', s.xShape) : null;
    const gw = s.forW ? new Tensor(gemm(transposed(g), s.forW, 1, uninitF32(nOut * nIn), alpha), 'f32', [nOut, nIn]) : null;
    releaseOperands([g]);
    if (last) releaseOperands([s.forX, s.forW]);
    return [s.needY ? gy : null, gx, gw];
  };
}

/** An int8 (out, in) weight with per-row scales as a matrix operand (stored rows = output channels). */
export function int8Operand(q: Tensor, scales: Tensor): Operand {
  const [nOut, nIn] = q.shape;
  return {
    buf: (q.storage as Int8Array).subarray(q.offset, q.offset + q.size), dtype: 'i8', scales: scales.f32(),
    rows: nOut, cols: nIn, trans: false, batchStride: nOut * nIn,
  };
}

/**
 * An NF4 (out, in) weight as a matrix operand: `codes` its packed 4-bit codes (an i8 tensor of ceil(out * in / 2)
 * bytes, read as unsigned; src/backend/nf4.ts), `absmax` one f32 per 64 elements in storage order.
 */
export function nf4Operand(codes: Tensor, absmax: Tensor, nOut: number, nIn: number): Operand {
  return {
    buf: (codes.storage as Int8Array).subarray(codes.offset, codes.offset + codes.size), dtype: 'nf4', scales: absmax.f32(),
    rows: nOut, cols: nIn, trans: false, batchStride: nOut * nIn,
  };
}

/**
 * y = x @ dequant(q)^T + b for an int8 weight q (out, in) with one f32 scale per output channel: the product of
 * a frozen quantised Linear (QLoRA's idea). The weight is widened block by block inside the kernel, forward and
 * backward alike, so it stays 1 byte per element in memory. Gradients flow to x and to a trainable bias only.
 */
export function linearInt8(x: Tensor, q: Tensor, scales: Tensor, b: Tensor | null): Tensor {
  checkFloat(x, 'linearInt8', 'x');
  if (q.dtype !== 'i8' || q.ndim !== 2 || !q.isContiguous) {
    throw new DTypeError(`Argument 'q' passed to 'linearInt8' must be a contiguous 2-D int8 tensor; got ${q.dtype} ${fmtShape(q.shape)}`);
  }
  const [nOut] = q.shape;
  if (scales.dtype !== 'f32' || scales.size !== nOut) {
    throw new ShapeError(`Argument 'scales' passed to 'linearInt8' must be f32 with ${nOut} entries; got ${scales.dtype} ${fmtShape(scales.shape)}`);
  }
  return linearFrozen('linearInt8', x, constant(int8Operand(q, scales)), q.shape[0], q.shape[1], b);
}

/**
 * y = x @ dequant(W)^T + b for an NF4 weight W of logical shape (out, in) (QLoRA's 4-bit NormalFloat, as
 * bitsandbytes stores it: `codes` the packed codes, an i8 tensor of ceil(out * in / 2) bytes; `absmax` one f32 per
 * 64 elements). Widened block by block inside the CPU kernels, forward and backward: the weight stays half a byte
 * per element in memory. Gradients flow to x and to a trainable bias only.
 */
export function linearNf4(x: Tensor, codes: Tensor, absmax: Tensor | (() => Tensor), shape: readonly [number, number], b: Tensor | null): Tensor {
  checkFloat(x, 'linearNf4', 'x');
  const [nOut, nIn] = shape;
  const n = nOut * nIn;
  if (codes.dtype !== 'i8' || codes.size !== Math.ceil(n / 2) || !codes.isContiguous) {
    throw new DTypeError(`Argument 'codes' passed to 'linearNf4' must be a contiguous int8 tensor of ${Math.ceil(n / 2)} packed bytes for a ${fmtShape([...shape])} weight; got ${codes.dtype} ${fmtShape(codes.shape)}`);
  }
  if (backend().device) throw new DTypeError(`'linearNf4' runs on the CPU backends (native, wasm, portable); the ${backend().name} backend multiplies bf16 or int8 weights`);
  // a function (a double-quantised absmax, expanded on demand) is called for the forward product and again for the
  // backward one, so its f32 copy lives only as long as a product
  const operand = (): Operand => {
    const a = typeof absmax === 'function' ? absmax() : absmax;
    if (a.dtype !== 'f32' || a.size !== Math.ceil(n / 64)) {
      throw new ShapeError(`Argument 'absmax' passed to 'linearNf4' must be f32 with ${Math.ceil(n / 64)} entries (one per 64 elements); got ${a.dtype} ${fmtShape(a.shape)}`);
    }
    return nf4Operand(codes, a, nOut, nIn);
  };
  return linearFrozen('linearNf4', x, typeof absmax === 'function' ? operand : constant(operand()), nOut, nIn, b);
}

const constant = <T>(v: T) => (): T => v;

/**
 * y = x W^T + b for a frozen low-precision (nOut, nIn) weight, whose operand `weight()` gives for each product
 * (forward, backward): gradients to x and a trainable bias.
 */
function linearFrozen(op: string, x: Tensor, weight: () => Operand, nOut: number, nIn: number, b: Tensor | null): Tensor {
  if (x.ndim < 1 || x.shape[x.ndim - 1] !== nIn) {
    throw new ShapeError(`Argument 'x' passed to '${op}' has shape ${fmtShape(x.shape)}; expected [.., ${nIn}] to match weight ${fmtShape([nOut, nIn])}`);
  }
  if (b && (b.ndim !== 1 || b.shape[0] !== nOut)) {
    throw new ShapeError(`Argument 'bias' passed to '${op}' has shape ${fmtShape(b.shape)}; expected [${nOut}]`);
  }
  const rows = x.size / nIn;
  // activations in f32 whatever the autocast policy: the low-precision kernels read f32 on the left
  const ox = prepare(x.ndim === 2 ? x : reshape(x, [rows, nIn]), 1, 'f32');
  const y = new Tensor(affine(ox, weight(), b, rows, nOut), 'f32', [...x.shape.slice(0, -1), nOut]);
  const needGx = x.requiresGrad, needGb = !!b && b.requiresGrad;
  if (!needGx && !needGb) return y;
  const xShape = [...x.shape];
  return record(op, b ? [x, b] : [x], y, (gy) => {
    const g = gradOperand(reshape(gy, [rows, nOut]), 1, 'f32');
    const gx = needGx ? new Tensor(gemm(g, weight(), 1, uninitF32(rows * nIn)), 'f32', xShape) : null;
    if (!b) return [gx];
    return [gx, needGb ? biasGrad(gy, rows, nOut) : null];
  });
}
