/**
 * A worker for test/browser.test.ts: loads the wasm backend as a page would (fetched module; threads on shared
 * memory when cross-origin isolated), runs the kernel table against the portable backend, posts the results.
 */
import { initBrowserBackend, getBackend } from '../../src/backend/index.browser.js';
import { runKernelCases } from './kernel-cases.js';

self.onmessage = async (e: MessageEvent<{ wasmUrl: string; threads?: number }>) => {
  try {
    const b = await initBrowserBackend({ baseUrl: e.data.wasmUrl, prefer: 'wasm', threads: e.data.threads });
    const results = runKernelCases(b, getBackend('portable'));
    postMessage({ describe: b.describe(), threads: b.numThreads(), isolated: (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true, results });
  } catch (err) {
    postMessage({ error: `${(err as Error).name}: ${(err as Error).message}` });
  }
};
