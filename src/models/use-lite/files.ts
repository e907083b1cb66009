/** USE-Lite's files read from a folder (Node): the WeightSource of weights.ts over the file system. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { USELiteConfig } from './config.js';
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
