/** Shape arithmetic shared by the ops. Pure functions over number arrays. */
import { ShapeError, fmtShape } from '../errors.js';

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major (C-contiguous) strides for `shape`. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

export function isContiguous(shape: readonly number[], strides: readonly number[]): boolean {
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && strides[i] !== acc) return false;
    acc *= shape[i];
  }
  return true;
}

/** Normalises a possibly negative axis; throws a ShapeError naming the op otherwise. */
export function normAxis(axis: number, ndim: number, op: string): number {
  const a = axis < 0 ? axis + ndim : axis;
  if (!Number.isInteger(axis) || a < 0 || a >= Math.max(ndim, 1)) {
    throw new ShapeError(`Argument 'axis' passed to '${op}' is ${axis}; expected an integer in [${-ndim}, ${ndim - 1}]`);
  }
  return a;
}

/** NumPy broadcasting of two shapes. */
export function broadcastShapes(a: readonly number[], b: readonly number[], op: string): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = i < n - a.length ? 1 : a[i - (n - a.length)];
    const db = i < n - b.length ? 1 : b[i - (n - b.length)];
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(`Operands of '${op}' have shapes ${fmtShape(a)} and ${fmtShape(b)}, which do not broadcast (dimension ${i}: ${da} vs ${db})`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Strides that read a tensor (shape, strides) as if broadcast to `target` (stride 0 on new/expanded dims). */
export function broadcastStrides(shape: readonly number[], strides: readonly number[], target: readonly number[]): number[] {
  const n = target.length;
  const out = new Array<number>(n).fill(0);
  const off = n - shape.length;
  for (let i = 0; i < shape.length; i++) {
    out[i + off] = shape[i] === 1 && target[i + off] !== 1 ? 0 : strides[i];
  }
  return out;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function checkShape(shape: readonly number[], op: string, arg = 'shape'): number[] {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new ShapeError(`Argument '${arg}' passed to '${op}' is ${fmtShape(shape)}; expected non-negative integer dimensions`);
    }
  }
  return [...shape];
}
