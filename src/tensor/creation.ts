/** Tensor creation: from JS data, constants, ranges, seeded random. */
import type { DType } from '../backend/backend.js';
import { Rng } from '../backend/rng.js';
import { backend } from '../backend/index.js';
import { isDeviceStorage } from './alloc.js';
import { DTypeError, ShapeError, fmtShape } from '../errors.js';
import { Tensor } from './tensor.js';
import { markModified } from './versions.js';
import { checkShape, numel } from './shape.js';

type Nested = number | Nested[];

function inferShape(data: Nested): number[] {
  const shape: number[] = [];
  let d: Nested = data;
  while (Array.isArray(d)) {
    shape.push(d.length);
    d = d[0] as Nested;
  }
  return shape;
}

/**
 * A tensor from nested arrays, a flat array with a shape, or a typed array (Float32Array -> f32,
 * Int32Array -> i32, no copy). `dtype` converts.
 */
export function tensor(data: Nested | ArrayLike<number>, opts: { shape?: number[]; dtype?: DType; requiresGrad?: boolean } = {}): Tensor {
  let flat: ArrayLike<number>;
  let shape: number[];
  if (data instanceof Float32Array || data instanceof Int32Array) {
    flat = data;
    shape = opts.shape ?? [data.length];
  } else if (typeof data === 'number') {
    flat = [data];
    shape = opts.shape ?? [];
  } else if (opts.shape) {
    flat = Array.isArray(data) ? (data as Nested[]).flat(Infinity as 1) as number[] : data;
    shape = opts.shape;
  } else {
    shape = inferShape(data as Nested);
    flat = (data as Nested[]).flat(Infinity as 1) as number[];
  }
  checkShape(shape, 'tensor');
  if (flat.length !== numel(shape)) {
    throw new ShapeError(`'tensor' got ${flat.length} values for shape ${fmtShape(shape)} (ragged nested arrays?)`);
  }
  const dtype = opts.dtype ?? (data instanceof Int32Array ? 'i32' : 'f32');
  let t: Tensor;
  if (data instanceof Float32Array && dtype === 'f32') t = new Tensor(data, 'f32', shape);
  else if (data instanceof Int32Array && dtype === 'i32') t = new Tensor(data, 'i32', shape);
  else if (dtype === 'i32') t = new Tensor(Int32Array.from(flat, (v) => Math.trunc(v)), 'i32', shape);
  else {
    t = new Tensor(Float32Array.from(flat), 'f32', shape);
    if (dtype !== 'f32') t = t.to(dtype);
  }
  if (opts.requiresGrad) t.requireGrad();
  return t;
}

export function full(shape: number[], value: number, dtype: DType = 'f32'): Tensor {
  checkShape(shape, 'full');
  const n = numel(shape);
  if (dtype === 'f32') return new Tensor(new Float32Array(n).fill(value), 'f32', [...shape]);
  if (dtype === 'i32') return new Tensor(new Int32Array(n).fill(value), 'i32', [...shape]);
  return full(shape, value, 'f32').to(dtype);
}
export const zeros = (shape: number[], dtype: DType = 'f32'): Tensor => full(shape, 0, dtype);
export const ones = (shape: number[], dtype: DType = 'f32'): Tensor => full(shape, 1, dtype);
export const zerosLike = (t: Tensor): Tensor => zeros([...t.shape], t.dtype);
export const onesLike = (t: Tensor): Tensor => ones([...t.shape], t.dtype);

/** [start, start+step, ...) below end. */
export function arange(start: number, end?: number, step = 1, dtype: DType = 'f32'): Tensor {
  if (end === undefined) { end = start; start = 0; }
  if (step === 0) throw new ShapeError(`'arange' step must not be 0`);
  const n = Math.max(0, Math.ceil((end - start) / step));
  const f = Array.from({ length: n }, (_, i) => start + i * step);
  return tensor(f, { shape: [n], dtype });
}

function randomTensor(shape: number[], rng: Rng | number, draw: (r: Rng) => number): Tensor {
  checkShape(shape, 'random');
  const r = typeof rng === 'number' ? new Rng(rng) : rng;
  const d = new Float32Array(numel(shape));
  for (let i = 0; i < d.length; i++) d[i] = draw(r);
  return new Tensor(d, 'f32', [...shape]);
}

/** Normal(mean, std) samples from a seeded generator (a seed number or an Rng to continue). */
export function randn(shape: number[], rng: Rng | number = 0, mean = 0, std = 1): Tensor {
  return randomTensor(shape, rng, (r) => mean + std * r.normal());
}

/** Uniform [lo, hi) samples from a seeded generator. */
export function rand(shape: number[], rng: Rng | number = 0, lo = 0, hi = 1): Tensor {
  return randomTensor(shape, rng, (r) => lo + (hi - lo) * r.uniform());
}

/** Integers uniform in [0, high) as i32. */
export function randint(shape: number[], high: number, rng: Rng | number = 0): Tensor {
  const r = typeof rng === 'number' ? new Rng(rng) : rng;
  const d = new Int32Array(numel(shape));
  for (let i = 0; i < d.length; i++) d[i] = r.int(high);
  return new Tensor(d, 'i32', [...shape]);
}

/** Throws unless the tensor has the given dtype. */
export function assertDType(t: Tensor, dtype: DType, op: string, arg: string): void {
  if (t.dtype !== dtype) throw new DTypeError(`Argument '${arg}' passed to '${op}' has dtype ${t.dtype}; expected ${dtype}`);
}

/** Copies `src` values into `dst` in place (same shape; used by optimizers and state loading). */
export function copyInto(dst: Tensor, src: Tensor): void {
  if (dst.size !== src.size) throw new ShapeError(`'copyInto' shapes ${fmtShape(dst.shape)} and ${fmtShape(src.shape)} differ`);
  if (!dst.isContiguous) throw new ShapeError(`'copyInto' needs a dense destination`);
  const s = src.dtype === dst.dtype ? src.dense() : src.to(dst.dtype).dense();
  if (isDeviceStorage(dst.storage)) backend().stridedCopy(s, [src.size], [1], dst.storage.subarray(dst.offset, dst.offset + src.size));
  else (dst.storage as Float32Array).set(s as Float32Array, dst.offset);
  markModified(dst);
}
