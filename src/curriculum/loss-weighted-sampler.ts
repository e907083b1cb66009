/**
 * Loss-weighted sampling: rows are drawn with replacement with probability
 *
 *   p_i = (1 - floor) * softmax(loss_i / temperature) + floor / N
 *
 * where loss_i is the row's latest training loss (from Sampler.update after each batch; rows not seen yet count
 * as the mean of the seen ones, so before any update the draw is uniform). The table is rebuilt every
 * `refreshEvery` batches from a snapshot of the losses (O(N)); each draw is a binary search in its cumulative
 * sums. With importance weights on, weights(indices) gives w_i = 1 / (N p_i): E_p[w_i f_i] = mean_i f_i, so a
 * loss multiplied by them is an unbiased estimate of the uniform mean (and the floor bounds w_i by 1 / floor).
 */
import { ConfigError } from '../errors.js';
import type { SamplerState } from '../data/samplers/sampler.js';
import { StepSampler, f32ToBase64, base64ToF32 } from './step-sampler.js';

export interface LossWeightedSamplerOptions {
  n: number;
  batchSize: number;
  seed: number;
  /** Softmax temperature on the losses (larger = closer to uniform). */
  temperature: number;
  /** Uniform mixing weight in [0, 1]: every row keeps probability >= floor / N. */
  floor: number;
  /** Expose w_i = 1 / (N p_i) through weights(). */
  importanceWeights: boolean;
  /** Rebuild the probability table every this many batches. */
  refreshEvery?: number;
  totalBatches?: number;
}

export class LossWeightedSampler extends StepSampler {
  private readonly losses: Float32Array;
  /** The losses the current table was built from (NaN = not seen). */
  private snapshot: Float32Array | null = null;
  private probs: Float64Array | null = null;
  private cdf: Float64Array | null = null;
  private readonly opts: Required<Omit<LossWeightedSamplerOptions, 'totalBatches'>>;

  constructor(opts: LossWeightedSamplerOptions) {
    super('LossWeightedSampler', opts.n, opts.batchSize, opts.seed, opts.totalBatches);
    const o = { refreshEvery: 1, ...opts };
    if (!(o.temperature > 0)) throw new ConfigError(`'LossWeightedSampler': option 'temperature' is ${o.temperature}; expected a number > 0`);
    if (!(o.floor >= 0 && o.floor <= 1)) throw new ConfigError(`'LossWeightedSampler': option 'floor' is ${o.floor}; expected a number in [0, 1]`);
    if (!Number.isInteger(o.refreshEvery) || o.refreshEvery < 1) throw new ConfigError(`'LossWeightedSampler': option 'refreshEvery' is ${o.refreshEvery}; expected an integer >= 1`);
    const { totalBatches: _t, ...rest } = o;
    this.opts = rest;
    this.losses = new Float32Array(opts.n).fill(NaN);
  }

  override update(indices: number[], stats: { loss?: Float32Array }): void {
    const l = stats.loss;
    if (!l) return;
    indices.forEach((i, j) => {
      if (Number.isFinite(l[j])) this.losses[i] = l[j]!;
    });
  }

  /** Sampling probabilities of the current table (a copy); builds it if needed. */
  probabilities(): Float64Array {
    if (!this.probs) this.build(this.snapshot ?? this.losses.slice());
    return (this.probs as Float64Array).slice();
  }

  /** Importance weights w_i = 1 / (N p_i) of rows `indices` under the current table, or null when off. */
  weights(indices: readonly number[]): Float32Array | null {
    if (!this.opts.importanceWeights) return null;
    if (!this.probs) this.build(this.snapshot ?? this.losses.slice());
    const p = this.probs as Float64Array;
    return Float32Array.from(indices, (i) => 1 / (this.n * p[i]!));
  }

  protected draw(): number[] {
    if (!this.cdf || this.draws % this.opts.refreshEvery === 0) this.build(this.losses.slice());
    const cdf = this.cdf as Float64Array, total = cdf[this.n - 1]!;
    const out: number[] = [];
    for (let b = 0; b < this.batchSize; b++) out.push(search(cdf, this.rng.uniform() * total));
    return out;
  }

  /** p = (1 - floor) softmax(l / T) + floor / N from a loss snapshot (unseen rows at the mean of the seen). */
  private build(snapshot: Float32Array): void {
    const N = this.n, { temperature: T, floor } = this.opts;
    let seen = 0, sum = 0;
    for (const l of snapshot) if (!Number.isNaN(l)) { seen++; sum += l; }
    const fill = seen ? sum / seen : 0;
    const z = Float64Array.from(snapshot, (l) => (Number.isNaN(l) ? fill : l) / T);
    let m = -Infinity;
    for (const v of z) m = Math.max(m, v);
    let s = 0;
    for (let i = 0; i < N; i++) s += z[i] = Math.exp(z[i]! - m);
    const p = new Float64Array(N), cdf = new Float64Array(N);
    let c = 0;
    for (let i = 0; i < N; i++) {
      p[i] = (1 - floor) * (z[i]! / s) + floor / N;
      cdf[i] = c += p[i]!;
    }
    this.snapshot = snapshot;
    this.probs = p;
    this.cdf = cdf;
  }

  protected override config(): Record<string, unknown> {
    const { temperature, floor, importanceWeights, refreshEvery } = this.opts;
    return { ...super.config(), temperature, floor, importanceWeights, refreshEvery };
  }

  protected extraState(): Record<string, unknown> {
    return { losses: f32ToBase64(this.losses), snapshot: this.snapshot ? f32ToBase64(this.snapshot) : null };
  }

  protected loadExtra(state: SamplerState): void {
    this.losses.set(base64ToF32(state['losses'], this.n, 'LossWeightedSampler.load losses'));
    const snap = state['snapshot'];
    this.probs = this.cdf = this.snapshot = null;
    if (snap !== null) this.build(base64ToF32(snap, this.n, 'LossWeightedSampler.load snapshot'));
  }
}

/** The first i with cdf[i] > u (cdf non-decreasing); the last row when u reaches the end by rounding. */
function search(cdf: Float64Array, u: number): number {
  let lo = 0, hi = cdf.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cdf[mid]! > u) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
