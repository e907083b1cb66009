/**
 * Task heads over a backbone's hidden states: the causal-LM loss (shifted, padding ignored), pooling
 * (first token, masked mean, last non-padding token), the sequence classifier of decoder families
 * (transformers' `XForSequenceClassification`: a bias-free `score` layer), and sentence embeddings.
 */
import { Tensor } from '../../tensor/tensor.js';
import { crossEntropy, embedding, maskedMean } from '../../tensor/ops/nn.js';
import { backend } from '../../backend/index.js';
import { matmul } from '../../tensor/ops/linalg.js';
import { linearCrossEntropy } from '../../tensor/ops/linear-ce.js';
import type { HeadWeights } from '../../peft/quant.js';
import { reshape, slice, squeeze } from '../../tensor/ops/movement.js';
import { sum } from '../../tensor/ops/reduce.js';
import { Linear } from '../../nn/layers.js';
import { ConfigError, ShapeError, fmtShape } from '../../errors.js';
import { HFModel, type Backbone, type ForwardOptions, type Pooling } from './family.js';

export const IGNORE_INDEX = -100;

/** Labels for language modelling: the ids, with -100 where attentionMask is 0 (padding is not predicted). */
export function lmLabels(ids: Tensor, attentionMask: Tensor | null = null): Tensor {
  const d = Int32Array.from(ids.i32('lmLabels'));
  if (attentionMask) {
    const m = attentionMask.toFlatArray();
    if (m.length !== d.length) throw new ShapeError(`'lmLabels': attentionMask ${fmtShape(attentionMask.shape)} does not match ids ${fmtShape(ids.shape)}`);
    for (let i = 0; i < d.length; i++) if (m[i] === 0) d[i] = IGNORE_INDEX;
  }
  return new Tensor(d, 'i32', [...ids.shape]);
}

/**
 * Mean next-token cross-entropy, as transformers computes it: logits (B, T, V) at position t predict
 * labels (B, T) at t + 1; labels equal to -100 are ignored.
 */
export function causalLMLoss(logits: Tensor, labels: Tensor, opts: { labelSmoothing?: number } = {}): Tensor {
  const [B, T, V] = logits.shape;
  if (logits.ndim !== 3 || labels.ndim !== 2 || labels.shape[0] !== B || labels.shape[1] !== T) {
    throw new ShapeError(`'causalLMLoss' needs logits [B, T, V] and labels [B, T]; got ${fmtShape(logits.shape)} and ${fmtShape(labels.shape)}`);
  }
  const shifted = reshape(slice(logits, 1, 0, T - 1), [B * (T - 1), V]); // (B*(T-1), V)
  return crossEntropy(shifted, new Tensor(nextTokens(labels), 'i32', [B * (T - 1)]), { ignoreIndex: IGNORE_INDEX, labelSmoothing: opts.labelSmoothing ?? 0 });
}

/**
 * The same loss from the final hidden states (B, T, D) and a plain head, through the fused chunked loss
 * (`linearCrossEntropy`): no (B x T x vocabulary) logits are made, in training or evaluation.
 */
export function causalLMLossFromHidden(hidden: Tensor, head: HeadWeights, labels: Tensor, opts: { labelSmoothing?: number } = {}): Tensor {
  const [B, T, D] = hidden.shape;
  if (hidden.ndim !== 3 || labels.ndim !== 2 || labels.shape[0] !== B || labels.shape[1] !== T) {
    throw new ShapeError(`'causalLMLossFromHidden' needs hidden [B, T, D] and labels [B, T]; got ${fmtShape(hidden.shape)} and ${fmtShape(labels.shape)}`);
  }
  const { h, targets } = scoredRows(reshape(slice(hidden, 1, 0, T - 1), [B * (T - 1), D]), nextTokens(labels));
  return linearCrossEntropy(h, head.weight, head.bias, new Tensor(targets, 'i32', [targets.length]), { ignoreIndex: IGNORE_INDEX, labelSmoothing: opts.labelSmoothing ?? 0, scales: head.scales });
}

/**
 * The rows of h (N, D) whose target is scored, and their targets: the head's products (the largest of an SFT step:
 * rows x hidden x vocabulary, three times) then skip the prompts and the padding, whose loss is ignored anyway. The
 * same loss and gradients (mean over the same scored rows; the gather's backward scatters into h's rows). On a device
 * backend, or when every row (or none) is scored, h and the targets as they are.
 */
export function scoredRows(h: Tensor, targets: Int32Array): { h: Tensor; targets: Int32Array } {
  let n = 0;
  for (const t of targets) if (t !== IGNORE_INDEX) n++;
  if (n === 0 || n === targets.length || backend().device) return { h, targets };
  const rows = new Int32Array(n), kept = new Int32Array(n);
  for (let i = 0, k = 0; i < targets.length; i++) {
    if (targets[i] === IGNORE_INDEX) continue;
    rows[k] = i;
    kept[k++] = targets[i]!;
  }
  return { h: embedding(new Tensor(rows, 'i32', [n]), h), targets: kept };
}

/** Labels (B, T) shifted left by one position per row: the targets of positions 0..T-2. */
export function nextTokens(labels: Tensor): Int32Array {
  const [B, T] = labels.shape;
  const l = labels.i32('causalLMLoss');
  const next = new Int32Array(B * (T - 1));
  for (let b = 0; b < B; b++) next.set(l.subarray(b * T + 1, (b + 1) * T), b * (T - 1));
  return next;
}

/** Classification loss of logits (B, C) against labels (B): cross-entropy, or MSE for one output (regression). */
export function sequenceClassificationLoss(logits: Tensor, labels: Tensor): Tensor {
  const C = logits.shape[logits.ndim - 1];
  if (C === 1) {
    const y = reshape(labels.dtype === 'f32' ? labels : labels.to('f32'), [labels.size, 1]);
    const d = logits.sub(y);
    return d.mul(d).mean();
  }
  return crossEntropy(logits, labels);
}

/** Index of the last position with mask 1 in each row (T - 1 without a mask). */
export function lastTokenIndex(B: number, T: number, attentionMask: Tensor | null | undefined): number[] {
  const out = new Array<number>(B).fill(T - 1);
  if (!attentionMask) return out;
  const m = attentionMask.toFlatArray();
  for (let b = 0; b < B; b++) {
    let last = -1;
    for (let t = 0; t < T; t++) if (m[b * T + t] !== 0) last = t;
    out[b] = last < 0 ? T - 1 : last;
  }
  return out;
}

/**
 * Pools hidden states (B, T, D) to (B, D): 'cls' = first token, 'mean' = mean over positions with mask 1,
 * 'last' = last non-padding token (a one-hot row selection through matmul, so gradients flow).
 */
export function pool(h: Tensor, attentionMask: Tensor | null | undefined, pooling: Pooling): Tensor {
  const [B, T, D] = h.shape;
  if (pooling === 'cls') return squeeze(slice(h, 1, 0, 1), 1); // (B, D)
  if (pooling === 'mean') {
    if (!attentionMask) return h.mean(1);
    const m = attentionMask.dtype === 'f32' ? attentionMask : attentionMask.to('f32');
    return maskedMean(h, m, 1); // (B, D)
  }
  const idx = lastTokenIndex(B, T, attentionMask);
  const sel = new Float32Array(B * T);
  idx.forEach((t, b) => (sel[b * T + t] = 1));
  return reshape(matmul(new Tensor(sel, 'f32', [B, 1, T]), h), [B, D]); // (B, 1, T) @ (B, T, D) -> (B, D)
}

export function checkPooling(p: string): Pooling {
  if (p !== 'cls' && p !== 'mean' && p !== 'last') throw new ConfigError(`pooling is '${p}'; expected 'cls', 'mean' or 'last'`);
  return p;
}

/**
 * `XForSequenceClassification` of the decoder families: backbone (registered under its checkpoint prefix)
 * + `score` (D -> numLabels, no bias) on the pooled hidden state (last non-padding token by default).
 */
export class SequenceClassifier extends HFModel {
  readonly task = 'sequence-classification' as const;
  readonly score: Linear;
  constructor(readonly architectureName: string, prefix: string, readonly backbone: Backbone, readonly numLabels: number,
    readonly pooling: Pooling = 'last') {
    super();
    this.module(prefix, backbone);
    this.score = this.module('score', new Linear(backbone.hiddenSize, numLabels, { bias: false }));
  }
  /** ids (B, T) -> logits (B, numLabels). */
  forward(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    const h = this.backbone.forward(ids, { ...opts, cache: null }); // (B, T, D)
    return this.score.forward(pool(h, opts.attentionMask, this.pooling));
  }
}

/** Sentence embeddings (B, D): pooled hidden states, L2-normalised unless `normalize` is false. */
export function sentenceEmbeddings(backbone: Backbone, ids: Tensor, opts: ForwardOptions & { pooling?: Pooling; normalize?: boolean } = {}): Tensor {
  const e = pool(backbone.forward(ids, opts), opts.attentionMask, opts.pooling ?? 'mean');
  if (opts.normalize === false) return e;
  return e.div(sum(e.mul(e), 1, true).sqrt().add(1e-12));
}
