/** Seeded splits and caps. Deterministic for a seed; the original order is kept inside every part. */
import { Rng } from '../backend/rng.js';

/** Fisher-Yates shuffle in place with `rng`. */
export function shuffleInPlace<T>(a: T[], rng: Rng): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
  return a;
}

/**
 * Splits `items` into [rest, ...parts] by `fractions`, stratified by `key` (each label's items are shuffled and cut
 * per fraction, rounded), so every label keeps its share in each part. A label keeps at least one item in `rest`.
 */
export function stratifiedSplit<T>(items: readonly T[], key: (x: T) => string, fractions: readonly number[], seed: number): T[][] {
  const groups = new Map<string, number[]>();
  items.forEach((x, i) => {
    const k = key(x);
    const g = groups.get(k);
    if (g) g.push(i);
    else groups.set(k, [i]);
  });
  const rng = new Rng(seed);
  const partOf = new Int32Array(items.length); // 0 = rest, p + 1 = parts[p]
  for (const k of [...groups.keys()].sort()) {
    const idx = shuffleInPlace(groups.get(k)!, rng);
    const counts = fractions.map((f) => Math.round(idx.length * f));
    // leave at least one in rest: shrink the last non-empty parts first
    for (let p = counts.length - 1; p >= 0 && counts.reduce((a, b) => a + b, 0) > idx.length - 1; p--) {
      counts[p] = Math.max(0, counts[p]! - (counts.reduce((a, b) => a + b, 0) - (idx.length - 1)));
    }
    let at = 0;
    counts.forEach((c, p) => {
      for (let j = 0; j < c; j++) partOf[idx[at++]!] = p + 1;
    });
  }
  const out: T[][] = Array.from({ length: fractions.length + 1 }, () => []);
  items.forEach((x, i) => out[partOf[i]!]!.push(x));
  return out;
}

/** At most `max` items: a seeded subset in the original order. */
export function capSeeded<T>(items: readonly T[], max: number | undefined, seed: number): T[] {
  if (max === undefined || items.length <= max) return items.slice();
  const idx = shuffleInPlace(items.map((_, i) => i), new Rng(seed)).slice(0, max).sort((a, b) => a - b);
  return idx.map((i) => items[i]!);
}
