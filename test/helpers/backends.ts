/**
 * The backends the tests run on: portable (the reference, always first), native when the addon is built, wasm when
 * its module loads. Under CI=true a wasm module that does not load is a failure (it is committed with the package).
 */
import { getBackend, nativeAvailable, setBackend, wasmAvailable, type Backend } from '../../src/backend/index.js';
import { wasmLoadError } from '../../src/backend/wasm/node.js';
import { requireNative } from './ci.js';

export function testBackends(): Backend[] {
  const list = [getBackend('portable')];
  if (nativeAvailable()) list.push(getBackend('native'));
  else console.log(`# ${String(requireNative())}: tests run without it`);
  list.push(...wasmBackendList());
  return list;
}

/** [the wasm backend] when it loads; [] otherwise, or an error under CI=true. */
export function wasmBackendList(): Backend[] {
  if (wasmAvailable()) return [getBackend('wasm')];
  if (process.env.CI === 'true') throw new Error(`CI=true and the wasm backend did not load: ${wasmLoadError()}`);
  console.log(`# wasm backend did not load (${wasmLoadError()}): tests run without it`);
  return [];
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
