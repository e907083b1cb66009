/**
 * Loads the wasm backend in Node: the module built from wasm/*.cc at install (build/wasm/, when clang with the
 * wasm32 target was there) or else the one committed with the package (wasm/prebuilt/, built from the same
 * sources), on a shared memory with one worker_thread per extra kernel thread.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Backend } from '../backend.js';
import { WasmBackend } from './backend.js';
import { instantiateKernels } from './instantiate.js';
import { threadCount } from '../threads.js';
import { packageRoot } from '../../package-root.js';

const FILE = 'autoglm-mt.wasm';
const STACK_BYTES = 1 << 20;
/** How long the first use waits for the workers to start (they join later if slower). */
const READY_WAIT_MS = 3000;


/** The module file: built at install, else the committed one; null when neither exists. */
export function wasmFile(): { file: string; origin: 'built' | 'prebuilt' } | null {
  const root = packageRoot();
  const built = path.join(root, 'build', 'wasm', FILE);
  if (existsSync(built)) return { file: built, origin: 'built' };
  const pre = path.join(root, 'wasm', 'prebuilt', FILE);
  return existsSync(pre) ? { file: pre, origin: 'prebuilt' } : null;
}


// The worker: instantiates the same module on the same memory, takes its own stack, and serves tasks forever.
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const inst = new WebAssembly.Instance(workerData.module, { env: { memory: workerData.memory } });
inst.exports.__stack_pointer.value = workerData.stackTop;
inst.exports.ag_worker_loop();
`;

let lastError: string | null = null;
let workerError: string | null = null;

/** Why a worker thread failed, or null. */
export function wasmWorkerError(): string | null {
  return workerError;
}

/** Why the last loadWasmBackend() failed, or null. */
export function wasmLoadError(): string | null {
  return lastError;
}

/** Instantiates the module and starts its threads; throws with the reason when it cannot. */
export function loadWasmBackend(): Backend {
  try {
    const b = load();
    lastError = null;
    return b;
  } catch (e) {
    lastError = (e as Error).message;
    throw e;
  }
}

function load(): Backend {
  const found = wasmFile();
  if (!found) throw new Error(`the wasm kernels are missing (neither build/wasm/${FILE} nor wasm/prebuilt/${FILE}); run 'node scripts/build-wasm.mjs'`);
  let module: WebAssembly.Module;
  try {
    module = new WebAssembly.Module(readFileSync(found.file));
  } catch (e) {
    throw new Error(`the wasm kernels ${found.file} failed to compile: ${(e as Error).message}`);
  }
  const threads = threadCount();
  const w = instantiateKernels(module, true, threads);
  const { x, memory } = w;
  x.ag_set_main_may_wait(1);  // Node's main thread may block on atomics (a browser's may not)
  for (let t = 1; t < threads; t++) {
    const stackTop = (x.ag_alloc_permanent(STACK_BYTES) >>> 0) + STACK_BYTES;
    // execArgv []: the worker is plain CommonJS, whatever the parent's flags (--input-type=module, loaders)
    const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], workerData: { module, memory, stackTop } });
    // a worker that fails to start is left out (the kernels use the threads that reported ready), never fatal
    worker.on('error', (e) => { workerError = e.message; });
    worker.unref();
  }
  if (threads > 1) {
    const nap = new Int32Array(new SharedArrayBuffer(4));
    const t0 = Date.now();
    while (x.ag_ready_workers() < threads - 1 && Date.now() - t0 < READY_WAIT_MS) Atomics.wait(nap, 0, 0, 2);
  }
  return new WasmBackend(w, `wasm (SIMD128, ${found.origin === 'built' ? 'built at install' : 'prebuilt'})`);
}
