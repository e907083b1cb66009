/**
 * Samplers choose the rows of each batch. The interface is an extension point (curriculum and loss-weighted
 * samplers plug in here); the state is JSON so a checkpoint resumes exactly mid-epoch.
 */
import { ConfigError } from '../../errors.js';

export interface SamplerState {
  [key: string]: unknown;
}

export interface Sampler {
  /** Indices of the next batch, or null at the end of an epoch (the next call starts the next epoch). */
  next(): number[] | null;
  /** Per-sample statistics after a step (e.g. losses); samplers that do not use them ignore it. */
  update(indices: number[], stats: { loss?: Float32Array }): void;
  readonly epoch: number;
  /** Batches per epoch. */
  readonly batchesPerEpoch: number;
  /** Optional: per-sample loss weights for the batch just returned (importance sampling), or null for none. */
  weights?(indices: readonly number[]): Float32Array | null;
  /** Optional: the number of batches the run will draw (step-driven samplers pace themselves by it). */
  plan?(totalBatches: number): void;
  state(): SamplerState;
  load(state: SamplerState): void;
}

/**
 * The common part of samplers whose epochs are a fixed list of batches computed from (epoch): position, epoch
 * counting, and state/load. Subclasses implement `epochBatches(epoch)`, which must be a pure function of epoch.
 */
export abstract class EpochSampler implements Sampler {
  epoch = 0;
  private position = 0;
  private batches: number[][] | undefined;

  protected constructor(protected readonly kind: string, readonly n: number, readonly batchSize: number) {
    if (!Number.isInteger(n) || n < 0) throw new ConfigError(`'${kind}': argument 'n' is ${n}; expected an integer >= 0`);
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new ConfigError(`'${kind}': argument 'batchSize' is ${batchSize}; expected an integer >= 1`);
  }

  abstract get batchesPerEpoch(): number;
  protected abstract epochBatches(epoch: number): number[][];
  /** Fields that must match between state() and load() (the sampler's configuration). */
  protected config(): Record<string, unknown> {
    return { n: this.n, batchSize: this.batchSize };
  }

  next(): number[] | null {
    this.batches ??= this.epochBatches(this.epoch);
    if (this.position >= this.batches.length) {
      this.epoch++;
      this.position = 0;
      this.batches = undefined;
      return null;
    }
    return this.batches[this.position++]!.slice();
  }

  update(_indices: number[], _stats: { loss?: Float32Array }): void {}

  state(): SamplerState {
    return { kind: this.kind, ...this.config(), epoch: this.epoch, position: this.position };
  }

  load(state: SamplerState): void {
    if (state['kind'] !== this.kind) throw new ConfigError(`'${this.kind}.load': state is for sampler ${JSON.stringify(state['kind'])}; expected '${this.kind}'`);
    for (const [k, v] of Object.entries(this.config())) {
      if (JSON.stringify(state[k]) !== JSON.stringify(v)) {
        throw new ConfigError(`'${this.kind}.load': state has ${k} ${JSON.stringify(state[k])}; this sampler has ${JSON.stringify(v)}`);
      }
    }
    const { epoch, position } = state;
    if (!Number.isInteger(epoch) || (epoch as number) < 0 || !Number.isInteger(position) || (position as number) < 0 || (position as number) > this.batchesPerEpoch) {
      throw new ConfigError(`'${this.kind}.load': state has epoch ${JSON.stringify(epoch)}, position ${JSON.stringify(position)}; expected integers with 0 <= position <= ${this.batchesPerEpoch}`);
    }
    this.epoch = epoch as number;
    this.position = position as number;
    this.batches = undefined;
  }
}

/** Cuts `order` into consecutive batches of `batchSize` (the last may be short unless dropLast). */
export function chunk(order: readonly number[], batchSize: number, dropLast = false): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < order.length; i += batchSize) {
    if (dropLast && i + batchSize > order.length) break;
    out.push(order.slice(i, i + batchSize));
  }
  return out;
}
