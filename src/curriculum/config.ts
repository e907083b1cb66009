/**
 * The trainer-config keys of this folder, `curriculum` and `sampling`, with their defaults in one place.
 * Scorer and pacing names are checked against their registries, so a registered extension is accepted too.
 */
import { z } from 'zod';
import { PACINGS } from './pacing.js';
import { SCORERS } from './scorers.js';

const registered = (what: string, has: (n: string) => boolean, names: () => string[]) =>
  z.string().refine(has, (v) => ({ message: `unknown ${what} '${v}'; expected one of ${names().map((n) => `'${n}'`).join(', ')}` }));

export const curriculumOptionsSchema = z.object({
  scorer: registered('scorer', (n) => SCORERS.has(n), () => SCORERS.names()).default('loss')
    .describe("difficulty of a sample: 'loss' (per-sample loss of the current model), 'grad-norm' (norm of the head's per-sample gradient), 'confidence' (1 - p(true label)), 'length' (tokens)"),
  pacing: registered('pacing function', (n) => PACINGS.has(n), () => PACINGS.names()).default('sqrt')
    .describe("how the easiest fraction grows with progress t: 'sqrt', 'linear', 'step', 'exponential'"),
  startFraction: z.number().gt(0).max(1).default(0.3).describe('fraction of the data (easiest first) available at the start'),
  fullAt: z.number().gt(0).max(1).default(0.8).describe('fraction of training at which all data is in'),
  stages: z.number().int().positive().default(4).describe("pacing 'step': the number of discrete stages before fullAt"),
  refreshEvery: z.number().int().positive().default(50).describe('re-score the data every N optimizer steps (model-based scorers)'),
  // Measured on CLINC150 (15k rows, open-autoglm-base + LoRA, 2 shared cores): scoring costs ~1/5 of a training
  // step per row, so re-scoring all 15k rows every 50 steps would cost more than the training itself; 2000 rows
  // per refresh adds ~20-25%. The first refresh always scores every row.
  scoreSubset: z.number().int().nonnegative().default(2000).describe('rows re-scored per refresh after the first (a random subset; the rest keep stale scores); 0 = all'),
}).strict();

export const samplingOptionsSchema = z.object({
  method: z.enum(['uniform', 'loss-weighted']).default('uniform').describe("'uniform' (shuffled epochs) or 'loss-weighted' (p ∝ softmax(loss / temperature), mixed with a uniform floor)"),
  temperature: z.number().positive().default(1).describe('softmax temperature on the per-sample losses (larger = closer to uniform)'),
  floor: z.number().min(0).max(1).default(0.1).describe('uniform mixing weight eps: p = (1 - eps) softmax + eps / N'),
  importanceWeights: z.boolean().default(false).describe('multiply per-sample losses by 1 / (N p_i) so the expected gradient stays unbiased'),
  refreshEvery: z.number().int().positive().default(1).describe('rebuild the sampling table from the latest losses every N optimizer steps'),
}).strict();

export const curriculumSchema = z.union([z.boolean(), curriculumOptionsSchema]).default(false)
  .describe('curriculum learning: false, true (defaults), or an object with keys scorer, pacing, startFraction, fullAt, stages, refreshEvery, scoreSubset (CLI: a JSON object)');
export const samplingSchema = samplingOptionsSchema.default({})
  .describe('how batches are drawn: an object with keys method, temperature, floor, importanceWeights, refreshEvery (CLI: a JSON object)');

export type CurriculumOptions = z.output<typeof curriculumOptionsSchema>;
export type SamplingOptions = z.output<typeof samplingOptionsSchema>;
