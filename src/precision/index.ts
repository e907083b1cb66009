/**
 * Mixed precision: which dtype matrix products run in (the autocast dtype), with f32 master weights and
 * optimizer state, and a dynamic loss scaler for fp16 (start 2^16, halve and skip the step on overflow, double
 * after `growthInterval` clean steps). 'auto' picks bf16 where the backend multiplies bf16 in hardware, fp16
 * otherwise where it would help, and fp32 where neither helps; at run time, repeated fp16 overflows fall back
 * to bf16 (or fp32), said once in the log. NaN/Inf in the loss or gradients never reaches the weights.
 */
import type { Backend } from '../backend/backend.js';
import type { ComputeDType } from '../tensor/precision.js';
import { Tensor, peekGrad } from '../tensor/tensor.js';
import { backend } from '../backend/index.js';
import { ConfigError } from '../errors.js';

export type MixedPrecision = 'fp32' | 'bf16' | 'fp16' | 'auto';

export interface PrecisionPolicy {
  compute: ComputeDType;
  lossScaling: boolean;
  /** Why this policy (for the log). */
  reason: string;
}

const COMPUTE: Record<'fp32' | 'bf16' | 'fp16', ComputeDType> = { fp32: 'f32', bf16: 'bf16', fp16: 'f16' };

export function resolvePrecision(mp: MixedPrecision, b: Backend = backend()): PrecisionPolicy {
  if (mp === 'fp32' || mp === 'bf16' || mp === 'fp16') {
    // said in the log: bf16 asked for where its products are emulated keeps bf16's numerics, not its speed
    const emulated = mp === 'bf16' && !b.device && !b.nativeBf16
      ? ` (the ${b.name} backend has no bf16 products on this CPU: they run in f32 on bf16-rounded operands, bf16's numerics at about fp32's speed or a little slower; 'auto' would pick fp32)`
      : '';
    return { compute: COMPUTE[mp], lossScaling: mp === 'fp16', reason: `mixedPrecision '${mp}' as configured${emulated}` };
  }
  if (mp !== 'auto') throw new ConfigError(`config key 'mixedPrecision' is '${mp as string}'; expected fp32, bf16, fp16 or auto`);
  if (b.device) return { compute: 'f32', lossScaling: false, reason: `auto: fp32 on the ${b.name} backend (bf16/fp16 autocast is not run on the device)` };
  if (b.nativeBf16) return { compute: 'bf16', lossScaling: false, reason: 'auto: this CPU multiplies bf16 in hardware' };
  // fp16 products are emulated on CPUs (no fp16 FMA in the kernels), so they would only cost time here.
  return { compute: 'f32', lossScaling: false, reason: `auto: the ${b.name} backend has no bf16/fp16 hardware path on this CPU, so fp32 is fastest` };
}

export interface LossScalerState { scale: number; goodSteps: number; overflows: number; skipped: number }

export class DynamicLossScaler {
  scale: number;
  goodSteps = 0;
  /** Overflows in a row (for the fp16 -> bf16 fallback). */
  overflows = 0;
  skipped = 0;
  constructor(readonly enabled: boolean, init = 2 ** 16, readonly growthInterval = 2000, readonly backoff = 0.5, readonly growth = 2) {
    this.scale = enabled ? init : 1;
  }

  /** On a device backend: [scale, clean steps in a row] on the device, which the step gate updates (see `scaleLoss`). */
  private dev: Float32Array | null = null;

  /**
   * The device copy of the state, made from the CPU values on first use (device backends only). The step gate
   * (src/backend/webgpu/gate.ts) updates it on the device, as torch's `_amp_update_scale_`; `update` replays the same
   * decision on the CPU when the gate is read back, so `scale` and the counters follow one step behind.
   */
  deviceState(): Float32Array {
    const dev = backend().device;
    if (!dev) throw new Error('DynamicLossScaler.deviceState: the current backend keeps tensors in CPU memory');
    return (this.dev ??= dev.upload(Float32Array.of(this.scale, this.goodSteps), 'f32') as Float32Array);
  }

  /**
   * The loss to call backward on: `loss` x scale / `divisor` (the gradient accumulation steps). On a device backend
   * with scaling on, the scale is the device's (updated there by the step gate, with no read back).
   */
  scaleLoss(loss: Tensor, divisor = 1): Tensor {
    if (this.enabled && backend().device) return loss.mul(new Tensor(this.deviceState().subarray(0, 1), 'f32', [])).scale(1 / divisor);
    return loss.scale(this.scale / divisor);
  }

  /** True when every gradient is finite (checked in one pass of sum of squares per tensor). */
  static finite(params: Tensor[]): boolean {
    for (const p of params) {
      const g = peekGrad(p);
      if (g && !Number.isFinite(backend().sumSquares(g.f32()))) return false;
    }
    return true;
  }

  /**
   * After backward: returns whether the step may proceed (gradients finite). Updates the scale: halve on
   * overflow, double after growthInterval clean steps. Without scaling it still refuses non-finite gradients.
   */
  update(finite: boolean): boolean {
    if (!finite) {
      this.skipped++;
      this.overflows++;
      this.goodSteps = 0;
      if (this.enabled) this.scale = Math.max(this.scale * this.backoff, 1);
      return false;
    }
    this.overflows = 0;
    if (this.enabled && ++this.goodSteps >= this.growthInterval) {
      this.scale *= this.growth;
      this.goodSteps = 0;
    }
    return true;
  }

  state(): LossScalerState {
    return { scale: this.scale, goodSteps: this.goodSteps, overflows: this.overflows, skipped: this.skipped };
  }
  load(s: LossScalerState): void {
    Object.assign(this, s);
    this.dev = null; // made again from the loaded values on next use
  }
}
