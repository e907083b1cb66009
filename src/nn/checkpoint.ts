/**
 * Activation (gradient) checkpointing, as torch.utils.checkpoint: a segment (typically one transformer block) runs
 * its forward pass without recording, so only its inputs are kept; the backward pass runs the segment again with
 * recording on and backpropagates through that local graph. Memory: one block's activations instead of every
 * block's, for about one extra forward pass of compute. Dropout masks are replayed exactly (the RNG state of the
 * forward pass is restored for the recomputation), and so is the autocast dtype (a bf16 forward pass is
 * recomputed in bf16 even when backward() is called outside `autocast`).
 */
import { Tensor } from '../tensor/tensor.js';
import { enableGrad, isGradEnabled, noGrad, record, releaseWithGraph } from '../tensor/autograd.js';
import { Rng } from '../backend/rng.js';
import { autocast, autocastDType } from '../tensor/precision.js';
import { getRng, setRng } from './init.js';
import type { Module } from './module.js';
import { ConfigError } from '../errors.js';

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
 * Selective activation recomputation (Megatron-LM's selective recompute, applied to the MLP): a module that supports
 * it runs its up-projection and activation through `checkpoint`, so the (tokens x intermediate) pre-activation is
 * made again in the backward pass instead of being kept. The input of the segment is the output of the layer's norm,
 * which that norm keeps anyway, so what is saved is the pre-activation of every layer (151 MB on GPT-2 small at
 * 8 x 128 tokens), for one more up-projection product per layer. What the segment hands on is kept only where
 * the down-projection learns (LoRA on it), as without recomputation.
 */
export interface ActivationRecomputable {
  recomputeActivation: boolean;
}

function isActivationRecomputable(m: Module): m is Module & ActivationRecomputable {
  return typeof (m as Partial<ActivationRecomputable>).recomputeActivation === 'boolean';
}

/**
 * What `setGradientCheckpointing` turns on: `true` or 'full' checkpoints every layer of a stack (only the layers'
 * inputs are kept, one more forward pass of compute); 'mlp' recomputes only the MLPs' pre-activations (see
 * `ActivationRecomputable`); `false` turns both off.
 */
export type GradientCheckpointing = boolean | 'full' | 'mlp';

/**
 * Turns gradient checkpointing on or off in every layer stack of `model` that supports it (transformers'
 * `gradient_checkpointing_enable`), or with 'mlp' selective recomputation in every MLP that supports it; returns how
 * many stacks (or MLPs, for 'mlp') it set: 0 means the model has none.
 */
export function setGradientCheckpointing(model: Module, mode: GradientCheckpointing): number {
  if (mode !== true && mode !== false && mode !== 'full' && mode !== 'mlp') {
    throw new ConfigError(`Argument 'mode' passed to 'setGradientCheckpointing' is ${JSON.stringify(mode) ?? String(mode)}; expected true, false, 'full' or 'mlp'`);
  }
  const full = mode === true || mode === 'full', mlp = mode === 'mlp';
  let stacks = 0, mlps = 0;
  for (const [, m] of model.namedModules()) {
    if (isCheckpointable(m)) {
      m.gradientCheckpointing = full;
      stacks++;
    }
    if (isActivationRecomputable(m)) {
      m.recomputeActivation = mlp;
      mlps++;
    }
  }
  return mlp ? mlps : stacks;
}

/** One layer of a stack: `fn(x)` through `checkpoint` when `enabled`, else directly. */
export function maybeCheckpoint(enabled: boolean, layer: Module, fn: (x: Tensor) => Tensor, x: Tensor): Tensor {
  return enabled ? checkpoint(layer, fn, x) : fn(x);
}

/**
 * A stack of layers on x, each through `maybeCheckpoint`: fn(layer, h) is one layer's forward pass. The residual
 * stream between two layers, made here and read only by the next layer's ops (its norm, its residual sum, a
 * checkpoint's recomputation), goes back to the pool when the backward pass frees the graph (`releaseWithGraph`)
 * instead of at V8's next collection: callers keep no reference to it and return only the last layer's output.
 */
export function runLayers<L extends Module>(layers: Iterable<L>, checkpointing: boolean, fn: (layer: L, h: Tensor) => Tensor, x: Tensor): Tensor {
  let h = x;
  for (const layer of layers) {
    const next = maybeCheckpoint(checkpointing, layer, (t) => fn(layer, t), h);
    if (h !== x) releaseWithGraph(h);
    h = next;
  }
  return h;
}
