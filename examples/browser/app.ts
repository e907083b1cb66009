/**
 * The page of `npx autoglm web`: picks a dataset (custom_intent_v2 or a dropped CSV / JSONL), LoRA settings, trains
 * in a worker (src/browser/worker.ts) with a progress bar and a live loss / accuracy chart, shows the test accuracy
 * and confusion matrix, predicts typed sentences, and downloads the run as a zip (autoglm.json + adapter/ in PEFT's
 * layout) that `npx autoglm predict <folder>` loads in Node. `window.autoglm` drives it from scripts (the tests).
 */
import { zipSync, strToU8 } from 'fflate';
import type { WorkerEvent, WorkerRequest, TrainSummary, DatasetChoice } from '../../src/browser/worker.js';
import type { StepLog, EpochLog } from '../../src/train/history.js';
import type { Prediction } from '../../src/train/evaluate.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const worker = new Worker('/worker.js', { type: 'module', name: 'autoglm-train' });
const send = (r: WorkerRequest, transfer: Transferable[] = []) => worker.postMessage(r, transfer);

let droppedFile: { name: string; bytes: Uint8Array } | null = null;
let steps: StepLog[] = [];
let epochs: EpochLog[] = [];
let lastZip: Uint8Array | null = null;
let lastFiles: Record<string, Uint8Array> | null = null;
let pending: { resolve(v: unknown): void; reject(e: Error): void; kind: 'train' | 'predict' | 'ready' } | null = null;
let ready = false;
let totalSteps = 1;
const readyWaiters: Array<() => void> = [];

function status(s: string): void {
  $('status').textContent = s;
}

// ---- chart: training loss per step (left axis), validation accuracy per epoch (right axis, 0-1) ----------------
function drawChart(totalSteps: number): void {
  const c = $<HTMLCanvasElement>('chart'), g = c.getContext('2d')!;
  const W = c.width, H = c.height, L = 50, R = 50, T = 10, B = 30;
  g.clearRect(0, 0, W, H);
  g.font = '20px system-ui';
  g.strokeStyle = '#999';
  g.strokeRect(L, T, W - L - R, H - T - B);
  const maxLoss = Math.max(1e-6, ...steps.map((s) => s.loss).filter(Number.isFinite));
  const x = (step: number) => L + ((W - L - R) * step) / Math.max(1, totalSteps);
  const yl = (v: number) => T + (H - T - B) * (1 - v / maxLoss);
  const ya = (v: number) => T + (H - T - B) * (1 - v);
  g.fillStyle = '#36c';
  g.fillText(maxLoss.toFixed(2), 2, T + 16);
  g.fillText('0', 30, H - B);
  g.strokeStyle = '#36c';
  g.lineWidth = 2;
  g.beginPath();
  steps.forEach((s, i) => (i ? g.lineTo(x(s.step), yl(s.loss)) : g.moveTo(x(s.step), yl(s.loss))));
  g.stroke();
  g.fillStyle = '#2a2';
  g.fillText('100%', W - R + 4, T + 16);
  for (const e of epochs) {
    if (e.val_accuracy === undefined) continue;
    g.beginPath();
    g.arc(x(e.step), ya(e.val_accuracy), 6, 0, 2 * Math.PI);
    g.fill();
    g.fillText(`${(100 * e.val_accuracy).toFixed(1)}%`, x(e.step) - 60, ya(e.val_accuracy) + 24);
  }
  g.fillStyle = '#666';
  g.fillText(`step ${steps.at(-1)?.step ?? 0} / ${totalSteps}`, L + 6, H - 6);
}

function showResult(s: TrainSummary): void {
  const t = s.test;
  $('result').textContent = t
    ? `test accuracy ${(100 * t.accuracy).toFixed(2)}%, macro-F1 ${(100 * t.macro_f1).toFixed(2)}% (${t.n} examples); ${s.steps} steps in ${s.trainTimeS.toFixed(1)} s; `
      + `${s.trainableParams.toLocaleString()} trainable of ${s.totalParams.toLocaleString()} parameters`
    : 'no test split';
  if (!t) return;
  const max = Math.max(1, ...t.confusion.flat());
  const short = (l: string) => (l.length > 14 ? `${l.slice(0, 13)}…` : l);
  const head = `<tr><th></th>${s.labels.map((_, j) => `<th title="${s.labels[j]}">${j}</th>`).join('')}</tr>`;
  const rows = t.confusion.map((r, i) => `<tr><th class="r" title="${s.labels[i]}">${i} ${short(s.labels[i]!)}</th>${r.map((v, j) => {
    const a = v / max; // green on the diagonal (right), red off it (which label it was taken for)
    return `<td style="background: rgba(${i === j ? '40,160,40' : '220,60,60'},${v ? 0.15 + 0.85 * a : 0})">${v || ''}</td>`;
  }).join('')}</tr>`).join('');
  $('cm').innerHTML = `<p class="muted">confusion matrix: rows true label, columns predicted</p><table class="cm">${head}${rows}</table>`;
}

function download(name: string, bytes: Uint8Array | string, type: string): void {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([bytes as BlobPart], { type }));
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

worker.onmessage = (ev: MessageEvent<WorkerEvent>) => {
  const e = ev.data;
  if (e.type === 'ready') {
    ready = true;
    status(`backend: ${e.backend}${e.crossOriginIsolated ? '' : ' (page not cross-origin isolated: no threads)'}`);
    $<HTMLButtonElement>('train').disabled = false;
    readyWaiters.splice(0).forEach((f) => f());
  } else if (e.type === 'data') {
    $('dataInfo').textContent = `${e.name}: ${e.labels.length} labels; ${e.sizes.train} train, ${e.sizes.validation} validation, ${e.sizes.test} test`
      + (e.skipped ? `; ${e.skipped} bad line(s) skipped (first: ${e.firstSkipped})` : '');
  } else if (e.type === 'step') {
    steps.push(e.log);
    $<HTMLProgressElement>('progress').value = e.log.step / e.totalSteps;
    $('stepInfo').textContent = `step ${e.log.step}/${e.totalSteps}  epoch ${e.log.epoch + 1}  loss ${e.log.loss.toFixed(4)}  lr ${e.log.lr.toExponential(2)}  ${e.log.time_s.toFixed(1)} s`;
    totalSteps = e.totalSteps;
    drawChart(totalSteps);
  } else if (e.type === 'epoch') {
    epochs.push(e.log);
    drawChart(totalSteps);
  } else if (e.type === 'done') {
    showResult(e.summary);
    $<HTMLButtonElement>('train').disabled = false;
    $<HTMLButtonElement>('stop').disabled = true;
    $<HTMLButtonElement>('predict').disabled = false;
    if (e.adapter) {
      lastFiles = {
        'autoglm.json': strToU8(`${JSON.stringify(e.runInfo, null, 2)}\n`),
        'adapter/adapter_config.json': strToU8(e.adapter['adapter_config.json']),
        'adapter/adapter_model.safetensors': e.adapter['adapter_model.safetensors'],
      };
      lastZip = zipSync(lastFiles, { level: 0 });
      $<HTMLButtonElement>('dlZip').disabled = false;
    }
    pending?.kind === 'train' && pending.resolve(e.summary);
    pending = null;
  } else if (e.type === 'predictions') {
    $('preds').innerHTML = e.predictions.map((p) => `<li><b>${p.label}</b> (${(100 * p.score).toFixed(1)}%) — ${p.text.replace(/</g, '&lt;')}</li>`).join('');
    pending?.kind === 'predict' && pending.resolve(e.predictions);
    pending = null;
  } else if (e.type === 'error') {
    status(`error: ${e.name}: ${e.message}`);
    $<HTMLButtonElement>('train').disabled = !ready;
    $<HTMLButtonElement>('stop').disabled = true;
    pending?.reject(new Error(`${e.name}: ${e.message}`));
    pending = null;
  }
};
worker.onerror = (e) => status(`worker failed: ${e.message}`);

// ---- controls -------------------------------------------------------------------------------------------------
const num = (id: string) => Number($<HTMLInputElement>(id).value);

export interface JobOptions {
  dataset?: DatasetChoice['kind'];
  maxTrain?: number;
  maxEval?: number;
  /** Any trainer config keys (the form's values are used for those not given). */
  config?: Record<string, unknown>;
}

function train(o: JobOptions = {}): Promise<TrainSummary> {
  if (pending) return Promise.reject(new Error('a run is in progress'));
  const kind = o.dataset ?? ((document.querySelector('input[name=ds]:checked') as HTMLInputElement).value as DatasetChoice['kind']);
  let dataset: DatasetChoice;
  if (kind === 'file') {
    if (!droppedFile) return Promise.reject(new Error('drop or choose a .csv or .jsonl file first'));
    dataset = { kind: 'file', name: droppedFile.name, bytes: droppedFile.bytes, textField: $<HTMLInputElement>('textField').value, labelField: $<HTMLInputElement>('labelField').value };
  } else {
    const mt = $<HTMLInputElement>('maxTrain').value;
    dataset = { kind: 'custom_intent_v2', maxTrain: o.maxTrain ?? (mt ? Number(mt) : undefined), maxEval: o.maxEval };
  }
  const base = $<HTMLSelectElement>('base').value as 'none' | 'nf4' | 'int8' | 'bf16';
  const config = { loraRank: num('rank'), loraAlpha: num('alpha'), learningRate: num('lr'), epochs: num('epochs'), batchSize: num('batch'), ...(base !== 'none' ? { baseQuantization: base } : {}), ...o.config };
  steps = [];
  epochs = [];
  lastZip = null;
  $<HTMLButtonElement>('train').disabled = true;
  $<HTMLButtonElement>('stop').disabled = false;
  $<HTMLButtonElement>('dlZip').disabled = true;
  $('result').textContent = 'training…';
  $('cm').innerHTML = '';
  return new Promise((resolve, reject) => {
    pending = { resolve: resolve as (v: unknown) => void, reject, kind: 'train' };
    send({ type: 'train', dataset, datasetsUrl: new URL('/datasets/', location.href).href, config });
  });
}

function predict(texts: string[]): Promise<Prediction[]> {
  if (pending) return Promise.reject(new Error('busy'));
  return new Promise((resolve, reject) => {
    pending = { resolve: resolve as (v: unknown) => void, reject, kind: 'predict' };
    send({ type: 'predict', texts });
  });
}

$('train').onclick = () => { train().catch((e: Error) => status(`error: ${e.message}`)); };
$('stop').onclick = () => send({ type: 'stop' });
$('predict').onclick = () => {
  const texts = $<HTMLTextAreaElement>('tryText').value.split('\n').map((t) => t.trim()).filter(Boolean);
  if (texts.length) predict(texts).catch((e: Error) => status(`error: ${e.message}`));
};
$('dlZip').onclick = () => lastZip && download('autoglm-adapter.zip', lastZip, 'application/zip');

async function takeFile(f: File): Promise<void> {
  droppedFile = { name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) };
  (document.querySelector('input[name=ds][value=file]') as HTMLInputElement).checked = true;
  $('dataInfo').textContent = `${f.name}: ${(f.size / 1024).toFixed(1)} KiB (split into train / validation / test when training starts)`;
}
$<HTMLInputElement>('file').onchange = (ev) => { const f = (ev.target as HTMLInputElement).files?.[0]; if (f) void takeFile(f); };
const drop = $('drop');
drop.ondragover = (e) => { e.preventDefault(); drop.classList.add('over'); };
drop.ondragleave = () => drop.classList.remove('over');
drop.ondrop = (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const f = e.dataTransfer?.files[0];
  if (f) void takeFile(f);
};

// the server may ask for a backend (?backend=portable|wasm) and a thread count (?threads=N)
const q = new URLSearchParams(location.search);
send({
  type: 'init', wasmUrl: new URL('/wasm/', location.href).href, modelUrl: new URL('/model/', location.href).href,
  prefer: (q.get('backend') as 'webgpu' | 'wasm' | 'portable' | null) ?? undefined, threads: q.get('threads') ? Number(q.get('threads')) : undefined,
});

/** Script access (headless runs and tests). */
(window as unknown as { autoglm: unknown }).autoglm = {
  whenReady: () => new Promise<void>((r) => (ready ? r() : readyWaiters.push(r))),
  status: () => $('status').textContent,
  train,
  predict,
  /** The last run's files (autoglm.json, adapter/...), base64, for a test to write to disk. */
  lastRunFiles: () => lastFiles && Object.fromEntries(Object.entries(lastFiles).map(([k, v]) => [k, btoa(Array.from(v, (c) => String.fromCharCode(c)).join(''))])),
  setFile: (name: string, text: string) => { droppedFile = { name, bytes: new TextEncoder().encode(text) }; },
};
