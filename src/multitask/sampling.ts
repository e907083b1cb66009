/**
 * Task samplers: which task the next batch trains when the tasks have separate example sets (or when a
 * non-joint schedule is asked for). 'joint' is not a sampler: every batch trains every head on the same texts.
 *
 *   proportional  p_t = n_t / sum n            (each example seen about equally often)
 *   temperature   p_t ∝ n_t^(1/T)              (T = 1 proportional, T -> inf uniform; Arivazhagan et al. 2019)
 *   round-robin   t = 0, 1, ..., T-1, 0, 1, ...
 *
 * Seeded and resumable: the state is JSON.
 */
import { Rng } from '../backend/rng.js';
import { ConfigError } from '../errors.js';

export interface TaskSampler {
  readonly name: string;
  /** Index of the task of the next batch. */
  next(): number;
  state(): Record<string, unknown>;
  load(state: Record<string, unknown>): void;
}

export interface TaskSamplerOptions {
  /** Examples per task. */
  sizes: readonly number[];
  temperature: number;
  seed: number;
}

/** p_t ∝ n_t^(1/temperature) (temperature 1: proportional). */
export function taskProbabilities(sizes: readonly number[], temperature = 1): number[] {
  if (!(temperature > 0)) throw new ConfigError(`config key 'taskSamplingTemperature' is ${temperature}; expected a number > 0`);
  if (sizes.some((n) => !(n >= 0))) throw new ConfigError(`'taskProbabilities': argument 'sizes' is ${JSON.stringify(sizes)}; expected counts >= 0`);
  const m = sizes.map((n) => n ** (1 / temperature));
  const z = m.reduce((a, b) => a + b, 0);
  if (!(z > 0)) throw new ConfigError(`'taskProbabilities': every task has 0 examples`);
  return m.map((x) => x / z);
}

/** Draws a task from fixed probabilities with a seeded RNG (inverse CDF). */
export class ProbabilityTaskSampler implements TaskSampler {
  private rng: Rng;
  private readonly cdf: number[];
  constructor(readonly name: string, readonly probabilities: readonly number[], seed: number) {
    this.rng = new Rng(seed);
    let acc = 0;
    this.cdf = probabilities.map((p) => (acc += p));
  }
  next(): number {
    const u = this.rng.uniform() * this.cdf[this.cdf.length - 1]!;
    const i = this.cdf.findIndex((c) => u < c);
    return i < 0 ? this.cdf.length - 1 : i;
  }
  state(): Record<string, unknown> {
    return { kind: this.name, rng: this.rng.state() };
  }
  load(state: Record<string, unknown>): void {
    const r = state['rng'] as { seed: number; counter: number } | undefined;
    if (state['kind'] !== this.name || !r) throw new ConfigError(`'${this.name}' task sampler: cannot load state ${JSON.stringify(state)}`);
    this.rng = new Rng(r.seed, r.counter);
  }
}

export class RoundRobinTaskSampler implements TaskSampler {
  readonly name = 'round-robin';
  private i = 0;
  constructor(readonly tasks: number) {}
  next(): number {
    return this.i++ % this.tasks;
  }
  state(): Record<string, unknown> {
    return { kind: this.name, i: this.i };
  }
  load(state: Record<string, unknown>): void {
    if (state['kind'] !== this.name || !Number.isInteger(state['i'])) throw new ConfigError(`'round-robin' task sampler: cannot load state ${JSON.stringify(state)}`);
    this.i = state['i'] as number;
  }
}

const registry = new Map<string, (o: TaskSamplerOptions) => TaskSampler>();

export function registerTaskSampler(name: string, factory: (o: TaskSamplerOptions) => TaskSampler): void {
  if (registry.has(name)) throw new ConfigError(`'registerTaskSampler': a task sampler named '${name}' is already registered`);
  registry.set(name, factory);
}

export function makeTaskSampler(name: string, opts: TaskSamplerOptions): TaskSampler {
  const f = registry.get(name);
  if (!f) throw new ConfigError(`config key 'taskSampling' is '${name}'; expected 'joint' or one of ${[...registry.keys()].map((k) => `'${k}'`).join(', ')}`);
  return f(opts);
}

registerTaskSampler('proportional', (o) => new ProbabilityTaskSampler('proportional', taskProbabilities(o.sizes, 1), o.seed));
registerTaskSampler('temperature', (o) => new ProbabilityTaskSampler('temperature', taskProbabilities(o.sizes, o.temperature), o.seed));
registerTaskSampler('round-robin', (o) => new RoundRobinTaskSampler(o.sizes.length));
