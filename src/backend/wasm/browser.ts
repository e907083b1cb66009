/**
 * Loads the wasm backend in a browser (or any runtime with fetch and Web Workers): the threaded build
 * (autoglm-mt.wasm) on a shared memory with one Web Worker per extra kernel thread where the page is cross-origin
 * isolated (SharedArrayBuffer exists), else the single-threaded build (autoglm-st.wasm) on a plain memory.
 * Run the library in a dedicated worker, not on the page's main thread: a kernel call blocks its caller, and only a
 * worker may wait on atomics (the threaded kernels' join).
 */
import { WasmBackend } from './backend.js';
import { instantiateKernels } from './instantiate.js';

const STACK_BYTES = 1 << 20;
/** How long loading waits for the kernel workers to start (they join later if slower). */
const READY_WAIT_MS = 5000;

// A kernel worker: instantiates the same module on the same memory, takes its own stack, and serves tasks forever.
const WORKER_SOURCE = `
onmessage = (e) => {
  const { module, memory, stackTop } = e.data;
  const inst = new WebAssembly.Instance(module, { env: { memory } });
  inst.exports.__stack_pointer.value = stackTop;
  inst.exports.ag_worker_loop();
};
`;

export interface BrowserWasmOptions {
  /** The folder (URL) holding autoglm-mt.wasm and autoglm-st.wasm. */
  baseUrl: string | URL;
  /** Kernel threads (default: navigator.hardwareConcurrency); 1 where the page is not cross-origin isolated. */
  threads?: number;
  /** The bytes of a file given its URL (default fetch; a page passes one that caches). */
  fetchBytes?: (url: string) => Promise<ArrayBuffer>;
}

/** Whether this context can run the threaded kernels: cross-origin isolated, with SharedArrayBuffer and workers. */
export function canShareMemory(): boolean {
  const g = globalThis as { crossOriginIsolated?: boolean; Worker?: unknown };
  return g.crossOriginIsolated === true && typeof SharedArrayBuffer !== 'undefined' && typeof g.Worker === 'function';
}

async function plainFetch(url: string): Promise<ArrayBuffer> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`fetching ${url}: HTTP ${r.status}`);
  return r.arrayBuffer();
}

/** Fetches, compiles and instantiates the kernels; starts the kernel workers when memory can be shared. */
export async function loadBrowserWasmBackend(o: BrowserWasmOptions): Promise<WasmBackend> {
  const shared = canShareMemory();
  const hw = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 1;
  const threads = shared ? Math.max(1, o.threads ?? hw) : 1;
  const file = shared ? 'autoglm-mt.wasm' : 'autoglm-st.wasm';
  // a relative baseUrl ('/wasm/') is taken against the page's (or worker's) own location
  const url = new URL(file, new URL(o.baseUrl, (globalThis as { location?: { href: string } }).location?.href)).href;
  const bytes = await (o.fetchBytes ?? plainFetch)(url);
  let module: WebAssembly.Module;
  try {
    module = await WebAssembly.compile(bytes);
  } catch (e) {
    throw new Error(`the wasm kernels ${url} failed to compile: ${(e as Error).message}`);
  }
  const w = instantiateKernels(module, shared, threads);
  if (shared) {
    // a dedicated worker may block on atomics; a page's main thread may not (the kernels then spin)
    const isWorker = typeof (globalThis as { document?: unknown }).document === 'undefined';
    w.x.ag_set_main_may_wait(isWorker ? 1 : 0);
    const src = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: 'text/javascript' }));
    for (let t = 1; t < threads; t++) {
      const stackTop = (w.x.ag_alloc_permanent(STACK_BYTES) >>> 0) + STACK_BYTES;
      const worker = new Worker(src, { name: `autoglm-kernels-${t}` });
      worker.postMessage({ module, memory: w.memory, stackTop });
    }
    // workers start asynchronously: yield to the event loop until they report ready
    const t0 = performance.now();
    while (w.x.ag_ready_workers() < threads - 1 && performance.now() - t0 < READY_WAIT_MS) await new Promise((r) => setTimeout(r, 5));
  }
  return new WasmBackend(w, `wasm (SIMD128, ${shared ? 'threads on shared memory' : 'single-threaded: the page is not cross-origin isolated'})`);
}
