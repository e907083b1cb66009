/**
 * SFT datasets from files: JSONL, JSON, CSV (structured fields as JSON strings) and Parquet, each record read
 * in one of the shapes of formats.ts. A record that does not fit is reported with its file, line (or Parquet
 * row) and field: a DatasetError under onBadLine 'error' (the default for user files), skipped and counted
 * under 'skip'. Missing validation data is carved from the training records with a seeded shuffle.
 */
import { existsSync } from 'node:fs';
import { extname } from 'node:path';
import { DatasetError } from '../errors.js';
import { Rng } from '../backend/rng.js';
import { BadLineSink } from '../data/bad-lines.js';
import { readRecords, type RawRecord } from '../data/readers.js';
import { readParquetRecords } from '../data/parquet.js';
import { shuffleInPlace } from '../data/split.js';
import type { BadLine, BadLinePolicy } from '../data/types.js';
import { RecordError, toExample } from './formats.js';
import type { RecordSource, SftExample, SftFormat } from './types.js';

export interface SftDataSpec {
  /** Training file (.jsonl, .json, .csv, .parquet). */
  dataset: string;
  evalDataset?: string;
  testDataset?: string;
  /** Record shape; 'auto' (default) decides from each record's keys. */
  format?: SftFormat;
  /** The text field of plain-text records (default 'text'). */
  textField?: string;
  onBadLine?: BadLinePolicy;
  /** Seed of the validation carve-out. */
  seed?: number;
  /** Fraction of the training records held out for validation when evalDataset is absent (default 0.1). */
  validationFraction?: number;
  maxTrain?: number;
  maxEval?: number;
}

export interface SftSplits {
  name: string;
  train: SftExample[];
  validation: SftExample[];
  test: SftExample[];
  skipped: BadLine[];
}

const isParquet = (file: string) => extname(file).toLowerCase() === '.parquet';

async function records(file: string, sink: BadLineSink): Promise<RawRecord[]> {
  if (!existsSync(file)) throw new DatasetError(`dataset file '${file}' does not exist`);
  return isParquet(file) ? readParquetRecords(file) : readRecords(file, sink);
}

/** The examples of one file; bad records go to `sink` with their file, line or row, and field. */
export async function readSftFile(file: string, sink: BadLineSink, format: SftFormat = 'auto', textField = 'text'): Promise<SftExample[]> {
  return readFileWith(file, sink, (v) => toExample(v, format, textField));
}

/**
 * The records of one file read by `parse` (which throws RecordError for a record that does not fit), each with its
 * source; bad records go to `sink` with their file, line or Parquet row, and field.
 */
export async function readFileWith<T extends { source?: RecordSource }>(file: string, sink: BadLineSink, parse: (value: unknown) => T): Promise<T[]> {
  const out: T[] = [];
  const parquet = isParquet(file);
  for (const r of await records(file, sink)) {
    try {
      const ex = parse(r.value);
      ex.source = { file: r.file, line: r.line };
      out.push(ex);
    } catch (e) {
      if (!(e instanceof RecordError)) throw e;
      sink.report(r.file, r.line, `${parquet ? `(Parquet row ${r.line}) ` : ''}${e.message}`);
    }
  }
  return out;
}

/** Train / validation / test examples of a spec. */
export async function loadSftSplits(spec: SftDataSpec): Promise<SftSplits> {
  return loadSplitsWith(spec, (f, sink) => readSftFile(f, sink, spec.format ?? 'auto', spec.textField ?? 'text'));
}

/** Splits of any record kind (SFT examples, preference pairs): the files read with `read`, validation carved when absent. */
export async function loadSplitsWith<T>(spec: Omit<SftDataSpec, 'format' | 'textField'>, read: (file: string, sink: BadLineSink) => Promise<T[]>):
  Promise<{ name: string; train: T[]; validation: T[]; test: T[]; skipped: BadLine[] }> {
  const sink = new BadLineSink(spec.onBadLine ?? 'error');
  let train = await read(spec.dataset, sink);
  let validation = spec.evalDataset ? await read(spec.evalDataset, sink) : [];
  const test = spec.testDataset ? await read(spec.testDataset, sink) : [];
  if (train.length === 0) throw new DatasetError(`dataset '${spec.dataset}' has no usable records${sink.skipped.length ? ` (${sink.skipped.length} skipped, first: ${sink.skipped[0].file}:${sink.skipped[0].line}: ${sink.skipped[0].reason})` : ''}`);
  if (!spec.evalDataset) {
    const shuffled = shuffleInPlace([...train], new Rng(spec.seed ?? 42));
    const nVal = train.length > 1 ? Math.max(1, Math.round(train.length * (spec.validationFraction ?? 0.1))) : 0;
    validation = shuffled.slice(0, nVal);
    const held = new Set(validation);
    train = train.filter((e) => !held.has(e)); // file order kept
  }
  const cap = (a: T[], n?: number) => (n !== undefined ? a.slice(0, n) : a);
  return { name: spec.dataset, train: cap(train, spec.maxTrain), validation: cap(validation, spec.maxEval), test: cap(test, spec.maxEval), skipped: sink.skipped };
}
