/**
 * Instantiates the kernels' module on a fresh memory, in any JavaScript runtime: the threaded build
 * (autoglm-mt.wasm) on a shared memory, which the caller's workers then join, or the single-threaded one
 * (autoglm-st.wasm) on a plain memory, for pages that are not cross-origin isolated (no SharedArrayBuffer).
 */
import { WasmMemory, type WasmExports } from './memory.js';

/** The most memory the module may grow to: 4 GiB, wasm32's address space. */
const MAX_PAGES = 65536;

export function instantiateKernels(module: WebAssembly.Module, shared: boolean, threads: number): WasmMemory {
  const memory = new WebAssembly.Memory({ initial: 64, maximum: MAX_PAGES, shared });
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  const x = instance.exports as unknown as WasmExports;
  const n = shared ? threads : 1;
  x.ag_gemm_init(n);
  x.ag_set_threads(n);
  return new WasmMemory(x, memory);
}
