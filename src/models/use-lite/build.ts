/**
 * Builds the pretrained USE-Lite from its files (model.json, the weight shards, vocab.json) wherever they come
 * from: a folder in Node (files.ts), files fetched by a page (src/browser). No file system here.
 */
import { CheckpointError } from '../../errors.js';
import { USE_LITE_CONFIG, type USELiteConfig } from './config.js';
import { USELite } from './model.js';
import { USETokenizer, type VocabEntry } from './tokenizer.js';
import { useLiteStateFrom, type WeightSource } from './weights.js';

export interface BuildUSELiteOptions {
  /** Dropout while training (default 0). */
  dropout?: number;
}

/** vocab.json's content checked: a list of [piece, score] pairs. */
export function parseVocab(text: string, where: string): VocabEntry[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`cannot read the vocabulary '${where}'`, { cause: e });
  }
  if (!Array.isArray(v) || !v.every((e) => Array.isArray(e) && typeof e[0] === 'string' && (typeof e[1] === 'number' || e[1] === null))) {
    throw new CheckpointError(`'${where}' is not a list of [piece, score] pairs`);
  }
  return v as VocabEntry[];
}

/** The pretrained USE-Lite (eval mode) with its tokenizer, from `src`. */
export function buildUSELite(src: WeightSource, opts: BuildUSELiteOptions = {}): USELite {
  const cfg: USELiteConfig = { ...USE_LITE_CONFIG, layers: USE_LITE_CONFIG.layers.map((l) => ({ ...l })), dropout: opts.dropout ?? 0 };
  let text: string;
  try {
    text = new TextDecoder().decode(src.bytes('vocab.json'));
  } catch (e) {
    throw new CheckpointError(`cannot read the vocabulary '${src.where('vocab.json')}'`, { cause: e });
  }
  const vocab = parseVocab(text, src.where('vocab.json'));
  if (vocab.length > cfg.vocabSize) throw new CheckpointError(`'${src.where('vocab.json')}' has ${vocab.length} pieces; the embedding table has ${cfg.vocabSize} rows`);
  const model = new USELite(cfg, new USETokenizer(vocab));
  const state = useLiteStateFrom(src, cfg);
  model.loadStateDict(state.params);
  model.setInvTimescales(state.invTimescales);
  return model.eval();
}
