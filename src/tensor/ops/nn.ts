/**
 * Neural-network ops: softmax, norms, embedding, dropout, cross-entropy, attention, rotary embedding.
 * Each is a fused backend kernel with its gradient; tests check the fused forms against compositions.
 */
import { backend } from '../../backend/index.js';
import { DTypeError, IndexError, ShapeError, fmtShape } from '../../errors.js';
import { Tensor } from '../tensor.js';
import { record } from '../autograd.js';
import { normAxis, numel } from '../shape.js';
import { where, toTensor, binaryRaw } from './elementwise.js';
import { contiguous, permute, reshape, transpose } from './movement.js';
import { matmul } from './linalg.js';
import { sum } from './reduce.js';

/** Moves `axis` last (a view), runs `fn` on (rows, cols), and moves it back. */
function lastAxis(x: Tensor, axis: number, op: string, fn: (x: Tensor) => Tensor): Tensor {
  const ax = normAxis(axis, x.ndim, op);
  if (ax === x.ndim - 1) return fn(x);
  const dims = Array.from({ length: x.ndim }, (_, i) => i);
  dims[ax] = x.ndim - 1;
  dims[x.ndim - 1] = ax;
  return permute(fn(permute(x, dims)), dims);
}

function softmaxImpl(x: Tensor, axis: number, log: boolean): Tensor {
  const op = log ? 'logSoftmax' : 'softmax';
  return lastAxis(x, axis, op, (xl) => {
    const cols = xl.shape[xl.ndim - 1];
    const rows = cols === 0 ? 0 : xl.size / cols;
    const xd = xl.f32();
    const out = new Float32Array(xd.length);
    backend().softmax(xd, rows, cols, out, log);
    const y = new Tensor(out, 'f32', [...xl.shape]);
    return record(op, [xl], y, (gy) => {
      const dx = new Float32Array(out.length);
      backend().softmaxBackward(out, gy.f32(), rows, cols, dx, log);
      return [new Tensor(dx, 'f32', [...xl.shape])];
    });
  });
}
export const softmax = (x: Tensor, axis = -1): Tensor => softmaxImpl(x, axis, false);
export const logSoftmax = (x: Tensor, axis = -1): Tensor => softmaxImpl(x, axis, true);

function checkVector(p: Tensor | null, n: number, op: string, arg: string): void {
  if (p && (p.ndim !== 1 || p.shape[0] !== n)) {
    throw new ShapeError(`Argument '${arg}' passed to '${op}' has shape ${fmtShape(p.shape)}; expected [${n}]`);
  }
}

/** Layer norm over the last axis with optional affine parameters (gamma, beta of shape [D]). */
export function layerNorm(x: Tensor, gamma: Tensor | null, beta: Tensor | null, eps = 1e-5): Tensor {
  const D = x.shape[x.ndim - 1];
  checkVector(gamma, D, 'layerNorm', 'weight');
  checkVector(beta, D, 'layerNorm', 'bias');
  const rows = x.size / D;
  const xd = x.f32();
  const out = new Float32Array(xd.length), mean = new Float32Array(rows), rstd = new Float32Array(rows);
  const g = gamma ? gamma.f32() : null;
  backend().layerNorm(xd, g, beta ? beta.f32() : null, rows, D, eps, out, mean, rstd);
  const inputs = [x, ...(gamma ? [gamma] : []), ...(beta ? [beta] : [])];
  return record('layerNorm', inputs, new Tensor(out, 'f32', [...x.shape]), (gy) => {
    const dx = new Float32Array(xd.length);
    const dg = gamma ? new Float32Array(D) : null, db = beta ? new Float32Array(D) : null;
    backend().layerNormBackward(gy.f32(), xd, g, mean, rstd, rows, D, dx, dg, db);
    const grads: (Tensor | null)[] = [new Tensor(dx, 'f32', [...x.shape])];
    if (gamma) grads.push(new Tensor(dg as Float32Array, 'f32', [D]));
    if (beta) grads.push(new Tensor(db as Float32Array, 'f32', [D]));
    return grads;
  });
}

/** RMS norm over the last axis (Llama): x / sqrt(mean(x^2) + eps) * gamma. */
export function rmsNorm(x: Tensor, gamma: Tensor | null, eps = 1e-6): Tensor {
  const D = x.shape[x.ndim - 1];
  checkVector(gamma, D, 'rmsNorm', 'weight');
  const rows = x.size / D;
  const xd = x.f32();
  const out = new Float32Array(xd.length), rstd = new Float32Array(rows);
  const g = gamma ? gamma.f32() : null;
  backend().rmsNorm(xd, g, rows, D, eps, out, rstd);
  return record('rmsNorm', gamma ? [x, gamma] : [x], new Tensor(out, 'f32', [...x.shape]), (gy) => {
    const dx = new Float32Array(xd.length);
    const dg = gamma ? new Float32Array(D) : null;
    backend().rmsNormBackward(gy.f32(), xd, g, rstd, rows, D, dx, dg);
    return gamma ? [new Tensor(dx, 'f32', [...x.shape]), new Tensor(dg as Float32Array, 'f32', [D])] : [new Tensor(dx, 'f32', [...x.shape])];
  });
}

function checkIndices(idx: Int32Array, n: number, op: string, arg: string, allow?: number): void {
  for (let i = 0; i < idx.length; i++) {
    const v = idx[i];
    if ((v < 0 || v >= n) && v !== allow) {
      throw new IndexError(`Argument '${arg}' passed to '${op}' holds ${v} at position ${i}; expected values in [0, ${n})` +
        (allow !== undefined ? ` or ${allow}` : ''));
    }
  }
}

/** Embedding lookup: ids (any shape, i32) into table (V, D) -> (...ids.shape, D). */
export function embedding(ids: Tensor, table: Tensor): Tensor {
  if (table.ndim !== 2) throw new ShapeError(`Argument 'weight' passed to 'embedding' has shape ${fmtShape(table.shape)}; expected [V, D]`);
  const [V, D] = table.shape;
  const idx = ids.i32('embedding');
  checkIndices(idx, V, 'embedding', 'ids');
  const out = new Float32Array(idx.length * D);
  backend().gather(table.f32(), idx, D, out);
  return record('embedding', [table], new Tensor(out, 'f32', [...ids.shape, D]), (gy) => {
    const dt = new Float32Array(V * D);
    backend().scatterAdd(gy.f32(), idx, D, dt);
    return [new Tensor(dt, 'f32', [V, D])];
  });
}

/** Inverted dropout with a counter-based mask from `seed` (identity when p = 0). */
export function dropout(x: Tensor, p: number, seed: number): Tensor {
  if (!(p >= 0 && p < 1)) throw new ShapeError(`Argument 'p' passed to 'dropout' is ${p}; expected a probability in [0, 1)`);
  if (p === 0) return x;
  const mask = new Float32Array(x.size);
  backend().dropoutMask(seed >>> 0, p, mask);
  const m = new Tensor(mask, 'f32', [...x.shape]);
  return record('dropout', [x], binaryRaw('mul', x, m), (gy) => [binaryRaw('mul', gy, m)]);
}

export interface CrossEntropyOptions {
  ignoreIndex?: number;
  labelSmoothing?: number;
  reduction?: 'mean' | 'sum' | 'none';
}

/**
 * Cross-entropy of logits (N, C) (or (..., C)) against i32 targets (N) (or (...)), PyTorch semantics:
 * 'mean' divides by the number of targets that are not `ignoreIndex`.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const { ignoreIndex = -100, labelSmoothing = 0, reduction = 'mean' } = opts;
  if (!(labelSmoothing >= 0 && labelSmoothing <= 1)) {
    throw new ShapeError(`Argument 'labelSmoothing' passed to 'crossEntropy' is ${labelSmoothing}; expected a value in [0, 1]`);
  }
  const C = logits.shape[logits.ndim - 1];
  const rows = logits.size / C;
  if (targets.size !== rows || numel(targets.shape) !== numel(logits.shape.slice(0, -1))) {
    throw new ShapeError(`Argument 'targets' passed to 'crossEntropy' has shape ${fmtShape(targets.shape)}; expected ${fmtShape(logits.shape.slice(0, -1))} to match logits ${fmtShape(logits.shape)}`);
  }
  if (targets.dtype !== 'i32') throw new DTypeError(`Argument 'targets' passed to 'crossEntropy' has dtype ${targets.dtype}; expected i32 class indices`);
  const t = targets.i32('crossEntropy');
  checkIndices(t, C, 'crossEntropy', 'targets', ignoreIndex);
  const loss = new Float32Array(rows), logp = new Float32Array(rows * C);
  backend().crossEntropy(logits.f32(), t, rows, C, ignoreIndex, labelSmoothing, loss, logp);
  let count = 0;
  for (let i = 0; i < rows; i++) if (t[i] !== ignoreIndex) count++;
  let y: Tensor;
  let scale: number;
  if (reduction === 'none') {
    y = new Tensor(loss, 'f32', [...targets.shape]);
    scale = 1;
  } else {
    let s = 0;
    for (let i = 0; i < rows; i++) s += loss[i];
    scale = reduction === 'mean' ? 1 / count : 1; // mean over zero targets is NaN, as in PyTorch
    y = new Tensor(new Float32Array([s * scale]), 'f32', []);
  }
  return record('crossEntropy', [logits], y, (gy) => {
    let dl: Float32Array;
    if (reduction === 'none') dl = gy.f32();
    else dl = new Float32Array(rows).fill(gy.item() * scale);
    const dx = new Float32Array(rows * C);
    backend().crossEntropyBackward(logp, t, rows, C, ignoreIndex, labelSmoothing, dl, dx);
    return [new Tensor(dx, 'f32', [...logits.shape])];
  });
}

/** x with `value` where mask != 0 (mask broadcasts against x). */
export function maskedFill(x: Tensor, mask: Tensor, value: number): Tensor {
  return where(mask, toTensor(value), x);
}

const causalMasks = new Map<string, Tensor>();
/** (Tq, Tk) mask with 1 above the diagonal (future positions), cached per size. */
export function causalMask(Tq: number, Tk: number): Tensor {
  const key = `${Tq}x${Tk}`;
  let m = causalMasks.get(key);
  if (!m) {
    const d = new Float32Array(Tq * Tk);
    const shift = Tk - Tq; // queries are the last Tq positions (KV cache)
    for (let i = 0; i < Tq; i++) for (let j = i + shift + 1; j < Tk; j++) d[i * Tk + j] = 1;
    m = new Tensor(d, 'f32', [Tq, Tk]);
    causalMasks.set(key, m);
  }
  return m;
}

export interface AttentionOptions {
  causal?: boolean;
  /** Broadcastable to (B, H, Tq, Tk): 1 where attention is NOT allowed (padding), 0 elsewhere. */
  mask?: Tensor | null;
  /** Defaults to 1/sqrt(head size). */
  scale?: number;
}

/** softmax(q k^T * scale + masks) v for q (B, H, Tq, hs), k and v (B, H, Tk, hs). */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  if (q.ndim !== 4 || k.ndim !== 4 || v.ndim !== 4 || q.shape[3] !== k.shape[3] || k.shape[2] !== v.shape[2]) {
    throw new ShapeError(`'scaledDotProductAttention' needs q (B,H,Tq,hs), k (B,H,Tk,hs), v (B,H,Tk,hv); got ${fmtShape(q.shape)}, ${fmtShape(k.shape)}, ${fmtShape(v.shape)}`);
  }
  const hs = q.shape[3], Tq = q.shape[2], Tk = k.shape[2];
  const scale = opts.scale ?? 1 / Math.sqrt(hs);
  let att = matmul(q, transpose(k, -2, -1), scale); // (B, H, Tq, Tk)
  if (opts.causal) att = maskedFill(att, causalMask(Tq, Tk), -Infinity);
  if (opts.mask) att = maskedFill(att, opts.mask, -Infinity);
  return matmul(softmax(att, -1), v); // (B, H, Tq, hv)
}

/**
 * Rotary position embedding for x (B, H, T, D) with cos/sin tables (T, rotDim/2), rotate-half layout,
 * rotating the first rotDim features (partial rotary when rotDim < D).
 */
export function rope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  if (x.ndim !== 4) throw new ShapeError(`Argument 'x' passed to 'rope' has shape ${fmtShape(x.shape)}; expected (B, H, T, D)`);
  const [B, H, T, D] = x.shape;
  const half = cos.shape[cos.ndim - 1];
  if (cos.ndim !== 2 || cos.shape[0] !== T || sin.shape[0] !== T || sin.shape[1] !== half || 2 * half > D) {
    throw new ShapeError(`'rope' tables cos ${fmtShape(cos.shape)} / sin ${fmtShape(sin.shape)} do not fit x ${fmtShape(x.shape)}; expected [${T}, rotDim/2] with rotDim <= ${D}`);
  }
  const c = cos.f32(), s = sin.f32();
  const xd = x.f32();
  const out = new Float32Array(xd.length);
  backend().rope(xd, c, s, B * H, T, D, 2 * half, false, out);
  return record('rope', [x], new Tensor(out, 'f32', [...x.shape]), (gy) => {
    const dx = new Float32Array(xd.length);
    backend().rope(gy.f32(), c, s, B * H, T, D, 2 * half, true, dx);
    return [new Tensor(dx, 'f32', [...x.shape])];
  });
}

/** Mean over `axis` of the positions where mask (same leading shape) is 1: masked mean-pooling. */
export function maskedMean(x: Tensor, mask: Tensor, axis = 1): Tensor {
  const m = reshape(mask, [...mask.shape, 1]);
  return sum(x.mul(m), axis).div(sum(m, axis).add(1e-9));
}
