/**
 * The native backend: the C++ addon `build/Release/autoglm_native.node` (OpenBLAS for f32 GEMM, oneDNN for bf16
 * GEMM where the CPU has native bf16, hand-written AVX2/OpenMP kernels for the rest). This file loads the addon
 * (after setting up the environment OpenBLAS reads when it loads) and adapts it to the `Backend` interface.
 */
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { allocStorage } from './backend.js';
import { threadCount } from './threads.js';
import { packageRoot } from '../package-root.js';
import { ConfigError } from '../errors.js';
import type {
  AttentionShape,
  AdamWArgs, AdamW8bitArgs, Backend, BinaryOp, DType, MatmulArgs, MatmulLowpArgs, MatmulToBf16Args, ReduceOp, SGDArgs, Storage, UnaryOp,
} from './backend.js';

/** The addon's exports (see native/addon.cc and native/bindings2.cc); op names are passed as integer codes. */
interface Addon {
  fill(dst: Float32Array | Int32Array, value: number): void;
  stridedCopy(src: Storage, shape: number[], strides: number[], dst: Storage, dstStrides?: number[]): void;
  cast(src: Storage, srcDt: number, dst: Storage, dstDt: number): void;
  unary(op: number, x: Float32Array, out: Float32Array): void;
  unaryBf16(op: number, x: Float32Array, out: Uint16Array): void;
  unaryBf16Grad(op: number, x: Float32Array | Uint16Array, y: Uint16Array, d: Uint16Array): void;
  mulBf16(g: Float32Array | Uint16Array, d: Uint16Array, out: Float32Array | Uint16Array): void;
  sumRowsBf16(src: Uint16Array, rows: number, cols: number, out: Float32Array): void;
  castColumnSums(src: Float32Array, rows: number, cols: number, dst: Uint16Array, sums: Float32Array): void;
  roundBf16(src: Float32Array, dst: Float32Array): void;
  castRowsBf16(src: Float32Array, rows: number, cols: number, dst: Uint16Array, ld: number): void;
  loraRows(src: Float32Array | Uint16Array, rows: number, cols: number, dst: Uint16Array, F: Uint16Array, r: number,
    scale: number, h: Uint16Array, H: Uint16Array | null, gH: Float32Array | null, ld: number): void;
  loraOuter(X: Uint16Array, rows: number, cols: number, ld: number, H: Uint16Array, r: number, out: Float32Array): void;
  unaryBackward(op: number, x: Float32Array, y: Float32Array, dy: Float32Array, dx: Float32Array): void;
  binary(op: number, a: Float32Array, as: number[], b: Float32Array, bs: number[], shape: number[], out: Float32Array): void;
  where(c: Float32Array, cs: number[], a: Float32Array, as: number[], b: Float32Array, bs: number[], shape: number[],
    out: Float32Array): void;
  axpby(alpha: number, x: Float32Array, beta: number, y: Float32Array, out: Float32Array): void;
  affine(x: Float32Array, scale: number, shift: number, out: Float32Array): void;
  reduce(op: number, x: Float32Array, outer: number, n: number, inner: number, out: Float32Array): void;
  argmax(x: Float32Array, outer: number, n: number, inner: number, out: Int32Array): void;
  sumSquares(x: Float32Array): number;
  trimHeap(): boolean;
  allocAligned(bytes: number): ArrayBuffer;
  /** The largest power of two up to 4096 dividing the view's data address (a diagnostic for the tests). */
  addressAlignment(view: ArrayBufferView): number;
  /** out: a Uint16Array (bf16) only with bf16 operands and beta = 0. */
  matmul(a: Float32Array | Uint16Array, b: Float32Array | Uint16Array, out: Float32Array | Uint16Array, bf16: boolean, batch: number,
    M: number, N: number, K: number, transA: boolean, transB: boolean, strideA: number, strideB: number, alpha: number,
    beta: number, bias: Float32Array | null): void;
  /** kind: 0 bf16, 1 int8, 2 nf4 (packed codes in an Int8Array). */
  matmulLowp(a: Float32Array, b: Uint16Array | Int8Array, out: Float32Array, kind: number, scales: Float32Array | null,
    batch: number, M: number, N: number, K: number, transA: boolean, transB: boolean, strideA: number, alpha: number,
    beta: number): void;
  quantizeNf4(w: Float32Array, codes: Int8Array, absmax: Float32Array): number;
  softmax(x: Float32Array, rows: number, cols: number, out: Float32Array, log: boolean): void;
  softmaxBackward(y: Float32Array, dy: Float32Array, rows: number, cols: number, dx: Float32Array, log: boolean): void;
  layerNorm(x: Float32Array, g: Float32Array | null, b: Float32Array | null, rows: number, cols: number, eps: number,
    out: Float32Array, mean: Float32Array, rstd: Float32Array): void;
  layerNormBackward(dy: Float32Array, x: Float32Array, g: Float32Array | null, mean: Float32Array, rstd: Float32Array,
    rows: number, cols: number, dx: Float32Array, dg: Float32Array | null, db: Float32Array | null): void;
  layerNormBackwardFromOutput(dy: Float32Array, y: Float32Array, g: Float32Array, b: Float32Array | null, rstd: Float32Array,
    rows: number, cols: number, dx: Float32Array, dg: Float32Array | null, db: Float32Array | null): void;
  rmsNorm(x: Float32Array, g: Float32Array | null, rows: number, cols: number, eps: number, out: Float32Array,
    rstd: Float32Array): void;
  rmsNormBackward(dy: Float32Array, x: Float32Array, g: Float32Array | null, rstd: Float32Array, rows: number, cols: number,
    dx: Float32Array, dg: Float32Array | null): void;
  rmsNormBackwardFromOutput(dy: Float32Array, y: Float32Array, g: Float32Array, rstd: Float32Array, rows: number, cols: number,
    dx: Float32Array, dg: Float32Array | null): void;
  gather(table: Float32Array, idx: Int32Array, cols: number, out: Float32Array): void;
  scatterAdd(src: Float32Array, idx: Int32Array, cols: number, dtable: Float32Array): void;
  crossEntropy(logits: Float32Array, t: Int32Array, rows: number, cols: number, ignore: number, ls: number,
    loss: Float32Array, logp: Float32Array): void;
  crossEntropyBackward(logp: Float32Array, t: Int32Array, rows: number, cols: number, ignore: number, ls: number,
    dloss: Float32Array, dlogits: Float32Array): void;
  crossEntropyGradBf16(logits: Float32Array, t: Int32Array, rows: number, cols: number, ignore: number, ls: number,
    dloss: Float32Array, loss: Float32Array, dlogits: Uint16Array | null): void;
  crossEntropyLse(logits: Float32Array, t: Int32Array, rows: number, cols: number, ignore: number, loss: Float32Array,
    lse: Float32Array): void;
  crossEntropyBackwardLse(logits: Float32Array, lse: Float32Array, t: Int32Array, rows: number, cols: number, ignore: number,
    dloss: Float32Array, dlogits: Float32Array): void;
  rope(x: Float32Array, cos: Float32Array, sin: Float32Array, rows: number, T: number, D: number, rot: number,
    inverse: boolean, out: Float32Array): void;
  dropoutMask(seed: number, p: number, mask: Float32Array): void;
  attention(s: AttentionShape, q: Float32Array, k: Float32Array, v: Float32Array, km: Float32Array | null, fk: Int32Array | null,
    out: Float32Array, stats: Float32Array): void;
  attentionBackward(s: AttentionShape, q: Float32Array, k: Float32Array, v: Float32Array, km: Float32Array | null, fk: Int32Array | null,
    stats: Float32Array, dout: Float32Array, dos: number[], dq: Float32Array, dk: Float32Array, dv: Float32Array): void;
  attentionBf16(s: AttentionShape, q: Float32Array | Uint16Array, k: Float32Array | Uint16Array, v: Float32Array | Uint16Array, km: Float32Array | null, fk: Int32Array | null,
    out: Float32Array | Uint16Array, stats: Float32Array, ql: Uint16Array, kl: Uint16Array, vl: Uint16Array): void;
  attentionBf16Backward(s: AttentionShape, ql: Uint16Array, kl: Uint16Array, vl: Uint16Array, km: Float32Array | null, fk: Int32Array | null,
    stats: Float32Array, dout: Float32Array | Uint16Array, dos: number[], dq: Float32Array | Uint16Array, dk: Float32Array | Uint16Array,
    dv: Float32Array | Uint16Array): void;
  attentionPoison(on: boolean): void;
  attentionBf16Budget(scores: number): void;
  attentionBf16Tiles(on?: boolean, Tq?: number, Tk?: number, D?: number, Dv?: number): boolean;
  adamw(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, lr: number, b1: number, b2: number,
    eps: number, wd: number, step: number, gs: number, out16?: Uint16Array): void;
  adamw8bit(p: Float32Array, g: Float32Array, c1: Uint8Array, c2: Uint8Array, a1: Float32Array, a2: Float32Array, map1: Float32Array, map2: Float32Array,
    lr: number, b1: number, b2: number, eps: number, wd: number, corr1: number, corr2: number, gs: number): void;
  sgd(p: Float32Array, g: Float32Array, buf: Float32Array, lr: number, momentum: number, dampening: number,
    nesterov: boolean, wd: number, first: boolean, gs: number, out16?: Uint16Array): void;
  info(): { blasConfig: string; blasCore: string; onednnVersion: string; onednnIsa: string; bf16Path: string; threads: number };
  setNumThreads(n: number): void;
}

// Op codes: the order of the enums in native/common.h.
const UNARY: Record<UnaryOp, number> = {
  neg: 0, exp: 1, log: 2, sqrt: 3, rsqrt: 4, tanh: 5, sigmoid: 6, relu: 7, gelu: 8, gelu_tanh: 9, silu: 10, abs: 11,
  square: 12, reciprocal: 13, sign: 14,
};
const BINARY: Record<BinaryOp, number> = {
  add: 0, sub: 1, mul: 2, div: 3, pow: 4, max: 5, min: 6, eq: 7, gt: 8, ge: 9, lt: 10, le: 11,
};
const REDUCE: Record<ReduceOp, number> = { sum: 0, max: 1, min: 2 };
const DTYPE: Record<DType, number> = { f32: 0, bf16: 1, f16: 2, i32: 3, i8: 4 };
const LOWP_KIND: Record<MatmulLowpArgs['bDtype'], number> = { bf16: 0, i8: 1, nf4: 2 };

function code<K extends string>(table: Record<K, number>, key: K, kernel: string): number {
  const c = table[key];
  if (c === undefined) throw new TypeError(`${kernel}: unknown op or dtype '${String(key)}'`);
  return c;
}


/**
 * The OpenBLAS core type for this CPU. Debian's OpenBLAS 0.3.21 misdetects recent processors (Sapphire Rapids, Zen 3/4)
 * and falls back to slow generic kernels unless OPENBLAS_CORETYPE is set before the library loads.
 * On AMD Zen 3 both Zen and Haswell kernels were measured (see AMD_CORETYPE).
 */
export function openblasCoreType(): string | null {
  let info: string;
  try {
    info = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return null;
  }
  const flagsLine = /^flags\s*:(.*)$/m.exec(info);
  if (!flagsLine) return null;
  const flags = new Set(flagsLine[1]!.trim().split(/\s+/));
  if (flags.has('avx512f') && flags.has('avx512bw') && flags.has('avx512vl')) return 'SkylakeX';
  if (!flags.has('avx2')) return null;
  const vendor = /^vendor_id\s*:\s*(\S+)/m.exec(info)?.[1];
  const family = Number(/^cpu family\s*:\s*(\d+)/m.exec(info)?.[1] ?? '0');
  if (vendor === 'AuthenticAMD' && family >= 0x17) return AMD_CORETYPE;
  return 'Haswell';
}
/**
 * OPENBLAS_CORETYPE set to this CPU's core type (openblasCoreType) unless the user set it: call before anything loads
 * the addon (OpenBLAS reads it once, as it loads).
 */
export function setOpenblasCoreType(): void {
  if (process.env.OPENBLAS_CORETYPE !== undefined) return;
  const core = openblasCoreType();
  if (core) process.env.OPENBLAS_CORETYPE = core;
}
/**
 * Measured on an AMD EPYC (Zen 3, 2 threads), f32 GEMM GFLOP/s best-of on (512^3, 2048x768x768, 2048x768x3072,
 * 2048x3072x768): Haswell 167/142/146/151, Zen 157/122/142/134 (noisy shared machine; Haswell never slower).
 */
const AMD_CORETYPE = 'Haswell';


let lastError: string | null = null;
let addon: Addon | null = null;

/** Why the last `loadNativeBackend()` failed, or null. */
export function nativeLoadError(): string | null {
  return lastError;
}

function loadAddon(): Addon {
  if (addon) return addon;
  // AUTOGLM_ADDON_DIR: where the .node files are (default <package>/build/Release); tests point it elsewhere
  const file = path.join(process.env.AUTOGLM_ADDON_DIR || path.join(packageRoot(), 'build', 'Release'), 'autoglm_native.node');
  if (!existsSync(file)) {
    throw new Error(`the native addon is not built (${file} is missing); build it with ` +
      `'apt-get install -y libopenblas-dev libopenblas0-openmp libdnnl-dev g++ make && npm rebuild open-autoglm'`);
  }
  setOpenblasCoreType();
  const require = createRequire(import.meta.url);
  let mod: Addon;
  try {
    mod = require(file) as Addon;
  } catch (e) {
    throw new Error(`the native addon ${file} failed to load: ${(e as Error).message}`);
  }
  mod.setNumThreads(threadCount());
  addon = mod;
  return mod;
}

/**
 * For tests: while on, the f32 attention kernels fill their per-thread P and dS scratch with NaN before each head, so
 * that a product reading an element the kernel neither computed nor zeroed shows as NaN (native/attention.cc, Reach).
 */
export function attentionPoison(on: boolean): void {
  loadAddon().attentionPoison(on);
}

/**
 * For tests: the scores (8 bytes of scratch each) that one chunk of the bf16 attention kernel's (batch, head) blocks
 * may hold (native/attention_bf16.cc, for_chunks), so that small shapes run the chunked paths; 0 restores the default.
 */
export function attentionBf16Budget(scores: number): void {
  loadAddon().attentionBf16Budget(scores);
}

/**
 * Whether the bf16 attention kernel runs its products on AMX tiles, head by head (native/attention_amx.cc: where
 * oneDNN uses AMX and Linux grants the tile state); `on` turns them on or off first (tests, A/B runs).
 */
export function attentionBf16Tiles(on?: boolean): boolean {
  return loadAddon().attentionBf16Tiles(on);
}

/** For tests: the largest power of two up to 4096 that divides the view's data address. */
export function addressAlignment(view: ArrayBufferView): number {
  return loadAddon().addressAlignment(view);
}

/** Loads the native backend; throws an Error with the reason when the addon is not built or cannot load. */
export function loadNativeBackend(): Backend {
  try {
    const a = loadAddon();
    lastError = null;
    return new NativeBackend(a);
  } catch (e) {
    lastError = (e as Error).message;
    throw e;
  }
}

/** AUTOGLM_BF16_OUTPUTS=0 keeps every product's output in f32 (Backend.matmulToBf16 absent), for A/B runs. */
export function bf16OutputsSwitch(): boolean {
  const raw = process.env.AUTOGLM_BF16_OUTPUTS;
  if (raw === undefined || raw === '' || raw === '1') return true;
  if (raw === '0') return false;
  throw new ConfigError(`environment variable AUTOGLM_BF16_OUTPUTS is '${raw}'; expected 1 (bf16 products write bf16 where their readers take it, the default) or 0`);
}

/**
 * AUTOGLM_OPTIMIZER_BF16=0: optimizers leave trainable weights' bf16 copies to the products' casts
 * (Backend.optimizerWritesBf16 false), for A/B runs.
 */
export function optimizerBf16Switch(): boolean {
  const raw = process.env.AUTOGLM_OPTIMIZER_BF16;
  if (raw === undefined || raw === '' || raw === '1') return true;
  if (raw === '0') return false;
  throw new ConfigError(`environment variable AUTOGLM_OPTIMIZER_BF16 is '${raw}'; expected 1 (AdamW and SGD write the bf16 copies of the weights bf16 products read, the default) or 0`);
}

class NativeBackend implements Backend {
  readonly name = 'native' as const;
  private readonly threads: number;
  readonly nativeBf16: boolean;
  readonly matmulToBf16?: (m: MatmulToBf16Args) => void;
  readonly optimizerWritesBf16: boolean;
  private readonly line: string;

  constructor(private readonly a: Addon) {
    const i = a.info();
    this.threads = i.threads;
    this.nativeBf16 = i.bf16Path === 'onednn';
    // where bf16 products run in bf16 (elsewhere a trainable weight is rounded in f32 storage, not cast)
    this.optimizerWritesBf16 = this.nativeBf16 && optimizerBf16Switch();
    // where bf16 products widen to f32 sgemm, a bf16 output would be one more pass, not fewer bytes
    if (this.nativeBf16 && bf16OutputsSwitch()) {
      this.matmulToBf16 = (m) => this.a.matmul(m.a, m.b, m.out, true, m.batch, m.M, m.N, m.K, m.transA, m.transB, m.strideA,
        m.strideB, m.alpha, 0, m.bias ?? null);
    }
    const ver = /OpenBLAS\s+(\S+)/.exec(i.blasConfig)?.[1] ?? '?';
    this.line = `native (OpenBLAS ${ver} core=${i.blasCore}, oneDNN ${i.onednnVersion} isa=${i.onednnIsa}, ` +
      `bf16 matmul via ${i.bf16Path === 'onednn' ? 'oneDNN' : 'f32 sgemm'}, ${i.threads} thread${i.threads === 1 ? '' : 's'})`;
  }

  describe(): string { return this.line; }
  numThreads(): number { return this.threads; }

  alloc(dtype: DType, size: number): Storage {
    return allocStorage(dtype, size);
  }

  fill(dst: Float32Array | Int32Array, value: number): void { this.a.fill(dst, value); }
  stridedCopy(src: Storage, shape: number[], strides: number[], dst: Storage, dstStrides?: number[]): void {
    if (dstStrides) this.a.stridedCopy(src, shape, strides, dst, dstStrides);
    else this.a.stridedCopy(src, shape, strides, dst);
  }
  cast(src: Storage, srcDtype: DType, dst: Storage, dstDtype: DType): void {
    if (dst.length !== src.length) {
      throw new RangeError(`cast: src has ${src.length} elements but dst has ${dst.length}; expected equal lengths`);
    }
    this.a.cast(src, code(DTYPE, srcDtype, 'cast'), dst, code(DTYPE, dstDtype, 'cast'));
  }

  unary(op: UnaryOp, x: Float32Array, out: Float32Array): void { this.a.unary(code(UNARY, op, 'unary'), x, out); }
  unaryBf16(op: UnaryOp, x: Float32Array, out: Uint16Array): void { this.a.unaryBf16(code(UNARY, op, 'unaryBf16'), x, out); }
  unaryBf16Grad(op: UnaryOp, x: Float32Array | Uint16Array, y: Uint16Array, d: Uint16Array): void { this.a.unaryBf16Grad(code(UNARY, op, 'unaryBf16Grad'), x, y, d); }
  mulBf16(g: Float32Array | Uint16Array, d: Uint16Array, out: Float32Array | Uint16Array): void { this.a.mulBf16(g, d, out); }
  sumRowsBf16(src: Uint16Array, rows: number, cols: number, out: Float32Array): void { this.a.sumRowsBf16(src, rows, cols, out); }
  castColumnSums(src: Float32Array, rows: number, cols: number, dst: Uint16Array, sums: Float32Array): void { this.a.castColumnSums(src, rows, cols, dst, sums); }
  roundBf16(src: Float32Array, dst: Float32Array): void {
    if (dst.length < src.length) throw new RangeError(`roundBf16: dst has ${dst.length} elements but src has ${src.length}; expected at least as many`);
    this.a.roundBf16(src, dst);
  }
  castRowsBf16(src: Float32Array, rows: number, cols: number, dst: Uint16Array, ld: number): void {
    this.a.castRowsBf16(src, rows, cols, dst, ld);
  }
  readonly loraRowsMaxRank = 16; // native/common.h kLoraRowsMaxRank
  loraRows(src: Float32Array | Uint16Array, rows: number, cols: number, dst: Uint16Array, F: Uint16Array, r: number,
    scale: number, h: Uint16Array, H: Uint16Array | null, gH: Float32Array | null, ld: number): void {
    this.a.loraRows(src, rows, cols, dst, F, r, scale, h, H, gH, ld);
  }
  loraOuter(X: Uint16Array, rows: number, cols: number, ld: number, H: Uint16Array, r: number, out: Float32Array): void {
    this.a.loraOuter(X, rows, cols, ld, H, r, out);
  }
  unaryBackward(op: UnaryOp, x: Float32Array, y: Float32Array, dy: Float32Array, dx: Float32Array): void {
    this.a.unaryBackward(code(UNARY, op, 'unaryBackward'), x, y, dy, dx);
  }
  binary(op: BinaryOp, a: Float32Array, aStrides: number[], b: Float32Array, bStrides: number[], shape: number[], out: Float32Array): void {
    this.a.binary(code(BINARY, op, 'binary'), a, aStrides, b, bStrides, shape, out);
  }
  axpby(alpha: number, x: Float32Array, beta: number, y: Float32Array, out: Float32Array): void { this.a.axpby(alpha, x, beta, y, out); }
  affine(x: Float32Array, scale: number, shift: number, out: Float32Array): void { this.a.affine(x, scale, shift, out); }
  where(cond: Float32Array, condStrides: number[], a: Float32Array, aStrides: number[], b: Float32Array, bStrides: number[],
    shape: number[], out: Float32Array): void {
    this.a.where(cond, condStrides, a, aStrides, b, bStrides, shape, out);
  }

  reduce(op: ReduceOp, x: Float32Array, outer: number, n: number, inner: number, out: Float32Array): void {
    this.a.reduce(code(REDUCE, op, 'reduce'), x, outer, n, inner, out);
  }
  argmax(x: Float32Array, outer: number, n: number, inner: number, out: Int32Array): void { this.a.argmax(x, outer, n, inner, out); }
  sumSquares(x: Float32Array): number { return this.a.sumSquares(x); }
  trimHeap(): void { this.a.trimHeap(); }
  freshBuffer(bytes: number): ArrayBuffer { return this.a.allocAligned(bytes); }

  matmul(m: MatmulArgs): void {
    if (m.dtype !== 'f32' && m.dtype !== 'bf16') throw new Error(`matmul: dtype must be 'f32' or 'bf16'; got '${m.dtype as string}'`);
    this.a.matmul(m.a, m.b, m.out, m.dtype === 'bf16', m.batch, m.M, m.N, m.K, m.transA, m.transB, m.strideA, m.strideB,
      m.alpha, m.beta, m.bias ?? null);
  }
  matmulLowp(m: MatmulLowpArgs): void {
    const kind = LOWP_KIND[m.bDtype];
    if (kind === undefined) throw new Error(`matmulLowp: bDtype must be 'bf16', 'i8' or 'nf4'; got '${m.bDtype as string}'`);
    if ((m as { bias?: unknown }).bias) throw new Error('matmulLowp: takes no bias (start out as the bias and pass beta = 1)');
    this.a.matmulLowp(m.a as Float32Array, m.b, m.out, kind, m.scales, m.batch, m.M, m.N, m.K, m.transA, m.transB,
      m.strideA, m.alpha, m.beta);
  }

  quantizeNf4(w: Float32Array, codes: Int8Array, absmax: Float32Array): number { return this.a.quantizeNf4(w, codes, absmax); }
  softmax(x: Float32Array, rows: number, cols: number, out: Float32Array, log: boolean): void { this.a.softmax(x, rows, cols, out, log); }
  softmaxBackward(y: Float32Array, dy: Float32Array, rows: number, cols: number, dx: Float32Array, log: boolean): void {
    this.a.softmaxBackward(y, dy, rows, cols, dx, log);
  }
  layerNorm(x: Float32Array, gamma: Float32Array | null, beta: Float32Array | null, rows: number, cols: number, eps: number,
    out: Float32Array, mean: Float32Array, rstd: Float32Array): void {
    this.a.layerNorm(x, gamma, beta, rows, cols, eps, out, mean, rstd);
  }
  layerNormBackward(dy: Float32Array, x: Float32Array, gamma: Float32Array | null, mean: Float32Array, rstd: Float32Array,
    rows: number, cols: number, dx: Float32Array, dgamma: Float32Array | null, dbeta: Float32Array | null): void {
    this.a.layerNormBackward(dy, x, gamma, mean, rstd, rows, cols, dx, dgamma, dbeta);
  }
  layerNormBackwardFromOutput(dy: Float32Array, y: Float32Array, gamma: Float32Array, beta: Float32Array | null, rstd: Float32Array,
    rows: number, cols: number, dx: Float32Array, dgamma: Float32Array | null, dbeta: Float32Array | null): void {
    this.a.layerNormBackwardFromOutput(dy, y, gamma, beta, rstd, rows, cols, dx, dgamma, dbeta);
  }
  rmsNorm(x: Float32Array, gamma: Float32Array | null, rows: number, cols: number, eps: number, out: Float32Array, rstd: Float32Array): void {
    this.a.rmsNorm(x, gamma, rows, cols, eps, out, rstd);
  }
  rmsNormBackwardFromOutput(dy: Float32Array, y: Float32Array, gamma: Float32Array, rstd: Float32Array, rows: number, cols: number,
    dx: Float32Array, dgamma: Float32Array | null): void {
    this.a.rmsNormBackwardFromOutput(dy, y, gamma, rstd, rows, cols, dx, dgamma);
  }
  rmsNormBackward(dy: Float32Array, x: Float32Array, gamma: Float32Array | null, rstd: Float32Array, rows: number, cols: number,
    dx: Float32Array, dgamma: Float32Array | null): void {
    this.a.rmsNormBackward(dy, x, gamma, rstd, rows, cols, dx, dgamma);
  }
  gather(table: Float32Array, idx: Int32Array, cols: number, out: Float32Array): void { this.a.gather(table, idx, cols, out); }
  scatterAdd(src: Float32Array, idx: Int32Array, cols: number, dtable: Float32Array): void { this.a.scatterAdd(src, idx, cols, dtable); }
  crossEntropy(logits: Float32Array, targets: Int32Array, rows: number, cols: number, ignoreIndex: number, ls: number,
    loss: Float32Array, logp: Float32Array): void {
    this.a.crossEntropy(logits, targets, rows, cols, ignoreIndex, ls, loss, logp);
  }
  crossEntropyBackward(logp: Float32Array, targets: Int32Array, rows: number, cols: number, ignoreIndex: number, ls: number,
    dloss: Float32Array, dlogits: Float32Array): void {
    this.a.crossEntropyBackward(logp, targets, rows, cols, ignoreIndex, ls, dloss, dlogits);
  }
  crossEntropyGradBf16(logits: Float32Array, targets: Int32Array, rows: number, cols: number, ignoreIndex: number, ls: number,
    dloss: Float32Array, loss: Float32Array, dlogits: Uint16Array | null): void {
    this.a.crossEntropyGradBf16(logits, targets, rows, cols, ignoreIndex, ls, dloss, loss, dlogits);
  }
  crossEntropyLse(logits: Float32Array, targets: Int32Array, rows: number, cols: number, ignoreIndex: number,
    loss: Float32Array, lse: Float32Array): void {
    this.a.crossEntropyLse(logits, targets, rows, cols, ignoreIndex, loss, lse);
  }
  crossEntropyBackwardLse(logits: Float32Array, lse: Float32Array, targets: Int32Array, rows: number, cols: number,
    ignoreIndex: number, dloss: Float32Array, dlogits: Float32Array): void {
    this.a.crossEntropyBackwardLse(logits, lse, targets, rows, cols, ignoreIndex, dloss, dlogits);
  }
  rope(x: Float32Array, cos: Float32Array, sin: Float32Array, rows: number, T: number, D: number, rotDim: number,
    inverse: boolean, out: Float32Array): void {
    this.a.rope(x, cos, sin, rows, T, D, rotDim, inverse, out);
  }

  dropoutMask(seed: number, p: number, mask: Float32Array): void { this.a.dropoutMask(seed, p, mask); }
  attention(s: AttentionShape, q: Float32Array, k: Float32Array, v: Float32Array, keyMask: Float32Array | null,
    firstKey: Int32Array | null, out: Float32Array, stats: Float32Array): void {
    this.a.attention(s, q, k, v, keyMask, firstKey, out, stats);
  }
  attentionBackward(s: AttentionShape, q: Float32Array, k: Float32Array, v: Float32Array, keyMask: Float32Array | null,
    firstKey: Int32Array | null, stats: Float32Array, dout: Float32Array, doutStrides: [number, number, number], dq: Float32Array,
    dk: Float32Array, dv: Float32Array): void {
    this.a.attentionBackward(s, q, k, v, keyMask, firstKey, stats, dout, doutStrides, dq, dk, dv);
  }
  attentionBf16(s: AttentionShape, q: Float32Array | Uint16Array, k: Float32Array | Uint16Array, v: Float32Array | Uint16Array, keyMask: Float32Array | null,
    firstKey: Int32Array | null, out: Float32Array | Uint16Array, stats: Float32Array, ql: Uint16Array, kl: Uint16Array,
    vl: Uint16Array): void {
    this.a.attentionBf16(s, q, k, v, keyMask, firstKey, out, stats, ql, kl, vl);
  }
  attentionBf16Tiles(Tq: number, Tk: number, D: number, Dv: number): boolean { return this.a.attentionBf16Tiles(undefined, Tq, Tk, D, Dv); }
  attentionBf16Backward(s: AttentionShape, ql: Uint16Array, kl: Uint16Array, vl: Uint16Array, keyMask: Float32Array | null,
    firstKey: Int32Array | null, stats: Float32Array, dout: Float32Array | Uint16Array, doutStrides: [number, number, number],
    dq: Float32Array | Uint16Array, dk: Float32Array | Uint16Array, dv: Float32Array | Uint16Array): void {
    this.a.attentionBf16Backward(s, ql, kl, vl, keyMask, firstKey, stats, dout, doutStrides, dq, dk, dv);
  }
  adamw8bit(g: AdamW8bitArgs): void {
    this.a.adamw8bit(g.param, g.grad, g.state1, g.state2, g.absmax1, g.absmax2, g.map1, g.map2, g.lr, g.beta1, g.beta2, g.eps, g.weightDecay,
      g.correction1, g.correction2, g.gradScale);
  }

  adamw(g: AdamWArgs): void {
    this.a.adamw(g.param, g.grad, g.m, g.v, g.lr, g.beta1, g.beta2, g.eps, g.weightDecay, g.step, g.gradScale, g.out16);
  }
  sgd(s: SGDArgs): void {
    this.a.sgd(s.param, s.grad, s.buf, s.lr, s.momentum, s.dampening, s.nesterov, s.weightDecay, s.firstStep, s.gradScale, s.out16);
  }
}
