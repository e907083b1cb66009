/**
 * Optimizers over parameter groups. The base class owns the groups, per-parameter state and the step count;
 * each optimizer implements one per-parameter update on the backend's fused kernel.
 */
import { backend } from '../backend/index.js';
import { ConfigError } from '../errors.js';
import { Tensor, peekGrad, releaseGrad } from '../tensor/tensor.js';
import { collectRefused } from '../tensor/alloc.js';
import { markModified, trainableCopyBuffer } from '../tensor/versions.js';
import { CheckpointError } from '../errors.js';

export interface ParamGroup {
  params: Tensor[];
  lr: number;
  weightDecay: number;
  /** Anything optimizer-specific (betas, momentum) may be overridden per group. */
  [key: string]: unknown;
}

export type ParamsInput = Tensor[] | Array<Partial<ParamGroup> & { params: Tensor[] }>;

/** A parameter's optimizer state: buffers (f32, or 8-bit codes) and scalars (its step count). */
export type OptimizerState = Record<string, Float32Array | Uint8Array | number>;

export abstract class Optimizer {
  readonly groups: ParamGroup[];
  stepCount = 0;
  protected readonly state = new Map<Tensor, OptimizerState>();

  constructor(params: ParamsInput, defaults: { lr: number; weightDecay: number } & Record<string, unknown>) {
    if (!(defaults.lr >= 0)) throw new ConfigError(`optimizer learning rate must be >= 0; got ${defaults.lr}`);
    const list = params.length && !('params' in (params[0] as object)) ? [{ params: params as Tensor[] }] : (params as Array<{ params: Tensor[] }>);
    this.groups = list.map((g) => ({ ...defaults, ...g, params: g.params.filter((p) => p.requiresGrad) }) as ParamGroup);
  }

  /**
   * Clears the gradients of every parameter (PyTorch's zero_grad(set_to_none=True)). A gradient that only the library
   * has held (never read through `p.grad`) goes back to the allocation pool for the next backward pass.
   */
  zeroGrad(): void {
    for (const g of this.groups) for (const p of g.params) releaseGrad(p);
    collectRefused();
  }

  /** The bookkeeping of the last gated step, for `undoSkippedStep`: states it created, step counts before it. */
  private gated: { created: Tensor[]; before: Map<Tensor, Record<string, number>> } | null = null;

  /**
   * One update of every parameter that has a gradient; `gradScale` multiplies gradients first (clipping, loss scale).
   * `gate` (device backends: src/backend/webgpu/gate.ts) also multiplies them, by a factor on the device, and makes the
   * kernels write nothing when the device decided to skip the step; the CPU learns that later and calls
   * `undoSkippedStep` before the next step, so step counts (AdamW's bias correction) and first-step state stay exact.
   */
  step(gradScale = 1, gate?: Float32Array): void {
    this.stepCount++;
    const undo = gate ? { created: [] as Tensor[], before: new Map<Tensor, Record<string, number>>() } : null;
    for (const g of this.groups) {
      for (const p of g.params) {
        const grad = peekGrad(p);
        if (!grad) continue;
        let st = this.state.get(p);
        if (!st) {
          st = {};
          this.state.set(p, st);
          undo?.created.push(p);
        } else if (undo) {
          undo.before.set(p, Object.fromEntries(Object.entries(st).filter(([, v]) => typeof v === 'number')) as Record<string, number>);
        }
        const copy = this.update(p, grad.f32(), g, st, gradScale, gate);
        markModified(p, copy || null);
      }
    }
    this.gated = undo;
  }

  /**
   * The device skipped the last gated step (its gate was closed: a non-finite gradient or loss): undo the CPU's
   * bookkeeping of it (the step count, per-parameter step counts, states the step created). The kernels wrote
   * nothing, so the parameters and the state arrays are as before it.
   */
  undoSkippedStep(): void {
    const u = this.gated;
    if (!u) throw new Error('undoSkippedStep: the last step was not gated');
    this.gated = null;
    this.stepCount--;
    for (const p of u.created) this.state.delete(p);
    for (const [p, before] of u.before) Object.assign(this.state.get(p) as object, before);
  }

  /**
   * The buffer an update writes p's bf16 copy into with the new values (versions.ts `trainableCopyBuffer`), where the
   * backend writes one and a bf16 product read p since its last update; null otherwise (and on a device's gated step).
   */
  protected bf16CopyBuffer(p: Tensor, gate?: Float32Array): Uint16Array | null {
    return !gate && backend().optimizerWritesBf16 ? trainableCopyBuffer(p) : null;
  }

  /**
   * Updates p in place. May return the bf16 copy of p's new values that it wrote with the update (versions.ts
   * `trainableCopyBuffer`: where the backend writes it and a bf16 product reads p), which step() makes p's copy.
   */
  protected abstract update(p: Tensor, grad: Float32Array, group: ParamGroup, state: OptimizerState, gradScale: number,
    gate?: Float32Array): Uint16Array | null | void;

  /** The length a state buffer `name` of parameter `p` has (its size; 8-bit states' absmaxes have one a block). */
  protected stateLength(_name: string, p: Tensor): number {
    return p.size;
  }

  /** Sets the learning rate of every group (schedulers), keeping per-group ratios given as `lrScale`. */
  setLearningRate(lr: number): void {
    for (const g of this.groups) g.lr = lr * (typeof g.lrScale === 'number' ? g.lrScale : 1);
  }

  /** Parameters in a fixed order (groups, then position): the keys of the state dict. */
  private orderedParams(): Tensor[] {
    return this.groups.flatMap((g) => g.params);
  }

  /**
   * The state for a checkpoint: per-parameter buffers as tensors keyed `<param index>.<name>` (f32, or i8 for 8-bit
   * codes), and the scalars (step counts, each group's lr) as JSON.
   */
  stateDict(): { tensors: Map<string, Tensor>; meta: { stepCount: number; lrs: number[]; scalars: Record<string, Record<string, number>> } } {
    const tensors = new Map<string, Tensor>();
    const scalars: Record<string, Record<string, number>> = {};
    this.orderedParams().forEach((p, i) => {
      const st = this.state.get(p);
      if (!st) return;
      for (const [k, v] of Object.entries(st)) {
        if (typeof v === 'number') (scalars[i] ??= {})[k] = v;
        else if (v instanceof Uint8Array) tensors.set(`${i}.${k}`, new Tensor(new Int8Array(v.buffer, v.byteOffset, v.length), 'i8', [v.length]));
        else tensors.set(`${i}.${k}`, new Tensor(v, 'f32', [v.length]));
      }
    });
    return { tensors, meta: { stepCount: this.stepCount, lrs: this.groups.map((g) => g.lr), scalars } };
  }

  loadStateDict(sd: { tensors: Map<string, Tensor>; meta: { stepCount: number; lrs: number[]; scalars: Record<string, Record<string, number>> } }): void {
    const params = this.orderedParams();
    if (sd.meta.lrs.length !== this.groups.length) {
      throw new CheckpointError(`optimizer state has ${sd.meta.lrs.length} parameter groups; this optimizer has ${this.groups.length}`);
    }
    this.state.clear();
    for (const [key, t] of sd.tensors) {
      const [i, name] = [Number(key.slice(0, key.indexOf('.'))), key.slice(key.indexOf('.') + 1)];
      const p = params[i];
      if (!p) throw new CheckpointError(`optimizer state key '${key}' names parameter ${i}; this optimizer has ${params.length}`);
      const want = this.stateLength(name, p);
      if (t.size !== want && t.size !== 0) throw new CheckpointError(`optimizer state key '${key}' has ${t.size} values; parameter ${i} (${p.size} elements) takes ${want}`);
      const st = this.state.get(p) ?? {};
      st[name] = t.dtype === 'i8' ? new Uint8Array((t.dense() as Int8Array).slice().buffer) : t.f32().slice();
      this.state.set(p, st);
    }
    for (const [i, sc] of Object.entries(sd.meta.scalars)) {
      const p = params[Number(i)];
      if (!p) throw new CheckpointError(`optimizer state names parameter ${i}; this optimizer has ${params.length}`);
      this.state.set(p, { ...(this.state.get(p) ?? {}), ...sc });
    }
    this.stepCount = sd.meta.stepCount;
    this.groups.forEach((g, i) => (g.lr = sd.meta.lrs[i]));
  }
}
