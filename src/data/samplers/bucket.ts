/**
 * Length bucketing: each epoch, shuffle the rows (seed + epoch), cut them into chunks of bucketSize * batchSize,
 * sort each chunk by length so batches hold similar lengths (less padding), then shuffle the order of the batches.
 * The sort is stable, so rows of equal length keep the epoch's shuffled order: they meet different neighbours each
 * epoch instead of always being batched with the rows next to them by index.
 */
import { Rng } from '../../backend/rng.js';
import { ConfigError } from '../../errors.js';
import { shuffleInPlace } from '../split.js';
import { chunk, EpochSampler } from './sampler.js';

export class BucketSampler extends EpochSampler {
  private readonly lengths: number[];
  readonly bucketSize: number;
  constructor(lengths: number[], batchSize: number, readonly seed: number, opts: { bucketSize?: number } = {}) {
    super('BucketSampler', lengths.length, batchSize);
    this.lengths = lengths.slice();
    this.bucketSize = opts.bucketSize ?? 50;
    if (!Number.isInteger(this.bucketSize) || this.bucketSize < 1) {
      throw new ConfigError(`'BucketSampler': option 'bucketSize' is ${opts.bucketSize}; expected an integer >= 1`);
    }
  }
  get batchesPerEpoch(): number {
    const span = this.bucketSize * this.batchSize;
    const full = Math.floor(this.n / span);
    return full * this.bucketSize + Math.ceil((this.n - full * span) / this.batchSize);
  }
  protected override config(): Record<string, unknown> {
    return { ...super.config(), seed: this.seed, bucketSize: this.bucketSize };
  }
  protected epochBatches(epoch: number): number[][] {
    const rng = new Rng(this.seed + epoch);
    const order = shuffleInPlace(Array.from({ length: this.n }, (_, i) => i), rng);
    const batches: number[][] = [];
    for (const c of chunk(order, this.bucketSize * this.batchSize)) {
      c.sort((a, b) => this.lengths[a]! - this.lengths[b]!);
      batches.push(...chunk(c, this.batchSize));
    }
    return shuffleInPlace(batches, rng);
  }
}
