/**
 * Cross-entropy of a linear head without the logits: `linearCrossEntropy(h, W, b, targets)` equals
 * `crossEntropy(linear(h, W, b), targets)` (mean or sum, ignoreIndex, label smoothing), but walks the rows in
 * chunks: each chunk's logits are made, turned into log-probabilities, the loss read and the gradient of the
 * logits formed in place, then multiplied back into the gradients of h, W and b at once, so only one chunk of
 * (rows x vocabulary) ever exists. For a language model's head that is the largest activation of a step (8 x 128
 * tokens x 50,257 words = 206 MB in f32): with 256-row chunks, 51 MB. The idea is Liger-Kernel's fused linear cross-entropy and Apple's
 * Cut Cross-Entropy; the arithmetic is the unfused ops' own kernels.
 *
 * The gradients are computed in the forward pass when grad mode is on and an input needs one (nothing is kept
 * but them); backward scales them by the upstream scalar. On a device backend (WebGPU) the same loop runs as kernels:
 * the loss is summed into a device scalar and backward scales by the device's upstream value, nothing read back. Under `noGrad` it computes the loss only. The weight
 * may be f32, bf16 or int8 (`scales` given): low-precision weights are widened block by block in the products.
 */
import { backend } from '../../backend/index.js';
import { DTypeError, ShapeError, fmtShape } from '../../errors.js';
import { collectDeadBuffers, releaseFreeMemory, uninitF32, uninitU16, zerosF32 } from '../alloc.js';
import { Tensor } from '../tensor.js';
import { isGradEnabled, record } from '../autograd.js';
import { autocastDType, type ComputeDType } from '../precision.js';
import { gemm, int8Operand, prepare, releaseOperands, transposed, type Operand } from './linalg.js';
import { checkIndices } from './nn.js';
import { contiguous, reshape } from './movement.js';

export interface LinearCrossEntropyOptions {
  ignoreIndex?: number;
  labelSmoothing?: number;
  /**
   * 'none': each row's loss, (rows) (0 where ignored), as crossEntropy's; on CPU backends, with gradients to h only (W
   * and b must not need one: their gradients sum over rows, which have their own upstream values). The gradient of h
   * is formed in the forward pass with a unit upstream per row and scaled row by row in backward.
   */
  reduction?: 'mean' | 'sum' | 'none';
  /** Per-row scales of an int8 weight (then `W` is the int8 tensor). */
  scales?: Tensor | null;
  /**
   * Rows per chunk. Default: at least 256 (below that sgemm runs at half speed on the (rows x dim) @ (dim x vocab)
   * product: measured 2.9 s vs 1.4 s per GPT-2-sized head at 41 vs 256 rows), more while a chunk stays under
   * 32 MiB (small vocabularies: all rows at once).
   */
  chunkRows?: number;
}

const CHUNK_ELEMS = 8 << 20;
const MIN_CHUNK_ROWS = 256;
/** A logits chunk at least this large is freed as soon as the loss is computed (see collectDeadBuffers). */
const COLLECT_BYTES = 16 << 20;

/** The chunk loop of `linearCrossEntropy` (a function of its own so that its scratch is unreachable on return). */
function chunkedLoss(a: {
  hBuf: Float32Array; t: Int32Array; rows: number; V: number; D: number; chunk: number; scale: number; compute: ComputeDType;
  ow: Operand; bias: Float32Array | null; ignoreIndex: number; labelSmoothing: number; grads: boolean;
  gh: Float32Array | null; gw: Float32Array | null; gb: Float32Array | null; colSum: Float32Array;
  /** reduction 'none': each row's loss goes here (and is returned) instead of their sum. */
  rowLoss: Float32Array | null;
}): Float32Array {
  const { hBuf, t, rows, V, D, chunk, scale, compute, ow, bias, ignoreIndex, labelSmoothing, grads, gh, gw, gb, colSum, rowLoss } = a;
  const be = backend(), device = !!be.device;
  // bf16 autocast on a backend that takes the loss and the logits' gradient in bf16 at once: the products read that
  // gradient in bf16 anyway; the bias's gradient (a column sum) wants it in f32. Where the products widen bf16 operands
  // (no bf16 hardware) the kernel leaves the rounded gradient in the logits' own f32 storage: one pass over them where
  // the loss, its gradient and the rounding took three, and no second logits-sized buffer alive
  const fused = grads && !gb && compute === 'bf16' && !device && be.crossEntropyGradBf16 && ow.dtype === 'bf16' ? be : null;
  const logits = uninitF32(chunk * V), loss = zerosF32(chunk), dl = zerosF32(chunk);
  if (device) backend().fill(dl, scale);
  else dl.fill(scale);
  // the loss sum: a number here, a device scalar (chunk sums added by kernels, nothing read back) on a device
  let total = 0;
  const totalDev = device ? zerosF32(1) : null, part = device ? zerosF32(1) : null;
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const nr = Math.min(chunk, rows - r0);
    const hc = new Tensor(hBuf.subarray(r0 * D, (r0 + nr) * D), 'f32', [nr, D]);
    const oh = prepare(hc, 1, compute);
    const z = logits.subarray(0, nr * V), tc = t.subarray(r0, r0 + nr);
    gemm(oh, transposed(ow), 1, z, 1, 0, bias); // the bias added by the product (see affine in linalg.ts)
    let g: Operand | null = null;
    if (fused?.nativeBf16) {
      const gz = uninitU16(nr * V);
      fused.crossEntropyGradBf16!(z, tc, nr, V, ignoreIndex, labelSmoothing, dl.subarray(0, nr), loss, gz);
      g = { buf: gz, dtype: 'bf16', rows: nr, cols: V, trans: false, batchStride: nr * V, fresh: true };
    } else if (fused) {
      fused.crossEntropyGradBf16!(z, tc, nr, V, ignoreIndex, labelSmoothing, dl.subarray(0, nr), loss, null);
      g = { buf: z, dtype: 'f32', rows: nr, cols: V, trans: false, batchStride: nr * V, fresh: false }; // the logits' scratch: not released
    } else {
      backend().crossEntropy(z, tc, nr, V, ignoreIndex, labelSmoothing, loss, z);
    }
    if (rowLoss) {
      rowLoss.set(loss.subarray(0, nr), r0);
    } else if (totalDev && part) {
      backend().reduce('sum', loss.subarray(0, nr), 1, nr, 1, part);
      backend().axpby(1, totalDev, 1, part, totalDev);
    } else {
      for (let i = 0; i < nr; i++) total += loss[i];
    }
    if (!grads) { releaseOperands([oh]); continue; }
    if (!g) {
      backend().crossEntropyBackward(z, tc, nr, V, ignoreIndex, labelSmoothing, dl.subarray(0, nr), z);
      g = prepare(new Tensor(z, 'f32', [nr, V]), 1, compute);
    }
    if (gh) gemm(g, ow, 1, gh.subarray(r0 * D, (r0 + nr) * D));
    if (gw) gemm(transposed(g), oh, 1, gw, 1, 1);
    // the chunk's copies (bf16 autocast: of h's rows, and of the logits' gradient, 26 MB at GPT-2's 256 x 50,257)
    // serve the next chunk from the pool instead of fresh pages
    releaseOperands([oh, g]);
    if (gb) {
      backend().reduce('sum', z, 1, nr, V, colSum);
      backend().axpby(1, gb, 1, colSum, gb);
    }
  }
  if (rowLoss) return rowLoss;
  if (totalDev) {
    backend().affine(totalDev, scale, 0, totalDev);
    return totalDev;
  }
  return new Float32Array([total * scale]);
}

/**
 * zerosF32, its pages mapped before the chunks' products accumulate into it. Fresh zero pages are mapped at their first
 * write; inside the parallel product those faults cost several times a plain pass: the four 256-row chunk products into
 * GPT-2's head gradient (50,257 x 768, 154 MB; bf16 on Zen 4) took 730 ms on fresh pages against 391 ms with a zero
 * written to each page first, that included (scripts/bench-bf16-parts.ts head).
 */
function touchedZeros(n: number): Float32Array {
  const z = zerosF32(n);
  if (!backend().device) for (let i = 0; i < n; i += 1024) z[i] = 0;
  return z;
}

export function linearCrossEntropy(h: Tensor, W: Tensor, b: Tensor | null, targets: Tensor, opts: LinearCrossEntropyOptions = {}): Tensor {
  const { ignoreIndex = -100, labelSmoothing = 0, reduction = 'mean', scales = null } = opts;
  if (reduction !== 'mean' && reduction !== 'sum' && reduction !== 'none') {
    throw new ShapeError(`Argument 'reduction' passed to 'linearCrossEntropy' is '${reduction as string}'; expected 'mean', 'sum' or 'none'`);
  }
  if (!(labelSmoothing >= 0 && labelSmoothing <= 1)) {
    throw new ShapeError(`Argument 'labelSmoothing' passed to 'linearCrossEntropy' is ${labelSmoothing}; expected a value in [0, 1]`);
  }
  if (W.ndim !== 2) throw new ShapeError(`Argument 'weight' passed to 'linearCrossEntropy' has shape ${fmtShape(W.shape)}; expected [vocab, dim]`);
  const [V, D] = W.shape;
  if (h.ndim < 1 || h.shape[h.ndim - 1] !== D) {
    throw new ShapeError(`Argument 'h' passed to 'linearCrossEntropy' has shape ${fmtShape(h.shape)}; expected [.., ${D}] to match weight ${fmtShape(W.shape)}`);
  }
  if (h.dtype === 'i32' || h.dtype === 'i8') throw new DTypeError(`Argument 'h' passed to 'linearCrossEntropy' has dtype ${h.dtype}; expected a float tensor`);
  if (b && (b.ndim !== 1 || b.shape[0] !== V)) throw new ShapeError(`Argument 'bias' passed to 'linearCrossEntropy' has shape ${fmtShape(b.shape)}; expected [${V}]`);
  if (W.dtype === 'i8' && (!scales || scales.size !== V)) {
    throw new ShapeError(`'linearCrossEntropy' with an int8 weight needs 'scales' with ${V} entries`);
  }
  const rows = h.size / D;
  if (targets.size !== rows) {
    throw new ShapeError(`Argument 'targets' passed to 'linearCrossEntropy' has shape ${fmtShape(targets.shape)}; expected ${rows} targets for h ${fmtShape(h.shape)}`);
  }
  if (targets.dtype !== 'i32') throw new DTypeError(`Argument 'targets' passed to 'linearCrossEntropy' has dtype ${targets.dtype}; expected i32 class indices`);
  const t = targets.i32('linearCrossEntropy');
  checkIndices(t, V, 'linearCrossEntropy', 'targets', ignoreIndex);

  // int8 weights meet f32 activations; otherwise the autocast policy decides, as in `linear`
  const compute = W.dtype === 'i8' ? 'f32' : autocastDType();
  const ow: Operand = W.dtype === 'i8' ? int8Operand(W, scales as Tensor) : prepare(W, 1, compute);
  const h2 = contiguous(reshape(h.dtype === 'f32' ? h : h.to('f32'), [rows, D]));
  const hBuf = (h2.storage as Float32Array).subarray(h2.offset, h2.offset + rows * D);
  const needGh = isGradEnabled() && h.requiresGrad;
  const needGw = isGradEnabled() && W.requiresGrad && W.dtype !== 'i8';
  const needGb = isGradEnabled() && !!b && b.requiresGrad;
  const grads = needGh || needGw || needGb;
  const none = reduction === 'none';
  if (none && (needGw || needGb)) {
    throw new ShapeError(`'linearCrossEntropy' with reduction 'none' gives gradients to h only; its weight and bias must not require gradients (sum the rows' losses with reduction 'sum' instead)`);
  }
  if (none && backend().device) throw new ShapeError(`'linearCrossEntropy' with reduction 'none' runs on CPU backends only`);

  let count = 0;
  for (let i = 0; i < rows; i++) if (t[i] !== ignoreIndex) count++;
  const scale = reduction === 'mean' ? 1 / count : 1; // mean over zero targets is NaN, as in PyTorch; 'none': a unit upstream per row
  const gh = needGh ? uninitF32(rows * D) : null;
  const gw = needGw ? touchedZeros(V * D) : null;
  const gb = needGb ? zerosF32(V) : null;
  const colSum = needGb ? zerosF32(V) : new Float32Array(0);
  const bias = b ? b.f32() : null;

  const chunk = Math.max(1, Math.min(rows, opts.chunkRows ?? Math.max(MIN_CHUNK_ROWS, Math.floor(CHUNK_ELEMS / V))));
  // A large logits chunk is the step's peak: the forward pass's garbage goes first (a collection and the heap's free
  // pages back to the OS), and the chunk, this op's own scratch, is freed at once when the loop returns.
  const largeChunk = chunk * V * 4 >= COLLECT_BYTES;
  if (largeChunk) releaseFreeMemory();
  const rowLoss = none ? zerosF32(rows) : null;
  const total = chunkedLoss({ hBuf, t, rows, V, D, chunk, scale, compute, ow, bias, ignoreIndex, labelSmoothing, grads, gh, gw, gb, colSum, rowLoss });
  releaseOperands([ow]); // a trainable weight's bf16 copy (77 MB for GPT-2's tied embedding), read for the last time
  if (largeChunk) collectDeadBuffers();
  const y = new Tensor(total, 'f32', none ? [...h.shape.slice(0, -1)] : []);
  if (!grads) return y;
  const inputs = [h, W, ...(b ? [b] : [])];
  const hShape = [...h.shape], wShape = [V, D];
  if (none) {
    // each row of h's gradient was formed with a unit upstream: scaled by its row's upstream value
    return record('linearCrossEntropy', inputs, y, (gy, last) => {
      const g = gy.f32(), o = last ? (gh as Float32Array) : uninitF32(rows * D);
      backend().binary('mul', gh as Float32Array, [D, 1], g, [1, 0], [rows, D], o);
      return [new Tensor(o, 'f32', hShape), null, ...(b ? [null] : [])];
    });
  }
  return record('linearCrossEntropy', inputs, y, (gy, last) => {
    // on a device the upstream scalar stays there: the gradients are multiplied by it (a stride-0 product)
    const gyDev = gy.onDevice ? gy.f32() : null;
    const s = gyDev ? NaN : gy.item();
    // the stored gradients are handed out as they are on the last pass with a unit upstream, else as scaled copies
    const out = (buf: Float32Array | null, shape: number[]): Tensor | null => {
      if (!buf) return null;
      const o = last && s === 1 ? buf : uninitF32(buf.length);
      if (gyDev) backend().binary('mul', buf, [1], gyDev, [0], [buf.length], o);
      else if (o !== buf) backend().affine(buf, s, 0, o);
      return new Tensor(o, 'f32', shape);
    };
    const grads = [out(gh, hShape), out(gw, wShape)];
    return b ? [...grads, out(gb, [V])] : grads;
  });
}
