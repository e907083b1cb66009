/**
 * Checkpoints: a folder `checkpoint-<step>` holding the trainable weights (`weights.safetensors`), the
 * optimizer state (`optimizer.safetensors`), the best weights so far when early stopping restores them
 * (`best.safetensors`) and everything else the loop needs to continue exactly (`trainer_state.json`: step, epoch,
 * sampler positions, RNG states, scheduler, loss scaler, early stopping, the task's state, data-parallel state,
 * history), written losslessly (serialize.ts: ±Infinity, NaN and typed arrays survive). Written to a temporary
 * folder, each file fsynced, then renamed into place, so a crash (even SIGKILL mid-write) never leaves a
 * half-written checkpoint under its final name and the previous one stays loadable; the oldest beyond `keepLast`
 * are deleted only afterwards.
 */
import { mkdirSync, readdirSync, renameSync, rmSync, existsSync, readFileSync, writeFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import path from 'node:path';
import { CheckpointError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { loadSafetensors, saveSafetensors } from '../models/safetensors.js';
import { readBack } from '../models/safetensors-encode.js';
import { parseState, stringifyState } from './serialize.js';

export interface CheckpointData {
  weights: Map<string, Tensor>;
  optimizer: Map<string, Tensor>;
  state: Record<string, unknown>;
  /** Early stopping's best weights so far (restoreBest), when there are any. */
  best?: Map<string, Tensor> | null;
}

function fsyncPath(p: string): void {
  const fd = openSync(p, 'r');
  try { fsyncSync(fd); } finally { closeSync(fd); }
}

export function checkpointName(step: number): string {
  return `checkpoint-${String(step).padStart(7, '0')}`;
}

export function saveCheckpoint(outDir: string, step: number, data: CheckpointData, keepLast: number): string {
  mkdirSync(outDir, { recursive: true });
  const final = path.join(outDir, checkpointName(step));
  const tmp = `${final}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  const files: Array<[string, Map<string, Tensor>]> = [['weights.safetensors', data.weights], ['optimizer.safetensors', data.optimizer]];
  if (data.best) files.push(['best.safetensors', data.best]);
  for (const [f, t] of files) {
    saveSafetensors(path.join(tmp, f), t);
    fsyncPath(path.join(tmp, f));
  }
  const sf = path.join(tmp, 'trainer_state.json');
  writeFileSync(sf, stringifyState(data.state));
  fsyncPath(sf);
  fsyncPath(tmp);
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  fsyncPath(outDir);
  const all = listCheckpoints(outDir);
  for (const old of all.slice(0, Math.max(0, all.length - keepLast))) rmSync(old, { recursive: true, force: true });
  // what a killed writer left half-done (never loaded: listCheckpoints skips it)
  for (const f of readdirSync(outDir)) if (/^checkpoint-\d+\.tmp-\d+$/.test(f)) rmSync(path.join(outDir, f), { recursive: true, force: true });
  return final;
}

/**
 * `saveCheckpoint` of tensors that may live on a device (WebGPU): weights, optimizer state and best weights are read
 * back first (every read queued at once), then written as `saveCheckpoint` does. After device-gated updates, await
 * `settleUpdates(opt)` (train/update.ts) before taking the optimizer's `stateDict`, so its step counts are final.
 */
export async function saveCheckpointAsync(outDir: string, step: number, data: CheckpointData, keepLast: number): Promise<string> {
  const [weights, optimizer, best] = await Promise.all([readBack(data.weights), readBack(data.optimizer), data.best ? readBack(data.best) : null]);
  return saveCheckpoint(outDir, step, { ...data, weights, optimizer, best }, keepLast);
}

/** Complete checkpoints in outDir, oldest first (temporary folders are ignored). */
export function listCheckpoints(outDir: string): string[] {
  if (!existsSync(outDir)) return [];
  return readdirSync(outDir).filter((f) => /^checkpoint-\d+$/.test(f)).sort().map((f) => path.join(outDir, f));
}

export function loadCheckpoint(dir: string): CheckpointData {
  for (const f of ['weights.safetensors', 'optimizer.safetensors', 'trainer_state.json']) {
    if (!existsSync(path.join(dir, f))) throw new CheckpointError(`checkpoint '${dir}' is incomplete: ${f} is missing`);
  }
  let state: Record<string, unknown>;
  try {
    state = parseState(readFileSync(path.join(dir, 'trainer_state.json'), 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new CheckpointError(`checkpoint '${dir}': trainer_state.json is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  return {
    weights: loadSafetensors(path.join(dir, 'weights.safetensors')).tensors,
    optimizer: loadSafetensors(path.join(dir, 'optimizer.safetensors')).tensors,
    best: existsSync(path.join(dir, 'best.safetensors')) ? loadSafetensors(path.join(dir, 'best.safetensors')).tensors : null,
    state,
  };
}
