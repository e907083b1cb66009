/**
 * The acceptance figure of issue 21: the main job (LoRA on custom_intent_v2 with the trainer's defaults, what
 * `npx autoglm finetune` runs) in the page, in headless Chromium on the wasm backend, side by side with the same
 * job in Node, in one run; prints test accuracy, time and peak memory of each and the accuracy difference.
 *
 *   node --import tsx scripts/browser-main-job.ts [--max-train N] [--max-eval N] [--threads N] [--node-backends native,wasm]
 *     [--backend wasm|webgpu] [--dawn-features disable_robustness,...] [--runner chromium|node] [--chromium-llvmpipe]
 *     [--base-quantization none|nf4|int8|bf16]
 *
 * `--backend webgpu` trains the page on the WebGPU backend (Chromium with --enable-unsafe-webgpu; on a machine
 * without a GPU that is SwiftShader, CPU emulation: use --max-train / --max-eval, which Node gets too).
 *
 * `--chromium-llvmpipe` (with `--backend webgpu`) gives the page Mesa's llvmpipe instead of SwiftShader: Chromium runs
 * under a virtual X server (Xvfb, started and stopped here), not headless, with Dawn's OpenGL ES backend at the
 * compatibility level (src/web/llvmpipe.ts). It fails with the reason when Xvfb or Mesa's llvmpipe GL driver is
 * missing, or when the page's adapter turns out not to be llvmpipe.
 *
 * `--base-quantization` trains both sides on a quantised frozen base (QLoRA's NF4, int8, bf16; the page on wasm).
 *
 * `--runner node` (with `--backend webgpu`) runs the page's training code (`finetuneInBrowser`, src/browser/train.ts)
 * in this Node process on Dawn's WebGPU (the optional `webgpu` package) instead of in Chromium: the same code path
 * as the page's worker without the page, for adapters that Dawn in Node takes and Chromium does not (Mesa's lavapipe).
 *
 * Node runs first (each backend in its own process: `autoglm finetune --json`), then the browser. Times on a
 * shared machine are indicative; accuracy is what this compares.
 */
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { headlessMainJob } from '../src/web/headless.js';
import { llvmpipeUnavailable } from '../src/web/llvmpipe.js';
import { nodeWebGpuMainJob } from './webgpu-node-job.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const usage = 'usage: node --import tsx scripts/browser-main-job.ts [--max-train N] [--max-eval N] [--threads N] ' +
  '[--node-backends native,wasm] [--backend wasm|webgpu] [--dawn-features a,b] [--runner chromium|node] [--chromium-llvmpipe] [--base-quantization none|nf4|int8|bf16]';
let values: Record<string, string | boolean | undefined>;
try {
  ({ values } = parseArgs({ strict: true, allowPositionals: false, options: {
    'max-train': { type: 'string' }, 'max-eval': { type: 'string' }, threads: { type: 'string' },
    'node-backends': { type: 'string' }, backend: { type: 'string' }, 'dawn-features': { type: 'string' }, runner: { type: 'string' },
    'chromium-llvmpipe': { type: 'boolean' }, 'base-quantization': { type: 'string' }, help: { type: 'boolean' },
  } }));
} catch (e) {
  console.error(`${(e as Error).message}\n${usage}`);
  process.exit(2);
}
if (values['help']) {
  console.log(usage);
  process.exit(0);
}
const arg = (name: string): string | undefined => values[name.replace(/^--/, '')] as string | undefined;
/** A positive integer option, or a clear refusal. */
const count = (name: string): number | undefined => {
  const v = arg(name);
  if (v === undefined) return undefined;
  if (!/^[1-9][0-9]*$/.test(v)) {
    console.error(`${name} is '${v}'; expected a positive integer\n${usage}`);
    process.exit(2);
  }
  return Number(v);
};
const maxTrain = count('--max-train');
const maxEval = count('--max-eval');
const threads = count('--threads') ?? 2;
const nodeBackends = (arg('--node-backends') ?? 'native,wasm').split(',').filter(Boolean);
const pageBackend = arg('--backend') ?? 'wasm';
const dawnFeatures = arg('--dawn-features')?.split(',').filter(Boolean);
if (dawnFeatures && pageBackend !== 'webgpu') throw new Error(`--dawn-features needs --backend webgpu`);
function refuse(why: string): never {
  console.error(`${why}\n${usage}`);
  process.exit(2);
}
if (pageBackend !== 'wasm' && pageBackend !== 'webgpu') refuse(`--backend must be 'wasm' or 'webgpu'; got '${pageBackend}'`);
const base = arg('--base-quantization') ?? 'none';
if (!['none', 'nf4', 'int8', 'bf16'].includes(base)) refuse(`--base-quantization must be 'none', 'nf4', 'int8' or 'bf16'; got '${base}'`);
if (base !== 'none' && pageBackend === 'webgpu') refuse('--base-quantization: a quantised base trains on the wasm kernels, not with --backend webgpu');
const runner = arg('--runner') ?? 'chromium';
if (runner !== 'chromium' && runner !== 'node') refuse(`--runner must be 'chromium' or 'node'; got '${runner}'`);
if (runner === 'node' && pageBackend !== 'webgpu') refuse('--runner node trains on WebGPU in Node: it needs --backend webgpu');
if (runner === 'node' && dawnFeatures) refuse('--dawn-features are Chromium flags; not with --runner node');
const llvmpipe = values['chromium-llvmpipe'] === true;
if (llvmpipe && pageBackend !== 'webgpu') refuse('--chromium-llvmpipe is a WebGPU adapter for the page: it needs --backend webgpu');
if (llvmpipe && runner === 'node') refuse('--chromium-llvmpipe is how Chromium is launched; not with --runner node');
if (llvmpipe) {
  const why = llvmpipeUnavailable();
  if (why) refuse(`--chromium-llvmpipe: ${why}`);
}

interface NodeRun { backend: string; accuracy: number; macro_f1: number; test_loss: number; train_time_s: number; peak_rss_mb: number; steps: number; precision: string }

function nodeJob(backend: string): NodeRun | null {
  const out = mkdtempSync(path.join(os.tmpdir(), 'autoglm-mainjob-'));
  try {
    const flags = ['finetune', '--json', '--quiet', '--no-baseline', '--output-dir', out, '--threads', String(threads),
      ...(maxTrain ? ['--max-train', String(maxTrain)] : []), ...(maxEval ? ['--max-eval', String(maxEval)] : []), '--base-quantization', base];
    const code = `import { main } from './src/cli/main.ts'; process.exitCode = await main(${JSON.stringify(flags)});`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: ROOT, encoding: 'utf8', env: { ...process.env, AUTOGLM_BACKEND: backend }, maxBuffer: 64 << 20,
    });
    const line = r.stdout.trim().split('\n').reverse().find((l) => l.startsWith('{"command":"finetune"'));
    if (r.status !== 0 || !line) {
      console.log(`node (${backend}): failed (exit ${r.status}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
      return null;
    }
    return { backend, ...(JSON.parse(line) as Omit<NodeRun, 'backend'>) };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
const nodeRuns: NodeRun[] = [];
for (const b of nodeBackends) {
  process.stderr.write(`running the main job in Node (${b} backend, ${threads} threads)...\n`);
  const r = nodeJob(b);
  if (r) {
    nodeRuns.push(r);
    console.log(`node (${b}, ${r.precision}): test accuracy ${pct(r.accuracy)}  macro-F1 ${pct(r.macro_f1)}  test loss ${r.test_loss.toFixed(6)}  ${r.steps} steps  train time ${r.train_time_s.toFixed(1)} s  peak RSS ${r.peak_rss_mb} MB`);
  }
}
if (runner === 'node') {
  process.stderr.write('running the page\'s training code in Node on WebGPU (Dawn)...\n');
  const w = await nodeWebGpuMainJob({ maxTrain, maxEval, say: (l) => process.stderr.write(`  ${new Date().toISOString().slice(11, 19)} ${l}\n`) });
  console.log(`page code in Node on WebGPU (${w.adapter}): test accuracy ${pct(w.accuracy)}  macro-F1 ${pct(w.macro_f1)}  test loss ${w.test_loss.toFixed(6)}  ${w.steps} steps  train time ${w.train_time_s.toFixed(1)} s (${(w.train_time_s / w.steps).toFixed(2)} s a step)`);
  for (const r of nodeRuns) {
    const d = 100 * (w.accuracy - r.accuracy);
    console.log(`webgpu (node) - node (${r.backend}): ${d >= 0 ? '+' : ''}${d.toFixed(2)} points (${Math.abs(d) <= 1 ? 'within' : 'NOT within'} 1 point); time ${(w.train_time_s / r.train_time_s).toFixed(2)}x`);
  }
  console.log(JSON.stringify({ command: 'browser-main-job', runner, pageBackend, threads, maxTrain: maxTrain ?? null, maxEval: maxEval ?? null, node: nodeRuns,
    webgpuNode: { ...w, predictions: undefined } }));
  process.exit(0);
}
const where = llvmpipe ? 'Chromium under Xvfb on llvmpipe' : 'headless Chromium';
process.stderr.write(`running the main job in ${where} (${pageBackend} backend, ${threads} threads)...\n`);
const b = await headlessMainJob({ maxTrain, maxEval, threads, rebuild: true, backend: pageBackend, dawnFeatures, adapter: llvmpipe ? 'llvmpipe' : 'default',
  ...(base !== 'none' ? { config: { baseQuantization: base as 'nf4' | 'int8' | 'bf16' } } : {}),
  say: (l) => process.stderr.write(`  ${new Date().toISOString().slice(11, 19)} ${l}\n`) });
if (pageBackend === 'webgpu' && !/webgpu/.test(b.backend)) throw new Error(`the page did not train on WebGPU: ${b.backend}`);
const t = b.summary.test!;
console.log(`browser (${where}, ${b.backend.replace(/^backend: /, '')}): test accuracy ${pct(t.accuracy)}  macro-F1 ${pct(t.macro_f1)}  test loss ${t.loss.toFixed(6)}  ${b.summary.steps} steps  `
  + `train time ${b.summary.trainTimeS.toFixed(1)} s  peak RSS: page renderer ${b.rendererPeakMb ?? '?'} MB, all browser processes ${b.browserPeakSumMb ?? '?'} MB, wasm memory ${b.summary.memoryMb.wasm ?? '?'} MB`);
for (const r of nodeRuns) {
  const d = 100 * (t.accuracy - r.accuracy);
  console.log(`browser - node (${r.backend}): ${d >= 0 ? '+' : ''}${d.toFixed(2)} points (${Math.abs(d) <= 1 ? 'within' : 'NOT within'} 1 point); time ${(b.summary.trainTimeS / r.train_time_s).toFixed(2)}x`);
}
console.log(JSON.stringify({ command: 'browser-main-job', pageBackend, baseQuantization: base, threads, maxTrain: maxTrain ?? null, maxEval: maxEval ?? null, node: nodeRuns,
  browser: { accuracy: t.accuracy, macro_f1: t.macro_f1, test_loss: t.loss, n: t.n, steps: b.summary.steps, train_time_s: b.summary.trainTimeS, renderer_peak_mb: b.rendererPeakMb,
    browser_peak_sum_mb: b.browserPeakSumMb, wasm_mb: b.summary.memoryMb.wasm, backend: b.backend } }));
