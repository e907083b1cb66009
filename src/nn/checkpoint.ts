/**
 * Activation (gradient) checkpointing, as torch.utils.checkpoint: a segment (typically one transformer block) runs
 * its forward pass without recording, so only its inputs are kept; the backward pass runs the segment again with
 * recording on and backpropagates through that local graph. Memory: one block's activations instead of every
 * block's, for about one extra forward pass of compute. Dropout masks are replayed exactly (the RNG state of the
 * forward pass is restored for the recomputation), and so is the autocast dtype (a bf16 forward pass is
 * recomputed in bf16 even when backward() is called outside `autocast`).
 */
import { Tensor } from '../tensor/tensor.js';
import { enableGrad, isGradEnabled, noGrad, record } from '../tensor/autograd.js';
import { Rng } from '../backend/rng.js';
import { autocast, autocastDType } from '../tensor/precision.js';
import { getRng, setRng } from './init.js';
import type { Module } from './module.js';

/** `fn(...inputs)` of `module` (whose trainable parameters receive their gradients) with checkpointed activations. */
export function checkpoint(module: Module, fn: (...xs: Tensor[]) => Tensor, ...inputs: Tensor[]): Tensor {
  const params = module.parameters().filter((p) => p.requiresGrad);
  if (!isGradEnabled() || (params.length === 0 && !inputs.some((t) => t.requiresGrad))) return fn(...inputs);
  const rng = getRng().state();
  const compute = autocastDType(); // the recomputation runs in the forward pass's autocast dtype, as PyTorch's does
  const y = noGrad(() => fn(...inputs));
  const needs = inputs.map((t) => t.requiresGrad);
  // The parameters are edges too, so the node is recorded when only they learn (a frozen embedding feeds LoRA
  // blocks); their gradients are accumulated by the inner backward pass, so this node returns null for them.
  return record('checkpoint', [...inputs, ...params], y, (gy) => {
    const xs = inputs.map((t, i) => {
      const d = t.detach();
      d.requiresGrad = needs[i];
      return d;
    });
    const outer = getRng();
    setRng(new Rng(rng.seed, rng.counter));
    try {
      const out = autocast(compute, () => enableGrad(() => fn(...xs)));
      if (out.requiresGrad) out.backward({ gradient: gy });
    } finally {
      setRng(outer);
    }
    return [...xs.map((d) => (d.requiresGrad ? d.grad : null)), ...params.map(() => null)];
  });
}

/**
 * A module whose stack of layers can run checkpointed, one segment per layer (transformers'
 * `supports_gradient_checkpointing`): the backbones of every model family and TinyGPT.
 */
export interface Checkpointable {
  gradientCheckpointing: boolean;
}

function isCheckpointable(m: Module): m is Module & Checkpointable {
  return typeof (m as Partial<Checkpointable>).gradientCheckpointing === 'boolean';
}

/**
 * Turns gradient checkpointing on or off in every layer stack of `model` that supports it (transformers'
 * `gradient_checkpointing_enable`); returns how many stacks it set (0: the model has none).
 */
export function setGradientCheckpointing(model: Module, on: boolean): number {
  let n = 0;
  for (const [, m] of model.namedModules()) {
    if (isCheckpointable(m)) {
      m.gradientCheckpointing = on;
      n++;
    }
  }
  return n;
}

/** One layer of a stack: `fn(x)` through `checkpoint` when `enabled`, else directly. */
export function maybeCheckpoint(enabled: boolean, layer: Module, fn: (x: Tensor) => Tensor, x: Tensor): Tensor {
  return enabled ? checkpoint(layer, fn, x) : fn(x);
}
