/**
 * The page's training code (src/browser/train.ts: `finetuneInBrowser`, what the page's worker runs) in Node on the
 * WebGPU backend through the optional `webgpu` package (Dawn): the main job of scripts/browser-main-job.ts
 * (`--runner node`) without Chromium, for machines where Dawn in Node has an adapter that Chromium does not use
 * (Mesa's lavapipe: Chromium keeps SwiftShader). Same data (custom_intent_v2 from the repo's datasets/, the same
 * seeded --max-train / --max-eval subsets), same weights (the installed weights package), same config; training on
 * the device, evaluation on the CPU kernels (wasm in Node, as the page's wasm) over the weights read back.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadWebGpuNode, useWebGpu } from '../src/backend/webgpu/node.js';
import { customIntentV2 } from '../src/browser/data.js';
import { finetuneInBrowser } from '../src/browser/train.js';
import { dirSource, defaultModelDir } from '../src/models/use-lite/files.js';
import type { TrainerConfigInput } from '../src/train/config.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface NodeWebGpuRun {
  adapter: string;
  accuracy: number;
  macro_f1: number;
  test_loss: number;
  n: number;
  steps: number;
  train_time_s: number;
  /** Every test prediction's label index, in test order. */
  predictions: number[];
}

/** Trains the main job with `finetuneInBrowser` on Dawn's WebGPU in this process; throws where Dawn has no adapter. */
export async function nodeWebGpuMainJob(o: { maxTrain?: number; maxEval?: number; config?: TrainerConfigInput; say?(line: string): void }): Promise<NodeWebGpuRun> {
  const gpu = await loadWebGpuNode();
  if (!gpu) throw new Error('no WebGPU adapter in Node (see the notice above): --runner node needs one (Mesa 25 lavapipe, or a GPU driver)');
  useWebGpu(gpu);
  o.say?.(`webgpu in Node: ${gpu.describe()} (matmul ${gpu.ctx.matmulVariant})`);
  const dir = path.join(ROOT, 'datasets', 'custom_intent_v2');
  const file = (s: string) => new Uint8Array(readFileSync(path.join(dir, `${s}.jsonl`)));
  const splits = customIntentV2({ train: file('train'), validation: file('validation'), test: file('test') }, { maxTrain: o.maxTrain, maxEval: o.maxEval });
  const r = await finetuneInBrowser({
    weights: dirSource(defaultModelDir()), splits, config: o.config ?? {},
    onStep: (log, total) => o.say?.(`step ${log.step}/${total} loss ${log.loss.toFixed(4)} lr ${log.lr.toExponential(2)} ${log.time_s.toFixed(1)} s`),
    onEvaluate: (log) => o.say?.(`${log.split} at step ${log.step}: accuracy ${(100 * (log.accuracy ?? NaN)).toFixed(2)}% loss ${log.loss.toFixed(4)}`),
  });
  const t = r.test!;
  return { adapter: gpu.describe(), accuracy: t.accuracy, macro_f1: t.macro_f1, test_loss: t.loss, n: t.n, steps: r.steps, train_time_s: r.trainTimeS, predictions: Array.from(t.predictions) };
}
