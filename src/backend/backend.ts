/**
 * The `Backend` interface: the small set of primitive kernels that every tensor op is built from.
 *
 * Conventions shared by every kernel (both implementations must follow them exactly):
 * - Buffers are typed arrays that the kernel reads and writes in place; a kernel never allocates its
 *   outputs (the tensor layer does, with `alloc`). Inputs with a non-zero offset are passed as
 *   `subarray`s, so every buffer starts at element 0 of the data it describes.
 * - Float kernels (elementwise, reductions, norms, softmax, losses, optimizer updates) read and write
 *   float32 (`Float32Array`). 16-bit floats (bf16, f16) are storage formats held in `Uint16Array`; they
 *   reach the compute kernels through `cast`, except `matmul`, which accepts bf16 operands directly.
 * - Shapes are plain `number[]`; "rows x cols" kernels treat a contiguous buffer as a row-major matrix.
 * - Strides are in elements. A stride of 0 broadcasts that dimension.
 * - Random kernels are counter-based (seed + element index -> value), so that the native and the portable
 *   backend produce bit-identical masks and samples for the same seed. The generator is defined by
 *   `hashUniform` in `src/backend/rng.ts`; native code implements the same arithmetic.
 */

export type DType = 'f32' | 'bf16' | 'f16' | 'i32' | 'i8';
export type Storage = Float32Array | Uint16Array | Int32Array | Int8Array;

/** y = f(x), elementwise. */
export type UnaryOp =
  | 'neg' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'tanh' | 'sigmoid' | 'relu'
  | 'gelu' /* erf form */ | 'gelu_tanh' | 'silu' | 'abs' | 'square' | 'reciprocal' | 'sign';

/** out = a (op) b, elementwise with broadcasting. Comparison ops write 1 or 0. */
export type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'max' | 'min' | 'eq' | 'gt' | 'ge' | 'lt' | 'le';

export type ReduceOp = 'sum' | 'max' | 'min';

export interface MatmulArgs {
  /** Left operand, dtype f32 or bf16 (both operands share one dtype). Logical shape (batch, M, K). */
  a: Float32Array | Uint16Array;
  /** Right operand. Logical shape (batch, K, N). */
  b: Float32Array | Uint16Array;
  /** Output, always f32, contiguous (batch, M, N). */
  out: Float32Array;
  /** 'f32' or 'bf16': the dtype of `a` and `b`. */
  dtype: 'f32' | 'bf16';
  batch: number;
  M: number;
  N: number;
  K: number;
  /** When true, `a` is stored as (K, M) per batch (row-major), i.e. op(a) = a^T. */
  transA: boolean;
  /** When true, `b` is stored as (N, K) per batch, i.e. op(b) = b^T. */
  transB: boolean;
  /** Element stride between consecutive batch matrices of a/b; 0 broadcasts one matrix over the batch. */
  strideA: number;
  strideB: number;
  /** out = alpha * op(a) @ op(b) + beta * out. beta = 1 accumulates into `out` (gradient accumulation). */
  alpha: number;
  beta: number;
  /**
   * (N) added to every output row: out = alpha * op(a) @ op(b) + bias (a Linear's bias); only with beta = 0. The
   * native backend adds it inside oneDNN's bf16 product; elsewhere `out` starts as the bias and the product
   * accumulates onto it (`prefillBias`), as callers did before.
   */
  bias?: Float32Array | null;
}

/** `matmulToBf16`'s arguments: bf16 operands, a bf16 output, no accumulation. */
export type MatmulToBf16Args = Omit<MatmulArgs, 'out' | 'dtype' | 'beta' | 'a' | 'b'> & { a: Uint16Array; b: Uint16Array; out: Uint16Array };

/** For kernels without a fused bias: writes the bias into every row of out; returns the args with beta = 1. */
export function prefillBias<T extends MatmulArgs>(m: T): T {
  if (!m.bias) return m;
  if (m.beta !== 0) throw new Error(`matmul: a bias needs beta = 0; got beta ${m.beta}`);
  if (m.bias.length < m.N) throw new Error(`matmul: the bias has ${m.bias.length} elements; expected N = ${m.N}`);
  const bias = m.bias.subarray(0, m.N);
  for (let r = 0; r < m.batch * m.M; r++) m.out.set(bias, r * m.N);
  return { ...m, bias: null, beta: 1 };
}

/**
 * f32 activations times one low-precision weight: `a` as in MatmulArgs (f32), `b` a single stored matrix shared
 * by the batch (no batch stride), bf16 bits or int8 values with one f32 scale per stored row (per output channel
 * of a (out, in) weight, whether or not it is read transposed), or NF4 codes (src/backend/nf4.ts: two per byte of
 * an Int8Array read as unsigned, one f32 absmax per 64 elements in storage order). The kernel widens b in blocks,
 * never all at once.
 * It takes no bias (the CPU kernels have no epilogue for one): callers start `out` as the bias and accumulate (beta = 1),
 * as `gemm` in src/tensor/ops/linalg.ts does; a `bias` passed anyway is refused.
 */
export interface MatmulLowpArgs extends Omit<MatmulArgs, 'b' | 'dtype' | 'strideB' | 'bias'> {
  b: Uint16Array | Int8Array;
  bDtype: 'bf16' | 'i8' | 'nf4';
  /** i8: per stored row of b (null = 1); nf4: the absmax of each block of 64 stored elements (required). */
  scales: Float32Array | null;
}

/** One AdamW8bit update (Backend.adamw8bit): the bias corrections are given (1 - beta1^t, sqrt(1 - beta2^t)). */
export interface AdamW8bitArgs {
  param: Float32Array;
  grad: Float32Array;
  state1: Uint8Array;
  state2: Uint8Array;
  absmax1: Float32Array;
  absmax2: Float32Array;
  /** The first moment's map (signed dynamic) and the second's (unsigned dynamic), 256 sorted values each. */
  map1: Float32Array;
  map2: Float32Array;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  correction1: number;
  correction2: number;
  gradScale: number;
}

export interface AdamWArgs {
  param: Float32Array;
  grad: Float32Array;
  m: Float32Array;
  v: Float32Array;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay (AdamW); 0 for Adam. */
  weightDecay: number;
  /** 1-based step count, for bias correction. */
  step: number;
  /** Multiplies the gradient before use (e.g. 1/lossScale or a clipping coefficient). */
  gradScale: number;
  /**
   * Backends with `optimizerWritesBf16` only: receives the updated param's bf16 copy (round to nearest even, the
   * bits of `cast` f32 -> bf16), as long as param; the copy bf16 products read until the next update (versions.ts).
   */
  out16?: Uint16Array;
  /**
   * Device backends only (the tensor layer never passes it to a CPU backend): the step gate, a device array whose
   * word 0 multiplies the gradient (after gradScale) and whose word 1, when 0, makes the update write nothing (a
   * skipped step decided on the device: src/backend/webgpu/gate.ts).
   */
  gate?: Float32Array;
}

export interface SGDArgs {
  param: Float32Array;
  grad: Float32Array;
  /** Momentum buffer; unused (may be empty) when momentum is 0. */
  buf: Float32Array;
  lr: number;
  momentum: number;
  dampening: number;
  nesterov: boolean;
  /** L2 weight decay added to the gradient (PyTorch SGD semantics). */
  weightDecay: number;
  /** True on the first step: the momentum buffer is initialised to the gradient (PyTorch semantics). */
  firstStep: boolean;
  gradScale: number;
  /**
   * Backends with `optimizerWritesBf16` only: receives the updated param's bf16 copy (round to nearest even, the
   * bits of `cast` f32 -> bf16), as long as param; the copy bf16 products read until the next update (versions.ts).
   */
  out16?: Uint16Array;
  /**
   * Device backends only (the tensor layer never passes it to a CPU backend): the step gate, a device array whose
   * word 0 multiplies the gradient (after gradScale) and whose word 1, when 0, makes the update write nothing (a
   * skipped step decided on the device: src/backend/webgpu/gate.ts).
   */
  gate?: Float32Array;
}

/** RMSprop (PyTorch semantics, centered = false): see src/optim/rmsprop.ts. Fused only on device backends. */
export interface RMSpropArgs {
  param: Float32Array;
  grad: Float32Array;
  /** Square average. */
  v: Float32Array;
  /** Momentum buffer; unused when momentum is 0. */
  buf: Float32Array;
  lr: number;
  alpha: number;
  eps: number;
  momentum: number;
  /** L2 weight decay added to the gradient. */
  weightDecay: number;
  gradScale: number;
  /**
   * Device backends only (the tensor layer never passes it to a CPU backend): the step gate, a device array whose
   * word 0 multiplies the gradient (after gradScale) and whose word 1, when 0, makes the update write nothing (a
   * skipped step decided on the device: src/backend/webgpu/gate.ts).
   */
  gate?: Float32Array;
}

/**
 * Sizes and strides of a fused attention call. q is (B, H, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv) and
 * out (B, H, Tq, Dv), each addressed by element strides of its (batch, head, position) dims with a contiguous
 * feature dim. Query head h reads kv head floor(h / (H / Hkv)) (grouped-query attention).
 */
export interface AttentionShape {
  B: number;
  H: number;
  Hkv: number;
  Tq: number;
  Tk: number;
  D: number;
  Dv: number;
  qStrides: [number, number, number];
  kStrides: [number, number, number];
  vStrides: [number, number, number];
  outStrides: [number, number, number];
  scale: number;
  /** Query i (position Tk - Tq + i) sees keys j <= Tk - Tq + i. */
  causal: boolean;
}

/** Moving data between the CPU and a device-resident backend's memory. */
export interface DeviceMemory {
  /** True when `s` is device storage (not a typed array). */
  holds(s: Storage): boolean;
  /** A device copy of CPU data (synchronous: queued in order with the kernels). */
  upload(s: Storage, dtype: DType): Storage;
  /** The values of device storage once every queued kernel has run: the one asynchronous read back. */
  read(s: Storage): Promise<Storage>;
  /** `Backend.sumSquares` of device storage: the value once the queued kernels have run. */
  sumSquares(s: Float32Array): Promise<number>;
  /**
   * The optimizer step's gate, computed on the device with no read back (src/backend/webgpu/gate.ts): the global norm
   * of `grads`, the finite check, clipping's coefficient and the fp16 loss scaler's update (its device `state`
   * [scale, clean steps], updated in place). Returns the gate [multiplier, open, norm, 1, open, 0] for the optimizer
   * kernels (`AdamWArgs.gate`).
   */
  stepGate(grads: Float32Array[], o: { maxNorm: number; lossFinite: boolean;
    scaler: { state: Float32Array; backoff: number; growth: number; growthInterval: number } | null }): Float32Array;
}

export interface Backend {
  readonly name: 'native' | 'wasm' | 'portable' | 'webgpu';
  /**
   * Set only by a device-resident backend (WebGPU, src/backend/webgpu/README.md): its `alloc` returns device arrays
   * (typed as `Storage`: they have `length`, `subarray` and `buffer`, never elements), typed arrays passed to its
   * kernels as inputs are uploaded, and these are the ways between the two memories. The CPU backends leave it unset.
   */
  readonly device?: DeviceMemory;
  /** One line describing the backend (library versions, ISA, threads). */
  describe(): string;
  /** Number of threads the kernels use. */
  numThreads(): number;
  /** True when bf16 matrix products run on bf16 hardware (AVX512-BF16, AMX), not by widening to f32. */
  readonly nativeBf16: boolean;

  // ---- memory and movement --------------------------------------------------------------------
  /** A new zero-filled buffer of `size` elements of `dtype`. */
  alloc(dtype: DType, size: number): Storage;
  /** dst[i] = value for every element (f32 or i32 buffers). */
  fill(dst: Float32Array | Int32Array, value: number): void;
  /**
   * Copies the strided view (shape, strides) of `src` into `dst` (same dtype, any dtype). `dst` is written
   * contiguously, or, when `dstStrides` is given, at those strides (used for concat and the backward of slices).
   * Used for `contiguous()`, transposes and slices.
   */
  stridedCopy(src: Storage, shape: number[], strides: number[], dst: Storage, dstStrides?: number[]): void;
  /** dst = src converted between dtypes (f32 <-> bf16 (round to nearest even) <-> f16, f32 <-> i32, i8). */
  cast(src: Storage, srcDtype: DType, dst: Storage, dstDtype: DType): void;

  // ---- elementwise (f32) ------------------------------------------------------------------------
  unary(op: UnaryOp, x: Float32Array, out: Float32Array): void;
  /**
   * Optional: `unary` with its values rounded to bf16 (round to nearest even) into `out`, in one pass: the same bits
   * as unary then cast, without the f32 buffer (an activation whose only reader is a bf16 product).
   */
  unaryBf16?(op: UnaryOp, x: Float32Array, out: Uint16Array): void;
  /**
   * Optional, for gelu, gelu_tanh, silu and relu: f(x) into y and f'(x) into d, both rounded to bf16, in one pass (y has
   * unaryBf16's bits). Under bf16 autocast the backward pass then keeps d, half x's bytes, and takes dx = dy * d
   * (`mulBf16`) instead of evaluating the function again.
   */
  unaryBf16Grad?(op: UnaryOp, x: Float32Array | Uint16Array, y: Uint16Array, d: Uint16Array): void;
  /**
   * Optional: out = g * d, d bf16 (widened exactly); `unaryBf16Grad`'s backward pass. A Uint16Array g or out is bf16
   * (g widened exactly; out rounded to nearest even); out may be g where both have one dtype.
   */
  mulBf16?(g: Float32Array | Uint16Array, d: Uint16Array, out: Float32Array | Uint16Array): void;
  /**
   * Optional: out[c] = the sum over rows of src[r][c] for a bf16 (rows, cols) matrix, accumulated in f32 row after
   * row (the same bits for any thread count): a Linear's bias gradient from a bf16 output gradient.
   */
  sumRowsBf16?(src: Uint16Array, rows: number, cols: number, out: Float32Array): void;
  /**
   * Optional: an f32 (rows, cols) matrix rounded to bf16 into dst (`cast`'s bits) and its column sums into sums
   * (`reduce('sum', src, 1, rows, cols)`'s bits), in one pass over src: a Linear's f32 output gradient under bf16
   * autocast, made its products' bf16 operand and summed for its bias gradient without a second read.
   */
  castColumnSums?(src: Float32Array, rows: number, cols: number, dst: Uint16Array, sums: Float32Array): void;
  /**
   * Optional, where bf16 products run on bf16 hardware (`nativeBf16`): `matmul` of bf16 operands with its output
   * rounded to bf16 (nearest even) into a Uint16Array, beta 0. Half the bytes of an f32 output, which a training step
   * writes to memory out of cache; under bf16 autocast the products whose readers take bf16 write it so (an MLP's
   * first Linear, read by its activation; the input gradient of a bf16 activation), as PyTorch's autocast writes
   * every product.
   */
  readonly matmulToBf16?: (m: MatmulToBf16Args) => void;
  /** Whether `adamw` and `sgd` take `out16` (the updated param's bf16 copy written with the update). */
  readonly optimizerWritesBf16?: boolean;
  /**
   * Optional: dst = src rounded to bf16 precision (round to nearest even), kept in f32 storage: the bits of a cast to
   * bf16 and back, in one pass. Where bf16 products widen their operands to f32 (`nativeBf16` false), autocast gives
   * the products such operands instead of bf16 buffers that the kernel would widen again (ops/linalg.ts `prepare`).
   */
  roundBf16?(src: Float32Array, dst: Float32Array): void;
  /**
   * Optional: NF4 codes (two a byte, high nibble first) and the absmax of every 64 elements of `w`
   * (src/peft/nf4.ts `quantizeNf4`, whose TypeScript gives the same bits); returns -1, or the index of a non-finite
   * element (the outputs then mean nothing).
   */
  quantizeNf4?(w: Float32Array, codes: Int8Array, absmax: Float32Array): number;
  /**
   * Optional: one AdamW8bit update in place (src/optim/adamw8bit.ts, whose TypeScript gives the same bits): 8-bit
   * moments in blocks of 256 with an absmax each, widened, updated with the parameter, stored again at the nearest code.
   */
  adamw8bit?(args: AdamW8bitArgs): void;
  /**
   * Optional: the rows of src, an f32 (rows, cols) matrix, cast to bf16 (round to nearest even) into rows of `ld`
   * elements of dst, columns cols..ld-1 set to zero: a bf16 copy with room for more columns beside it, in the pass a
   * plain cast makes (LoRA's base product with the adapter's factors appended, ops/lora-linear.ts).
   */
  castRowsBf16?(src: Float32Array, rows: number, cols: number, dst: Uint16Array, ld: number): void;
  /**
   * Optional: LoRA's rank-r product in the pass that makes an activation's bf16 copy (ops/lora-linear.ts). src is a
   * (rows, cols) matrix, f32 or bf16 (a Uint16Array); F (r, cols) and h (rows, r) are bf16, r <= `loraRowsMaxRank`:
   * dst (rows, ld), ld >= cols + r, gets each row of src as bf16 followed by h's row, h = bf16(scale * bf16(src) F^T)
   * with the products accumulated in f32, then zeros to ld. With H (rows, r, bf16) and gH (cols, r, f32):
   * gH = bf16(src)^T H, the same bits for any thread count.
   */
  loraRows?(src: Float32Array | Uint16Array, rows: number, cols: number, dst: Uint16Array, F: Uint16Array, r: number,
    scale: number, h: Uint16Array, H: Uint16Array | null, gH: Float32Array | null, ld: number): void;
  /**
   * Optional, with `loraRows`: out (r, cols) = X[:, :cols]^T H for bf16 X (rows, ld) and H (rows, r), r <=
   * `loraRowsMaxRank` (LoRA's A gradient dh^T x from x's kept bf16 copy), the same bits for any thread count.
   */
  loraOuter?(X: Uint16Array, rows: number, cols: number, ld: number, H: Uint16Array, r: number, out: Float32Array): void;
  /** The largest rank `loraRows` and `loraOuter` take. */
  readonly loraRowsMaxRank?: number;
  /**
   * dx = dy * f'(x) for `op`, `y` = f(x). exp, sqrt, rsqrt and reciprocal read only y, every other op only x (the
   * unary op keeps just the one its kernel reads and passes it as both).
   */
  unaryBackward(op: UnaryOp, x: Float32Array, y: Float32Array, dy: Float32Array, dx: Float32Array): void;
  /**
   * out[idx] = a[idx . aStrides] (op) b[idx . bStrides] for every idx of `shape`; `out` contiguous.
   * Broadcast dimensions have stride 0.
   */
  binary(op: BinaryOp, a: Float32Array, aStrides: number[], b: Float32Array, bStrides: number[], shape: number[], out: Float32Array): void;
  /** out = alpha * x + beta * y on contiguous same-size buffers (out may alias x or y). */
  axpby(alpha: number, x: Float32Array, beta: number, y: Float32Array, out: Float32Array): void;
  /** out = x * scale + shift (out may alias x). */
  affine(x: Float32Array, scale: number, shift: number, out: Float32Array): void;
  /** out[idx] = cond[idx] != 0 ? a[idx] : b[idx], strided/broadcast like `binary`. */
  where(cond: Float32Array, condStrides: number[], a: Float32Array, aStrides: number[], b: Float32Array, bStrides: number[], shape: number[], out: Float32Array): void;

  // ---- reductions (f32) -------------------------------------------------------------------------
  /** Views x as (outer, n, inner) and reduces the middle axis: out has (outer, inner) elements. */
  reduce(op: ReduceOp, x: Float32Array, outer: number, n: number, inner: number, out: Float32Array): void;
  /** Index of the max along the middle axis of (outer, n, inner), first on ties. */
  argmax(x: Float32Array, outer: number, n: number, inner: number, out: Int32Array): void;
  /** sum of x[i]^2 in float64 accumulation (global-norm clipping). */
  sumSquares(x: Float32Array): number;

  // ---- memory -----------------------------------------------------------------------------------
  /**
   * Returns the process heap's free pages to the operating system (native: glibc's malloc_trim; portable: nothing
   * to do). Buffers freed in the middle of the heap otherwise stay resident until something reuses them.
   */
  trimHeap(): void;
  /**
   * Uninitialised memory for a large tensor buffer, aligned for the backend's kernels (native: 64 bytes, a cache
   * line; malloc's 16 cost AMX products 15-25%). Absent: the runtime's own ArrayBuffers serve.
   */
  freshBuffer?(bytes: number): ArrayBuffer;

  // ---- linear algebra ---------------------------------------------------------------------------
  matmul(args: MatmulArgs): void;
  /** matmul with an f32 `a` and a bf16 or int8 `b` (a frozen weight): same result as widening b first. */
  matmulLowp(args: MatmulLowpArgs): void;

  // ---- fused neural-network kernels (each has a test against its composition) ----------------------
  /** Row-wise softmax (or log-softmax) over the last axis of (rows, cols). */
  softmax(x: Float32Array, rows: number, cols: number, out: Float32Array, log: boolean): void;
  /** dx = y * (dy - sum(dy*y)) for softmax; dx = dy - exp(y) * sum(dy) for log-softmax (y = output). */
  softmaxBackward(y: Float32Array, dy: Float32Array, rows: number, cols: number, dx: Float32Array, log: boolean): void;
  /**
   * Layer norm over the last axis: out = (x - mean) * rstd * gamma + beta. gamma/beta may be null
   * (no affine). Writes mean and rstd (rows elements each) for the backward pass.
   */
  layerNorm(x: Float32Array, gamma: Float32Array | null, beta: Float32Array | null, rows: number, cols: number, eps: number,
    out: Float32Array, mean: Float32Array, rstd: Float32Array): void;
  /** Gradients of layerNorm. dgamma/dbeta (may be null) are ACCUMULATED into (+=). dx is written. */
  layerNormBackward(dy: Float32Array, x: Float32Array, gamma: Float32Array | null, mean: Float32Array, rstd: Float32Array,
    rows: number, cols: number, dx: Float32Array, dgamma: Float32Array | null, dbeta: Float32Array | null): void;
  /**
   * The gradients of layerNorm from its output y instead of its input (xhat = (y - beta) / gamma), so that a layer
   * whose output is kept anyway (by a trainable Linear or a LoRA factor after it) need not keep its input too.
   * gamma is required and should be well away from 0 (layerNorm's op checks). Accumulation as layerNormBackward.
   */
  layerNormBackwardFromOutput(dy: Float32Array, y: Float32Array, gamma: Float32Array, beta: Float32Array | null, rstd: Float32Array,
    rows: number, cols: number, dx: Float32Array, dgamma: Float32Array | null, dbeta: Float32Array | null): void;
  /** RMS norm: out = x * rstd * gamma, rstd = 1/sqrt(mean(x^2) + eps). Writes rstd. */
  rmsNorm(x: Float32Array, gamma: Float32Array | null, rows: number, cols: number, eps: number, out: Float32Array, rstd: Float32Array): void;
  /** rmsNormBackward from the output y (xhat = y / gamma, gamma nonzero), as layerNormBackwardFromOutput. */
  rmsNormBackwardFromOutput(dy: Float32Array, y: Float32Array, gamma: Float32Array, rstd: Float32Array, rows: number, cols: number,
    dx: Float32Array, dgamma: Float32Array | null): void;
  /** Gradients of rmsNorm; dgamma accumulated (+=), dx written. */
  rmsNormBackward(dy: Float32Array, x: Float32Array, gamma: Float32Array | null, rstd: Float32Array, rows: number, cols: number,
    dx: Float32Array, dgamma: Float32Array | null): void;
  /** out[i, :] = table[idx[i], :] (embedding lookup). Indices are validated by the caller. */
  gather(table: Float32Array, idx: Int32Array, cols: number, out: Float32Array): void;
  /** dtable[idx[i], :] += src[i, :] (embedding backward). */
  scatterAdd(src: Float32Array, idx: Int32Array, cols: number, dtable: Float32Array): void;
  /**
   * Cross-entropy of logits (rows, cols) against integer targets, with label smoothing `ls`.
   * loss[r] = -(1-ls) * logp[r, t] - ls/cols * sum_c logp[r, c]; rows whose target == ignoreIndex get 0.
   * Writes per-row losses to `loss` and the log-softmax to `logp` (rows, cols) for the backward pass.
   */
  crossEntropy(logits: Float32Array, targets: Int32Array, rows: number, cols: number, ignoreIndex: number, ls: number,
    loss: Float32Array, logp: Float32Array): void;
  /** dlogits[r, :] = dloss[r] * (softmax(logits[r]) - smoothedOneHot(target[r])); 0 for ignored rows. */
  crossEntropyBackward(logp: Float32Array, targets: Int32Array, rows: number, cols: number, ignoreIndex: number, ls: number,
    dloss: Float32Array, dlogits: Float32Array): void;
  /**
   * Optional: crossEntropy without label smoothing and without log-probabilities: the per-row losses (the same bits)
   * and each row's log-sum-exp in `lse` (rows), for a caller that keeps the logits for crossEntropyBackwardLse.
   */
  crossEntropyLse?(logits: Float32Array, targets: Int32Array, rows: number, cols: number, ignoreIndex: number,
    loss: Float32Array, lse: Float32Array): void;
  /**
   * Optional: crossEntropyBackward (label smoothing 0) from the logits and crossEntropyLse's `lse`, the same bits;
   * `dlogits` may be `logits` (overwritten in place).
   */
  crossEntropyBackwardLse?(logits: Float32Array, lse: Float32Array, targets: Int32Array, rows: number, cols: number,
    ignoreIndex: number, dloss: Float32Array, dlogits: Float32Array): void;
  /**
   * Optional: crossEntropy's per-row losses and crossEntropyBackward's dlogits rounded to bf16, at once (the fused LM
   * head under bf16 autocast, whose products take the gradient in bf16). `logits` is scratch: overwritten. With
   * `dlogits` null the rounded gradient is left in `logits` (f32 storage holding bf16 values: the bits of the bf16
   * gradient widened), for products that widen bf16 operands to f32 anyway.
   */
  crossEntropyGradBf16?(logits: Float32Array, targets: Int32Array, rows: number, cols: number, ignoreIndex: number, ls: number,
    dloss: Float32Array, loss: Float32Array, dlogits: Uint16Array | null): void;
  /**
   * Rotary position embedding applied to x of shape (rows, T, D) where rows = B*H (contiguous), rotating the first
   * `rotDim` features in pairs (i, i + rotDim/2) ("rotate_half", the HF/Llama layout): for position t,
   * out = x * cos[t] + rotate_half(x) * sin[t], with cos/sin of shape (T, rotDim/2). `inverse` uses -sin (backward).
   */
  rope(x: Float32Array, cos: Float32Array, sin: Float32Array, rows: number, T: number, D: number, rotDim: number,
    inverse: boolean, out: Float32Array): void;

  /**
   * Fused attention: P = softmax(scale * Q K^T with masks) and out = P V at `outStrides`. `keyMask` (B, Tk) has 1
   * at keys to ignore (padding), or is null. `firstKey` (B, Tq), or null, is the first key each query may see
   * (packed rows: the start of its document): query i of batch b sees keys j with firstKey[b * Tq + i] <= j, on top
   * of the causal bound and the key mask. A query whose keys are all masked gets P = 0 and a zero output. P is
   * not kept: `stats` (B, H, Tq, 2) receives per-row statistics from which `attentionBackward` of the same backend
   * rebuilds it.
   */
  attention(shape: AttentionShape, q: Float32Array, k: Float32Array, v: Float32Array, keyMask: Float32Array | null,
    firstKey: Int32Array | null, out: Float32Array, stats: Float32Array): void;
  /**
   * Gradients of `attention` given dout (at `doutStrides`), from the same q, k, v, keyMask and the `stats` that the
   * forward call wrote: dq, dk, dv are written (overwritten) at the strides of q, k, v; dk/dv sum over the query
   * heads that share a kv head.
   */
  attentionBackward(shape: AttentionShape, q: Float32Array, k: Float32Array, v: Float32Array, keyMask: Float32Array | null,
    firstKey: Int32Array | null, stats: Float32Array, dout: Float32Array, doutStrides: [number, number, number], dq: Float32Array, dk: Float32Array,
    dv: Float32Array): void;
  /**
   * Optional: `attention` with bf16 products (bf16 autocast on a backend with `nativeBf16`), H = Hkv only. q, k, v are
   * f32 views as for `attention`; the kernel also writes them packed as dense bf16 (B, H, T, D) into ql, kl, vl,
   * which `attentionBf16Backward` reads instead of q, k, v (the backward pass keeps those, not the f32 projection).
   * P is rounded to bf16 before its product with V; softmax and its statistics run in f32. Where
   * `attentionBf16Tiles` says the tiles run the shape, q, k, v may be bf16 views (Uint16Arrays, all three: a projection
   * written in bf16), whose rows are copied as they are.
   */
  attentionBf16?(shape: AttentionShape, q: Float32Array | Uint16Array, k: Float32Array | Uint16Array, v: Float32Array | Uint16Array, keyMask: Float32Array | null,
    firstKey: Int32Array | null, out: Float32Array | Uint16Array, stats: Float32Array, ql: Uint16Array, kl: Uint16Array,
    vl: Uint16Array): void;
  /**
   * Optional: whether `attentionBf16` runs head by head on AMX tiles for a shape of these sizes (H = Hkv), computing only
   * the keys each block of queries sees; where it does, it beats the f32 kernel at every length and mask measured (so
   * the bf16 kernel is taken at T >= 16 whatever the masks), where the batched products need long unmasked rows.
   */
  attentionBf16Tiles?(Tq: number, Tk: number, D: number, Dv: number): boolean;
  /**
   * Gradients of `attentionBf16`, written (overwritten) at the strides of shape's q, k, v: Float32Arrays, or, where
   * `attentionBf16Tiles` says the tiles run the shape, Uint16Arrays of bf16 (all three). There too `attentionBf16`'s
   * out and this dout may be bf16.
   */
  attentionBf16Backward?(shape: AttentionShape, ql: Uint16Array, kl: Uint16Array, vl: Uint16Array, keyMask: Float32Array | null,
    firstKey: Int32Array | null, stats: Float32Array, dout: Float32Array | Uint16Array, doutStrides: [number, number, number],
    dq: Float32Array | Uint16Array, dk: Float32Array | Uint16Array, dv: Float32Array | Uint16Array): void;

  // ---- random (counter-based, see rng.ts) ----------------------------------------------------------
  /** mask[i] = (hashUniform(seed, i) >= p) ? 1/(1-p) : 0. */
  dropoutMask(seed: number, p: number, mask: Float32Array): void;

  // ---- optimizer updates (in place) ----------------------------------------------------------------
  adamw(args: AdamWArgs): void;
  sgd(args: SGDArgs): void;
  /** Fused RMSprop: device backends (the CPU backends leave it unset and src/optim/rmsprop.ts loops in TypeScript). */
  rmsprop?(args: RMSpropArgs): void;
}

export const DTYPE_BYTES: Record<DType, number> = { f32: 4, bf16: 2, f16: 2, i32: 4, i8: 1 };

/** A new zero-filled typed array for `size` elements of `dtype` (the typed-array class each dtype is stored in). */
export function allocStorage(dtype: DType, size: number): Storage {
  switch (dtype) {
    case 'f32': return new Float32Array(size);
    case 'bf16':
    case 'f16': return new Uint16Array(size);
    case 'i32': return new Int32Array(size);
    case 'i8': return new Int8Array(size);
    default: throw new Error(`alloc: unknown dtype '${dtype as string}'; expected f32, bf16, f16, i32 or i8`);
  }
}
