/**
 * Task loss weighting: how the per-task losses of a batch become one loss. An interface and a registry by name
 * (one file per method: static.ts, uncertainty.ts, dwa.ts); the registry throws on a duplicate name.
 */
import type { Tensor } from '../../tensor/tensor.js';
import { ConfigError } from '../../errors.js';

export interface TaskWeightingOptions {
  /** Task names, in order (task index = position). */
  tasks: readonly string[];
  /** 'static': one weight per task (default 1 each). */
  weights?: readonly number[];
  /** 'dwa': softmax temperature. */
  temperature?: number;
}

export interface TaskWeighting {
  readonly name: string;
  /**
   * The weighted total (a scalar) of the losses of the tasks in this batch (task index -> scalar loss). `share`: a
   * data-parallel rank's part of the batch (1 / world size) for the weighting's own terms that do not scale with a loss
   * (uncertainty's + s_t), so that the totals summed over the ranks are the whole batch's; 1 by default.
   */
  combine(losses: ReadonlyMap<number, Tensor>, share?: number): Tensor;
  /** The current weight of each task, for logs (uncertainty: exp(-s_t)). */
  weights(): number[];
  /** Records a batch's task loss values (DWA averages them over a window). */
  observe(losses: ReadonlyMap<number, number>): void;
  /** Closes a window (an epoch, or N optimizer steps): DWA recomputes its weights here. */
  endWindow(): void;
  /** Trainable parameters of the weighting itself (uncertainty: the log-variances s_t); trained without weight decay. */
  parameters(): Tensor[];
  state(): Record<string, unknown>;
  load(state: Record<string, unknown>): void;
}

export type TaskWeightingFactory = (opts: TaskWeightingOptions) => TaskWeighting;

const registry = new Map<string, TaskWeightingFactory>();

export function registerTaskWeighting(name: string, factory: TaskWeightingFactory): void {
  if (registry.has(name)) throw new ConfigError(`'registerTaskWeighting': a task weighting named '${name}' is already registered`);
  registry.set(name, factory);
}

export function makeTaskWeighting(name: string, opts: TaskWeightingOptions): TaskWeighting {
  const f = registry.get(name);
  if (!f) throw new ConfigError(`config key 'taskWeighting' is '${name}'; expected one of ${[...registry.keys()].map((k) => `'${k}'`).join(', ')}`);
  return f(opts);
}

export function listTaskWeightings(): string[] {
  return [...registry.keys()];
}

/** Sum of `weight(t) * loss_t` over the tasks in the batch (a scalar). */
export function weightedSum(losses: ReadonlyMap<number, Tensor>, weight: (t: number) => number): Tensor {
  let total: Tensor | null = null;
  for (const [t, l] of losses) {
    const term = l.scale(weight(t));
    total = total ? total.add(term) : term;
  }
  if (!total) throw new ConfigError(`'TaskWeighting.combine': argument 'losses' is empty; expected the loss of at least one task`);
  return total;
}
