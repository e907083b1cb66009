/**
 * `WebGpuBackend`: the `Backend` kernels on device arrays (see README.md for the design). Every kernel records its
 * work and returns; `read` and `sumSquares` are the asynchronous points.
 */
import type { AdamWArgs, AttentionShape, BinaryOp, DType, MatmulArgs, MatmulLowpArgs, ReduceOp, RMSpropArgs, SGDArgs, UnaryOp } from '../backend.js';
import type { DeviceArg, DeviceKernels, GpuArray } from './array.js';
import type { GpuContext } from './device.js';
import * as ew from './elementwise.js';
import * as nn from './nn.js';
import * as mm from './matmul.js';
import * as at from './attention.js';
import { stepGate, type GateOptions } from './gate.js';

export class WebGpuBackend implements DeviceKernels {
  readonly name = 'webgpu';
  constructor(readonly ctx: GpuContext) {}

  describe(): string {
    return `webgpu (${this.ctx.adapterInfo}${this.ctx.hasF16 ? ', shader-f16' : ''})`;
  }

  // ---- memory and movement
  alloc(dtype: DType, size: number): GpuArray { return this.ctx.alloc(dtype, size); }
  upload(data: Float32Array | Int32Array | Uint16Array | Int8Array, dtype: DType): GpuArray { return this.ctx.upload(data, dtype); }
  read(arr: GpuArray): Promise<Float32Array | Int32Array | Uint16Array | Int8Array> { return this.ctx.read(arr); }
  fill(dst: GpuArray, value: number): void { ew.fill(this.ctx, dst, value); }
  stridedCopy(src: GpuArray, shape: number[], strides: number[], dst: GpuArray, dstStrides?: number[]): void {
    ew.stridedCopy(this.ctx, src, shape, strides, dst, dstStrides);
  }
  cast(src: GpuArray, srcDtype: DType, dst: GpuArray, dstDtype: DType): void { ew.cast(this.ctx, src, srcDtype, dst, dstDtype); }

  // ---- elementwise
  unary(op: UnaryOp, x: GpuArray, out: GpuArray): void { ew.unary(this.ctx, op, x, out); }
  unaryBackward(op: UnaryOp, x: GpuArray, y: GpuArray, dy: GpuArray, dx: GpuArray): void { ew.unaryBackward(this.ctx, op, x, y, dy, dx); }
  binary(op: BinaryOp, a: GpuArray, aStrides: number[], b: GpuArray, bStrides: number[], shape: number[], out: GpuArray): void {
    ew.binary(this.ctx, op, a, aStrides, b, bStrides, shape, out);
  }
  axpby(alpha: number, x: GpuArray, beta: number, y: GpuArray, out: GpuArray): void { ew.axpby(this.ctx, alpha, x, beta, y, out); }
  affine(x: GpuArray, scale: number, shift: number, out: GpuArray): void { ew.affine(this.ctx, x, scale, shift, out); }
  where(cond: GpuArray, condStrides: number[], a: GpuArray, aStrides: number[], b: GpuArray, bStrides: number[], shape: number[],
    out: GpuArray): void {
    ew.where(this.ctx, cond, condStrides, a, aStrides, b, bStrides, shape, out);
  }

  // ---- reductions
  reduce(op: ReduceOp, x: GpuArray, outer: number, n: number, inner: number, out: GpuArray): void { nn.reduce(this.ctx, op, x, outer, n, inner, out); }
  argmax(x: GpuArray, outer: number, n: number, inner: number, out: GpuArray): void { nn.argmax(this.ctx, x, outer, n, inner, out); }
  sumSquares(x: GpuArray): Promise<number> { return nn.sumSquares(this.ctx, x); }

  // ---- linear algebra
  matmul(args: Omit<DeviceArg<MatmulArgs>, 'dtype'> & { dtype: 'f32' | 'bf16' | 'f16' }): void { mm.matmul(this.ctx, args); }
  matmulLowp(args: DeviceArg<MatmulLowpArgs>): void { mm.matmulLowp(this.ctx, args); }

  // ---- fused neural-network kernels
  softmax(x: GpuArray, rows: number, cols: number, out: GpuArray, log: boolean): void { nn.softmax(this.ctx, x, rows, cols, out, log); }
  softmaxBackward(y: GpuArray, dy: GpuArray, rows: number, cols: number, dx: GpuArray, log: boolean): void {
    nn.softmaxBackward(this.ctx, y, dy, rows, cols, dx, log);
  }
  layerNorm(x: GpuArray, gamma: GpuArray | null, beta: GpuArray | null, rows: number, cols: number, eps: number, out: GpuArray,
    mean: GpuArray, rstd: GpuArray): void {
    nn.normForward(this.ctx, true, x, gamma, beta, rows, cols, eps, out, mean, rstd);
  }
  layerNormBackward(dy: GpuArray, x: GpuArray, gamma: GpuArray | null, mean: GpuArray, rstd: GpuArray, rows: number, cols: number,
    dx: GpuArray, dgamma: GpuArray | null, dbeta: GpuArray | null): void {
    nn.normBackward(this.ctx, { centered: true, from: 'input', dy, src: x, gamma, beta: null, mean, rstd, rows, cols, dx, dgamma, dbeta });
  }
  layerNormBackwardFromOutput(dy: GpuArray, y: GpuArray, gamma: GpuArray, beta: GpuArray | null, rstd: GpuArray, rows: number,
    cols: number, dx: GpuArray, dgamma: GpuArray | null, dbeta: GpuArray | null): void {
    nn.normBackward(this.ctx, { centered: true, from: 'output', dy, src: y, gamma, beta, mean: null, rstd, rows, cols, dx, dgamma, dbeta });
  }
  rmsNorm(x: GpuArray, gamma: GpuArray | null, rows: number, cols: number, eps: number, out: GpuArray, rstd: GpuArray): void {
    nn.normForward(this.ctx, false, x, gamma, null, rows, cols, eps, out, null, rstd);
  }
  rmsNormBackward(dy: GpuArray, x: GpuArray, gamma: GpuArray | null, rstd: GpuArray, rows: number, cols: number, dx: GpuArray,
    dgamma: GpuArray | null): void {
    nn.normBackward(this.ctx, { centered: false, from: 'input', dy, src: x, gamma, beta: null, mean: null, rstd, rows, cols, dx, dgamma, dbeta: null });
  }
  rmsNormBackwardFromOutput(dy: GpuArray, y: GpuArray, gamma: GpuArray, rstd: GpuArray, rows: number, cols: number, dx: GpuArray,
    dgamma: GpuArray | null): void {
    nn.normBackward(this.ctx, { centered: false, from: 'output', dy, src: y, gamma, beta: null, mean: null, rstd, rows, cols, dx, dgamma, dbeta: null });
  }
  gather(table: GpuArray, idx: GpuArray, cols: number, out: GpuArray): void { nn.gather(this.ctx, table, idx, cols, out); }
  scatterAdd(src: GpuArray, idx: GpuArray, cols: number, dtable: GpuArray): void { nn.scatterAdd(this.ctx, src, idx, cols, dtable); }
  crossEntropy(logits: GpuArray, targets: GpuArray, rows: number, cols: number, ignoreIndex: number, ls: number, loss: GpuArray,
    logp: GpuArray): void {
    nn.crossEntropy(this.ctx, logits, targets, rows, cols, ignoreIndex, ls, loss, logp);
  }
  crossEntropyBackward(logp: GpuArray, targets: GpuArray, rows: number, cols: number, ignoreIndex: number, ls: number, dloss: GpuArray,
    dlogits: GpuArray): void {
    nn.crossEntropyBackward(this.ctx, logp, targets, rows, cols, ignoreIndex, ls, dloss, dlogits);
  }
  rope(x: GpuArray, cos: GpuArray, sin: GpuArray, rows: number, T: number, D: number, rotDim: number, inverse: boolean, out: GpuArray): void {
    ew.rope(this.ctx, x, cos, sin, rows, T, D, rotDim, inverse, out);
  }
  attention(shape: AttentionShape, q: GpuArray, k: GpuArray, v: GpuArray, keyMask: GpuArray | null, firstKey: GpuArray | null,
    out: GpuArray, stats: GpuArray): void {
    at.attention(this.ctx, shape, q, k, v, keyMask, firstKey, out, stats);
  }
  attentionBackward(shape: AttentionShape, q: GpuArray, k: GpuArray, v: GpuArray, keyMask: GpuArray | null, firstKey: GpuArray | null,
    stats: GpuArray, dout: GpuArray, doutStrides: [number, number, number], dq: GpuArray, dk: GpuArray, dv: GpuArray): void {
    at.attentionBackward(this.ctx, shape, q, k, v, keyMask, firstKey, stats, dout, doutStrides, dq, dk, dv);
  }

  // ---- random, optimizers
  dropoutMask(seed: number, p: number, mask: GpuArray): void { ew.dropoutMask(this.ctx, seed, p, mask); }
  adamw(args: DeviceArg<AdamWArgs>): void { nn.adamw(this.ctx, args); }
  sgd(args: DeviceArg<SGDArgs>): void { nn.sgd(this.ctx, args); }
  rmsprop(args: DeviceArg<RMSpropArgs>): void { nn.rmsprop(this.ctx, args); }
  /** The optimizer step's gate (gate.ts): norm, finite check, clip coefficient, loss-scaler update; no read back. */
  stepGate(grads: GpuArray[], o: GateOptions): GpuArray { return stepGate(this.ctx, grads, o); }
}
