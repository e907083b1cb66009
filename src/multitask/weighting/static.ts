/** Static task weights: loss = sum_t w_t * L_t, with w_t from config `taskWeights` (default 1 each). */
import { ConfigError } from '../../errors.js';
import { registerTaskWeighting, weightedSum, type TaskWeighting, type TaskWeightingOptions } from './weighting.js';

export function staticWeighting(opts: TaskWeightingOptions): TaskWeighting {
  const w = opts.weights ? [...opts.weights] : opts.tasks.map(() => 1);
  if (w.length !== opts.tasks.length) throw new ConfigError(`config key 'taskWeights' has ${w.length} weight(s); expected ${opts.tasks.length}, one per task (${opts.tasks.join(', ')})`);
  return {
    name: 'static',
    combine: (losses) => weightedSum(losses, (t) => w[t]!),
    weights: () => w.slice(),
    observe: () => {},
    endWindow: () => {},
    parameters: () => [],
    state: () => ({}),
    load: () => {},
  };
}

registerTaskWeighting('static', staticWeighting);
