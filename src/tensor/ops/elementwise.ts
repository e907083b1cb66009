/** Elementwise ops with broadcasting, and their gradients. */
import { backend } from '../../backend/index.js';
import type { BinaryOp, DType, UnaryOp } from '../../backend/backend.js';
import { DTypeError } from '../../errors.js';
import { isDeviceStorage, ownsWholeBuffer, releaseBuffer, spansBuffer, uninitF32, uninitU16 } from '../alloc.js';
import { autocastDType } from '../precision.js';
import { Tensor, type TensorLike } from '../tensor.js';
import { record } from '../autograd.js';
import { broadcastShapes, broadcastStrides, contiguousStrides, numel, sameShape } from '../shape.js';
import { sumTo } from './reduce.js';

/** A number as a 0-d f32 tensor; tensors pass through. */
export function toTensor(x: TensorLike): Tensor {
  if (x instanceof Tensor) return x;
  if (typeof x !== 'number') throw new DTypeError(`expected a Tensor or a number; got ${typeof x}`);
  return new Tensor(new Float32Array([x]), 'f32', []);
}

/** The buffer and strides with which a strided kernel reads `t` as f32 (casting non-f32 storage). */
export function f32Operand(t: Tensor): { buf: Float32Array; strides: number[] } {
  if (t.dtype === 'f32') {
    const buf = t.storage as Float32Array;
    return { buf: t.offset === 0 ? buf : buf.subarray(t.offset), strides: t.strides };
  }
  return { buf: t.f32(), strides: contiguousStrides(t.shape) };
}

function out32(shape: number[]): { buf: Float32Array; t: Tensor } {
  const buf = uninitF32(numel(shape));
  return { buf, t: new Tensor(buf, 'f32', shape) };
}

/** Ops whose backward kernels read only the output y (both backends); the others read only x. */
const USES_OUTPUT = new Set<UnaryOp>(['exp', 'sqrt', 'rsqrt', 'reciprocal']);

/**
 * Ops whose backward pass never reads their output, nor does anything else they make hold it: once the code that
 * called the op is done with the output, its buffer may be overwritten.
 */
const OUTPUT_UNREAD = new Set(['linear', 'loraLinear', 'addLinear', 'linearInt8', 'matmul', 'add']);

/**
 * Whether the op that `x` is passed to may take over x's buffer, its caller having promised not to read x again
 * (`consume`): x was made by an op of OUTPUT_UNREAD in the graph being recorded, is f32, dense and alone in its buffer.
 */
export function consumable(x: Tensor): boolean {
  const op = x.node?.op;
  return op !== undefined && OUTPUT_UNREAD.has(op) && x.dtype === 'f32' && ownsWholeBuffer(x);
}

/** Ops that only re-view their input, whose backward passes read no data: a consumer looks through them. */
const VIEW_OPS = new Set(['reshape', 'permute']);
/**
 * Producers whose backward pass never reads their output, nor does anything else they make hold it: OUTPUT_UNREAD,
 * the fused attention ops (their backward passes rebuild P from the row statistics) and the activations that keep
 * their input (not USES_OUTPUT).
 */
const RELEASE_AFTER_READ = new Set([...OUTPUT_UNREAD, 'attention', 'fusedQKVAttention', 'gelu', 'gelu_tanh', 'relu', 'silu']);

/**
 * Whether a consumer whose caller reads x no more (`consume`: an attention's merged heads read by the output
 * projection alone, an MLP's activation read by its second Linear alone) may hand x's buffer to the pool once it has
 * read x for the last time: x was made in the graph being recorded, through views only, by an op of
 * RELEASE_AFTER_READ, and is alone in its buffer (f32 or bf16). Otherwise the buffer waits for V8's next collection,
 * and the fresh memory that replaces it drives those collections (about 64 MB a cls-lora bf16 step before).
 */
export function releasable(x: Tensor): boolean {
  let node = x.node;
  while (node && VIEW_OPS.has(node.op)) {
    const e = node.edges[0];
    node = e && 'node' in e ? e.node : null;
  }
  return !!node && RELEASE_AFTER_READ.has(node.op) && ownsWholeBuffer(x);
}

/** Marks y's maker as reading none of its inputs in its backward pass (GradNode.holdsNoInput); returns y. */
export function holdsNoInput(y: Tensor): Tensor {
  if (y.node) y.node.holdsNoInput = true;
  return y;
}

/**
 * Hands x's buffer back to the pool in the forward pass, once its caller has read it for the last time, where no
 * backward closure can read it: x is the caller's own intermediate (made in the graph by an op that never reads its
 * output, as `releasable`; without a graph, alone in its buffer), and `readers`, the outputs of every op that read x,
 * were made by ops that hold none of their inputs (GradNode.holdsNoInput) or recorded nothing. The residual stream
 * between a pre-LN block's sublayers, read by the second norm (which keeps its output where gamma allows) and the
 * second sum alone: back to the pool before the block ends, where V8 would free it only at its next collection, and
 * `releaseWithGraph` only after the backward pass (past the peak of a decoder LM, which comes at its loss). Returns
 * whether it did.
 */
export function releaseAfterRead(x: Tensor, readers: Tensor[]): boolean {
  if (!(x.node ? releasable(x) : ownsWholeBuffer(x))) return false;
  // already promised to the pool for the end of the backward pass (releaseWithGraph): handed back once, not twice
  if (x.node?.release?.includes(x.storage as Float32Array | Uint16Array)) return false;
  for (const r of readers) if (r.node && !r.node.holdsNoInput) return false;
  releaseBuffer(x.storage as Float32Array | Uint16Array);
  return true;
}

/** Options of the activations (unary, unaryForBf16Product). */
export interface UnaryOptions {
  /**
   * The caller reads x no more (an MLP's first product, read by its activation alone): where x's buffer is the
   * activation's alone (see consumable), the gradient is written over it on the graph's last backward pass instead
   * of into a new buffer. The same bits either way.
   */
  consume?: boolean;
}

/** y = f(x) for a unary op; gradient dx = dy * f'(x) from the backend. */
export function unary(op: UnaryOp, x: Tensor, opts: UnaryOptions = {}): Tensor {
  const xd = x.f32();
  const { buf, t: y } = out32([...x.shape]);
  backend().unary(op, xd, buf);
  if (!x.requiresGrad) return y;
  // Exactly one of x and y is kept, the one the kernel reads: GELU's output (the next layer's input) need not
  // outlive the forward pass when that layer is frozen, and exp's input is not needed at all.
  const fromOutput = USES_OUTPUT.has(op);
  const kept = fromOutput ? buf : xd, shape = [...x.shape];
  return record(op, [x], y, unaryBackwardOf(op, kept, shape, !fromOutput && ownsInput(x, xd, opts)));
}
/** Whether the kept f32 input `xd` is the op's own: a widened copy of a 16-bit x, or a consumable x (UnaryOptions). */
function ownsInput(x: Tensor, xd: Float32Array, opts: UnaryOptions): boolean {
  if (!ArrayBuffer.isView(xd)) return false; // device storage: kernels never write over their input there
  return x.dtype !== 'f32' ? spansBuffer(xd) : !!opts.consume && consumable(x);
}
/**
 * unary(op, x) for an activation whose only reader is a bf16 product under bf16 autocast (the MLP's activation before
 * its second Linear), which rounds it to bf16 anyway: as bf16 storage where the backend rounds in the same pass
 * (`unaryBf16`), the same bits without an f32 buffer and a cast pass over it. Elsewhere, and for ops whose gradient
 * reads the output, plain `unary`.
 */
export function unaryForBf16Product(op: UnaryOp, x: Tensor, opts: UnaryOptions = {}): Tensor {
  const be = backend();
  if (autocastDType() !== 'bf16' || !be.unaryBf16 || USES_OUTPUT.has(op)) return unary(op, x, opts);
  const shape = [...x.shape];
  if (activationReadsBf16(op) && (x.requiresGrad || x.dtype === 'bf16')) {
    // The backward pass keeps f'(x) in bf16 (the precision of the products the gradient feeds) instead of x in f32:
    // half the bytes, and a product there instead of the function again. x itself is read no more. A bf16 x (its
    // Linear wrote it so: LinearOptions.bf16Output) is read as it is, and its gradient is made in bf16 (a gradient
    // has its tensor's dtype), which that Linear's backward pass multiplies as it is; the gradient arriving here is
    // f32 or bf16 (fc2's backward pass writes the gradient of this bf16 output in bf16).
    const bf16In = x.dtype === 'bf16' && x.isContiguous && !isDeviceStorage(x.storage);
    const xd = bf16In ? x.dense() as Uint16Array : x.f32();
    const buf = uninitU16(xd.length), d = uninitU16(xd.length);
    be.unaryBf16Grad!(op, xd, buf, d);
    if (!bf16In && ownsInput(x, xd as Float32Array, opts)) releaseBuffer(xd as Float32Array);
    else if (bf16In && opts.consume && releasable(x)) releaseBuffer(xd as Uint16Array); // read for the last time
    const y = new Tensor(buf, 'bf16', shape);
    if (!x.requiresGrad) {
      releaseBuffer(d);
      return y;
    }
    const mulBf16 = be.mulBf16!.bind(be);
    return record(op, [x], y, (gy, last, ownGy) => {
      const g = gy.dtype === 'bf16' && gy.isContiguous ? gy.dense() as Uint16Array : gy.f32();
      // the kernel reads g[i] before writing dx[i]: g's own buffer may take dx where both are f32
      const dx = bf16In ? uninitU16(d.length) : ownGy && g instanceof Float32Array ? g : uninitF32(d.length);
      mulBf16(g, d, dx);
      if (last) releaseBuffer(d);
      return [new Tensor(dx, bf16In ? 'bf16' : 'f32', shape)];
    });
  }
  const xd = x.f32();
  const buf = uninitU16(xd.length);
  be.unaryBf16(op, xd, buf);
  const y = new Tensor(buf, 'bf16', shape);
  return x.requiresGrad ? record(op, [x], y, unaryBackwardOf(op, xd, shape, ownsInput(x, xd, opts))) : y;
}
/** The activations whose bf16 autocast path keeps f'(x) in bf16 for the backward pass (Backend.unaryBf16Grad). */
const WITH_BF16_GRAD: ReadonlySet<UnaryOp> = new Set<UnaryOp>(['gelu', 'gelu_tanh', 'silu', 'relu']);
/**
 * Whether unaryForBf16Product(op, x) reads a bf16 x as it is, and takes and makes bf16 gradients, under the autocast
 * policy in force (bf16, a backend with the kernels): its Linear may then write x in bf16 (LinearOptions.bf16Output).
 */
export function activationReadsBf16(op: UnaryOp): boolean {
  const be = backend();
  return autocastDType() === 'bf16' && !!be.unaryBf16 && !!be.unaryBf16Grad && !!be.mulBf16 && WITH_BF16_GRAD.has(op);
}
/** dx from the kept x (or y); `own`: the kept buffer is the op's alone, so the graph's last pass writes dx over it. */
function unaryBackwardOf(op: UnaryOp, kept: Float32Array, shape: number[], own = false): (gy: Tensor, last?: boolean, ownGy?: boolean) => Tensor[] {
  return (gy, last, ownGy) => {
    const g = gy.f32();
    // the kernels read x[i] and dy[i] before writing dx[i]
    const dx = last && own ? kept : ownGy ? g : uninitF32(kept.length);
    backend().unaryBackward(op, kept, kept, g, dx);
    return [new Tensor(dx, 'f32', shape)];
  };
}

/** The raw broadcast binary kernel (no autograd). */
export function binaryRaw(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const shape = sameShape(a.shape, b.shape) ? [...a.shape] : broadcastShapes(a.shape, b.shape, op);
  const A = f32Operand(a);
  const B = f32Operand(b);
  const { buf, t } = out32(shape);
  backend().binary(op, A.buf, broadcastStrides(a.shape, A.strides, shape), B.buf, broadcastStrides(b.shape, B.strides, shape), shape, buf);
  return t;
}

// add and sub keep only the operands' shapes for the backward pass, not their values (so the graph does not
// hold residual-stream activations alive).
export function add(a: TensorLike, b: TensorLike): Tensor {
  const A = toTensor(a), B = toTensor(b);
  const [ga, gb, sa, sb] = [A.requiresGrad, B.requiresGrad, A.shape, B.shape];
  return holdsNoInput(record('add', [A, B], binaryRaw('add', A, B), (gy) => [ga ? sumTo(gy, sa) : null, gb ? sumTo(gy, sb) : null]));
}

/**
 * x + y for a residual connection, where y is a sublayer's output that the caller reads no more: the sum is written
 * into y's buffer (no new activation; in a transformer block, one buffer of the residual stream per sublayer) when
 * nothing can read y's values again: y was made by an op of OUTPUT_UNREAD in the graph being recorded, is f32, dense
 * and alone in its buffer, with x's shape, on a CPU backend. Otherwise, `add`. The same bits and gradients as `add`.
 */
export function residualAdd(x: Tensor, y: Tensor): Tensor {
  if (!consumable(y) || x.dtype !== 'f32' || !sameShape(x.shape, y.shape) || y.storage.buffer === x.storage.buffer) return add(x, y);
  const out = y.storage as Float32Array;
  backend().axpby(1, out, 1, x.dense() as Float32Array, out); // y + x: the bits of x + y
  const [ga, gb, shape] = [x.requiresGrad, y.requiresGrad, [...x.shape]];
  return holdsNoInput(record('add', [x, y], new Tensor(out, 'f32', shape), (gy) => [ga ? gy : null, gb ? gy : null]));
}

export function sub(a: TensorLike, b: TensorLike): Tensor {
  const A = toTensor(a), B = toTensor(b);
  const [ga, gb, sa, sb] = [A.requiresGrad, B.requiresGrad, A.shape, B.shape];
  return record('sub', [A, B], binaryRaw('sub', A, B), (gy) => [ga ? sumTo(gy, sa) : null, gb ? sumTo(affineRaw(gy, -1, 0), sb) : null]);
}

// The backward closures of mul, div and where name only what their gradients read: an operand that needs no
// gradient of its own is not kept for its partner's (x * 3 keeps nothing of x; x * mask keeps the mask).
export function mul(a: TensorLike, b: TensorLike): Tensor {
  const A = toTensor(a), B = toTensor(b);
  const y = binaryRaw('mul', A, B);
  return record('mul', [A, B], y, mulBackward(A.requiresGrad ? B : null, B.requiresGrad ? A : null, A.shape, B.shape));
}
/** da = gy * b (when `forA`, which is b), db = gy * a (when `forB`, which is a). */
function mulBackward(forA: Tensor | null, forB: Tensor | null, sa: number[], sb: number[]): (gy: Tensor) => (Tensor | null)[] {
  return (gy) => [forA ? sumTo(binaryRaw('mul', gy, forA), sa) : null, forB ? sumTo(binaryRaw('mul', gy, forB), sb) : null];
}

export function div(a: TensorLike, b: TensorLike): Tensor {
  const A = toTensor(a), B = toTensor(b);
  const y = binaryRaw('div', A, B);
  return record('div', [A, B], y, divBackward(B, B.requiresGrad ? y : null, A.requiresGrad, A.shape, B.shape));
}
function divBackward(B: Tensor, y: Tensor | null, needA: boolean, sa: number[], sb: number[]): (gy: Tensor) => (Tensor | null)[] {
  return (gy) => {
    const ga = binaryRaw('div', gy, B);
    return [
      needA ? sumTo(ga, sa) : null,
      // d(a/b)/db = -(a/b)/b = -y/b
      y ? sumTo(affineRaw(binaryRaw('mul', ga, y), -1, 0), sb) : null,
    ];
  };
}

export function pow(a: TensorLike, b: TensorLike): Tensor {
  const A = toTensor(a), B = toTensor(b);
  const y = binaryRaw('pow', A, B);
  return record('pow', [A, B], y, (gy) => {
    let ga: Tensor | null = null, gb: Tensor | null = null;
    if (A.requiresGrad) {
      // b * a^(b-1)
      const d = binaryRaw('mul', B, binaryRaw('pow', A, affineRaw(B, 1, -1)));
      ga = sumTo(binaryRaw('mul', gy, d), A.shape);
    }
    if (B.requiresGrad) {
      const la = unaryRaw('log', A);
      gb = sumTo(binaryRaw('mul', gy, binaryRaw('mul', y, la)), B.shape);
    }
    return [ga, gb];
  });
}

/** max/min: the gradient goes to the larger (smaller) operand; ties split it evenly (as PyTorch). */
function extremum(op: 'max' | 'min', a: TensorLike, b: TensorLike): Tensor {
  const A = toTensor(a), B = toTensor(b);
  const y = binaryRaw(op, A, B);
  return record(op === 'max' ? 'maximum' : 'minimum', [A, B], y, (gy) => {
    const wins = binaryRaw(op === 'max' ? 'gt' : 'lt', A, B);
    const ties = binaryRaw('eq', A, B);
    const wa = binaryRaw('add', wins, affineRaw(ties, 0.5, 0));
    return [
      A.requiresGrad ? sumTo(binaryRaw('mul', gy, wa), A.shape) : null,
      B.requiresGrad ? sumTo(binaryRaw('mul', gy, affineRaw(wa, -1, 1)), B.shape) : null,
    ];
  });
}
export const maximum = (a: TensorLike, b: TensorLike): Tensor => extremum('max', a, b);
export const minimum = (a: TensorLike, b: TensorLike): Tensor => extremum('min', a, b);

/** Comparisons give 1/0 f32 tensors and no gradient. */
export function compare(op: 'eq' | 'gt' | 'ge' | 'lt' | 'le', a: TensorLike, b: TensorLike): Tensor {
  return binaryRaw(op, toTensor(a), toTensor(b));
}

/** out = cond != 0 ? a : b, broadcasting all three. */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  const A = toTensor(a), B = toTensor(b);
  const shape = broadcastShapes(broadcastShapes(cond.shape, A.shape, 'where'), B.shape, 'where');
  const C = f32Operand(cond), AO = f32Operand(A), BO = f32Operand(B);
  const { buf, t } = out32(shape);
  backend().where(C.buf, broadcastStrides(cond.shape, C.strides, shape), AO.buf, broadcastStrides(A.shape, AO.strides, shape),
    BO.buf, broadcastStrides(B.shape, BO.strides, shape), shape, buf);
  return record('where', [A, B], t, whereBackward(cond, A.requiresGrad, B.requiresGrad, A.shape, B.shape));
}
function whereBackward(cond: Tensor, needA: boolean, needB: boolean, sa: number[], sb: number[]): (gy: Tensor) => (Tensor | null)[] {
  return (gy) => {
    const zero = toTensor(0);
    return [needA ? sumTo(where(cond, gy, zero), sa) : null, needB ? sumTo(where(cond, zero, gy), sb) : null];
  };
}

export function unaryRaw(op: UnaryOp, x: Tensor): Tensor {
  const { buf, t } = out32([...x.shape]);
  backend().unary(op, x.f32(), buf);
  return t;
}

export function affineRaw(x: Tensor, scale: number, shift: number): Tensor {
  const { buf, t } = out32([...x.shape]);
  backend().affine(x.f32(), scale, shift, buf);
  return t;
}

/** y = x * scale + shift. */
export function affine(x: Tensor, scale: number, shift: number): Tensor {
  return record('affine', [x], affineRaw(x, scale, shift), (gy) => [affineRaw(gy, scale, 0)]);
}

/** Converts storage dtype; the gradient flows back as f32. */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x;
  const src = x.dense();
  const out = backend().alloc(dtype, x.size);
  backend().cast(src, x.dtype, out, dtype);
  const y = new Tensor(out, dtype, [...x.shape]);
  const floaty = (d: DType) => d === 'f32' || d === 'bf16' || d === 'f16';
  if (!floaty(dtype) || !floaty(x.dtype)) return y;
  return record('cast', [x], y, (gy) => [gy.dtype === 'f32' ? gy : cast(gy, 'f32')]);
}
