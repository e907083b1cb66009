/**
 * Device-resident storage and the kernel set over it (see README.md): a `GpuArray` is a typed-array-like view of a
 * GPUBuffer, and `OnDevice<T>` is `T` with every typed array replaced by a `GpuArray`, so that the WebGPU kernels
 * have the `Backend` interface's names, arguments and semantics.
 */
/// <reference types="@webgpu/types" />
import type { Backend, DType, Storage } from '../backend.js';
import { DeviceError } from '../../errors.js';

/** Elements of `dtype` per 32-bit word of a GPUBuffer. */
export const PER_WORD: Record<DType, number> = { f32: 1, i32: 1, bf16: 2, f16: 2, i8: 4 };

export class GpuArray {
  constructor(
    readonly buffer: GPUBuffer,
    readonly dtype: DType,
    /** Offset of element 0, in elements of `dtype`. */
    readonly offset: number,
    readonly length: number,
    /** The array that owns the buffer (this one for a root). */
    readonly root: GpuArray | null = null,
  ) {}

  /** A view of elements [begin, end) sharing the buffer (as TypedArray.subarray). */
  subarray(begin = 0, end = this.length): GpuArray {
    const b = Math.max(0, Math.min(begin, this.length));
    const e = Math.max(b, Math.min(end, this.length));
    return new GpuArray(this.buffer, this.dtype, this.offset + b, e - b, this.root ?? this);
  }

  /** Byte position of element 0 in the buffer (a key for caches of copies, as a typed array's byteOffset). */
  get byteOffset(): number {
    return (this.offset * 4) / PER_WORD[this.dtype];
  }

  // Typed-array methods that read or write elements on the CPU: a clear error naming the method (the tensor layer
  // passes device arrays where typed arrays are expected, so a CPU path that was missed fails here, not silently).
  set(): never { throw cpuAccess('set'); }
  slice(): never { throw cpuAccess('slice'); }
  fill(): never { throw cpuAccess('fill'); }
  [Symbol.iterator](): never { throw cpuAccess('iteration'); }

  /** Bytes the elements span (rounded up to whole words by the buffer). */
  get byteLength(): number {
    return Math.ceil(this.length / PER_WORD[this.dtype]) * 4;
  }
}

function cpuAccess(what: string): DeviceError {
  return new DeviceError(`${what} of a WebGPU device array on the CPU: its values are on the device; read them with 'await t.data()' ` +
    '(this CPU path has no device form yet)');
}

/** Replaces typed arrays by GpuArray, through objects, tuples and unions (null stays null). */
export type DeviceArg<T> = T extends Storage ? GpuArray
  : T extends number | string | boolean | null | undefined ? T
  : T extends readonly unknown[] ? T
  : T extends object ? { [K in keyof T]: DeviceArg<T[K]> }
  : T;

type DeviceArgs<A extends unknown[]> = { [I in keyof A]: DeviceArg<A[I]> };

/** `T`'s methods over GpuArrays; a method that returns a value returns a Promise of it (a read back). */
export type OnDevice<T> = {
  [K in keyof T]: NonNullable<T[K]> extends (...args: infer A) => infer R
    ? (...args: DeviceArgs<A>) => R extends void ? void : R extends Storage ? GpuArray : Promise<R>
    : T[K];
};

/** The kernels the WebGPU backend implements: `Backend` on device arrays, less what has no device meaning. */
export type DeviceKernels = Omit<OnDevice<Backend>, 'name' | 'describe' | 'numThreads' | 'nativeBf16' | 'trimHeap' | 'matmul'> & {
  /** `Backend.matmul`, where the operands may also be stored as f16 (f32 accumulation). */
  matmul(args: Omit<DeviceArg<import('../backend.js').MatmulArgs>, 'dtype'> & { dtype: 'f32' | 'bf16' | 'f16' }): void;
};
