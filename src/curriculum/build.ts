/**
 * From the trainer config's `curriculum` and `sampling` keys to a Sampler, or null when neither is on (the
 * trainer then keeps its epoch samplers). The trainer provides the scoring forward pass.
 */
import { ConfigError } from '../errors.js';
import type { Sampler } from '../data/samplers/sampler.js';
import { curriculumOptionsSchema, type CurriculumOptions, type SamplingOptions } from './config.js';
import { CurriculumSampler, type RefreshInfo } from './curriculum-sampler.js';
import { LossWeightedSampler } from './loss-weighted-sampler.js';
import { makePacing } from './pacing.js';
import { SCORERS, scoreFn, type ForwardOutputs } from './scorers.js';

export interface SamplingConfig {
  curriculum: boolean | CurriculumOptions;
  sampling: SamplingOptions;
}

export interface SamplerContext {
  batchSize: number;
  seed: number;
  /** Micro-batches per optimizer step (refresh intervals are in optimizer steps). */
  gradientAccumulation: number;
  labels: ArrayLike<number>;
  lengths: readonly number[];
  /** The current model's logits and head features on rows (eval mode, no gradients). */
  forward: ((indices: number[]) => ForwardOutputs) | null;
  scoreBatchSize?: number;
  /** Told after each curriculum re-scoring (rows scored, milliseconds). */
  onRefresh?: (info: RefreshInfo) => void;
}

/** The curriculum options with defaults (`true` = all defaults), or null when off. */
export function curriculumOptions(c: SamplingConfig['curriculum']): CurriculumOptions | null {
  if (c === false) return null;
  return c === true ? curriculumOptionsSchema.parse({}) : c;
}

/** Cross-key checks (each key alone is checked by its schema). */
export function checkSamplingConfig(c: SamplingConfig & { task?: string; tasks?: unknown }): void {
  const cur = curriculumOptions(c.curriculum);
  if ((cur || c.sampling.method !== 'uniform') && c.tasks !== undefined) {
    throw new ConfigError(`config key '${cur ? 'curriculum' : 'sampling.method'}' is set together with 'tasks': multi-task training draws its own batches; use one of them`);
  }
  if (cur && c.sampling.method !== 'uniform') {
    throw new ConfigError(`config key 'sampling.method' is '${c.sampling.method}' while 'curriculum' is on; use one of them`);
  }
  if ((cur || c.sampling.method !== 'uniform') && c.task === 'causal-lm') {
    throw new ConfigError(`config key '${cur ? 'curriculum' : 'sampling.method'}' is set, but task 'causal-lm' samples uniformly; it works with task 'classification'`);
  }
}

export function buildSampler(c: SamplingConfig, ctx: SamplerContext): Sampler | null {
  checkSamplingConfig(c);
  const n = ctx.lengths.length, ga = ctx.gradientAccumulation;
  const cur = curriculumOptions(c.curriculum);
  if (cur) {
    const scorer = SCORERS.get(cur.scorer);
    return new CurriculumSampler({
      n, batchSize: ctx.batchSize, seed: ctx.seed,
      score: scoreFn(cur.scorer, ctx, ctx.forward, ctx.scoreBatchSize),
      pacing: makePacing(cur.pacing, cur), refreshEvery: cur.refreshEvery * ga, scoreSubset: cur.scoreSubset || undefined, static: !scorer.needsModel,
      onRefresh: ctx.onRefresh,
      describe: { scorer: cur.scorer, pacing: cur.pacing, startFraction: cur.startFraction, fullAt: cur.fullAt, stages: cur.stages },
    });
  }
  if (c.sampling.method === 'loss-weighted') {
    const s = c.sampling;
    return new LossWeightedSampler({ n, batchSize: ctx.batchSize, seed: ctx.seed, temperature: s.temperature, floor: s.floor,
      importanceWeights: s.importanceWeights, refreshEvery: s.refreshEvery * ga });
  }
  return null;
}
