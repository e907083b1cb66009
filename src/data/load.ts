/**
 * loadDataset: a named dataset or user files to train / validation / test with label lists. Missing splits are
 * carved from train (seeded, stratified); eval and test examples whose labels are not in train are bad lines.
 */
import { existsSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { ConfigError, DatasetError } from '../errors.js';
import { BadLineSink } from './bad-lines.js';
import { toExamples, type Located } from './examples.js';
import './named/index.js';
import { resolveDataDir } from './paths.js';
import { formatOf, readRecords } from './readers.js';
import { getNamedDataset, listNamedDatasets, type RawSplits } from './registry.js';
import { capSeeded, stratifiedSplit } from './split.js';
import type { BadLine, DatasetSpec, DatasetSplits, Example } from './types.js';

/** Defaults, in one place. */
export const DATA_DEFAULTS = {
  textField: 'text',
  labelField: 'label',
  /** Carved from train when the validation split is missing. */
  validationFraction: 0.1,
  /** Carved from train when the test split is missing and no eval file was given either (with one: 0 unless set). */
  testFraction: 0.1,
  seed: 42,
  /** For user files; each named dataset sets its own (the public ones: 'skip'). */
  onBadLine: 'error' as const,
};

export function loadDataset(spec: DatasetSpec): DatasetSplits {
  validateSpec(spec);
  const named = getNamedDataset(spec.dataset);
  const sink = new BadLineSink(spec.onBadLine ?? named?.defaultOnBadLine ?? DATA_DEFAULTS.onBadLine);
  let raw: RawSplits;
  let name: string;
  if (named) {
    raw = named.load({ spec, dataDir: resolveDataDir(spec.dataDir), sink });
    name = named.name;
  } else {
    raw = loadFiles(spec, sink);
    name = basename(spec.dataset, extname(spec.dataset));
  }
  return finish(name, raw, spec, sink);
}

function loadFiles(spec: DatasetSpec, sink: BadLineSink): RawSplits {
  const fields = { text: spec.textField ?? DATA_DEFAULTS.textField, label: spec.labelField ?? DATA_DEFAULTS.labelField };
  const read = (file: string) => toExamples(readRecords(file, sink), fields, sink, spec.labelMap);
  const out: RawSplits = { train: read(spec.dataset), extraSets: [] };
  if (spec.evalDataset !== undefined) out.validation = read(spec.evalDataset);
  if (spec.testDataset !== undefined) out.test = read(spec.testDataset);
  return out;
}

function finish(name: string, raw: RawSplits, spec: DatasetSpec, sink: BadLineSink): DatasetSplits {
  const seed = spec.seed ?? DATA_DEFAULTS.seed;
  let { train, validation, test } = raw;
  if (train.length === 0) throw new DatasetError(`'loadDataset': dataset '${spec.dataset}' has no usable training examples (${sink.skipped.length} lines skipped)`);
  // carve the missing splits from train
  const vf = validation ? 0 : spec.validationFraction ?? DATA_DEFAULTS.validationFraction;
  const tf = test ? 0 : spec.testFraction ?? (validation ? 0 : DATA_DEFAULTS.testFraction);
  if (!validation || !test) {
    const [rest, val, tst] = stratifiedSplit(train, (x) => x.ex.label, [vf, tf], seed);
    train = rest!;
    validation ??= val!;
    test ??= tst!;
  }
  const labels = sortedUnique(train.map((x) => x.ex.label));
  const extraLabels: Record<string, string[]> = {};
  for (const set of raw.extraSets) extraLabels[set] = sortedUnique(train.map((x) => x.ex.extra?.[set] ?? ''));
  const known = (x: Located) => {
    if (!labelSetHas(labels, x.ex.label)) return `unknown label: '${x.ex.label}' is not among train's ${labels.length} labels`;
    for (const set of raw.extraSets) {
      const v = x.ex.extra?.[set] ?? '';
      if (!labelSetHas(extraLabels[set]!, v)) return `unknown label: '${set}' label '${v}' is not among train's ${extraLabels[set]!.length} '${set}' labels`;
    }
    return undefined;
  };
  const keepKnown = (xs: Located[]) => xs.filter((x) => {
    const bad = known(x);
    if (bad) sink.report(x.file, x.line, bad);
    return !bad;
  });
  validation = keepKnown(validation);
  test = keepKnown(test);
  const plain = (xs: Located[]): Example[] => xs.map((x) => x.ex);
  return {
    name,
    train: plain(capSeeded(train, spec.maxTrain, seed + 1)),
    validation: plain(capSeeded(validation, spec.maxEval, seed + 2)),
    test: plain(capSeeded(test, spec.maxEval, seed + 3)),
    labels,
    extraLabels,
    skipped: inFileOrder(sink.skipped),
  };
}

/** Bad lines by file (in order of first report), then line; stable, so a line reported twice stays in order. */
function inFileOrder(skipped: BadLine[]): BadLine[] {
  const fileRank = new Map<string, number>();
  for (const b of skipped) if (!fileRank.has(b.file)) fileRank.set(b.file, fileRank.size);
  return skipped.slice().sort((x, y) => fileRank.get(x.file)! - fileRank.get(y.file)! || x.line - y.line);
}

function sortedUnique(xs: string[]): string[] {
  return [...new Set(xs)].sort();
}

function labelSetHas(sorted: string[], v: string): boolean {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const m = sorted[mid]!;
    if (m === v) return true;
    if (m < v) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

function validateSpec(spec: DatasetSpec): void {
  const fail = (key: string, value: unknown, expected: string) => {
    throw new ConfigError(`'loadDataset': option '${key}' is ${JSON.stringify(value)}; expected ${expected}`);
  };
  if (typeof spec.dataset !== 'string' || spec.dataset === '') fail('dataset', spec.dataset, `a named dataset (${listNamedDatasets().join(', ')}) or a .jsonl/.json/.csv file`);
  if (!getNamedDataset(spec.dataset)) {
    for (const key of ['dataset', 'evalDataset', 'testDataset'] as const) {
      const f = spec[key];
      if (f === undefined) continue;
      formatOf(f); // throws on an unknown extension
      if (!existsSync(f)) {
        const hint = key === 'dataset' ? `; named datasets: ${listNamedDatasets().join(', ')}` : '';
        throw new DatasetError(`'loadDataset': ${key} file '${f}' does not exist${hint}`);
      }
    }
  } else if (spec.evalDataset !== undefined || spec.testDataset !== undefined) {
    fail('evalDataset', spec.evalDataset ?? spec.testDataset, `no eval/test file with the named dataset '${spec.dataset}' (it brings its own splits)`);
  }
  for (const key of ['validationFraction', 'testFraction'] as const) {
    const v = spec[key];
    if (v !== undefined && !(typeof v === 'number' && v >= 0 && v < 1)) fail(key, v, 'a number in [0, 1)');
  }
  if ((spec.validationFraction ?? 0) + (spec.testFraction ?? 0) >= 1) fail('validationFraction + testFraction', (spec.validationFraction ?? 0) + (spec.testFraction ?? 0), 'a sum below 1');
  if (spec.seed !== undefined && !Number.isInteger(spec.seed)) fail('seed', spec.seed, 'an integer');
  for (const key of ['maxTrain', 'maxEval'] as const) {
    const v = spec[key];
    if (v !== undefined && !(Number.isInteger(v) && v > 0)) fail(key, v, 'a positive integer');
  }
  if (spec.onBadLine !== undefined && spec.onBadLine !== 'skip' && spec.onBadLine !== 'error') fail('onBadLine', spec.onBadLine, "'skip' or 'error'");
}
