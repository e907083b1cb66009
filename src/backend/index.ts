/**
 * Backend selection: native when the addon loads, else wasm (the WebAssembly SIMD kernels, which need no compiler
 * on the user's machine), else portable; `AUTOGLM_BACKEND=native|wasm|portable` overrides. WebGPU is never picked here
 * (it loads asynchronously): `await initBackend({ prefer: 'webgpu' })` (init.ts) asks for it. The first use prints one
 * line naming the backend when it is not the native one.
 */
import type { Backend } from './backend.js';
import { PortableBackend } from './portable.js';
import { bf16OutputsSwitch, loadNativeBackend, nativeLoadError, optimizerBf16Switch } from './native.js';
import { loadWasmBackend, wasmLoadError } from './wasm/node.js';
import { installCollector } from './gc.js';
import { threadCount } from './threads.js';
import { ConfigError } from '../errors.js';

export type { AttentionShape, Backend, DType, Storage, UnaryOp, BinaryOp, ReduceOp, MatmulArgs, AdamWArgs, SGDArgs } from './backend.js';
export { DTYPE_BYTES } from './backend.js';
export { PortableBackend } from './portable.js';
export type BackendName = 'native' | 'wasm' | 'portable';
export { Rng, hashUniform, hash32 } from './rng.js';

let current: Backend | null = null;
const instances = new Map<string, Backend>();

const FAST_HINT = 'apt-get install -y libopenblas-dev libopenblas0-openmp libdnnl-dev g++ make && npm rebuild open-autoglm';

/** A backend by name ('native' / 'wasm' throw a clear error if the addon / the wasm module cannot load). */
export function getBackend(name: BackendName): Backend {
  let b = instances.get(name);
  if (!b) {
    b = name === 'native' ? loadNativeBackend() : name === 'wasm' ? loadWasmBackend() : new PortableBackend();
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

/** True when the wasm backend can be loaded in this process. */
export function wasmAvailable(): boolean {
  try {
    getBackend('wasm');
    return true;
  } catch {
    return false;
  }
}

/** The backend in use: chosen once per process (see module comment), replaceable with `setBackend`. */
export function backend(): Backend {
  if (current) return current;
  // the collector returns free heap pages through whichever backend is current when it runs
  installCollector(() => backend().trimHeap());
  const want = process.env.AUTOGLM_BACKEND;
  if (want === 'webgpu') {
    throw new ConfigError("AUTOGLM_BACKEND=webgpu: WebGPU loads asynchronously in Node, so it is chosen by 'await initBackend()' " +
      "(open-autoglm, or open-autoglm/backend/init) before the first tensor op (the trainer: config key backend 'webgpu', the CLI's --backend webgpu)");
  }
  if (want !== undefined && want !== '' && want !== 'native' && want !== 'wasm' && want !== 'portable') {
    throw new ConfigError(`AUTOGLM_BACKEND must be 'native', 'wasm', 'portable' or 'webgpu'; got '${want}'`);
  }
  current = lastCpu = want === 'portable' || want === 'native' || want === 'wasm' ? pick(want) : autoBackend();
  return current;
}

/**
 * The environment's settings read once before a backend loads: a bad AUTOGLM_NUM_THREADS, AUTOGLM_BF16_OUTPUTS or
 * AUTOGLM_OPTIMIZER_BF16 is the user's error (a ConfigError), not a reason to fall back to a slower backend.
 */
function checkSettings(): void {
  threadCount();
  bf16OutputsSwitch();
  optimizerBf16Switch();
}

function pick(name: BackendName): Backend {
  checkSettings();
  return getBackend(name);
}

/** The automatic choice among the CPU backends (native, else wasm, else portable; one line when not native); not made current. */
export function autoBackend(): Backend {
  checkSettings();
  if (nativeAvailable()) return getBackend('native');
  const why = nativeLoadError();
  const because = why ? ` because the native addon did not load (${why})` : '';
  if (wasmAvailable()) {
    const b = getBackend('wasm');
    const hint = why?.includes(FAST_HINT) ? '' : `; for the fastest one: ${FAST_HINT}`;
    process.stderr.write(`open-autoglm: using the ${b.describe()} backend${because}${hint}\n`);
    return b;
  }
  process.stderr.write(`open-autoglm: using the portable TypeScript backend (slow)${because}, and the wasm kernels did not load (${wasmLoadError()}); for the fast one: ${FAST_HINT}\n`);
  return getBackend('portable');
}

/** The last CPU backend that was current. */
let lastCpu: Backend | null = null;
/**
 * The CPU backend: the current one when it is a CPU backend, else the last CPU backend that was current, else the one
 * `backend()` would choose (AUTOGLM_BACKEND when it names one, else native, wasm, portable). It builds and loads
 * models while a device backend (WebGPU) is current (src/backend/placement.ts).
 */
export function cpuBackend(): Backend {
  if (current && !current.device) return current;
  const want = process.env.AUTOGLM_BACKEND;
  return (lastCpu ??= want === 'portable' || want === 'native' || want === 'wasm' ? pick(want) : autoBackend());
}

/** Switches the process-wide backend (tests run every op on both). */
export function setBackend(b: Backend | BackendName): Backend {
  current = typeof b === 'string' ? getBackend(b) : b;
  if (!current.device) lastCpu = current;
  return current;
}
