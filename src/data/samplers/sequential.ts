/** Rows in order, every epoch the same. */
import { chunk, EpochSampler } from './sampler.js';

export class SequentialSampler extends EpochSampler {
  constructor(n: number, batchSize: number) {
    super('SequentialSampler', n, batchSize);
  }
  get batchesPerEpoch(): number {
    return Math.ceil(this.n / this.batchSize);
  }
  protected epochBatches(): number[][] {
    return chunk(Array.from({ length: this.n }, (_, i) => i), this.batchSize);
  }
}
