/**
 * Neural-network ops: softmax, norms, embedding, dropout, cross-entropy, attention, rotary embedding.
 * Each is a fused backend kernel with its gradient; tests check the fused forms against compositions.
 */
import { backend } from '../../backend/index.js';
import { DeviceError, DTypeError, IndexError, ShapeError, fmtShape } from '../../errors.js';
import { isDeviceStorage, ownsWholeBuffer, releaseBuffer, uninitF32, zerosF32 } from '../alloc.js';
import { Tensor } from '../tensor.js';
import { record } from '../autograd.js';
import { normAxis, numel } from '../shape.js';
import { where, toTensor, binaryRaw, maximum, holdsNoInput, releasable } from './elementwise.js';
import { contiguous, permute, reshape, slice, transpose } from './movement.js';
import { matmul } from './linalg.js';
import { attentionBf16, attnView, bf16AttentionBackend, bf16AttentionTiles, type FusedQKV, type Strides3 } from './attention-bf16.js';
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
    const out = uninitF32(xd.length);
    backend().softmax(xd, rows, cols, out, log);
    const shape = [...xl.shape]; // the backward pass reads the output only
    const y = new Tensor(out, 'f32', [...shape]);
    return record(op, [xl], y, (gy) => {
      const dx = uninitF32(out.length);
      backend().softmaxBackward(out, gy.f32(), rows, cols, dx, log);
      return [new Tensor(dx, 'f32', [...shape])];
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

/** Options of layerNorm (and the LayerNorm module). */
export interface NormOptions {
  /**
   * The caller hands the output to ops of the graph being recorded and keeps no reference to it itself (a pre-LN
   * block's norm, read by the sublayer's first product alone): where the backward pass rebuilds xhat from the
   * output, the graph's last pass writes the input's gradient over the output's buffer instead of into a new one
   * (each row's xhat is read before its gradient is written: the same bits). Without it, the dead output waits for
   * V8's next collection and the gradient takes fresh memory, which drive V8's collections (20 MB a cls-lora step).
   */
  privateOutput?: boolean;
}

/** Layer norm over the last axis with optional affine parameters (gamma, beta of shape [D]). */
export function layerNorm(x: Tensor, gamma: Tensor | null, beta: Tensor | null, eps = 1e-5, opts: NormOptions = {}): Tensor {
  const D = x.shape[x.ndim - 1];
  checkVector(gamma, D, 'layerNorm', 'weight');
  checkVector(beta, D, 'layerNorm', 'bias');
  const rows = x.size / D;
  const xd = x.f32();
  const out = uninitF32(xd.length), mean = zerosF32(rows), rstd = zerosF32(rows);
  const g = gamma ? gamma.f32() : null, bt = beta ? beta.f32() : null;
  backend().layerNorm(xd, g, bt, rows, D, eps, out, mean, rstd);
  const inputs = [x, ...(gamma ? [gamma] : []), ...(beta ? [beta] : [])];
  if (!inputs.some((t) => t.requiresGrad)) return new Tensor(out, 'f32', [...x.shape]);
  // The backward pass needs xhat. It is rebuilt from the output where gamma allows it (as Apex's memory-efficient
  // LayerNorm does): the output is held anyway wherever a trainable Linear or a LoRA factor reads it (every pre-LN
  // block's qkv under LoRA), so the input need not be held too: one activation less per LayerNorm (37 MB on
  // GPT-2 small at 8 x 128 tokens).
  const saved = g !== null && outputInvertible(g, bt) ? { y: out } : { x: xd, mean };
  const shape = [...x.shape];
  const y = new Tensor(out, 'f32', shape);
  // out is a whole buffer of its own (uninitF32; not device storage, where kernels never write over an input)
  const own = !!opts.privateOutput && 'y' in saved && ownsWholeBuffer(y);
  const r = record('layerNorm', inputs, y, layerNormBackwardOf(saved, g, bt, rstd, rows, D, shape, own, x.requiresGrad));
  return 'y' in saved ? holdsNoInput(r) : r;
}
/**
 * The backward closure of layerNorm, made apart from it so that it holds only `saved` (x or y), never both; `own`:
 * y is the op's alone once the graph's consumers are done (NormOptions.privateOutput), so the last pass writes dx over it.
 * `needX`: the input takes a gradient. Where it takes none (a model's first norm over a frozen embedding, the block
 * workload's input) the kernel's dx goes back to the pool at once; left to the graph, it was dropped for V8 to
 * collect, 1 MB of fresh memory a block step.
 */
function layerNormBackwardOf(saved: { y: Float32Array } | { x: Float32Array; mean: Float32Array }, g: Float32Array | null,
  bt: Float32Array | null, rstd: Float32Array, rows: number, D: number, shape: number[], own: boolean,
  needX: boolean): (gy: Tensor, last?: boolean) => (Tensor | null)[] {
  return (gy, last) => {
    const dx = own && last && 'y' in saved && gy.storage.buffer !== saved.y.buffer ? saved.y : uninitF32(rows * D);
    const dg = g ? zerosF32(D) : null, db = bt ? zerosF32(D) : null;
    const gd = gy.f32();
    if ('y' in saved) backend().layerNormBackwardFromOutput(gd, saved.y, g as Float32Array, bt, rstd, rows, D, dx, dg, db);
    else backend().layerNormBackward(gd, saved.x, g, saved.mean, rstd, rows, D, dx, dg, db);
    // a dense copy of a strided gy (mean pooling's broadcast gradient after a final norm) is this pass's own
    if (gd.buffer !== gy.storage.buffer) releaseBuffer(gd);
    if (!needX) releaseBuffer(dx); // this pass's own, or y on its last pass where y is the op's alone (own)
    const grads: (Tensor | null)[] = [needX ? new Tensor(dx, 'f32', shape) : null];
    if (dg) grads.push(new Tensor(dg, 'f32', [D]));
    if (db) grads.push(new Tensor(db, 'f32', [D]));
    return grads;
  };
}

/**
 * Whether xhat = (y - beta) / gamma recovers the normalised input to within a few float ulps: the division adds
 * one rounding, and y - beta loses about ulp(|beta_i|) / |gamma_i| to cancellation, so every |beta_i| must stay
 * within 16 |gamma_i| (an error of at most ~16 ulps of 1 in xhat) and no gamma_i may be 0 or subnormal-small.
 */
function outputInvertible(g: Float32Array, b: Float32Array | null): boolean {
  // gamma on a device cannot be read here without waiting: keep the input instead (exact either way, one more activation)
  if (isDeviceStorage(g)) return false;
  for (let i = 0; i < g.length; i++) {
    const a = Math.abs(g[i]);
    if (!(a >= 1e-30) || a === Infinity) return false;
    if (b && !(Math.abs(b[i]) <= 16 * a)) return false;
  }
  return true;
}

/** RMS norm over the last axis (Llama): x / sqrt(mean(x^2) + eps) * gamma. */
export function rmsNorm(x: Tensor, gamma: Tensor | null, eps = 1e-6): Tensor {
  const D = x.shape[x.ndim - 1];
  checkVector(gamma, D, 'rmsNorm', 'weight');
  const rows = x.size / D;
  const xd = x.f32();
  const out = uninitF32(xd.length), rstd = zerosF32(rows);
  const g = gamma ? gamma.f32() : null;
  backend().rmsNorm(xd, g, rows, D, eps, out, rstd);
  const shape = [...x.shape];
  // As layerNorm: xhat = y / gamma from the output (exact to rounding for any nonzero gamma), so the input is freed.
  const saved = g && outputInvertible(g, null) ? { y: out } : { x: xd };
  const r = record('rmsNorm', gamma ? [x, gamma] : [x], new Tensor(out, 'f32', shape), rmsNormBackwardOf(saved, g, rstd, rows, D, shape, x.requiresGrad));
  return 'y' in saved ? holdsNoInput(r) : r;
}
/** The backward closure of rmsNorm (holds x or y, as layerNormBackwardOf; `needX` as there). */
function rmsNormBackwardOf(saved: { y: Float32Array } | { x: Float32Array }, g: Float32Array | null, rstd: Float32Array, rows: number,
  D: number, shape: number[], needX: boolean): (gy: Tensor) => (Tensor | null)[] {
  return (gy) => {
    const dx = uninitF32(rows * D);
    const dg = g ? zerosF32(D) : null;
    if ('y' in saved) backend().rmsNormBackwardFromOutput(gy.f32(), saved.y, g as Float32Array, rstd, rows, D, dx, dg);
    else backend().rmsNormBackward(gy.f32(), saved.x, g, rstd, rows, D, dx, dg);
    if (!needX) releaseBuffer(dx);
    const gx = needX ? new Tensor(dx, 'f32', shape) : null;
    return g ? [gx, new Tensor(dg as Float32Array, 'f32', [D])] : [gx];
  };
}

export function checkIndices(idx: Int32Array, n: number, op: string, arg: string, allow?: number): void {
  if (isDeviceStorage(idx)) {
    throw new DeviceError(`Argument '${arg}' passed to '${op}' is a device tensor; indices are checked on the CPU, so keep index tensors (ids, targets) in CPU memory (the device backend uploads them)`);
  }
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
  const out = uninitF32(idx.length * D);
  if (table.dtype === 'f32') {
    backend().gather(table.f32(), idx, D, out);
  } else {
    // 16-bit (or int8) storage: convert only the rows looked up, never the whole table
    const src = table.dense();
    for (let i = 0; i < idx.length; i++) backend().cast(src.subarray(idx[i] * D, (idx[i] + 1) * D), table.dtype, out.subarray(i * D, (i + 1) * D), 'f32');
  }
  return record('embedding', [table], new Tensor(out, 'f32', [...ids.shape, D]), (gy) => {
    const dt = zerosF32(V * D);
    backend().scatterAdd(gy.f32(), idx, D, dt);
    return [new Tensor(dt, 'f32', [V, D])];
  });
}

/** Inverted dropout with a counter-based mask from `seed` (identity when p = 0). */
export function dropout(x: Tensor, p: number, seed: number): Tensor {
  if (!(p >= 0 && p < 1)) throw new ShapeError(`Argument 'p' passed to 'dropout' is ${p}; expected a probability in [0, 1)`);
  if (p === 0) return x;
  const mask = uninitF32(x.size);
  backend().dropoutMask(seed >>> 0, p, mask);
  const m = new Tensor(mask, 'f32', [...x.shape]);
  return record('dropout', [x], binaryRaw('mul', x, m), (gy) => [binaryRaw('mul', gy, m)]);
}

export interface CrossEntropyOptions {
  ignoreIndex?: number;
  labelSmoothing?: number;
  reduction?: 'mean' | 'sum' | 'none';
  /**
   * The logits are a temporary that nothing reads afterwards (a model's own loss): the loss keeps them (or the
   * log-probabilities written over them) for its backward pass, which writes the gradient over them, so a
   * (tokens x vocabulary) buffer is not held twice at the peak of a step.
   */
  consumeLogits?: boolean;
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
  const own = opts.consumeLogits && logits.dtype === 'f32' && logits.spansStorage;
  const be = backend();
  // Owned logits without label smoothing: the forward pass takes each row's log-sum-exp alone, and the backward pass
  // makes the probabilities from the logits kept (Backend.crossEntropyLse): one pass fewer over the (rows x C) buffer
  // than writing the log-probabilities there and reading them back, the same bits.
  const lseOnly = own && labelSmoothing === 0 && !!be.crossEntropyLse && !!be.crossEntropyBackwardLse && !isDeviceStorage(logits.storage);
  const loss = zerosF32(rows), logp = own ? (logits.storage as Float32Array) : uninitF32(rows * C);
  const lse = lseOnly ? new Float32Array(rows) : null;
  if (lse) be.crossEntropyLse!(logp, t, rows, C, ignoreIndex, loss, lse);
  else be.crossEntropy(logits.f32(), t, rows, C, ignoreIndex, labelSmoothing, loss, logp);
  let count = 0;
  for (let i = 0; i < rows; i++) if (t[i] !== ignoreIndex) count++;
  let y: Tensor;
  let scale: number;
  if (reduction === 'none') {
    y = new Tensor(loss, 'f32', [...targets.shape]);
    scale = 1;
  } else {
    scale = reduction === 'mean' ? 1 / count : 1; // mean over zero targets is NaN, as in PyTorch
    if (isDeviceStorage(loss)) {
      // on the device: the sum and the scale by kernels (f32 accumulation there; f64 here), nothing read back
      const s = zerosF32(1);
      backend().reduce('sum', loss, 1, rows, 1, s);
      backend().affine(s, scale, 0, s);
      y = new Tensor(s, 'f32', []);
    } else {
      let s = 0;
      for (let i = 0; i < rows; i++) s += loss[i];
      y = new Tensor(new Float32Array([s * scale]), 'f32', []);
    }
  }
  // The backward pass needs the log-probabilities (or the owned logits and lse), not the logits tensor: keep only its shape.
  const shape = [...logits.shape];
  return record('crossEntropy', [logits], y, (gy, last) => {
    let dl: Float32Array;
    if (reduction === 'none') dl = gy.f32();
    else if (gy.onDevice) {
      // dl[r] = gy * scale for every row, without reading gy back: a stride-0 product
      dl = zerosF32(rows);
      backend().binary('mul', gy.f32(), [0], Float32Array.of(scale), [0], [rows], dl);
    } else dl = new Float32Array(rows).fill(gy.item() * scale);
    // On the graph's last pass the log-probabilities are dead once read: the gradient overwrites them in place
    // (the kernels are element-wise per row), so the logits-sized buffer is not needed twice at the peak.
    const dx = last ? logp : uninitF32(rows * C);
    if (lse) backend().crossEntropyBackwardLse!(logp, lse, t, rows, C, ignoreIndex, dl, dx);
    else backend().crossEntropyBackward(logp, t, rows, C, ignoreIndex, labelSmoothing, dl, dx);
    return [new Tensor(dx, 'f32', shape)];
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

/**
 * Packed rows (several documents per row, each attending within itself): a key mask (or null) plus the first key
 * each query may see, `firstKey` (B * Tq, row-major), its document's start; with `causal` this is the per-document
 * causal mask, and it runs in the fused kernel.
 */
export interface PackedMask {
  keyMask: Tensor | null;
  firstKey: Int32Array;
}

export interface AttentionOptions {
  causal?: boolean;
  /**
   * 1 where attention is NOT allowed (padding), 0 elsewhere. A key mask of shape (B, Tk) or (B, 1, 1, Tk) runs
   * in the fused kernel; any other shape broadcastable to (B, H, Tq, Tk) runs the composed form. A `PackedMask`
   * adds each query's first allowed key (packed rows).
   */
  mask?: Tensor | PackedMask | null;
  /** Defaults to 1/sqrt(head size). */
  scale?: number;
}

/** The key mask (B, Tk) of a (B, Tk) or (B, 1, 1, Tk) mask tensor, else null (not a key mask). */
function keyMaskOf(mask: Tensor | null | undefined, B: number, Tk: number): Float32Array | null | undefined {
  if (!mask) return null;
  const s = mask.shape;
  const isKey = (s.length === 2 && s[0] === B && s[1] === Tk) || (s.length === 4 && s[0] === B && s[1] === 1 && s[2] === 1 && s[3] === Tk);
  return isKey ? mask.f32() : undefined;
}

/**
 * The fused kernel over q (B, H, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv) views. The output is laid out
 * (B, Tq, H, Dv) and returned as a (B, H, Tq, Dv) view, so merging heads afterwards is free. Gradients come back
 * in (B, T, H, D) layouts as (B, H, T, D) views, or, with `fusedGrad`, written into one buffer shaped like the
 * tensor that q, k and v are views of (a fused qkv projection).
 */
function attentionKernel(q: Tensor, k: Tensor, v: Tensor, keyMask: Float32Array | null, firstKey: Int32Array | null, causal: boolean, scale: number,
  fused: FusedQKV | null): Tensor {
  const [B, H, Tq, D] = q.shape;
  const [, Hkv, Tk] = k.shape;
  const Dv = v.shape[3];
  // bf16 autocast with bf16 hardware: the products in bf16 (on AMX tiles from 16 tokens on; else batched, unless the
  // masks leave little of the square)
  const lowp = bf16AttentionBackend(H, Hkv, Tq, Tk, { B, causal, keyMask, firstKey }, D, Dv);
  if (lowp) return attentionBf16(lowp, q, k, v, keyMask, firstKey, causal, scale, fused);
  const Q = attnView(q), K = attnView(k), V = attnView(v);
  const out = uninitF32(B * Tq * H * Dv);
  // per-row softmax statistics (B, H, Tq, 2): the backward pass rebuilds P from them instead of keeping it
  const stats = zerosF32(B * H * Tq * 2);
  const shape = { B, H, Hkv, Tq, Tk, D, Dv, qStrides: Q.st, kStrides: K.st, vStrides: V.st, outStrides: [Tq * H * Dv, Dv, H * Dv] as Strides3, scale, causal };
  backend().attention(shape, Q.buf, K.buf, V.buf, keyMask, firstKey, out, stats);
  const y = new Tensor(out, 'f32', [B, H, Tq, Dv], [Tq * H * Dv, Dv, H * Dv, 1]);
  const grads = (gy: Tensor, dq: Float32Array, dk: Float32Array, dv: Float32Array) => {
    const G = attnView(gy);
    backend().attentionBackward(shape, Q.buf, K.buf, V.buf, keyMask, firstKey, stats, G.buf, G.st, dq, dk, dv);
  };
  if (fused) {
    // q, k, v are views of `base` (contiguous): write all three gradients into one buffer shaped like it.
    const base = fused.base;
    // q, k, v are disjoint slices of base: where they make up all of it, the kernel writes every element of d
    const covers = q.size + k.size + v.size === base.size;
    const r = fused.record(y, (gy, last) => {
      const d = covers ? uninitF32(base.size) : zerosF32(base.size);
      grads(gy, d.subarray(q.offset - base.offset), d.subarray(k.offset - base.offset), d.subarray(v.offset - base.offset));
      if (last && fused.own) releaseBuffer(base.storage as Float32Array); // q, k, v read for the last time
      return new Tensor(d, 'f32', [...base.shape]);
    });
    if (fused.own && !r.node) releaseBuffer(base.storage as Float32Array); // no graph: read for the last time
    return r;
  }
  return record('attention', [q, k, v], y, (gy) => {
    // (B, T, H, D) layouts, returned as (B, H, T, D) views
    const dq = uninitF32(B * Tq * H * D), dk = uninitF32(B * Tk * Hkv * D), dv = uninitF32(B * Tk * Hkv * Dv);
    const lay = (buf: Float32Array, T: number, Hh: number, Dd: number) => new Tensor(buf, 'f32', [B, Hh, T, Dd], [T * Hh * Dd, Dd, Hh * Dd, 1]);
    const sq = { ...shape, qStrides: [Tq * H * D, D, H * D] as Strides3, kStrides: [Tk * Hkv * D, D, Hkv * D] as Strides3, vStrides: [Tk * Hkv * Dv, Dv, Hkv * Dv] as Strides3 };
    // The kernel addresses dq/dk/dv with the strides of q/k/v: give it dense copies of q, k, v in the same layouts.
    const relay = (t: Tensor, T: number, Hh: number, Dd: number): Float32Array => {
      const want = [T * Hh * Dd, Dd, Hh * Dd];
      if (t.strides[3] === 1 && want.every((w, i) => w === t.strides[i] || t.shape[i] === 1)) {
        return (t.offset ? (t.storage as Float32Array).subarray(t.offset) : t.storage) as Float32Array;
      }
      const buf = uninitF32(B * T * Hh * Dd);
      backend().stridedCopy(t.storage.subarray(t.offset), [...t.shape], [...t.strides], buf, [T * Hh * Dd, Dd, Hh * Dd, 1]);
      return buf;
    };
    const G = attnView(gy);
    backend().attentionBackward(sq, relay(Q.t, Tq, H, D), relay(K.t, Tk, Hkv, D), relay(V.t, Tk, Hkv, Dv), keyMask, firstKey, stats, G.buf, G.st, dq, dk, dv);
    return [lay(dq, Tq, H, D), lay(dk, Tk, Hkv, D), lay(dv, Tk, Hkv, Dv)];
  });
}

/**
 * softmax(q k^T * scale + masks) v for q (B, H, Tq, hs), k and v (B, Hkv, Tk, hs) (Hkv divides H: grouped-query
 * attention). Causal and key-padding masks run in one fused kernel; other masks in the composed form.
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  if (q.ndim !== 4 || k.ndim !== 4 || v.ndim !== 4 || q.shape[3] !== k.shape[3] || k.shape[2] !== v.shape[2] ||
    q.shape[0] !== k.shape[0] || k.shape[1] !== v.shape[1] || q.shape[1] % k.shape[1] !== 0) {
    throw new ShapeError(`'scaledDotProductAttention' needs q (B,H,Tq,hs), k (B,Hkv,Tk,hs), v (B,Hkv,Tk,hv) with Hkv dividing H; got ${fmtShape(q.shape)}, ${fmtShape(k.shape)}, ${fmtShape(v.shape)}`);
  }
  const hs = q.shape[3], Tq = q.shape[2], Tk = k.shape[2];
  const scale = opts.scale ?? 1 / Math.sqrt(hs);
  const { mask, firstKey } = splitMask(opts.mask, q.shape[0], Tq, Tk);
  const km = keyMaskOf(mask, q.shape[0], Tk);
  if (km !== undefined) return attentionKernel(q, k, v, km, firstKey, !!opts.causal, scale, null);
  return composedAttention(q, k, v, opts.causal ?? false, withFirstKey(mask, firstKey, q.shape[0], Tq, Tk), scale, Tq, Tk);
}

/** A mask option as a tensor mask (or null) and the first allowed keys of a PackedMask (checked), or null. */
function splitMask(m: Tensor | PackedMask | null | undefined, B: number, Tq: number, Tk: number): { mask: Tensor | null; firstKey: Int32Array | null } {
  if (!m || m instanceof Tensor) return { mask: m ?? null, firstKey: null };
  if (!(m.firstKey instanceof Int32Array) || m.firstKey.length !== B * Tq) {
    throw new ShapeError(`attention: a packed mask's firstKey must be an Int32Array of B * Tq = ${B * Tq} entries; got ${m.firstKey?.length ?? typeof m.firstKey}`);
  }
  for (const f of m.firstKey) if (!(f >= 0 && f < Tk)) throw new ShapeError(`attention: a packed mask's firstKey holds ${f}; expected key indices 0..${Tk - 1}`);
  return { mask: m.keyMask, firstKey: m.firstKey };
}

/** The composed form's mask: `mask` with the keys before each query's first allowed key masked too. */
function withFirstKey(mask: Tensor | null, firstKey: Int32Array | null, B: number, Tq: number, Tk: number): Tensor | null {
  if (!firstKey) return mask;
  const d = new Float32Array(B * Tq * Tk);
  for (let r = 0; r < B * Tq; r++) d.fill(1, r * Tk, r * Tk + firstKey[r]);
  const fk = new Tensor(d, 'f32', [B, 1, Tq, Tk]);
  return mask ? maximum(mask, fk) : fk;
}

/** The composed form (reference for the fused kernel; used for general masks). */
export function composedAttention(q: Tensor, k: Tensor, v: Tensor, causal: boolean, mask: Tensor | null, scale: number, Tq: number, Tk: number): Tensor {
  const groups = q.shape[1] / k.shape[1];
  if (groups > 1) {
    // repeat each kv head for its group of query heads: (B, Hkv, T, d) -> (B, H, T, d)
    const rep = (t: Tensor) => reshape(contiguous(t.unsqueeze(2).expand([t.shape[0], t.shape[1], groups, t.shape[2], t.shape[3]])),
      [t.shape[0], t.shape[1] * groups, t.shape[2], t.shape[3]]);
    k = rep(k);
    v = rep(v);
  }
  let att = matmul(q, transpose(k, -2, -1), scale); // (B, H, Tq, Tk)
  if (causal) att = maskedFill(att, causalMask(Tq, Tk), -Infinity);
  if (mask) att = maskedFill(att, mask, -Infinity);
  return matmul(softmax(att, -1), v); // (B, H, Tq, hv)
}

/**
 * Self-attention on a fused projection qkv (B, T, 3C) (GPT-2's c_attn layout: q, k, v blocks of C, heads inside
 * each): returns (B, T, C) with heads merged. Reads q, k, v in place and writes d(qkv) directly. Under bf16 autocast
 * on AMX tiles (with bf16 product outputs) the result is a bf16 tensor, as PyTorch's autocast gives attention's
 * output: made for the output projection that reads it (the library's models' use), which takes it as it is.
 */
export function fusedQKVAttention(qkv: Tensor, heads: number, opts: AttentionOptions & {
  /**
   * The caller reads qkv no more (a fresh projection's output): where its buffer is this op's alone (see
   * `releasable`), it goes back to the pool as soon as nothing reads it (after the forward pass where the bf16 kernel
   * keeps its own copies, else after the graph's last backward pass).
   */
  consume?: boolean;
} = {}): Tensor {
  const [B, T, C3] = qkv.shape;
  if (qkv.ndim !== 3 || C3 % 3 !== 0 || (C3 / 3) % heads !== 0) {
    throw new ShapeError(`Argument 'qkv' passed to 'fusedQKVAttention' has shape ${fmtShape(qkv.shape)}; expected (B, T, 3C) with C divisible by heads=${heads}`);
  }
  const C = C3 / 3, hs = C / heads;
  const { mask, firstKey } = splitMask(opts.mask, B, T, T);
  const km = keyMaskOf(mask, B, T);
  // a bf16 qkv (its projection wrote it so: fusedQKVReadsBf16) is read as it is on the tiles, widened elsewhere
  const kept = contiguous(qkv);
  const base = kept.dtype === 'f32' || (km !== undefined && bf16AttentionTiles(heads, T, T, hs, hs)) ? kept : kept.to('f32');
  const view = new Tensor(base.storage, base.dtype, [B, T, 3, heads, hs], [T * C3, C3, C, hs, 1], base.offset).permute([2, 0, 3, 1, 4]); // (3, B, nh, T, hs)
  if (km === undefined) {
    const parts = [0, 1, 2].map((i) => slice(base, 2, i * C, (i + 1) * C).reshape([B, T, heads, hs]).transpose(1, 2));
    const o = composedAttention(parts[0], parts[1], parts[2], !!opts.causal, withFirstKey(mask, firstKey, B, T, T), opts.scale ?? 1 / Math.sqrt(hs), T, T);
    return reshape(o.transpose(1, 2), [B, T, C]);
  }
  const pick = (i: number) => new Tensor(base.storage, base.dtype, view.shape.slice(1), view.strides.slice(1), base.offset + i * C);
  const y = attentionKernel(pick(0), pick(1), pick(2), km, firstKey, !!opts.causal, opts.scale ?? 1 / Math.sqrt(hs), {
    base,
    own: !!opts.consume && base === qkv && releasable(qkv), // f32, or bf16 (a projection written so)
    record: (out, bw) => record('fusedQKVAttention', [base], out, gradOf(bw)),
  });
  // (B, H, T, hs) view over a (B, T, H, hs) buffer: merging heads is a free reshape
  return reshape(transpose(y, 1, 2), [B, T, C]);
}

/**
 * Whether fusedQKVAttention(qkv, heads, opts) over a (B, T, 3C) qkv reads a bf16 qkv as it is: under bf16 autocast,
 * where its fused kernel runs on AMX tiles (attention-bf16.ts), whose packing copies bf16 rows as they are. Its
 * projection then writes qkv in bf16 (LinearOptions.bf16Output), as PyTorch's autocast writes it: half the bytes
 * written and read again, no rounding pass of the tiles' own. Elsewhere a bf16 qkv is widened first.
 */
export function fusedQKVReadsBf16(B: number, T: number, C3: number, heads: number, opts: AttentionOptions = {}): boolean {
  if (C3 % 3 !== 0 || (C3 / 3) % heads !== 0) return false;
  const hs = C3 / 3 / heads;
  // the fused kernel runs where the mask is a key mask (else the composed form)
  return bf16AttentionTiles(heads, T, T, hs, hs) && keyMaskOf(splitMask(opts.mask, B, T, T).mask, B, T) !== undefined;
}

/**
 * The fused op's backward closure, made apart from fusedQKVAttention so that it holds `bw` only: the bf16 kernel's
 * gradients read packed bf16 copies, and the f32 projection (qkv) is then freed after the forward pass.
 */
const gradOf = (bw: (gy: Tensor, last?: boolean) => Tensor) => (gy: Tensor, last?: boolean): Tensor[] => [bw(gy, last)];

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
  const out = zerosF32(xd.length);
  backend().rope(xd, c, s, B * H, T, D, 2 * half, false, out);
  // the backward rotation needs only the tables: the closure names no variable that holds x
  const n = xd.length, shape = [...x.shape];
  return record('rope', [x], new Tensor(out, 'f32', shape), (gy) => {
    const dx = zerosF32(n);
    backend().rope(gy.f32(), c, s, B * H, T, D, 2 * half, true, dx);
    return [new Tensor(dx, 'f32', shape)];
  });
}

/** Mean over `axis` of the positions where mask (same leading shape) is 1: masked mean-pooling. */
export function maskedMean(x: Tensor, mask: Tensor, axis = 1): Tensor {
  const m = reshape(mask, [...mask.shape, 1]);
  return sum(x.mul(m), axis).div(sum(m, axis).add(1e-9));
}
