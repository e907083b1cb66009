/** A run's files: autoglm.json (what to rebuild it from), trained weights, and the loss/accuracy curves (SVG). */
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { CheckpointError, fmtShape } from '../errors.js';
import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';
import { copyInto } from '../tensor/creation.js';
import { loadSafetensors, saveSafetensors } from '../models/safetensors.js';
import { loadAdapter, type LoraModel } from '../peft/index.js';
import type { TrainerConfig } from './config.js';
import type { History } from './history.js';
import type { DatasetSpec } from '../data/types.js';

export interface RunInfo {
  model: string;
  method: TrainerConfig['method'];
  labels: string[];
  config: TrainerConfig;
  dataset: string;
  /** Multi-task runs: the name of the primary label set and the labels of each task's head. */
  labelSet?: string;
  taskLabels?: Record<string, string[]>;
  /**
   * The dataset as `loadDataset` took it (files by absolute path, without the caps), so that `autoglm eval` loads the
   * same splits; absent when the splits were given in memory (and in runs written before it).
   */
  data?: Partial<DatasetSpec>;
}

export function writeRunInfo(dir: string, info: RunInfo): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'autoglm.json'), `${JSON.stringify(info, null, 2)}\n`);
}

export function readRunInfo(dir: string): RunInfo {
  const f = path.join(dir, 'autoglm.json');
  if (!existsSync(f)) throw new CheckpointError(`'${dir}' is not an autoglm run folder: autoglm.json is missing`);
  try {
    return JSON.parse(readFileSync(f, 'utf8')) as RunInfo;
  } catch (e) {
    throw new CheckpointError(`${f} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}

/** Saves the trained parameters (the head alone for method 'head') to <dir>/model.safetensors. */
export function saveTrainable(model: Module, dir: string, headOnly: boolean): string {
  const t = new Map<string, Tensor>();
  for (const [k, p] of model.namedParameters()) if (p.requiresGrad || (!headOnly && p.dtype === 'f32')) t.set(k, p);
  const f = path.join(dir, 'model.safetensors');
  saveSafetensors(f, t);
  return f;
}

/** Copies saved parameters into the model by name, checking shapes. */
export function loadTrainable(model: Module, tensors: Map<string, Tensor>, where: string): void {
  loadNamed([...model.namedParameters()], tensors, where);
}

/** Copies saved tensors into `named` by name, checking sizes; every saved key must be one of `named`. */
export function loadNamed(named: Array<[string, Tensor]>, tensors: Map<string, Tensor>, where: string): void {
  const own = new Map(named);
  for (const [k, v] of tensors) {
    const p = own.get(k);
    if (!p) throw new CheckpointError(`${where}: key '${k}' is not a parameter of this model`);
    if (p.size !== v.size) throw new CheckpointError(`${where}: key '${k}' has shape ${fmtShape(v.shape)}; the model expects ${fmtShape(p.shape)}`);
    copyInto(p, v);
  }
}

/** Loss and accuracy curves as an SVG image (vega-lite); null where vega cannot render. */
export async function writeCurves(dir: string, h: History): Promise<string | null> {
  const values = [
    ...h.steps.map((s) => ({ step: s.step, value: s.loss, series: 'train loss', panel: 'loss' })),
    ...h.evals.map((e) => ({ step: e.step, value: e.loss, series: 'validation loss', panel: 'loss' })),
    ...h.evals.map((e) => ({ step: e.step, value: e.accuracy ?? NaN, series: 'validation accuracy', panel: 'accuracy' })),
  ].filter((v) => Number.isFinite(v.value));
  if (values.length === 0) return null;
  try {
    const vega = await import('vega');
    const { compile } = await import('vega-lite');
    const spec = compile({
      data: { values },
      facet: { row: { field: 'panel', type: 'nominal', title: null, sort: ['loss', 'accuracy'] } },
      spec: {
        width: 520, height: 200,
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'step', type: 'quantitative', title: 'optimizer step' },
          y: { field: 'value', type: 'quantitative', title: null, scale: { zero: false } },
          color: { field: 'series', type: 'nominal', title: null },
        },
      },
      resolve: { scale: { y: 'independent' } },
    } as Parameters<typeof compile>[0]).spec;
    const svg = await new vega.View(vega.parse(spec), { renderer: 'none' }).toSVG();
    const f = path.join(dir, 'curves.svg');
    writeFileSync(f, svg);
    return f;
  } catch {
    return null;
  }
}

/**
 * A finished run's trained weights into a freshly built model: its adapter (in place of the one the build injected,
 * named 'trained' and made active), or its trainable tensors from model.safetensors. Leaves the model in eval mode.
 */
export function loadRunWeights(model: Module, lora: LoraModel | null, dir: string): void {
  if (lora) {
    const built = lora.activeAdapters[0] as string;
    loadAdapter(lora, path.join(dir, 'adapter'), 'trained');
    lora.deleteAdapter(built);
    lora.setAdapter('trained');
  } else {
    loadTrainable(model, loadSafetensors(path.join(dir, 'model.safetensors')).tensors, dir);
  }
  model.eval();
}
