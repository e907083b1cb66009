/**
 * The common part of step-driven samplers (curriculum, loss-weighted): every batch is drawn afresh from a
 * seeded Rng, so there is no fixed epoch list. "Epochs" are kept for the trainer's sake (evaluation, history):
 * after batchesPerEpoch = ceil(N / batchSize) batches, next() returns null once and the epoch advances.
 * The state is JSON: position, epoch, batches drawn, the Rng counter, and what subclasses add (float arrays as
 * base64), so a checkpoint resumes bit-identically.
 */
import { Rng } from '../backend/rng.js';
import { ConfigError } from '../errors.js';
import type { Sampler, SamplerState } from '../data/samplers/sampler.js';

export abstract class StepSampler implements Sampler {
  epoch = 0;
  /** Batches drawn in the current epoch. */
  position = 0;
  /** Batches drawn since the start of training. */
  draws = 0;
  /** Batches in the whole run (progress = draws / totalBatches); set by plan(). */
  totalBatches: number;
  protected rng: Rng;

  protected constructor(protected readonly kind: string, readonly n: number, readonly batchSize: number, readonly seed: number, totalBatches?: number) {
    if (!Number.isInteger(n) || n < 1) throw new ConfigError(`'${kind}': argument 'n' is ${n}; expected an integer >= 1`);
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new ConfigError(`'${kind}': argument 'batchSize' is ${batchSize}; expected an integer >= 1`);
    if (!Number.isInteger(seed)) throw new ConfigError(`'${kind}': argument 'seed' is ${seed}; expected an integer`);
    this.rng = new Rng(seed);
    this.totalBatches = totalBatches ?? this.batchesPerEpoch;
  }

  get batchesPerEpoch(): number {
    return Math.ceil(this.n / this.batchSize);
  }

  /** Tells the sampler how many batches the run will draw (the trainer calls it once it knows). */
  plan(totalBatches: number): void {
    if (!(totalBatches >= 1)) throw new ConfigError(`'${this.kind}.plan': argument 'totalBatches' is ${totalBatches}; expected >= 1`);
    this.totalBatches = totalBatches;
  }

  /** Training progress in [0, 1] at the next batch. */
  get progress(): number {
    return Math.min(1, this.draws / this.totalBatches);
  }

  next(): number[] | null {
    if (this.position >= this.batchesPerEpoch) {
      this.epoch++;
      this.position = 0;
      return null;
    }
    const batch = this.draw();
    this.position++;
    this.draws++;
    return batch;
  }

  update(_indices: number[], _stats: { loss?: Float32Array }): void {}

  /** The next batch's indices (draws and position are advanced by next()). */
  protected abstract draw(): number[];
  /** Fields that must match between state() and load(). */
  protected config(): Record<string, unknown> {
    return { n: this.n, batchSize: this.batchSize, seed: this.seed };
  }
  /** Subclass state (arrays as base64). */
  protected abstract extraState(): Record<string, unknown>;
  protected abstract loadExtra(state: SamplerState): void;

  state(): SamplerState {
    return { kind: this.kind, ...this.config(), epoch: this.epoch, position: this.position, draws: this.draws, rngCounter: this.rng.counter, ...this.extraState() };
  }

  load(state: SamplerState): void {
    if (state['kind'] !== this.kind) throw new ConfigError(`'${this.kind}.load': state is for sampler ${JSON.stringify(state['kind'])}; expected '${this.kind}'`);
    for (const [k, v] of Object.entries(this.config())) {
      if (JSON.stringify(state[k]) !== JSON.stringify(v)) {
        throw new ConfigError(`'${this.kind}.load': state has ${k} ${JSON.stringify(state[k])}; this sampler has ${JSON.stringify(v)}`);
      }
    }
    const { epoch, position, draws, rngCounter } = state;
    const ints = [epoch, position, draws, rngCounter].every((x) => Number.isInteger(x) && (x as number) >= 0);
    if (!ints || (position as number) > this.batchesPerEpoch) {
      throw new ConfigError(`'${this.kind}.load': state has epoch ${JSON.stringify(epoch)}, position ${JSON.stringify(position)}, draws ${JSON.stringify(draws)}, rngCounter ${JSON.stringify(rngCounter)}; expected integers >= 0 with position <= ${this.batchesPerEpoch}`);
    }
    this.epoch = epoch as number;
    this.position = position as number;
    this.draws = draws as number;
    this.rng = new Rng(this.seed, rngCounter as number);
    this.loadExtra(state);
  }

  /** `m` distinct integers from [0, k), uniformly (Floyd's algorithm: exactly m draws). */
  protected distinct(m: number, k: number): number[] {
    const seen = new Set<number>();
    const out: number[] = [];
    for (let j = k - m; j < k; j++) {
      const t = this.rng.int(j + 1);
      const v = seen.has(t) ? j : t;
      seen.add(v);
      out.push(v);
    }
    return out;
  }
}

/** A Float32Array as base64 (exact, NaN included). */
export function f32ToBase64(a: Float32Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
}

/** The inverse of f32ToBase64; checks the length. */
export function base64ToF32(s: unknown, n: number, what: string): Float32Array {
  if (typeof s !== 'string') throw new ConfigError(`'${what}': state value is ${typeof s}; expected a base64 string`);
  const b = Buffer.from(s, 'base64');
  if (b.byteLength !== 4 * n) throw new ConfigError(`'${what}': state holds ${b.byteLength / 4} values; expected ${n}`);
  const out = new Float32Array(n);
  new Uint8Array(out.buffer).set(b);
  return out;
}
