/**
 * Raw splits to a dataset's train / validation / test with its label list: missing splits carved from train
 * (seeded, stratified), examples whose labels train lacks reported as bad lines, seeded caps. loadDataset (Node)
 * and a page's dropped file go through this same code. No file system.
 */
import { DatasetError } from '../errors.js';
import type { BadLineSink } from './bad-lines.js';
import type { Located } from './examples.js';
import type { RawSplits } from './registry.js';
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

/** Finishes `raw` (see the module comment). */
export function finishSplits(name: string, raw: RawSplits, spec: DatasetSpec, sink: BadLineSink): DatasetSplits {
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

