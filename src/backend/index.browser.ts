/**
 * Backend selection in a browser: the browser build (scripts/build-web.mjs) puts this file in place of index.ts,
 * which loads the native addon and Node's worker_threads. The same names are exported. The page (or its worker)
 * calls `initBrowserBackend` once, before any tensor work: it picks WebGPU when `navigator.gpu` gives an adapter
 * (tensors then live on the device: src/backend/webgpu/README.md), else the wasm kernels fetched from `baseUrl`, else
 * the portable TypeScript backend; `prefer` overrides, as AUTOGLM_BACKEND does in Node. With WebGPU chosen, the
 * wasm kernels are still loaded where `baseUrl` is given: `getBackend('wasm')` is the CPU backend for work that
 * reads values in JavaScript (the page's evaluation).
 */
/// <reference types="@webgpu/types" />
import type { Backend } from './backend.js';
import { PortableBackend } from './portable.js';
import { loadBrowserWasmBackend, type BrowserWasmOptions } from './wasm/browser.js';
import { ConfigError } from '../errors.js';
import { createContext } from './webgpu/device.js';
import { WebGpuBackend } from './webgpu/backend.js';
import { WebGpuTensorBackend } from './webgpu/tensor-backend.js';

export type { AttentionShape, Backend, DType, Storage, UnaryOp, BinaryOp, ReduceOp, MatmulArgs, AdamWArgs, SGDArgs } from './backend.js';
export { DTYPE_BYTES } from './backend.js';
export { PortableBackend } from './portable.js';
export type BackendName = 'native' | 'wasm' | 'portable' | 'webgpu';
export { Rng, hashUniform, hash32 } from './rng.js';

let current: Backend | null = null;
const instances = new Map<string, Backend>();
/** The WebGPU backend on navigator.gpu's adapter, or null where the page has no WebGPU or no adapter. */
async function navigatorWebGpu(): Promise<Backend | null> {
  const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  const ctx = gpu ? await createContext(gpu) : null;
  return ctx ? new WebGpuTensorBackend(new WebGpuBackend(ctx)) : null;
}
let webgpuLoader: () => Promise<Backend | null> = navigatorWebGpu;

/** Replaces the WebGPU loader (default: navigator.gpu); it resolves to the backend, or null where WebGPU has no adapter. */
export function registerWebGPULoader(load: () => Promise<Backend | null>): void {
  webgpuLoader = load;
}

export interface BrowserBackendOptions extends Partial<BrowserWasmOptions> {
  /** Force a backend ('webgpu', 'wasm' or 'portable'); default: WebGPU where an adapter exists, else wasm where it loads, else portable. */
  prefer?: 'webgpu' | 'wasm' | 'portable';
}

/** Chooses and loads the backend (see the module comment); resolves to it. Says on the console which one and why. */
export async function initBrowserBackend(o: BrowserBackendOptions = {}): Promise<Backend> {
  const want = o.prefer;
  if (want !== undefined && want !== 'webgpu' && want !== 'wasm' && want !== 'portable') {
    throw new ConfigError(`backend preference must be 'webgpu', 'wasm' or 'portable'; got '${String(want)}'`);
  }
  const why: string[] = [];
  if (want === 'webgpu' || want === undefined) {
    let b: Backend | null = null;
    try {
      b = await webgpuLoader();
      if (!b) why.push('webgpu: navigator.gpu gives no adapter here');
    } catch (e) {
      if (want === 'webgpu') throw e;
      why.push(`webgpu: ${(e as Error).message}`);
    }
    if (b) {
      // the CPU kernels for what reads values in JavaScript (evaluation), where they load
      if (o.baseUrl !== undefined) {
        try {
          instances.set('wasm', await loadBrowserWasmBackend(o as BrowserWasmOptions));
        } catch (e) {
          console.warn(`open-autoglm: the wasm kernels did not load (${(e as Error).message}); CPU work uses the portable backend`);
        }
      }
      return use('webgpu', b);
    }
    if (want === 'webgpu') throw new ConfigError(`backend 'webgpu' was asked for, but ${why.join('; ').replace(/^webgpu: /, '')}`);
  }
  if (want !== 'portable' && o.baseUrl !== undefined) {
    try {
      return use('wasm', await loadBrowserWasmBackend(o as BrowserWasmOptions));
    } catch (e) {
      if (want === 'wasm') throw e;
      why.push(`wasm: ${(e as Error).message}`);
    }
  } else if (want === 'wasm') {
    throw new ConfigError("backend 'wasm' was asked for, but no baseUrl of the .wasm files was given");
  }
  const b = use('portable', new PortableBackend());
  console.warn(`open-autoglm: using the portable TypeScript backend (slow)${why.length ? `: ${why.join('; ')}` : ''}`);
  return b;
}

function use(name: string, b: Backend): Backend {
  instances.set(name, b);
  current = b;
  return b;
}

/** A loaded backend by name ('native' never loads in a browser; 'wasm' / 'webgpu' after initBrowserBackend). */
export function getBackend(name: BackendName): Backend {
  if (name === 'portable') {
    let b = instances.get('portable');
    if (!b) instances.set('portable', (b = new PortableBackend()));
    return b;
  }
  const b = instances.get(name);
  if (!b) throw new Error(name === 'native' ? 'the native addon does not exist in a browser' : `backend '${name}' is not loaded: call initBrowserBackend first`);
  return b;
}

export function nativeAvailable(): boolean {
  return false;
}

export function wasmAvailable(): boolean {
  return instances.has('wasm');
}

/** The CPU backend next to a device one (evaluation on the CPU, loading weights): wasm where it loaded, else portable. */
export function cpuBackend(): Backend {
  return instances.get('wasm') ?? getBackend('portable');
}

/** The backend in use: the one initBrowserBackend chose, else the portable one (said once on the console). */
export function backend(): Backend {
  if (current) return current;
  console.warn('open-autoglm: initBrowserBackend was not called; using the portable TypeScript backend (slow)');
  current = getBackend('portable');
  return current;
}

/** Switches the backend (tests run every op on two). */
export function setBackend(b: Backend | BackendName): Backend {
  current = typeof b === 'string' ? getBackend(b) : b;
  return current;
}
