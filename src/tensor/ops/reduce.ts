/** Reductions over axes (sum, mean, max, min, var, argmax) and their gradients. */
import { backend } from '../../backend/index.js';
import type { ReduceOp } from '../../backend/backend.js';
import { ShapeError, fmtShape } from '../../errors.js';
import { Tensor } from '../tensor.js';
import { isDeviceStorage, zerosF32 } from '../alloc.js';
import { record } from '../autograd.js';
import { normAxis, numel, sameShape } from '../shape.js';
import { binaryRaw, affineRaw, sub, mul, affine } from './elementwise.js';
import { expand, reshape } from './movement.js';

/** Sorted, unique, normalised axes; `undefined` means all. */
export function normAxes(axis: number | number[] | undefined, ndim: number, op: string): number[] {
  if (axis === undefined) return Array.from({ length: ndim }, (_, i) => i);
  const list = Array.isArray(axis) ? axis : [axis];
  const set = new Set(list.map((a) => normAxis(a, ndim, op)));
  return [...set].sort((a, b) => a - b);
}

function keptShape(shape: readonly number[], axes: number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

/** Reduces `axes` of x without autograd; returns the keepdim-shaped result. */
export function reduceRaw(op: ReduceOp, x: Tensor, axes: number[]): Tensor {
  let buf: Float32Array = x.f32();
  let shape = [...x.shape];
  if (axes.length === 0) return new Tensor(op === 'sum' && buf === x.storage ? copyF32(buf) : buf, 'f32', shape);
  // Group consecutive axes into runs, reduce each run with one kernel call, last run first.
  const runs: Array<[number, number]> = [];
  for (const a of axes) {
    const last = runs[runs.length - 1];
    if (last && last[1] === a) last[1] = a + 1;
    else runs.push([a, a + 1]);
  }
  for (let r = runs.length - 1; r >= 0; r--) {
    const [lo, hi] = runs[r];
    const outer = numel(shape.slice(0, lo));
    const n = numel(shape.slice(lo, hi));
    const inner = numel(shape.slice(hi));
    if (n === 0 && op !== 'sum') throw new ShapeError(`'${op}' over an empty axis of shape ${fmtShape(x.shape)}`);
    const out = zerosF32(outer * inner);
    backend().reduce(op, buf, outer, n, inner, out);
    buf = out;
    shape = [...shape.slice(0, lo), ...new Array<number>(hi - lo).fill(1), ...shape.slice(hi)];
  }
  return new Tensor(buf, 'f32', shape);
}

/** A copy of an f32 buffer (a device copy on a device-resident backend). */
function copyF32(buf: Float32Array): Float32Array {
  if (!isDeviceStorage(buf)) return buf.slice();
  const out = zerosF32(buf.length);
  backend().stridedCopy(buf, [buf.length], [1], out);
  return out;
}

function finish(y: Tensor, x: Tensor, axes: number[], keepdim: boolean): Tensor {
  if (keepdim) return y;
  return new Tensor(y.storage, 'f32', x.shape.filter((_, i) => !axes.includes(i)));
}

/** Sums `g` down to `shape` (the gradient of a broadcast). */
export function sumTo(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.ndim - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.ndim; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  const r = reduceRaw('sum', g, axes);
  return new Tensor(r.storage, 'f32', [...shape]);
}

/** Broadcasts a keepdim-shaped gradient back over the reduced axes (a stride-0 view). */
function spread(gy: Tensor, xShape: readonly number[], axes: number[]): Tensor {
  return expand(reshape(gy, keptShape(xShape, axes)), [...xShape]);
}

export function sum(x: Tensor, axis?: number | number[], keepdim = false): Tensor {
  const axes = normAxes(axis, x.ndim, 'sum');
  const y = finish(reduceRaw('sum', x, axes), x, axes, keepdim);
  const xShape = [...x.shape]; // the shape, not the input's values, for the backward pass
  return record('sum', [x], y, (gy) => [spread(gy, xShape, axes)]);
}

export function mean(x: Tensor, axis?: number | number[], keepdim = false): Tensor {
  const axes = normAxes(axis, x.ndim, 'mean');
  let n = 1;
  for (const a of axes) n *= x.shape[a];
  const s = reduceRaw('sum', x, axes);
  const y = finish(affineRaw(s, 1 / n, 0), x, axes, keepdim);
  const xShape = [...x.shape];
  return record('mean', [x], y, (gy) => [spread(affineRaw(gy, 1 / n, 0), xShape, axes)]);
}

function extremum(op: 'max' | 'min', x: Tensor, axis: number | number[] | undefined, keepdim: boolean): Tensor {
  const axes = normAxes(axis, x.ndim, op);
  const m = reduceRaw(op, x, axes);
  const y = finish(m, x, axes, keepdim);
  return record(op, [x], y, (gy) => {
    // The gradient is shared evenly among the elements equal to the extremum (PyTorch amax/amin).
    const hit = binaryRaw('eq', x, m);
    const count = reduceRaw('sum', hit, axes);
    const share = binaryRaw('div', reshape(gy, keptShape(x.shape, axes)), count);
    return [binaryRaw('mul', hit, share)];
  });
}
export const max = (x: Tensor, axis?: number | number[], keepdim = false): Tensor => extremum('max', x, axis, keepdim);
export const min = (x: Tensor, axis?: number | number[], keepdim = false): Tensor => extremum('min', x, axis, keepdim);

/** Variance over axes (biased by default, like `unbiased=false`), composed from differentiable ops. */
export function variance(x: Tensor, axis?: number | number[], keepdim = false, unbiased = false): Tensor {
  const axes = normAxes(axis, x.ndim, 'var');
  let n = 1;
  for (const a of axes) n *= x.shape[a];
  const d = sub(x, mean(x, axes, true));
  const s = sum(mul(d, d), axes, keepdim);
  return affine(s, 1 / Math.max(unbiased ? n - 1 : n, 1), 0);
}

/** Index of the maximum along `axis` (i32, axis removed). */
export function argmax(x: Tensor, axis = -1): Tensor {
  const a = normAxis(axis, x.ndim, 'argmax');
  const outer = numel(x.shape.slice(0, a)), n = x.shape[a], inner = numel(x.shape.slice(a + 1));
  const b = backend();
  const out = b.device ? (b.alloc('i32', outer * inner) as Int32Array) : new Int32Array(outer * inner);
  b.argmax(x.f32(), outer, n, inner, out);
  return new Tensor(out, 'i32', x.shape.filter((_, i) => i !== a));
}
