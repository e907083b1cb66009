/**
 * out = alpha * op(a) @ op(b) + beta * out, batched. Operands are brought into row-major float32 A (M, K) and
 * Bt (N, K) (packing when transposed the other way or bf16; bf16 -> f32 is exact), so every output element is a
 * dot product of two contiguous rows. The kernel computes 4x4 output tiles with 16 float64 register accumulators
 * (each f32 x f32 product is exact in float64), over column panels of Bt sized to stay in L2. Measured ~2.3
 * GFLOP/s single-threaded in V8, about twice a loop-reordered (i, k, j) row-update kernel.
 */
import type { MatmulArgs, MatmulLowpArgs } from '../backend.js';
import { checkNf4, widenNf4 } from '../nf4.js';
import { cast } from './cast.js';

const PANEL_BYTES = 256 * 1024; // Bt rows per panel: as many as fit in this

/**
 * Writes the logical (rows, cols) matrix at `off` of `src` into row-major float32 `dst`. `src` holds it as
 * (rows, cols), or as (cols, rows) when `trans`; bf16 sources are widened (bits << 16).
 */
function pack(src: Float32Array | Uint16Array, bf16: boolean, off: number, rows: number, cols: number, trans: boolean,
  dst: Float32Array): void {
  if (bf16) {
    const s = src as Uint16Array;
    const d = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
    if (!trans) for (let i = 0, n = rows * cols; i < n; i++) d[i] = s[off + i] << 16;
    else for (let c = 0; c < cols; c++) for (let r = 0; r < rows; r++) d[r * cols + c] = s[off + c * rows + r] << 16;
  } else {
    const s = src as Float32Array;
    if (!trans) dst.set(s.subarray(off, off + rows * cols));
    else for (let c = 0; c < cols; c++) for (let r = 0; r < rows; r++) dst[r * cols + c] = s[off + c * rows + r];
  }
}

/** One output element: alpha * dot(A row, Bt row) + beta * out. */
function dot1(K: number, A: Float32Array, a0: number, Bt: Float32Array, b0: number): number {
  let c = 0;
  for (let k = 0; k < K; k++) c += A[a0 + k] * Bt[b0 + k];
  return c;
}

/** out[oOff..] = alpha * A @ Bt^T + beta * out for row-major f32 A (M, K) at aOff and Bt (N, K) at bOff. */
function gemm(M: number, N: number, K: number, A: Float32Array, aOff: number, Bt: Float32Array, bOff: number,
  out: Float32Array, oOff: number, alpha: number, beta: number): void {
  const panel = Math.max(4, Math.floor(PANEL_BYTES / (Math.max(K, 1) * 4)) & ~3);
  const M4 = M & ~3;
  for (let j0 = 0; j0 < N; j0 += panel) {
    const j1 = Math.min(N, j0 + panel);
    const J4 = j0 + ((j1 - j0) & ~3);
    for (let i = 0; i < M4; i += 4) {
      const a0 = aOff + i * K, a1 = a0 + K, a2 = a1 + K, a3 = a2 + K;
      for (let j = j0; j < J4; j += 4) {
        const b0 = bOff + j * K, b1 = b0 + K, b2 = b1 + K, b3 = b2 + K;
        let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        for (let k = 0; k < K; k++) {
          const x0 = A[a0 + k], x1 = A[a1 + k], x2 = A[a2 + k], x3 = A[a3 + k];
          const y0 = Bt[b0 + k], y1 = Bt[b1 + k], y2 = Bt[b2 + k], y3 = Bt[b3 + k];
          c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
          c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
          c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
          c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
        }
        const o0 = oOff + i * N + j, o1 = o0 + N, o2 = o1 + N, o3 = o2 + N;
        if (beta === 0) {
          out[o0] = alpha * c00; out[o0 + 1] = alpha * c01; out[o0 + 2] = alpha * c02; out[o0 + 3] = alpha * c03;
          out[o1] = alpha * c10; out[o1 + 1] = alpha * c11; out[o1 + 2] = alpha * c12; out[o1 + 3] = alpha * c13;
          out[o2] = alpha * c20; out[o2 + 1] = alpha * c21; out[o2 + 2] = alpha * c22; out[o2 + 3] = alpha * c23;
          out[o3] = alpha * c30; out[o3 + 1] = alpha * c31; out[o3 + 2] = alpha * c32; out[o3 + 3] = alpha * c33;
        } else {
          out[o0] = alpha * c00 + beta * out[o0]; out[o0 + 1] = alpha * c01 + beta * out[o0 + 1];
          out[o0 + 2] = alpha * c02 + beta * out[o0 + 2]; out[o0 + 3] = alpha * c03 + beta * out[o0 + 3];
          out[o1] = alpha * c10 + beta * out[o1]; out[o1 + 1] = alpha * c11 + beta * out[o1 + 1];
          out[o1 + 2] = alpha * c12 + beta * out[o1 + 2]; out[o1 + 3] = alpha * c13 + beta * out[o1 + 3];
          out[o2] = alpha * c20 + beta * out[o2]; out[o2 + 1] = alpha * c21 + beta * out[o2 + 1];
          out[o2 + 2] = alpha * c22 + beta * out[o2 + 2]; out[o2 + 3] = alpha * c23 + beta * out[o2 + 3];
          out[o3] = alpha * c30 + beta * out[o3]; out[o3 + 1] = alpha * c31 + beta * out[o3 + 1];
          out[o3 + 2] = alpha * c32 + beta * out[o3 + 2]; out[o3 + 3] = alpha * c33 + beta * out[o3 + 3];
        }
      }
    }
    // Edges: the last M % 4 rows over the whole panel, and the last (panel % 4) columns of the first M4 rows.
    for (let i = 0; i < M; i++) {
      const jStart = i < M4 ? J4 : j0;
      const a0 = aOff + i * K;
      for (let j = jStart; j < j1; j++) {
        const o = oOff + i * N + j;
        const c = dot1(K, A, a0, Bt, bOff + j * K);
        out[o] = beta === 0 ? alpha * c : alpha * c + beta * out[o];
      }
    }
  }
}

export function matmul(args: MatmulArgs): void {
  const { a, b, out, dtype, batch, M, N, K, transA, transB, strideA, strideB, alpha, beta } = args;
  if (dtype !== 'f32' && dtype !== 'bf16') throw new Error(`matmul: dtype must be 'f32' or 'bf16'; got '${dtype as string}'`);
  const bf16 = dtype === 'bf16';
  if (bf16 !== a instanceof Uint16Array || bf16 !== b instanceof Uint16Array) {
    throw new TypeError(`matmul: dtype '${dtype}' expects ${bf16 ? 'Uint16Array' : 'Float32Array'} operands`);
  }
  if (M === 0 || N === 0 || batch === 0) return;
  // A must be (M, K) row-major: stored so unless transA. Bt must be (N, K) row-major: stored so when transB.
  const pa = bf16 || transA ? new Float32Array(M * K) : null;
  const pb = bf16 || !transB ? new Float32Array(N * K) : null;
  let packedAOff = -1;
  let packedBOff = -1;
  for (let bi = 0; bi < batch; bi++) {
    const aOff = bi * strideA;
    const bOff = bi * strideB;
    let A = a as Float32Array, ao = aOff, Bt = b as Float32Array, bo = bOff;
    if (pa) {
      if (aOff !== packedAOff) pack(a, bf16, aOff, M, K, transA, pa);
      packedAOff = aOff;
      A = pa; ao = 0;
    }
    if (pb) {
      if (bOff !== packedBOff) pack(b, bf16, bOff, N, K, !transB, pb);
      packedBOff = bOff;
      Bt = pb; bo = 0;
    }
    gemm(M, N, K, A, ao, Bt, bo, out, bi * M * N, alpha, beta);
  }
}

/**
 * f32 a times one bf16, int8 (scales per stored row) or NF4 b (absmax per 64 elements). The portable backend widens b whole and reuses
 * `matmul` (it is the reference the native kernel's blocked widening is tested against, not a memory path).
 */
export function matmulLowp(args: MatmulLowpArgs): void {
  const { b, bDtype, scales, M, N, K, transB } = args;
  if ((args as { bias?: unknown }).bias) throw new Error('matmulLowp: takes no bias (start out as the bias and pass beta = 1)');
  const rows = transB ? N : K, cols = transB ? K : N;
  const wide = new Float32Array(rows * cols);
  if (bDtype === 'bf16') {
    if (!(b instanceof Uint16Array)) throw new TypeError(`matmulLowp: bDtype 'bf16' expects a Uint16Array b`);
    cast(b.subarray(0, rows * cols), 'bf16', wide, 'f32');
  } else if (bDtype === 'i8') {
    if (!(b instanceof Int8Array)) throw new TypeError(`matmulLowp: bDtype 'i8' expects an Int8Array b`);
    for (let r = 0; r < rows; r++) {
      const s = scales ? scales[r] : 1;
      for (let c = 0; c < cols; c++) wide[r * cols + c] = s * b[r * cols + c];
    }
  } else if (bDtype === 'nf4') {
    if (!(b instanceof Int8Array)) throw new TypeError(`matmulLowp: bDtype 'nf4' expects an Int8Array b (packed codes)`);
    checkNf4(b, scales, rows * cols);
    widenNf4(b, scales!, rows * cols, wide);
  } else {
    throw new Error(`matmulLowp: bDtype must be 'bf16', 'i8' or 'nf4'; got '${bDtype as string}'`);
  }
  matmul({ ...args, b: wide, dtype: 'f32', strideB: 0 });
}

