/**
 * The objective of preference tuning (task 'dpo'): each row's log-probability of its scored tokens under the
 * decoder, and the pairwise losses of TRL's DPOTrainer on them, with the rewards it logs.
 *
 * For a pair, with policy log-probabilities πc, πr of the chosen and rejected answers and the reference model's
 * ρc, ρr, the margin is z = (πc − ρc) − (πr − ρr) and the loss of one pair is
 *   'sigmoid' (DPO):  −(1 − ε) log σ(βz) − ε log σ(−βz)      (ε = labelSmoothing: conservative DPO)
 *   'hinge'  (SLiC):  max(0, 1 − βz)
 *   'ipo':            (z − 1 / (2β))²  on log-probabilities averaged over each answer's tokens (as TRL)
 * averaged over the pairs. The rewards are β(πc − ρc) and β(πr − ρr); a pair is ranked right when the first is larger.
 */
import { Tensor } from '../tensor/tensor.js';
import { record } from '../tensor/autograd.js';
import { crossEntropy } from '../tensor/ops/nn.js';
import { linearCrossEntropy } from '../tensor/ops/linear-ce.js';
import { reshape, slice, stack } from '../tensor/ops/movement.js';
import { sum } from '../tensor/ops/reduce.js';
import { ShapeError, fmtShape } from '../errors.js';
import type { CausalLM } from '../models/hf/family.js';
import { nextTokens, scoredRows } from '../models/hf/heads.js';
import type { SftBatch } from './batch.js';
import { IGNORE_INDEX } from './tokenize.js';

export const DPO_LOSS_TYPES = ['sigmoid', 'ipo', 'hinge'] as const;
export type DpoLossType = (typeof DPO_LOSS_TYPES)[number];

export interface DpoLossOptions {
  beta: number;
  lossType: DpoLossType;
  /** Conservative DPO's ε (sigmoid only): the share of pairs assumed to be labelled the wrong way round. */
  labelSmoothing?: number;
}

/**
 * Log-probability of each row's scored tokens (labels not IGNORE_INDEX) given the tokens before them: (R), with
 * gradients. With a plain LM head (the usual case) only the scored positions go through it (gathered once), one fused
 * chunked product per row: no logits of the prompts or the padding, no (R x T x vocabulary) tensor. Otherwise from
 * the full logits.
 */
export function sequenceLogProbs(model: CausalLM, batch: SftBatch): Tensor {
  const [R, T] = batch.ids.shape as [number, number];
  const opts = { attentionMask: batch.attentionMask, positionIds: batch.positionIds, documentIds: batch.documentIds };
  const next = nextTokens(batch.labels);
  const head = model.headWeights();
  if (head) {
    const hidden = model.hidden(batch.ids, opts); // (R, T, D)
    const D = hidden.shape[2] as number;
    const { h, targets } = scoredRows(reshape(slice(hidden, 1, 0, T - 1), [R * (T - 1), D]), next);
    const compact = targets.length < next.length, counts = scoredCounts(batch);
    let at = 0;
    const rows = counts.map((n, r) => {
      // this row's scored rows: a block of the gathered ones, or its whole (T - 1) when nothing was gathered
      const [from, to] = compact ? [at, at + n] : [r * (T - 1), (r + 1) * (T - 1)];
      at += n;
      if (n === 0) return new Tensor(new Float32Array(1), 'f32', []);
      const t = new Tensor(targets.slice(from, to), 'i32', [to - from]);
      return linearCrossEntropy(slice(h, 0, from, to), head.weight, head.bias, t, { reduction: 'sum', ignoreIndex: IGNORE_INDEX, scales: head.scales }).scale(-1);
    });
    return stack(rows);
  }
  const logits = model.forward(batch.ids, opts); // (R, T, V)
  const V = logits.shape[2] as number;
  const shifted = reshape(slice(logits, 1, 0, T - 1), [R * (T - 1), V]);
  const nll = crossEntropy(shifted, new Tensor(next, 'i32', [R * (T - 1)]), { ignoreIndex: IGNORE_INDEX, reduction: 'none' });
  return sum(reshape(nll, [R, T - 1]), 1).scale(-1);
}

/** Scored tokens of each row of a batch (IPO's length normalisation). */
export function scoredCounts(batch: SftBatch): number[] {
  const [R, T] = batch.labels.shape as [number, number];
  const l = batch.labels.i32('scoredCounts');
  return Array.from({ length: R }, (_, r) => {
    let n = 0;
    for (let t = 1; t < T; t++) if (l[r * T + t] !== IGNORE_INDEX) n++;
    return n;
  });
}

/** Sums over pairs of what TRL logs: rewards of each side, pairs ranked right, and the pair count. */
export interface RewardSums {
  chosen: number;
  rejected: number;
  correct: number;
  n: number;
}

export const emptyRewardSums = (): RewardSums => ({ chosen: 0, rejected: 0, correct: 0, n: 0 });

/** Means of reward sums: what the logs show. */
export function rewardMeans(s: RewardSums): { chosen: number; rejected: number; margin: number; accuracy: number } {
  return { chosen: s.chosen / s.n, rejected: s.rejected / s.n, margin: (s.chosen - s.rejected) / s.n, accuracy: s.correct / s.n };
}

const logSigmoid = (x: number) => (x < 0 ? x - Math.log1p(Math.exp(x)) : -Math.log1p(Math.exp(-x)));
const sigmoid = (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));

/**
 * Per-pair losses, rewards and d loss / d z (float64) of B pairs: `policy` and `reference` hold the chosen rows'
 * log-probabilities then the rejected rows' (2B each); `counts` the rows' scored tokens (used by 'ipo').
 */
export function dpoTerms(policy: ArrayLike<number>, reference: ArrayLike<number>, counts: ArrayLike<number>, opts: DpoLossOptions):
  { losses: Float64Array; dz: Float64Array; scale: Float64Array; sums: RewardSums } {
  const B = policy.length / 2, { beta, lossType } = opts, eps = opts.labelSmoothing ?? 0;
  const losses = new Float64Array(B), dz = new Float64Array(B), scale = new Float64Array(2 * B);
  const sums = emptyRewardSums();
  for (let i = 0; i < B; i++) {
    // IPO compares log-probabilities averaged over each answer's tokens
    const sc = lossType === 'ipo' ? 1 / Math.max(1, counts[i]!) : 1, sr = lossType === 'ipo' ? 1 / Math.max(1, counts[B + i]!) : 1;
    scale[i] = sc;
    scale[B + i] = sr;
    const c = (policy[i]! - reference[i]!) * sc, r = (policy[B + i]! - reference[B + i]!) * sr, z = c - r;
    if (lossType === 'sigmoid') {
      losses[i] = -(1 - eps) * logSigmoid(beta * z) - eps * logSigmoid(-beta * z);
      dz[i] = -(1 - eps) * beta * sigmoid(-beta * z) + eps * beta * sigmoid(beta * z);
    } else if (lossType === 'hinge') {
      losses[i] = Math.max(0, 1 - beta * z);
      dz[i] = 1 - beta * z > 0 ? -beta : 0;
    } else {
      const d = z - 1 / (2 * beta);
      losses[i] = d * d;
      dz[i] = 2 * d;
    }
    sums.chosen += beta * c;
    sums.rejected += beta * r;
    sums.correct += beta * c > beta * r ? 1 : 0;
  }
  sums.n = B;
  return { losses, dz, scale, sums };
}

/**
 * The mean preference loss of B pairs (a scalar with gradients to `policy`, (2B): chosen rows then rejected rows),
 * against the reference log-probabilities; and the pairs' reward sums.
 */
export function dpoLoss(policy: Tensor, reference: ArrayLike<number>, counts: ArrayLike<number>, opts: DpoLossOptions): { loss: Tensor; sums: RewardSums } {
  if (policy.ndim !== 1 || policy.size % 2 !== 0 || policy.size === 0 || reference.length !== policy.size || counts.length !== policy.size) {
    throw new ShapeError(`'dpoLoss' needs policy log-probabilities (2B) with 2B reference values and counts; got ${fmtShape(policy.shape)}, ${reference.length} and ${counts.length}`);
  }
  const B = policy.size / 2;
  const { losses, dz, scale, sums } = dpoTerms(policy.f32(), reference, counts, opts);
  let total = 0;
  for (const l of losses) total += l;
  const y = new Tensor(new Float32Array([total / B]), 'f32', []);
  return {
    sums,
    loss: record('dpoLoss', [policy], y, (gy) => {
      const g = gy.item() / B, out = new Float32Array(2 * B);
      for (let i = 0; i < B; i++) {
        out[i] = g * dz[i]! * scale[i]!;
        out[B + i] = -g * dz[i]! * scale[B + i]!;
      }
      return [new Tensor(out, 'f32', [2 * B])];
    }),
  };
}
