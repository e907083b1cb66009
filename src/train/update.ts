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
 *
 * On a device backend (WebGPU) without data parallelism, the norm, the finite check, the clip coefficient and the
 * fp16 loss scale's update are computed on the device by the step gate (src/backend/webgpu/gate.ts) and applied by the
 * optimizer kernels, with no read back in the step: the result's `ok` is null and `norm` NaN, and `settled` reads the
 * gate (24 bytes) when someone wants it (a log line). The CPU's bookkeeping of the step (the loss scaler's counters,
 * the optimizer's step counts on a skipped step: AdamW's bias correction needs them) follows from that read, which the
 * next update of the same optimizer awaits before queueing its own kernels: the next micro-batches are queued behind
 * the gate by then, so the device never waits for it; the CPU runs at most one step ahead.
 */
import { peekGrad, type Tensor } from '../tensor/tensor.js';
import type { Optimizer } from '../optim/optimizer.js';
import { clipCoefficient, gradNorm, gradNormAsync } from '../optim/clip.js';
import { backend } from '../backend/index.js';
import type { DeviceMemory } from '../backend/backend.js';
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
  /** This rank asks to stop after this step (a graceful stop: FinetuneArgs.signal). */
  stop?: boolean;
}

export interface UpdateResult {
  /** The step was applied (false: skipped for a non-finite loss or gradient); null: decided on the device, see `settled`. */
  ok: boolean | null;
  /** Global gradient norm before clipping, loss scale undone (NaN while it is on the device: see `settled`). */
  norm: number;
  /** The step's loss (summed over data-parallel ranks). */
  loss: number;
  /** Stop after this step: some rank asked (`stop`), agreed in the step's all-reduce so that every rank stops here. */
  stop: boolean;
  /**
   * `ok` and `norm`, read back from the device where they were decided there (resolved at once on the CPU backends).
   * Lazy: the read starts when this is awaited, or at the next update of the same optimizer.
   */
  settled: PromiseLike<Settled>;
}

interface Settled { ok: boolean; norm: number }

/** Each optimizer's last gated step, until the CPU has applied its outcome: starts (once) the read of its gate. */
const pending = new WeakMap<Optimizer, () => Promise<Settled>>();

/** Waits until the CPU bookkeeping of `opt`'s last device-gated step is done (before saving its state, say). */
export async function settleUpdates(opt: Optimizer): Promise<void> {
  await pending.get(opt)?.();
}

function settledNow(ok: boolean, norm: number): Promise<Settled> {
  return Promise.resolve({ ok, norm });
}

export async function guardedUpdate(u: UpdateInput): Promise<UpdateResult> {
  const params = u.named.map(([, t]) => t);
  let loss = u.loss;
  const dev = backend().device;
  let stop = u.stop ?? false;
  if (dev && !u.dp) return gatedUpdate(u, params, dev);
  if (u.dp && u.dp.method !== 'dense') {
    const localOk = Number.isFinite(loss) && Number.isFinite(gradNorm(params));
    const [sum, bad, stops] = await u.dp.sumNumbers([loss, localOk ? 0 : 1, stop ? 1 : 0]);
    loss = sum as number;
    stop = (stops as number) > 0;
    if ((bad as number) > 0) {
      u.scaler.update(false);
      return { ok: false, norm: NaN, loss, stop, settled: settledNow(false, NaN) };
    }
    // error-feedback memory and compressor work on unscaled gradients (residuals keep their meaning when the fp16
    // loss scale changes); the synced sums come back in loss-scaled units like the dense path's
    await u.dp.syncGradients(u.named, u.step, { lossScale: u.scaler.scale });
  } else if (u.dp) {
    await u.dp.syncGradients(u.named, u.step);
    const [sum, stops] = (await u.dp.sumNumbers([loss, stop ? 1 : 0])) as [number, number];
    loss = sum;
    stop = stops > 0;
  }
  const scale = u.scaler.scale;
  const norm = (dev ? await gradNormAsync(params) : gradNorm(params)) / scale; // device with data parallelism: one read back
  const ok = u.scaler.update(Number.isFinite(norm) && Number.isFinite(loss));
  if (ok) {
    u.opt.setLearningRate(u.lr);
    u.opt.step(clipCoefficient(norm, u.maxGradNorm) / scale);
  }
  return { ok, norm, loss, stop, settled: settledNow(ok, norm) };
}

/** The device path: the gate's kernels, the optimizer's gated kernels, no read back (see the module comment). */
async function gatedUpdate(u: UpdateInput, params: Tensor[], dev: DeviceMemory): Promise<UpdateResult> {
  await pending.get(u.opt)?.(); // the previous step's outcome is on the CPU before this step's step counts are used
  const grads = params.map(peekGrad).filter((g) => g !== null).map((g) => g.f32());
  const sc = u.scaler;
  const gate = dev.stepGate(grads, {
    maxNorm: u.maxGradNorm, lossFinite: Number.isFinite(u.loss),
    scaler: sc.enabled ? { state: sc.deviceState(), backoff: sc.backoff, growth: sc.growth, growthInterval: sc.growthInterval } : null,
  });
  u.opt.setLearningRate(u.lr);
  u.opt.step(1, gate);
  let read: Promise<Settled> | null = null;
  const start = (): Promise<Settled> => (read ??= dev.read(gate).then((g) => {
    const ok = g[1] === 1;
    sc.update(ok); // the same decision the gate made on the device (the device's scale already follows it)
    if (!ok) u.opt.undoSkippedStep();
    return { ok, norm: (g as Float32Array)[2] };
  }));
  pending.set(u.opt, start);
  return { ok: null, norm: NaN, loss: u.loss, stop: u.stop ?? false, settled: { then: (res, rej) => start().then(res, rej) } };
}
