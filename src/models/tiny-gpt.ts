/**
 * A small GPT (token + learned position embeddings, pre-LN causal blocks, final LayerNorm, untied head):
 * the shape of GPT-2 at any size. Used by the end-to-end demo and the benchmarks.
 */
import { Tensor } from '../tensor/tensor.js';
import { arange } from '../tensor/creation.js';
import { crossEntropy } from '../tensor/ops/nn.js';
import { linearCrossEntropy } from '../tensor/ops/linear-ce.js';
import { plainHeadWeights, type HeadWeights } from '../peft/quant.js';
import { noGrad } from '../tensor/autograd.js';
import { maybeCheckpoint } from '../nn/checkpoint.js';
import { Module, ModuleList } from '../nn/module.js';
import { Embedding, LayerNorm, Linear } from '../nn/layers.js';
import { Block } from '../nn/transformer.js';
import { ShapeError, fmtShape } from '../errors.js';

export interface TinyGPTConfig {
  vocabSize: number;
  contextLength: number;
  dim: number;
  heads: number;
  layers: number;
  mlpDim: number;
  dropout?: number;
}

export class TinyGPT extends Module {
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly blocks: ModuleList<Block>;
  readonly lnF: LayerNorm;
  readonly head: Linear;
  /** Recompute each block's activations in the backward pass instead of keeping them (nn/checkpoint.ts). */
  gradientCheckpointing = false;

  constructor(readonly cfg: TinyGPTConfig) {
    super();
    this.wte = this.module('wte', new Embedding(cfg.vocabSize, cfg.dim));
    this.wpe = this.module('wpe', new Embedding(cfg.contextLength, cfg.dim));
    this.blocks = this.module('blocks', new ModuleList(Array.from({ length: cfg.layers },
      () => new Block({ dim: cfg.dim, heads: cfg.heads, mlpDim: cfg.mlpDim, causal: true, dropout: cfg.dropout }))));
    this.lnF = this.module('ln_f', new LayerNorm(cfg.dim));
    this.head = this.module('head', new Linear(cfg.dim, cfg.vocabSize, { bias: false }));
  }

  /** ids (B, T) i32 -> logits (B, T, vocab). */
  forward(ids: Tensor): Tensor {
    return this.head.forward(this.hidden(ids));
  }

  /** ids (B, T) i32 -> final hidden states (B, T, dim), before the head. */
  hidden(ids: Tensor): Tensor {
    const T = ids.shape[1];
    if (ids.ndim !== 2 || T > this.cfg.contextLength) {
      throw new ShapeError(`Argument 'ids' passed to 'TinyGPT.forward' has shape ${fmtShape(ids.shape)}; expected [B, T] with T <= ${this.cfg.contextLength}`);
    }
    let x = this.wte.forward(ids).add(this.wpe.forward(arange(0, T, 1, 'i32'))); // (B, T, C)
    // A plain loop, not runLayers: handing the residual stream back with the graph holds it until the backward pass
    // ends, while the collection before the fused LM loss's logits chunk frees it at the step's peak (the gpt2-lora
    // workload's peak RSS 1,357-1,368 MB with runLayers against 1,322-1,326 without, bf16).
    for (const b of this.blocks) x = maybeCheckpoint(this.gradientCheckpointing, b, (h) => b.forward(h), x);
    return this.lnF.forward(x);
  }

  /** The head's weights as the fused loss reads them; null for an adapted head (LoRA on the head). */
  headWeights(): HeadWeights | null {
    return plainHeadWeights(this.head);
  }

  /** Mean next-token cross-entropy of ids (B, T) against targets (B, T). */
  loss(ids: Tensor, targets: Tensor): Tensor {
    const h = this.hidden(ids);
    // A plain or int8 head goes through the fused loss (no (tokens x vocabulary) logits); an adapted head (LoRA on
    // the head) computes its logits and consumes them.
    const w = this.headWeights();
    if (w) return linearCrossEntropy(h, w.weight, w.bias, targets, { scales: w.scales });
    const logits = this.head.forward(h);
    return crossEntropy(logits.reshape([-1, this.cfg.vocabSize]), targets.reshape([-1]), { consumeLogits: true }); // logits are ours alone
  }

  /** Greedy continuation of `ids` (1, T) by `n` tokens. */
  generate(ids: number[], n: number): number[] {
    const out = [...ids];
    noGrad(() => {
      for (let i = 0; i < n; i++) {
        const ctx = out.slice(-this.cfg.contextLength);
        const logits = this.forward(new Tensor(Int32Array.from(ctx), 'i32', [1, ctx.length]));
        const last = logits.slice(1, ctx.length - 1, ctx.length).reshape([this.cfg.vocabSize]);
        out.push(last.argmax(0).item());
      }
    });
    return out;
  }
}
