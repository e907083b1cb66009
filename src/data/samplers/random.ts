/** A fresh permutation every epoch, seeded with seed + epoch (so any epoch can be recomputed on resume). */
import { Rng } from '../../backend/rng.js';
import { shuffleInPlace } from '../split.js';
import { chunk, EpochSampler } from './sampler.js';

export class RandomSampler extends EpochSampler {
  private readonly dropLast: boolean;
  constructor(n: number, batchSize: number, readonly seed: number, opts: { dropLast?: boolean } = {}) {
    super('RandomSampler', n, batchSize);
    this.dropLast = opts.dropLast ?? false;
  }
  get batchesPerEpoch(): number {
    return this.dropLast ? Math.floor(this.n / this.batchSize) : Math.ceil(this.n / this.batchSize);
  }
  protected override config(): Record<string, unknown> {
    return { ...super.config(), seed: this.seed, dropLast: this.dropLast };
  }
  protected epochBatches(epoch: number): number[][] {
    const order = shuffleInPlace(Array.from({ length: this.n }, (_, i) => i), new Rng(this.seed + epoch));
    return chunk(order, this.batchSize, this.dropLast);
  }
}
