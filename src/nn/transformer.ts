/**
 * Transformer building blocks: multi-head self-attention with a fused qkv projection, the GELU MLP, and the
 * pre-LayerNorm block (GPT-2 / the reference workloads' block). Names follow GPT-2's layout (qkv = c_attn).
 */
import { Tensor } from '../tensor/tensor.js';
import { fusedQKVAttention, fusedQKVReadsBf16 } from '../tensor/ops/nn.js';
import { releaseAfterRead, residualAdd } from '../tensor/ops/elementwise.js';
import { ConfigError } from '../errors.js';
import { Module } from './module.js';
import { maybeCheckpoint, type ActivationRecomputable } from './checkpoint.js';
import { Linear, LayerNorm, Dropout, linearThenActivation } from './layers.js';

export interface BlockConfig {
  dim: number;
  heads: number;
  mlpDim: number;
  causal: boolean;
  dropout?: number;
  activation?: 'gelu' | 'gelu_tanh' | 'relu';
  eps?: number;
}

/** For a product's input that the caller reads no more (ConsumeOptions). */
const CONSUME = { consume: true } as const;

export class SelfAttention extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly drop: Dropout;
  constructor(readonly cfg: BlockConfig) {
    super();
    if (cfg.dim % cfg.heads !== 0) throw new ConfigError(`'SelfAttention' dim ${cfg.dim} is not divisible by heads ${cfg.heads}`);
    this.qkv = this.module('qkv', new Linear(cfg.dim, 3 * cfg.dim));
    this.proj = this.module('proj', new Linear(cfg.dim, cfg.dim));
    this.drop = this.module('drop', new Dropout(cfg.dropout ?? 0));
  }
  /** x (B, T, C); padMask (B, T) (or (B, 1, 1, T)) with 1 at padding, or null. */
  forward(x: Tensor, padMask: Tensor | null = null): Tensor {
    // the projection is read by attention alone (in bf16 where the fused kernel reads it so)
    const opts = { causal: this.cfg.causal, mask: padMask, consume: true };
    const qkv = this.qkv.forward(x, { bf16Output: fusedQKVReadsBf16(x.shape[0], x.shape[1], 3 * this.cfg.dim, this.cfg.heads, opts) });
    const merged = fusedQKVAttention(qkv, this.cfg.heads, opts); // (B, T, C)
    return this.drop.forward(this.proj.forward(merged, CONSUME)); // the merged heads are read by the projection alone
  }
}

export class MLP extends Module implements ActivationRecomputable {
  /** Recompute fc1 and the activation in the backward pass (`setGradientCheckpointing(model, 'mlp')`). */
  recomputeActivation = false;
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly drop: Dropout;
  constructor(readonly cfg: BlockConfig) {
    super();
    this.fc1 = this.module('fc1', new Linear(cfg.dim, cfg.mlpDim));
    this.fc2 = this.module('fc2', new Linear(cfg.mlpDim, cfg.dim));
    this.drop = this.module('drop', new Dropout(cfg.dropout ?? 0));
  }
  forward(x: Tensor): Tensor {
    const op = this.cfg.activation === 'relu' ? 'relu' : this.cfg.activation === 'gelu_tanh' ? 'gelu_tanh' : 'gelu';
    // fc2 alone reads the activation, the activation alone fc1's output: both in bf16 under bf16 autocast
    const a = maybeCheckpoint(this.recomputeActivation, this.fc1, (x) => linearThenActivation(this.fc1, op, x), x);
    return this.drop.forward(this.fc2.forward(a, CONSUME)); // the activation is read by fc2 alone
  }
}

const PRIVATE = { privateOutput: true } as const;

/** x + attn(ln1(x)); x + mlp(ln2(x)). */
export class Block extends Module {
  readonly ln1: LayerNorm;
  readonly attn: SelfAttention;
  readonly ln2: LayerNorm;
  readonly mlp: MLP;
  constructor(readonly cfg: BlockConfig) {
    super();
    this.ln1 = this.module('ln1', new LayerNorm(cfg.dim, cfg.eps ?? 1e-5));
    this.attn = this.module('attn', new SelfAttention(cfg));
    this.ln2 = this.module('ln2', new LayerNorm(cfg.dim, cfg.eps ?? 1e-5));
    this.mlp = this.module('mlp', new MLP(cfg));
  }
  forward(x: Tensor, padMask: Tensor | null = null): Tensor {
    // each sublayer's output is read by its residual sum alone: the sum may take its buffer; each norm's output is
    // read by its sublayer alone
    const h = residualAdd(x, this.attn.forward(this.ln1.forward(x, PRIVATE), padMask));
    const n = this.ln2.forward(h, PRIVATE);
    const out = residualAdd(h, this.mlp.forward(n));
    releaseAfterRead(h, [n, out]); // the residual stream between the sublayers is read by ln2 and the second sum alone
    return out;
  }
}
