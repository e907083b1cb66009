/**
 * Exact k-th largest magnitude without a full sort: a sampled lower bound keeps only a few times k
 * candidates, then quickselect (median-of-three Hoare partition) runs on those; a full quickselect
 * is the fallback when the sample's bound was too high.
 */
import { hash32 } from '../../backend/rng.js';

let absBuf = new Float32Array(0);
const SAMPLE = 4096;
const sample = new Float32Array(SAMPLE);

/** The t-th smallest (0-based) of a[0..m), reordering a in place. */
export function quickselect(a: Float32Array, m: number, t: number): number {
  let lo = 0, hi = m - 1;
  while (hi > lo) {
    const x = a[lo], y = a[(lo + hi) >>> 1], z = a[hi];
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : (x < z ? x : y < z ? z : y);
    let i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const s = a[i];
        a[i++] = a[j];
        a[j--] = s;
      }
    }
    if (t <= j) hi = j; // a[lo..j] <= pivot <= a[i..hi]
    else if (t >= i) lo = i;
    else return a[t]; // j < t < i: equal to the pivot
  }
  return a[t];
}

/** The k-th largest |g[i]| (1 <= k <= g.length). */
export function kthLargestAbs(g: Float32Array, k: number): number {
  const n = g.length;
  if (absBuf.length < n) absBuf = new Float32Array(n);
  let lower = -1; // candidates are |g| >= lower
  if (n > 8 * SAMPLE) {
    for (let j = 0; j < SAMPLE; j++) sample[j] = Math.abs(g[hash32(0x7a3c, j) % n]);
    sample.sort();
    const q = k / n;
    const rank = Math.ceil(SAMPLE * q + 4 * Math.sqrt(SAMPLE * q * (1 - q)) + 2); // ~4 standard errors of margin
    if (rank < SAMPLE) lower = sample[SAMPLE - 1 - rank];
  }
  let m = 0;
  if (lower >= 0) {
    for (let i = 0; i < n; i++) {
      const a = Math.abs(g[i]);
      if (a >= lower) absBuf[m++] = a;
    }
  }
  if (m < k) { // no sample, or the bound was above the k-th value: every element is a candidate
    for (let i = 0; i < n; i++) absBuf[i] = Math.abs(g[i]);
    m = n;
  }
  return quickselect(absBuf, m, m - k);
}
