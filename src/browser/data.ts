/**
 * Datasets in a page: a dropped CSV / JSONL / JSON-lines file's text, or custom_intent_v2's three files fetched from
 * the server, turned into train / validation / test exactly as loadDataset does in Node (the same parsing, field
 * checks, seeded stratified split and sorted label list), so a page and `autoglm finetune` see the same splits.
 */
import { BadLineSink } from '../data/bad-lines.js';
import { decodeText } from '../data/decode.js';
import { parseCsv, parseJsonl, type RawRecord } from '../data/parse.js';
import { toExamples } from '../data/examples.js';
import { finishSplits, DATA_DEFAULTS } from '../data/finish.js';
import type { RawSplits } from '../data/registry.js';
import type { DatasetSplits } from '../data/types.js';
import { DatasetError } from '../errors.js';

export interface FileDatasetOptions {
  textField?: string;
  labelField?: string;
  /** 'skip' (default in the page: bad lines are counted and shown) or 'error'. */
  onBadLine?: 'skip' | 'error';
  seed?: number;
  validationFraction?: number;
  testFraction?: number;
}

function recordsOf(name: string, bytes: Uint8Array, sink: BadLineSink): RawRecord[] {
  const { text, damagedLines } = decodeText(bytes);
  const lower = name.toLowerCase();
  if (lower.endsWith('.csv')) return parseCsv(text, damagedLines, name, sink);
  if (lower.endsWith('.jsonl') || lower.endsWith('.ndjson')) return parseJsonl(text, damagedLines, name, sink);
  throw new DatasetError(`cannot read '${name}': expected a .csv or .jsonl file of labelled utterances`);
}

/** A dropped file (its name picks the format) to splits: validation and test carved from it, seeded and stratified. */
export function splitsFromFile(name: string, bytes: Uint8Array, o: FileDatasetOptions = {}): DatasetSplits {
  const sink = new BadLineSink(o.onBadLine ?? 'skip');
  const fields = { text: o.textField ?? DATA_DEFAULTS.textField, label: o.labelField ?? DATA_DEFAULTS.labelField };
  const raw: RawSplits = { train: toExamples(recordsOf(name, bytes, sink), fields, sink), extraSets: [] };
  const base = name.replace(/^.*[\\/]/, '').replace(/\.[^.]*$/, '');
  return finishSplits(base, raw, { dataset: name, seed: o.seed, validationFraction: o.validationFraction, testFraction: o.testFraction }, sink);
}

/**
 * custom_intent_v2 from its three files (train, validation, test .jsonl), as the named dataset loads in Node;
 * maxTrain / maxEval take the same seeded subsets as `autoglm finetune --max-train / --max-eval`.
 */
export function customIntentV2(files: { train: Uint8Array; validation: Uint8Array; test: Uint8Array },
  o: { seed?: number; maxTrain?: number; maxEval?: number } = {}): DatasetSplits {
  const sink = new BadLineSink('error');
  const split = (s: 'train' | 'validation' | 'test') => toExamples(recordsOf(`custom_intent_v2/${s}.jsonl`, files[s], sink), { text: 'text', label: 'label' }, sink);
  const raw: RawSplits = { train: split('train'), validation: split('validation'), test: split('test'), extraSets: [] };
  return finishSplits('custom_intent_v2', raw, { dataset: 'custom_intent_v2', seed: o.seed ?? DATA_DEFAULTS.seed, maxTrain: o.maxTrain, maxEval: o.maxEval }, sink);
}
