/**
 * open-autoglm in a browser: the entry the browser build bundles (`npm run build:web` -> dist/web/autoglm.js). It
 * imports nothing from `node:` (scripts/build-web.mjs puts backend/index.browser.ts in place of the Node backend
 * selection; test/browser-build.test.ts checks the bundle). Run it in a dedicated Web Worker (src/browser/worker.ts
 * does): kernels block their caller, and threaded kernels wait on atomics, which a page's main thread may not.
 *
 *   await initBrowserBackend({ baseUrl: '/wasm/' });            // WebGPU when registered, else wasm, else portable
 *   const weights = await fetchBaseModel('/model/');             // open-autoglm-base, kept in the Cache API
 *   const r = await finetuneInBrowser({ weights, splits, config: { loraRank: 8 } });
 *   const files = adapterFiles(r.lora!);                         // PEFT's adapter_config.json + adapter_model.safetensors
 */
import type { WeightSource } from '../models/use-lite/weights.js';
import { cachedBytes } from './cache.js';

export { initBrowserBackend, registerWebGPULoader, backend, setBackend, getBackend, type BrowserBackendOptions } from '../backend/index.browser.js';
export { PortableBackend } from '../backend/portable.js';
export { useWebGpu, moveToDevice, moveToCPU } from '../backend/webgpu/tensors.js';
export { WebGpuTensorBackend } from '../backend/webgpu/tensor-backend.js';
export { WasmBackend } from '../backend/wasm/backend.js';
export { canShareMemory } from '../backend/wasm/browser.js';
export * from '../errors.js';
export * from '../tensor/index.js';
export { finetuneInBrowser, predictInBrowser, browserConfig, BASE_MODEL, type BrowserFinetuneOptions, type BrowserFinetuneResult } from './train.js';
export { splitsFromFile, customIntentV2, type FileDatasetOptions } from './data.js';
export { cachedBytes, storeAdapter, loadStoredAdapter, type AdapterFiles } from './cache.js';
export { adapterFiles, adapterFilesAsync, adapterStateDict } from '../peft/lora/state.js';
export { encodeSafetensors } from '../models/safetensors-encode.js';
export { buildUSELite } from '../models/use-lite/build.js';
export type { DatasetSplits, Example } from '../data/types.js';
export type { StepLog, EvalLog, EpochLog } from '../train/history.js';
export type { EvalResult, Prediction } from '../train/evaluate.js';

/**
 * open-autoglm-base's files from `baseUrl` (the weights package's folder served as static files: model.json, the
 * shards it names, vocab.json), read through the Cache API; resolves to a WeightSource for buildUSELite / finetuneInBrowser.
 */
export async function fetchBaseModel(baseUrl: string | URL, fetchBytes: (url: string) => Promise<ArrayBuffer> = cachedBytes): Promise<WeightSource> {
  const base = new URL(baseUrl, (globalThis as { location?: { href: string } }).location?.href); // '/model/' against the page's location
  const url = (name: string) => new URL(name, base).href;
  const files = new Map<string, Uint8Array>();
  const get = async (name: string) => files.set(name, new Uint8Array(await fetchBytes(url(name))));
  await get('model.json');
  const manifest = JSON.parse(new TextDecoder().decode(files.get('model.json'))) as { weightsManifest?: Array<{ paths: string[] }> };
  const shards = (manifest.weightsManifest ?? []).flatMap((g) => g.paths);
  await Promise.all([...shards, 'vocab.json'].map(get));
  return {
    bytes: (name) => {
      const b = files.get(name);
      if (!b) throw new Error(`${url(name)} was not fetched`);
      return b;
    },
    where: url,
  };
}
