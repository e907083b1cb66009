/**
 * The guarded optimizer update, once for every task. After the accumulated backward passes:
 *
 *   data-parallel, compressed: finite check of this rank's gradients -> all ranks agree (one small all-reduce, with
 *     the loss) -> only if all are finite: compress + communicate + decompress (error-feedback memory updated)
 *   data-parallel, dense: all-reduce of the gradients and the loss (a non-finite value reaches every rank)
 *   -> global norm of the (loss-scaled) gradients through optim/clip.ts, which is also the finite check
 *   -> finite loss and norm: clip coefficient, optimizer step with the loss scale undone in the same pass;
 *      else: the step is skipped and the loss scaler backs off.
 *
 * Checking before compression keeps a NaN/Inf gradient out of the error-feedback residuals, which would otherwise
 * carry it into every later step.
 */
import type { Tensor } from '../tensor/tensor.js';
import type { Optimizer } from '../optim/optimizer.js';
import { clipCoefficient, gradNorm, gradNormAsync } from '../optim/clip.js';
import { backend } from '../backend/index.js';
import type { DynamicLossScaler } from '../precision/index.js';
import type { DataParallel } from '../distributed/data-parallel.js';

export interface UpdateInput {
  opt: Optimizer;
  scaler: DynamicLossScaler;
  /** Trainable tensors by name (the order is the same on every rank). */
  named: Array<[string, Tensor]>;
  /** This rank's mean loss of the step (its share of the global batch's, with data parallelism). */
  loss: number;
  lr: number;
  maxGradNorm: number;
  dp: DataParallel | null;
  /** Optimizer steps done before this one (compressors' warm-up). */
  step: number;
}

export interface UpdateResult {
  /** The step was applied (false: skipped for a non-finite loss or gradient). */
  ok: boolean;
  /** Global gradient norm before clipping, loss scale undone. */
  norm: number;
  /** The step's loss (summed over data-parallel ranks). */
  loss: number;
}

export async function guardedUpdate(u: UpdateInput): Promise<UpdateResult> {
  const params = u.named.map(([, t]) => t);
  let loss = u.loss;
  if (u.dp && u.dp.method !== 'dense') {
    const localOk = Number.isFinite(loss) && Number.isFinite(gradNorm(params));
    const [sum, bad] = await u.dp.sumNumbers([loss, localOk ? 0 : 1]);
    loss = sum as number;
    if ((bad as number) > 0) {
      u.scaler.update(false);
      return { ok: false, norm: NaN, loss };
    }
    // error-feedback memory and compressor work on unscaled gradients (residuals keep their meaning when the fp16
    // loss scale changes); the synced sums come back in loss-scaled units like the dense path's
    await u.dp.syncGradients(u.named, u.step, { lossScale: u.scaler.scale });
  } else if (u.dp) {
    await u.dp.syncGradients(u.named, u.step);
    [loss] = (await u.dp.sumNumbers([loss])) as [number];
  }
  const scale = u.scaler.scale;
  const norm = (backend().device ? await gradNormAsync(params) : gradNorm(params)) / scale; // device: one read back
  const ok = u.scaler.update(Number.isFinite(norm) && Number.isFinite(loss));
  if (ok) {
    u.opt.setLearningRate(u.lr);
    u.opt.step(clipCoefficient(norm, u.maxGradNorm) / scale);
  }
  return { ok, norm, loss };
}
