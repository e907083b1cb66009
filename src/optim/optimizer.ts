/**
 * Optimizers over parameter groups. The base class owns the groups, per-parameter state and the step count;
 * each optimizer implements one per-parameter update on the backend's fused kernel.
 */
import { ConfigError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';

export interface ParamGroup {
  params: Tensor[];
  lr: number;
  weightDecay: number;
  /** Anything optimizer-specific (betas, momentum) may be overridden per group. */
  [key: string]: unknown;
}

export type ParamsInput = Tensor[] | Array<Partial<ParamGroup> & { params: Tensor[] }>;

export abstract class Optimizer {
  readonly groups: ParamGroup[];
  stepCount = 0;
  protected readonly state = new Map<Tensor, Record<string, Float32Array | number>>();

  constructor(params: ParamsInput, defaults: { lr: number; weightDecay: number } & Record<string, unknown>) {
    if (!(defaults.lr >= 0)) throw new ConfigError(`optimizer learning rate must be >= 0; got ${defaults.lr}`);
    const list = params.length && !('params' in (params[0] as object)) ? [{ params: params as Tensor[] }] : (params as Array<{ params: Tensor[] }>);
    this.groups = list.map((g) => ({ ...defaults, ...g, params: g.params.filter((p) => p.requiresGrad) }) as ParamGroup);
  }

  /** Clears the gradients of every parameter. */
  zeroGrad(): void {
    for (const g of this.groups) for (const p of g.params) p.grad = null;
  }

  /** One update of every parameter that has a gradient; `gradScale` multiplies gradients first (clipping, loss scale). */
  step(gradScale = 1): void {
    this.stepCount++;
    for (const g of this.groups) {
      for (const p of g.params) {
        if (!p.grad) continue;
        let st = this.state.get(p);
        if (!st) {
          st = {};
          this.state.set(p, st);
        }
        this.update(p, p.grad.f32(), g, st, gradScale);
      }
    }
  }

  protected abstract update(p: Tensor, grad: Float32Array, group: ParamGroup, state: Record<string, Float32Array | number>, gradScale: number): void;

  /** Sets the learning rate of every group (schedulers), keeping per-group ratios given as `lrScale`. */
  setLearningRate(lr: number): void {
    for (const g of this.groups) g.lr = lr * (typeof g.lrScale === 'number' ? g.lrScale : 1);
  }
}
