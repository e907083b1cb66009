/**
 * The two pieces of gradient compression, split as GRACE splits them: a `Compressor` turns one flat f32
 * gradient into payload bytes (the only thing that crosses the wire) and back; a `Memory` owns the error
 * feedback state (residuals, DGC momentum) between steps. `GradientCompression` composes them per step.
 *
 * Which compressors work with which collective: every payload is self-describing bytes of a size that may
 * differ per rank (sparse methods), so all of them travel by all-gather and are summed after decompression
 * (DESIGN.md decision 7). Only none/fp16/bf16 could also go through an all-reduce of their dense values.
 */
import type { Rng } from '../backend/rng.js';

/** What a compressor may know about the tensor it compresses. */
export interface CompressContext {
  /** The parameter name (state such as PowerSGD's Q is kept per name). */
  name: string;
  /** The tensor's shape; PowerSGD views it as (shape[0], rest). Defaults to [numel]. */
  shape?: readonly number[];
  /** Optimizer step, 0-based (sparsity warm-up). */
  step: number;
  /** Random choices (QSGD/TernGrad rounding, random-k indices) draw their 32-bit seeds from here. */
  rng: Rng;
}

export interface Compressor {
  /** The registry name ('topk', 'qsgd', ...). */
  readonly name: string;
  /** The method id written in the payload header. */
  readonly methodId: number;
  /** True when E[decompress(compress(g))] = g (none, qsgd, terngrad, randomk). */
  readonly unbiased: boolean;
  compress(grad: Float32Array, ctx: CompressContext): Uint8Array;
  /** A new dense array of `numel` values; throws CommunicationError on a malformed payload. */
  decompress(payload: Uint8Array, numel: number): Float32Array;
  /** out += alpha * decompress(payload) without a dense temporary (the sum over ranks). */
  decompressAdd(payload: Uint8Array, out: Float32Array, alpha?: number): void;
  /**
   * The exact payload size for a tensor of `numel` elements. Methods whose size depends on the data
   * (sparse ones) read their counts from `payload`; without it they return the size for their nominal k
   * with u32 indices (an upper bound when varint indices are smaller).
   */
  expectedBytes(numel: number, payload?: Uint8Array): number;
}

/** Error feedback: what is added to a gradient before compression, and what is kept from what was not sent. */
export interface Memory {
  readonly name: string;
  /** The array to compress for this step (grad itself, or an internal buffer: valid until the next call). */
  compensate(name: string, grad: Float32Array, step: number): Float32Array;
  /** After compression: `sent` = decompress(compress(compensated)) on this rank. */
  update(name: string, compensated: Float32Array, sent: Float32Array): void;
  /** Whether `update` needs `sent` (false for no memory, so the extra decompression is skipped). */
  readonly needsSent: boolean;
  state(): Record<string, Float32Array>;
  load(state: Record<string, Float32Array>): void;
}

export const COMPRESSION_METHODS = ['none', 'fp16', 'bf16', 'topk', 'randomk', 'threshold', 'std-mask', 'qsgd', 'terngrad', 'onebit', 'powersgd'] as const;
export type CompressionMethod = (typeof COMPRESSION_METHODS)[number];

/**
 * A compression config: a superset of the trainer's `gradientCompression` object (src/train/config.ts), so
 * that value can be passed as is. `true` = top-k 10% with residual error feedback; `false` = none.
 */
export interface CompressionSpec {
  /** A built-in method or the name of a registered compressor. */
  method: CompressionMethod | (string & {});
  /** topk/randomk: fraction of elements sent (default 0.1). */
  ratio?: number;
  /** qsgd: quantization levels s (default 127: 1 sign + 7 level bits per element). */
  levels?: number;
  /** qsgd: elements sharing one norm (default 512, as in the QSGD paper). */
  bucketSize?: number;
  /** powersgd: rank r of the factors (default 4). */
  rank?: number;
  /** std-mask: keep |g| > lambda * std(g) (default 1.645: about 10% of a normal distribution). */
  lambda?: number;
  /** threshold: keep |g| > threshold (absolute, default 1e-3). */
  threshold?: number;
  /**
   * true / 'residual': residual error feedback; 'dgc': DGC momentum correction + masking; false: none.
   * Default: residual for the biased sparsifiers and quantizers (topk, threshold, std-mask, onebit,
   * powersgd), none for the others.
   */
  errorFeedback?: boolean | 'none' | 'residual' | 'dgc' | (string & {});
  /** topk/randomk: exponential sparsity warm-up from 25% to `ratio` over this many steps (DGC). Default 0. */
  warmupSteps?: number;
  /** dgc: momentum factor m (default 0.9). */
  momentum?: number;
  /** dgc: local gradient clipping by L2 norm per tensor; 0 = off (default). */
  clipNorm?: number;
  /**
   * topk/randomk/threshold/std-mask: the dtype of the sent values. 'f16' (default): IEEE half times a
   * per-tensor power-of-two scale, 2 bytes per value, relative error <= 2^-11; 'f32': 4 bytes, exact.
   */
  values?: 'f32' | 'f16';
}
