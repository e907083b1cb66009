/**
 * Evaluation and prediction of a multi-task classifier: the backbone runs once per text (batched by length,
 * without gradients, in eval mode) and every head reads the same pooled embedding. Each task is scored on the
 * examples that carry its label: accuracy, macro-F1, loss, per-class report.
 */
import { Tensor } from '../tensor/tensor.js';
import { crossEntropy, softmax } from '../tensor/ops/nn.js';
import { autocast, type ComputeDType } from '../tensor/precision.js';
import { padIds, type Example } from '../data/index.js';
import { classificationReport } from '../train/metrics.js';
import type { EvalResult, Prediction } from '../train/evaluate.js';
import { evalBatches, evalBatchesNow, type EvalPace } from '../train/pace.js';
import type { MultiTaskClassifier, TaskSpec } from './heads.js';
import { taskTargets } from './tasks.js';

/** Top-level numbers are the first task's; `tasks` has every task's report. */
export type MultiTaskEvalResult = EvalResult & { tasks: Record<string, EvalResult> };
export type TaskPrediction = Omit<Prediction, 'text'>;
export type MultiTaskPrediction = Prediction & { tasks: Record<string, TaskPrediction> };

/** The batches of `taskLogits`, one per `next()`, each head's logits into `out`. */
function* taskLogitSteps(model: MultiTaskClassifier, seqs: number[][], batchSize: number, compute: ComputeDType, out: Float32Array[]): Generator<void> {
  const order = seqs.map((_, i) => i).sort((a, b) => seqs[a]!.length - seqs[b]!.length || a - b);
  for (let s = 0; s < order.length; s += batchSize) {
    const idx = order.slice(s, s + batchSize);
    const p = padIds(idx.map((i) => seqs[i]!), model.backbone.padId);
    const ids = new Tensor(p.ids, 'i32', [idx.length, p.T]), mask = new Tensor(p.mask, 'f32', [idx.length, p.T]); // (B, T)
    autocast(compute, () => {
      const h = model.features(ids, mask); // (B, D)
      model.tasks.forEach((t, k) => {
        const C = t.labels.length, l = model.head(t.name, h).f32(); // (B, C)
        idx.forEach((i, r) => out[k]!.set(l.subarray(r * C, (r + 1) * C), i * C));
      });
    });
    yield;
  }
}

/** Logits of every head, (N, C_t) per task in input order, in eval mode (restored after) without a graph. */
export function taskLogits(model: MultiTaskClassifier, seqs: number[][], batchSize: number, compute: ComputeDType): Float32Array[] {
  const out = model.tasks.map((t) => new Float32Array(seqs.length * t.labels.length));
  evalBatchesNow(model, taskLogitSteps(model, seqs, batchSize, compute, out));
  return out;
}

/** `taskLogits` with `pace` (training's validation, pace.ts) awaited before each batch. */
export async function taskLogitsAsync(model: MultiTaskClassifier, seqs: number[][], batchSize: number, compute: ComputeDType, pace?: EvalPace): Promise<Float32Array[]> {
  const out = model.tasks.map((t) => new Float32Array(seqs.length * t.labels.length));
  await evalBatches(model, taskLogitSteps(model, seqs, batchSize, compute, out), pace);
  return out;
}

export async function evaluateTasks(model: MultiTaskClassifier, examples: Example[], primary: string,
  opts: { batchSize: number; maxLength: number; compute: ComputeDType; pace?: EvalPace }): Promise<MultiTaskEvalResult> {
  return scoreTasks(model, examples, primary, await taskLogitsAsync(model, encodeExamples(model, examples, opts.maxLength), opts.batchSize, opts.compute, opts.pace));
}

/** The examples' token ids, cut to `maxLength`. */
export function encodeExamples(model: MultiTaskClassifier, examples: Example[], maxLength: number): number[][] {
  return examples.map((e) => model.backbone.encodeText(e.text).slice(0, maxLength));
}

/** Every task's report from its heads' logits over `examples` (taskLogits' layout). */
export function scoreTasks(model: MultiTaskClassifier, examples: Example[], primary: string, logits: Float32Array[]): MultiTaskEvalResult {
  const tasks: Record<string, EvalResult> = {};
  model.tasks.forEach((t, k) => (tasks[t.name] = scoreTask(t, logits[k]!, taskTargets(examples, t, primary))));
  return { ...tasks[model.tasks[0]!.name]!, tasks };
}

/** One task's report over the rows that have its label (target >= 0). */
function scoreTask(task: TaskSpec, logits: Float32Array, targets: Int32Array): EvalResult {
  const C = task.labels.length;
  const rows = [...targets.keys()].filter((i) => targets[i]! >= 0);
  const sub = new Float32Array(rows.length * C);
  rows.forEach((i, r) => sub.set(logits.subarray(i * C, (i + 1) * C), r * C));
  const truth = Int32Array.from(rows, (i) => targets[i]!);
  const lt = new Tensor(sub, 'f32', [rows.length, C]);
  const loss = rows.length ? crossEntropy(lt, new Tensor(truth, 'i32', [rows.length])).item() : NaN;
  const pred = rows.length ? (lt.argmax(-1).dense() as Int32Array) : new Int32Array(0);
  return { ...classificationReport(truth, pred, task.labels), loss, predictions: pred };
}

/** Each task's label (top 5 with probabilities); the top-level label is the first task's. */
export function predictTasks(model: MultiTaskClassifier, texts: string[], maxLength: number): MultiTaskPrediction[] {
  const seqs = texts.map((t) => model.backbone.encodeText(t).slice(0, maxLength));
  const logits = taskLogits(model, seqs, 64, 'f32');
  const probs = model.tasks.map((t, k) => softmax(new Tensor(logits[k]!, 'f32', [texts.length, t.labels.length]), -1).f32());
  return texts.map((text, i) => {
    const tasks: Record<string, TaskPrediction> = {};
    model.tasks.forEach((t, k) => {
      const C = t.labels.length;
      const row = Array.from(probs[k]!.subarray(i * C, (i + 1) * C), (score, c) => ({ label: t.labels[c]!, score }));
      row.sort((a, b) => b.score - a.score);
      tasks[t.name] = { label: row[0]!.label, score: row[0]!.score, top: row.slice(0, 5) };
    });
    return { text, ...tasks[model.tasks[0]!.name]!, tasks };
  });
}
