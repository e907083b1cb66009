/**
 * BERT (transformers' BertModel / BertForSequenceClassification), post-LayerNorm encoder, with the checkpoint's
 * names: [bert.]embeddings.{word,position,token_type}_embeddings + LayerNorm,
 * encoder.layer.N.{attention.self.{query,key,value}, attention.output.{dense,LayerNorm}, intermediate.dense,
 * output.{dense,LayerNorm}}, pooler.dense, classifier.
 */
import { Tensor } from '../../tensor/tensor.js';
import { arange, full } from '../../tensor/creation.js';
import { scaledDotProductAttention } from '../../tensor/ops/nn.js';
import { Module, ModuleList } from '../../nn/module.js';
import { maybeCheckpoint, runLayers, type ActivationRecomputable } from '../../nn/checkpoint.js';
import { releaseWithGraph } from '../../tensor/autograd.js';
import { Dropout, Embedding, LayerNorm, Linear, linearThenActivation } from '../../nn/layers.js';
import { ConfigError, ShapeError, fmtShape } from '../../errors.js';
import type { HFConfig } from '../hf/config.js';
import { HFModel, type Backbone, type ForwardOptions, type HFFamily, type Pooling } from '../hf/family.js';
import { checkIds, keyPaddingMask, lookup, makeEmbedding, makeLinear, tokenEmbeddings } from '../hf/layers.js';
import { pool } from '../hf/heads.js';
import { activationOp, type Activation } from '../gpt2/model.js';

export interface BertConfig {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  activation: Activation;
  maxPositions: number;
  typeVocabSize: number;
  eps: number;
  hiddenDropout: number;
  classifierDropout: number;
  numLabels: number;
}

const ACTS: Record<string, Activation> = { gelu: 'gelu', gelu_new: 'gelu_new', relu: 'relu', silu: 'silu' };

export function parseBertConfig(c: HFConfig): BertConfig {
  const hiddenSize = c.int('hidden_size'), numHeads = c.int('num_attention_heads');
  if (hiddenSize % numHeads !== 0) throw new ConfigError(`'${c.file}': hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`);
  c.choice('position_embedding_type', ['absolute'], 'absolute');
  const hiddenDropout = c.prob('hidden_dropout_prob', 0.1);
  return {
    vocabSize: c.int('vocab_size'), hiddenSize, numLayers: c.int('num_hidden_layers'), numHeads, intermediateSize: c.int('intermediate_size'),
    activation: ACTS[c.choice('hidden_act', Object.keys(ACTS), 'gelu')], maxPositions: c.int('max_position_embeddings', 512),
    typeVocabSize: c.int('type_vocab_size', 2), eps: c.num('layer_norm_eps', 1e-12), hiddenDropout,
    classifierDropout: c.prob('classifier_dropout', hiddenDropout), numLabels: c.numLabels(),
  };
}

export class BertEmbeddings extends Module {
  readonly word_embeddings: Embedding;
  readonly position_embeddings: Embedding;
  readonly token_type_embeddings: Embedding;
  readonly LayerNorm: LayerNorm;
  readonly dropout: Dropout;
  constructor(readonly cfg: BertConfig) {
    super();
    this.word_embeddings = this.module('word_embeddings', makeEmbedding(cfg.vocabSize, cfg.hiddenSize));
    this.position_embeddings = this.module('position_embeddings', makeEmbedding(cfg.maxPositions, cfg.hiddenSize));
    this.token_type_embeddings = this.module('token_type_embeddings', makeEmbedding(cfg.typeVocabSize, cfg.hiddenSize));
    this.LayerNorm = this.module('LayerNorm', new LayerNorm(cfg.hiddenSize, cfg.eps));
    this.dropout = this.module('dropout', new Dropout(cfg.hiddenDropout));
  }
  /** ids, tokenTypes (B, T) -> (B, T, E); `neftuneAlpha`: noise on the word embeddings in training mode (tokenEmbeddings). */
  forward(ids: Tensor, tokenTypes: Tensor, neftuneAlpha = 0): Tensor {
    const T = ids.shape[1];
    const x = tokenEmbeddings(this.word_embeddings, ids, neftuneAlpha, this.training).add(lookup(this.token_type_embeddings, tokenTypes))
      .add(lookup(this.position_embeddings, arange(0, T, 1, 'i32')));
    return this.dropout.forward(this.LayerNorm.forward(x));
  }
}

export class BertSelfAttention extends Module {
  readonly query: Linear;
  readonly key: Linear;
  readonly value: Linear;
  constructor(readonly cfg: BertConfig) {
    super();
    const E = cfg.hiddenSize;
    this.query = this.module('query', makeLinear(E, E, true));
    this.key = this.module('key', makeLinear(E, E, true));
    this.value = this.module('value', makeLinear(E, E, true));
  }
  forward(x: Tensor, mask: Tensor | null): Tensor {
    const [B, T, E] = x.shape;
    const nh = this.cfg.numHeads, hs = E / nh;
    const heads = (l: Linear) => l.forward(x).reshape([B, T, nh, hs]).transpose(1, 2); // (B, nh, T, hs)
    const o = scaledDotProductAttention(heads(this.query), heads(this.key), heads(this.value), { mask }); // (B, nh, T, hs)
    return o.transpose(1, 2).reshape([B, T, E]); // (B, T, E)
  }
}

/** BertSelfOutput / BertOutput: LayerNorm(dropout(dense(h)) + residual). */
export class BertAddNorm extends Module {
  readonly dense: Linear;
  readonly LayerNorm: LayerNorm;
  readonly dropout: Dropout;
  constructor(cfg: BertConfig, inFeatures: number) {
    super();
    this.dense = this.module('dense', makeLinear(inFeatures, cfg.hiddenSize, true));
    this.LayerNorm = this.module('LayerNorm', new LayerNorm(cfg.hiddenSize, cfg.eps));
    this.dropout = this.module('dropout', new Dropout(cfg.hiddenDropout));
  }
  forward(h: Tensor, residual: Tensor): Tensor {
    return this.LayerNorm.forward(this.dropout.forward(this.dense.forward(h)).add(residual));
  }
}

export class BertAttention extends Module {
  readonly self: BertSelfAttention;
  readonly output: BertAddNorm;
  constructor(cfg: BertConfig) {
    super();
    this.self = this.module('self', new BertSelfAttention(cfg));
    this.output = this.module('output', new BertAddNorm(cfg, cfg.hiddenSize));
  }
  forward(x: Tensor, mask: Tensor | null): Tensor {
    return this.output.forward(this.self.forward(x, mask), x);
  }
}

export class BertIntermediate extends Module implements ActivationRecomputable {
  recomputeActivation = false;
  readonly dense: Linear;
  constructor(readonly cfg: BertConfig) {
    super();
    this.dense = this.module('dense', makeLinear(cfg.hiddenSize, cfg.intermediateSize, true));
  }
  forward(x: Tensor): Tensor {
    // the activation is read by the output block's dense product alone (BertLayer)
    const op = activationOp(this.cfg.activation);
    return maybeCheckpoint(this.recomputeActivation, this, (x) => linearThenActivation(this.dense, op, x), x);
  }
}

export class BertLayer extends Module {
  readonly attention: BertAttention;
  readonly intermediate: BertIntermediate;
  readonly output: BertAddNorm;
  constructor(cfg: BertConfig) {
    super();
    this.attention = this.module('attention', new BertAttention(cfg));
    this.intermediate = this.module('intermediate', new BertIntermediate(cfg));
    this.output = this.module('output', new BertAddNorm(cfg, cfg.intermediateSize));
  }
  forward(x: Tensor, mask: Tensor | null): Tensor {
    const a = this.attention.forward(x, mask);
    return this.output.forward(this.intermediate.forward(a), a);
  }
}

export class BertEncoder extends Module {
  readonly layer: ModuleList<BertLayer>;
  constructor(cfg: BertConfig) {
    super();
    this.layer = this.module('layer', new ModuleList(Array.from({ length: cfg.numLayers }, () => new BertLayer(cfg))));
  }
}

/** tanh(dense(h[:, 0])). */
export class BertPooler extends Module {
  readonly dense: Linear;
  constructor(cfg: BertConfig) {
    super();
    this.dense = this.module('dense', makeLinear(cfg.hiddenSize, cfg.hiddenSize, true));
  }
  forward(h: Tensor): Tensor {
    return this.dense.forward(pool(h, null, 'cls')).tanh();
  }
}

/** BertModel: ids (B, T) -> last hidden states (B, T, E); `pooled` gives the pooler output (B, E). */
export class BertModel extends HFModel implements Backbone {
  /** Each layer runs through `checkpoint` in training (its activations recomputed in backward); off by default. */
  gradientCheckpointing = false;
  readonly task = 'base' as const;
  readonly architectureName = 'BertModel';
  readonly embeddings: BertEmbeddings;
  readonly encoder: BertEncoder;
  readonly pooler: BertPooler;
  constructor(readonly cfg: BertConfig) {
    super();
    this.embeddings = this.module('embeddings', new BertEmbeddings(cfg));
    this.encoder = this.module('encoder', new BertEncoder(cfg));
    this.pooler = this.module('pooler', new BertPooler(cfg));
  }
  get hiddenSize(): number {
    return this.cfg.hiddenSize;
  }
  forward(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    const [B, T] = checkIds(ids, 'BertModel.forward', this.cfg.maxPositions);
    const tt = opts.tokenTypeIds ?? full([B, T], 0, 'i32');
    if (tt.shape[0] !== B || tt.shape[1] !== T) throw new ShapeError(`'tokenTypeIds' has shape ${fmtShape(tt.shape)}; expected [${B}, ${T}] like ids`);
    const x = this.embeddings.forward(ids, tt, this.neftuneAlpha); // (B, T, E)
    const mask = keyPaddingMask(opts.attentionMask, T); // (B, 1, 1, T)
    releaseWithGraph(x); // read by the first layer alone
    return runLayers(this.encoder.layer, this.gradientCheckpointing, (layer, h) => layer.forward(h, mask), x);
  }
}

/** BertForSequenceClassification: classifier(dropout(pooled)); 'cls' pooling goes through the pooler as in transformers. */
export class BertForSequenceClassification extends HFModel {
  readonly task = 'sequence-classification' as const;
  readonly architectureName = 'BertForSequenceClassification';
  readonly bert: BertModel;
  readonly dropout: Dropout;
  readonly classifier: Linear;
  constructor(readonly cfg: BertConfig, readonly numLabels: number, readonly pooling: Pooling = 'cls') {
    super();
    this.bert = this.module('bert', new BertModel(cfg));
    this.dropout = this.module('dropout', new Dropout(cfg.classifierDropout));
    this.classifier = this.module('classifier', new Linear(cfg.hiddenSize, numLabels));
  }
  get backbone(): BertModel {
    return this.bert;
  }
  /** ids (B, T) -> logits (B, numLabels). */
  forward(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    const h = this.bert.forward(ids, opts);
    const pooled = this.pooling === 'cls' ? this.bert.pooler.forward(h) : pool(h, opts.attentionMask, this.pooling);
    return this.classifier.forward(this.dropout.forward(pooled));
  }
}

export const bertFamily: HFFamily<BertConfig> = {
  name: 'bert',
  modelTypes: ['bert'],
  architectures: ['BertModel', 'BertForSequenceClassification', 'BertForMaskedLM', 'BertForPreTraining'],
  defaultTask: 'base',
  basePrefix: 'bert',
  // Buffers, and the pre-training heads of BertForPreTraining / BertForMaskedLM checkpoints.
  ignoredKeys: [/(^|\.)embeddings\.position_ids$/, /^cls\./],
  parseConfig: parseBertConfig,
  build(cfg, opts) {
    if (opts.task === 'causal-lm') throw new ConfigError(`BERT is an encoder: task 'causal-lm' is not available; expected 'base' or 'sequence-classification'`);
    return opts.task === 'base' ? new BertModel(cfg) : new BertForSequenceClassification(cfg, opts.numLabels ?? cfg.numLabels, opts.pooling ?? 'cls');
  },
};
