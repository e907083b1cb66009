/** The backends the tests run on: portable always, native when the addon is built. */
import { getBackend, nativeAvailable, setBackend, type Backend } from '../../src/backend/index.js';
import { requireNative } from './ci.js';

export function testBackends(): Backend[] {
  const list = [getBackend('portable')];
  if (nativeAvailable()) list.push(getBackend('native'));
  else console.log(`# ${String(requireNative())}: tests run on the portable backend only`);
  return list;
}

export function withBackend<T>(b: Backend, fn: () => T): T {
  setBackend(b);
  return fn();
}

/** Norm-wise relative error: max |a - b| / max |b| (NaN where NaN agree; Infinity on a length mismatch). */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let diff = 0, scale = 1e-30;
  for (let i = 0; i < a.length; i++) {
    const x = a[i], y = b[i];
    if (Number.isNaN(x) && Number.isNaN(y)) continue;
    if (x === y) { scale = Math.max(scale, Math.abs(y) || 0); continue; }
    const d = Math.abs(x - y);
    if (!(d <= diff)) diff = d;
    scale = Math.max(scale, Math.abs(y));
  }
  return diff / scale;
}
