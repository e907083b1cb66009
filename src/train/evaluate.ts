/** Evaluation and prediction of a sequence classifier: batched by length, without gradients, in eval mode. */
import { Tensor } from '../tensor/tensor.js';
import { crossEntropy, softmax } from '../tensor/ops/nn.js';
import { noGrad } from '../tensor/autograd.js';
import { autocast, type ComputeDType } from '../tensor/precision.js';
import type { SequenceClassifier, TextEncoder } from '../models/classifier.js';
import { padIds } from '../data/encode.js';
import type { Example } from '../data/types.js';
import { DatasetError, DeviceError } from '../errors.js';
import { isDeviceStorage } from '../tensor/alloc.js';
import { classificationReport, type ClassificationReport } from './metrics.js';

export interface EvalResult extends ClassificationReport {
  loss: number;
  predictions: Int32Array;
}

export interface Prediction {
  text: string;
  label: string;
  score: number;
  /** The top 5 labels with probabilities. */
  top: Array<{ label: string; score: number }>;
}

function pad(seqs: number[][], padId: number): { ids: Tensor; mask: Tensor } {
  const p = padIds(seqs, padId);
  return { ids: new Tensor(p.ids, 'i32', [seqs.length, p.T]), mask: new Tensor(p.mask, 'f32', [seqs.length, p.T]) };
}

/** Logits (N, C) of texts, in input order. */
function logitsOf(model: SequenceClassifier, enc: TextEncoder, seqs: number[][], batchSize: number, compute: ComputeDType): Float32Array {
  const C = model.numLabels;
  const out = new Float32Array(seqs.length * C);
  const order = seqs.map((_, i) => i).sort((a, b) => seqs[a].length - seqs[b].length || a - b);
  const wasTraining = model.training;
  model.eval();
  noGrad(() => {
    for (let s = 0; s < order.length; s += batchSize) {
      const idx = order.slice(s, s + batchSize);
      const { ids, mask } = pad(idx.map((i) => seqs[i]), enc.padId);
      const l = autocast(compute, () => model.forward(ids, mask)).f32();
      if (isDeviceStorage(l)) throw new DeviceError("evaluation reads logits in JavaScript; on the webgpu backend evaluate on a CPU backend (moveToCPU, as the page's trainer does)");
      idx.forEach((i, r) => out.set(l.subarray(r * C, (r + 1) * C), i * C));
    }
  });
  model.train(wasTraining);
  return out;
}

export interface EvalOptions {
  batchSize: number;
  maxLength: number;
  compute: ComputeDType;
}

/** Logits (N, C) of examples' texts, in order (data-parallel evaluation: each rank computes its share). */
export function exampleLogits(model: SequenceClassifier, enc: TextEncoder, examples: Example[], opts: EvalOptions): Float32Array {
  return logitsOf(model, enc, examples.map((e) => enc.encodeText(e.text).slice(0, opts.maxLength)), opts.batchSize, opts.compute);
}

export function evaluateClassifier(model: SequenceClassifier, enc: TextEncoder, examples: Example[], labels: string[], opts: EvalOptions): EvalResult {
  return reportFromLogits(exampleLogits(model, enc, examples, opts), examples, labels);
}

/** Loss, accuracy, F1 and predictions from the logits (N, C) of labelled examples. */
export function reportFromLogits(logits: Float32Array, examples: Example[], labels: string[]): EvalResult {
  const index = new Map(labels.map((l, i) => [l, i]));
  const truth = new Int32Array(examples.length);
  examples.forEach((e, i) => {
    const t = index.get(e.label);
    if (t === undefined) throw new DatasetError(`evaluation example ${i} has label '${e.label}', which the model was not trained on`);
    truth[i] = t;
  });
  const C = labels.length;
  const lt = new Tensor(logits, 'f32', [examples.length, C]);
  const loss = examples.length ? crossEntropy(lt, new Tensor(truth, 'i32', [examples.length])).item() : NaN;
  const pred = lt.argmax(-1).dense() as Int32Array;
  return { ...classificationReport(truth, pred, labels), loss, predictions: pred };
}

export function predictTexts(model: SequenceClassifier, enc: TextEncoder, texts: string[], labels: string[], maxLength: number): Prediction[] {
  const seqs = texts.map((t) => enc.encodeText(t).slice(0, maxLength));
  const logits = logitsOf(model, enc, seqs, 64, 'f32');
  const C = labels.length;
  const probs = softmax(new Tensor(logits, 'f32', [texts.length, C]), -1).f32();
  return texts.map((text, i) => {
    const row = Array.from(probs.subarray(i * C, (i + 1) * C), (score, c) => ({ label: labels[c], score }));
    row.sort((a, b) => b.score - a.score);
    return { text, label: row[0].label, score: row[0].score, top: row.slice(0, 5) };
  });
}
