/**
 * The portable backend: every kernel of `Backend` in plain TypeScript (no Node-only API, so it also runs in
 * browsers). It is the reference the native kernels are tested against and the fallback where the addon does
 * not build. Single-threaded; floats are evaluated in float64 and rounded to float32 on store.
 */
import type {
  AdamWArgs, AttentionShape, Backend, BinaryOp, DType, MatmulArgs, MatmulLowpArgs, ReduceOp, SGDArgs, Storage, UnaryOp,
} from '../backend.js';
import { allocStorage, prefillBias } from '../backend.js';
import { attention, attentionBackward } from './attention.js';
import { cast } from './cast.js';
import { affine, axpby, unary, unaryBackward } from './elementwise.js';
import { matmul, matmulLowp } from './matmul.js';
import {
  crossEntropy, crossEntropyBackward, gather, layerNorm, layerNormBackward, layerNormBackwardFromOutput, rmsNorm, rmsNormBackward,
  rmsNormBackwardFromOutput, rope, scatterAdd, softmax, softmaxBackward,
} from './nn.js';
import { adamw, dropoutMask, sgd } from './optim.js';
import { argmax, reduce, sumSquares } from './reduce.js';
import { binary, stridedCopy, where } from './strided.js';

export class PortableBackend implements Backend {
  readonly name = 'portable' as const;
  readonly nativeBf16 = false;

  describe(): string {
    return 'portable (TypeScript, 1 thread)';
  }
  numThreads(): number {
    return 1;
  }

  alloc(dtype: DType, size: number): Storage {
    return allocStorage(dtype, size);
  }

  fill(dst: Float32Array | Int32Array, value: number): void {
    dst.fill(value);
  }
  stridedCopy(src: Storage, shape: number[], strides: number[], dst: Storage, dstStrides?: number[]): void {
    stridedCopy(src, shape, strides, dst, dstStrides);
  }
  cast(src: Storage, srcDtype: DType, dst: Storage, dstDtype: DType): void {
    cast(src, srcDtype, dst, dstDtype);
  }

  unary(op: UnaryOp, x: Float32Array, out: Float32Array): void {
    unary(op, x, out);
  }
  unaryBackward(op: UnaryOp, x: Float32Array, y: Float32Array, dy: Float32Array, dx: Float32Array): void {
    unaryBackward(op, x, y, dy, dx);
  }
  binary(op: BinaryOp, a: Float32Array, aStrides: number[], b: Float32Array, bStrides: number[], shape: number[], out: Float32Array): void {
    binary(op, a, aStrides, b, bStrides, shape, out);
  }
  axpby(alpha: number, x: Float32Array, beta: number, y: Float32Array, out: Float32Array): void {
    axpby(alpha, x, beta, y, out);
  }
  affine(x: Float32Array, scale: number, shift: number, out: Float32Array): void {
    affine(x, scale, shift, out);
  }
  where(cond: Float32Array, condStrides: number[], a: Float32Array, aStrides: number[], b: Float32Array, bStrides: number[],
    shape: number[], out: Float32Array): void {
    where(cond, condStrides, a, aStrides, b, bStrides, shape, out);
  }

  reduce(op: ReduceOp, x: Float32Array, outer: number, n: number, inner: number, out: Float32Array): void {
    reduce(op, x, outer, n, inner, out);
  }
  argmax(x: Float32Array, outer: number, n: number, inner: number, out: Int32Array): void {
    argmax(x, outer, n, inner, out);
  }
  sumSquares(x: Float32Array): number {
    return sumSquares(x);
  }
  trimHeap(): void {
    // typed arrays are V8's to free; nothing to hand back here
  }

  matmul(args: MatmulArgs): void {
    matmul(prefillBias(args));
  }
  matmulLowp(args: MatmulLowpArgs): void {
    matmulLowp(args);
  }

  softmax(x: Float32Array, rows: number, cols: number, out: Float32Array, log: boolean): void {
    softmax(x, rows, cols, out, log);
  }
  softmaxBackward(y: Float32Array, dy: Float32Array, rows: number, cols: number, dx: Float32Array, log: boolean): void {
    softmaxBackward(y, dy, rows, cols, dx, log);
  }
  layerNorm(x: Float32Array, gamma: Float32Array | null, beta: Float32Array | null, rows: number, cols: number, eps: number,
    out: Float32Array, mean: Float32Array, rstd: Float32Array): void {
    layerNorm(x, gamma, beta, rows, cols, eps, out, mean, rstd);
  }
  layerNormBackward(dy: Float32Array, x: Float32Array, gamma: Float32Array | null, mean: Float32Array, rstd: Float32Array,
    rows: number, cols: number, dx: Float32Array, dgamma: Float32Array | null, dbeta: Float32Array | null): void {
    layerNormBackward(dy, x, gamma, mean, rstd, rows, cols, dx, dgamma, dbeta);
  }
  layerNormBackwardFromOutput(dy: Float32Array, y: Float32Array, gamma: Float32Array, beta: Float32Array | null, rstd: Float32Array,
    rows: number, cols: number, dx: Float32Array, dgamma: Float32Array | null, dbeta: Float32Array | null): void {
    layerNormBackwardFromOutput(dy, y, gamma, beta, rstd, rows, cols, dx, dgamma, dbeta);
  }
  rmsNorm(x: Float32Array, gamma: Float32Array | null, rows: number, cols: number, eps: number, out: Float32Array,
    rstd: Float32Array): void {
    rmsNorm(x, gamma, rows, cols, eps, out, rstd);
  }
  rmsNormBackward(dy: Float32Array, x: Float32Array, gamma: Float32Array | null, rstd: Float32Array, rows: number, cols: number,
    dx: Float32Array, dgamma: Float32Array | null): void {
    rmsNormBackward(dy, x, gamma, rstd, rows, cols, dx, dgamma);
  }
  rmsNormBackwardFromOutput(dy: Float32Array, y: Float32Array, gamma: Float32Array, rstd: Float32Array, rows: number, cols: number,
    dx: Float32Array, dgamma: Float32Array | null): void {
    rmsNormBackwardFromOutput(dy, y, gamma, rstd, rows, cols, dx, dgamma);
  }
  gather(table: Float32Array, idx: Int32Array, cols: number, out: Float32Array): void {
    gather(table, idx, cols, out);
  }
  scatterAdd(src: Float32Array, idx: Int32Array, cols: number, dtable: Float32Array): void {
    scatterAdd(src, idx, cols, dtable);
  }
  crossEntropy(logits: Float32Array, targets: Int32Array, rows: number, cols: number, ignoreIndex: number, ls: number,
    loss: Float32Array, logp: Float32Array): void {
    crossEntropy(logits, targets, rows, cols, ignoreIndex, ls, loss, logp);
  }
  crossEntropyBackward(logp: Float32Array, targets: Int32Array, rows: number, cols: number, ignoreIndex: number, ls: number,
    dloss: Float32Array, dlogits: Float32Array): void {
    crossEntropyBackward(logp, targets, rows, cols, ignoreIndex, ls, dloss, dlogits);
  }
  rope(x: Float32Array, cos: Float32Array, sin: Float32Array, rows: number, T: number, D: number, rotDim: number,
    inverse: boolean, out: Float32Array): void {
    rope(x, cos, sin, rows, T, D, rotDim, inverse, out);
  }

  dropoutMask(seed: number, p: number, mask: Float32Array): void {
    dropoutMask(seed, p, mask);
  }

  adamw(args: AdamWArgs): void {
    adamw(args);
  }
  sgd(args: SGDArgs): void {
    sgd(args);
  }

  attention(s: AttentionShape, q: Float32Array, k: Float32Array, v: Float32Array, keyMask: Float32Array | null,
    firstKey: Int32Array | null, out: Float32Array, stats: Float32Array): void {
    attention(s, q, k, v, keyMask, firstKey, out, stats);
  }
  attentionBackward(s: AttentionShape, q: Float32Array, k: Float32Array, v: Float32Array, keyMask: Float32Array | null,
    firstKey: Int32Array | null, stats: Float32Array, dout: Float32Array, doutStrides: [number, number, number], dq: Float32Array,
    dk: Float32Array, dv: Float32Array): void {
    attentionBackward(s, q, k, v, keyMask, firstKey, stats, dout, doutStrides, dq, dk, dv);
  }
}
