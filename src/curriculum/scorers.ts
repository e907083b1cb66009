/**
 * Difficulty scorers: a per-sample difficulty (larger = harder) from one scoring forward pass of the current
 * model (eval mode, no gradients), or from the data alone.
 *
 *   loss        -log p(y)                                 cross-entropy of the true label
 *   confidence  1 - p(y)
 *   grad-norm   ||dL/dW||, ||dL/db|| of the linear head, in closed form: with logits z = W h + b,
 *               softmax p and one-hot y, dL/dz = p - y, so dL/dW = (p - y) h^T and dL/db = p - y, and the
 *               norm of the head's per-sample gradient is ||p - y|| * sqrt(||h||^2 + 1). No backward needed.
 *   length      the number of tokens (no model)
 */
import { ConfigError, ShapeError } from '../errors.js';
import { Registry } from './registry.js';

export interface ScoringBatch {
  /** Rows scored (indices into the training set). */
  indices: readonly number[];
  /** True class of each row (B). */
  labels: Int32Array;
  /** Token count of each row (B). */
  lengths: readonly number[];
  /** Logits (B, numClasses) of the current model, row-major; absent for scorers that need no model. */
  logits?: Float32Array;
  numClasses?: number;
  /** The head's input (B, featureDim): the pooled features h. */
  features?: Float32Array | null;
  featureDim?: number;
}

export interface DifficultyScorer {
  /** Whether scores need a forward pass of the model (and so go stale as it trains). */
  readonly needsModel: boolean;
  /** Difficulty of each row of the batch (B), larger = harder. */
  score(batch: ScoringBatch): Float32Array;
}

export const SCORERS = new Registry<DifficultyScorer>('difficulty scorer');

/** Softmax probabilities of row r (float64, max-subtracted). */
function rowProbs(b: ScoringBatch, r: number, out: Float64Array): void {
  const C = b.numClasses as number, z = b.logits as Float32Array;
  let m = -Infinity;
  for (let c = 0; c < C; c++) m = Math.max(m, z[r * C + c]!);
  let s = 0;
  for (let c = 0; c < C; c++) s += out[c] = Math.exp(z[r * C + c]! - m);
  for (let c = 0; c < C; c++) out[c]! /= s;
}

/** Runs `f(p, y, r)` over the rows' softmax probabilities after checking the batch's shapes. */
function perRow(name: string, b: ScoringBatch, f: (p: Float64Array, y: number, r: number) => number): Float32Array {
  const B = b.indices.length, C = b.numClasses;
  if (!b.logits || !C || b.logits.length !== B * C) {
    throw new ShapeError(`'scorer ${name}': logits have ${b.logits?.length ?? 'no'} values; expected (B=${B}) x (numClasses=${C})`);
  }
  const out = new Float32Array(B), p = new Float64Array(C);
  for (let r = 0; r < B; r++) {
    rowProbs(b, r, p);
    out[r] = f(p, b.labels[r]!, r);
  }
  return out;
}

SCORERS.register('loss', { needsModel: true, score: (b) => perRow('loss', b, (p, y) => -Math.log(Math.max(p[y]!, 1e-30))) });

SCORERS.register('confidence', { needsModel: true, score: (b) => perRow('confidence', b, (p, y) => 1 - p[y]!) });

SCORERS.register('grad-norm', {
  needsModel: true,
  score: (b) => {
    const D = b.featureDim ?? 0, h = b.features;
    if (!h || h.length !== b.indices.length * D) {
      throw new ShapeError(`'scorer grad-norm': features have ${h?.length ?? 'no'} values; expected (B=${b.indices.length}) x (featureDim=${D})`);
    }
    return perRow('grad-norm', b, (p, y, r) => {
      let e2 = 0, h2 = 0;
      for (let c = 0; c < p.length; c++) e2 += (p[c]! - (c === y ? 1 : 0)) ** 2;
      for (let d = 0; d < D; d++) h2 += h[r * D + d]! ** 2;
      return Math.sqrt(e2 * (h2 + 1));
    });
  },
});

SCORERS.register('length', { needsModel: false, score: (b) => Float32Array.from(b.lengths) });

/** What the trainer provides for scoring: the current model's outputs on some rows (eval mode, no gradients). */
export interface ForwardOutputs {
  logits: Float32Array;
  numClasses: number;
  features: Float32Array | null;
  featureDim: number;
}

/**
 * The sampler's scoring callback `(indices) => difficulty` for scorer `name`: rows are scored in chunks of
 * `batchSize` through `forward` (skipped for scorers that need no model).
 */
export function scoreFn(name: string, data: { labels: ArrayLike<number>; lengths: readonly number[] },
  forward: ((indices: number[]) => ForwardOutputs) | null, batchSize = 128): (indices: readonly number[]) => Float32Array {
  const scorer = SCORERS.get(name);
  if (scorer.needsModel && !forward) throw new ConfigError(`'scoreFn': scorer '${name}' needs a model forward pass; none was given`);
  return (indices) => {
    // chunks of similar length (less padding); results go back to the caller's order
    const order = indices.map((_, j) => j).sort((a, b) => data.lengths[indices[a]!]! - data.lengths[indices[b]!]! || a - b);
    const out = new Float32Array(indices.length);
    for (let s = 0; s < order.length; s += batchSize) {
      const pos = order.slice(s, s + batchSize), idx = pos.map((j) => indices[j]!);
      const batch: ScoringBatch = {
        indices: idx, labels: Int32Array.from(idx, (i) => data.labels[i]!), lengths: idx.map((i) => data.lengths[i]!),
        ...(scorer.needsModel ? (forward as (i: number[]) => ForwardOutputs)(idx) : {}),
      };
      const sc = scorer.score(batch);
      pos.forEach((j, r) => (out[j] = sc[r]!));
    }
    return out;
  };
}
