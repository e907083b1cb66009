/**
 * The objective of preference tuning (task 'dpo'): each row's log-probability of its scored tokens under the
 * decoder, and the pairwise losses of TRL's DPOTrainer, CPOTrainer (SimPO) and ORPOTrainer on them, with the rewards
 * they log.
 *
 * For a pair, with policy log-probabilities πc, πr of the chosen and rejected answers and the reference model's
 * ρc, ρr, the margin is z = (πc − ρc) − (πr − ρr) and the loss of one pair is
 *   'sigmoid' (DPO):  −(1 − ε) log σ(βz) − ε log σ(−βz)      (ε = labelSmoothing: conservative DPO)
 *   'hinge'  (SLiC):  max(0, 1 − βz)
 *   'ipo':            (z − 1 / (2β))²  on log-probabilities averaged over each answer's tokens (as TRL)
 * and, with c = πc − ρc and r = πr − ρr, TRL's other stateless pair losses: 'robust' (rDPO, with ε the label noise),
 * 'exo_pair' (EXO), 'sppo_hard' (SPPO with hard labels), 'nca_pair' (NCA), 'apo_zero' and 'apo_down' (APO).
 * The rewards are β(πc − ρc) and β(πr − ρr). Two losses take no reference, and compare log-probabilities averaged over
 * each answer's tokens, c = πc / |yc| and r = πr / |yr| (the rewards are βc and βr):
 *   'simpo' (SimPO, Meng et al. 2024; TRL's CPOTrainer loss_type 'simpo'): the sigmoid loss on z = c − r − γ/β
 *             (γ = simpoGamma, the target reward margin)
 *   'orpo'  (ORPO, Hong et al. 2024): −β log σ(log odds(c) − log odds(r)), odds(p) = e^p / (1 − e^p); the task adds
 *             the chosen answers' mean NLL (weight 1), so ORPO trains from a base model without an SFT stage.
 * Losses are averaged over the pairs; a pair is ranked right when its chosen reward is the larger.
 */
import { Tensor } from '../tensor/tensor.js';
import { isGradEnabled, record } from '../tensor/autograd.js';
import { crossEntropy } from '../tensor/ops/nn.js';
import { linearCrossEntropy } from '../tensor/ops/linear-ce.js';
import { reshape, slice, stack } from '../tensor/ops/movement.js';
import { sum } from '../tensor/ops/reduce.js';
import { AutoGLMError, ShapeError, fmtShape } from '../errors.js';
import { backend } from '../backend/index.js';
import type { CausalLM } from '../models/hf/family.js';
import { nextTokens, scoredRows } from '../models/hf/heads.js';
import type { SftBatch } from './batch.js';
import { IGNORE_INDEX } from './tokenize.js';

export const DPO_LOSS_TYPES = ['sigmoid', 'ipo', 'hinge', 'robust', 'exo_pair', 'sppo_hard', 'nca_pair', 'apo_zero', 'apo_down', 'simpo', 'orpo', 'kto'] as const;
export type DpoLossType = (typeof DPO_LOSS_TYPES)[number];
/** The losses that need no reference model. */
export const referenceFree = (t: DpoLossType): boolean => t === 'simpo' || t === 'orpo';
/** The losses that compare log-probabilities averaged over each answer's tokens. */
const lengthAveraged = (t: DpoLossType): boolean => t === 'ipo' || t === 'simpo' || t === 'orpo';

export interface DpoLossOptions {
  beta: number;
  lossType: DpoLossType;
  /** Conservative DPO's ε (sigmoid and simpo): the share of pairs assumed to be labelled the wrong way round. */
  labelSmoothing?: number;
  /** SimPO's target reward margin γ (simpo only; TRL's simpo_gamma, 0.5). */
  gamma?: number;
}

/**
 * Log-probability of each row's scored tokens (labels not IGNORE_INDEX) given the tokens before them: (R), with
 * gradients. With a plain LM head (the usual case) only the scored positions go through it (gathered once), in one
 * fused chunked product whose per-token losses are summed by row: no logits of the prompts or the padding, no
 * (R x T x vocabulary) tensor. Where the head itself trains (its gradient sums over rows, which have their own
 * upstream values), and on a device backend, one product per row; without a plain head from the full logits.
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
    // each row's scored rows: a block of the gathered ones, or its whole (T - 1) when nothing was gathered
    let at = 0;
    const blocks = counts.map((n, r) => {
      const b: [number, number] = compact ? [at, at + n] : [r * (T - 1), (r + 1) * (T - 1)];
      at += n;
      return b;
    });
    const ce = (from: number, to: number, reduction: 'sum' | 'none') =>
      linearCrossEntropy(slice(h, 0, from, to), head.weight, head.bias, new Tensor(targets.slice(from, to), 'i32', [to - from]), { reduction, ignoreIndex: IGNORE_INDEX, scales: head.scales });
    const zero = () => new Tensor(new Float32Array(1), 'f32', []);
    // per-row losses with their own upstream values: CPU backends, and a head that takes no gradient (linear-ce.ts)
    const batched = !backend().device && !(isGradEnabled() && (head.weight.requiresGrad || !!head.bias?.requiresGrad));
    if (targets.length === 0) return stack(blocks.map(() => zero()));
    if (!batched) return stack(blocks.map(([from, to]) => (to > from ? ce(from, to, 'sum').scale(-1) : zero())));
    const nll = ce(0, targets.length, 'none'); // (scored rows)
    return stack(blocks.map(([from, to]) => (to > from ? sum(slice(nll, 0, from, to)).scale(-1) : zero())));
  }
  const logits = model.forward(batch.ids, opts); // (R, T, V)
  const V = logits.shape[2] as number;
  const shifted = reshape(slice(logits, 1, 0, T - 1), [R * (T - 1), V]);
  const nll = crossEntropy(shifted, new Tensor(next, 'i32', [R * (T - 1)]), { ignoreIndex: IGNORE_INDEX, reduction: 'none' });
  return sum(reshape(nll, [R, T - 1]), 1).scale(-1);
}

/** Scored tokens of each row of a batch. */
export function scoredCounts(batch: SftBatch): number[] {
  const [R, T] = batch.labels.shape as [number, number];
  const l = batch.labels.i32('scoredCounts');
  return Array.from({ length: R }, (_, r) => {
    let n = 0;
    for (let t = 1; t < T; t++) if (l[r * T + t] !== IGNORE_INDEX) n++;
    return n;
  });
}

/**
 * Sums of what TRL logs: the rewards of the chosen (desirable) and rejected (undesirable) answers and their counts
 * (a pair has one of each), the pairs (examples) ranked right and their count; KTO: its KL estimates and their count.
 */
export interface RewardSums {
  chosen: number;
  rejected: number;
  nChosen: number;
  nRejected: number;
  correct: number;
  n: number;
  kl: number;
  nKl: number;
}

export const emptyRewardSums = (): RewardSums => ({ chosen: 0, rejected: 0, nChosen: 0, nRejected: 0, correct: 0, n: 0, kl: 0, nKl: 0 });

/** The order in which reward sums travel as numbers (an all-reduce over ranks). */
export const REWARD_SUM_KEYS = ['chosen', 'rejected', 'nChosen', 'nRejected', 'correct', 'n', 'kl', 'nKl'] as const;

/** Means of reward sums: what the logs show (KTO: with its KL estimate). */
export function rewardMeans(s: RewardSums): { chosen: number; rejected: number; margin: number; accuracy: number; kl?: number } {
  const chosen = s.nChosen ? s.chosen / s.nChosen : 0, rejected = s.nRejected ? s.rejected / s.nRejected : 0;
  return { chosen, rejected, margin: chosen - rejected, accuracy: s.correct / s.n, ...(s.nKl ? { kl: s.kl / s.nKl } : {}) };
}

const logSigmoid = (x: number) => (x < 0 ? x - Math.log1p(Math.exp(x)) : -Math.log1p(Math.exp(-x)));
const sigmoid = (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));
/** σ'(x) = σ(x) σ(−x). */
const dSigmoid = (x: number) => sigmoid(x) * sigmoid(-x);

/** log(1 − e^p) for p < 0, without cancellation at either end. */
const log1mexp = (p: number) => (p < -Math.LN2 ? Math.log1p(-Math.exp(p)) : Math.log(-Math.expm1(p)));
/** Average log-probabilities are below 0; a float32 sum can round a certain answer's to 0 or just above. */
const ODDS_MAX_LOGP = -1e-7;

/**
 * Per-pair losses, rewards and the loss's derivatives (float64) of B pairs: `policy` and `reference` hold the chosen
 * rows' log-probabilities then the rejected rows' (2B each; `reference` null for 'simpo' and 'orpo'); `counts` the
 * rows' scored tokens (the length-averaged losses). `grad[k]` is d loss_i / d policy[k] of row k's pair i.
 */
export function dpoTerms(policy: ArrayLike<number>, reference: ArrayLike<number> | null, counts: ArrayLike<number>, opts: DpoLossOptions):
  { losses: Float64Array; grad: Float64Array; sums: RewardSums } {
  const B = policy.length / 2, { beta, lossType } = opts, eps = opts.labelSmoothing ?? 0;
  if (lossType === 'kto') throw new AutoGLMError(`'kto' scores unpaired examples: ktoTerms, not dpoTerms`);
  if (!reference && !referenceFree(lossType)) throw new AutoGLMError(`preference loss '${lossType}' needs the reference model's log-probabilities`);
  const losses = new Float64Array(B), grad = new Float64Array(2 * B);
  const sums = emptyRewardSums();
  const avg = lengthAveraged(lossType);
  for (let i = 0; i < B; i++) {
    const sc = avg ? 1 / Math.max(1, counts[i]!) : 1, sr = avg ? 1 / Math.max(1, counts[B + i]!) : 1;
    // c, r: the chosen and rejected sides' log-ratios to the reference (or, reference-free, their log-probabilities)
    const c = (policy[i]! - (reference ? reference[i]! : 0)) * sc, r = (policy[B + i]! - (reference ? reference[B + i]! : 0)) * sr;
    let dc: number, dr: number; // d loss_i / dc, d loss_i / dr
    if (lossType === 'sigmoid' || lossType === 'simpo') {
      const z = c - r - (lossType === 'simpo' ? (opts.gamma ?? 0.5) / beta : 0);
      losses[i] = -(1 - eps) * logSigmoid(beta * z) - eps * logSigmoid(-beta * z);
      dc = -(1 - eps) * beta * sigmoid(-beta * z) + eps * beta * sigmoid(beta * z);
      dr = -dc;
    } else if (lossType === 'hinge') {
      losses[i] = Math.max(0, 1 - beta * (c - r));
      dc = 1 - beta * (c - r) > 0 ? -beta : 0;
      dr = -dc;
    } else if (lossType === 'ipo') {
      const d = c - r - 1 / (2 * beta);
      losses[i] = d * d;
      dc = 2 * d;
      dr = -dc;
    } else if (lossType === 'robust') {
      const x = beta * (c - r);
      losses[i] = (-(1 - eps) * logSigmoid(x) + eps * logSigmoid(-x)) / (1 - 2 * eps);
      dc = -beta * ((1 - eps) * sigmoid(-x) + eps * sigmoid(x)) / (1 - 2 * eps);
      dr = -dc;
    } else if (lossType === 'exo_pair') {
      // the reverse KL from the label distribution (1 - ε, ε) to σ(βz); TRL takes ε = 1e-3 where it is 0
      const e = eps || 1e-3, x = beta * (c - r), p = sigmoid(x);
      losses[i] = p * (logSigmoid(x) - Math.log(1 - e)) + (1 - p) * (logSigmoid(-x) - Math.log(e));
      dc = beta * p * (1 - p) * (x + Math.log(e / (1 - e)));
      dr = -dc;
    } else if (lossType === 'sppo_hard') {
      losses[i] = (c - 0.5 / beta) ** 2 + (r + 0.5 / beta) ** 2;
      dc = 2 * (c - 0.5 / beta);
      dr = 2 * (r + 0.5 / beta);
    } else if (lossType === 'nca_pair') {
      losses[i] = -logSigmoid(beta * c) - 0.5 * logSigmoid(-beta * c) - 0.5 * logSigmoid(-beta * r);
      dc = beta * (-sigmoid(-beta * c) + 0.5 * sigmoid(beta * c));
      dr = 0.5 * beta * sigmoid(beta * r);
    } else if (lossType === 'apo_zero') {
      losses[i] = 1 - sigmoid(beta * c) + sigmoid(beta * r);
      dc = -beta * dSigmoid(beta * c);
      dr = beta * dSigmoid(beta * r);
    } else if (lossType === 'apo_down') {
      losses[i] = sigmoid(beta * c) + 1 - sigmoid(beta * (c - r));
      dc = beta * (dSigmoid(beta * c) - dSigmoid(beta * (c - r)));
      dr = beta * dSigmoid(beta * (c - r));
    } else {
      // ORPO: the log odds ratio; d log odds(p) / dp = 1 / (1 − e^p)
      const pc = Math.min(c, ODDS_MAX_LOGP), pr = Math.min(r, ODDS_MAX_LOGP);
      const lor = pc - pr - (log1mexp(pc) - log1mexp(pr));
      losses[i] = -beta * logSigmoid(lor);
      const g = -beta * sigmoid(-lor);
      dc = c < ODDS_MAX_LOGP ? g / -Math.expm1(pc) : 0;
      dr = r < ODDS_MAX_LOGP ? -g / -Math.expm1(pr) : 0;
    }
    grad[i] = dc * sc;
    grad[B + i] = dr * sr;
    sums.chosen += beta * c;
    sums.rejected += beta * r;
    sums.correct += beta * c > beta * r ? 1 : 0;
  }
  sums.n = sums.nChosen = sums.nRejected = B;
  return { losses, grad, sums };
}

/**
 * The mean preference loss of B pairs (a scalar with gradients to `policy`, (2B): chosen rows then rejected rows),
 * against the reference log-probabilities (none for 'simpo' and 'orpo'); and the pairs' reward sums.
 */
export function dpoLoss(policy: Tensor, reference: ArrayLike<number> | null, counts: ArrayLike<number>, opts: DpoLossOptions): { loss: Tensor; sums: RewardSums } {
  if (policy.ndim !== 1 || policy.size % 2 !== 0 || policy.size === 0 || (reference && reference.length !== policy.size) || counts.length !== policy.size) {
    throw new ShapeError(`'dpoLoss' needs policy log-probabilities (2B) with 2B reference values and counts; got ${fmtShape(policy.shape)}, ${reference?.length ?? 'no reference'} and ${counts.length}`);
  }
  const { losses, grad, sums } = dpoTerms(policy.f32(), reference, counts, opts);
  return { sums, loss: summedTerms('dpoLoss', policy, losses, grad, policy.size / 2) };
}

/** Per-item losses summed and divided by `denominator`: a scalar whose gradient to `policy` is `grad` / denominator. */
function summedTerms(op: string, policy: Tensor, losses: Float64Array, grad: Float64Array, denominator: number): Tensor {
  let total = 0;
  for (const l of losses) total += l;
  const y = new Tensor(new Float32Array([total / denominator]), 'f32', []);
  return record(op, [policy], y, (gy) => {
    const g = gy.item() / denominator;
    return [new Tensor(Float32Array.from(grad, (d) => g * d), 'f32', [policy.size])];
  });
}

// ---- KTO (unpaired examples) -------------------------------------------------------------------------------------------

export interface KtoOptions {
  beta: number;
  /** Weights of the desirable and the undesirable examples' losses (TRL's desirable_weight, undesirable_weight). */
  desirableWeight: number;
  undesirableWeight: number;
}

/**
 * KTO's reference point: the KL estimate max(0, mean(π(y'|x) − ρ(y'|x))) over completions y' paired with other
 * examples' prompts x (TRL's KL dataset); no gradient flows through it.
 */
export function ktoKl(policyKl: ArrayLike<number>, referenceKl: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < policyKl.length; i++) s += policyKl[i]! - referenceKl[i]!;
  return policyKl.length ? Math.max(0, s / policyKl.length) : 0;
}

/**
 * KTO's per-example losses (TRL's KTOTrainer, loss_type 'kto'), their derivatives to the policy's log-probabilities
 * and the reward sums (float64). With r = π − ρ, the log-ratio of an example's completion, and z the KL estimate:
 * a desirable example's loss is w_d (1 − σ(β(r − z))), an undesirable one's w_u (1 − σ(β(z − r))); its reward βr;
 * it is ranked right when r lies on its label's side of z.
 */
export function ktoTerms(policy: ArrayLike<number>, reference: ArrayLike<number>, labels: ArrayLike<boolean>, kl: number, opts: KtoOptions):
  { losses: Float64Array; grad: Float64Array; sums: RewardSums } {
  const n = policy.length, { beta } = opts;
  const losses = new Float64Array(n), grad = new Float64Array(n), sums = emptyRewardSums();
  for (let i = 0; i < n; i++) {
    const r = policy[i]! - reference[i]!, good = labels[i]!;
    const s = sigmoid(beta * (good ? r - kl : kl - r)), w = good ? opts.desirableWeight : opts.undesirableWeight;
    losses[i] = w * (1 - s);
    grad[i] = (good ? -1 : 1) * w * beta * s * (1 - s);
    if (good) {
      sums.chosen += beta * r;
      sums.nChosen++;
    } else {
      sums.rejected += beta * r;
      sums.nRejected++;
    }
    sums.correct += (good ? r > kl : r < kl) ? 1 : 0;
  }
  sums.n = n;
  sums.kl = kl;
  sums.nKl = 1;
  return { losses, grad, sums };
}

/**
 * KTO's loss of n examples, summed and divided by `denominator` (the global batch's examples: a data-parallel rank's
 * share of the mean), with gradients to `policy` (n); and the reward sums.
 */
export function ktoLoss(policy: Tensor, reference: ArrayLike<number>, labels: ArrayLike<boolean>, kl: number, opts: KtoOptions, denominator: number): { loss: Tensor; sums: RewardSums } {
  if (policy.ndim !== 1 || policy.size === 0 || reference.length !== policy.size || labels.length !== policy.size) {
    throw new ShapeError(`'ktoLoss' needs policy log-probabilities (n) with n reference values and labels; got ${fmtShape(policy.shape)}, ${reference.length} and ${labels.length}`);
  }
  const { losses, grad, sums } = ktoTerms(policy.f32(), reference, labels, kl, opts);
  return { sums, loss: summedTerms('ktoLoss', policy, losses, grad, denominator) };
}
