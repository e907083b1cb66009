/**
 * Llama (transformers' LlamaForCausalLM / LlamaModel / LlamaForSequenceClassification), which also loads
 * Qwen2 and Mistral configs: grouped-query attention (num_key_value_heads), RMSNorm, rotary embeddings with
 * rope_theta (and linear / llama3 rope_scaling), SwiGLU MLP, optional q/k/v(/o) biases (Llama's
 * attention_bias; Qwen2 always has q/k/v biases), tied embeddings (tie_word_embeddings), Mistral's sliding
 * window. Checkpoint names: model.embed_tokens, model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj,
 * post_attention_layernorm, mlp.{gate,up,down}_proj}, model.norm, lm_head.
 *
 * The decoder stack is shared with GLM (../glm/model.ts), which swaps in its own MLP and rotary layout
 * through `DecoderParts`.
 */
import { Tensor } from '../../tensor/tensor.js';
import { rope, scaledDotProductAttention, type PackedMask } from '../../tensor/ops/nn.js';
import { maximum, releaseAfterRead, residualAdd } from '../../tensor/ops/elementwise.js';
import { Module, ModuleList } from '../../nn/module.js';
import { maybeCheckpoint, type ActivationRecomputable } from '../../nn/checkpoint.js';
import { Embedding, Linear, RMSNorm } from '../../nn/layers.js';
import { ConfigError } from '../../errors.js';
import type { HFConfig } from '../hf/config.js';
import { plainHeadWeights, tiedHeadLinear, type HeadWeights } from '../../peft/quant.js';
import { HFModel, type Backbone, type CausalLM, type ForwardOptions, type HFFamily } from '../hf/family.js';
import {
  Rotary, allowSelf, checkIds, documentMask, documentStarts, keyPaddingMask, makeEmbedding, makeLinear, parseRopeScaling, positionIdsOf, repeatKV, slidingWindowMask, tokenEmbeddings,
  type KVCache, type RopeScaling,
} from '../hf/layers.js';
import { SequenceClassifier } from '../hf/heads.js';

export interface DecoderConfig {
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKVHeads: number;
  headDim: number;
  /** Features of each head that rotate (headDim * partial_rotary_factor). */
  rotaryDim: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  eps: number;
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  tieWordEmbeddings: boolean;
  slidingWindow: number | null;
  numLabels: number;
}

/** The config keys every decoder of this shape shares (Llama, Qwen2, Mistral, GLM). */
export function parseDecoderConfig(c: HFConfig, defaults: { attentionBias: boolean; partialRotary: number }): DecoderConfig {
  const hiddenSize = c.int('hidden_size'), numHeads = c.int('num_attention_heads');
  const numKVHeads = c.int('num_key_value_heads', numHeads);
  if (numHeads % numKVHeads !== 0) throw new ConfigError(`'${c.file}': num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKVHeads}`);
  if (!c.has('head_dim') && hiddenSize % numHeads !== 0) throw new ConfigError(`'${c.file}': hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`);
  const headDim = c.int('head_dim', hiddenSize / numHeads);
  const rotaryDim = Math.floor(headDim * c.num('partial_rotary_factor', defaults.partialRotary));
  if (rotaryDim < 2 || rotaryDim % 2 !== 0) throw new ConfigError(`'${c.file}': head_dim ${headDim} x partial_rotary_factor gives ${rotaryDim} rotary features; expected an even number >= 2`);
  c.choice('hidden_act', ['silu', 'swish'], 'silu');
  const bias = c.bool('attention_bias', defaults.attentionBias);
  return {
    modelType: c.str('model_type', 'llama'), vocabSize: c.int('vocab_size'), hiddenSize, intermediateSize: c.int('intermediate_size'),
    numLayers: c.int('num_hidden_layers'), numHeads, numKVHeads, headDim, rotaryDim, ropeTheta: c.num('rope_theta', 10000),
    ropeScaling: parseRopeScaling(c.object('rope_scaling'), c.file), eps: c.num('rms_norm_eps', 1e-6),
    qkvBias: bias, oBias: bias, mlpBias: c.bool('mlp_bias', false), tieWordEmbeddings: c.bool('tie_word_embeddings', false),
    slidingWindow: null, numLabels: c.numLabels(),
  };
}

export function parseLlamaConfig(c: HFConfig): DecoderConfig {
  const cfg = parseDecoderConfig(c, { attentionBias: false, partialRotary: 1 });
  if (cfg.modelType === 'qwen2') {
    // Qwen2 has q/k/v biases and a bias-free o_proj; its sliding window is off unless use_sliding_window.
    cfg.qkvBias = true;
    cfg.oBias = false;
    if (c.bool('use_sliding_window', false)) cfg.slidingWindow = c.int('sliding_window');
  }
  if (cfg.modelType === 'mistral' && c.has('sliding_window')) cfg.slidingWindow = c.int('sliding_window');
  return cfg;
}

/** The per-family parts of the decoder stack. */
export interface DecoderParts {
  mlp(cfg: DecoderConfig): Module & { forward(x: Tensor): Tensor };
  /** q, k (B, H, T, hs) with rotary embeddings applied (or in any layout that preserves q k^T). */
  rotate(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor): [Tensor, Tensor];
}

export class LlamaMLP extends Module implements ActivationRecomputable {
  recomputeActivation = false;
  readonly gate_proj: Linear;
  readonly up_proj: Linear;
  readonly down_proj: Linear;
  constructor(cfg: DecoderConfig) {
    super();
    this.gate_proj = this.module('gate_proj', makeLinear(cfg.hiddenSize, cfg.intermediateSize, cfg.mlpBias));
    this.up_proj = this.module('up_proj', makeLinear(cfg.hiddenSize, cfg.intermediateSize, cfg.mlpBias));
    this.down_proj = this.module('down_proj', makeLinear(cfg.intermediateSize, cfg.hiddenSize, cfg.mlpBias));
  }
  /** SwiGLU: down(silu(gate(x)) * up(x)). */
  forward(x: Tensor): Tensor {
    const act = (x: Tensor) => this.gate_proj.forward(x).silu().mul(this.up_proj.forward(x));
    // down_proj's parameters are edges of the segment too, with no gradient from it (checkpoint returns null)
    return this.down_proj.forward(maybeCheckpoint(this.recomputeActivation, this, act, x));
  }
}

export const LLAMA_PARTS: DecoderParts = {
  mlp: (cfg) => new LlamaMLP(cfg),
  rotate: (q, k, cos, sin) => [rope(q, cos, sin), rope(k, cos, sin)], // rotate-half layout, as transformers' Llama
};

export class LlamaAttention extends Module {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly o_proj: Linear;
  constructor(readonly cfg: DecoderConfig, readonly layerIdx: number, private readonly parts: DecoderParts) {
    super();
    const { hiddenSize: E, numHeads: H, numKVHeads: KV, headDim: hd } = cfg;
    this.q_proj = this.module('q_proj', makeLinear(E, H * hd, cfg.qkvBias));
    this.k_proj = this.module('k_proj', makeLinear(E, KV * hd, cfg.qkvBias));
    this.v_proj = this.module('v_proj', makeLinear(E, KV * hd, cfg.qkvBias));
    this.o_proj = this.module('o_proj', makeLinear(H * hd, E, cfg.oBias));
  }
  /** x (B, T, E) -> (B, T, E); mask broadcastable to (B, H, T, Tk) with 1 where attention is not allowed. */
  forward(x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | PackedMask | null, causal: boolean, cache: KVCache | null): Tensor {
    const [B, T] = x.shape;
    const { numHeads: H, numKVHeads: KV, headDim: hd } = this.cfg;
    const q0 = this.q_proj.forward(x).reshape([B, T, H, hd]).transpose(1, 2); // (B, H, T, hd)
    const k0 = this.k_proj.forward(x).reshape([B, T, KV, hd]).transpose(1, 2); // (B, KV, T, hd)
    let v = this.v_proj.forward(x).reshape([B, T, KV, hd]).transpose(1, 2); // (B, KV, T, hd)
    // tables (T, r) are shared by the rows; (B * T, r) tables hold each row's own positions (packed sequences)
    let [q, k] = cos.shape[0] === T ? this.parts.rotate(q0, k0, cos, sin) : rotateRows(this.parts, q0, k0, cos, sin);
    if (cache) [k, v] = cache.update(this.layerIdx, k, v); // (B, KV, past + T, hd)
    const o = scaledDotProductAttention(q, repeatKV(k, H / KV), repeatKV(v, H / KV), { causal, mask, scale: 1 / Math.sqrt(hd) }); // (B, H, T, hd)
    return this.o_proj.forward(o.transpose(1, 2).reshape([B, T, H * hd]), { consume: true }); // (B, T, E); the merged heads are read by it alone
  }
}

/**
 * Rotary embeddings with positions per row: q (B, H, T, hd), k (B, KV, T, hd) are folded to (H, 1, B * T, hd) so
 * that the (B * T, r) tables line up with their rows, rotated, and unfolded.
 */
function rotateRows(parts: DecoderParts, q: Tensor, k: Tensor, cos: Tensor, sin: Tensor): [Tensor, Tensor] {
  const [B, , T, hd] = q.shape;
  const fold = (x: Tensor) => x.permute([1, 0, 2, 3]).reshape([x.shape[1], 1, B * T, hd]); // (H, 1, B * T, hd)
  const unfold = (x: Tensor, H: number) => x.reshape([H, B, T, x.shape[3]]).permute([1, 0, 2, 3]); // (B, H, T, hd)
  const [qr, kr] = parts.rotate(fold(q), fold(k), cos, sin);
  return [unfold(qr, q.shape[1]), unfold(kr, k.shape[1])];
}

/** Pre-norm block: x + attn(input_layernorm(x)); x + mlp(post_attention_layernorm(x)). */
export class LlamaDecoderLayer extends Module {
  readonly input_layernorm: RMSNorm;
  readonly self_attn: LlamaAttention;
  readonly post_attention_layernorm: RMSNorm;
  readonly mlp: Module & { forward(x: Tensor): Tensor };
  constructor(cfg: DecoderConfig, layerIdx: number, parts: DecoderParts) {
    super();
    this.self_attn = this.module('self_attn', new LlamaAttention(cfg, layerIdx, parts));
    this.mlp = this.module('mlp', parts.mlp(cfg));
    this.input_layernorm = this.module('input_layernorm', new RMSNorm(cfg.hiddenSize, cfg.eps));
    this.post_attention_layernorm = this.module('post_attention_layernorm', new RMSNorm(cfg.hiddenSize, cfg.eps));
  }
  forward(x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | PackedMask | null, causal: boolean, cache: KVCache | null): Tensor {
    // each sublayer's output is read by its residual sum alone: the sum may take its buffer
    const h = residualAdd(x, this.self_attn.forward(this.input_layernorm.forward(x), cos, sin, mask, causal, cache));
    const n = this.post_attention_layernorm.forward(h);
    const out = residualAdd(h, this.mlp.forward(n));
    releaseAfterRead(h, [n, out]); // read by the second norm and the second sum alone
    return out;
  }
}

/** The body (LlamaModel / Qwen2Model / MistralModel / GlmModel): ids (B, T) -> hidden states (B, T, E). */
export class LlamaModel extends HFModel implements Backbone {
  /** Each layer runs through `checkpoint` in training (its activations recomputed in backward); off by default. */
  gradientCheckpointing = false;
  readonly task = 'base' as const;
  readonly embed_tokens: Embedding;
  readonly layers: ModuleList<LlamaDecoderLayer>;
  readonly norm: RMSNorm;
  private readonly rotary: Rotary;
  constructor(readonly cfg: DecoderConfig, parts: DecoderParts = LLAMA_PARTS, readonly architectureName = 'LlamaModel') {
    super();
    this.embed_tokens = this.module('embed_tokens', makeEmbedding(cfg.vocabSize, cfg.hiddenSize));
    this.layers = this.module('layers', new ModuleList(Array.from({ length: cfg.numLayers }, (_, i) => new LlamaDecoderLayer(cfg, i, parts))));
    this.norm = this.module('norm', new RMSNorm(cfg.hiddenSize, cfg.eps));
    this.rotary = new Rotary(cfg.rotaryDim, cfg.ropeTheta, cfg.ropeScaling);
  }
  get hiddenSize(): number {
    return this.cfg.hiddenSize;
  }
  forward(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    const [B, T] = checkIds(ids, `${this.architectureName}.forward`);
    const cache = opts.cache ?? null;
    const past = cache ? cache.length : 0;
    const positions = positionIdsOf(opts.positionIds, B, T, !!cache);
    const { cos, sin } = positions ? this.rotary.tablesAt(positions) : this.rotary.tables(past, T); // (T or B * T, rotaryDim / 2)
    const keys = keyPaddingMask(opts.attentionMask, past + T); // (B, 1, 1, Tk) or null
    const w = this.cfg.slidingWindow, windowed = w !== null && past + T > w;
    // packed rows: each query's document start, for the fused kernel (no sliding window); else a dense mask
    const starts = windowed ? null : documentStarts(opts.documentIds, T, !!cache);
    let mask: Tensor | PackedMask | null = starts ? { keyMask: keys, firstKey: starts } : keys;
    let causal = true;
    if (!starts) {
      let dense = keys;
      const docs = documentMask(opts.documentIds, T, !!cache); // (B, 1, T, T) or null
      if (docs) dense = dense ? maximum(dense, docs) : docs;
      if (windowed) {
        const win = slidingWindowMask(T, past + T, w as number); // (T, Tk), causal included
        dense = dense ? maximum(dense, win) : win;
        causal = false;
      }
      // a (B, 1, T, Tk) mask from several sources may leave a padding query with no key: let it see itself
      if (dense && opts.attentionMask && (docs || !causal)) dense = allowSelf(dense, B, T, past + T);
      mask = dense;
    }
    let x = tokenEmbeddings(this.embed_tokens, ids, this.neftuneAlpha, this.training); // (B, T, E)
    const ckpt = this.gradientCheckpointing && !cache;
    // a plain loop, not runLayers: as GPT2Model's (the collection before the LM loss's logits chunk frees the stream)
    for (const layer of this.layers) x = maybeCheckpoint(ckpt, layer, (h) => layer.forward(h, cos, sin, mask, causal, cache), x);
    return this.norm.forward(x);
  }
}

/** XForCausalLM: model + lm_head (or the embedding matrix when tie_word_embeddings). */
export class LlamaForCausalLM extends HFModel implements CausalLM {
  readonly task = 'causal-lm' as const;
  readonly model: LlamaModel;
  readonly lm_head: Linear | null;
  constructor(readonly cfg: DecoderConfig, parts: DecoderParts = LLAMA_PARTS, readonly architectureName = 'LlamaForCausalLM') {
    super();
    this.model = this.module('model', new LlamaModel(cfg, parts, architectureName.replace(/ForCausalLM$/, 'Model')));
    this.lm_head = cfg.tieWordEmbeddings ? null : this.module('lm_head', makeLinear(cfg.hiddenSize, cfg.vocabSize, false));
  }
  get backbone(): LlamaModel { return this.model; }
  get vocabSize(): number { return this.cfg.vocabSize; }
  get numLayers(): number { return this.cfg.numLayers; }
  get maxPositions(): null { return null; }
  /** ids (B, T) -> logits (B, T, vocab). */
  forward(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    const h = this.model.forward(ids, opts);
    return this.lm_head ? this.lm_head.forward(h) : tiedHeadLinear(h, this.model.embed_tokens);
  }
  hidden(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    return this.model.forward(ids, opts);
  }
  headWeights(): HeadWeights | null {
    return plainHeadWeights(this.lm_head ?? this.model.embed_tokens);
  }
}

const CLASS_PREFIX: Record<string, string> = { llama: 'Llama', qwen2: 'Qwen2', mistral: 'Mistral' };

/** Builds the model of a decoder family for a task; `prefix` names the classes (Llama, Qwen2, Glm...). */
export function buildDecoder(cfg: DecoderConfig, parts: DecoderParts, prefix: string, opts: { task: string; numLabels?: number; pooling?: 'cls' | 'mean' | 'last' }): HFModel {
  switch (opts.task) {
    case 'causal-lm': return new LlamaForCausalLM(cfg, parts, `${prefix}ForCausalLM`);
    case 'base': return new LlamaModel(cfg, parts, `${prefix}Model`);
    default:
      return new SequenceClassifier(`${prefix}ForSequenceClassification`, 'model', new LlamaModel(cfg, parts, `${prefix}Model`),
        opts.numLabels ?? cfg.numLabels, opts.pooling ?? 'last');
  }
}

export const llamaFamily: HFFamily<DecoderConfig> = {
  name: 'llama',
  modelTypes: ['llama', 'qwen2', 'mistral'],
  architectures: ['LlamaForCausalLM', 'LlamaModel', 'LlamaForSequenceClassification', 'Qwen2ForCausalLM', 'MistralForCausalLM'],
  defaultTask: 'causal-lm',
  basePrefix: 'model',
  ignoredKeys: [/\.rotary_emb\.inv_freq$/],
  parseConfig: parseLlamaConfig,
  build: (cfg, opts) => buildDecoder(cfg, LLAMA_PARTS, CLASS_PREFIX[cfg.modelType] ?? 'Llama', opts),
};
