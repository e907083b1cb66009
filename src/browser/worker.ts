/**
 * The training worker of the page (examples/browser): the library runs here, off the page's main thread, and
 * talks to the page by messages (WorkerRequest in, WorkerEvent out). Bundled to dist/web/worker.js.
 */
import { initBrowserBackend, backend } from '../backend/index.browser.js';
import type { WeightSource } from '../models/use-lite/weights.js';
import type { DatasetSplits } from '../data/types.js';
import type { TrainerConfigInput } from '../train/config.js';
import type { ClassificationReport } from '../train/metrics.js';
import type { EpochLog, EvalLog, StepLog } from '../train/history.js';
import type { Prediction } from '../train/evaluate.js';
import type { RunInfo } from '../train/outputs.js';
import { WasmBackend } from '../backend/wasm/backend.js';
import { adapterFilesAsync } from '../peft/lora/state.js';
import { BASE_MODEL, browserConfig, finetuneInBrowser, predictInBrowser, type BrowserFinetuneResult } from './train.js';
import { customIntentV2, splitsFromFile } from './data.js';
import { cachedBytes, storeAdapter, type AdapterFiles } from './cache.js';
import { fetchBaseModel } from './index.js';

export type DatasetChoice = { kind: 'custom_intent_v2'; maxTrain?: number; maxEval?: number } | { kind: 'file'; name: string; bytes: Uint8Array; textField?: string; labelField?: string };

export type WorkerRequest =
  | { type: 'init'; wasmUrl: string; modelUrl: string; prefer?: 'webgpu' | 'wasm' | 'portable'; threads?: number }
  | { type: 'train'; dataset: DatasetChoice; datasetsUrl: string; config: TrainerConfigInput }
  | { type: 'stop' }
  | { type: 'predict'; texts: string[] };

export interface TrainSummary {
  dataset: string;
  labels: string[];
  steps: number;
  trainTimeS: number;
  trainableParams: number;
  totalParams: number;
  test: (ClassificationReport & { loss: number }) | null;
  /** Every test prediction's label index, in test order (to compare with Node). */
  testPredictions: number[];
  /** The wasm kernels' linear memory at the end (its high-water mark), MB; null on another backend. */
  memoryMb: { wasm: number | null };
}

export type WorkerEvent =
  | { type: 'ready'; backend: string; crossOriginIsolated: boolean; threads: number }
  | { type: 'data'; name: string; labels: string[]; sizes: { train: number; validation: number; test: number }; skipped: number; firstSkipped: string | null }
  | { type: 'step'; log: StepLog; totalSteps: number }
  | { type: 'eval'; log: EvalLog }
  | { type: 'epoch'; log: EpochLog }
  /** runInfo: autoglm.json of a run folder (with the adapter under adapter/), which `autoglm predict <folder>` loads in Node. */
  | { type: 'done'; summary: TrainSummary; adapter: AdapterFiles | null; stored: boolean; runInfo: RunInfo }
  | { type: 'predictions'; predictions: Prediction[] }
  | { type: 'error'; message: string; name: string };

const post = (e: WorkerEvent) => (self as unknown as { postMessage(m: unknown): void }).postMessage(e);
let weights: WeightSource | null = null;
let trained: BrowserFinetuneResult | null = null;
let stopRequested = false;

async function loadSplits(d: DatasetChoice, datasetsUrl: string): Promise<DatasetSplits> {
  if (d.kind === 'file') return splitsFromFile(d.name, d.bytes, { textField: d.textField, labelField: d.labelField });
  const get = async (s: string) => new Uint8Array(await cachedBytes(new URL(`custom_intent_v2/${s}.jsonl`, datasetsUrl).href));
  return customIntentV2({ train: await get('train'), validation: await get('validation'), test: await get('test') }, { maxTrain: d.maxTrain, maxEval: d.maxEval });
}

async function train(r: Extract<WorkerRequest, { type: 'train' }>): Promise<void> {
  if (!weights) throw new Error("the worker is not initialised: send 'init' first");
  browserConfig(r.config); // a bad or unsupported key is refused before any data is read
  stopRequested = false;
  const splits = await loadSplits(r.dataset, r.datasetsUrl);
  post({ type: 'data', name: splits.name, labels: splits.labels, sizes: { train: splits.train.length, validation: splits.validation.length, test: splits.test.length },
    skipped: splits.skipped.length, firstSkipped: splits.skipped[0] ? `${splits.skipped[0].file}:${splits.skipped[0].line}: ${splits.skipped[0].reason}` : null });
  const res = await finetuneInBrowser({
    weights, splits, config: r.config,
    onStep: async (log, totalSteps) => {
      post({ type: 'step', log, totalSteps });
      await new Promise((ok) => setTimeout(ok, 0)); // lets 'stop' and 'predict' messages in
    },
    onEvaluate: (log) => post({ type: 'eval', log }),
    onEpoch: (log) => post({ type: 'epoch', log }),
    shouldStop: () => stopRequested,
  });
  trained = res;
  const adapter = res.lora ? await adapterFilesAsync(res.lora) : null;
  const stored = adapter ? await storeAdapter('last', adapter) : false;
  const b = backend();
  const wasmMem = b instanceof WasmBackend ? b.wasmMemoryBytes() : null;
  const t = res.test;
  post({
    type: 'done', adapter, stored,
    runInfo: { model: BASE_MODEL, method: res.config.method, labels: res.labels, config: res.config, dataset: splits.name },
    summary: {
      dataset: splits.name, labels: res.labels, steps: res.steps, trainTimeS: res.trainTimeS, trainableParams: res.trainableParams, totalParams: res.totalParams,
      test: t ? { accuracy: t.accuracy, macro_f1: t.macro_f1, per_class: t.per_class, confusion: t.confusion, n: t.n, loss: t.loss } : null,
      testPredictions: t ? Array.from(t.predictions) : [],
      memoryMb: { wasm: wasmMem === null ? null : Math.round(wasmMem / 2 ** 20) },
    },
  });
}

self.onmessage = async (ev: MessageEvent<WorkerRequest>) => {
  const r = ev.data;
  try {
    if (r.type === 'init') {
      const b = await initBrowserBackend({ baseUrl: r.wasmUrl, prefer: r.prefer, threads: r.threads });
      weights = await fetchBaseModel(r.modelUrl);
      post({ type: 'ready', backend: b.describe(), crossOriginIsolated: (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true, threads: b.numThreads() });
    } else if (r.type === 'train') {
      await train(r);
    } else if (r.type === 'stop') {
      stopRequested = true;
    } else if (r.type === 'predict') {
      if (!trained) throw new Error('train a model first');
      post({ type: 'predictions', predictions: predictInBrowser(trained, r.texts) });
    }
  } catch (e) {
    const err = e as Error;
    post({ type: 'error', message: err.message, name: err.name });
  }
};
