/** Tokenized datasets and dynamic padding: examples -> id lists and class ids -> padded batches. */
import { ConfigError, DatasetError, IndexError } from '../errors.js';
import type { Example } from './types.js';

export interface EncodedDataset {
  ids: number[][];
  labels: Int32Array;
  extraLabels: Record<string, Int32Array>;
  /** Indices of the examples left out under onBadLine 'skip' (absent when none); row i is then not example i. */
  skipped?: number[];
}

export interface Batch {
  /** Dataset rows in the batch. */
  indices: number[];
  /** (batchSize, seqLen) row-major token ids, padded with padId. */
  ids: Int32Array;
  /** (batchSize, seqLen): 1 = token, 0 = padding. */
  mask: Float32Array;
  /** (batchSize) class ids. */
  labels: Int32Array;
  extraLabels?: Record<string, Int32Array>;
  batchSize: number;
  seqLen: number;
}

export interface EncodeOptions {
  /** Truncate each sequence to its first maxLength ids. */
  maxLength?: number;
  /** Other label sets to encode (name -> sorted label names), read from `Example.extra`. */
  extraLabels?: Record<string, string[]>;
  /** An example with an unknown label: DatasetError naming its index ('error', default) or left out ('skip'). */
  onBadLine?: 'skip' | 'error';
}

/** Tokenizes every example with `encode` (truncating to maxLength) and maps labels to class ids (index in `labels`). */
export function encodeDataset(examples: Example[], encode: (text: string) => number[], labels: string[], opts: EncodeOptions = {}): EncodedDataset {
  const { maxLength, onBadLine = 'error' } = opts;
  if (maxLength !== undefined && !(Number.isInteger(maxLength) && maxLength > 0)) {
    throw new ConfigError(`'encodeDataset': option 'maxLength' is ${maxLength}; expected a positive integer`);
  }
  const sets: [string, Map<string, number>][] = [['', indexOf(labels)]];
  for (const [name, names] of Object.entries(opts.extraLabels ?? {})) sets.push([name, indexOf(names)]);
  const ids: number[][] = [];
  const cls: number[][] = sets.map(() => []);
  const skipped: number[] = [];
  examples.forEach((ex, i) => {
    const found = sets.map(([name, map]) => {
      const v = name === '' ? ex.label : ex.extra?.[name];
      return v === undefined ? undefined : map.get(v);
    });
    const miss = found.findIndex((c) => c === undefined);
    if (miss >= 0) {
      const [name] = sets[miss]!;
      const v = name === '' ? ex.label : ex.extra?.[name];
      if (onBadLine === 'skip') { skipped.push(i); return; }
      throw new DatasetError(
        `'encodeDataset': example ${i} has ${name === '' ? 'label' : `'${name}' label`} ${JSON.stringify(v)}, not among the ${sets[miss]![1].size} known labels`,
      );
    }
    const seq = encode(ex.text);
    ids.push(maxLength !== undefined && seq.length > maxLength ? seq.slice(0, maxLength) : seq);
    found.forEach((c, s) => cls[s]!.push(c!));
  });
  const extraLabels: Record<string, Int32Array> = {};
  sets.slice(1).forEach(([name], s) => (extraLabels[name] = Int32Array.from(cls[s + 1]!)));
  const out: EncodedDataset = { ids, labels: Int32Array.from(cls[0]!), extraLabels };
  if (skipped.length > 0) out.skipped = skipped;
  return out;
}

function indexOf(names: string[]): Map<string, number> {
  return new Map(names.map((n, i) => [n, i]));
}

/** Dynamic padding: pads the rows `indices` to the longest in the batch (at least 1) with padId; mask 1 = token. */
export function collate(ds: EncodedDataset, indices: number[], padId = 0): Batch {
  if (indices.length === 0) throw new ConfigError(`'collate': argument 'indices' is empty; expected at least one row`);
  const n = ds.ids.length;
  let seqLen = 1;
  for (const i of indices) {
    if (!Number.isInteger(i) || i < 0 || i >= n) throw new IndexError(`'collate': index ${i} in argument 'indices' is out of range; expected 0 <= i < ${n}`);
    seqLen = Math.max(seqLen, ds.ids[i]!.length);
  }
  const B = indices.length;
  const ids = new Int32Array(B * seqLen).fill(padId); // (B, T)
  const mask = new Float32Array(B * seqLen); // (B, T)
  const labels = new Int32Array(B);
  indices.forEach((row, b) => {
    const seq = ds.ids[row]!;
    ids.set(seq, b * seqLen);
    mask.fill(1, b * seqLen, b * seqLen + seq.length);
    labels[b] = ds.labels[row]!;
  });
  const batch: Batch = { indices: indices.slice(), ids, mask, labels, batchSize: B, seqLen };
  const names = Object.keys(ds.extraLabels);
  if (names.length > 0) {
    batch.extraLabels = {};
    for (const name of names) {
      const src = ds.extraLabels[name]!;
      batch.extraLabels[name] = Int32Array.from(indices, (row) => src[row]!);
    }
  }
  return batch;
}

/** Right-pads token-id lists to the longest (at least `minLength`) with padId: ids (B, T) and mask (B, T), 1 = token. */
export function padIds(seqs: readonly (readonly number[])[], padId = 0, minLength = 1): { ids: Int32Array; mask: Float32Array; T: number } {
  const T = Math.max(minLength, ...seqs.map((s) => s.length));
  const ids = new Int32Array(seqs.length * T).fill(padId), mask = new Float32Array(seqs.length * T);
  seqs.forEach((s, b) => {
    ids.set(s, b * T);
    mask.fill(1, b * T, b * T + s.length);
  });
  return { ids, mask, T };
}
