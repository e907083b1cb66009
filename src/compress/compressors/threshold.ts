/** Threshold sparsification: every element with |g| > threshold (absolute). The count varies per step. */
import { SparseCompressor, encodeSparse, selectAbove } from './sparse.js';
import type { ValueDtype } from './values.js';

export class ThresholdCompressor extends SparseCompressor {
  readonly name: string = 'threshold';
  readonly methodId: number = 5;
  readonly unbiased = false;
  constructor(readonly threshold: number, values: ValueDtype = 'f16') {
    super(values);
  }
  protected nominalK(numel: number): number {
    return numel;
  }
  /** The magnitude above which elements are kept (std-mask derives it from the tensor). */
  protected cutOf(_g: Float32Array): number {
    return this.threshold;
  }
  compress(g: Float32Array): Uint8Array {
    return encodeSparse(this.methodId, g.length, selectAbove(g, this.cutOf(g)), this.values);
  }
}
