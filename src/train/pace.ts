/**
 * Evaluation that a graceful stop can interrupt. An evaluation's batches run synchronously, and a signal handler
 * (SIGINT, SIGTERM under `autoglm finetune`) or a launcher's stop message only runs on a later turn of the event loop,
 * so a long validation pass used to hold a stop back until it ended: under a scheduler's grace period (Kubernetes
 * gives 30 s) the job could be killed first and lose the steps since its last checkpoint. During training the loop
 * hands the task an `EvalPace`, awaited before each evaluation batch: it gives the event loop a turn now and then, and
 * throws `EvaluationAbandoned` once the stop is asked for, so that the run writes its checkpoint with the evaluation
 * pending (resume runs it first: the same history and weights as a run never stopped).
 *
 * The batch loops are generators, one batch per `next()`: `runBatches` drives them with the pace, `runBatchesNow` at
 * once (the synchronous entry points: predict, the browser, `trainer.evaluate`).
 */
import { noGrad } from '../tensor/autograd.js';
import { AutoGLMError } from '../errors.js';

/** Awaited before each evaluation batch during training; throws `EvaluationAbandoned` to give the evaluation up. */
export type EvalPace = () => Promise<void>;

/** An evaluation given up for a graceful stop (the loop catches it; it never reaches the caller of `finetune`). */
export class EvaluationAbandoned extends AutoGLMError {}

/** Runs evaluation batches, one per `next()` of `steps`, each without gradients; `pace` awaited before each. */
export async function runBatches(steps: Iterator<unknown>, pace?: EvalPace): Promise<void> {
  for (;;) {
    if (pace) await pace();
    if (noGrad(() => steps.next()).done) return;
  }
}

/** `runBatches` at once, without a pace (synchronous callers). */
export function runBatchesNow(steps: Iterator<unknown>): void {
  noGrad(() => {
    while (!steps.next().done);
  });
}
