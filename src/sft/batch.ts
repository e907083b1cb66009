/**
 * Batches of tokenized SFT examples: padded (one example per row, padding ignored by the loss and masked from
 * attention), or packed (`packing: true`: several examples per row up to maxLength, best-fit decreasing as TRL's
 * default 'bfd' strategy, no example split). A packed row carries position ids that restart at 0 in each example
 * and document ids from which the model builds a per-document causal mask, so no example attends to or is scored
 * against another: the first label of every example is ignored (it would be predicted from the previous one).
 */
import { Tensor } from '../tensor/tensor.js';
import { ConfigError } from '../errors.js';
import { IGNORE_INDEX, type TokenizedExample } from './tokenize.js';

export interface SftBatch {
  /** (B, T) i32. */
  ids: Tensor;
  /** (B, T) i32: the ids where scored, -100 elsewhere (padding included); the loss shifts them. */
  labels: Tensor;
  /** (B, T) f32, 1 at tokens and 0 at padding; null for packed rows (the document mask covers padding). */
  attentionMask: Tensor | null;
  /** (B, T) i32 for packed rows, else null. */
  positionIds: Tensor | null;
  /** (B, T) i32 for packed rows (padding = -1), else null. */
  documentIds: Tensor | null;
  /** Tokens that are not padding. */
  tokens: number;
  /** Scored next-token predictions. */
  scored: number;
}

function countScored(labels: Int32Array, B: number, T: number): number {
  let n = 0;
  for (let b = 0; b < B; b++) for (let t = 1; t < T; t++) if (labels[b * T + t] !== IGNORE_INDEX) n++;
  return n;
}

/** One example per row, right-padded with `padId` to the longest row. */
export function padBatch(examples: readonly TokenizedExample[], padId: number): SftBatch {
  if (examples.length === 0) throw new ConfigError(`'padBatch' needs at least one example`);
  const B = examples.length, T = Math.max(2, ...examples.map((e) => e.ids.length));
  const ids = new Int32Array(B * T).fill(padId), labels = new Int32Array(B * T).fill(IGNORE_INDEX), mask = new Float32Array(B * T);
  let tokens = 0;
  examples.forEach((e, b) => {
    ids.set(e.ids, b * T);
    labels.set(e.labels, b * T);
    mask.fill(1, b * T, b * T + e.ids.length);
    tokens += e.ids.length;
  });
  return {
    ids: new Tensor(ids, 'i32', [B, T]), labels: new Tensor(labels, 'i32', [B, T]), attentionMask: new Tensor(mask, 'f32', [B, T]),
    positionIds: null, documentIds: null, tokens, scored: countScored(labels, B, T),
  };
}

/** Examples packed into rows of at most maxLength tokens: the indices of the examples of each row, in order. */
export function packRows(lengths: readonly number[], maxLength: number): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b); // longest first, stable
  const rows: { items: number[]; free: number }[] = [];
  for (const i of order) {
    const n = Math.min(lengths[i], maxLength);
    // best fit: the row with the least room that still holds it
    let best = -1;
    for (let r = 0; r < rows.length; r++) if (rows[r].free >= n && (best < 0 || rows[r].free < rows[best].free)) best = r;
    if (best < 0) rows.push({ items: [i], free: maxLength - n });
    else {
      rows[best].items.push(i);
      rows[best].free -= n;
    }
  }
  return rows.map((r) => r.items.sort((a, b) => a - b));
}

/** Rows of several examples each (from packRows), right-padded to the longest row. */
export function packedBatch(rows: readonly (readonly TokenizedExample[])[], padId: number): SftBatch {
  if (rows.length === 0) throw new ConfigError(`'packedBatch' needs at least one row`);
  const B = rows.length, T = Math.max(2, ...rows.map((r) => r.reduce((a, e) => a + e.ids.length, 0)));
  const ids = new Int32Array(B * T).fill(padId), labels = new Int32Array(B * T).fill(IGNORE_INDEX);
  const pos = new Int32Array(B * T), docs = new Int32Array(B * T).fill(-1);
  let tokens = 0;
  rows.forEach((row, b) => {
    let off = b * T;
    row.forEach((e, d) => {
      ids.set(e.ids, off);
      labels.set(e.labels, off);
      labels[off] = IGNORE_INDEX; // not predicted from the previous example
      for (let t = 0; t < e.ids.length; t++) {
        pos[off + t] = t;
        docs[off + t] = d;
      }
      off += e.ids.length;
      tokens += e.ids.length;
    });
    for (let t = off, p = 0; t < (b + 1) * T; t++, p++) pos[t] = p; // padding: a document of its own
  });
  return {
    ids: new Tensor(ids, 'i32', [B, T]), labels: new Tensor(labels, 'i32', [B, T]), attentionMask: null,
    positionIds: new Tensor(pos, 'i32', [B, T]), documentIds: new Tensor(docs, 'i32', [B, T]), tokens, scored: countScored(labels, B, T),
  };
}
