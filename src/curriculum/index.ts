/** Curriculum learning and loss-aware sampling: difficulty scorers, pacing functions, and two samplers. */
export { Registry } from './registry.js';
export { PACINGS, makePacing, type Pacing, type PacingFactory, type PacingOptions } from './pacing.js';
export { SCORERS, scoreFn, type DifficultyScorer, type ScoringBatch, type ForwardOutputs } from './scorers.js';
export { StepSampler } from './step-sampler.js';
export { CurriculumSampler, rank, type CurriculumSamplerOptions, type RefreshInfo } from './curriculum-sampler.js';
export { LossWeightedSampler, type LossWeightedSamplerOptions } from './loss-weighted-sampler.js';
export { curriculumSchema, samplingSchema, curriculumOptionsSchema, samplingOptionsSchema, type CurriculumOptions, type SamplingOptions } from './config.js';
export { buildSampler, checkSamplingConfig, curriculumOptions, type SamplerContext, type SamplingConfig } from './build.js';
