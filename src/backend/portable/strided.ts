/**
 * N-d strided loops: binary ops and `where` with stride-0 broadcasting, and `stridedCopy`. Dimensions are first
 * simplified (size-1 dimensions dropped, neighbours merged where every operand is contiguous across them), then
 * the innermost dimension runs as one tight loop per op and the outer dimensions are walked with an odometer.
 */
import type { BinaryOp, Storage } from '../backend.js';

interface Layout {
  shape: number[];
  /** strides[k] are the strides of operand k, one per dimension of `shape`. */
  strides: number[][];
}

/** Drops size-1 dimensions and merges dimensions that are contiguous for every operand. */
export function simplify(shape: number[], strides: number[][]): Layout {
  const outShape: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    const size = shape[d];
    if (size === 1) continue;
    const last = outShape.length - 1;
    let merge = last >= 0;
    for (let k = 0; merge && k < strides.length; k++) {
      if (outStrides[k][last] !== strides[k][d] * size) merge = false;
    }
    if (merge) {
      outShape[last] *= size;
      for (let k = 0; k < strides.length; k++) outStrides[k][last] = strides[k][d];
    } else {
      outShape.push(size);
      for (let k = 0; k < strides.length; k++) outStrides[k].push(strides[k][d]);
    }
  }
  if (outShape.length === 0) {
    outShape.push(1);
    for (const s of outStrides) s.push(0);
  }
  return { shape: outShape, strides: outStrides };
}

function checkRank(fn: string, shape: number[], strides: number[][], names: string[]): void {
  for (let k = 0; k < strides.length; k++) {
    if (strides[k].length !== shape.length) {
      throw new RangeError(`${fn}: ${names[k]} has ${strides[k].length} strides for shape [${shape}]; expected ${shape.length}`);
    }
  }
}

function numel(shape: number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

/**
 * Walks every row (all dimensions but the last) of `layout` and calls `row(offsets, n)`; `offsets`
 * is reused between calls (the element offsets of each operand at the start of the row).
 */
function forEachRow(layout: Layout, row: (offsets: number[], n: number) => void): void {
  const { shape, strides } = layout;
  const rank = shape.length;
  const ops = strides.length;
  const n = shape[rank - 1];
  if (numel(shape) === 0) return;
  const offsets = new Array<number>(ops).fill(0);
  const idx = new Array<number>(rank).fill(0);
  for (;;) {
    row(offsets, n);
    // odometer over dimensions rank-2 .. 0
    let d = rank - 2;
    for (; d >= 0; d--) {
      idx[d]++;
      for (let k = 0; k < ops; k++) offsets[k] += strides[k][d];
      if (idx[d] < shape[d]) break;
      for (let k = 0; k < ops; k++) offsets[k] -= strides[k][d] * shape[d];
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

/** out[o..o+n) = a[ao + i*as] (op) b[bo + i*bs]. */
function binaryRow(op: BinaryOp, a: Float32Array, ao: number, as: number, b: Float32Array, bo: number, bs: number,
  out: Float32Array, oo: number, n: number): void {
  switch (op) {
    case 'add': for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * as] + b[bo + i * bs]; return;
    case 'sub': for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * as] - b[bo + i * bs]; return;
    case 'mul': for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * as] * b[bo + i * bs]; return;
    case 'div': for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * as] / b[bo + i * bs]; return;
    case 'pow': for (let i = 0; i < n; i++) out[oo + i] = Math.pow(a[ao + i * as], b[bo + i * bs]); return;
    case 'max': for (let i = 0; i < n; i++) out[oo + i] = Math.max(a[ao + i * as], b[bo + i * bs]); return;
    case 'min': for (let i = 0; i < n; i++) out[oo + i] = Math.min(a[ao + i * as], b[bo + i * bs]); return;
    case 'eq': for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * as] === b[bo + i * bs] ? 1 : 0; return;
    case 'gt': for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * as] > b[bo + i * bs] ? 1 : 0; return;
    case 'ge': for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * as] >= b[bo + i * bs] ? 1 : 0; return;
    case 'lt': for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * as] < b[bo + i * bs] ? 1 : 0; return;
    case 'le': for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * as] <= b[bo + i * bs] ? 1 : 0; return;
    default: throw new Error(`binary: unknown op '${op as string}'`);
  }
}

export function binary(op: BinaryOp, a: Float32Array, aStrides: number[], b: Float32Array, bStrides: number[], shape: number[],
  out: Float32Array): void {
  checkRank('binary', shape, [aStrides, bStrides], ['a', 'b']);
  const outStrides = contiguousStrides(shape);
  const layout = simplify(shape, [aStrides, bStrides, outStrides]);
  const [sa, sb] = layout.strides;
  const last = layout.shape.length - 1;
  const as = sa[last];
  const bs = sb[last];
  forEachRow(layout, (off, n) => binaryRow(op, a, off[0], as, b, off[1], bs, out, off[2], n));
}

export function where(cond: Float32Array, condStrides: number[], a: Float32Array, aStrides: number[], b: Float32Array,
  bStrides: number[], shape: number[], out: Float32Array): void {
  checkRank('where', shape, [condStrides, aStrides, bStrides], ['cond', 'a', 'b']);
  const layout = simplify(shape, [condStrides, aStrides, bStrides, contiguousStrides(shape)]);
  const last = layout.shape.length - 1;
  const [cs, as, bs] = [layout.strides[0][last], layout.strides[1][last], layout.strides[2][last]];
  forEachRow(layout, (off, n) => {
    const co = off[0], ao = off[1], bo = off[2], oo = off[3];
    for (let i = 0; i < n; i++) out[oo + i] = cond[co + i * cs] !== 0 ? a[ao + i * as] : b[bo + i * bs];
  });
}

/** Copies the strided view (shape, strides) of src into contiguous dst, any dtype. */
export function stridedCopy(src: Storage, shape: number[], strides: number[], dst: Storage, dstStrides?: number[]): void {
  checkRank('stridedCopy', shape, [strides, dstStrides ?? contiguousStrides(shape)], ['src', 'dst']);
  const layout = simplify(shape, [strides, dstStrides ?? contiguousStrides(shape)]);
  const last = layout.shape.length - 1;
  const ss = layout.strides[0][last];
  const ds = layout.strides[1][last];
  const d = dst as Float32Array; // element-wise copy within one typed-array class
  const s = src as Float32Array;
  forEachRow(layout, (off, n) => {
    const so = off[0], oo = off[1];
    if (ss === 1 && ds === 1 && n >= 32) d.set(s.subarray(so, so + n), oo);
    else for (let i = 0; i < n; i++) d[oo + i * ds] = s[so + i * ss];
  });
}

export function contiguousStrides(shape: number[]): number[] {
  const st = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    st[d] = acc;
    acc *= shape[d];
  }
  return st;
}
