/**
 * Evaluation that a graceful stop can interrupt. An evaluation's batches run synchronously, and a signal handler
 * (SIGINT, SIGTERM under `autoglm finetune`) or a launcher's stop message only runs on a later turn of the event loop,
 * so a long validation pass used to hold a stop back until it ended: under a scheduler's grace period (Kubernetes
 * gives 30 s) the job could be killed first and lose the steps since its last checkpoint. During training the loop
 * hands the task an `EvalPace`, awaited before each evaluation batch: it gives the event loop a turn now and then, and
 * throws `EvaluationAbandoned` once the stop is asked for, so that the run writes its checkpoint with the evaluation
 * pending (resume runs it first: the same history and weights as a run never stopped).
 *
 * The batch loops are generators, one batch per `next()`: `evalBatches` drives them with the pace, `evalBatchesNow` at
 * once (the synchronous entry points: predict, the browser's evaluation).
 */
import { noGrad } from '../tensor/autograd.js';
import { AutoGLMError } from '../errors.js';

/** Awaited before each evaluation batch during training; throws `EvaluationAbandoned` to give the evaluation up. */
export type EvalPace = () => Promise<void>;

/** An evaluation given up for a graceful stop (the loop catches it; it never reaches the caller of `finetune`). */
export class EvaluationAbandoned extends AutoGLMError {}

/**
 * A data-parallel rank's evaluation cut short for a graceful stop: `evalBatches` ends its batch loop there and returns,
 * so the task's collectives (the sums and gathers after its loops) still run on every rank, in the same order, over
 * partial results; the loop then learns in one all-reduce whether any rank cut, and if one did every rank gives the
 * validation up together (it is pending in the checkpoint).
 */
export class EvaluationCut extends AutoGLMError {}

/** What evaluation switches: a module's training flag (nn Module's train / eval). */
interface Switchable {
  readonly training: boolean;
  eval(): unknown;
  train(mode?: boolean): unknown;
}

/**
 * Runs evaluation batches, one per `next()` of `steps`, each without gradients and with `model` in eval mode (back in
 * its own mode after, also when the evaluation is given up); `pace` awaited before each batch. A pace that throws
 * `EvaluationCut` ends the loop early (a data-parallel rank's stop); `EvaluationAbandoned` propagates.
 */
export async function evalBatches(model: Switchable, steps: Iterator<unknown>, pace?: EvalPace): Promise<void> {
  const wasTraining = model.training;
  model.eval();
  try {
    for (;;) {
      if (pace) {
        try {
          await pace();
        } catch (e) {
          if (e instanceof EvaluationCut) return; // the rest of this loop is skipped; the caller's collectives still run
          throw e;
        }
      }
      if (noGrad(() => steps.next()).done) return;
    }
  } finally {
    model.train(wasTraining);
  }
}

/** `evalBatches` at once, without a pace (synchronous callers). */
export function evalBatchesNow(model: Switchable, steps: Iterator<unknown>): void {
  const wasTraining = model.training;
  model.eval();
  try {
    noGrad(() => {
      while (!steps.next().done);
    });
  } finally {
    model.train(wasTraining);
  }
}
