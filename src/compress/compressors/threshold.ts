/** Threshold sparsification: every element with |g| > threshold (absolute). The count varies per step. */
import { SparseCompressor, encodeSparse, selectAbove } from './sparse.js';
import type { ValueDtype } from './values.js';

export class ThresholdCompressor extends SparseCompressor {
  readonly name = 'threshold';
  readonly methodId = 5;
  readonly unbiased = false;
  constructor(readonly threshold: number, values: ValueDtype = 'f16') {
    super(values);
  }
  protected nominalK(numel: number): number {
    return numel;
  }
  compress(g: Float32Array): Uint8Array {
    return encodeSparse(this.methodId, g.length, selectAbove(g, this.threshold), this.values);
  }
}
