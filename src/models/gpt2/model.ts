/**
 * GPT-2 (transformers' GPT2LMHeadModel / GPT2Model / GPT2ForSequenceClassification), with the checkpoint's
 * parameter names: transformer.wte, transformer.wpe, transformer.h.N.{ln_1, attn.c_attn, attn.c_proj, ln_2,
 * mlp.c_fc, mlp.c_proj}, transformer.ln_f; the LM head is tied to wte.
 *
 * GPT-2's Conv1D layers store their weight as (in, out). Here they are ordinary `Linear` layers (out, in): the
 * family's `toModel` / `toCheckpoint` transpose those weights at load and save. So every Linear in the project
 * has one layout, and LoRA injection, merging and 16-bit storage treat GPT-2 like every other architecture;
 * the price is one transposed copy per Conv1D weight when loading and saving.
 */
import { Tensor } from '../../tensor/tensor.js';
import { arange } from '../../tensor/creation.js';
import { fusedQKVAttention, fusedQKVReadsBf16, scaledDotProductAttention, type PackedMask } from '../../tensor/ops/nn.js';

type AttentionMask = Tensor | PackedMask;
import { Module, ModuleList } from '../../nn/module.js';
import { maybeCheckpoint, type ActivationRecomputable } from '../../nn/checkpoint.js';
import { Dropout, Embedding, LayerNorm, Linear, linearThenActivation } from '../../nn/layers.js';
import { ConfigError, ShapeError, fmtShape } from '../../errors.js';
import type { HFConfig } from '../hf/config.js';
import { plainHeadWeights, tiedHeadLinear, type HeadWeights } from '../../peft/quant.js';
import { HFModel, type Backbone, type CausalLM, type ForwardOptions, type HFFamily } from '../hf/family.js';
import { allowSelf, checkIds, documentMask, documentStarts, keyPaddingMask, lookup, makeEmbedding, tokenEmbeddings, makeLinear, positionIdsOf, type KVCache } from '../hf/layers.js';
import { maximum, releaseAfterRead, residualAdd } from '../../tensor/ops/elementwise.js';
import type { UnaryOp } from '../../backend/backend.js';
import { SequenceClassifier } from '../hf/heads.js';

export type Activation = 'gelu_new' | 'gelu' | 'relu' | 'silu';

export interface GPT2Config {
  vocabSize: number;
  nPositions: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nInner: number;
  activation: Activation;
  eps: number;
  embdPdrop: number;
  residPdrop: number;
  scaleAttnWeights: boolean;
  scaleAttnByInverseLayerIdx: boolean;
  numLabels: number;
}

const ACTIVATIONS: Record<string, Activation> = {
  gelu_new: 'gelu_new', gelu_pytorch_tanh: 'gelu_new', gelu_fast: 'gelu_new', gelu: 'gelu', relu: 'relu', silu: 'silu', swish: 'silu',
};

/** The kernel op of an activation (the MLPs apply it with nn/layers' linearThenActivation). */
export function activationOp(a: Activation): UnaryOp {
  switch (a) {
    case 'gelu_new': return 'gelu_tanh';
    case 'gelu': return 'gelu';
    case 'relu': return 'relu';
    case 'silu': return 'silu';
  }
}

export function parseGPT2Config(c: HFConfig): GPT2Config {
  const nEmbd = c.int('n_embd'), nHead = c.int('n_head');
  if (nEmbd % nHead !== 0) throw new ConfigError(`'${c.file}': n_embd ${nEmbd} is not divisible by n_head ${nHead}`);
  const act = c.choice('activation_function', Object.keys(ACTIVATIONS), 'gelu_new');
  return {
    vocabSize: c.int('vocab_size'), nPositions: c.int('n_positions', c.int('n_ctx', 1024)), nEmbd, nLayer: c.int('n_layer'), nHead,
    nInner: c.int('n_inner', 4 * nEmbd), activation: ACTIVATIONS[act], eps: c.num('layer_norm_epsilon', 1e-5),
    embdPdrop: c.prob('embd_pdrop', 0.1), residPdrop: c.prob('resid_pdrop', 0.1),
    scaleAttnWeights: c.bool('scale_attn_weights', true), scaleAttnByInverseLayerIdx: c.bool('scale_attn_by_inverse_layer_idx', false),
    numLabels: c.numLabels(),
  };
}

export class GPT2Attention extends Module {
  readonly c_attn: Linear;
  readonly c_proj: Linear;
  readonly resid_dropout: Dropout;
  constructor(readonly cfg: GPT2Config, readonly layerIdx: number) {
    super();
    this.c_attn = this.module('c_attn', makeLinear(cfg.nEmbd, 3 * cfg.nEmbd, true));
    this.c_proj = this.module('c_proj', makeLinear(cfg.nEmbd, cfg.nEmbd, true));
    this.resid_dropout = this.module('resid_dropout', new Dropout(cfg.residPdrop));
  }
  /** x (B, T, C) -> (B, T, C); mask (B, 1, 1, Tk) with 1 at padded keys. */
  forward(x: Tensor, mask: AttentionMask | null, cache: KVCache | null): Tensor {
    const [B, T, C] = x.shape;
    const nh = this.cfg.nHead, hs = C / nh;
    let scale = this.cfg.scaleAttnWeights ? 1 / Math.sqrt(hs) : 1;
    if (this.cfg.scaleAttnByInverseLayerIdx) scale /= this.layerIdx + 1;
    const fused = { causal: true, mask, scale, consume: true };
    // (B, T, 3C): q | k | v, heads inside each; in bf16 where the fused kernel reads it so
    const qkv = this.c_attn.forward(x, { bf16Output: !cache && fusedQKVReadsBf16(B, T, 3 * C, nh, fused) });
    let merged: Tensor;
    if (!cache) {
      merged = fusedQKVAttention(qkv, nh, fused); // (B, T, C), reads q, k, v in place; qkv read by it alone
    } else {
      const heads = qkv.reshape([B, T, 3, nh, hs]).permute([2, 0, 3, 1, 4]); // (3, B, nh, T, hs)
      const q = heads.slice(0, 0, 1).squeeze(0); // (B, nh, T, hs)
      const [k, v] = cache.update(this.layerIdx, heads.slice(0, 1, 2).squeeze(0), heads.slice(0, 2, 3).squeeze(0)); // (B, nh, past + T, hs)
      const o = scaledDotProductAttention(q, k, v, { causal: true, mask, scale }); // (B, nh, T, hs)
      merged = o.transpose(1, 2).reshape([B, T, C]); // (B, T, C)
    }
    return this.resid_dropout.forward(this.c_proj.forward(merged, { consume: true }));
  }
}

export class GPT2MLP extends Module implements ActivationRecomputable {
  recomputeActivation = false;
  readonly c_fc: Linear;
  readonly c_proj: Linear;
  readonly dropout: Dropout;
  constructor(readonly cfg: GPT2Config) {
    super();
    this.c_fc = this.module('c_fc', makeLinear(cfg.nEmbd, cfg.nInner, true));
    this.c_proj = this.module('c_proj', makeLinear(cfg.nInner, cfg.nEmbd, true));
    this.dropout = this.module('dropout', new Dropout(cfg.residPdrop));
  }
  forward(x: Tensor): Tensor {
    const op = activationOp(this.cfg.activation);
    const a = maybeCheckpoint(this.recomputeActivation, this.c_fc, (x) => linearThenActivation(this.c_fc, op, x), x);
    return this.dropout.forward(this.c_proj.forward(a, { consume: true })); // the activation is read by c_proj alone
  }
}

/** Pre-LN block: x + attn(ln_1(x)); x + mlp(ln_2(x)). */
export class GPT2Block extends Module {
  readonly ln_1: LayerNorm;
  readonly attn: GPT2Attention;
  readonly ln_2: LayerNorm;
  readonly mlp: GPT2MLP;
  constructor(cfg: GPT2Config, layerIdx: number) {
    super();
    this.ln_1 = this.module('ln_1', new LayerNorm(cfg.nEmbd, cfg.eps));
    this.attn = this.module('attn', new GPT2Attention(cfg, layerIdx));
    this.ln_2 = this.module('ln_2', new LayerNorm(cfg.nEmbd, cfg.eps));
    this.mlp = this.module('mlp', new GPT2MLP(cfg));
  }
  forward(x: Tensor, mask: AttentionMask | null, cache: KVCache | null): Tensor {
    // each sublayer's output is read by its residual sum alone: the sum may take its buffer
    // each norm's output is read by its sublayer alone (NormOptions.privateOutput)
    const h = residualAdd(x, this.attn.forward(this.ln_1.forward(x, { privateOutput: true }), mask, cache));
    const n = this.ln_2.forward(h, { privateOutput: true });
    const out = residualAdd(h, this.mlp.forward(n));
    releaseAfterRead(h, [n, out]); // read by ln_2 and the second sum alone
    return out;
  }
}

/** The body: token + learned position embeddings, blocks, final LayerNorm. ids (B, T) -> (B, T, C). */
export class GPT2Model extends HFModel implements Backbone {
  /** Each layer runs through `checkpoint` in training (its activations recomputed in backward); off by default. */
  gradientCheckpointing = false;
  readonly task = 'base' as const;
  readonly architectureName = 'GPT2Model';
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly drop: Dropout;
  readonly h: ModuleList<GPT2Block>;
  readonly ln_f: LayerNorm;
  constructor(readonly cfg: GPT2Config) {
    super();
    this.wte = this.module('wte', makeEmbedding(cfg.vocabSize, cfg.nEmbd));
    this.wpe = this.module('wpe', makeEmbedding(cfg.nPositions, cfg.nEmbd));
    this.drop = this.module('drop', new Dropout(cfg.embdPdrop));
    this.h = this.module('h', new ModuleList(Array.from({ length: cfg.nLayer }, (_, i) => new GPT2Block(cfg, i))));
    this.ln_f = this.module('ln_f', new LayerNorm(cfg.nEmbd, cfg.eps));
  }
  get hiddenSize(): number {
    return this.cfg.nEmbd;
  }
  forward(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    const [B, T] = checkIds(ids, 'GPT2Model.forward');
    const cache = opts.cache ?? null;
    const past = cache ? cache.length : 0;
    if (past + T > this.cfg.nPositions) {
      throw new ShapeError(`'GPT2Model.forward': ${past} cached + ${T} new positions (ids ${fmtShape(ids.shape)}) exceed n_positions ${this.cfg.nPositions}`);
    }
    const given = positionIdsOf(opts.positionIds, B, T, !!cache);
    const pos = given ? new Tensor(given, 'i32', [B, T]) : arange(past, past + T, 1, 'i32'); // (B, T) or (T)
    let x = this.drop.forward(tokenEmbeddings(this.wte, ids, this.neftuneAlpha, this.training).add(lookup(this.wpe, pos))); // (B, T, C)
    const keys = keyPaddingMask(opts.attentionMask, past + T); // (B, 1, 1, Tk) or null
    // packed rows: each query's document start, for the fused kernel; else a dense per-document mask
    const starts = documentStarts(opts.documentIds, T, !!cache);
    let mask: AttentionMask | null = starts ? { keyMask: keys, firstKey: starts } : keys;
    const docs = starts ? null : documentMask(opts.documentIds, T, !!cache); // (B, 1, T, T) or null
    if (docs) mask = keys ? allowSelf(maximum(keys, docs), B, T, T) : docs; // a padding query keeps a key
    const ckpt = this.gradientCheckpointing && !cache;
    // a plain loop, not runLayers: as TinyGPT's (the collection before the LM loss's logits chunk frees the stream)
    for (const block of this.h) x = maybeCheckpoint(ckpt, block, (h) => block.forward(h, mask, cache), x);
    return this.ln_f.forward(x);
  }
}

/** GPT2LMHeadModel: logits = transformer(ids) @ wte^T (lm_head tied to the token embedding). */
export class GPT2LMHeadModel extends HFModel implements CausalLM {
  readonly task = 'causal-lm' as const;
  readonly architectureName = 'GPT2LMHeadModel';
  readonly transformer: GPT2Model;
  constructor(readonly cfg: GPT2Config) {
    super();
    this.transformer = this.module('transformer', new GPT2Model(cfg));
  }
  get backbone(): GPT2Model { return this.transformer; }
  get vocabSize(): number { return this.cfg.vocabSize; }
  get numLayers(): number { return this.cfg.nLayer; }
  get maxPositions(): number { return this.cfg.nPositions; }
  /** ids (B, T) -> logits (B, T, vocab). */
  forward(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    return tiedHeadLinear(this.transformer.forward(ids, opts), this.transformer.wte);
  }
  hidden(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    return this.transformer.forward(ids, opts);
  }
  headWeights(): HeadWeights | null {
    return plainHeadWeights(this.transformer.wte);
  }
}

const CONV1D = /(^|\.)(c_attn|c_proj|c_fc)\.weight$/;
const transposed = (key: string, t: Tensor): Tensor => (CONV1D.test(key) && t.ndim === 2 ? t.transpose(0, 1).contiguous() : t);

export const gpt2Family: HFFamily<GPT2Config> = {
  name: 'gpt2',
  modelTypes: ['gpt2'],
  architectures: ['GPT2LMHeadModel', 'GPT2Model', 'GPT2ForSequenceClassification'],
  defaultTask: 'causal-lm',
  basePrefix: 'transformer',
  ignoredKeys: [/\.attn\.(bias|masked_bias)$/],
  parseConfig: parseGPT2Config,
  build(cfg, opts) {
    switch (opts.task) {
      case 'causal-lm': return new GPT2LMHeadModel(cfg);
      case 'base': return new GPT2Model(cfg);
      case 'sequence-classification':
        return new SequenceClassifier('GPT2ForSequenceClassification', 'transformer', new GPT2Model(cfg), opts.numLabels ?? cfg.numLabels, opts.pooling ?? 'last');
    }
  },
  toModel: transposed,
  toCheckpoint: transposed,
};
