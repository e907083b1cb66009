/**
 * Backend selection: native when the addon loads, else portable; `AUTOGLM_BACKEND=native|portable` overrides.
 * The first use prints one line naming the backend when it is not the fast one.
 */
import type { Backend } from './backend.js';
import { PortableBackend } from './portable.js';
import { loadNativeBackend, nativeLoadError } from './native.js';
import { installCollector } from './gc.js';

export type { AttentionShape, Backend, DType, Storage, UnaryOp, BinaryOp, ReduceOp, MatmulArgs, AdamWArgs, SGDArgs } from './backend.js';
export { DTYPE_BYTES } from './backend.js';
export { PortableBackend } from './portable.js';
export { Rng, hashUniform, hash32 } from './rng.js';

let current: Backend | null = null;
const instances = new Map<string, Backend>();

const FAST_HINT = 'apt-get install -y libopenblas-dev libopenblas0-openmp libdnnl-dev g++ make && npm rebuild open-autoglm';

/** A backend by name ('native' throws a clear error if the addon is not built). */
export function getBackend(name: 'native' | 'portable'): Backend {
  let b = instances.get(name);
  if (!b) {
    b = name === 'native' ? loadNativeBackend() : new PortableBackend();
    instances.set(name, b);
  }
  return b;
}

/** True when the native addon can be loaded in this process. */
export function nativeAvailable(): boolean {
  try {
    getBackend('native');
    return true;
  } catch {
    return false;
  }
}

/** The backend in use: chosen once per process (see module comment), replaceable with `setBackend`. */
export function backend(): Backend {
  if (current) return current;
  installCollector();
  const want = process.env.AUTOGLM_BACKEND;
  if (want !== undefined && want !== '' && want !== 'native' && want !== 'portable') {
    throw new Error(`AUTOGLM_BACKEND must be 'native' or 'portable'; got '${want}'`);
  }
  if (want === 'portable') {
    current = getBackend('portable');
  } else if (want === 'native') {
    current = getBackend('native');
  } else if (nativeAvailable()) {
    current = getBackend('native');
  } else {
    current = getBackend('portable');
    const why = nativeLoadError();
    process.stderr.write(`open-autoglm: using the portable TypeScript backend (slow)${why ? ` because the native addon did not load (${why})` : ''}; for the fast one: ${FAST_HINT}\n`);
  }
  return current;
}

/** Switches the process-wide backend (tests run every op on both). */
export function setBackend(b: Backend | 'native' | 'portable'): Backend {
  current = typeof b === 'string' ? getBackend(b) : b;
  return current;
}
