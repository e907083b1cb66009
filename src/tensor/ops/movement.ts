/** Views and data movement: reshape, permute, slice, split, concat, expand, contiguous. */
import { backend } from '../../backend/index.js';
import { ShapeError, fmtShape } from '../../errors.js';
import { Tensor } from '../tensor.js';
import { zerosF32 } from '../alloc.js';
import { record } from '../autograd.js';
import { contiguousStrides, normAxis, numel } from '../shape.js';
import { sumTo as sumToShape } from './reduce.js';

/** A dense copy of x (any dtype); the identity when x is already dense from offset 0. */
export function contiguous(x: Tensor): Tensor {
  if (x.spansStorage) return x;
  const y = new Tensor(x.dense(), x.dtype, [...x.shape]);
  if (y.storage === x.storage) return y; // a dense subarray shares storage; still a new view
  return record('contiguous', [x], y, (gy) => [gy]);
}

export function reshape(x: Tensor, shape: number[]): Tensor {
  const target = [...shape];
  const infer = target.indexOf(-1);
  if (infer >= 0) {
    const known = numel(target.filter((_, i) => i !== infer));
    target[infer] = known === 0 ? 0 : x.size / known;
  }
  if (target.some((d) => !Number.isInteger(d) || d < 0) || numel(target) !== x.size) {
    throw new ShapeError(`'reshape' cannot view shape ${fmtShape(x.shape)} (${x.size} elements) as ${fmtShape(shape)}`);
  }
  const src = x.isContiguous ? x : contiguous(x);
  const y = new Tensor(src.storage, src.dtype, target, contiguousStrides(target), src.offset);
  const srcShape = [...src.shape]; // views keep shapes, not their source tensors, for the backward pass
  return record('reshape', [src], y, (gy) => [reshape(gy, srcShape)]);
}

export function permute(x: Tensor, dims: number[]): Tensor {
  if (dims.length !== x.ndim) {
    throw new ShapeError(`'permute' got dims [${dims.join(',')}] for a tensor of shape ${fmtShape(x.shape)}; expected ${x.ndim} dims`);
  }
  const nd = x.ndim;
  const d = dims.map((a) => normAxis(a, nd, 'permute'));
  if (new Set(d).size !== d.length) throw new ShapeError(`'permute' dims [${dims.join(',')}] repeat an axis`);
  // No arrow here may mention x: V8 keeps a scope's captured variables in one context, so the backward closure
  // below would hold x (and its storage) alive too.
  const xShape = x.shape, xStrides = x.strides;
  const y = new Tensor(x.storage, x.dtype, d.map((i) => xShape[i]), d.map((i) => xStrides[i]), x.offset);
  const inv = new Array<number>(d.length);
  d.forEach((src, i) => (inv[src] = i));
  return record('permute', [x], y, (gy) => [permute(gy, inv)]);
}

export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  const ia = normAxis(a, x.ndim, 'transpose'), ib = normAxis(b, x.ndim, 'transpose');
  const dims = Array.from({ length: x.ndim }, (_, i) => i);
  dims[ia] = ib;
  dims[ib] = ia;
  return permute(x, dims);
}

/** x[..., start:end:step, ...] along `axis` (a view). Negative start/end count from the end. */
export function slice(x: Tensor, axis: number, start: number, end?: number, step = 1): Tensor {
  const ax = normAxis(axis, x.ndim, 'slice');
  const n = x.shape[ax];
  const s = Math.min(Math.max(start < 0 ? start + n : start, 0), n);
  const e = Math.min(Math.max(end === undefined ? n : end < 0 ? end + n : end, s), n);
  if (!Number.isInteger(step) || step < 1) throw new ShapeError(`'slice' step must be a positive integer; got ${step}`);
  const len = Math.ceil((e - s) / step);
  const shape = [...x.shape];
  shape[ax] = len;
  const strides = [...x.strides];
  strides[ax] = x.strides[ax] * step;
  const y = new Tensor(x.storage, x.dtype, shape, strides, x.offset + s * x.strides[ax]);
  const xShape = [...x.shape], xSize = x.size;
  return record('slice', [x], y, (gy) => {
    // Scatter the gradient into zeros at the sliced positions.
    const g = zerosF32(xSize);
    const gs = contiguousStrides(xShape);
    const dstStrides = [...gs];
    dstStrides[ax] = gs[ax] * step;
    backend().stridedCopy(gy.f32(), shape, contiguousStrides(shape), g.subarray(s * gs[ax]), dstStrides);
    return [new Tensor(g, 'f32', [...xShape])];
  });
}

/** Splits along `axis` into pieces of `sizes` (or equal pieces of that size). Views. */
export function split(x: Tensor, sizes: number | number[], axis = -1): Tensor[] {
  const ax = normAxis(axis, x.ndim, 'split');
  const n = x.shape[ax];
  const list = typeof sizes === 'number' ? Array.from({ length: Math.ceil(n / sizes) }, (_, i) => Math.min(sizes, n - i * sizes)) : sizes;
  if (list.reduce((a, b) => a + b, 0) !== n) {
    throw new ShapeError(`'split' sizes [${list.join(',')}] do not add up to dimension ${ax} of shape ${fmtShape(x.shape)}`);
  }
  const out: Tensor[] = [];
  let at = 0;
  for (const len of list) {
    out.push(slice(x, ax, at, at + len));
    at += len;
  }
  return out;
}

/** Joins tensors along `axis` (all shapes equal except that axis). */
export function concat(xs: Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new ShapeError(`'concat' needs at least one tensor`);
  const ax = normAxis(axis, xs[0].ndim, 'concat');
  const dtype = xs[0].dtype;
  for (const t of xs) {
    if (t.ndim !== xs[0].ndim || t.shape.some((d, i) => i !== ax && d !== xs[0].shape[i]) || t.dtype !== dtype) {
      throw new ShapeError(`'concat' along axis ${ax}: shapes ${xs.map((q) => `${fmtShape(q.shape)} ${q.dtype}`).join(', ')} do not match outside that axis`);
    }
  }
  const shape = [...xs[0].shape];
  shape[ax] = xs.reduce((a, t) => a + t.shape[ax], 0);
  const out = backend().alloc(dtype, numel(shape));
  const os = contiguousStrides(shape);
  let at = 0;
  for (const t of xs) {
    if (t.size > 0) backend().stridedCopy(t.storage.subarray(t.offset), t.shape, t.strides, out.subarray(at * os[ax]), os);
    at += t.shape[ax];
  }
  const y = new Tensor(out, dtype, shape);
  return record('concat', xs, y, concatBackward(ax, xs.map((t) => t.shape[ax])));
}
/** The gradient of concat: slices of gy (a closure of its own, so that it does not keep the inputs alive). */
function concatBackward(ax: number, widths: number[]): (gy: Tensor) => Tensor[] {
  return (gy) => {
    const parts: Tensor[] = [];
    let o = 0;
    for (const w of widths) {
      parts.push(slice(gy, ax, o, o + w));
      o += w;
    }
    return parts;
  };
}

/** Stacks equal-shaped tensors along a new axis. */
export function stack(xs: Tensor[], axis = 0): Tensor {
  return concat(xs.map((t) => unsqueeze(t, axis)), axis < 0 ? axis + xs[0].ndim + 1 : axis);
}

/** Broadcast view to `shape` (stride 0 on expanded dims). */
export function expand(x: Tensor, shape: number[]): Tensor {
  const lead = shape.length - x.ndim;
  if (lead < 0) throw new ShapeError(`'expand' cannot expand shape ${fmtShape(x.shape)} to fewer dims ${fmtShape(shape)}`);
  const strides = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < x.ndim; i++) {
    const want = shape[i + lead] === -1 ? x.shape[i] : shape[i + lead];
    if (x.shape[i] !== want && x.shape[i] !== 1) {
      throw new ShapeError(`'expand' cannot expand shape ${fmtShape(x.shape)} to ${fmtShape(shape)} (dimension ${i})`);
    }
    strides[i + lead] = x.shape[i] === want ? x.strides[i] : 0;
  }
  const xShape = [...x.shape]; // captured instead of x (see permute)
  const target = shape.map((d, i) => (d === -1 ? xShape[i - lead] : d));
  const y = new Tensor(x.storage, x.dtype, target, strides, x.offset);
  return record('expand', [x], y, (gy) => [sumToShape(gy, xShape)]);
}

export function unsqueeze(x: Tensor, axis: number): Tensor {
  const ax = axis < 0 ? axis + x.ndim + 1 : axis;
  if (ax < 0 || ax > x.ndim) throw new ShapeError(`'unsqueeze' axis ${axis} out of range for shape ${fmtShape(x.shape)}`);
  const shape = [...x.shape.slice(0, ax), 1, ...x.shape.slice(ax)];
  const stride = ax < x.ndim ? x.strides[ax] * x.shape[ax] : 1;
  const strides = [...x.strides.slice(0, ax), stride, ...x.strides.slice(ax)];
  const y = new Tensor(x.storage, x.dtype, shape, strides, x.offset);
  const xShape = [...x.shape];
  return record('unsqueeze', [x], y, (gy) => [reshape(gy, xShape)]);
}

export function squeeze(x: Tensor, axis?: number): Tensor {
  const nd = x.ndim; // the arrows below must not mention x (see permute)
  const keep = x.shape.map((d, i) => (axis === undefined ? d !== 1 : i !== normAxis(axis, nd, 'squeeze') || d !== 1));
  const y = new Tensor(x.storage, x.dtype, x.shape.filter((_, i) => keep[i]), x.strides.filter((_, i) => keep[i]), x.offset);
  const xShape = [...x.shape];
  return record('squeeze', [x], y, (gy) => [reshape(gy, xShape)]);
}
