/**
 * Homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018). Each task has a learned log-variance
 * s_t = log sigma_t^2, and
 *
 *   loss = sum_t exp(-s_t) * L_t + s_t
 *
 * without the 1/2 factors of the paper's regression form (the form common for classification losses). The s_t
 * start at 0 (weight 1) and are trained by the run's optimizer in their own group with no weight decay.
 * d loss / d s_t = 1 - exp(-s_t) * L_t, so s_t settles where exp(-s_t) = 1 / L_t.
 */
import { Tensor } from '../../tensor/tensor.js';
import { markModified } from '../../tensor/versions.js';
import { ConfigError } from '../../errors.js';
import { registerTaskWeighting, type TaskWeighting, type TaskWeightingOptions } from './weighting.js';

export class UncertaintyWeighting implements TaskWeighting {
  readonly name = 'uncertainty';
  /** (T,) log-variances s_t. */
  readonly logVars: Tensor;

  constructor(readonly tasks: readonly string[]) {
    this.logVars = new Tensor(new Float32Array(tasks.length), 'f32', [tasks.length]).requireGrad();
  }

  combine(losses: ReadonlyMap<number, Tensor>, share = 1): Tensor {
    let total: Tensor | null = null;
    for (const [t, l] of losses) {
      const s = this.logVars.slice(0, t, t + 1); // (1,)
      const term = s.neg().exp().mul(l).add(share === 1 ? s : s.scale(share));
      total = total ? total.add(term) : term;
    }
    if (!total) throw new ConfigError(`'UncertaintyWeighting.combine': argument 'losses' is empty; expected the loss of at least one task`);
    return total.sum();
  }

  weights(): number[] {
    return Array.from(this.logVars.f32(), (s) => Math.exp(-s));
  }

  observe(): void {}
  endWindow(): void {}

  parameters(): Tensor[] {
    return [this.logVars];
  }

  state(): Record<string, unknown> {
    return { logVars: Array.from(this.logVars.f32()) };
  }

  load(state: Record<string, unknown>): void {
    const v = state['logVars'];
    if (!Array.isArray(v) || v.length !== this.tasks.length) throw new ConfigError(`'UncertaintyWeighting.load': state has logVars ${JSON.stringify(v)}; expected ${this.tasks.length} numbers`);
    (this.logVars.storage as Float32Array).set(v as number[]);
    markModified(this.logVars);
  }
}

registerTaskWeighting('uncertainty', (opts: TaskWeightingOptions) => new UncertaintyWeighting(opts.tasks));
