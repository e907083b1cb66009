/**
 * Named datasets: an interface and a registry (one file per dataset under named/). A loader reads its files from
 * the data folder and returns located examples per split; splitting, label lists and caps are done by loadDataset.
 */
import { ConfigError } from '../errors.js';
import type { BadLineSink } from './bad-lines.js';
import type { Located } from './examples.js';
import type { DatasetSpec } from './types.js';

export interface NamedContext {
  spec: DatasetSpec;
  /** The resolved data folder (named public datasets live in `<dataDir>/<folder>`). */
  dataDir: string;
  sink: BadLineSink;
}

export interface RawSplits {
  train: Located[];
  /** Absent splits are carved from train with a seeded, stratified split. */
  validation?: Located[];
  test?: Located[];
  /** Names of the other label sets carried in `Example.extra`. */
  extraSets: string[];
}

export interface NamedDataset {
  name: string;
  description: string;
  /** Label sets this dataset offers; the first is the default primary. */
  labelSets: string[];
  /** Policy for bad lines when the spec sets none ('skip' for known damage in public data). */
  defaultOnBadLine: 'skip' | 'error';
  load(ctx: NamedContext): RawSplits;
}

const registry = new Map<string, NamedDataset>();

export function registerNamedDataset(ds: NamedDataset): void {
  if (registry.has(ds.name)) throw new ConfigError(`'registerNamedDataset': a dataset named '${ds.name}' is already registered`);
  registry.set(ds.name, ds);
}

export function getNamedDataset(name: string): NamedDataset | undefined {
  return registry.get(name);
}

export function listNamedDatasets(): string[] {
  return [...registry.keys()].sort();
}

/** The primary label set chosen by `spec.labelSet` (validated), and the others in the dataset's order. */
export function chooseLabelSet(ds: NamedDataset, spec: DatasetSpec): { primary: string; others: string[] } {
  const primary = spec.labelSet ?? ds.labelSets[0]!;
  if (!ds.labelSets.includes(primary)) {
    throw new ConfigError(`'loadDataset': labelSet '${primary}' is not offered by dataset '${ds.name}'; expected one of ${ds.labelSets.map((s) => `'${s}'`).join(', ')}`);
  }
  return { primary, others: ds.labelSets.filter((s) => s !== primary) };
}
