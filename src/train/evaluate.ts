/** Evaluation and prediction of a sequence classifier: batched by length, without gradients, in eval mode. */
import { Tensor } from '../tensor/tensor.js';
import { crossEntropy, softmax } from '../tensor/ops/nn.js';
import { autocast, type ComputeDType } from '../tensor/precision.js';
import type { SequenceClassifier, TextEncoder } from '../models/classifier.js';
import { padIds } from '../data/encode.js';
import type { Example } from '../data/types.js';
import { DatasetError, DeviceError } from '../errors.js';
import { isDeviceStorage, poolStepBoundary } from '../tensor/alloc.js';
import { backend } from '../backend/index.js';
import { classificationReport, type ClassificationReport } from './metrics.js';
import { evalBatches, evalBatchesNow, type EvalPace } from './pace.js';

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

/**
 * The forward pass of evaluation: `seqs` in batches of similar length (shortest first, ties in input order), one batch
 * per `next()` (pace.ts drives them, without a graph); `each` gets a batch's input indices and its logits (batch, C).
 * Each batch is a step boundary of the buffer pool (alloc.ts): buffers of the lengths that the batches have left
 * behind go.
 */
function* forwardSteps(model: SequenceClassifier, enc: TextEncoder, seqs: number[][], batchSize: number, compute: ComputeDType,
  each: (idx: number[], logits: Tensor) => void): Generator<void> {
  const order = seqs.map((_, i) => i).sort((a, b) => seqs[a].length - seqs[b].length || a - b);
  for (let s = 0; s < order.length; s += batchSize) {
    const idx = order.slice(s, s + batchSize);
    const { ids, mask } = pad(idx.map((i) => seqs[i]), enc.padId);
    each(idx, autocast(compute, () => model.forward(ids, mask)));
    poolStepBoundary();
    yield;
  }
}

/** The logits of each batch into `out` (N, C) in input order (a CPU backend's: they are read here). */
function collectLogits(C: number, out: Float32Array) {
  return (idx: number[], logits: Tensor) => {
    const l = logits.f32();
    if (isDeviceStorage(l)) throw new DeviceError("evaluation reads logits in JavaScript; on the webgpu backend use 'await evaluateClassifierAsync' (evaluates on the device)");
    idx.forEach((i, r) => out.set(l.subarray(r * C, (r + 1) * C), i * C));
  };
}

/** Logits (N, C) of texts, in input order. */
function logitsOf(model: SequenceClassifier, enc: TextEncoder, seqs: number[][], batchSize: number, compute: ComputeDType): Float32Array {
  const out = new Float32Array(seqs.length * model.numLabels);
  evalBatchesNow(model, forwardSteps(model, enc, seqs, batchSize, compute, collectLogits(model.numLabels, out)));
  return out;
}

export interface EvalOptions {
  batchSize: number;
  maxLength: number;
  compute: ComputeDType;
  /** Training's validation: awaited before each batch (pace.ts); a graceful stop gives the evaluation up. */
  pace?: EvalPace;
}

/** Logits (N, C) of examples' texts, in order (data-parallel evaluation: each rank computes its share). */
export function exampleLogits(model: SequenceClassifier, enc: TextEncoder, examples: Example[], opts: EvalOptions): Float32Array {
  return logitsOf(model, enc, examples.map((e) => enc.encodeText(e.text).slice(0, opts.maxLength)), opts.batchSize, opts.compute);
}

/** `exampleLogits` awaiting `opts.pace` before each batch. */
export async function exampleLogitsAsync(model: SequenceClassifier, enc: TextEncoder, examples: Example[], opts: EvalOptions): Promise<Float32Array> {
  const out = new Float32Array(examples.length * model.numLabels);
  const seqs = examples.map((e) => enc.encodeText(e.text).slice(0, opts.maxLength));
  await evalBatches(model, forwardSteps(model, enc, seqs, opts.batchSize, opts.compute, collectLogits(model.numLabels, out)), opts.pace);
  return out;
}

export function evaluateClassifier(model: SequenceClassifier, enc: TextEncoder, examples: Example[], labels: string[], opts: EvalOptions): EvalResult {
  return reportFromLogits(exampleLogits(model, enc, examples, opts), examples, labels);
}

/**
 * `evaluateClassifier` on every backend. On a device backend (WebGPU) the forward, the loss and the argmax run on the
 * device and only what the metrics need is read back: each batch's summed loss (one number) and its predicted labels
 * (one integer per example), all reads queued before the first is awaited; the weights never leave the device. On
 * the CPU backends it is `evaluateClassifier` (the same numbers). On the device the loss is summed per batch in f32
 * (the CPU path: one mean over every row), so it agrees to f32 rounding; predictions are the same argmax.
 */
export async function evaluateClassifierAsync(model: SequenceClassifier, enc: TextEncoder, examples: Example[], labels: string[],
  opts: EvalOptions): Promise<EvalResult> {
  if (!backend().device) return reportFromLogits(await exampleLogitsAsync(model, enc, examples, opts), examples, labels);
  const truth = truthOf(examples, labels);
  const seqs = examples.map((e) => enc.encodeText(e.text).slice(0, opts.maxLength));
  const reads: Promise<[number[], Float32Array | Int32Array | Int8Array, Float32Array | Int32Array | Int8Array]>[] = [];
  await evalBatches(model, forwardSteps(model, enc, seqs, opts.batchSize, opts.compute, (idx, logits) => {
    const y = new Tensor(Int32Array.from(idx, (i) => truth[i]), 'i32', [idx.length]);
    const lossSum = crossEntropy(logits, y, { reduction: 'sum' });
    reads.push(Promise.all([idx, lossSum.data(), logits.argmax(-1).data()]));
  }), opts.pace);
  const pred = new Int32Array(examples.length);
  let nll = 0;
  for (const [idx, l, p] of await Promise.all(reads)) {
    nll += l[0];
    idx.forEach((i, r) => (pred[i] = p[r]));
  }
  return { ...classificationReport(truth, pred, labels), loss: examples.length ? nll / examples.length : NaN, predictions: pred };
}

function truthOf(examples: Example[], labels: string[]): Int32Array {
  const index = new Map(labels.map((l, i) => [l, i]));
  const truth = new Int32Array(examples.length);
  examples.forEach((e, i) => {
    const t = index.get(e.label);
    if (t === undefined) throw new DatasetError(`evaluation example ${i} has label '${e.label}', which the model was not trained on`);
    truth[i] = t;
  });
  return truth;
}

/** Loss, accuracy, F1 and predictions from the logits (N, C) of labelled examples. */
export function reportFromLogits(logits: Float32Array, examples: Example[], labels: string[]): EvalResult {
  const truth = truthOf(examples, labels);
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
