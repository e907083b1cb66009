/**
 * PowerSGD (Vogels et al. 2019), local-approximation variant. The gradient is viewed as a matrix M
 * (shape[0], numel / shape[0]); one power iteration warm-started from the previous step's Q of this tensor
 * gives P = orth(M Q) (rows x r) and Q = M^T P (cols x r), and decompress = P Q^T.
 *
 * Real PowerSGD all-reduces P before computing Q (two communication rounds, linear in the ranks' gradients).
 * Here each rank computes both factors from its own (error-fed) gradient and sends them in one payload that
 * travels by all-gather; the receiver sums the ranks' P_i Q_i^T. The result is a sum of per-rank rank-r
 * approximations (rank <= r x world size), not the rank-r approximation of the sum.
 *
 * Vectors (1-D tensors) and matrices where the factors would not be smaller travel uncompressed (r = 0).
 * Body: u32 rows | u32 cols | u32 r | r > 0: f32 P[rows x r], f32 Q[cols x r]; r = 0: f32 values[numel].
 */
import { backend } from '../../backend/index.js';
import { ShapeError, fmtShape } from '../../errors.js';
import type { Rng } from '../../backend/rng.js';
import type { CompressContext } from '../types.js';
import { BaseCompressor, addScaled } from './base.js';
import { HEADER_BYTES, checkLength, f32View, fail, getU32, newPayload, readHeader, setU32 } from '../wire.js';

const BODY = HEADER_BYTES + 12;

/** Orthonormalizes the r columns of the row-major (rows, r) matrix p in place (modified Gram-Schmidt). */
export function orthogonalize(p: Float32Array, rows: number, r: number): void {
  for (let j = 0; j < r; j++) {
    for (let k = 0; k < j; k++) {
      let d = 0;
      for (let i = 0; i < rows; i++) d += p[i * r + j] * p[i * r + k];
      for (let i = 0; i < rows; i++) p[i * r + j] -= d * p[i * r + k];
    }
    let ss = 0;
    for (let i = 0; i < rows; i++) ss += p[i * r + j] * p[i * r + j];
    const inv = ss > 1e-30 ? 1 / Math.sqrt(ss) : 0; // a zero column stays zero
    for (let i = 0; i < rows; i++) p[i * r + j] *= inv;
  }
}

function matmul(a: Float32Array, b: Float32Array, out: Float32Array, M: number, N: number, K: number, transA: boolean, transB: boolean, alpha = 1, beta = 0): void {
  backend().matmul({ a, b, out, dtype: 'f32', batch: 1, M, N, K, transA, transB, strideA: 0, strideB: 0, alpha, beta });
}

export class PowerSGDCompressor extends BaseCompressor {
  readonly name = 'powersgd';
  readonly methodId = 10;
  readonly unbiased = false;
  /** Q of each tensor, kept across steps (the warm start). */
  private qs = new Map<string, Float32Array>();
  constructor(readonly rank: number) {
    super();
  }

  /** (rows, cols, r) for a tensor of this shape; r = 0 sends it uncompressed. */
  layout(numel: number, shape?: readonly number[]): { rows: number; cols: number; r: number } {
    if (!shape || shape.length < 2 || numel === 0) return { rows: numel, cols: 1, r: 0 };
    const rows = shape[0], cols = numel / rows;
    if (!Number.isInteger(cols)) throw new ShapeError(`'powersgd': shape ${fmtShape(shape)} has ${rows * cols} elements; expected ${numel}`);
    const r = Math.min(this.rank, rows, cols);
    return r * (rows + cols) < numel ? { rows, cols, r } : { rows: numel, cols: 1, r: 0 };
  }

  expectedBytes(numel: number, payload?: Uint8Array, shape?: readonly number[]): number {
    const { rows, cols, r } = payload && payload.length >= BODY
      ? { rows: getU32(payload, HEADER_BYTES), cols: getU32(payload, HEADER_BYTES + 4), r: getU32(payload, HEADER_BYTES + 8) }
      : this.layout(numel, shape);
    return BODY + 4 * (r === 0 ? numel : r * (rows + cols));
  }

  private warmQ(name: string, cols: number, r: number, rng: Rng): Float32Array {
    let q = this.qs.get(name);
    if (!q || q.length !== cols * r) {
      q = new Float32Array(cols * r);
      for (let i = 0; i < q.length; i++) q[i] = rng.normal();
      this.qs.set(name, q);
    }
    for (let j = 0; j < r; j++) { // a column that collapsed to zero gets a fresh random start
      let ss = 0;
      for (let i = 0; i < cols; i++) ss += q[i * r + j] * q[i * r + j];
      if (ss === 0) for (let i = 0; i < cols; i++) q[i * r + j] = rng.normal();
    }
    return q;
  }

  compress(g: Float32Array, ctx: CompressContext): Uint8Array {
    const n = g.length;
    const { rows, cols, r } = this.layout(n, ctx.shape);
    const p = newPayload(this.expectedBytes(n, undefined, ctx.shape), this.methodId, n);
    setU32(p, HEADER_BYTES, rows);
    setU32(p, HEADER_BYTES + 4, cols);
    setU32(p, HEADER_BYTES + 8, r);
    if (r === 0) {
      f32View(p, BODY, n).set(g);
      return p;
    }
    const q0 = this.warmQ(ctx.name, cols, r, ctx.rng);
    const P = f32View(p, BODY, rows * r), Q = f32View(p, BODY + 4 * rows * r, cols * r);
    matmul(g, q0, P, rows, r, cols, false, false); // P = M Q0        (rows, r)
    orthogonalize(P, rows, r);
    matmul(g, P, Q, cols, r, rows, true, false); //  Q = M^T P        (cols, r)
    q0.set(Q); // the next step starts from this Q
    return p;
  }

  decompressAdd(p: Uint8Array, out: Float32Array, alpha = 1): void {
    const n = out.length, who = this.name;
    readHeader(p, who, this.methodId, n);
    if (p.length < BODY) fail(who, 'length', `${p.length} bytes`, `at least ${BODY} (header, rows, cols, r)`);
    const rows = getU32(p, HEADER_BYTES), cols = getU32(p, HEADER_BYTES + 4), r = getU32(p, HEADER_BYTES + 8);
    if (rows * cols !== n) fail(who, 'rows x cols', `${rows} x ${cols}`, `a product of ${n}`);
    if (r > Math.min(rows, cols)) fail(who, 'rank', r, `<= min(rows, cols) = ${Math.min(rows, cols)}`);
    checkLength(p, who, BODY + 4 * (r === 0 ? n : r * (rows + cols)), r === 0 ? `20 + 4 x ${n}` : `20 + 4 x r(${r}) x (rows(${rows}) + cols(${cols}))`);
    if (r === 0) return addScaled(out, f32View(p, BODY, n), alpha);
    const P = f32View(p, BODY, rows * r), Q = f32View(p, BODY + 4 * rows * r, cols * r);
    matmul(P, Q, out, rows, cols, r, false, true, alpha, 1); // out += alpha P Q^T   (rows, cols)
  }

  /** The warm-start factors by tensor name (for checkpoints). */
  state(): Record<string, Float32Array> {
    return Object.fromEntries([...this.qs].map(([k, v]) => [k, v.slice()]));
  }
  load(state: Record<string, Float32Array>): void {
    this.qs = new Map(Object.entries(state).map(([k, v]) => [k, Float32Array.from(v)]));
  }
}
