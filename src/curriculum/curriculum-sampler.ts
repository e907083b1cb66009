/**
 * Curriculum sampler: each batch is drawn uniformly (without replacement within the batch) from the easiest
 * fraction(t) * N examples under the current difficulty ranking, where fraction is a pacing function of the
 * training progress t. Scores come from a callback `score(indices)` (the trainer's scoring pass with the current
 * model, or the data alone for static scorers such as length) and are refreshed every `refreshEvery` batches:
 * all rows at the first refresh, then all rows again, or a random `scoreSubset` of them (the rest keep their
 * stale scores) to bound the cost.
 */
import { ConfigError } from '../errors.js';
import type { SamplerState } from '../data/samplers/sampler.js';
import type { Pacing } from './pacing.js';
import { StepSampler, f32ToBase64, base64ToF32 } from './step-sampler.js';

export interface CurriculumSamplerOptions {
  n: number;
  batchSize: number;
  seed: number;
  /** Difficulty (larger = harder) of rows `indices`, e.g. per-sample loss of the current model. */
  score: (indices: readonly number[]) => Float32Array;
  pacing: Pacing;
  /** Re-score every this many batches; scores of a static scorer are computed once. */
  refreshEvery: number;
  /** Rows re-scored per refresh after the first (a seeded random subset); default all. */
  scoreSubset?: number;
  /** Scores never change (e.g. length): score once. */
  static?: boolean;
  totalBatches?: number;
  /** Called after each refresh with its cost (for logs). */
  onRefresh?: (info: RefreshInfo) => void;
  /** Names kept in the state so a checkpoint is not loaded into a different curriculum. */
  describe?: Record<string, unknown>;
}

export interface RefreshInfo {
  /** Batches drawn before this refresh. */
  draws: number;
  rows: number;
  ms: number;
}

export class CurriculumSampler extends StepSampler {
  private scores: Float32Array | null = null;
  /** Row indices, easiest first (rebuilt from scores after a refresh or a load). */
  private ranking: Int32Array | null = null;
  private readonly opts: CurriculumSamplerOptions;
  /** Cost of the scoring passes so far (not part of the state). */
  readonly stats = { refreshes: 0, rowsScored: 0, refreshMs: 0 };

  constructor(opts: CurriculumSamplerOptions) {
    super('CurriculumSampler', opts.n, opts.batchSize, opts.seed, opts.totalBatches);
    if (!Number.isInteger(opts.refreshEvery) || opts.refreshEvery < 1) {
      throw new ConfigError(`'CurriculumSampler': option 'refreshEvery' is ${opts.refreshEvery}; expected an integer >= 1`);
    }
    if (opts.scoreSubset !== undefined && (!Number.isInteger(opts.scoreSubset) || opts.scoreSubset < 1)) {
      throw new ConfigError(`'CurriculumSampler': option 'scoreSubset' is ${opts.scoreSubset}; expected an integer >= 1`);
    }
    this.opts = opts;
  }

  /** The fraction of the data available to the next batch. */
  get fraction(): number {
    return this.opts.pacing(this.progress);
  }

  /** How many of the easiest rows the next batch draws from (at least one batch's worth). */
  get poolSize(): number {
    return Math.min(this.n, Math.max(this.batchSize, Math.ceil(this.fraction * this.n - 1e-9)));
  }

  /** Current difficulty scores (a copy), or null before the first refresh. */
  currentScores(): Float32Array | null {
    return this.scores ? this.scores.slice() : null;
  }

  /** Row indices easiest first. */
  currentRanking(): Int32Array {
    this.ranking ??= rank(this.scores as Float32Array);
    return this.ranking;
  }

  protected draw(): number[] {
    if (this.scores === null || (!this.opts.static && this.draws % this.opts.refreshEvery === 0)) this.refresh();
    const order = this.currentRanking();
    const k = this.poolSize;
    return this.distinct(Math.min(this.batchSize, k), k).map((j) => order[j]!);
  }

  /** Scores all rows (first time, or no scoreSubset) or a random subset of them, and re-ranks. */
  private refresh(): void {
    const t0 = performance.now();
    const sub = this.opts.scoreSubset;
    let rows: number[];
    if (this.scores === null || sub === undefined || sub >= this.n) {
      rows = Array.from({ length: this.n }, (_, i) => i);
      this.scores ??= new Float32Array(this.n);
    } else {
      rows = this.distinct(sub, this.n).sort((a, b) => a - b);
    }
    const s = this.opts.score(rows);
    if (s.length !== rows.length) throw new ConfigError(`'CurriculumSampler': the score callback returned ${s.length} values for ${rows.length} rows`);
    rows.forEach((i, j) => ((this.scores as Float32Array)[i] = s[j]!));
    this.ranking = null;
    this.stats.refreshes++;
    this.stats.rowsScored += rows.length;
    const ms = performance.now() - t0;
    this.stats.refreshMs += ms;
    this.opts.onRefresh?.({ draws: this.draws, rows: rows.length, ms });
  }

  protected override config(): Record<string, unknown> {
    return { ...super.config(), ...this.opts.describe, refreshEvery: this.opts.refreshEvery, scoreSubset: this.opts.scoreSubset ?? null };
  }

  protected extraState(): Record<string, unknown> {
    return { scores: this.scores ? f32ToBase64(this.scores) : null };
  }

  protected loadExtra(state: SamplerState): void {
    this.scores = state['scores'] === null ? null : base64ToF32(state['scores'], this.n, 'CurriculumSampler.load scores');
    this.ranking = null;
  }
}

/** Indices sorted by score ascending (NaN last), ties by index: a pure function of the scores. */
export function rank(scores: Float32Array): Int32Array {
  const key = (i: number) => (Number.isNaN(scores[i]) ? Infinity : scores[i]!);
  const order = Array.from({ length: scores.length }, (_, i) => i);
  order.sort((a, b) => key(a) - key(b) || a - b);
  return Int32Array.from(order);
}
