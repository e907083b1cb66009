/**
 * Sequence classification on a sentence encoder: encoder -> pooled embedding (B, D) -> dropout -> Linear head.
 * `TextEncoder` is what the trainer needs of a backbone (a tokenizer and a pooled forward); `textEncoderOf`
 * adapts the models the registry loads.
 */
import { Tensor } from '../tensor/tensor.js';
import { Module } from '../nn/module.js';
import { Linear, Dropout } from '../nn/layers.js';
import { ConfigError } from '../errors.js';
import { USELite } from './use-lite/model.js';

export interface TextEncoder {
  /** The module whose parameters are the backbone. */
  readonly module: Module;
  readonly embedDim: number;
  readonly maxLength: number;
  readonly padId: number;
  /** Token ids of one text (not truncated). */
  encodeText(text: string): number[];
  /** Pooled embeddings (B, D) of ids (B, T) with mask (B, T), 1 = token. */
  embed(ids: Tensor, mask: Tensor): Tensor;
  /** A name for logs and adapter_config.json. */
  readonly name: string;
}

export function textEncoderOf(model: Module, name: string): TextEncoder {
  if (model instanceof USELite) {
    const tok = model.tokenizer;
    if (!tok) throw new ConfigError(`model '${name}' has no tokenizer`);
    return {
      module: model, embedDim: model.cfg.dim, maxLength: model.cfg.maxLength, padId: 0, name,
      encodeText: (t) => tok.encode(t),
      embed: (ids, mask) => model.forward(ids, mask),
    };
  }
  const m = model as Module & Partial<{ asTextEncoder(): TextEncoder }>;
  if (typeof m.asTextEncoder === 'function') return m.asTextEncoder();
  throw new ConfigError(`model '${name}' (${model.constructor.name}) cannot be used as a text encoder for classification`);
}

export class SequenceClassifier extends Module {
  readonly encoder: Module;
  readonly dropout: Dropout;
  readonly classifier: Linear;
  constructor(readonly backbone: TextEncoder, readonly numLabels: number, headDropout = 0.1) {
    super();
    if (!Number.isInteger(numLabels) || numLabels < 2) throw new ConfigError(`a classifier needs at least 2 labels; got ${numLabels}`);
    this.encoder = this.module('encoder', backbone.module);
    this.dropout = this.module('dropout', new Dropout(headDropout));
    this.classifier = this.module('classifier', new Linear(backbone.embedDim, numLabels));
  }
  /** Logits (B, numLabels). */
  forward(ids: Tensor, mask: Tensor): Tensor {
    return this.classifier.forward(this.dropout.forward(this.backbone.embed(ids, mask)));
  }
}
