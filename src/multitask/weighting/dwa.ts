/**
 * Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019, "End-to-End Multi-Task Learning with Attention"):
 *
 *   r_t(k-1) = L_t(k-1) / L_t(k-2)           (how fast task t's loss fell over the last window)
 *   w_t(k)   = T * softmax_t(r_t(k-1) / temp) (T = number of tasks, so the weights sum to T)
 *
 * on the average loss of each task over a window (an epoch, or N optimizer steps); the first two windows use
 * w_t = 1. A task with no batch in a window keeps its previous average.
 */
import { registerTaskWeighting, weightedSum, type TaskWeighting, type TaskWeightingOptions } from './weighting.js';
import { ConfigError } from '../../errors.js';

/** DWA weights from the window averages so far (oldest first; each row one value per task). */
export function dwaWeights(history: readonly (readonly number[])[], tasks: number, temperature: number): number[] {
  if (!(temperature > 0)) throw new ConfigError(`config key 'dwaTemperature' is ${temperature}; expected a number > 0`);
  if (history.length < 2) return new Array<number>(tasks).fill(1);
  const last = history[history.length - 1]!, prev = history[history.length - 2]!;
  const r = last.map((l, t) => (Number.isFinite(l) && prev[t]! > 0 ? l / prev[t]! : 1));
  const m = Math.max(...r.map((x) => x / temperature));
  const e = r.map((x) => Math.exp(x / temperature - m)); // shifted for stability; softmax is unchanged
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => (tasks * x) / z);
}

export class DwaWeighting implements TaskWeighting {
  readonly name = 'dwa';
  private history: number[][] = [];
  private sums: number[];
  private counts: number[];
  private w: number[];

  constructor(readonly tasks: readonly string[], readonly temperature = 2) {
    this.sums = tasks.map(() => 0);
    this.counts = tasks.map(() => 0);
    this.w = dwaWeights([], tasks.length, temperature);
  }

  combine(losses: Parameters<TaskWeighting['combine']>[0]) {
    return weightedSum(losses, (t) => this.w[t]!);
  }

  weights(): number[] {
    return this.w.slice();
  }

  observe(losses: ReadonlyMap<number, number>): void {
    for (const [t, l] of losses) {
      if (!Number.isFinite(l)) continue;
      this.sums[t]! += l;
      this.counts[t]!++;
    }
  }

  endWindow(): void {
    if (this.counts.every((c) => c === 0)) return;
    const prev = this.history[this.history.length - 1];
    this.history.push(this.sums.map((s, t) => (this.counts[t]! > 0 ? s / this.counts[t]! : prev?.[t] ?? NaN)));
    if (this.history.length > 2) this.history.shift();
    this.sums.fill(0);
    this.counts.fill(0);
    this.w = dwaWeights(this.history, this.tasks.length, this.temperature);
  }

  parameters() {
    return [];
  }

  state(): Record<string, unknown> {
    return { history: this.history, sums: this.sums, counts: this.counts, weights: this.w };
  }

  load(state: Record<string, unknown>): void {
    const ok = (v: unknown) => Array.isArray(v) && v.length === this.tasks.length;
    if (!Array.isArray(state['history']) || !ok(state['sums']) || !ok(state['counts']) || !ok(state['weights'])) {
      throw new ConfigError(`'DwaWeighting.load': state ${JSON.stringify(state)} does not fit ${this.tasks.length} tasks`);
    }
    this.history = (state['history'] as number[][]).map((r) => r.map((x) => (x === null ? NaN : x)));
    this.sums = (state['sums'] as number[]).slice();
    this.counts = (state['counts'] as number[]).slice();
    this.w = (state['weights'] as number[]).slice();
  }
}

registerTaskWeighting('dwa', (opts: TaskWeightingOptions) => new DwaWeighting(opts.tasks, opts.temperature ?? 2));
