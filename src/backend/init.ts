/**
 * `initBackend`: the asynchronous backend choice in Node, for the one backend that loads asynchronously (WebGPU
 * through Dawn). `backend()` stays synchronous and never picks WebGPU: on its own it chooses among the CPU backends
 * ('auto': native, else wasm, else portable). WebGPU is used in Node only where asked for, by
 * `initBackend({ prefer: 'webgpu' })` or `AUTOGLM_BACKEND=webgpu` followed by `await initBackend()`; where Dawn has
 * no adapter that is a ConfigError naming why, never a silent fall back to the CPU.
 *
 * Not re-exported by backend/index.ts (this file imports it, and the WebGPU loader imports it too): it is exported by
 * the package root and by `open-autoglm/backend/init`.
 */
import type { Backend } from './backend.js';
import { autoBackend, backend, setBackend, type BackendName } from './index.js';
import { installCollector } from './gc.js';
import { threadCount } from './threads.js';
import { ConfigError } from '../errors.js';

export type BackendPreference = 'auto' | BackendName | 'webgpu';

export interface InitBackendOptions {
  /** 'auto' (default; AUTOGLM_BACKEND when set): the CPU backends as `backend()` picks them; a name forces that backend. */
  prefer?: BackendPreference;
}

const PREFS: readonly string[] = ['auto', 'native', 'wasm', 'portable', 'webgpu'];

/** Chooses and loads the backend, makes it current and resolves to it. */
export async function initBackend(o: InitBackendOptions = {}): Promise<Backend> {
  const env = process.env.AUTOGLM_BACKEND;
  const want = o.prefer ?? (env === undefined || env === '' ? 'auto' : env);
  if (!PREFS.includes(want)) {
    const where = o.prefer !== undefined ? "initBackend's 'prefer'" : 'AUTOGLM_BACKEND';
    throw new ConfigError(`${where} must be 'auto', 'native', 'wasm', 'portable' or 'webgpu'; got '${want}'`);
  }
  installCollector(() => backend().trimHeap());
  if (want === 'webgpu') {
    const { loadWebGpuNode, webgpuNodeUnavailable, useWebGpu } = await import('./webgpu/node.js');
    const gpu = await loadWebGpuNode({ notice: false });
    if (!gpu) {
      throw new ConfigError(`backend 'webgpu' was asked for${o.prefer === undefined ? ' (AUTOGLM_BACKEND=webgpu)' : ''}, but there is no WebGPU in ` +
        `this Node process: ${webgpuNodeUnavailable() ?? 'no adapter'}. Use 'auto' (or unset AUTOGLM_BACKEND) for the CPU backends`);
    }
    return useWebGpu(gpu);
  }
  if (want === 'auto') return setBackend(autoBackend());
  threadCount();
  return setBackend(want as BackendName);
}
