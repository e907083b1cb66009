/** Basic layers: Linear, Embedding, LayerNorm, RMSNorm, Dropout. Parameter names match HF checkpoints. */
import { Tensor } from '../tensor/tensor.js';
import { full } from '../tensor/creation.js';
import { linear, type LinearOptions } from '../tensor/ops/linalg.js';
import { embedding, layerNorm, rmsNorm, dropout, type NormOptions } from '../tensor/ops/nn.js';
import { activationReadsBf16, unaryForBf16Product } from '../tensor/ops/elementwise.js';
import type { UnaryOp } from '../backend/backend.js';
import { ConfigError } from '../errors.js';
import { Module } from './module.js';
import { kaimingUniform, uniform, normal, getRng } from './init.js';

function positiveInt(v: number, layer: string, arg: string): number {
  if (!Number.isInteger(v) || v <= 0) throw new ConfigError(`Argument '${arg}' passed to '${layer}' is ${v}; expected a positive integer`);
  return v;
}

/** y = x W^T + b with W (out, in), PyTorch's init. */
export class Linear extends Module {
  weight: Tensor;
  bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: { bias?: boolean } = {}) {
    super();
    positiveInt(inFeatures, 'Linear', 'inFeatures');
    positiveInt(outFeatures, 'Linear', 'outFeatures');
    this.weight = this.param('weight', kaimingUniform([outFeatures, inFeatures], inFeatures));
    this.bias = opts.bias === false ? null : this.param('bias', uniform([outFeatures], 1 / Math.sqrt(inFeatures)));
  }
  /** `opts.consume`: the caller reads x no more; `opts.bf16Output`: its readers take a bf16 output (see LinearOptions). */
  forward(x: Tensor, opts: LinearOptions = {}): Tensor {
    return linear(x, this.weight, this.bias, opts);
  }
}

/**
 * op(layer(x)) where a product alone reads the result and the activation alone reads layer(x): an MLP's first Linear
 * and its activation. Under bf16 autocast the activation is made in bf16 (unaryForBf16Product), and where it reads
 * bf16 the Linear writes its output in bf16 (LinearOptions.bf16Output); the activation consumes that output.
 */
export function linearThenActivation(layer: { forward(x: Tensor, opts?: LinearOptions): Tensor }, op: UnaryOp, x: Tensor): Tensor {
  return unaryForBf16Product(op, layer.forward(x, { bf16Output: activationReadsBf16(op) }), { consume: true });
}

export class Embedding extends Module {
  weight: Tensor;
  constructor(readonly numEmbeddings: number, readonly dim: number) {
    super();
    positiveInt(numEmbeddings, 'Embedding', 'numEmbeddings');
    positiveInt(dim, 'Embedding', 'dim');
    this.weight = this.param('weight', normal([numEmbeddings, dim], 1));
  }
  /** ids: i32 tensor of any shape -> (...ids.shape, dim). */
  forward(ids: Tensor): Tensor {
    return embedding(ids, this.weight);
  }
}

export class LayerNorm extends Module {
  weight: Tensor | null;
  bias: Tensor | null;
  constructor(readonly dim: number, readonly eps = 1e-5, opts: { affine?: boolean; bias?: boolean } = {}) {
    super();
    positiveInt(dim, 'LayerNorm', 'dim');
    const affine = opts.affine !== false;
    this.weight = affine ? this.param('weight', full([dim], 1)) : null;
    this.bias = affine && opts.bias !== false ? this.param('bias', full([dim], 0)) : null;
  }
  /** `opts.privateOutput`: see NormOptions (the caller passes the output to ops of the graph alone). */
  forward(x: Tensor, opts: NormOptions = {}): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps, opts);
  }
}

export class RMSNorm extends Module {
  weight: Tensor;
  constructor(readonly dim: number, readonly eps = 1e-6) {
    super();
    positiveInt(dim, 'RMSNorm', 'dim');
    this.weight = this.param('weight', full([dim], 1));
  }
  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.weight, this.eps);
  }
}

/** Inverted dropout, active in training mode; masks are seeded from the process generator (manualSeed). */
export class Dropout extends Module {
  /** p may be set to 0 after construction (task dpo turns the base model's dropout off, as TRL's disable_dropout). */
  constructor(public p = 0.1) {
    super();
    if (!(p >= 0 && p < 1)) throw new ConfigError(`Argument 'p' passed to 'Dropout' is ${p}; expected a probability in [0, 1)`);
  }
  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return x;
    return dropout(x, this.p, getRng().nextSeed());
  }
}
