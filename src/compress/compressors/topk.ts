/**
 * Top-k: the k = ceil(ratio * numel) largest magnitudes (exactly k; ties at the threshold go to the lower
 * indices). With `warmupSteps` the ratio follows DGC's exponential warm-up (schedule.ts). Biased: use it with
 * error feedback.
 */
import type { CompressContext } from '../types.js';
import { sparsityWarmup } from '../schedule.js';
import { SparseCompressor, encodeSparse, ensureScratch, scratch } from './sparse.js';
import { kthLargestAbs } from './select.js';
import type { ValueDtype } from './values.js';

export interface TopKOptions {
  ratio: number;
  warmupSteps: number;
  /** The dtype of the sent values (default 'f16'). */
  values?: ValueDtype;
}

export class TopKCompressor extends SparseCompressor {
  readonly name = 'topk';
  readonly methodId = 3;
  readonly unbiased = false;
  constructor(readonly opts: TopKOptions) {
    super(opts.values ?? 'f16');
  }
  /** Elements sent at `step`. */
  kAt(numel: number, step: number): number {
    return Math.max(1, Math.min(numel, Math.ceil(sparsityWarmup(step, this.opts.ratio, this.opts.warmupSteps) * numel)));
  }
  protected nominalK(numel: number): number {
    return this.kAt(numel, Infinity);
  }
  compress(g: Float32Array, ctx: CompressContext): Uint8Array {
    const n = g.length;
    if (n === 0) return encodeSparse(this.methodId, 0, 0, this.values);
    const k = this.kAt(n, ctx.step);
    const thr = kthLargestAbs(g, k);
    let ties = k; // elements equal to thr that may still be taken
    for (let i = 0; i < n; i++) if (Math.abs(g[i]) > thr) ties--;
    ensureScratch(k);
    const idx = scratch.idx, val = scratch.val;
    let m = 0;
    for (let i = 0; i < n && m < k; i++) {
      const v = g[i], a = Math.abs(v);
      if (a > thr || (a === thr && ties-- > 0)) {
        idx[m] = i;
        val[m++] = v;
      }
    }
    return encodeSparse(this.methodId, n, m, this.values);
  }
}
