/**
 * `WebGpuTensorBackend`: the WebGPU kernels (`WebGpuBackend`, over `GpuArray`s) as a `Backend`, so that the tensor
 * layer runs on the device unchanged (README.md, "The tensor layer on the device"). Tensor storage is a `GpuArray`
 * passed where the interface says typed array (it has `length`, `subarray` and `buffer`, never elements): `alloc`
 * gives device arrays, the tensor layer's outputs come from it, and a typed array passed as a kernel INPUT (a
 * constant, a batch of token ids, a CPU tensor) is uploaded for that call. A typed array passed as an OUTPUT is a
 * bug in the caller (a buffer not made through the backend), reported as a DeviceError that names the kernel, never
 * written silently on the CPU side. `sumSquares`, the one kernel that returns a value, has no synchronous form here.
 */
/// <reference types="@webgpu/types" />
import type { AdamWArgs, AttentionShape, Backend, BinaryOp, DeviceMemory, DType, MatmulArgs, MatmulLowpArgs, ReduceOp, RMSpropArgs, SGDArgs,
  Storage, UnaryOp } from '../backend.js';
import { DeviceError } from '../../errors.js';
import { GpuArray } from './array.js';
import type { WebGpuBackend } from './backend.js';

type Arr = Storage;
type Maybe = Storage | null;

/** The dtype a typed array holds (16-bit arrays are taken as bf16 unless the call says otherwise). */
function dtypeOf(s: Storage): DType {
  return s instanceof Float32Array ? 'f32' : s instanceof Int32Array ? 'i32' : s instanceof Int8Array ? 'i8' : 'bf16';
}

export class WebGpuTensorBackend implements Backend {
  readonly name = 'webgpu' as const;
  readonly nativeBf16 = false;
  readonly device: DeviceMemory;
  /** Typed arrays uploaded as kernel inputs since the last `resetUploadCount` (tests check a step uploads no weights). */
  uploads = 0;

  constructor(readonly gpu: WebGpuBackend) {
    this.device = {
      holds: (s) => s instanceof GpuArray,
      upload: (s, dtype) => (s instanceof GpuArray ? s : gpu.upload(s as Float32Array, dtype)) as unknown as Storage,
      read: async (s) => (s instanceof GpuArray ? (await gpu.read(s)) as Storage : s),
      sumSquares: (s) => gpu.sumSquares(this.in(s)),
      stepGate: (grads, o) => gpu.stepGate(grads.map((g) => this.in(g)),
        { ...o, scaler: o.scaler && { ...o.scaler, state: this.out(o.scaler.state, 'stepGate', 'scaler.state') } }) as unknown as Float32Array,
    };
  }

  /** An input: device arrays pass, typed arrays are uploaded. */
  private in(x: Arr, dtype?: DType): GpuArray {
    if (x instanceof GpuArray) return x;
    this.uploads++;
    return this.gpu.upload(x as Float32Array, dtype ?? dtypeOf(x));
  }
  private inN(x: Maybe, dtype?: DType): GpuArray | null {
    return x === null || x === undefined ? null : this.in(x, dtype);
  }
  /** An output (written or accumulated): must be device storage. */
  private out(x: Arr, op: string, arg: string): GpuArray {
    if (x instanceof GpuArray) return x;
    throw new DeviceError(`'${op}' on the webgpu backend got CPU memory (a ${x.constructor.name} of ${x.length}) for its output '${arg}': ` +
      'outputs must be device storage from backend().alloc (an op that allocates with new Float32Array has no device path yet)');
  }
  private outN(x: Maybe, op: string, arg: string): GpuArray | null {
    return x === null || x === undefined ? null : this.out(x, op, arg);
  }

  describe(): string { return this.gpu.describe(); }
  numThreads(): number { return 1; }
  trimHeap(): void {}

  alloc(dtype: DType, size: number): Storage { return this.gpu.alloc(dtype, size) as unknown as Storage; }
  fill(dst: Float32Array | Int32Array, value: number): void { this.gpu.fill(this.out(dst, 'fill', 'dst'), value); }
  stridedCopy(src: Arr, shape: number[], strides: number[], dst: Arr, dstStrides?: number[]): void {
    const d = this.out(dst, 'stridedCopy', 'dst');
    this.gpu.stridedCopy(this.in(src, d.dtype), shape, strides, d, dstStrides);
  }
  cast(src: Arr, srcDtype: DType, dst: Arr, dstDtype: DType): void {
    this.gpu.cast(this.in(src, srcDtype), srcDtype, this.out(dst, 'cast', 'dst'), dstDtype);
  }

  unary(op: UnaryOp, x: Float32Array, out: Float32Array): void { this.gpu.unary(op, this.in(x), this.out(out, op, 'out')); }
  unaryBackward(op: UnaryOp, x: Float32Array, y: Float32Array, dy: Float32Array, dx: Float32Array): void {
    const xd = this.in(x);
    this.gpu.unaryBackward(op, xd, y === x ? xd : this.in(y), this.in(dy), this.out(dx, `${op} backward`, 'dx'));
  }
  binary(op: BinaryOp, a: Float32Array, aStrides: number[], b: Float32Array, bStrides: number[], shape: number[], out: Float32Array): void {
    this.gpu.binary(op, this.in(a), aStrides, this.in(b), bStrides, shape, this.out(out, op, 'out'));
  }
  axpby(alpha: number, x: Float32Array, beta: number, y: Float32Array, out: Float32Array): void {
    this.gpu.axpby(alpha, this.in(x), beta, this.in(y), this.out(out, 'axpby', 'out'));
  }
  affine(x: Float32Array, scale: number, shift: number, out: Float32Array): void {
    this.gpu.affine(this.in(x), scale, shift, this.out(out, 'affine', 'out'));
  }
  where(cond: Float32Array, condStrides: number[], a: Float32Array, aStrides: number[], b: Float32Array, bStrides: number[], shape: number[],
    out: Float32Array): void {
    this.gpu.where(this.in(cond), condStrides, this.in(a), aStrides, this.in(b), bStrides, shape, this.out(out, 'where', 'out'));
  }

  reduce(op: ReduceOp, x: Float32Array, outer: number, n: number, inner: number, out: Float32Array): void {
    this.gpu.reduce(op, this.in(x), outer, n, inner, this.out(out, op, 'out'));
  }
  argmax(x: Float32Array, outer: number, n: number, inner: number, out: Int32Array): void {
    this.gpu.argmax(this.in(x), outer, n, inner, this.out(out, 'argmax', 'out'));
  }
  sumSquares(): number {
    throw new DeviceError("'sumSquares' (gradient-norm clipping) returns a number synchronously, which the webgpu backend cannot: " +
      'the norm is on the device: use the step gate (guardedUpdate does), or await gradNormAsync(params) to read it');
  }

  matmul(a: MatmulArgs): void {
    this.gpu.matmul({ ...a, a: this.in(a.a, a.dtype), b: this.in(a.b, a.dtype), out: this.out(a.out, 'matmul', 'out'), bias: this.inN(a.bias ?? null) });
  }
  matmulLowp(a: MatmulLowpArgs): void {
    if ((a as { bias?: unknown }).bias) throw new Error('matmulLowp: takes no bias (start out as the bias and pass beta = 1)');
    if (a.bDtype === 'nf4') throw new Error(`matmulLowp: NF4 weights are multiplied by the CPU backends (native, wasm, portable), not on the GPU; use 'bf16' or 'i8' here`);
    this.gpu.matmulLowp({ ...a, a: this.in(a.a), b: this.in(a.b, a.bDtype), scales: this.inN(a.scales), out: this.out(a.out, 'matmulLowp', 'out') });
  }

  softmax(x: Float32Array, rows: number, cols: number, out: Float32Array, log: boolean): void {
    this.gpu.softmax(this.in(x), rows, cols, this.out(out, 'softmax', 'out'), log);
  }
  softmaxBackward(y: Float32Array, dy: Float32Array, rows: number, cols: number, dx: Float32Array, log: boolean): void {
    this.gpu.softmaxBackward(this.in(y), this.in(dy), rows, cols, this.out(dx, 'softmaxBackward', 'dx'), log);
  }
  layerNorm(x: Float32Array, gamma: Float32Array | null, beta: Float32Array | null, rows: number, cols: number, eps: number, out: Float32Array,
    mean: Float32Array, rstd: Float32Array): void {
    const op = 'layerNorm';
    this.gpu.layerNorm(this.in(x), this.inN(gamma), this.inN(beta), rows, cols, eps, this.out(out, op, 'out'), this.out(mean, op, 'mean'),
      this.out(rstd, op, 'rstd'));
  }
  layerNormBackward(dy: Float32Array, x: Float32Array, gamma: Float32Array | null, mean: Float32Array, rstd: Float32Array, rows: number,
    cols: number, dx: Float32Array, dgamma: Float32Array | null, dbeta: Float32Array | null): void {
    const op = 'layerNormBackward';
    this.gpu.layerNormBackward(this.in(dy), this.in(x), this.inN(gamma), this.in(mean), this.in(rstd), rows, cols, this.out(dx, op, 'dx'),
      this.outN(dgamma, op, 'dgamma'), this.outN(dbeta, op, 'dbeta'));
  }
  layerNormBackwardFromOutput(dy: Float32Array, y: Float32Array, gamma: Float32Array, beta: Float32Array | null, rstd: Float32Array,
    rows: number, cols: number, dx: Float32Array, dgamma: Float32Array | null, dbeta: Float32Array | null): void {
    const op = 'layerNormBackwardFromOutput';
    this.gpu.layerNormBackwardFromOutput(this.in(dy), this.in(y), this.in(gamma), this.inN(beta), this.in(rstd), rows, cols,
      this.out(dx, op, 'dx'), this.outN(dgamma, op, 'dgamma'), this.outN(dbeta, op, 'dbeta'));
  }
  rmsNorm(x: Float32Array, gamma: Float32Array | null, rows: number, cols: number, eps: number, out: Float32Array, rstd: Float32Array): void {
    this.gpu.rmsNorm(this.in(x), this.inN(gamma), rows, cols, eps, this.out(out, 'rmsNorm', 'out'), this.out(rstd, 'rmsNorm', 'rstd'));
  }
  rmsNormBackwardFromOutput(dy: Float32Array, y: Float32Array, gamma: Float32Array, rstd: Float32Array, rows: number, cols: number,
    dx: Float32Array, dgamma: Float32Array | null): void {
    const op = 'rmsNormBackwardFromOutput';
    this.gpu.rmsNormBackwardFromOutput(this.in(dy), this.in(y), this.in(gamma), this.in(rstd), rows, cols, this.out(dx, op, 'dx'),
      this.outN(dgamma, op, 'dgamma'));
  }
  rmsNormBackward(dy: Float32Array, x: Float32Array, gamma: Float32Array | null, rstd: Float32Array, rows: number, cols: number,
    dx: Float32Array, dgamma: Float32Array | null): void {
    const op = 'rmsNormBackward';
    this.gpu.rmsNormBackward(this.in(dy), this.in(x), this.inN(gamma), this.in(rstd), rows, cols, this.out(dx, op, 'dx'), this.outN(dgamma, op, 'dgamma'));
  }
  gather(table: Float32Array, idx: Int32Array, cols: number, out: Float32Array): void {
    this.gpu.gather(this.in(table), this.in(idx, 'i32'), cols, this.out(out, 'gather', 'out'));
  }
  scatterAdd(src: Float32Array, idx: Int32Array, cols: number, dtable: Float32Array): void {
    this.gpu.scatterAdd(this.in(src), this.in(idx, 'i32'), cols, this.out(dtable, 'scatterAdd', 'dtable'));
  }
  crossEntropy(logits: Float32Array, targets: Int32Array, rows: number, cols: number, ignoreIndex: number, ls: number, loss: Float32Array,
    logp: Float32Array): void {
    this.gpu.crossEntropy(this.in(logits), this.in(targets, 'i32'), rows, cols, ignoreIndex, ls, this.out(loss, 'crossEntropy', 'loss'),
      this.out(logp, 'crossEntropy', 'logp'));
  }
  crossEntropyBackward(logp: Float32Array, targets: Int32Array, rows: number, cols: number, ignoreIndex: number, ls: number,
    dloss: Float32Array, dlogits: Float32Array): void {
    this.gpu.crossEntropyBackward(this.in(logp), this.in(targets, 'i32'), rows, cols, ignoreIndex, ls, this.in(dloss),
      this.out(dlogits, 'crossEntropyBackward', 'dlogits'));
  }
  rope(x: Float32Array, cos: Float32Array, sin: Float32Array, rows: number, T: number, D: number, rotDim: number, inverse: boolean,
    out: Float32Array): void {
    this.gpu.rope(this.in(x), this.in(cos), this.in(sin), rows, T, D, rotDim, inverse, this.out(out, 'rope', 'out'));
  }
  attention(shape: AttentionShape, q: Float32Array, k: Float32Array, v: Float32Array, keyMask: Float32Array | null, firstKey: Int32Array | null,
    out: Float32Array, stats: Float32Array): void {
    this.gpu.attention(shape, this.in(q), this.in(k), this.in(v), this.inN(keyMask), this.inN(firstKey, 'i32'), this.out(out, 'attention', 'out'),
      this.out(stats, 'attention', 'stats'));
  }
  attentionBackward(shape: AttentionShape, q: Float32Array, k: Float32Array, v: Float32Array, keyMask: Float32Array | null,
    firstKey: Int32Array | null, stats: Float32Array, dout: Float32Array, doutStrides: [number, number, number], dq: Float32Array,
    dk: Float32Array, dv: Float32Array): void {
    const op = 'attentionBackward';
    this.gpu.attentionBackward(shape, this.in(q), this.in(k), this.in(v), this.inN(keyMask), this.inN(firstKey, 'i32'), this.in(stats),
      this.in(dout), doutStrides, this.out(dq, op, 'dq'), this.out(dk, op, 'dk'), this.out(dv, op, 'dv'));
  }

  dropoutMask(seed: number, p: number, mask: Float32Array): void { this.gpu.dropoutMask(seed, p, this.out(mask, 'dropoutMask', 'mask')); }
  adamw(a: AdamWArgs): void {
    const op = 'adamw';
    // out16 (the bf16 copy) is for backends with optimizerWritesBf16; this one leaves it to the products' casts
    this.gpu.adamw({ ...a, param: this.out(a.param, op, 'param'), grad: this.in(a.grad), m: this.out(a.m, op, 'm'), v: this.out(a.v, op, 'v'),
      gate: a.gate && this.in(a.gate), out16: undefined });
  }
  sgd(a: SGDArgs): void {
    // without momentum the buffer is unused (the tensor layer passes an empty typed array)
    const buf = a.momentum !== 0 ? this.out(a.buf, 'sgd', 'buf') : this.gpu.ctx.dummy(true);
    this.gpu.sgd({ ...a, param: this.out(a.param, 'sgd', 'param'), grad: this.in(a.grad), buf, gate: a.gate && this.in(a.gate), out16: undefined });
  }
  rmsprop(a: RMSpropArgs): void {
    const op = 'rmsprop';
    const buf = a.momentum > 0 ? this.out(a.buf, op, 'buf') : this.gpu.ctx.dummy(true);
    this.gpu.rmsprop({ ...a, param: this.out(a.param, op, 'param'), grad: this.in(a.grad), v: this.out(a.v, op, 'v'), buf, gate: a.gate && this.in(a.gate) });
  }
}
