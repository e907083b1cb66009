/**
 * `Tensor`: a strided view over typed-array storage, with an optional autograd node.
 *
 * Storage is an ordinary typed array, garbage-collected like any JS object: there is no dispose(). Views
 * (reshape of contiguous data, transpose, permute, slice, expand) share storage; ops that need dense input
 * call `contiguous()`, which copies only when the view is not already dense. Methods are thin delegations to
 * the op modules, so that every op has one definition (op name, forward, gradient) in one place.
 */
import { backend } from '../backend/index.js';
import type { DType, Storage } from '../backend/backend.js';
import { DTYPE_BYTES } from '../backend/backend.js';
import { DeviceError, DTypeError, ShapeError, fmtShape } from '../errors.js';
import { isDeviceStorage, ownsWholeBuffer, releaseBuffer, uninitF32 } from './alloc.js';
import { contiguousStrides, isContiguous, numel, sameShape } from './shape.js';
import { type GradNode, type BackwardOptions, runBackward } from './autograd.js';
import * as ew from './ops/elementwise.js';
import * as red from './ops/reduce.js';
import * as mv from './ops/movement.js';
import * as la from './ops/linalg.js';
import * as nnops from './ops/nn.js';

export type Scalar = number;
export type TensorLike = Tensor | number;

/**
 * Leaf gradients that only the library has held: made by a backward pass (or by the library's own gradient code,
 * setPrivateGrad), shared with no other leaf, and never read through the `grad` getter, which takes a tensor out of
 * this set for good. Their buffers can go back to the allocation pool when the gradient is cleared (releaseGrad, the
 * optimizers' zeroGrad) and a later pass can accumulate into them in place, as PyTorch's caching allocator and
 * AccumulateGrad do by reference count: a gradient that user code has seen stays valid however long it is held.
 */
const privateGrads = new WeakSet<Tensor>();
let gradSlot: { get(t: Tensor): Tensor | null; set(t: Tensor, g: Tensor | null): void };

/** A leaf's gradient, read without taking it out of the private set (the library's own readers, which keep no reference). */
export function peekGrad(t: Tensor): Tensor | null {
  return gradSlot.get(t);
}

/** Sets a leaf's gradient to fresh memory that nothing else holds (the library's own gradient code: clipping, data-parallel sums). */
export function setPrivateGrad(t: Tensor, g: Tensor): void {
  const old = gradSlot.get(t);
  gradSlot.set(t, g);
  if (old && old !== g) releasePrivate(old);
  privateGrads.add(g);
}

/**
 * Clears a leaf's gradient (zeroGrad). A gradient that only the library has held goes back to the allocation pool
 * for the next backward pass; one that user code has read (`p.grad`) is only dropped, so it stays valid.
 */
export function releaseGrad(t: Tensor): void {
  const g = gradSlot.get(t);
  if (!g) return;
  gradSlot.set(t, null);
  releasePrivate(g);
}

/** acc += g in place, acc a dense f32 tensor over its whole buffer; false (nothing done) where g is not dense f32. */
function addInto(acc: Tensor, g: Tensor): boolean {
  if (g.dtype !== 'f32' || !g.isContiguous || !(g.storage instanceof Float32Array)) return false;
  const dst = acc.storage as Float32Array;
  backend().axpby(1, dst, 1, g.storage.subarray(g.offset, g.offset + g.size), dst);
  return true;
}

function releasePrivate(g: Tensor): void {
  if (!privateGrads.has(g)) return;
  privateGrads.delete(g);
  if (ownsWholeBuffer(g) && g.storage instanceof Float32Array) releaseBuffer(g.storage);
}

export class Tensor {
  readonly storage: Storage;
  readonly dtype: DType;
  readonly shape: number[];
  readonly strides: number[];
  readonly offset: number;
  /** When true, ops on this tensor are recorded and `backward()` fills `grad`. */
  requiresGrad = false;
  #grad: Tensor | null = null;
  /** Accumulated gradient (f32, same shape), for leaves that require one. */
  get grad(): Tensor | null {
    const g = this.#grad;
    if (g) privateGrads.delete(g);
    return g;
  }
  set grad(g: Tensor | null) {
    this.#grad = g;
  }
  static {
    gradSlot = { get: (t) => t.#grad, set: (t, g) => { t.#grad = g; } };
  }
  /** The op that produced this tensor, while the graph is alive. */
  node: GradNode | null = null;
  /** Optional name, used in error messages and state dicts. */
  name?: string;

  constructor(storage: Storage, dtype: DType, shape: number[], strides?: number[], offset = 0) {
    this.storage = storage;
    this.dtype = dtype;
    this.shape = shape;
    this.strides = strides ?? contiguousStrides(shape);
    this.offset = offset;
  }

  get size(): number {
    return numel(this.shape);
  }
  get ndim(): number {
    return this.shape.length;
  }
  get isContiguous(): boolean {
    return isContiguous(this.shape, this.strides);
  }
  /** Dense from the first element of its storage to the last: the storage is exactly this tensor's elements. */
  get spansStorage(): boolean {
    return this.isContiguous && this.offset === 0 && this.storage.length === this.size;
  }
  /** Bytes of storage this tensor's elements occupy (not counting views' sharing). */
  get nbytes(): number {
    return this.size * DTYPE_BYTES[this.dtype];
  }

  /** Marks this tensor as a leaf that requires a gradient (returns this). */
  requireGrad(flag = true): this {
    if (flag && this.dtype !== 'f32') {
      throw new DTypeError(`'requireGrad' needs an f32 tensor; got ${this.dtype} (master weights are f32)`);
    }
    this.requiresGrad = flag;
    return this;
  }

  /** A view of the same data cut off from the graph. */
  detach(): Tensor {
    return new Tensor(this.storage, this.dtype, this.shape, this.strides, this.offset);
  }

  /**
   * The elements as a dense buffer of this tensor's dtype, in row-major order: the storage itself (or a
   * subarray of it) when already dense, else a copy. Kernels read this; do not write to it.
   */
  dense(): Storage {
    const n = this.size;
    if (this.isContiguous) {
      return this.offset === 0 && this.storage.length === n ? this.storage : this.storage.subarray(this.offset, this.offset + n);
    }
    const out = this.dtype === 'f32' ? uninitF32(n) : backend().alloc(this.dtype, n);
    backend().stridedCopy(this.storage.subarray(this.offset), this.shape, this.strides, out);
    return out;
  }

  /** Dense float32 values (casting 16-bit and integer storage). */
  f32(): Float32Array {
    const d = this.dense();
    if (this.dtype === 'f32') return d as Float32Array;
    const out = isDeviceStorage(d) ? backend().alloc('f32', this.size) as Float32Array : new Float32Array(this.size);
    backend().cast(d, this.dtype, out, 'f32');
    return out;
  }

  /** Dense int32 values (for indices and targets). */
  i32(op = 'i32'): Int32Array {
    if (this.dtype !== 'i32') throw new DTypeError(`'${op}' needs an i32 tensor of indices; got ${this.dtype} with shape ${fmtShape(this.shape)}`);
    return this.dense() as Int32Array;
  }

  /**
   * The values on the CPU, dense and row-major: f32 for float dtypes, the stored integers for i32 / i8. Works on
   * every backend; on a device-resident one (WebGPU) this is the read back (it waits for the queued kernels), the
   * way to get values for logging, metrics, evaluation and saving. The result is a copy the caller may keep.
   */
  async data(): Promise<Float32Array | Int32Array | Int8Array> {
    const v = this.dtype === 'i32' || this.dtype === 'i8' ? this.dense() : this.f32();
    if (!isDeviceStorage(v)) return v.slice() as Float32Array | Int32Array | Int8Array;
    const dev = backend().device;
    if (!dev) throw new DeviceError(`'data': this tensor is device storage, but the current backend (${backend().name}) is not a device backend`);
    return (await dev.read(v)) as Float32Array | Int32Array | Int8Array;
  }

  /** The value of a one-element tensor, on every backend (see `data`). */
  async value(): Promise<number> {
    if (this.size !== 1) throw new ShapeError(`'value' needs a tensor with one element; got shape ${fmtShape(this.shape)}`);
    return (await this.data())[0];
  }

  /** True when the storage is a device array (WebGPU): synchronous reads (`item`, `toArray`) throw, `data()` works. */
  get onDevice(): boolean {
    return isDeviceStorage(this.storage);
  }

  /** A copy of the values as a plain JS number array (flat, row-major). */
  toFlatArray(): number[] {
    if (isDeviceStorage(this.storage)) {
      throw new DeviceError(`'toFlatArray' / 'toArray' / 'item' read values synchronously, but this ${fmtShape(this.shape)} tensor lives on the ${backend().name} device; use 'await t.data()' or 'await t.value()'`);
    }
    return Array.from(this.dtype === 'i32' || this.dtype === 'i8' ? this.dense() : this.f32());
  }
  /** A nested JS array of the values. */
  toArray(): unknown {
    const flat = this.toFlatArray();
    if (this.ndim === 0) return flat[0];
    const build = (dim: number, off: number): unknown => {
      const n = this.shape[dim];
      if (dim === this.ndim - 1) return flat.slice(off, off + n);
      const step = numel(this.shape.slice(dim + 1));
      return Array.from({ length: n }, (_, i) => build(dim + 1, off + i * step));
    };
    return build(0, 0);
  }
  /** The value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new ShapeError(`'item' needs a tensor with one element; got shape ${fmtShape(this.shape)}`);
    return this.toFlatArray()[0];
  }

  backward(opts: BackwardOptions = {}): void {
    runBackward(this, opts, {
      onesLike: (t) => new Tensor(new Float32Array(t.size).fill(1), 'f32', [...t.shape]),
      add: (a, b) => ew.add(a, b),
      addInto,
      leafGrad: (leaf, g, own = false) => {
        if (g.dtype !== 'f32') g = ew.cast(g, 'f32');
        if (!sameShape(g.shape, leaf.shape)) {
          throw new ShapeError(`gradient for a leaf of shape ${fmtShape(leaf.shape)} has shape ${fmtShape(g.shape)}`);
        }
        const acc = leaf.#grad;
        if (!acc) return g.spansStorage ? g : g.contiguous();
        // a gradient only the library holds takes the next contribution in place: this pass's own (`own`), or an
        // earlier pass's that no one has read (gradient accumulation)
        if ((own || privateGrads.has(acc)) && ownsWholeBuffer(acc) && acc.storage instanceof Float32Array && addInto(acc, g)) return acc;
        return ew.add(acc, g);
      },
      privateGrad: (leaf, g) => {
        if (leaf.#grad === g) privateGrads.add(g);
      },
    });
  }

  toString(): string {
    return `Tensor(${this.dtype}, ${fmtShape(this.shape)}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }

  // ---- fluent API: thin delegations to the op modules ---------------------------------------------
  add(b: TensorLike): Tensor { return ew.add(this, b); }
  sub(b: TensorLike): Tensor { return ew.sub(this, b); }
  mul(b: TensorLike): Tensor { return ew.mul(this, b); }
  div(b: TensorLike): Tensor { return ew.div(this, b); }
  pow(b: TensorLike): Tensor { return ew.pow(this, b); }
  maximum(b: TensorLike): Tensor { return ew.maximum(this, b); }
  minimum(b: TensorLike): Tensor { return ew.minimum(this, b); }
  eq(b: TensorLike): Tensor { return ew.compare('eq', this, b); }
  gt(b: TensorLike): Tensor { return ew.compare('gt', this, b); }
  ge(b: TensorLike): Tensor { return ew.compare('ge', this, b); }
  lt(b: TensorLike): Tensor { return ew.compare('lt', this, b); }
  le(b: TensorLike): Tensor { return ew.compare('le', this, b); }
  neg(): Tensor { return ew.unary('neg', this); }
  exp(): Tensor { return ew.unary('exp', this); }
  log(): Tensor { return ew.unary('log', this); }
  sqrt(): Tensor { return ew.unary('sqrt', this); }
  rsqrt(): Tensor { return ew.unary('rsqrt', this); }
  tanh(): Tensor { return ew.unary('tanh', this); }
  sigmoid(): Tensor { return ew.unary('sigmoid', this); }
  relu(): Tensor { return ew.unary('relu', this); }
  gelu(approximate: 'none' | 'tanh' = 'none'): Tensor { return ew.unary(approximate === 'tanh' ? 'gelu_tanh' : 'gelu', this); }
  silu(): Tensor { return ew.unary('silu', this); }
  abs(): Tensor { return ew.unary('abs', this); }
  square(): Tensor { return ew.unary('square', this); }
  reciprocal(): Tensor { return ew.unary('reciprocal', this); }
  scale(s: number): Tensor { return ew.affine(this, s, 0); }
  to(dtype: DType): Tensor { return ew.cast(this, dtype); }

  sum(axis?: number | number[], keepdim = false): Tensor { return red.sum(this, axis, keepdim); }
  mean(axis?: number | number[], keepdim = false): Tensor { return red.mean(this, axis, keepdim); }
  max(axis?: number | number[], keepdim = false): Tensor { return red.max(this, axis, keepdim); }
  min(axis?: number | number[], keepdim = false): Tensor { return red.min(this, axis, keepdim); }
  var(axis?: number | number[], keepdim = false, unbiased = false): Tensor { return red.variance(this, axis, keepdim, unbiased); }
  argmax(axis = -1): Tensor { return red.argmax(this, axis); }

  reshape(shape: number[]): Tensor { return mv.reshape(this, shape); }
  view(shape: number[]): Tensor { return mv.reshape(this, shape); }
  flatten(): Tensor { return mv.reshape(this, [this.size]); }
  permute(dims: number[]): Tensor { return mv.permute(this, dims); }
  transpose(a = -2, b = -1): Tensor { return mv.transpose(this, a, b); }
  get T(): Tensor { return mv.transpose(this, -2, -1); }
  slice(axis: number, start: number, end?: number, step = 1): Tensor { return mv.slice(this, axis, start, end, step); }
  split(sizes: number | number[], axis = -1): Tensor[] { return mv.split(this, sizes, axis); }
  expand(shape: number[]): Tensor { return mv.expand(this, shape); }
  unsqueeze(axis: number): Tensor { return mv.unsqueeze(this, axis); }
  squeeze(axis?: number): Tensor { return mv.squeeze(this, axis); }
  contiguous(): Tensor { return mv.contiguous(this); }

  matmul(b: Tensor): Tensor { return la.matmul(this, b); }
  softmax(axis = -1): Tensor { return nnops.softmax(this, axis); }
  logSoftmax(axis = -1): Tensor { return nnops.logSoftmax(this, axis); }
  maskedFill(mask: Tensor, value: number): Tensor { return nnops.maskedFill(this, mask, value); }
}

/** Wraps dense storage as a tensor (no copy). */
export function fromStorage(storage: Storage, dtype: DType, shape: number[]): Tensor {
  if (storage.length !== numel(shape)) {
    throw new ShapeError(`storage of ${storage.length} elements does not fit shape ${fmtShape(shape)}`);
  }
  return new Tensor(storage, dtype, shape);
}

/** A new zero-filled f32 tensor. */
export function emptyF32(shape: number[]): Tensor {
  return new Tensor(new Float32Array(numel(shape)), 'f32', shape);
}
