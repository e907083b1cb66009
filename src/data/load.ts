/**
 * loadDataset: a named dataset or user files to train / validation / test with label lists. Missing splits are
 * carved from train (seeded, stratified); eval and test examples whose labels are not in train are bad lines.
 */
import { existsSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { ConfigError, DatasetError } from '../errors.js';
import { BadLineSink } from './bad-lines.js';
import { toExamples, type Fields } from './examples.js';
import './named/index.js';
import { resolveDataDir } from './paths.js';
import { formatOf, readRecords } from './readers.js';
import { getNamedDataset, listNamedDatasets, type RawSplits } from './registry.js';
import { DATA_DEFAULTS, finishSplits } from './finish.js';
import type { DatasetSpec, DatasetSplits } from './types.js';

export { DATA_DEFAULTS } from './finish.js';

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
  return finishSplits(name, raw, spec, sink);
}

function loadFiles(spec: DatasetSpec, sink: BadLineSink): RawSplits {
  const sets = spec.labelFields ?? [];
  const label = spec.labelField ?? sets[0] ?? DATA_DEFAULTS.labelField;
  const extraSets = sets.filter((s) => s !== label);
  const fields: Fields = sets.length
    ? { text: spec.textField ?? DATA_DEFAULTS.textField, label, extra: Object.fromEntries(extraSets.map((s) => [s, s])), optional: true }
    : { text: spec.textField ?? DATA_DEFAULTS.textField, label };
  const read = (file: string) => toExamples(readRecords(file, sink), fields, sink, spec.labelMap);
  const out: RawSplits = { train: read(spec.dataset), extraSets };
  if (spec.evalDataset !== undefined) out.validation = read(spec.evalDataset);
  if (spec.testDataset !== undefined) out.test = read(spec.testDataset);
  return out;
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
  if (spec.labelFields !== undefined && !(Array.isArray(spec.labelFields) && spec.labelFields.length > 0 && spec.labelFields.every((f) => typeof f === 'string' && f !== ''))) {
    fail('labelFields', spec.labelFields, 'a non-empty list of field names');
  }
  if (spec.labelFields !== undefined && getNamedDataset(spec.dataset)) fail('labelFields', spec.labelFields, `no label fields with the named dataset '${spec.dataset}' (it brings its own label sets)`);
  if (spec.onBadLine !== undefined && spec.onBadLine !== 'skip' && spec.onBadLine !== 'error') fail('onBadLine', spec.onBadLine, "'skip' or 'error'");
}
