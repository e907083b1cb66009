/**
 * One data-parallel training step's communication, between backward and the optimizer step:
 *
 *   rows = dp.shard(globalBatch)                  // each rank trains on its block of every global batch
 *   ... forward / backward on rows, loss = sum(per-sample) / globalBatch.length ...
 *   await dp.syncGradients(named, step)           // every rank now holds the sum = the global-batch gradient
 *   optimizer.step()                              // identical on every rank: parameters stay identical
 *
 * Uncompressed, the gradients travel as one dense f32 all-reduce. Compressed (any method of src/compress), each
 * rank encodes its gradients with its own error-feedback memory, the payloads travel as an all-gather of
 * variable-size bytes, and every rank decompresses and sums all of them in rank order (DeepSpeed's 1-bit Adam
 * does the same), so the result is bit-identical everywhere. Every collective works with every compressor;
 * all-reduce is used only for dense f32.
 *
 * Non-finite gradients (an fp16 overflow, a bad batch): `syncGradients` reports them in its result, on every rank
 * alike, and leaves the synced gradients non-finite (dense: the sums carry the NaN/Inf; compressed: all NaN) so
 * that a caller's finite check skips the step everywhere even if it ignores the result. Compressed, the
 * ranks first agree whether any of them holds a NaN or an infinity (a one-float all-reduce) and then encode
 * nothing: residuals, DGC momentum and PowerSGD's factors stay as they were, so one bad step cannot poison error
 * feedback (inf - inf = NaN) for the rest of the run. With loss scaling, pass `lossScale`: the memory and the
 * compressor then work on unscaled gradients, so residuals keep their meaning when the scale changes.
 */
import { Tensor, peekGrad, setPrivateGrad } from '../tensor/tensor.js';
import { GradientCompression, firstNonFinite, type CompressionSpec } from '../compress/index.js';
import { CommunicationError, ConfigError } from '../errors.js';
import type { Communicator } from './communicator.js';

export interface DataParallelOptions {
  /** false / undefined: dense all-reduce; true: top-k 10% + error feedback; a method's name; or a compression spec. */
  compression?: CompressionSpec | boolean | string;
  /** Seed of the compressors' random choices (mixed with the rank). */
  seed?: number;
}

export interface SyncOptions {
  /** The loss scale the gradients carry (fp16 dynamic loss scaling); the synced sums carry it too. Default 1. */
  lossScale?: number;
}

export interface SyncResult {
  /** False when a rank's gradients held a NaN or an infinity: the synced gradients are not finite; skip the step. */
  finite: boolean;
}

export interface CommunicationSummary {
  worldSize: number;
  method: string;
  steps: number;
  /** Gradient bytes this rank sent, over the run. */
  bytes: number;
  /** The same gradients as dense f32. */
  denseBytes: number;
  /** denseBytes / bytes. */
  compressionRatio: number;
  /** Seconds spent encoding, communicating and decoding gradients. */
  commSeconds: number;
}

export class DataParallel {
  private readonly codec: GradientCompression | null;
  private bytes = 0;
  private denseBytes = 0;
  private steps = 0;
  private commMs = 0;

  constructor(readonly comm: Communicator, opts: DataParallelOptions = {}) {
    const spec = opts.compression ?? false;
    const none = spec === false || spec === 'none' || (typeof spec === 'object' && spec.method === 'none' && !spec.errorFeedback);
    this.codec = none ? null : new GradientCompression(spec, { seed: opts.seed, rank: comm.rank });
  }

  get rank(): number {
    return this.comm.rank;
  }

  get worldSize(): number {
    return this.comm.worldSize;
  }

  get method(): string {
    return this.codec ? this.codec.compressor.name : 'dense';
  }

  /** This rank's contiguous block of a global batch (sizes differ by at most one; a rank may get none). */
  shard<T>(rows: readonly T[]): T[] {
    const W = this.worldSize, r = this.rank, n = rows.length;
    const lo = Math.floor((r * n) / W), hi = Math.floor(((r + 1) * n) / W);
    return rows.slice(lo, hi);
  }

  /**
   * Replaces each parameter's gradient with the sum over ranks (a parameter without a gradient on this rank counts
   * as zeros, so every rank sends the same tensors). A parameter that no rank has a gradient for keeps none, as in
   * one process (so that the optimizer skips it: no weight decay or momentum step for a head that the step's batch
   * did not reach, as with round-robin task sampling): one flag per parameter rides along in the dense sum, or in
   * the compressed path's one small all-reduce before encoding, which leaves such parameters out of the frame.
   * PowerSGD's matrix view uses the parameter shapes. The result says whether the sums are finite, the same on every
   * rank (see the module comment).
   */
  async syncGradients(named: ReadonlyArray<readonly [string, Tensor]>, step: number, opts: SyncOptions = {}): Promise<SyncResult> {
    const t0 = performance.now();
    const scale = opts.lossScale ?? 1;
    if (!(scale > 0) || !Number.isFinite(scale)) {
      throw new ConfigError(`Option 'lossScale' passed to 'DataParallel.syncGradients' is ${scale}; expected a positive finite number`);
    }
    const grads = new Map<string, Float32Array>();
    for (const [name, p] of named) {
      const g = peekGrad(p);
      grads.set(name, g ? g.f32() : new Float32Array(p.size));
    }
    let dense = 0;
    for (const g of grads.values()) dense += g.length * 4;
    let finite = true;
    if (!this.codec) {
      const n = dense / 4;
      const flat = new Float32Array(n + named.length); // the gradients, then whether this rank has each one
      let o = 0;
      for (const g of grads.values()) {
        flat.set(g, o);
        o += g.length;
      }
      named.forEach(([, p], i) => (flat[n + i] = peekGrad(p) ? 1 : 0));
      await this.comm.allReduce(flat, 'sum');
      finite = firstNonFinite(new Map([['', flat]])) === null; // a NaN or Inf on any rank reaches every sum
      o = 0;
      named.forEach(([, p], i) => {
        if (flat[n + i]! > 0) setPrivateGrad(p, new Tensor(flat.slice(o, o + p.size), 'f32', [...p.shape]));
        o += p.size;
      });
      this.bytes += dense;
    } else {
      // before any memory or compressor state changes, every rank learns whether any rank's gradients are
      // non-finite, and which parameters some rank has a gradient for (the others are left out of the frame:
      // their residuals and compressor state wait for a step that reaches them, and they keep no gradient)
      const flags = new Float32Array(1 + named.length);
      flags[0] = firstNonFinite(grads) === null ? 0 : 1;
      named.forEach(([, p], i) => (flags[1 + i] = peekGrad(p) ? 1 : 0));
      await this.comm.allReduce(flags, 'sum');
      finite = flags[0] === 0;
      const present = named.filter((_, i) => flags[1 + i]! > 0);
      if (!finite) {
        for (const [, p] of present) setPrivateGrad(p, new Tensor(new Float32Array(p.size).fill(NaN), 'f32', [...p.shape]));
      } else {
        if (this.codec.shapes.size === 0) this.codec.shapes = new Map(named.map(([n, p]) => [n, [...p.shape]]));
        const sent = new Map(present.map(([name]) => [name, grads.get(name) as Float32Array]));
        const unscaled = scale === 1 ? sent : new Map([...sent].map(([k, g]) => [k, g.map((x) => x / scale)]));
        const payload = this.codec.encode(unscaled, step);
        const all = await this.comm.allGather(payload);
        const into = new Map<string, Float32Array>();
        for (const [name, p] of present) into.set(name, new Float32Array(p.size));
        finite = this.codec.decodeSum(all, into, false);
        for (const [name, p] of present) {
          const sum = into.get(name) as Float32Array;
          if (scale !== 1) for (let i = 0; i < sum.length; i++) sum[i]! *= scale;
          setPrivateGrad(p, new Tensor(sum, 'f32', [...p.shape]));
        }
        this.bytes += payload.byteLength;
      }
    }
    this.denseBytes += dense;
    this.steps++;
    this.commMs += performance.now() - t0;
    return { finite };
  }

  /** Element-wise sums of a few numbers over ranks (losses, counts). */
  async sumNumbers(xs: readonly number[]): Promise<number[]> {
    const a = Float32Array.from(xs);
    await this.comm.allReduce(a, 'sum');
    return Array.from(a);
  }

  /**
   * Rows computed by their owners, assembled on every rank: rank r computed rows `i % W == r` of `n` (`local`,
   * `width` floats each, in that order); the result holds all n rows in order.
   */
  async gatherStrided(local: Float32Array, n: number, width: number): Promise<Float32Array> {
    const W = this.worldSize;
    const parts = await this.comm.allGather(new Uint8Array(local.buffer, local.byteOffset, local.byteLength));
    const out = new Float32Array(n * width);
    parts.forEach((bytes, r) => {
      const rows = Math.max(0, Math.ceil((n - r) / W));
      if (bytes.byteLength !== rows * width * 4) {
        throw new CommunicationError(`'gatherStrided': rank ${r} sent ${bytes.byteLength} bytes; expected ${rows * width * 4} (${rows} rows of ${width} floats)`);
      }
      const f = new Float32Array(bytes.slice().buffer);
      for (let k = 0; k < rows; k++) out.set(f.subarray(k * width, (k + 1) * width), (k * W + r) * width);
    });
    return out;
  }

  /** Every rank's block (`shard` order) concatenated: per-sample values of a whole global batch. */
  async gatherBlocks(local: Float32Array): Promise<Float32Array> {
    const parts = await this.comm.allGather(new Uint8Array(local.buffer, local.byteOffset, local.byteLength));
    const out = new Float32Array(parts.reduce((a, b) => a + b.byteLength, 0) / 4);
    let o = 0;
    for (const b of parts) {
      out.set(new Float32Array(b.slice().buffer), o);
      o += b.byteLength / 4;
    }
    return out;
  }

  /** Rank 0's string on every rank (e.g. an output folder named after the time). */
  async agree(s: string): Promise<string> {
    const parts = await this.comm.allGather(new TextEncoder().encode(this.rank === 0 ? s : ''));
    return new TextDecoder().decode(parts[0]);
  }

  summary(): CommunicationSummary {
    return {
      worldSize: this.worldSize, method: this.method, steps: this.steps, bytes: this.bytes, denseBytes: this.denseBytes,
      compressionRatio: this.bytes ? this.denseBytes / this.bytes : 1, commSeconds: this.commMs / 1e3,
    };
  }

  /** Error-feedback memory and compressor state (warm starts) for checkpoints. */
  state(): unknown {
    return this.codec ? this.codec.state() : null;
  }

  load(state: unknown): void {
    if (this.codec && state) this.codec.load(state as Parameters<GradientCompression['load']>[0]);
  }
}
