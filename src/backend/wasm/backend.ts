/**
 * The WebAssembly backend: kernels written in C++ (wasm/*.cc), compiled to wasm32 with 128-bit SIMD, run on the
 * module's linear memory (see memory.ts for how operands get there) on 1 + N worker threads where shared memory
 * exists. Kernels without a wasm implementation run the portable TypeScript ones, so the backend is complete.
 * This file has no Node-only imports: the loader (node.ts, or a browser one) instantiates the module.
 */
import { checkNf4, nf4Bytes } from '../nf4.js';
import type {
  AdamWArgs, AttentionShape, Backend, BinaryOp, DType, MatmulArgs, MatmulLowpArgs, ReduceOp, SGDArgs, Storage, UnaryOp,
} from '../backend.js';
import { allocStorage } from '../backend.js';
import { PortableBackend } from '../portable.js';
import type { WasmMemory } from './memory.js';

/** The largest element of a batched (batch, rows, cols) operand that `stride` between items reaches, + 1. */
function extent(batch: number, stride: number, size: number): number {
  return (batch - 1) * stride + size;
}

/** The wasm unary ops (codes of native/common.h's Unary enum); the others run the portable kernels. */
const WASM_UNARY: Partial<Record<UnaryOp, number>> = { exp: 1, tanh: 5, sigmoid: 6, gelu: 8, gelu_tanh: 9, silu: 10 };
/**
 * Below this many elements an elementwise or row kernel runs the portable one by default: placing operands costs
 * a few microseconds, more than such a small op.
 */
const MIN_ELEMENTWISE = 2048;

function sameLength(kernel: string, ...xs: Float32Array[]): void {
  for (const a of xs) if (a.length !== xs[0].length) throw new RangeError(`${kernel}: buffers of ${xs.map((b) => b.length).join(', ')} elements; expected equal lengths`);
}
function atLeast(kernel: string, n: number, ...xs: (Float32Array | Int32Array)[]): void {
  for (const a of xs) if (a.length < n) throw new RangeError(`${kernel}: a buffer of ${a.length} elements; ${n} needed`);
}

/** A bias (the kernel starts each row of out as it, as prefillBias does) needs beta = 0 and N elements. */
function checkBias(m: { bias?: Float32Array | null; beta: number; N: number }): void {
  if (!m.bias) return;
  if (m.beta !== 0) throw new Error(`matmul: a bias needs beta = 0; got beta ${m.beta}`);
  if (m.bias.length < m.N) throw new Error(`matmul: the bias has ${m.bias.length} elements; expected N = ${m.N}`);
}

/** The furthest element a (b, h, t, feature) view reaches, + 1. */
function reach(st: readonly number[], B: number, H: number, T: number, D: number): number {
  return (B - 1) * st[0] + (H - 1) * st[1] + (T - 1) * st[2] + D;
}

function checkAttention(s: AttentionShape, q: Float32Array, k: Float32Array, v: Float32Array, keyMask: Float32Array | null,
  firstKey: Int32Array | null, stats: Float32Array, o: Float32Array, os: readonly number[], oName: string): void {
  const fail = (what: string) => { throw new RangeError(`attention: ${what}`); };
  for (const key of ['B', 'H', 'Hkv', 'Tq', 'Tk', 'D', 'Dv'] as const) {
    if (!Number.isInteger(s[key]) || s[key] <= 0) fail(`shape.${key} must be a positive integer; got ${s[key]}`);
  }
  if (s.H % s.Hkv !== 0) fail(`H (${s.H}) must be a multiple of Hkv (${s.Hkv})`);
  for (const st of [s.qStrides, s.kStrides, s.vStrides, os]) if (st.length !== 3 || st.some((x) => !(x >= 0))) fail('strides must be 3 non-negative numbers');
  if (reach(s.qStrides, s.B, s.H, s.Tq, s.D) > q.length) fail('q is smaller than its strides reach');
  if (reach(s.kStrides, s.B, s.Hkv, s.Tk, s.D) > k.length) fail('k is smaller than its strides reach');
  if (reach(s.vStrides, s.B, s.Hkv, s.Tk, s.Dv) > v.length) fail('v is smaller than its strides reach');
  if (reach(os, s.B, s.H, s.Tq, s.Dv) > o.length) fail(`${oName} is smaller than its strides reach`);
  if (stats.length < s.B * s.H * s.Tq * 2) fail('stats must hold B*H*Tq*2 elements');
  if (keyMask && keyMask.length < s.B * s.Tk) fail('keyMask must hold B*Tk elements');
  if (firstKey && firstKey.length < s.B * s.Tq) fail('firstKey must hold B*Tq elements');
}

/** The int part of an attention shape as ag_attention reads it. */
function shapeInts(s: AttentionShape): number[] {
  return [s.B, s.H, s.Hkv, s.Tq, s.Tk, s.D, s.Dv, ...s.qStrides, ...s.kStrides, ...s.vStrides, ...s.outStrides, s.causal ? 1 : 0];
}

/** ag_matmul's bKind of each low-precision weight dtype. */
const LOWP_KIND: Record<MatmulLowpArgs['bDtype'], number> = { bf16: 1, i8: 2, nf4: 3 };

export class WasmBackend implements Backend {
  readonly name = 'wasm' as const;
  readonly nativeBf16 = false;
  private readonly p = new PortableBackend();
  /** Elementwise and row kernels on fewer elements run the portable ones (tests set 0 to run every size here). */
  minElements = MIN_ELEMENTWISE;

  constructor(private readonly w: WasmMemory, private readonly line: string) {}

  describe(): string {
    return `${this.line}, ${this.numThreads()} thread${this.numThreads() === 1 ? '' : 's'}`;
  }
  numThreads(): number {
    return this.w.x.ag_threads();
  }
  /** Bytes of the module's linear memory (its high-water mark: wasm memory never shrinks). */
  wasmMemoryBytes(): number {
    return this.w.memory.buffer.byteLength;
  }

  alloc(dtype: DType, size: number): Storage {
    return allocStorage(dtype, size);
  }
  fill(dst: Float32Array | Int32Array, value: number): void {
    dst.fill(value);
  }
  stridedCopy(src: Storage, shape: number[], strides: number[], dst: Storage, dstStrides?: number[]): void {
    this.p.stridedCopy(src, shape, strides, dst, dstStrides);
  }
  cast(src: Storage, srcDtype: DType, dst: Storage, dstDtype: DType): void {
    this.p.cast(src, srcDtype, dst, dstDtype);
  }

  unary(op: UnaryOp, x: Float32Array, out: Float32Array): void {
    const code = WASM_UNARY[op];
    if (code === undefined || x.length < this.minElements) return this.p.unary(op, x, out);
    sameLength('unary', x, out);
    const w = this.w;
    w.reset();
    const px = w.put(x), po = w.reserve(out.byteLength);
    w.x.ag_unary(code, px, po, x.length);
    w.get(po, out);
  }
  unaryBackward(op: UnaryOp, x: Float32Array, y: Float32Array, dy: Float32Array, dx: Float32Array): void {
    const code = WASM_UNARY[op];
    if (code === undefined || op === 'exp' || x.length < this.minElements) return this.p.unaryBackward(op, x, y, dy, dx);
    sameLength('unaryBackward', x, dy, dx);
    const w = this.w;
    w.reset();
    const px = w.put(x), pg = w.put(dy), pd = w.reserve(dx.byteLength);
    w.x.ag_unary_backward(code, px, pg, pd, x.length);
    w.get(pd, dx);
  }
  binary(op: BinaryOp, a: Float32Array, aStrides: number[], b: Float32Array, bStrides: number[], shape: number[], out: Float32Array): void {
    this.p.binary(op, a, aStrides, b, bStrides, shape, out);
  }
  axpby(alpha: number, x: Float32Array, beta: number, y: Float32Array, out: Float32Array): void {
    this.p.axpby(alpha, x, beta, y, out);
  }
  affine(x: Float32Array, scale: number, shift: number, out: Float32Array): void {
    this.p.affine(x, scale, shift, out);
  }
  where(cond: Float32Array, condStrides: number[], a: Float32Array, aStrides: number[], b: Float32Array, bStrides: number[],
    shape: number[], out: Float32Array): void {
    this.p.where(cond, condStrides, a, aStrides, b, bStrides, shape, out);
  }

  reduce(op: ReduceOp, x: Float32Array, outer: number, n: number, inner: number, out: Float32Array): void {
    const size = outer * n * inner;
    if (op !== 'sum' || size < this.minElements || outer * inner === 0) return this.p.reduce(op, x, outer, n, inner, out);
    atLeast('reduce', size, x);
    atLeast('reduce', outer * inner, out);
    const w = this.w;
    w.reset();
    const px = w.put(x.subarray(0, size)), po = w.reserve(outer * inner * 4);
    w.x.ag_reduce_sum(px, outer, n, inner, po);
    w.get(po, out, outer * inner);
  }
  argmax(x: Float32Array, outer: number, n: number, inner: number, out: Int32Array): void {
    this.p.argmax(x, outer, n, inner, out);
  }
  sumSquares(x: Float32Array): number {
    return this.p.sumSquares(x);
  }
  trimHeap(): void {
    // operands live in the module's memory only for one call; tensors are V8's to free
  }

  matmul(m: MatmulArgs): void {
    const { dtype, batch, M, N, K } = m;
    if (dtype !== 'f32' && dtype !== 'bf16') throw new Error(`matmul: dtype must be 'f32' or 'bf16'; got '${dtype as string}'`);
    const bf16 = dtype === 'bf16';
    if (bf16 !== m.a instanceof Uint16Array || bf16 !== m.b instanceof Uint16Array) {
      throw new TypeError(`matmul: dtype '${dtype}' expects ${bf16 ? 'Uint16Array' : 'Float32Array'} operands`);
    }
    checkBias(m);
    if (M === 0 || N === 0 || batch === 0) return;
    this.product(m, m.b, bf16 ? 1 : 0, null, m.strideB, m.bias ?? null);
  }
  matmulLowp(m: MatmulLowpArgs): void {
    const kind = LOWP_KIND[m.bDtype];
    if (kind === undefined) throw new Error(`matmulLowp: bDtype must be 'bf16', 'i8' or 'nf4'; got '${m.bDtype as string}'`);
    if ((m as { bias?: unknown }).bias) throw new Error('matmulLowp: takes no bias (start out as the bias and pass beta = 1)');
    if (m.bDtype === 'bf16' && !(m.b instanceof Uint16Array)) throw new TypeError(`matmulLowp: bDtype 'bf16' expects a Uint16Array b`);
    if (m.bDtype !== 'bf16' && !(m.b instanceof Int8Array)) throw new TypeError(`matmulLowp: bDtype '${m.bDtype}' expects an Int8Array b`);
    if (!(m.a instanceof Float32Array)) throw new TypeError('matmulLowp: a must be a Float32Array');
    if (m.M === 0 || m.N === 0 || m.batch === 0) return;
    if (m.bDtype === 'nf4') {
      checkNf4(m.b as Int8Array, m.scales, m.K * m.N);
      this.product({ ...m, dtype: 'f32' }, m.b, kind, m.scales, 0, null, nf4Bytes(m.K * m.N));
      return;
    }
    const rows = m.transB ? m.N : m.K;
    if (m.scales && m.scales.length < rows) throw new RangeError(`matmulLowp: scales has ${m.scales.length} elements; b has ${rows} stored rows`);
    this.product({ ...m, dtype: 'f32' }, m.b, kind, m.bDtype === 'i8' ? m.scales : null, 0);
  }

  /**
   * Checks sizes, places the operands and runs ag_matmul. bKind: 0 f32, 1 bf16, 2 int8, 3 nf4 (then `bLength`, the
   * bytes of its packed codes, replaces the element count).
   */
  private product(m: Omit<MatmulArgs, 'b' | 'strideB'>, b: Float32Array | Uint16Array | Int8Array, bKind: number,
    scales: Float32Array | null, strideB: number, bias: Float32Array | null = null, bLength?: number): void {
    const { a, out, batch, M, N, K } = m;
    const need = (what: string, have: number, want: number) => {
      if (have < want) throw new RangeError(`matmul: ${what} has ${have} elements; (batch ${batch}, M ${M}, N ${N}, K ${K}) needs ${want}`);
    };
    need('a', a.length, extent(batch, m.strideA, M * K));
    const nb = bLength ?? extent(batch, strideB, K * N);
    need('b', b.length, nb);
    need('out', out.length, batch * M * N);
    const w = this.w;
    w.reset();
    const pa = w.put(a.subarray(0, extent(batch, m.strideA, M * K)));
    const pb = w.put(b.subarray(0, nb));
    const ps = w.putOpt(scales), pbias = bias ? w.put(bias.subarray(0, N)) : 0;
    const size = batch * M * N;
    const po = m.beta !== 0 ? w.put(out.subarray(0, size)) : w.reserve(size * 4);
    w.x.ag_matmul(pa, pb, po, m.dtype === 'bf16' ? 1 : 0, bKind, ps, batch, M, N, K, m.transA ? 1 : 0, m.transB ? 1 : 0,
      m.strideA, strideB, m.alpha, m.beta, pbias);
    w.get(po, out, size);
  }

  softmax(x: Float32Array, rows: number, cols: number, out: Float32Array, log: boolean): void {
    const n = rows * cols;
    if (n < this.minElements) return this.p.softmax(x, rows, cols, out, log);
    atLeast('softmax', n, x, out);
    const w = this.w;
    w.reset();
    const px = w.put(x.subarray(0, n)), po = w.reserve(n * 4);
    w.x.ag_softmax(px, rows, cols, po, log ? 1 : 0);
    w.get(po, out, n);
  }
  softmaxBackward(y: Float32Array, dy: Float32Array, rows: number, cols: number, dx: Float32Array, log: boolean): void {
    const n = rows * cols;
    if (n < this.minElements) return this.p.softmaxBackward(y, dy, rows, cols, dx, log);
    atLeast('softmaxBackward', n, y, dy, dx);
    const w = this.w;
    w.reset();
    const py = w.put(y.subarray(0, n)), pg = w.put(dy.subarray(0, n)), pd = w.reserve(n * 4);
    w.x.ag_softmax_backward(py, pg, rows, cols, pd, log ? 1 : 0);
    w.get(pd, dx, n);
  }
  layerNorm(x: Float32Array, gamma: Float32Array | null, beta: Float32Array | null, rows: number, cols: number, eps: number,
    out: Float32Array, mean: Float32Array, rstd: Float32Array): void {
    const n = rows * cols;
    if (n < this.minElements) return this.p.layerNorm(x, gamma, beta, rows, cols, eps, out, mean, rstd);
    atLeast('layerNorm', n, x, out);
    atLeast('layerNorm', rows, mean, rstd);
    if (gamma) atLeast('layerNorm', cols, gamma);
    if (beta) atLeast('layerNorm', cols, beta);
    const w = this.w;
    w.reset();
    const px = w.put(x.subarray(0, n)), pg = w.putOpt(gamma), pb = w.putOpt(beta);
    const po = w.reserve(n * 4), pm = w.reserve(rows * 4), pr = w.reserve(rows * 4);
    w.x.ag_layer_norm(px, pg, pb, rows, cols, eps, po, pm, pr);
    w.get(po, out, n);
    w.get(pm, mean, rows);
    w.get(pr, rstd, rows);
  }
  layerNormBackward(dy: Float32Array, x: Float32Array, gamma: Float32Array | null, mean: Float32Array, rstd: Float32Array,
    rows: number, cols: number, dx: Float32Array, dgamma: Float32Array | null, dbeta: Float32Array | null): void {
    const n = rows * cols;
    if (n < this.minElements) return this.p.layerNormBackward(dy, x, gamma, mean, rstd, rows, cols, dx, dgamma, dbeta);
    atLeast('layerNormBackward', n, dy, x, dx);
    atLeast('layerNormBackward', rows, mean, rstd);
    for (const a of [gamma, dgamma, dbeta]) if (a) atLeast('layerNormBackward', cols, a);
    const w = this.w;
    w.reset();
    const pdy = w.put(dy.subarray(0, n)), px = w.put(x.subarray(0, n)), pg = w.putOpt(gamma), pm = w.put(mean), pr = w.put(rstd);
    const pdx = w.reserve(n * 4), pdg = w.putOpt(dgamma), pdb = w.putOpt(dbeta);
    w.x.ag_layer_norm_backward(pdy, px, pg, pm, pr, rows, cols, pdx, pdg, pdb);
    w.get(pdx, dx, n);
    if (dgamma) w.get(pdg, dgamma);
    if (dbeta) w.get(pdb, dbeta);
  }
  layerNormBackwardFromOutput(dy: Float32Array, y: Float32Array, gamma: Float32Array, beta: Float32Array | null, rstd: Float32Array,
    rows: number, cols: number, dx: Float32Array, dgamma: Float32Array | null, dbeta: Float32Array | null): void {
    const n = rows * cols;
    if (n < this.minElements) return this.p.layerNormBackwardFromOutput(dy, y, gamma, beta, rstd, rows, cols, dx, dgamma, dbeta);
    atLeast('layerNormBackwardFromOutput', n, dy, y, dx);
    atLeast('layerNormBackwardFromOutput', rows, rstd);
    for (const a of [gamma, beta, dgamma, dbeta]) if (a) atLeast('layerNormBackwardFromOutput', cols, a);
    const w = this.w;
    w.reset();
    const pdy = w.put(dy.subarray(0, n)), py = w.put(y.subarray(0, n)), pg = w.put(gamma), pb = w.putOpt(beta), pr = w.put(rstd);
    const pdx = w.reserve(n * 4), pdg = w.putOpt(dgamma), pdb = w.putOpt(dbeta);
    w.x.ag_layer_norm_backward_y(pdy, py, pg, pb, pr, rows, cols, pdx, pdg, pdb);
    w.get(pdx, dx, n);
    if (dgamma) w.get(pdg, dgamma);
    if (dbeta) w.get(pdb, dbeta);
  }
  rmsNorm(x: Float32Array, gamma: Float32Array | null, rows: number, cols: number, eps: number, out: Float32Array,
    rstd: Float32Array): void {
    this.p.rmsNorm(x, gamma, rows, cols, eps, out, rstd);
  }
  rmsNormBackward(dy: Float32Array, x: Float32Array, gamma: Float32Array | null, rstd: Float32Array, rows: number, cols: number,
    dx: Float32Array, dgamma: Float32Array | null): void {
    this.p.rmsNormBackward(dy, x, gamma, rstd, rows, cols, dx, dgamma);
  }
  rmsNormBackwardFromOutput(dy: Float32Array, y: Float32Array, gamma: Float32Array, rstd: Float32Array, rows: number, cols: number,
    dx: Float32Array, dgamma: Float32Array | null): void {
    this.p.rmsNormBackwardFromOutput(dy, y, gamma, rstd, rows, cols, dx, dgamma);
  }
  gather(table: Float32Array, idx: Int32Array, cols: number, out: Float32Array): void {
    this.p.gather(table, idx, cols, out);
  }
  scatterAdd(src: Float32Array, idx: Int32Array, cols: number, dtable: Float32Array): void {
    this.p.scatterAdd(src, idx, cols, dtable);
  }
  crossEntropy(logits: Float32Array, targets: Int32Array, rows: number, cols: number, ignoreIndex: number, ls: number,
    loss: Float32Array, logp: Float32Array): void {
    const n = rows * cols;
    if (n < this.minElements) return this.p.crossEntropy(logits, targets, rows, cols, ignoreIndex, ls, loss, logp);
    atLeast('crossEntropy', n, logits, logp);
    atLeast('crossEntropy', rows, targets, loss);
    for (let r = 0; r < rows; r++) {
      const t = targets[r];
      if (t !== ignoreIndex && !(t >= 0 && t < cols)) throw new RangeError(`crossEntropy: target ${t} of row ${r} is outside [0, ${cols})`);
    }
    const w = this.w;
    w.reset();
    const px = w.put(logits.subarray(0, n)), pt = w.put(targets.subarray(0, rows));
    const pl = w.reserve(rows * 4), pp = w.reserve(n * 4);
    w.x.ag_cross_entropy(px, pt, rows, cols, ignoreIndex, ls, pl, pp);
    w.get(pl, loss, rows);
    w.get(pp, logp, n);
  }
  crossEntropyBackward(logp: Float32Array, targets: Int32Array, rows: number, cols: number, ignoreIndex: number, ls: number,
    dloss: Float32Array, dlogits: Float32Array): void {
    const n = rows * cols;
    if (n < this.minElements) return this.p.crossEntropyBackward(logp, targets, rows, cols, ignoreIndex, ls, dloss, dlogits);
    atLeast('crossEntropyBackward', n, logp, dlogits);
    atLeast('crossEntropyBackward', rows, targets, dloss);
    for (let r = 0; r < rows; r++) {
      const t = targets[r];
      if (t !== ignoreIndex && !(t >= 0 && t < cols)) throw new RangeError(`crossEntropyBackward: target ${t} of row ${r} is outside [0, ${cols})`);
    }
    const w = this.w;
    w.reset();
    const pp = w.put(logp.subarray(0, n)), pt = w.put(targets.subarray(0, rows)), pg = w.put(dloss.subarray(0, rows));
    const pd = w.reserve(n * 4);
    w.x.ag_cross_entropy_backward(pp, pt, rows, cols, ignoreIndex, ls, pg, pd);
    w.get(pd, dlogits, n);
  }
  rope(x: Float32Array, cos: Float32Array, sin: Float32Array, rows: number, T: number, D: number, rotDim: number,
    inverse: boolean, out: Float32Array): void {
    this.p.rope(x, cos, sin, rows, T, D, rotDim, inverse, out);
  }

  dropoutMask(seed: number, p: number, mask: Float32Array): void {
    this.p.dropoutMask(seed, p, mask);
  }
  adamw(a: AdamWArgs): void {
    const n = a.param.length;
    if (n < this.minElements) return this.p.adamw(a);
    atLeast('adamw', n, a.grad, a.m, a.v);
    const w = this.w;
    w.reset();
    const pp = w.put(a.param), pg = w.put(a.grad.subarray(0, n)), pm = w.put(a.m.subarray(0, n)), pv = w.put(a.v.subarray(0, n));
    w.x.ag_adamw(pp, pg, pm, pv, n, a.lr, a.beta1, a.beta2, a.eps, a.weightDecay, 1 - Math.pow(a.beta1, a.step),
      1 - Math.pow(a.beta2, a.step), a.gradScale);
    w.get(pp, a.param);
    w.get(pm, a.m, n);
    w.get(pv, a.v, n);
  }
  sgd(a: SGDArgs): void {
    const n = a.param.length;
    if (n < this.minElements) return this.p.sgd(a);
    atLeast('sgd', n, a.grad);
    if (a.momentum !== 0) atLeast('sgd', n, a.buf);
    const w = this.w;
    w.reset();
    const pp = w.put(a.param), pg = w.put(a.grad.subarray(0, n));
    const pb = a.momentum !== 0 ? w.put(a.buf.subarray(0, n)) : 0;
    w.x.ag_sgd(pp, pg, pb, n, a.lr, a.momentum, a.dampening, a.nesterov ? 1 : 0, a.weightDecay, a.firstStep ? 1 : 0, a.gradScale);
    w.get(pp, a.param);
    if (a.momentum !== 0) w.get(pb, a.buf, n);
  }

  attention(s: AttentionShape, q: Float32Array, k: Float32Array, v: Float32Array, keyMask: Float32Array | null,
    firstKey: Int32Array | null, out: Float32Array, stats: Float32Array): void {
    checkAttention(s, q, k, v, keyMask, firstKey, stats, out, s.outStrides, 'out');
    const w = this.w;
    w.reset();
    const shape = w.putInts(shapeInts(s));
    // out is written at its strides only: the bytes between stay as they were, so it goes in as well as out
    const [pq, pk, pv, pm, pf, po] = w.putShared([q, k, v, keyMask, firstKey, out]);
    const ps = w.reserve(stats.byteLength);
    if (w.x.ag_attention(shape, s.scale, pq, pk, pv, pm, pf, po, ps) !== 0) throw new RangeError('attention: out of WebAssembly memory');
    w.getShared([out]);
    w.get(ps, stats);
  }
  attentionBackward(s: AttentionShape, q: Float32Array, k: Float32Array, v: Float32Array, keyMask: Float32Array | null,
    firstKey: Int32Array | null, stats: Float32Array, dout: Float32Array, doutStrides: [number, number, number], dq: Float32Array,
    dk: Float32Array, dv: Float32Array): void {
    checkAttention(s, q, k, v, keyMask, firstKey, stats, dout, doutStrides, 'dout');
    const w = this.w;
    w.reset();
    const shape = w.putInts(shapeInts(s));
    const dos = w.putInts(doutStrides);
    const [pq, pk, pv, pm, pf, pst, pdo, pdq, pdk, pdv] = w.putShared([q, k, v, keyMask, firstKey, stats, dout, dq, dk, dv]);
    if (w.x.ag_attention_backward(shape, s.scale, pq, pk, pv, pm, pf, pst, pdo, dos, pdq, pdk, pdv) !== 0) {
      throw new RangeError('attentionBackward: out of WebAssembly memory');
    }
    w.getShared([dq, dk, dv]);
  }
}
